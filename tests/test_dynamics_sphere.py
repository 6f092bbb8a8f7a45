"""
Facts about the token dynamics on the sphere (dynamics/sphere.py), float64, fixed seeds.
$ pytest tests/test_dynamics_sphere.py
"""
import math
import pytest
import torch

from dynamics.sphere import (angle_field, count_clusters, energy, field, gamma_ode, gram, offdiag,
                             random_sphere, rk4, simulate, step)


pytestmark = pytest.mark.usefixtures('one_thread')  # tiny systems: threads cost more than they save


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_field_is_tangent_and_general_qkv_reduces_to_identity():
    x = random_sphere(4, 10, 5, gen())
    I = torch.eye(5, dtype=torch.float64)
    for normalized in (True, False):
        v = field(x, 2.0, normalized)
        assert (x * v).sum(-1).abs().max() < 1e-14
        assert torch.allclose(field(x, 2.0, normalized, Q=I, K=I, V=I), v, atol=1e-15)
    # general Q, K, V enter as <Q x_i, K x_j> and V x_j: scaling K by c equals scaling beta by c
    Q = torch.randn(5, 5, generator=gen(1), dtype=torch.float64)
    assert torch.allclose(field(x, 2.0, Q=Q, K=3 * I), field(x, 6.0, Q=Q), atol=1e-14)


@pytest.mark.parametrize("method,dt", [("rk4", 0.01), ("euler", 0.01)])
def test_usa_energy_never_decreases(method, dt):
    # USA is stiff near consensus (rate 2 e^beta, ~109 at beta = 4): dt = 0.01 keeps both schemes stable
    beta = torch.tensor([0.5, 1.0, 4.0]).repeat_interleave(4)  # (12,)
    x0 = random_sphere(12, 16, 3, gen())
    _, xs = simulate(x0, 15.0, dt, beta, method, normalized=False)
    E = torch.stack([energy(x, beta) for x in xs])  # (T, 12)
    assert (E.diff(dim=0) >= -1e-13 * E[:-1]).all()
    assert (E[-1] > E[0] * 1.01).all()  # and it really moves



def test_usa_energy_by_hand_and_as_the_potential_of_the_flow():
    """E_beta = (1 / (2 beta n^2)) sum_ij exp(beta <x_i, x_j>): two orthogonal tokens at beta = 2
    give (2 e^2 + 2) / 16; three tokens at one point at beta = 1 give 9 e / 18 = e / 2. And USA is
    the flow of n P_x grad E (the 1/2 cancels the two places x_i enters the double sum)."""
    x = torch.eye(2, dtype=torch.float64)[None]  # (1, 2, 2)
    assert energy(x, 2.0).item() == pytest.approx((2 * math.exp(2) + 2) / 16, rel=1e-14)
    same = torch.tensor([[[0.6, 0.8]] * 3], dtype=torch.float64)
    assert energy(same, 1.0).item() == pytest.approx(math.e / 2, rel=1e-14)
    assert energy(torch.cat([x, x]), torch.tensor([2.0, 1.0])).tolist() == pytest.approx(
        [(2 * math.exp(2) + 2) / 16, (2 * math.e + 2) / 8], rel=1e-14)  # a beta per system
    z = random_sphere(3, 7, 4, gen(2)).requires_grad_()
    grad, = torch.autograd.grad(energy(z, 1.5).sum(), z)
    z = z.detach()
    projected = grad - (z * grad).sum(-1, keepdim=True) * z
    assert torch.allclose(field(z, 1.5, normalized=False), 7 * projected, atol=1e-13)

@pytest.mark.parametrize("normalized", [True, False])
def test_orthogonal_start_follows_gamma_ode(normalized):
    n, d, T = 6, 8, 6.0
    dt = 0.01 if normalized else 0.002  # USA contracts at rate 2 e^beta near gamma = 1
    beta = torch.tensor([0.0, 1.0, 4.0])
    x0 = torch.eye(n, d, dtype=torch.float64).expand(3, n, d)  # first n basis vectors of R^d
    ts, xs = simulate(x0, T, dt, beta, "rk4", save_every=round(0.5 / dt), normalized=normalized)
    _, g = gamma_ode(T, beta, n, normalized, dt=dt)  # (T', 3), RK4 at the particles' step
    g = g[::round(0.5 / dt)]
    ip = offdiag(gram(xs))  # (T, 3, n(n-1)/2)
    # all pairwise inner products stay equal, and equal to the ODE's gamma(t)
    assert (ip.max(-1).values - ip.min(-1).values).max() < 1e-12
    assert (ip - g[:, :, None]).abs().max() < 1e-7  # the two RK4 errors, 2e-8 for USA at beta = 4
    assert g[-1].min() > 0.3  # the curve is not trivially flat


def test_angle_form_matches_cartesian_form():
    theta0 = 2 * math.pi * torch.rand(5, 12, generator=gen(), dtype=torch.float64)
    to_xy = lambda th: torch.stack([torch.cos(th), torch.sin(th)], -1)  # (B, n) -> (B, n, 2)
    tangent = lambda th: torch.stack([-torch.sin(th), torch.cos(th)], -1)
    for normalized in (True, False):
        v = angle_field(theta0, 3.0, normalized)[..., None] * tangent(theta0)
        assert (v - field(to_xy(theta0), 3.0, normalized)).abs().max() < 1e-13
        # two RK4 discretizations of one flow: their gap is the solver error, fourth order in dt
        gaps = []
        for dt in (0.02, 0.01):
            theta, x = theta0.clone(), to_xy(theta0)
            for _ in range(round(4.0 / dt)):
                theta = rk4(lambda th: angle_field(th, 3.0, normalized), theta, dt)
                x = step(x, dt, 3.0, "rk4", normalized=normalized)
            gaps.append((to_xy(theta) - x).abs().max().item())
        assert gaps[1] < 1e-6 and 12 < gaps[0] / gaps[1] < 20
        assert (theta - theta0).abs().max() > 0.1


def test_open_hemisphere_is_invariant():
    # tokens in {<w, x> > 0}, some within 1e-3 of the boundary; the smallest <w, x_i> can only grow
    x = random_sphere(8, 20, 3, gen())
    x[..., 0] = x[..., 0].abs()
    x[:, :3, 0] = 1e-3
    x = x / x.norm(dim=-1, keepdim=True)
    Q = torch.eye(3, dtype=torch.float64)
    for beta in (0.0, 1.0, 8.0):
        _, xs = simulate(x, 10.0, 0.01, beta, "rk4", save_every=10, Q=Q)
        m = xs[..., 0].min(-1).values  # (T, B)
        assert (m > 0).all()
        assert (m.diff(dim=0) > -1e-12).all()


def test_antipodal_pair_moves_by_tanh_of_its_score():
    # two tokens x, -x: the weights on x and -x are e^{+-beta s} / Z with s = <Q x, K x>, so
    # SA moves x by tanh(beta s) P_x(V x) and USA (1/n = 1/2) by sinh(beta s) P_x(V x), and -x by
    # the opposite: the pair stays antipodal. With V = I (or x an eigenvector of V) it does not move.
    g = gen(3)
    Q, K, V = (torch.randn(3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    x = random_sphere(5, 1, 3, g)[:, 0]  # (5, 3)
    s = ((x @ Q.T) * (x @ K.T)).sum(-1, keepdim=True)
    Vx = x @ V.T
    Px_Vx = Vx - (x * Vx).sum(-1, keepdim=True) * x
    pair = torch.stack([x, -x], 1)  # (5, 2, 3)
    for normalized, weight in [(True, torch.tanh), (False, torch.sinh)]:
        v = field(pair, 0.7, normalized, Q=Q, K=K, V=V)
        assert torch.allclose(v[:, 0], weight(0.7 * s) * Px_Vx, atol=1e-14)
        assert torch.allclose(v[:, 1], -v[:, 0], atol=1e-14)
        _, xs = simulate(pair, 3.0, 0.01, 0.7, "rk4", save_every=100, normalized=normalized, Q=Q, K=K, V=V)
        assert (xs[:, :, 0] + xs[:, :, 1]).abs().max() < 1e-13  # still antipodal
        assert (xs[-1] - pair).abs().max() > 0.1  # but moved
    # an eigenvector e1 of V (V e1 = 2 e1) is at rest; V^T e1 = (2, 1, 0) is not along e1
    V = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    e1 = torch.eye(3, dtype=torch.float64)[:1]
    pair = torch.stack([e1, -e1], 1)  # (1, 2, 3)
    for normalized in (True, False):
        assert field(pair, 0.7, normalized, Q=Q, K=K, V=V).abs().max() < 1e-15
        assert field(pair, 0.7, normalized, Q=Q, K=K, V=V.T).abs().max() > 0.1


def test_sa_field_with_general_qkv_equals_hand_computation():
    # dx_i/dt = P_{x_i}(sum_j softmax_j(beta <Q x_i, K x_j>) V x_j), written out in plain Python
    # loops. Q, K, V are not symmetric and Q != K, so a swap of Q and K or a transposed V is caught.
    Q = [[1.0, 0.5, 0.0], [-0.3, 0.8, 0.2], [0.0, 0.4, 1.2]]
    K = [[0.6, 0.0, -0.7], [0.9, 1.1, 0.0], [0.1, -0.5, 0.7]]
    V = [[0.2, -1.0, 0.0], [0.7, 0.3, 0.5], [0.0, 0.9, -0.4]]
    x = random_sphere(1, 4, 3, gen(5))[0].tolist()  # 4 tokens on S^2
    beta, n, d = 1.5, 4, 3
    matvec = lambda M, v: [sum(M[a][b] * v[b] for b in range(d)) for a in range(d)]
    dot = lambda u, v: sum(a * b for a, b in zip(u, v))
    expected = []
    for i in range(n):
        w = [math.exp(beta * dot(matvec(Q, x[i]), matvec(K, x[j]))) for j in range(n)]
        y = [sum(w[j] * matvec(V, x[j])[a] for j in range(n)) / sum(w) for a in range(d)]
        expected.append([y[a] - dot(x[i], y) * x[i][a] for a in range(d)])
    expected = torch.tensor([expected], dtype=torch.float64)
    Q, K, V, x = (torch.tensor(m, dtype=torch.float64) for m in (Q, K, V, [x]))
    assert (field(x, beta, Q=Q, K=K, V=V) - expected).abs().max() < 1e-15
    # the wrong variants are far from it, so the comparison above can fail
    assert (field(x, beta, Q=K, K=Q, V=V) - expected).abs().max() > 0.05
    assert (field(x, beta, Q=Q, K=K, V=V.T) - expected).abs().max() > 0.05


@pytest.mark.parametrize("normalized,rate", [(True, 2.0), (False, None)])
def test_d_ge_n_collapses_with_fitted_exponential_rate(normalized, rate):
    # near consensus all weights are equal (1/n for SA, e^beta / n for USA), so each token
    # relaxes to the mean at rate 1 (e^beta); 1 - <x_i, x_j> is quadratic in the gap: rate 2 (2 e^beta)
    beta, n, d = 1.0, 8, 10
    rate = rate or 2 * math.exp(beta)
    x0 = random_sphere(6, n, d, gen())
    ts, xs = simulate(x0, 30.0 if normalized else 12.0, 0.01, beta, "rk4", save_every=5, normalized=normalized)
    gap = 1 - offdiag(gram(xs)).min(-1).values  # (T, B)
    assert (count_clusters(xs[-1]) == 1).all()
    window = (gap > 1e-9).all(1) & (gap < 1e-3).all(1)
    assert window.sum() > 20
    t, y = ts[window], gap[window].log()  # fit log gap = a - rate * t per start
    slope = ((t - t.mean())[:, None] * (y - y.mean(0))).sum(0) / ((t - t.mean()) ** 2).sum()
    assert torch.allclose(-slope, torch.full_like(slope, rate), rtol=0.03)


def test_count_clusters_single_linkage():
    angles = torch.tensor([[0.0, 0.01, 0.02, 1.0, 1.0, 3.0]], dtype=torch.float64)
    x = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    # 0.01 apart is linked at threshold cos(0.015); the chain 0, .01, .02 is one cluster
    assert count_clusters(x, math.cos(0.015)).item() == 3
    assert count_clusters(x, math.cos(0.005)).item() == 5


def test_reference_staircase_d2_n32():
    # spec reference (d = 2, n = 32, Euler dt = 0.1): beta = 1 from ~25 clusters at t = 1 to 1 at
    # t = 30, beta = 9 still with several at t = 300. Medians over 32 starts.
    x0 = random_sphere(32, 32, 2, gen())
    ts, xs = simulate(x0, 30.0, 0.1, 1.0)
    c1 = [count_clusters(xs[round(t / 0.1)]).double().median().item() for t in (1, 5, 30)]
    assert 22 <= c1[0] <= 28 and 7 <= c1[1] <= 13 and c1[2] == 1
    ts, xs = simulate(x0, 300.0, 0.1, 9.0, save_every=3000)
    assert count_clusters(xs[-1]).double().median().item() >= 2
