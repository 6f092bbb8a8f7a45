"""
Tests of kernel_regime (shallow transformers in the kernel regime), at small sizes; the IndRNN
contrast and its AR(L) data are in test_kernel_regime_rnn.py:

    python -m pytest tests/test_kernel_regime.py tests/test_kernel_regime_rnn.py --durations=0
"""
import math

import numpy as np
import pytest
import torch
from torch.func import jvp

from kernel_regime.data import make_teacher, random_feature_model, teacher_data, tokens, transport
from kernel_regime.model import (edge_direction, head_norms, indrnn_heads, init_indrnn, init_transformer,
                                 jacobian_norm, linearization_error, linearize, network, project, train_pgd,
                                 transformer_heads)
from kernel_regime.report import cached, fit_slope, lr_or_authors
from kernel_regime.sample_sweep import log_and_power_fits, smallest_width
from kernel_regime.seqlen_sweep import run_T

RHO = {'W': 3.0, 'U': 3.0, 'c': 3.0, 'W_in': 3.0, 'u': 3.0}
F64 = torch.float64

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny systems: threads cost more than they save


def small_teacher_problem(seed, n=250, d=8, T=8, M=1024, dtype=torch.float32):
    teacher = make_teacher(d, T, M=M, seed=seed, dtype=dtype)
    return (teacher,) + teacher_data(n, d, T, teacher, seed, dtype)

def head_gradients(params, X):
    """Per-head pieces of grad g_i(X), g_i = c_i tanh(s_i), derived by hand rather than by autograd:
    d/dc = h, d/dU = c h' a, d/dW = c h' (Cov U) x_T^T with Cov = sum_t att_t x_t x_t^T - a a^T.
    Returns h, c h', a, Cov U, x_T with shapes (n, m), (n, m), (n, m, d), (n, m, d), (n, d)."""
    q = X[:, -1]
    att = torch.einsum('ntd,mde,ne->nmt', X, params['W'], q).softmax(-1)
    a = torch.einsum('nmt,ntd->nmd', att, X)
    h = torch.tanh(torch.einsum('nmd,md->nm', a, params['U']))
    cov = torch.einsum('nmt,ntd,nte->nmde', att, X, X) - a[..., :, None] * a[..., None, :]
    return h, params['c'] * (1 - h ** 2), a, torch.einsum('nmde,me->nmd', cov, params['U']), q

def tangent_kernel(params, X1, X2):
    """(1/m) sum_i <grad g_i(X1), grad g_i(X2)>, shape (n1, n2), from the hand-derived gradients."""
    h1, s1, a1, v1, q1 = head_gradients(params, X1)
    h2, s2, a2, v2, q2 = head_gradients(params, X2)
    per_head = (torch.einsum('im,jm->ijm', h1, h2) + torch.einsum('im,jm->ijm', s1, s2) * (
        torch.einsum('imd,jmd->ijm', a1, a2) + torch.einsum('imd,jmd->ijm', v1, v2) * (q1 @ q2.T)[..., None]))
    return per_head.mean(-1)

# -----------------------------------------------------------------------------
# the model: initialization, loss, projection, linearization, Jacobian

def test_symmetric_init_gives_zero_output():
    """f(X; theta_0) = 0 to float32 rounding: bit for bit where the BLAS computes a head and its
    mirror identically (Intel Xeon), ~1e-8 where the einsum rounds mirrored rows differently (AMD EPYC)."""
    X = tokens(64, 12, 6, seed=0)
    for m in (2, 10, 64):
        for heads_fn, p0 in ((transformer_heads, init_transformer(m, 6, seed=m)),
                             (indrnn_heads, init_indrnn(m, 6, seed=m))):
            heads = heads_fn(p0, X)
            assert network(heads_fn, p0, X).abs().max() <= 1e-6 * heads.abs().max()
            assert heads.abs().min() > 0  # zero by cancellation, not by dead heads

def test_loss_is_the_authors_mean_squared_error_and_a_step_is_plain_gd():
    """train_pgd minimizes mean (f - y)^2, as the authors' F.mse_loss, not half of it, so `--lr 0`
    (1.75 / sqrt(K)) is their step. At theta_0 (f = 0) the gradient in c_i is, by hand,
    -(2/n) sum_j y_j h_ij / sqrt(m)."""
    m, n = 6, 10
    p0 = init_transformer(m, 3, 0, F64)
    X = tokens(n, 5, 3, seed=0, dtype=F64)
    y = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=F64)
    lr = 0.1
    p, hist = train_pgd(transformer_heads, p0, X, y, 1, lr, None)
    assert hist['loss'][0] == pytest.approx(y.pow(2).mean().item(), rel=1e-12)
    h = transformer_heads(p0, X) / p0['c']                                 # (n, m)
    assert torch.allclose(p['c'] - p0['c'], lr * 2 / n * (y @ h) / math.sqrt(m), rtol=1e-10, atol=0)
    assert lr_or_authors(0, 4000) == 1.75 / math.sqrt(4000) and lr_or_authors(0.5, 4000) == 0.5

def test_projection_keeps_every_head_inside_its_radii():
    g = torch.Generator().manual_seed(0)
    m = 16
    for p0 in (init_transformer(m, 5, 0, F64), init_indrnn(m, 5, 0, dtype=F64)):
        far = {k: v + 10 * torch.randn(v.shape, generator=g, dtype=F64).sign() for k, v in p0.items()}
        proj = project(far, p0, RHO)
        for k, norm in head_norms({k: proj[k] - p0[k] for k in p0}).items():
            radius = RHO[k] / math.sqrt(m)
            assert (norm <= radius * (1 + 1e-12)).all()
            assert torch.allclose(norm, torch.full_like(norm, radius))  # far points land on the sphere
        near = {k: v + 1e-3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
        assert all(torch.equal(project(near, p0, RHO)[k], near[k]) for k in p0)  # inside: untouched

def test_linearization_equals_first_order_taylor_expansion():
    g = torch.Generator().manual_seed(1)
    X = tokens(16, 6, 4, seed=1, dtype=F64)
    for heads_fn, p0 in ((transformer_heads, init_transformer(8, 4, 1, F64)), (indrnn_heads, init_indrnn(8, 4, 1, dtype=F64))):
        # a generic point (off the symmetric one) and direction
        p = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
        delta = {k: torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
        f = lambda eps: network(heads_fn, {k: p[k] + eps * delta[k] for k in p}, X)
        eps = 1e-5
        assert torch.allclose(linearize(heads_fn, p, delta, X), (f(eps) - f(-eps)) / (2 * eps), rtol=1e-7, atol=1e-9)
        # the remainder of the expansion is second order: halving the step quarters it
        r = [linearization_error(heads_fn, p, {k: s * v for k, v in delta.items()}, X) for s in (1e-2, 5e-3)]
        assert r[0] / r[1] == pytest.approx(4.0, rel=0.05)

def test_jacobian_norm_matches_hand_derived_gradients():
    """||grad_theta f(X)||^2 = (1/m) sum_i K_i(X, X) for the transformer (at a generic point, c not +-1),
    and for a one-step IndRNN (h_0 = 0, so no gradient in u) (1/m) sum_i h_i^2 + c_i^2 (1 - h_i^2)^2 ||x||^2."""
    g = torch.Generator().manual_seed(2)
    X = tokens(12, 7, 5, seed=2, dtype=F64)
    p0 = init_transformer(6, 5, 2, F64)
    p = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
    assert torch.allclose(jacobian_norm(transformer_heads, p, X) ** 2, tangent_kernel(p, X, X).diag(), rtol=1e-10)
    x = X[:, :1]                                                             # (n, 1, d)
    r = init_indrnn(6, 5, 2, dtype=F64)
    r = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in r.items()}
    h = torch.tanh(x[:, 0] @ r['W_in'].T)                                   # (n, m)
    by_hand = (h ** 2 + r['c'] ** 2 * (1 - h ** 2) ** 2 * x[:, 0].pow(2).sum(1, keepdim=True)).mean(1)
    assert torch.allclose(jacobian_norm(indrnn_heads, r, x) ** 2, by_hand, rtol=1e-10)

def test_edge_direction_puts_every_head_on_its_sphere():
    """Both kinds: every head's displacement has norm rho/sqrt(m) in W, U and c. 'coherent': c_i up
    by rho/sqrt(m), and (W_i, U_i) along grad h_i(X0), so the first-order change of every h_i at
    X0 is rho/sqrt(m) (||grad_W h_i|| + ||grad_U h_i||) > 0 and the c-(W, U) cross terms add up."""
    m, rho = 8, {'W': 2.0, 'U': 1.0, 'c': 3.0}
    p0 = init_transformer(m, 5, 0, F64)
    X0 = tokens(1, 6, 5, seed=3, dtype=F64)
    for kind in ('coherent', 'random'):
        delta = edge_direction(p0, rho, kind, X0[0], seed=1)
        for k, norm in head_norms(delta).items():
            assert torch.allclose(norm, torch.full_like(norm, rho[k] / math.sqrt(m)), rtol=1e-12)
    delta = edge_direction(p0, rho, 'coherent', X0[0])
    assert torch.allclose(delta['c'], torch.full((m,), rho['c'] / math.sqrt(m), dtype=F64))
    unit_c = dict(p0, c=torch.ones_like(p0['c']))
    h_of = lambda p: transformer_heads(dict(p, c=unit_c['c']), X0)[0]     # (m,): h_i(X0), c left out
    first_order = jvp(h_of, (p0,), (delta,))[1]
    _, dh, a, cov_u, q = head_gradients(unit_c, X0)
    grad_W = dh[0] * cov_u[0].norm(dim=1) * q[0].norm()                    # ||h' (Cov U) x_T^T||_F
    grad_U = dh[0] * a[0].norm(dim=1)                                      # ||h' a||
    assert torch.allclose(first_order, (rho['W'] * grad_W + rho['U'] * grad_U) / math.sqrt(m), rtol=1e-10)
    assert (first_order > 0).all()
    r = [edge_direction(p0, rho, 'random', seed=s) for s in (5, 5, 6)]
    assert all(torch.equal(r[0][k], r[1][k]) for k in r[0]) and not torch.equal(r[0]['W'], r[2]['W'])
    with pytest.raises(ValueError):
        edge_direction(p0, rho, 'worst')

# -----------------------------------------------------------------------------
# the teacher

def test_teacher_is_the_kernel_mixture_over_its_anchors_without_clipping():
    """With the clip off (nu = inf), f*(X) = sum_r alpha_r K_M(X, Xa_r) exactly, K_M the tangent kernel
    of one head averaged over the M teacher heads, here from hand-derived gradients; for inputs of
    another length than the anchors too. At nu = 1 the clip binds for some heads and it does not."""
    for T in (6, 9):
        teacher = make_teacher(5, 6, R=4, M=64, nu=float('inf'), seed=0, dtype=F64)
        X = tokens(20, T, 5, seed=1, dtype=F64)
        y = random_feature_model(teacher['heads'], teacher, X)
        mixture = tangent_kernel(teacher['heads'], X, teacher['anchors']) @ teacher['alpha']
        assert torch.allclose(y, mixture, rtol=1e-10, atol=1e-12)
    clipped = dict(teacher, nu=1.0)
    assert (sum(v.pow(2) for v in head_norms(transport(teacher['heads'], teacher)).values()).sqrt() > 1).any()
    assert not torch.allclose(random_feature_model(teacher['heads'], clipped, X), mixture, rtol=1e-3)

def test_teacher_transport_is_bounded_and_chunking_is_exact():
    teacher, X, y = small_teacher_problem(0, n=40, M=64, dtype=F64)
    v = transport(teacher['heads'], teacher)
    assert (sum(n.pow(2) for n in head_norms(v).values()).sqrt() <= teacher['nu'] * (1 + 1e-12)).all()
    chunked = random_feature_model(teacher['heads'], teacher, X, head_chunk=7, budget=100)
    assert torch.allclose(chunked, y, rtol=1e-12, atol=1e-14)
    assert y.std() > 0.05  # a non-trivial target

def test_mirrored_heads_are_m_over_2_independent_draws():
    """The transport map is odd in the mirror (c -> -c flips the (W, U) part), so a head and its
    mirror add the same term: the m-head random-feature model is an average of m/2 draws."""
    teacher, X, _ = small_teacher_problem(0, n=30, M=16, dtype=F64)
    p0 = init_transformer(16, 8, 5, F64)
    first_half = {k: v[:8] for k, v in p0.items()}
    assert torch.allclose(random_feature_model(p0, teacher, X), random_feature_model(first_half, teacher, X),
                          rtol=1e-12, atol=1e-14)

# -----------------------------------------------------------------------------
# the claims, at small sizes

def test_approximation_and_linearization_errors_fall_like_one_over_sqrt_width():
    widths = [16, 32, 64, 128, 256]
    approx, lin = [], []
    for seed in range(3):
        teacher, X, y = small_teacher_problem(seed)
        p0s = [init_transformer(m, 8, 1000 * seed + m) for m in widths]
        approx.append([(random_feature_model(p0, teacher, X) - y).abs().max().item() for p0 in p0s])
        lin.append([linearization_error(transformer_heads, p0, edge_direction(p0, RHO, 'coherent', X[0]), X)
                    for p0 in p0s])
    for errors in (approx, lin):
        mean = np.mean(errors, 0)
        assert (np.diff(mean) < 0).all()
        assert fit_slope(widths, mean) == pytest.approx(-0.5, abs=0.15)

def test_projected_gd_fits_the_teacher_better_with_width_inside_the_balls():
    """The width claim: with every head held within rho/sqrt(m) of its start, the minimum training
    loss falls with m, to under a tenth of the loss of f = 0. The teacher is the kernel mixture
    written out by hand (not through transformer_heads), so a student that cannot attend (mean
    pooling) stalls near 0.4 at every width; one trained without the projection leaves the balls
    (rho = 1.5 binds within these 150 steps)."""
    rho, widths = {'W': 1.5, 'U': 1.5, 'c': 1.5}, [8, 16, 64]
    relative = []
    for seed in range(2):
        teacher = make_teacher(8, 8, M=1024, nu=float('inf'), seed=seed)
        X = tokens(200, 8, 8, seed)
        y = tangent_kernel(teacher['heads'], X, teacher['anchors']) @ teacher['alpha']
        row = []
        for m in widths:
            p0 = init_transformer(m, 8, 1000 * seed + m)
            p, hist = train_pgd(transformer_heads, p0, X, y, 150, 0.5, rho)
            row.append(min(hist['loss']) / hist['loss'][0])
            for k, norm in head_norms({k: p[k] - p0[k] for k in p}).items():
                assert (norm <= rho[k] / math.sqrt(m) * (1 + 1e-5)).all()
        relative.append(row)
    mean = np.mean(relative, 0)
    assert (np.diff(mean) < 0).all()
    assert mean[-1] < 0.1
    assert fit_slope(widths, mean) < -0.3

def test_teacher_is_one_function_of_sequences_of_any_length():
    """What lets the T sweep hold its teacher fixed: on a sequence of T copies of one token the
    attention is uniform and Cov = 0, so f* there does not depend on T."""
    teacher = make_teacher(6, 16, M=64, seed=0, dtype=F64)
    x = tokens(5, 1, 6, seed=4, dtype=F64)                                 # (5, 1, d)
    labels = [random_feature_model(teacher['heads'], teacher, x.expand(5, T, 6)) for T in (1, 4, 64)]
    assert all(torch.allclose(l, labels[0], rtol=1e-12, atol=1e-14) for l in labels)

def test_final_loss_changes_little_across_sequence_length():
    teacher = make_teacher(8, 16, M=1024, seed=0)
    runs = [run_T(0, T, teacher, m=32, n=300, rho=RHO, steps=150, lr=0.5) for T in (4, 16, 64)]
    loss = np.array([r['final_train_loss'] for r in runs])
    grad = np.array([r['grad_norm_init'] for r in runs])
    assert loss.max() / loss.min() < 4  # within a small factor over a 16x range of T ...
    assert (loss[1:] <= 1.1 * loss[0]).all()  # ... and never above the shortest sequence's loss
    assert grad.max() / grad.min() < 1.5

def test_smallest_width_solves_the_fitted_power_law():
    """values = 2 / sqrt(m) reach 0.25 at m = 64; m* is reported only within [min/2, 2 max] of the widths."""
    widths = [8, 32, 128]
    values = [2 / math.sqrt(m) for m in widths]
    assert smallest_width(widths, values, 0.25) == pytest.approx(64, rel=1e-9)
    assert smallest_width(widths, values, 2 / math.sqrt(4.001)) == pytest.approx(4.001, rel=1e-9)
    assert math.isnan(smallest_width(widths, values, 2 / math.sqrt(3.99)))
    assert math.isnan(smallest_width(widths, values, 2 / math.sqrt(257)))
    # noisy values: the line through all of them, not the first grid point below the target
    assert smallest_width(widths, [0.7, 0.37, 0.18], 0.36) == pytest.approx(31.98, rel=1e-3)

def test_log_and_power_fits_tell_the_two_models_apart_without_noise():
    Ns = np.array([500, 1000, 2000, 4000, 8000.0])
    log_fit = log_and_power_fits(Ns, 5 + 10 * np.log(Ns))
    assert (log_fit['intercept'], log_fit['per_log_n']) == (pytest.approx(5), pytest.approx(10))
    assert log_fit['rms_log'] < 1e-9 < 0.1 < log_fit['rms_power']
    power_fit = log_and_power_fits(Ns, 3 * Ns ** 0.2)
    assert (power_fit['prefactor'], power_fit['power']) == (pytest.approx(3), pytest.approx(0.2))
    assert power_fit['rms_power'] < 1e-9 < 0.1 < power_fit['rms_log']


def test_cached_computes_once_per_stem_and_settings(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {'loss': [0.5, 0.25]}
    first = cached(str(tmp_path), 'seed0', compute, {'lr': 0.1})
    again = cached(str(tmp_path), 'seed0', compute, {'lr': 0.1})  # read back from JSON
    assert first == again == {'loss': [0.5, 0.25]} and len(calls) == 1
    cached(str(tmp_path), 'seed0', compute, {'lr': 0.2})  # other settings: computed anew
    cached(str(tmp_path), 'seed1', compute, {'lr': 0.1})  # other stem: computed anew
    cached(None, 'seed0', compute, {'lr': 0.1})  # no cache: always computed
    assert len(calls) == 4 and len(list(tmp_path.iterdir())) == 3
