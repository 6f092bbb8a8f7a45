"""
Data for the kernel-regime experiments: a teacher from the infinite-width linearized
transformer, and AR(L) series windows for the recurrent contrast.

Teacher: f*(X) = E_phi <grad_phi g(X; phi), v(phi)> with g = c tanh(U^T a(X)) one random head and
the transport map v(phi) = clip_nu( sum_r alpha_r grad_phi g(Xa_r; phi) ) over R anchor inputs
Xa_r, so f* is (up to the clip) sum_r alpha_r K(X, Xa_r) with K the tangent kernel of one head.
The expectation is a Monte Carlo average over M random heads, chunked over heads and samples so
memory stays bounded at any T. The same average over the m heads of a student is the m-head
random-feature model whose distance to f* is the approximation error.

Tested by: python -m pytest tests/test_kernel_regime.py
"""

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

def ar_windows(n, L, d, seed, phi=0.9, noise=1.0, dtype=torch.float32):
    """Windows of an AR(L) series x_t = phi x_{t-L} + noise: T = L + 1 tokens (x_t, position code)
    and the next value as target, so the useful input sits L - 1 steps before the last token.
    The series is scaled to std 0.5 and the position code to norm 0.5, so tokens have norm <= ~1."""
    g = torch.Generator().manual_seed(seed)
    T = L + 1
    burn = 20 * L
    eps = torch.randn(burn + n + T, generator=g, dtype=torch.float64) * noise
    x = torch.zeros_like(eps)
    for t in range(L, len(x)):  # sequential by definition of the series
        x[t] = phi * x[t - L] + eps[t]
    x = x[burn:]
    x = 0.5 * x / x.std()
    win = x.unfold(0, T + 1, 1)[:n]                                 # (n, T + 1)
    # sinusoidal position code in d - 1 dims with geometric wavelengths, as in transformers
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    freq = T ** (-torch.arange((d - 1 + 1) // 2, dtype=torch.float64) / max(1, (d - 1) // 2))
    code = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], 1)[:, :d - 1]
    code = 0.5 * code / code.norm(dim=1, keepdim=True)              # (T, d - 1)
    X = torch.cat([win[:, :T, None], code.expand(n, T, d - 1)], 2)  # (n, T, d)
    X = X / X.norm(dim=-1, keepdim=True).clamp_min(1.0)
    bayes = 0.5 * (1 - phi ** 2) * 0.25  # (1/2) MSE of the best predictor phi * x_{t+1-L}
    return X.to(dtype), win[:, T].to(dtype), bayes
