"""
Tokens as particles on the sphere: the self-attention dynamics (SA) and its unnormalized
variant (USA) of Geshkovski, Letrouit, Polyanskiy, Rigollet (arXiv 2312.10794), with the
authors' projected Euler step, RK4 on the sphere, the d = 2 angle form, cluster counting
and the scalar ODE of the orthogonal start. Equations: docs/papers.md, part 2.

Everything is batched: x is (B, n, d), B initial conditions of n tokens in R^d, and beta may
be a float or a (B,) tensor so that one call sweeps several inverse temperatures.
Library only; the experiments are in dynamics/exp_sphere.py:
$ python -m dynamics.exp_sphere --experiment all
"""
import math
import torch


def random_sphere(B, n, d, generator=None, dtype=torch.float64):
    """B sets of n i.i.d. uniform points on S^{d-1}, (B, n, d)."""
    x = torch.randn(B, n, d, generator=generator, dtype=dtype)
    return x / x.norm(dim=-1, keepdim=True)


def _beta(beta, x):
    # a (B,) sweep of beta broadcasts against the (B, n, n) logits
    return beta.to(x).view(-1, 1, 1) if torch.is_tensor(beta) else beta


def field(x, beta, normalized=True, Q=None, K=None, V=None):
    """dx/dt of SA (normalized=True) or USA (False). x (B, n, d) -> (B, n, d), tangent to the sphere."""
    n = x.shape[1]
    qx = x if Q is None else x @ Q.T
    kx = x if K is None else x @ K.T
    vx = x if V is None else x @ V.T
    logits = _beta(beta, x) * (qx @ kx.transpose(1, 2))  # (B, n, n), <Q x_i, K x_j>
    w = torch.softmax(logits, dim=-1) if normalized else torch.exp(logits) / n
    y = w @ vx  # (B, n, d)
    return y - (x * y).sum(-1, keepdim=True) * x  # P_x y = y - <x, y> x


def energy(x, beta):
    """USA interaction energy E_beta = (1 / (2 beta n^2)) sum_ij exp(beta <x_i, x_j>), (B,)."""
    n = x.shape[1]
    b = _beta(beta, x)
    return (torch.exp(b * (x @ x.transpose(1, 2))) / (2 * b * n * n)).sum((1, 2))


def rk4(f, y, dt, t=None):
    """One classical RK4 step of dy/dt = f(y), or of dy/dt = f(y, t) from time t when t is given."""
    F = (lambda z, s: f(z)) if t is None else f
    t = 0.0 if t is None else t
    k1 = F(y, t)
    k2 = F(y + dt / 2 * k1, t + dt / 2)
    k3 = F(y + dt / 2 * k2, t + dt / 2)
    k4 = F(y + dt * k3, t + dt)
    return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def step(x, dt, beta, method="euler", **kw):
    """One step on the sphere. 'euler' is the authors' x <- normalize(x + dt * field(x)).
    'rk4' integrates the ambient ODE, on which |x| = 1 is invariant, then projects back: the
    projection moves x by O(dt^5), so the step stays fourth order."""
    f = lambda z: field(z, beta, **kw)
    if method == "euler":
        return normalize(x + dt * f(x))
    if method == "rk4":
        return normalize(rk4(f, x, dt))
    raise ValueError(f"method must be 'euler' or 'rk4', got {method!r}")


def simulate(x0, t_final, dt, beta, method="euler", save_every=1, **kw):
    """Integrate from x0 (B, n, d) to t_final. Returns times (T,) and states (T, B, n, d)."""
    n_steps = round(t_final / dt)
    x, times, xs = x0, [0.0], [x0]
    for k in range(1, n_steps + 1):
        x = step(x, dt, beta, method, **kw)
        if k % save_every == 0 or k == n_steps:
            times.append(k * dt)
            xs.append(x)
    return torch.tensor(times, dtype=torch.float64), torch.stack(xs)


def angle_field(theta, beta, normalized=True):
    """d = 2 in angles: dtheta_i/dt = -sum_j w_ij sin(theta_i - theta_j), with
    w_ij = exp(beta cos(theta_i - theta_j)) / Z_i (SA) or / n (USA). theta (B, n) -> (B, n)."""
    n = theta.shape[1]
    diff = theta[:, :, None] - theta[:, None, :]  # (B, n, n)
    logits = _beta(beta, theta) * torch.cos(diff)
    w = torch.softmax(logits, dim=-1) if normalized else torch.exp(logits) / n
    return -(w * torch.sin(diff)).sum(-1)


def gram(x):
    """Pairwise inner products <x_i, x_j>, (B, n, n)."""
    return x @ x.transpose(-1, -2)


def offdiag(g):
    """The n(n-1)/2 entries above the diagonal of (..., n, n) -> (..., n(n-1)/2)."""
    i, j = torch.triu_indices(g.shape[-1], g.shape[-1], offset=1)
    return g[..., i, j]


def count_clusters(x, threshold=0.999):
    """Number of clusters per batch element, (B,). Tokens i, j are linked when
    <x_i, x_j> > threshold; clusters are the connected components of that graph
    (single linkage, so a chain of close tokens is one cluster)."""
    n = x.shape[1]
    reach = (gram(x) > threshold).to(x.dtype)  # (B, n, n), reflexive
    for _ in range(math.ceil(math.log2(max(n, 2)))):  # squaring doubles the path length covered
        reach = ((reach @ reach) > 0).to(x.dtype)
    # each component C contributes |C| tokens with row sum |C|: sum_i 1 / |C_i| counts components
    return (1.0 / reach.sum(-1)).sum(-1).round().long()


def gamma_ode(t_final, beta, n, normalized=True, dt=1e-3):
    """The common inner product gamma(t) of an orthogonal start (d >= n), from the scalar ODE
    of the spec, integrated by RK4 in float64. Returns times (T,) and gamma (T,) or (T, B)
    if beta is a (B,) tensor."""
    b = beta.double() if torch.is_tensor(beta) else torch.tensor(float(beta), dtype=torch.float64)

    def f(g):
        e = torch.exp(b * g)
        rate = 2 * e * (1 - g) * ((n - 1) * g + 1)
        return rate / (torch.exp(b) + (n - 1) * e) if normalized else rate / n

    n_steps = round(t_final / dt)
    g, gs = torch.zeros_like(b), [torch.zeros_like(b)]
    for _ in range(n_steps):
        g = rk4(f, g, dt)
        gs.append(g)
    return torch.arange(n_steps + 1, dtype=torch.float64) * dt, torch.stack(gs)
