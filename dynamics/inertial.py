"""
Accelerated attention as inertial particle dynamics (SympFormer, Stein, Li, Steidl,
arXiv 2603.16535; equations as in shared/spec/particles.md, part 2).

Tokens carry a position x_i and a momentum y_i, (B, N, d) each for B initial conditions.
Everything derives from one Hamiltonian with kernel K (linear x^T A y, or softmax attention)
and potential f(x) = -1/2 x^T V x:
    H = (1/2N^2) sum_ij K(x_i, x_j) (y_i . y_j) + (1/N) sum_i f(x_i)
    dx_i/dt = N dH/dy_i,   dy_i/dt = -alpha(t) y_i - N dH/dx_i,   alpha(t) = c_log / t + c_lin.
The force -N dH/dx is taken by autograd, so the linear and the softmax blocks share one code
path and cannot disagree in sign. For the linear kernel with symmetric A this is the spec's
    dx_i/dt = M_yx A x_i,   dy_i/dt = -alpha y_i - A M_xy y_i + V x_i
(a non-symmetric A enters H only through its symmetric part). The classical block is the
first-order flow dx_i/dt = (1/N) sum_j K(x_i, x_j) V x_j (= V M_xx A x_i for the linear kernel).

An oracle call is one evaluation of the kernel matrix K(X) (one attention evaluation);
`n_oracle_calls` counts them. Library only; the experiments are in dynamics/exp_inertial.py:
$ python -m dynamics.exp_inertial --experiment all
"""
import math
import torch

from dynamics.sphere import rk4

n_oracle_calls = 0  # incremented by oracle(); read it before and after to count a run's calls


def kernel_matrix(x, A, kind="linear", beta=1.0):
    """K_ij = K(x_i, x_j), (B, N, N). softmax: N * softmax_j(beta x_i^T A x_j), scaled by N so
    that (1/N) sum_j K_ij y_j is the attention output, as (1/N) sum_j (x_i^T A x_j) y_j is."""
    s = x @ A @ x.transpose(1, 2)  # (B, N, N)
    if kind == "linear":
        return s
    if kind == "softmax":
        return x.shape[1] * torch.softmax(beta * s, dim=-1)
    raise ValueError(f"kind must be 'linear' or 'softmax', got {kind!r}")


def oracle(x, A, kind="linear", beta=1.0):
    global n_oracle_calls
    n_oracle_calls += 1
    return kernel_matrix(x, A, kind, beta)


def potential(x, V):
    """(1/N) sum_i f(x_i) with f(x) = -1/2 x^T V x, (B,). With V = -Q: E = (1/2N) sum x^T Q x."""
    return -0.5 * ((x @ V) * x).sum((1, 2)) / x.shape[1]


def hamiltonian(K, x, y, V):
    """H for a given kernel matrix K (B, N, N), (B,)."""
    N = x.shape[1]
    return (K * (y @ y.transpose(1, 2))).sum((1, 2)) / (2 * N * N) + potential(x, V)


def energy(x, y, V, A, kind="linear", beta=1.0):
    """H(x, y), for measuring: not an oracle call of the dynamics."""
    return hamiltonian(kernel_matrix(x, A, kind, beta), x, y, V)


def forces(x, y, V, A, kind="linear", beta=1.0):
    """One oracle call. Returns K(x) (B, N, N), detached for reuse in the drift, and the
    conservative force G = -N dH/dx (B, N, d) at (x, y), by autograd."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        K = oracle(x, A, kind, beta)
        (dHdx,) = torch.autograd.grad(hamiltonian(K, x, y, V).sum(), x)
    return K.detach(), -x.shape[1] * dHdx


def drift(K, y):
    """N dH/dy = (1/N) sum_j sym(K)_ij y_j, (B, N, d): H is quadratic in y, so this reuses K."""
    return 0.5 * (K + K.transpose(1, 2)) @ y / y.shape[1]


def damping(t, h, c_log, c_lin):
    """sigma = exp(-int_t^{t+h} alpha) = (t / (t + h))^c_log * exp(-c_lin h), the exact damping."""
    return (t / (t + h)) ** c_log * math.exp(-c_lin * h)


def classical_step(x, t, h, V, A, kind="linear", beta=1.0):
    """Explicit Euler on dx_i/dt = (1/N) sum_j K_ij V x_j: one oracle call."""
    K = oracle(x, A, kind, beta)
    return x + h * drift(K, x @ V.T)


def presymplectic_step(x, y, t, h, V, A, kind="linear", beta=1.0, c_log=3.0, c_lin=0.0):
    """Kick, damp, drift: y <- sigma (y + h G(x, y)); x <- x + h F(x, y_new). The drift needs
    the kernel at the old x only, so the step costs one oracle call, like the classical block."""
    K, G = forces(x, y, V, A, kind, beta)
    y = damping(t, h, c_log, c_lin) * (y + h * G)
    return x + h * drift(K, y), y


def strang_step(x, y, t, h, V, A, kind="linear", beta=1.0, c_log=3.0, c_lin=0.0):
    """Second order: exact damping for h/2, explicit midpoint on the conservative flow, exact
    damping for h/2. H is not separable (the kinetic term depends on x), so the explicit
    second-order schemes need a second kernel evaluation: two oracle calls per step."""
    y = damping(t, h / 2, c_log, c_lin) * y
    K, G = forces(x, y, V, A, kind, beta)
    xm, ym = x + h / 2 * drift(K, y), y + h / 2 * G
    K, G = forces(xm, ym, V, A, kind, beta)
    x, y = x + h * drift(K, ym), y + h * G
    return x, damping(t + h / 2, h / 2, c_log, c_lin) * y


def run(x0, n_steps, h, V, A, block="accelerated", scheme="presymplectic", kind="linear", beta=1.0,
        c_log=3.0, c_lin=0.0, t0=None, y0=None):
    """n_steps layers from x0 (B, N, d). block: 'classical' or 'accelerated' (its damping set by
    c_log, c_lin; t_k = t0 + k h with t0 = h by default, so that alpha = c_log / t is finite).
    Returns the potential energy after each step (n_steps + 1, B) and the final x, y."""
    t0 = h if t0 is None else t0
    x = x0
    y = torch.zeros_like(x0) if y0 is None else y0
    step = presymplectic_step if scheme == "presymplectic" else strang_step
    E = [potential(x, V)]
    for k in range(n_steps):
        t = t0 + k * h
        if block == "classical":
            x = classical_step(x, t, h, V, A, kind, beta)
        else:
            x, y = step(x, y, t, h, V, A, kind, beta, c_log, c_lin)
        E.append(potential(x, V))
    return torch.stack(E), x, y


def moments(x, y):
    """M_xx, M_yx, M_yy with M_ab = (1/N) sum_i a_i b_i^T, stacked (B, 3, d, d)."""
    N = x.shape[1]
    return torch.stack([x.mT @ x, y.mT @ x, y.mT @ y], 1) / N


def moment_field(M, t, V, A, c_log=3.0, c_lin=0.0):
    """The closed matrix ODE of the second moments under the linear accelerated block,
    M (B, 3, d, d) -> dM/dt (B, 3, d, d)."""
    alpha = c_log / t + c_lin
    Mxx, Myx, Myy = M.unbind(1)
    Mxy, At = Myx.mT, A.T
    dxx = Myx @ A @ Mxx + Mxx @ At @ Mxy
    dyx = -alpha * Myx - A @ Mxy @ Myx + V @ Mxx + Myx @ At @ Mxy
    dyy = -2 * alpha * Myy - A @ Mxy @ Myy - Myy @ Myx @ At + V @ Mxy + Myx @ V.T
    return torch.stack([dxx, dyx, dyy], 1)


def particle_field(z, t, V, A, kind="linear", beta=1.0, c_log=3.0, c_lin=0.0):
    """The continuous accelerated block as one vector field on z = stack(x, y), (2, B, N, d),
    for a reference RK4 solution."""
    x, y = z.unbind(0)
    K, G = forces(x, y, V, A, kind, beta)
    return torch.stack([drift(K, y), G - (c_log / t + c_lin) * y])


def solve_moments(M0, t0, t_final, dt, V, A, c_log=3.0, c_lin=0.0):
    """RK4 on the moment ODE from time t0. Returns times (T,) and M (T, B, 3, d, d)."""
    n_steps = round((t_final - t0) / dt)
    M, Ms = M0, [M0]
    for k in range(n_steps):
        M = rk4(lambda m, t: moment_field(m, t, V, A, c_log, c_lin), M, dt, t0 + k * dt)
        Ms.append(M)
    return t0 + dt * torch.arange(n_steps + 1, dtype=torch.float64), torch.stack(Ms)


def reference_setup(B, N=256, d=4, generator=None, dtype=torch.float64):
    """The spec's reference run: A = I, V = -Q, Q = diag(1, .5, .2, .05) (extended by 0.05 when
    d > 4), x_0 ~ N(0, I). Returns x0 (B, N, d), V, A."""
    q = torch.tensor([1.0, 0.5, 0.2, 0.05] + [0.05] * max(0, d - 4), dtype=dtype)[:d]
    x0 = torch.randn(B, N, d, generator=generator, dtype=dtype)
    return x0, -torch.diag(q), torch.eye(d, dtype=dtype)


def steps_to_target(E, target):
    """First step index where E (T, B) is <= target, per batch element (B,); -1 if never."""
    below = E <= target
    first = below.float().argmax(0)
    return torch.where(below.any(0), first, torch.full_like(first, -1))
