"""
Accelerated attention as inertial particle dynamics (SympFormer, Stein, Li, Steidl,
arXiv 2603.16535; equations as in docs/papers.md, part 2, and the authors' code,
github.com/ViktorAJStein/SympFormer, model.py).

Tokens carry a position x_i and a momentum y_i, (B, N, d) each for B initial conditions.
Each block is one Hamiltonian H(x, y) and the damped flow
    dx_i/dt = N dH/dy_i,   dy_i/dt = -alpha(t) y_i - N dH/dx_i,   alpha(t) = c_log / t + c_lin.
The force -N dH/dx is taken by autograd, so no hand-written force can disagree in sign with H.

linear attention, kernel K_ij = x_i^T A x_j, potential f(x) = -1/2 x^T V x:
    H = (1/2N^2) sum_ij K_ij (y_i . y_j) + (1/N) sum_i f(x_i)
  which for symmetric A is the spec's dx_i/dt = M_yx A x_i, dy_i/dt = -alpha y_i - A M_xy y_i + V x_i.
softmax attention, the authors' Hamiltonian (their TheorySoftmax* classes): E_ij = exp(beta x_i^T A x_j),
kernel density z_i = (1/N) sum_j E_ij, kinetic matrix B = -sym(V A^{-1}):
    H = (1/2N) sum_i y_i^T B y_i / z_i + (1/2 beta N^2) sum_ij (E_ij - 1)
  The kinetic energy is (1/2N) sum_i |y_i|_B^2 / z_i: positive semi-definite for every x as soon as B is,
  because z_i > 0. Its overdamped limit is row-softmax attention: with y = -N dH/dx / alpha,
  dx_i/dt = (1/alpha) sum_j softmax_j(beta x_i^T A x_j) V x_j when A and V A^{-1} are symmetric.
  The authors write B = +sym(V A^{-1}) and the potential with a minus sign; ours is minus theirs with
  y -> -y, the same positions, chosen so that B >= 0 where V A^{-1} <= 0, the descent case, as V <= 0
  is for the linear block's f (the spec's reference V = -Q, A = I gives B = Q and a potential
  minimized at x = 0, like f).
The classical block is row attention, one Euler step x_i <- x_i + h sum_j W_ij V x_j with
W = K / N (linear) or the row softmax of beta x_i^T A x_j.

An oracle call is one evaluation of the kernel matrix (one attention evaluation), kernel_matrix().
Library only; the experiments are in dynamics/exp_inertial.py:
$ python -m dynamics.exp_inertial --experiment all
"""
import math
import torch

from dynamics.sphere import rk4


def kernel_matrix(x, A, kind="linear", beta=1.0):
    """The oracle, (B, N, N): K_ij = x_i^T A x_j (linear) or E_ij = exp(beta x_i^T A x_j) (softmax)."""
    s = x @ A @ x.mT  # (B, N, N)
    if kind == "linear":
        return s
    if kind == "softmax":
        return torch.exp(beta * s)
    raise ValueError(f"kind must be 'linear' or 'softmax', got {kind!r}")


def attention(K, v, kind="linear"):
    """Row attention of values v (B, N, d) with kernel K: (1/N) K v, or the row-normalized
    E v / sum_j E_ij, which is softmax attention (E = exp of the scores)."""
    if kind == "linear":
        return K @ v / K.shape[-1]
    return K @ v / K.sum(-1, keepdim=True)  # no max-subtraction: in float64 exp holds scores up to 709


def kinetic_matrix(V, A):
    """B = -sym(V A^{-1}), (d, d): the softmax block's kinetic matrix; V = -B A for symmetric A, B."""
    VAinv = torch.linalg.solve(A.T, V.T).T
    return -(VAinv + VAinv.T) / 2


def potential(x, V, A=None, kind="linear", beta=1.0, K=None):
    """The block's potential energy, (B,). linear: (1/N) sum_i f(x_i), f(x) = -1/2 x^T V x
    (with V = -Q: E = (1/2N) sum x^T Q x). softmax: (1/2 beta N^2) sum_ij (E_ij - 1), zero at x = 0."""
    N = x.shape[1]
    if kind == "linear":
        return -0.5 * ((x @ V) * x).sum((1, 2)) / N
    K = kernel_matrix(x, A, kind, beta) if K is None else K
    return (K - 1).sum((1, 2)) / (2 * beta * N * N)


def hamiltonian(K, x, y, V, A, kind="linear", beta=1.0):
    """H at (x, y) for the kernel matrix K = kernel_matrix(x), (B,)."""
    N = x.shape[1]
    if kind == "linear":
        kinetic = ((K @ y) * y).sum((1, 2)) / (2 * N * N)  # (1/2N^2) sum_ij K_ij y_i . y_j
    else:
        z = K.mean(-1)  # (B, N), the kernel density at x_i
        kinetic = (((y @ kinetic_matrix(V, A)) * y).sum(-1) / z).sum(-1) / (2 * N)
    return kinetic + potential(x, V, A, kind, beta, K)


def energy(x, y, V, A, kind="linear", beta=1.0):
    """H(x, y), for measuring: not an oracle call of the dynamics."""
    return hamiltonian(kernel_matrix(x, A, kind, beta), x, y, V, A, kind, beta)


def forces(x, y, V, A, kind="linear", beta=1.0):
    """One oracle call. Returns K(x) (B, N, N), detached for reuse in the drift, and the
    conservative force G = -N dH/dx (B, N, d) at (x, y), by autograd."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        K = kernel_matrix(x, A, kind, beta)
        (dHdx,) = torch.autograd.grad(hamiltonian(K, x, y, V, A, kind, beta).sum(), x)
    return K.detach(), -x.shape[1] * dHdx


def drift(K, y, V, A, kind="linear"):
    """N dH/dy, (B, N, d): (1/N) sum_j sym(K)_ij y_j, or B y_i / z_i. H is quadratic in y,
    so the drift reuses the kernel matrix of the force."""
    if kind == "linear":
        return 0.5 * (K + K.mT) @ y / y.shape[1]
    return y @ kinetic_matrix(V, A) / K.mean(-1, keepdim=True)


def damping(t, h, c_log, c_lin):
    """sigma = exp(-int_t^{t+h} alpha) = (t / (t + h))^c_log * exp(-c_lin h), the exact damping."""
    return (t / (t + h)) ** c_log * math.exp(-c_lin * h)


def classical_step(x, t, h, V, A, kind="linear", beta=1.0):
    """Explicit Euler on dx_i/dt = sum_j W_ij V x_j (row attention): one oracle call."""
    return x + h * attention(kernel_matrix(x, A, kind, beta), x @ V.T, kind)


def presymplectic_step(x, y, t, h, V, A, kind="linear", beta=1.0, c_log=3.0, c_lin=0.0):
    """Kick, damp, drift: y <- sigma (y + h G(x, y)); x <- x + h F(x, y_new). The drift needs
    the kernel at the old x only, so the step costs one oracle call, like the classical block."""
    K, G = forces(x, y, V, A, kind, beta)
    y = damping(t, h, c_log, c_lin) * (y + h * G)
    return x + h * drift(K, y, V, A, kind), y


def strang_step(x, y, t, h, V, A, kind="linear", beta=1.0, c_log=3.0, c_lin=0.0):
    """Second order: exact damping for h/2, explicit midpoint on the conservative flow, exact
    damping for h/2. H is not separable (the kinetic term depends on x), so the explicit
    second-order schemes need a second kernel evaluation: two oracle calls per step."""
    y = damping(t, h / 2, c_log, c_lin) * y
    K, G = forces(x, y, V, A, kind, beta)
    xm, ym = x + h / 2 * drift(K, y, V, A, kind), y + h / 2 * G
    K, G = forces(xm, ym, V, A, kind, beta)
    x, y = x + h * drift(K, ym, V, A, kind), y + h * G
    return x, damping(t + h / 2, h / 2, c_log, c_lin) * y


def run(x0, n_steps, h, V, A, block="accelerated", scheme="presymplectic", kind="linear", beta=1.0,
        c_log=3.0, c_lin=0.0, t0=None, y0=None):
    """n_steps layers from x0 (B, N, d). block: 'classical' or 'accelerated' (its damping set by
    c_log, c_lin; t_k = t0 + k h with t0 = h by default, so that alpha = c_log / t is finite).
    Returns per step (n_steps + 1, B) the spec's measure E = (1/N) sum_i f(x_i) (for both kernels),
    the block's energy H (its potential for the classical block) and max_i |y_i|; and the final x, y."""
    t0 = h if t0 is None else t0
    x = x0
    y = torch.zeros_like(x0) if y0 is None else y0
    step = presymplectic_step if scheme == "presymplectic" else strang_step
    trace = {"E": [], "H": [], "y": []}
    for k in range(n_steps + 1):
        trace["E"].append(potential(x, V))
        trace["H"].append(energy(x, y, V, A, kind, beta))
        trace["y"].append(y.norm(dim=-1).amax(-1))
        if k == n_steps:
            break
        t = t0 + k * h
        if block == "classical":
            x = classical_step(x, t, h, V, A, kind, beta)
        else:
            x, y = step(x, y, t, h, V, A, kind, beta, c_log, c_lin)
    return {name: torch.stack(v) for name, v in trace.items()}, x, y
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
    return torch.stack([drift(K, y, V, A, kind), G - (c_log / t + c_lin) * y])


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
