"""train.py run as a user runs it: learning, exact resume, torchrun, checkpoints, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from checkpoint import load_checkpoint, save_checkpoint
from configurator import EXIT_DIVERGED, UserError
from conftest import ROOT, TINY, read_log, run_script, write_dataset


def train(data_root, out_dir, *args, **kw):
    return run_script('train.py', f'--data_root={data_root}', f'--out_dir={out_dir}', *TINY, *args, **kw)


def test_loss_drops_on_default_corpus(data_root, tmp_path):
    train(data_root, tmp_path, '--max_iters=80', '--eval_interval=40', '--learning_rate=3e-3')
    evals = read_log(tmp_path, 'eval')
    assert [e['iter'] for e in evals] == [0, 40, 80]
    val = [e['val_loss'] for e in evals]
    assert val[0] > 5.0  # ~ln(256) before training
    assert val[2] < val[1] < val[0] - 1.5
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert ckpt['iter_num'] == 80 and ckpt['meta']['tokenizer'] == 'bytes'
    assert ckpt['config']['max_iters'] == 80 and ckpt['config']['learning_rate'] == 3e-3  # the full config
    assert not any(k.startswith('_orig_mod.') for k in ckpt['model'])
    best = load_checkpoint(os.path.join(tmp_path, 'ckpt_best.pt'))
    assert best['best_val_loss'] == min(val)


@pytest.mark.parametrize('model_args', [
    ['--model_type=gpt', '--optimizer=adamw', '--dropout=0.1'],
    ['--model_type=nesterov', '--optimizer=muon', '--dropout=0.1'],
])
def test_resume_is_exact(data_root, tmp_path, model_args):
    """Stopping at iter 6 and resuming gives bitwise the same losses and weights as never stopping."""
    common = [*model_args, '--eval_interval=6', '--lr_decay_iters=12', '--gradient_accumulation_steps=2']
    train(data_root, tmp_path / 'full', *common, '--max_iters=12')
    train(data_root, tmp_path / 'split', *common, '--max_iters=6')
    train(data_root, tmp_path / 'split', *common, '--max_iters=12', '--init_from=resume')
    for event, key in (('train', 'loss'), ('eval', 'val_loss'), ('eval', 'train_loss')):
        full = [(r['iter'], r[key]) for r in read_log(tmp_path / 'full', event)]
        split = [(r['iter'], r[key]) for r in read_log(tmp_path / 'split', event)]
        assert full == split  # exact float equality, every iteration
    a = load_checkpoint(os.path.join(tmp_path / 'full', 'ckpt.pt'))['model']
    b = load_checkpoint(os.path.join(tmp_path / 'split', 'ckpt.pt'))['model']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_two_processes_match_single_process(data_root, tmp_path):
    """Same global batch (2 micro-batches) on 1 process or split across 2 gloo ranks."""
    args = ['--max_iters=6', '--eval_interval=6', '--gradient_accumulation_steps=2', '--dtype=float32']
    train(data_root, tmp_path / 'single', *args)
    proc = train(data_root, tmp_path / 'ddp', *args, torchrun=2)
    assert 'tokens per iteration will be: 512 (2 x 1 x 8 x 32)' in proc.stdout
    for event, key in (('train', 'loss'), ('eval', 'val_loss')):
        single = [r[key] for r in read_log(tmp_path / 'single', event)]
        ddp = [r[key] for r in read_log(tmp_path / 'ddp', event)]
        assert len(single) == len(ddp) > 0
        np.testing.assert_allclose(ddp, single, rtol=1e-5)


@pytest.mark.parametrize('model_type', ['gpt', 'nesterov'])
def test_compile_matches_eager(data_root, tmp_path, model_type):
    args = ['--max_iters=2', '--eval_interval=2', '--eval_iters=1', '--dtype=float32', f'--model_type={model_type}']
    train(data_root, tmp_path / 'eager', *args)
    proc = train(data_root, tmp_path / 'compiled', *args, '--compile=True')
    assert 'torch.compile is off' not in proc.stdout
    eager = [r['loss'] for r in read_log(tmp_path / 'eager', 'train')]
    compiled = [r['loss'] for r in read_log(tmp_path / 'compiled', 'train')]
    np.testing.assert_allclose(compiled, eager, rtol=1e-4)


def test_compile_falls_back_with_notice_without_a_compiler(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # no c++ on PATH
    proc = train(data_root, tmp_path, '--max_iters=1', '--compile=True')
    assert 'note: torch.compile is off: no C++ compiler found' in proc.stdout


def test_non_finite_loss_stops_and_last_checkpoint_survives(data_root, tmp_path):
    proc = train(data_root, tmp_path, '--max_iters=20', '--eval_interval=5', '--warmup_iters=0',
                 '--learning_rate=1e30', check=False)
    assert proc.returncode == EXIT_DIVERGED == 3
    assert 'error: non-finite loss' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert all(torch.isfinite(v).all() for v in ckpt['model'].values())


# train.py on a fake device and clock: the clock moves only when the device is waited for (1 s of
# queued steps at each rt.sync) and during an evaluation (100 s), by a microsecond at each reading
FAKE_DEVICE = """
import json, os, runpy, sys, time
import loader, runtime
clock, syncs = [0.0], []
def perf_counter():
    clock[0] += 1e-6
    return clock[0]
def sync(self):
    clock[0] += 1.0
    syncs.append(clock[0])
def eval_offsets(*args):
    clock[0] += 50.0  # once per split: 100 s an evaluation
    return real_eval_offsets(*args)
real_eval_offsets, loader.eval_offsets = loader.eval_offsets, eval_offsets
time.perf_counter, runtime.Runtime.sync = perf_counter, sync
sys.argv = ['train.py', *sys.argv[1:]]
runpy.run_path(os.path.join(os.environ['PYTHONPATH'], 'train.py'), run_name='__main__')
print(json.dumps(dict(syncs=len(syncs))))
"""


def test_time_is_measured_over_log_windows_ended_by_a_device_sync(data_root, tmp_path):
    """Log windows end at iters 3, 6, 9, evaluations come at 0, 4, 8, 9: the clock is read after
    the device has run the queued steps (each window holds its syncs' second), once per window
    and once before an evaluation inside one; evaluations are not training time; each log line
    reports its window's mean, and train_time sums the windows."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', XDG_CACHE_HOME=str(tmp_path / 'cache'))
    proc = subprocess.run([sys.executable, '-c', FAKE_DEVICE, f'--data_root={data_root}', f'--out_dir={tmp_path}',
                           *TINY, '--dtype=float32', '--log_interval=3', '--eval_interval=4', '--max_iters=9'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == dict(syncs=5)  # 3 log lines, 2 evaluations inside a window
    windows = {r['iter']: r['dt'] * 3 for r in read_log(tmp_path, 'train')}
    assert windows == {3: pytest.approx(1.0, abs=1e-3), 6: pytest.approx(2.0, abs=1e-3), 9: pytest.approx(2.0, abs=1e-3)}
    assert all(r['tokens_per_s'] == 8 * 32 / r['dt'] for r in read_log(tmp_path, 'train'))
    evals = {r['iter']: r['train_time'] for r in read_log(tmp_path, 'eval')}
    assert evals == {0: 0.0, 4: pytest.approx(2.0, abs=1e-3), 8: pytest.approx(4.0, abs=1e-3),
                     9: pytest.approx(sum(windows.values()), abs=1e-9)}


def test_max_time_stops_with_a_final_eval_and_checkpoint(data_root, tmp_path):
    train(data_root, tmp_path, '--max_iters=100000', '--eval_interval=100000', '--max_time=2', '--log_interval=10')
    last = read_log(tmp_path, 'eval')[-1]
    assert 0 < last['iter'] < 100000 and last['train_time'] >= 2.0
    assert load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))['iter_num'] == last['iter']


def test_eval_only_writes_no_checkpoint(data_root, tmp_path):
    proc = train(data_root, tmp_path, '--eval_only=True')
    assert 'step 0: train loss' in proc.stdout
    assert not os.path.exists(os.path.join(tmp_path, 'ckpt.pt'))


@pytest.mark.parametrize('case,expected', [
    ('missing', "data/missing/meta.json not found: prepare the dataset first with `python prepare/tinystories.py "
                "--train_files TRAIN.txt --val_files VAL.txt --out_dir=data/missing`"),
    ('tinystories', "data/tinystories/meta.json not found: prepare the dataset first with `python prepare/tinystories.py`"),
    ('out_of_vocab', 'holds token id 300 but the model\'s vocab_size is 256'),
    ('short_val', 'has 10 tokens, fewer than block_size + 1 = 33'),
])
def test_bad_data_is_refused_in_one_line(tmp_path, case, expected):
    if case == 'out_of_vocab':
        write_dataset(tmp_path / 'data', case, [1, 2, 300] * 100, [1] * 100)
    elif case == 'short_val':
        write_dataset(tmp_path / 'data', case, [1, 2, 3] * 100, [1] * 10)
    proc = run_script('train.py', f'--dataset={case}', '--vocab_size=256', '--out_dir=out', *TINY,
                      cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: ') and expected.replace('\\', '') in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_refuses_corrupt_checkpoint_and_tokenizer_mismatch(data_root, tmp_path):
    train(data_root, tmp_path / 'run', '--max_iters=2', '--eval_interval=2')
    write_dataset(tmp_path, 'gpt2_data', [1, 2, 3] * 100, [1, 2] * 100, tokenizer='gpt2', vocab_size=50257)
    proc = train(tmp_path, tmp_path / 'run', '--dataset=gpt2_data', '--init_from=resume', check=False)
    assert proc.returncode == 2 and "trained with the 'bytes' tokenizer" in proc.stderr
    with open(tmp_path / 'run' / 'ckpt.pt', 'r+b') as f:
        f.truncate(1000)
    proc = train(data_root, tmp_path / 'run', '--init_from=resume', check=False)
    assert proc.returncode == 1 and 'is not a readable checkpoint' in proc.stderr


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pt')
    good = {'model': {'w': torch.ones(3)}, 'model_type': 'gpt', 'model_args': {}}
    save_checkpoint(good, path)

    def failing_save(obj, f):  # a crash half-way through writing
        f.write(b'partial bytes')
        raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(UserError, match='cannot save .*disk full; the previous checkpoint is unchanged'):
        save_checkpoint({'model': {'w': torch.zeros(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    assert torch.equal(load_checkpoint(path)['model']['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pt']  # no temporary file left behind
    with pytest.raises(UserError, match='no checkpoint at'):
        load_checkpoint(str(tmp_path / 'other.pt'))


def test_evaluations_log_the_diagnostics_of_the_model(data_root, tmp_path):
    """Each eval prints and logs (log.jsonl) the per-layer diagnostics on the first evaluation
    batch of the validation split: the same numbers a manual computation on the saved model gives."""
    import loader
    from model_nesterov import build_model
    proc = train(data_root, tmp_path, '--model_type=nesterov', '--velocity_norm=per_substep', '--max_iters=4',
                 '--eval_interval=4', '--dtype=float32')
    assert 'gamma/beta_a' in proc.stdout and 'rms_v' in proc.stdout
    logged = read_log(tmp_path, 'eval')[-1]['diagnostics']
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    model = build_model('nesterov', ckpt['model_args'])
    model.load_state_dict(ckpt['model'])
    meta = loader.read_meta(os.path.join(data_root, 'python_docs'))
    val = loader.open_split(os.path.join(data_root, 'python_docs'), 'val', 32, 256, meta)
    X, _ = loader.get_batch(val, loader.eval_offsets(len(val), 32, 8), 32, 'cpu')
    want = model.eval().diagnostics(X)
    assert list(logged) == list(want) == ['rms_x', 'rms_v', 'mu_a', 'beta_a', 'gamma/beta_a', 'mu_m', 'beta_m',
                                          'gamma/beta_m', 'gain_a', 'gain_m']
    for k in want:
        np.testing.assert_allclose(logged[k], want[k], rtol=1e-5)
