"""
The baseline: nanoGPT's GPT, read as plain gradient descent with Lie-Trotter splitting.

A pre-norm block is one optimizer iteration on the token embeddings X (B, T, C):
    X <- X + a(X),   a(X) = CausalSelfAttention(LN(X))   the attention oracle
    X <- X + m(X),   m(X) = MLP(LN(X))                   the MLP oracle
CausalSelfAttention and MLP are the two oracles; model_nesterov.py imports them unchanged and
only changes how their outputs are combined. Everything else here is nanoGPT:
References: https://github.com/openai/gpt-2/blob/master/src/model.py (TF),
https://github.com/karpathy/nanoGPT/blob/master/model.py (PyTorch).
"""
import inspect
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's cannot turn off only the bias)."""
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    """The attention oracle a(.): takes the normalized tokens, returns the update (B, T, C)."""
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # flash attention on CUDA, a fused kernel on the CPU; the same kernel for every model arm
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The MLP oracle m(.): acts on each token alone, as the gradient of a per-token potential."""
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One gradient step with Lie-Trotter splitting: attention step, then MLP step at the new point."""
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # True: bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster


class GPT(nn.Module):
    block_class = Block  # one layer = one optimizer iteration; model_nesterov.py swaps in its own

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([self.block_class(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: https://paperswithcode.com/method/weight-tying
        self.transformer.wte.weight = self.lm_head.weight
        self.init_weights()

    def init_weights(self):
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 n_layer), two per layer
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Parameter count. Non-embedding: minus every position/velocity table; the token
        embedding stays in because it is also the output head (nanoGPT's convention)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= sum(m.weight.numel() for name, m in self.named_modules()
                            if isinstance(m, nn.Embedding) and name != 'transformer.wte')
        return n_params

    def embed(self, idx):
        b, t = idx.size()
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)  # (t)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (b, t, n_embd)

    def head(self, x, targets):
        """Final LayerNorm and tied head. Without targets only the last position's logits are
        computed (all a sampler needs); with targets, all of them and the mean loss."""
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # list index keeps the time dim
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def forward(self, idx, targets=None):
        x = self.embed(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.head(x, targets)

    def learned_scalars(self):
        """Per-layer learned step-size scalars, by name; the baseline has none."""
        return {}

    def crop_block_size(self, block_size):
        """Model surgery to use a smaller context than the one trained with."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        for name, m in self.named_modules():
            if isinstance(m, nn.Embedding) and name.endswith('pe'):  # position tables: wpe (and vpe)
                m.weight = nn.Parameter(m.weight[:block_size])

    def configure_optimizers(self, optimizer, weight_decay, learning_rate, betas, device_type,
                             muon_lr=0.02, muon_momentum=0.95, muon_weight_decay=0.0, scalar_lr_mult=5.0):
        """AdamW alone, or (the paper's recipe) Muon on the 2-D matrices inside the blocks and
        AdamW on the rest. Returns a list of optimizers; each param group remembers its peak
        learning rate in 'base_lr' so one schedule can scale them all."""
        assert optimizer in ('adamw', 'muon'), f"unknown optimizer {optimizer!r}"
        scalar_names = set(self.scalar_param_names())
        hidden, decay, no_decay, scalars = [], [], [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name in scalar_names:
                scalars.append(p)
            elif p.dim() < 2:
                no_decay.append(p)  # biases and norm gains
            elif optimizer == 'muon' and p.dim() == 2 and name.startswith('transformer.h.'):
                hidden.append(p)  # attention and MLP matrices; embeddings and the tied head stay on AdamW
            else:
                decay.append(p)  # embeddings (and, with AdamW, every matrix)
        groups = [dict(params=decay, weight_decay=weight_decay, base_lr=learning_rate),
                  dict(params=no_decay, weight_decay=0.0, base_lr=learning_rate)]
        if scalars:
            groups.append(dict(params=scalars, weight_decay=0.0, base_lr=learning_rate * scalar_lr_mult))
        for g in groups:
            g['lr'] = g['base_lr']
        # fused AdamW: one kernel per tensor and step instead of a dozen foreach ops. On CUDA as in
        # nanoGPT; on the CPU it halves the optimizer's time (AdamW step + clipping, default model:
        # 4.0 -> 2.0 ms, nesterov's 57 tensors 5.5 -> 2.4 ms, measured on 2 cores)
        use_fused = device_type in ('cuda', 'cpu') and 'fused' in inspect.signature(torch.optim.AdamW).parameters
        optimizers = [torch.optim.AdamW([g for g in groups if g['params']], betas=betas,
                                        **(dict(fused=True) if use_fused else {}))]
        if hidden:
            optimizers.append(torch.optim.Muon([dict(params=hidden, lr=muon_lr, base_lr=muon_lr)],
                                               lr=muon_lr, momentum=muon_momentum,
                                               weight_decay=muon_weight_decay))
        return optimizers

    def scalar_param_names(self):
        """Names of the unconstrained learned-scalar parameters, optimized in their own group."""
        return []

    def flops_per_token(self):
        """Forward+backward FLOPs per token, PaLM appendix B: 6N + 12 L H Q T. The momentum
        models add only elementwise work, so the same count holds for them."""
        cfg = self.config
        N = self.get_num_params()
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    def estimate_mfu(self, fwdbwd_per_iter, dt, device, dtype):
        """Model FLOPs utilization: achieved FLOP/s over the device's peak for this dtype.
        None where the peak is unknown (an unlisted GPU)."""
        peak = peak_flops(str(device), dtype)
        if peak is None or dt <= 0:
            return None
        flops_per_iter = self.flops_per_token() * self.config.block_size * fwdbwd_per_iter
        return flops_per_iter / dt / peak

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Continue idx (b, t) by max_new_tokens. temperature 0 is greedy (argmax)."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :].float()
            if temperature == 0:
                idx_next = torch.argmax(logits, dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float('Inf')
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# Dense peak FLOP/s from vendor datasheets (no sparsity): (bf16/fp16 tensor cores, fp32 non-tensor).
# Matched against torch.cuda.get_device_name(); the first match wins, so specific names come first.
GPU_PEAK_FLOPS = [
    ('H100 PCIe', 756e12, 51e12), ('H100', 989e12, 67e12), ('H200', 989e12, 67e12),
    ('H20', 148e12, 44e12), ('GH200', 989e12, 67e12), ('B200', 2250e12, 80e12),
    ('A100', 312e12, 19.5e12), ('A10G', 70e12, 31.2e12), ('A10', 125e12, 31.2e12),
    ('L40S', 362e12, 91.6e12), ('L4', 121e12, 30.3e12), ('V100', 125e12, 15.7e12),
]


def peak_flops(device, dtype):
    """Peak FLOP/s of `device` ('cuda', 'cuda:1', 'cpu', ...) in `dtype` ('bfloat16', 'float16', 'float32')."""
    if device.startswith('cuda'):
        name = torch.cuda.get_device_name(torch.device(device))
        for key, half, single in GPU_PEAK_FLOPS:
            if key in name:
                return single if dtype == 'float32' else half
        return None
    if device == 'cpu':
        return cpu_peak_flops(dtype)
    return None


@lru_cache(maxsize=None)
def cpu_peak_flops(dtype):
    """The CPU has no datasheet figure we can trust across machines, so measure it: the best
    FLOP/s of a large square matmul in `dtype` on all threads, a practical peak (~0.3 s)."""
    dt = {'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(dtype, torch.float32)
    n = 1024
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    best = float('inf')
    for i in range(6):
        t0 = time.perf_counter()
        a @ b
        if i > 0:  # the first call warms up the kernel
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best
