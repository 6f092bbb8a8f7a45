import copy
import os

import pytest
import torch

from checkpoint import load_checkpoint
from conftest import read_log, run_script, TINY
from muon import Muon, orthogonalize

SHAPES = [(96, 32), (32, 128), (48, 48)]  # tall (c_fc's transpose), wide, square


def params(seed):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s)) for s in SHAPES]


def run_steps(opt, ps, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


@pytest.mark.parametrize('weight_decay', [0.0, 0.1])
def test_bfloat16_muon_equals_torch_muon_bitwise(weight_decay):
    ours, theirs = params(0), params(0)
    run_steps(Muon(ours, lr=0.02, momentum=0.95, weight_decay=weight_decay), ours, 4)
    run_steps(torch.optim.Muon(theirs, lr=0.02, momentum=0.95, weight_decay=weight_decay), theirs, 4)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_resumes_a_torch_muon_state_exactly():
    """A checkpoint's momentum buffers from torch.optim.Muon continue in ours as in torch's (with
    this run's hyperparameters put back after loading, as train.py does)."""
    ours, theirs = params(1), params(1)
    t1 = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1)
    run_steps(t1, theirs, 3)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            a.copy_(b)
    o = Muon(ours, lr=0.02, weight_decay=0.1)
    hyper = {k: v for k, v in o.param_groups[0].items() if k != 'params'}
    o.load_state_dict(copy.deepcopy(t1.state_dict()))  # as from disk: buffers not shared
    o.param_groups[0].update(hyper)
    run_steps(o, ours, 2, seed=5)
    run_steps(t1, theirs, 2, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize('shape', SHAPES[:2])
def test_float32_orthogonalizes_like_bfloat16(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    o32, o16 = orthogonalize(g, dtype='float32'), orthogonalize(g, dtype='bfloat16')
    assert o32.dtype == torch.float32 and o16.dtype == torch.bfloat16 and o32.shape == g.shape
    s = torch.linalg.svdvals(o32)
    assert 0.6 < s.min() and s.max() < 1.25  # the quintic's band, not exactly 1
    assert torch.allclose(o32, o16.float(), atol=0.02)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    m = u.T @ o32 @ vh.T  # in g's singular bases: diagonal and positive, i.e. U S' V^T
    assert torch.allclose(m, torch.diag(torch.diagonal(m)), atol=1e-3) and torch.diagonal(m).min() > 0.6


def test_rejects_a_vector():
    with pytest.raises(ValueError, match='2-D parameters'):
        Muon([torch.nn.Parameter(torch.zeros(4))])


def test_train_runs_newton_schulz_in_the_runs_dtype(data_root, tmp_path):
    """float32 runs orthogonalize in float32 (bf16 would be emulated on most CPUs)."""
    run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--optimizer=muon',
               '--dtype=float32', '--max_iters=4', '--eval_interval=4')
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert [g['ns_dtype'] for g in ckpt['optimizers'][1]['param_groups']] == ['float32']
    losses = [r['loss'] for r in read_log(tmp_path, 'train')]
    assert len(losses) == 4 and all(map(torch.isfinite, torch.tensor(losses)))
