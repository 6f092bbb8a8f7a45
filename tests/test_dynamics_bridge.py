"""
Facts about the bridge to trained models (dynamics/bridge.py), on tiny untrained checkpoints
with randomized LayerNorm gains and learned scalars (so that a wrong capture cannot pass).
$ pytest tests/test_dynamics_bridge.py
"""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from checkpoint import load_checkpoint, save_checkpoint
from conftest import ROOT
from dynamics.bridge import analyse, capture, windows
from model_nesterov import build_model

TINY_ARGS = dict(n_layer=3, n_head=2, n_embd=32, block_size=16, vocab_size=256, bias=True, dropout=0.0)
VARIANTS = {  # name: (model_type, extra model_args)
    'gpt': ('gpt', {}),
    'nesterov': ('nesterov', {}),
    'nesterov_euler': ('nesterov', dict(splitting='euler')),
    'nesterov_shared': ('nesterov', dict(velocity_norm='shared')),
    'nesterov_no_vnorm': ('nesterov', dict(velocity_norm='none', velocity_init='zero')),
}
TEXT = "Every object has an identity, a type and a value. An object's identity never changes."


def make_ckpt(path, model_type, extra, seed=0):
    """A checkpoint dict as train.py writes it, from a model with random norms and scalars."""
    torch.manual_seed(seed)
    model_args = dict(TINY_ARGS, **extra)
    model = build_model(model_type, model_args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'ln' in name:  # LayerNorm gains and biases, ln_1, ln_2, ln_f, ln_v
                p.add_(0.3 * torch.randn_like(p))
            elif p.dim() == 0:  # raw mu / beta / gamma
                p.add_(torch.randn(()))
    save_checkpoint({'model': model.state_dict(), 'model_type': model_type, 'model_args': model_args,
                     'meta': {'tokenizer': 'bytes', 'vocab_size': 256}, 'config': {'model_type': model_type},
                     'iter_num': 0, 'best_val_loss': 5.5}, path)
    return path


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp('bridge')
    return {name: make_ckpt(str(d / f'{name}.pt'), t, extra) for name, (t, extra) in VARIANTS.items()}


def load(path):
    ckpt = load_checkpoint(path)
    model = build_model(ckpt['model_type'], ckpt['model_args'])
    model.load_state_dict(ckpt['model'])
    return model.eval()


def idx_of(model):
    return windows(list(TEXT.encode()), model.config.block_size, max_windows=64)  # (5, 16)


@pytest.mark.parametrize('name', VARIANTS)
def test_captures_equal_manual_forward(ckpts, name):
    model = load(ckpts[name])
    idx = idx_of(model)
    seen = capture(model, idx)
    with torch.no_grad():
        x = model.embed(idx)
        v = model.initial_velocity(idx) if name != 'gpt' else None
        for k, block in enumerate(model.transformer.h):
            mu = 0.0 if v is None else (block.mu_a if model.config.splitting == 'lie_trotter' else block.mu)()
            seen_point = x + mu * v if v is not None else x  # where the attention oracle looks
            torch.testing.assert_close(seen['ln'][k], block.ln_1(seen_point), rtol=0, atol=1e-6)
            torch.testing.assert_close(seen['x'][k], x, rtol=0, atol=0)
            x, v = block(x, v) if v is not None else (block(x), None)
        torch.testing.assert_close(seen['ln'][-1], model.transformer.ln_f(x), rtol=0, atol=1e-6)
        # the ln_f capture is what the head reads: it reproduces the model's logits
        logits, _ = model(idx)
        torch.testing.assert_close(model.lm_head(seen['ln'][-1][:, [-1]]), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize('name', VARIANTS)
def test_one_record_per_layer_and_final(ckpts, name):
    model = load(ckpts[name])
    rec = analyse(model, idx_of(model), bins=40)
    L = model.config.n_layer
    assert rec['depths'] == ['block 0 ln_1', 'block 1 ln_1', 'block 2 ln_1', 'ln_f']
    for key in ('hist', 'mean_cos', 'frac_above', 'clusters', 'x_norm', 'mean_cos_same_token', 'above_same_token'):
        assert len(rec[key]) == L + 1, key
    assert all(len(h) == 40 for h in rec['hist'])
    assert all(-1 <= m <= 1 for m in rec['mean_cos'])
    assert all(1 <= c <= rec['T'] for c in rec['clusters'])


@pytest.mark.parametrize('name', VARIANTS)
def test_histogram_counts_all_pairs_and_mean_is_direct(ckpts, name):
    model = load(ckpts[name])
    idx = idx_of(model)
    W, T = idx.shape
    rec = analyse(model, idx)
    seen = capture(model, idx)
    upper = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for k, z in enumerate(seen['ln']):
        assert sum(rec['hist'][k]) == W * T * (T - 1) // 2
        cos = F.cosine_similarity(z.double()[:, :, None], z.double()[:, None, :], dim=-1)[:, upper]  # (W, pairs)
        assert cos.abs().max() <= 1 + 1e-12
        assert abs(rec['mean_cos'][k] - cos.mean().item()) < 1e-9
        assert abs(rec['frac_above'][k] - (cos > 0.999).double().mean().item()) < 1e-12
        same = (idx[:, :, None] == idx[:, None, :])[:, upper]
        assert abs(rec['mean_cos_same_token'][k] - cos[same].mean().item()) < 1e-9
        assert abs(rec['mean_cos_other_token'][k] - cos[~same].mean().item()) < 1e-9
        # the histogram is the one of these cosines (bins of width 2/50 from -1)
        bins = ((cos.flatten() + 1) / 2 * 50).floor().clamp(max=49).long()
        assert rec['hist'][k] == torch.bincount(bins, minlength=50).tolist()


@pytest.mark.parametrize('name', VARIANTS)
def test_scalars_and_velocities_only_for_nesterov(ckpts, name):
    model = load(ckpts[name])
    rec = analyse(model, idx_of(model))
    L = model.config.n_layer
    if name == 'gpt':
        assert 'scalars' not in rec and 'v_norm' not in rec and 'v_update_norm' not in rec
        return
    diagnostics = model.diagnostics(idx_of(model))
    assert rec['scalars'] == {k: v for k, v in diagnostics.items() if not k.startswith('rms')}
    assert all(len(v) == L for v in rec['scalars'].values()) and ('mu' in rec['scalars'] or 'mu_a' in rec['scalars'])
    assert len(rec['v_norm']) == L + 1
    updates_per_block = 1 if model.config.splitting == 'euler' else 2
    assert len(rec['v_update_norm']) == updates_per_block * L
    # the velocity after the last update of each block is what the block hands on
    assert rec['v_update_norm'][updates_per_block - 1::updates_per_block] == rec['v_norm'][1:]
    if model.config.velocity_init == 'zero':
        assert rec['v_norm'][0] == 0


def run_bridge(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    return subprocess.run([sys.executable, '-m', 'dynamics.bridge', *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_command_end_to_end(ckpts, tmp_path):
    proc = run_bridge('--ckpt', ckpts['gpt'], '--ckpt', ckpts['nesterov'], '--out_dir', tmp_path,
                      '--name', 'bridge_test', '--label', 'gpt', '--label', 'nesterov')
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'bridge_test.png').stat().st_size > 10_000
    numbers = json.loads((tmp_path / 'bridge_test.json').read_text())
    gpt, nesterov = numbers['checkpoints']
    assert (gpt['label'], nesterov['label']) == ('gpt', 'nesterov')
    # default text: 4 KB of pydoc_data in windows of block_size = 16 bytes, capped at 64 windows
    assert gpt['n_windows'] == 64 and gpt['T'] == 16
    assert 'scalars' in nesterov and 'scalars' not in gpt
    assert len(nesterov['mean_cos']) == TINY_ARGS['n_layer'] + 1


def test_missing_checkpoint_is_one_line_error(tmp_path):
    proc = run_bridge('--ckpt', tmp_path / 'nope' / 'ckpt.pt', '--out_dir', tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith('error: no checkpoint at') and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob('*.png'))
