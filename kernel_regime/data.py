"""
Data for the kernel-regime experiments: a teacher from the infinite-width linearized
transformer, and AR(L) series windows for the recurrent contrast.

Teacher: f*(X) = E_phi <grad_phi g(X; phi), v(phi)> with g = c tanh(U^T a(X)) one random head and
the transport map v(phi) = clip_nu( sum_r alpha_r grad_phi g(Xa_r; phi) ) over R anchor inputs
Xa_r, so f* is (up to the clip) sum_r alpha_r K(X, Xa_r) with K the tangent kernel of one head.
The expectation is a Monte Carlo average over M random heads, chunked over heads and samples so
memory stays bounded at any T. The same average over the m heads of a student is the m-head
random-feature model whose distance to f* is the approximation error; since v is odd in the mirror
(c -> -c flips its (W, U) part), a head and its mirror add the same term, so a mirrored student's
m heads are m/2 independent draws.

Tested by: python -m pytest tests/test_kernel_regime.py tests/test_kernel_regime_rnn.py
"""

import math

import torch
from torch.func import grad, jvp

from kernel_regime.model import head_norms, init_transformer, transformer_heads

def tokens(n, T, d, seed, dtype=torch.float32):
    """X entries iid N(0,1), each token rescaled to norm <= 1. Shape (n, T, d)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, T, d, generator=g, dtype=dtype)
    return X / X.norm(dim=-1, keepdim=True).clamp_min(1.0)

def make_teacher(d, T, R=16, M=2048, nu=3.0, seed=0, dtype=torch.float32):
    """Anchors, mixture weights and M Monte Carlo heads (drawn iid, not mirrored)."""
    g = torch.Generator().manual_seed(seed + 7919)
    return {'anchors': tokens(R, T, d, seed + 104729, dtype),          # (R, T, d)
            'alpha': torch.randn(R, generator=g, dtype=dtype),        # (R,)
            'heads': init_transformer(M, d, seed + 1299709, dtype, symmetric=False),
            'nu': nu}

def transport(params, teacher):
    """v(phi_i) for every head in params: per-head gradient of sum_r alpha_r g_i(Xa_r), clipped
    to norm nu (over W, U, c together). Heads are independent, so one backward pass of the sum
    over heads gives all of them."""
    field = lambda p: (teacher['alpha'] @ transformer_heads(p, teacher['anchors'])).sum()
    v = grad(field)(params)
    norm = sum(n.pow(2) for n in head_norms(v).values()).sqrt()     # (m,)
    scale = (teacher['nu'] / norm.clamp_min(1e-30)).clamp(max=1.0)
    return {k: t * scale.view(-1, *[1] * (t.dim() - 1)) for k, t in v.items()}

def random_feature_model(params, teacher, X, head_chunk=256, budget=2 ** 22):
    """(1/m) sum_i <grad g_i(X), v(phi_i)> over the heads in params, shape (n,). With the
    teacher's M heads this is f*; with a student's initial heads it is f_lin,m. Chunks keep the
    (samples, heads, T) attention tensor under `budget` elements."""
    m = params['c'].shape[0]
    n, T, _ = X.shape
    sample_chunk = max(1, budget // (head_chunk * T))
    out = X.new_zeros(n)
    for i in range(0, m, head_chunk):
        p = {k: t[i:i + head_chunk] for k, t in params.items()}
        v = transport(p, teacher)
        for j in range(0, n, sample_chunk):
            Xj = X[j:j + sample_chunk]
            out[j:j + sample_chunk] += jvp(lambda q: transformer_heads(q, Xj).sum(1), (p,), (v,))[1]
    return out / m

def teacher_data(n, d, T, teacher, seed, dtype=torch.float32):
    """n inputs and their teacher labels y = f*(X)."""
    X = tokens(n, T, d, seed, dtype)
    return X, random_feature_model(teacher['heads'], teacher, X)

def ar_windows(n, L, seed, d=17, phi=0.9, noise=0.1 ** 0.5, period=32.0, unit_tokens=False,
               dtype=torch.float32):
    """The authors' AR(L) forecasting data: windows of T = L + 1 values of x_t = phi x_{t-L} + eps
    (eps ~ N(0, noise^2)) and the next value as target, so the useful value sits L - 1 steps before
    the last token. Token t is (x_t, sin(w_k t), cos(w_k t)) for k < (d - 1) / 2, w_k = 2 pi /
    (period 2^k): position lets attention find the lag. As in their comparison the tokens are not
    rescaled (norm about 3 at d = 17) unless unit_tokens (the theory's ||x_t|| <= 1), and the
    targets are z-scored over the set.
    Returns X (n, T, d), y (n,), and the mean squared error of the best predictor phi x_{t+1-L}."""
    assert d % 2 == 1, "d is one value channel plus sin/cos pairs, so it must be odd"
    g = torch.Generator().manual_seed(seed)
    T = L + 1
    x = torch.empty(n + T, dtype=torch.float64)
    # start each of the L interleaved AR(1) chains at its stationary law, so no burn-in is needed
    # (the authors burn in 800 steps from N(0, 1), which at L = 96 is only 8 steps per chain)
    x[:L] = torch.randn(L, generator=g, dtype=torch.float64) * noise / (1 - phi ** 2) ** 0.5
    eps = torch.randn(n + T, generator=g, dtype=torch.float64) * noise
    for t in range(L, n + T):  # sequential by definition of the series
        x[t] = phi * x[t - L] + eps[t]
    win = x.unfold(0, T + 1, 1)[:n]                                 # (n, T + 1)
    freq = 2 * math.pi / (period * 2.0 ** torch.arange((d - 1) // 2, dtype=torch.float64))
    angle = torch.arange(T, dtype=torch.float64)[:, None] * freq    # (T, (d - 1) / 2)
    code = torch.cat([angle.sin(), angle.cos()], 1)                 # (T, d - 1)
    X = torch.cat([win[:, :T, None], code.expand(n, T, d - 1)], 2)  # (n, T, d)
    if unit_tokens:
        X = X / X.norm(dim=-1, keepdim=True).clamp_min(1.0)
    mean, std = win[:, T].mean(), win[:, T].std(unbiased=False)
    y = (win[:, T] - mean) / std
    return X.to(dtype), y.to(dtype), noise ** 2 / std.item() ** 2
