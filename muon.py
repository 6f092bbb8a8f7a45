"""
Muon (https://kellerjordan.github.io/posts/muon/): SGD with Nesterov momentum whose update, for
each 2-D matrix, is orthogonalized by a quintic Newton-Schulz iteration. The paper's recipe trains
the blocks' matrices with it (model.GPT.configure_optimizers).

It computes what torch.optim.Muon computes (tests/test_muon.py checks equality, step for step),
with one change: the Newton-Schulz iteration runs in a dtype the caller chooses. torch's runs in
bfloat16, fast on GPUs but emulated by CPUs without native bf16 support, where it costs many times
the rest of the step (measured in docs/comparison.md, Notes). train.py runs it in the run's own
matmul dtype: bfloat16 where autocast does, float32 elsewhere.
"""
import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # a, b, c of the quintic: maximal slope at zero


def orthogonalize(g, steps=5, dtype='bfloat16', eps=1e-7):
    """~U V^T of g = U S V^T: Newton-Schulz iterations X <- a X + (b A + c A^2) X with A = X X^T
    on X = g / |g|_F, which take each singular value that is not tiny to about 0.7-1.2 (not
    exactly 1: the price of converging in 5 steps)."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(getattr(torch, dtype))
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T  # A = X X^T is then the smaller Gram matrix
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """For 2-D parameters only. Each step: buf = momentum buf + (1 - momentum) grad; the update
    is orthogonalize(grad + momentum (buf - grad)) (Nesterov) scaled by sqrt(max(1, rows/cols));
    decoupled weight decay multiplies the weights by 1 - lr weight_decay first."""
    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, ns_steps=5, ns_dtype='bfloat16'):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps,
                                      ns_dtype=ns_dtype))
        for group in self.param_groups:
            for p in group['params']:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D parameters, not one of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, momentum = group['lr'], group['momentum']
            for p in group['params']:
                if p.grad is None:
                    continue
                # torch.optim.Muon's name for it, so either one resumes the other's checkpoint
                buf = self.state[p].setdefault('momentum_buffer', torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - momentum)
                update = orthogonalize(p.grad.lerp(buf, momentum), group['ns_steps'], group['ns_dtype'])
                p.mul_(1 - lr * group['weight_decay'])
                p.add_(update, alpha=-lr * math.sqrt(max(1, p.size(0) / p.size(1))))
