"""
Tests of the recurrent contrast of kernel_regime: the authors' AR(L) windows, the IndRNN and its
init, and rnn_contrast.run_L, at small sizes:

    python -m pytest tests/test_kernel_regime_rnn.py --durations=0
"""
import math

import numpy as np
import pytest
import torch

from kernel_regime.data import ar_windows
from kernel_regime.model import indrnn_heads, init_indrnn, init_transformer, jacobian_norm, transformer_heads
from kernel_regime.rnn_contrast import run_L

F64 = torch.float64

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny systems: threads cost more than they save


def test_ar_windows_are_the_authors_series_and_position_code():
    """T = L + 1 tokens (x_t, sin(2 pi t / 32 2^k), cos(...)), k < 8; the target is the next value,
    which is 0.9 times the value at token 1 (L steps back) plus an innovation of variance 0.1,
    independent of the window; a token one step off is no predictor at all (another AR chain)."""
    n, L = 3000, 16
    X, y, bayes = ar_windows(n, L, seed=0, dtype=F64)
    assert X.shape == (n, L + 1, 17)
    # hand-computed position code: sin(2 pi 8 / 32) = 1, cos = 0; sin(2 pi 16 / 64) = 1
    assert X[0, 8, 1] == pytest.approx(1.0) and X[0, 8, 9] == pytest.approx(0.0, abs=1e-12)
    assert X[0, 16, 2] == pytest.approx(1.0) and X[0, 0, 9:].tolist() == [1.0] * 8
    assert torch.equal(X[:, :, 1:], X[:1, :, 1:].expand(n, -1, -1))  # the same code in every window
    assert torch.equal(X[1:, :-1, 0], X[:-1, 1:, 0])                   # sliding windows of one series
    target = X[1:, -1, 0]                                              # the raw target of windows 0..n-2
    assert torch.corrcoef(torch.stack([target, y[:-1]]))[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert y.mean().item() == pytest.approx(0.0, abs=1e-12) and y.std(unbiased=False).item() == pytest.approx(1.0)
    innovation = target - 0.9 * X[:-1, 1, 0]
    assert innovation.pow(2).mean().item() == pytest.approx(0.1, rel=0.1)
    assert abs(torch.corrcoef(torch.stack([innovation, X[:-1, 1, 0]]))[0, 1]) < 0.05
    for off_by_one in (0, 2):
        assert (target - 0.9 * X[:-1, off_by_one, 0]).pow(2).mean() > 0.5
    assert bayes == pytest.approx(0.1 / target.var().item(), rel=0.02)
    assert X.norm(dim=-1).min() > 2.8  # the authors' tokens are not rescaled ...
    assert ar_windows(50, 4, seed=0, unit_tokens=True)[0].norm(dim=-1).max() <= 1 + 1e-6  # ... the theory's are
    with pytest.raises(AssertionError):
        ar_windows(10, 4, seed=0, d=8)

def test_indrnn_matches_hand_computed_recurrence_and_the_authors_init():
    params = {'W_in': torch.tensor([[0.5], [-1.0]], dtype=F64), 'u': torch.tensor([1.5, -0.4], dtype=F64),
              'c': torch.tensor([1.0, -2.0], dtype=F64)}
    xs = [0.3, -0.2, 0.7]
    by_hand = []
    for w, u, c in zip([0.5, -1.0], [1.5, -0.4], [1.0, -2.0]):
        h = 0.0
        for x in xs:
            h = math.tanh(w * x + u * h)
        by_hand.append(c * h)
    out = indrnn_heads(params, torch.tensor(xs, dtype=F64).view(1, 3, 1))
    assert torch.allclose(out, torch.tensor([by_hand], dtype=F64), rtol=1e-14)
    # the authors' init: u = +-1.5 with both signs, heads m/2.. mirror 0..m/2 with c negated
    p0 = init_indrnn(64, 5, seed=0)
    assert set(p0['u'].tolist()) == {-1.5, 1.5}
    assert torch.equal(p0['W_in'][:32], p0['W_in'][32:]) and torch.equal(p0['u'][:32], p0['u'][32:])
    assert torch.equal(p0['c'][:32], -p0['c'][32:])
    u = init_indrnn(64, 5, seed=0, u_max=0.8, u_dist='uniform')['u']
    assert u.min() >= 0 and u.max() < 0.8 and len(set(u.tolist())) == 32
    with pytest.raises(ValueError):
        init_indrnn(4, 5, seed=0, u_dist='normal')

def test_indrnn_jacobian_grows_geometrically_with_length_where_the_transformer_is_flat():
    """The mechanism of the RNN side of the contrast: on inputs small enough for tanh to be linear,
    h_T sums u^k over the past, so with |u| = 1.5 the per-sample Jacobian grows at least like 1.5^T
    (x 8.4 from T = 8 to 12) and with |u| = 0.5 it converges. On T copies of one token the
    transformer's attention is uniform and its Jacobian does not depend on T at all."""
    def const_tokens(T, value):
        X = torch.zeros(1, T, 3, dtype=F64)
        X[..., 0] = value
        return X
    for u, low, high in ((1.5, 1.5 ** 4, math.inf), (0.5, 1.0, 1.05)):
        p = init_indrnn(16, 3, 0, u_max=u, dtype=F64)
        ratio = (jacobian_norm(indrnn_heads, p, const_tokens(12, 1e-4)) /
                 jacobian_norm(indrnn_heads, p, const_tokens(8, 1e-4))).item()
        assert low < ratio < high
    p = init_transformer(16, 3, 0, F64)
    jac = [jacobian_norm(transformer_heads, p, const_tokens(T, 0.5)).item() for T in (8, 12, 96)]
    assert jac == pytest.approx([jac[0]] * 3, rel=1e-12)

def test_run_L_trains_both_models_on_plain_mse_from_the_authors_init():
    """At step 0 both models output f = 0, so their training and validation MSE are the mean of y^2
    over an 80/20 split of z-scored targets: 0.8 train + 0.2 val = 1 (1/2 with a halved loss). The
    IndRNN starts from the authors' u = +-1.5."""
    n, L = 40, 4
    out = run_L(0, L, m=8, n=n, d=17, rho=None, steps=1, lr=0.05)
    for net in ('transformer', 'indrnn'):
        assert 0.8 * out[net]['min_train_mse'] + 0.2 * out[net]['min_val_mse'] == pytest.approx(1.0, rel=1e-5)
    X = ar_windows(n, L, seed=0)[0]
    authors = jacobian_norm(indrnn_heads, init_indrnn(8, 17, 1000 * 0 + L, 1.5, 'sign'), X[:200]).mean().item()
    assert out['indrnn']['jacobian_norm_init'] == pytest.approx(authors, rel=1e-6)
    assert 0 < out['bayes_mse'] < 0.5
