"""
Shallow m-head transformer in the kernel regime, and an IndRNN to contrast it with.

    head i:  a_i(X) = X softmax(X^T W_i x_T),  h_i = tanh(U_i^T a_i)
    f(X)  =  (1 / sqrt(m)) sum_i c_i h_i

Parameters are a dict of tensors whose first axis is the head, so a whole width runs as one
batched computation and the per-head gradient is just a slice of the full gradient. Trained
by full-batch projected gradient descent that keeps every head in balls of radius rho / sqrt(m)
around its initialization (Arda, Cayci, Eryilmaz, arXiv 2601.16514).

Tested by: python -m pytest tests/test_kernel_regime.py tests/test_kernel_regime_rnn.py
"""
import math

import torch
from torch.func import grad, grad_and_value, jvp, vmap

# -----------------------------------------------------------------------------
# the two networks: per-head (per-unit) outputs c_i h_i(X), shape (n, m)

def random_signs(k, g, dtype):
    """k independent +-1 with equal odds."""
    return torch.randint(0, 2, (k,), generator=g).to(dtype) * 2 - 1

def init_transformer(m, d, seed, dtype=torch.float32, symmetric=True):
    """W_i ~ N(0,1)^{d x d}, U_i ~ N(0, I_d), c_i = +-1. symmetric: heads m/2.. mirror 0..m/2 with c negated."""
    g = torch.Generator().manual_seed(seed)
    k = m // 2 if symmetric else m
    W = torch.randn(k, d, d, generator=g, dtype=dtype)
    U = torch.randn(k, d, generator=g, dtype=dtype)
    c = random_signs(k, g, dtype)
    if not symmetric:
        return {'W': W, 'U': U, 'c': c}
    assert m % 2 == 0, "symmetric initialization needs an even number of heads"
    return {'W': torch.cat([W, W]), 'U': torch.cat([U, U]), 'c': torch.cat([c, -c])}

def transformer_heads(params, X):
    """X: (n, T, d) with the last token as the query -> (n, m)."""
    q = X[:, -1]                                                    # (n, d)
    Wq = torch.einsum('mab,nb->nma', params['W'], q)                # (n, m, d)
    att = torch.einsum('nta,nma->nmt', X, Wq).softmax(-1)           # (n, m, T)
    a = torch.einsum('nmt,ntd->nmd', att, X)                        # (n, m, d)
    h = torch.tanh(torch.einsum('nmd,md->nm', a, params['U']))      # (n, m)
    return params['c'] * h

def init_indrnn(m, d, seed, u_max=1.5, u_dist='sign', dtype=torch.float32):
    """W_in_i ~ N(0, I_d), c_i = +-1, mirrored like the transformer. Recurrent weight u_i:
    'sign': +-u_max with equal odds, the authors' init (u_max = 1.5: expansive, |u| > 1);
    'uniform': U(0, u_max), IndRNN's usual contractive range for u_max <= 1."""
    g = torch.Generator().manual_seed(seed)
    k = m // 2
    W_in = torch.randn(k, d, generator=g, dtype=dtype)
    if u_dist == 'sign':
        u = random_signs(k, g, dtype) * u_max
    elif u_dist == 'uniform':
        u = torch.rand(k, generator=g, dtype=dtype) * u_max
    else:
        raise ValueError(f"u_dist must be 'sign' or 'uniform', got {u_dist!r}")
    c = random_signs(k, g, dtype)
    return {'W_in': torch.cat([W_in, W_in]), 'u': torch.cat([u, u]), 'c': torch.cat([c, -c])}

def indrnn_heads(params, X):
    """h_t = tanh(W_in x_t + u * h_{t-1}), read out at the last step. X: (n, T, d) -> (n, m)."""
    h = X.new_zeros(X.shape[0], params['u'].shape[0])               # (n, m)
    for t in range(X.shape[1]):  # a loop over time, not samples: the recurrence is sequential
        h = torch.tanh(X[:, t] @ params['W_in'].T + params['u'] * h)
    return params['c'] * h

def network(heads_fn, params, X):
    """f(X) = (1/sqrt m) sum_i c_i h_i, shape (n,)."""
    out = heads_fn(params, X)                                       # (n, m)
    n, m = out.shape
    # add each head to its mirror first: c h + (-c) h is exactly 0 in floating point when the
    # two heads are computed identically, so f(X; theta_0) = 0 bit for bit (Intel Xeon); where
    # the einsum's kernels round mirrored rows differently (AMD EPYC) it is 0 to ~1e-8
    return out.view(n, 2, m // 2).sum(1).sum(1) / math.sqrt(m)

# -----------------------------------------------------------------------------
# projection, linearization, gradients

def head_norms(tree):
    """Per-head norm of every tensor in the dict: {key: (m,)}."""
    return {k: v.reshape(v.shape[0], -1).norm(dim=1) for k, v in tree.items()}

def project(params, params0, rho):
    """Project each head back into ||p_i - p_i^0|| <= rho[key] / sqrt(m), key by key."""
    m = next(iter(params0.values())).shape[0]
    delta = {k: params[k] - params0[k] for k in params}
    out = {}
    for k, norm in head_norms(delta).items():
        scale = (rho[k] / math.sqrt(m) / norm.clamp_min(1e-30)).clamp(max=1.0)
        out[k] = params0[k] + delta[k] * scale.view(-1, *[1] * (delta[k].dim() - 1))
    return out

def linearize(heads_fn, params0, delta, X):
    """<grad f(X; theta_0), delta>, one forward-mode pass, shape (n,)."""
    return jvp(lambda p: network(heads_fn, p, X), (params0,), (delta,))[1]

def linearization_error(heads_fn, params0, delta, X):
    """max_j |f(X_j; theta_0 + delta) - f(X_j; theta_0) - <grad f(X_j; theta_0), delta>|."""
    moved = {k: params0[k] + delta[k] for k in params0}
    first = linearize(heads_fn, params0, delta, X)
    rest = network(heads_fn, moved, X) - network(heads_fn, params0, X) - first
    return rest.abs().max().item()

def edge_direction(params0, rho, kind, X0=None, seed=0):
    """A displacement with every head exactly on the sphere of its ball (radius rho/sqrt m).
    'coherent' (needs one input X0, shape (T, d)): c_i up and (W_i, U_i) along grad h_i(X0), so
    the c-(W, U) cross term of every head is positive at X0 and the m second-order terms add up
    (the worst case the m^-1/2 bound is about; the (W, U)-(W, U) terms cancel between mirrors).
    'random': isotropic per head; the second-order terms then cancel between heads."""
    m = params0['c'].shape[0]
    if kind == 'coherent':
        hidden = lambda p: transformer_heads(dict(p, c=torch.ones_like(p['c'])), X0[None]).sum()
        raw = dict(grad(hidden)(params0), c=torch.ones_like(params0['c']))
    elif kind == 'random':
        g = torch.Generator().manual_seed(seed)
        raw = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params0.items()}
    else:
        raise ValueError(f"edge direction must be 'coherent' or 'random', got {kind!r}")
    norms = head_norms(raw)
    return {k: raw[k] * (rho[k] / math.sqrt(m) / norms[k]).view(-1, *[1] * (raw[k].dim() - 1))
            for k in raw}

def jacobian_norm(heads_fn, params, X):
    """Per-sample ||grad_theta f(X_j; theta)||, vmapped over samples, shape (n,)."""
    f1 = lambda p, x: network(heads_fn, p, x[None])[0]
    g = vmap(grad(f1), in_dims=(None, 0))(params, X)                # {key: (n, m, ...)}
    return sum(v.reshape(v.shape[0], -1).pow(2).sum(1) for v in g.values()).sqrt()

def tree_norm(tree):
    return math.sqrt(sum(v.pow(2).sum().item() for v in tree.values()))

# -----------------------------------------------------------------------------
# projected gradient descent

def train_pgd(heads_fn, params0, X, y, steps, lr, rho, X_val=None, y_val=None):
    """Full-batch GD on the mean squared error mean (f - y)^2, the authors' loss (F.mse_loss), so a
    step size means what it means in their code; each step is followed by the projection, or by
    none where rho is None (the authors' IndRNN contrast runs plain GD).
    Returns the final parameters and per-step histories (loss, gradient norm, val loss)."""
    loss_fn = lambda p, X, y: (network(heads_fn, p, X) - y).pow(2).mean()
    step_fn = grad_and_value(loss_fn)
    params = dict(params0)
    hist = {'loss': [], 'grad_norm': [], 'val_loss': []}
    for _ in range(steps):
        g, loss = step_fn(params, X, y)
        hist['loss'].append(loss.item())
        hist['grad_norm'].append(tree_norm(g))
        if X_val is not None:
            with torch.no_grad():
                hist['val_loss'].append(loss_fn(params, X_val, y_val).item())
        params = {k: params[k] - lr * g[k] for k in params}
        if rho is not None:
            params = project(params, params0, rho)
    return params, hist
