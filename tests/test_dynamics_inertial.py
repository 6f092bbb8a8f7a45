"""
Facts about accelerated attention as inertial dynamics (dynamics/inertial.py), float64, fixed seeds.
$ pytest tests/test_dynamics_inertial.py
"""
import pytest
import torch

import dynamics.inertial as inertial
from dynamics.inertial import (classical_step, drift, energy, forces, moment_field, moments, particle_field,
                               presymplectic_step, reference_setup, run, solve_moments, steps_to_target,
                               strang_step)
from dynamics.sphere import rk4


pytestmark = pytest.mark.usefixtures('one_thread')  # tiny systems: threads cost more than they save


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def small_problem(B=3, N=20, d=3, seed=0):
    """Random x, y, a symmetric A and a symmetric negative definite V."""
    g = gen(seed)
    x = torch.randn(B, N, d, generator=g, dtype=torch.float64)
    y = torch.randn(B, N, d, generator=g, dtype=torch.float64)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    v = torch.randn(d, d, generator=g, dtype=torch.float64)
    return x, y, (a + a.T) / 2 + d * torch.eye(d, dtype=torch.float64), -(v @ v.T) - torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["linear", "softmax"])
def test_equal_oracle_calls_per_step(kind):
    x, y, A, V = small_problem()
    counts = {}
    for name, do in [("classical", lambda: classical_step(x, 1.0, 0.1, V, A, kind)),
                     ("presymplectic", lambda: presymplectic_step(x, y, 1.0, 0.1, V, A, kind)),
                     ("strang", lambda: strang_step(x, y, 1.0, 0.1, V, A, kind))]:
        before = inertial.n_oracle_calls
        for _ in range(7):
            do()
        counts[name] = (inertial.n_oracle_calls - before) / 7
    assert counts == {"classical": 1, "presymplectic": 1, "strang": 2}


def test_linear_force_from_autograd_is_the_spec_closed_form():
    x, y, A, V = small_problem()
    Mxx, Myx, Myy = moments(x, y).unbind(1)
    K, G = forces(x, y, V, A)
    # spec: dy_i/dt = -A M_xy y_i + V x_i (undamped), dx_i/dt = M_yx A x_i, classical V M_xx A x_i
    assert torch.allclose(G, -(y @ Myx) @ A.T + x @ V.T, atol=1e-12)  # (A M_xy y_i)^T = y_i^T M_yx A^T
    assert torch.allclose(drift(K, y), x @ (Myx @ A).mT, atol=1e-12)
    assert torch.allclose(classical_step(x, 1.0, 1.0, V, A) - x, x @ (V @ Mxx @ A).mT, atol=1e-12)


def test_accelerated_reaches_target_in_half_the_classical_steps():
    # spec reference: N = 256, d = 4, A = I, V = -Q, h = 0.1, E target 2.28e-2; ~400 vs ~129 steps
    x0, V, A = reference_setup(2, generator=gen())
    E_cl, _, _ = run(x0, 450, 0.1, V, A, block="classical")
    E_acc, _, _ = run(x0, 450, 0.1, V, A, c_log=3.0, c_lin=0.0, t0=1.0)
    n_cl, n_acc = steps_to_target(E_cl, 2.28e-2), steps_to_target(E_acc, 2.28e-2)
    assert ((380 <= n_cl) & (n_cl <= 420)).all()
    assert ((n_acc > 0) & (2 * n_acc <= n_cl)).all()
    assert ((120 <= n_acc) & (n_acc <= 140)).all()


@pytest.mark.parametrize("scheme", ["presymplectic", "strang"])
def test_affine_structure_is_preserved(scheme):
    # initial momentum affine in x: every step applies one shared affine map to all tokens,
    # so [X_k, Y_k] is exactly [X_0, 1] @ W for some W
    x0, y, A, V = small_problem(B=2, N=50, d=3)
    g = gen(1)
    y0 = x0 @ torch.randn(3, 3, generator=g, dtype=torch.float64) + torch.randn(3, generator=g, dtype=torch.float64)
    design = torch.cat([x0, torch.ones_like(x0[..., :1])], -1)  # (B, N, d + 1)
    for kind, affine in [("linear", True), ("softmax", False)]:
        _, x, y = run(x0, 30, 0.02, V, A, scheme=scheme, kind=kind, y0=y0, t0=1.0)
        target = torch.cat([x, y], -1)  # (B, N, 2d)
        W = torch.linalg.lstsq(design, target).solution
        rel = (design @ W - target).norm() / target.norm()
        assert (rel < 1e-13) if affine else (rel > 1e-6)  # softmax attention is not affine


def test_moment_ode_is_exact_at_roundoff():
    # d/dt of the particle moments equals the matrix ODE at any state (not only affine ones)
    x, y, A, V = small_problem()
    z = torch.stack([x, y])
    dx, dy = particle_field(z, 2.0, V, A, c_log=3.0, c_lin=0.5).unbind(0)
    N = x.shape[1]
    dM = torch.stack([dx.mT @ x + x.mT @ dx, dy.mT @ x + y.mT @ dx, dy.mT @ y + y.mT @ dy], 1) / N
    assert (dM - moment_field(moments(x, y), 2.0, V, A, c_log=3.0, c_lin=0.5)).abs().max() < 1e-12


def test_moments_follow_the_matrix_ode():
    x0, V, A = reference_setup(2, N=64, generator=gen())
    z = torch.stack([x0, torch.zeros_like(x0)])  # (2, B, N, d)
    _, Ms = solve_moments(moments(*z), 1.0, 5.0, 0.01, V, A)  # (T, B, 3, d, d)
    for k in range(400):  # the particles, by the same RK4 from t = 1 to 5
        z = rk4(lambda w, t: particle_field(w, t, V, A), z, 0.01, 1.0 + k * 0.01)
    M = moments(*z)
    assert (Ms[-1] - M).abs().max() < 1e-9
    assert (M - Ms[0]).abs().max() > 0.1  # the moments moved


@pytest.mark.parametrize("kind", ["linear", "softmax"])
def test_undamped_energy_drift_order(kind):
    # alpha = 0: H is conserved by the flow; its drift over t in [0, 2] shrinks like h for
    # presymplectic Euler and like h^2 for the second-order (Strang + midpoint) scheme
    x0, V, A = reference_setup(2, N=16, generator=gen())
    y0 = 0.5 * torch.randn(x0.shape, generator=gen(1), dtype=torch.float64)
    H0 = energy(x0, y0, V, A, kind)
    for scheme, order in [("presymplectic", 1), ("strang", 2)]:
        drifts = []
        for h in (0.02, 0.01, 0.005):
            x, y, worst = x0, y0, torch.zeros(2, dtype=torch.float64)
            step = presymplectic_step if scheme == "presymplectic" else strang_step
            for _ in range(round(2.0 / h)):
                x, y = step(x, y, 1.0, h, V, A, kind, c_log=0.0, c_lin=0.0)
                worst = torch.maximum(worst, (energy(x, y, V, A, kind) - H0).abs())
            drifts.append(worst)
        ratios = torch.stack([drifts[0] / drifts[1], drifts[1] / drifts[2]])
        assert ((ratios > 2 ** order * 0.8) & (ratios < 2 ** order * 1.25)).all(), (scheme, ratios)
