"""
Tests of kernel_regime (shallow transformers in the kernel regime), at small sizes:

    python -m pytest tests/test_kernel_regime.py --durations=0
"""
import math

import numpy as np
import pytest
import torch

from kernel_regime.data import make_teacher, random_feature_model, teacher_data, tokens, transport
from kernel_regime.model import (edge_direction, head_norms, indrnn_heads, init_indrnn, init_transformer,
                                 linearization_error, linearize, network, project, train_pgd,
                                 transformer_heads)
from kernel_regime.report import fit_slope
from kernel_regime.seqlen_sweep import run_T

RHO = {'W': 3.0, 'U': 3.0, 'c': 3.0, 'W_in': 3.0, 'u': 3.0}
F64 = torch.float64

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny systems: threads cost more than they save


def small_teacher_problem(seed, n=250, d=8, T=8, M=1024, dtype=torch.float32):
    teacher = make_teacher(d, T, M=M, seed=seed, dtype=dtype)
    return (teacher,) + teacher_data(n, d, T, teacher, seed, dtype)

def test_symmetric_init_gives_zero_output():
    """f(X; theta_0) = 0 to float32 rounding: bit for bit where the BLAS computes a head and its
    mirror identically (Intel Xeon), ~1e-8 where the einsum rounds mirrored rows differently (AMD EPYC)."""
    X = tokens(64, 12, 6, seed=0)
    for m in (2, 10, 64):
        for heads_fn, p0 in ((transformer_heads, init_transformer(m, 6, seed=m)),
                             (indrnn_heads, init_indrnn(m, 6, seed=m, u_max=1.5))):
            heads = heads_fn(p0, X)
            assert network(heads_fn, p0, X).abs().max() <= 1e-6 * heads.abs().max()
            assert heads.abs().min() > 0  # zero by cancellation, not by dead heads

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
    X = tokens(32, 10, 6, seed=1, dtype=F64)
    for heads_fn, p0 in ((transformer_heads, init_transformer(8, 6, 1, F64)), (indrnn_heads, init_indrnn(8, 6, 1, dtype=F64))):
        # a generic point (off the symmetric one) and direction
        p = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
        delta = {k: torch.randn(v.shape, generator=g, dtype=F64) for k, v in p0.items()}
        f = lambda eps: network(heads_fn, {k: p[k] + eps * delta[k] for k in p}, X)
        eps = 1e-5
        assert torch.allclose(linearize(heads_fn, p, delta, X), (f(eps) - f(-eps)) / (2 * eps), rtol=1e-7, atol=1e-9)
        # the remainder of the expansion is second order: halving the step quarters it
        r = [linearization_error(heads_fn, p, {k: s * v for k, v in delta.items()}, X) for s in (1e-2, 5e-3)]
        assert r[0] / r[1] == pytest.approx(4.0, rel=0.05)

def test_teacher_transport_is_bounded_and_chunking_is_exact():
    teacher, X, y = small_teacher_problem(0, n=40, M=64, dtype=F64)
    v = transport(teacher['heads'], teacher)
    assert (sum(n.pow(2) for n in head_norms(v).values()).sqrt() <= teacher['nu'] * (1 + 1e-12)).all()
    chunked = random_feature_model(teacher['heads'], teacher, X, head_chunk=7, budget=100)
    assert torch.allclose(chunked, y, rtol=1e-12, atol=1e-14)
    assert y.std() > 0.05  # a non-trivial target

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

def test_min_training_loss_nonincreasing_in_width_on_average():
    widths = [8, 32, 128]
    losses = []
    for seed in range(2):
        teacher, X, y = small_teacher_problem(seed)
        losses.append([min(train_pgd(transformer_heads, init_transformer(m, 8, 1000 * seed + m), X, y,
                                     150, 1.0, RHO)[1]['loss']) for m in widths])
    assert (np.diff(np.mean(losses, 0)) <= 0).all()

def test_final_loss_changes_little_across_sequence_length():
    runs = [run_T(0, T, m=32, n=300, d=8, M=1024, R=16, nu=3.0, rho=RHO, steps=150, lr=1.0) for T in (4, 16, 64)]
    loss = np.array([r['final_train_loss'] for r in runs])
    grad = np.array([r['grad_norm_init'] for r in runs])
    assert loss.max() / loss.min() < 4  # within a small factor over a 16x range of T ...
    assert (loss[1:] <= 1.1 * loss[0]).all()  # ... and never above the shortest sequence's loss
    assert grad.max() / grad.min() < 1.5
