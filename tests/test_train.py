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


def model_at(ckpt):
    from model_nesterov import build_model
    net = build_model(ckpt['model_type'], ckpt['model_args'])
    net.load_state_dict(ckpt['model'])
    return net.eval()


@torch.no_grad()
def recomputed_eval(net, data_dir, cfg):
    """Each split's loss over train.py's fixed evaluation windows, computed here from the .bin files."""
    import loader
    meta, block, out = loader.read_meta(data_dir), cfg['block_size'], {}
    for split in ('train', 'val'):
        data = loader.open_split(data_dir, split, block, cfg['vocab_size'], meta)
        offsets = loader.eval_offsets(len(data), block, cfg['eval_iters'] * cfg['batch_size'])
        losses = [net(*loader.get_batch(data, o, block, 'cpu'))[1]
                  for o in offsets.view(cfg['eval_iters'], cfg['batch_size'])]
        out[split] = torch.stack(losses).mean().item()
    return out


@pytest.fixture(scope='module')
def val_gets_worse(tmp_path_factory):
    """A run whose two splits share no token (train: 1 2 1 2 ..., val: 3 4 3 4 ...): training
    lowers the train loss and raises the val loss, so the best val loss is the first one. It stops
    at iter 5 and resumes, so what it knows of the best has to survive the resume."""
    root = tmp_path_factory.mktemp('disjoint')
    write_dataset(root, 'disjoint', [1, 2] * 200, [3, 4] * 100)
    out = root / 'out'
    args = ['--dataset=disjoint', '--eval_interval=5', '--learning_rate=3e-3', '--dtype=float32']
    train(root, out, *args, '--max_iters=5')
    train(root, out, *args, '--max_iters=15', '--init_from=resume')
    return os.path.join(root, 'disjoint'), out


def test_best_checkpoint_holds_the_model_of_the_lowest_logged_val_loss(val_gets_worse):
    data_dir, out = val_gets_worse
    evals = read_log(out, 'eval')
    val = [e['val_loss'] for e in evals]
    assert [e['iter'] for e in evals] == [0, 5, 10, 15] and val[-1] > val[0]  # it did get worse
    best_iter = evals[val.index(min(val))]['iter']
    best, last = (load_checkpoint(os.path.join(out, name)) for name in ('ckpt_best.pt', 'ckpt.pt'))
    assert best['iter_num'] == best_iter != last['iter_num']
    assert best['best_val_loss'] == last['best_val_loss'] == min(val)  # what a resume of either compares with
    assert recomputed_eval(model_at(best), data_dir, best['config'])['val'] == pytest.approx(min(val), rel=1e-5)


def test_each_split_is_evaluated_on_its_own_data(val_gets_worse):
    """The logged train and val losses are each that split's loss of the saved model, and differ."""
    data_dir, out = val_gets_worse
    last = read_log(out, 'eval')[-1]
    ckpt = load_checkpoint(os.path.join(out, 'ckpt.pt'))
    assert ckpt['iter_num'] == last['iter']
    want = recomputed_eval(model_at(ckpt), data_dir, ckpt['config'])
    assert last['train_loss'] == pytest.approx(want['train'], rel=1e-5)
    assert last['val_loss'] == pytest.approx(want['val'], rel=1e-5)
    assert last['val_loss'] > last['train_loss'] + 1.0


def test_first_update_is_adamw_on_the_clipped_gradient_of_the_first_batch(data_root, tmp_path):
    """A clip far below the gradient's norm scales the gradient to that norm; AdamW's first step
    is lr g / (|g| + eps) (its bias corrections cancel), so with |g| << eps = 1e-8 the step is
    proportional to the clipped gradient, and unclipped it would be about lr per weight."""
    import loader
    from model_nesterov import build_model
    lr, clip, eps = 1e-2, 1e-10, 1e-8
    train(data_root, tmp_path, '--max_iters=1', '--eval_interval=1', '--decay_lr=False', '--weight_decay=0',
          f'--learning_rate={lr}', f'--grad_clip={clip}', '--dtype=float32')
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert ckpt['iter_num'] == 1
    cfg = ckpt['config']
    torch.manual_seed(cfg['seed'])  # train.py's initial weights and first batch
    net = build_model(ckpt['model_type'], ckpt['model_args'])
    data_dir = os.path.join(data_root, 'python_docs')
    data = loader.open_split(data_dir, 'train', cfg['block_size'], cfg['vocab_size'], loader.read_meta(data_dir))
    offsets = loader.batch_offsets(torch.Generator().manual_seed(cfg['seed']), len(data), cfg['block_size'],
                                   cfg['batch_size'])
    net(*loader.get_batch(data, offsets, cfg['block_size'], 'cpu'))[1].backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    norm = torch.cat([g.flatten() for g in grads.values()]).norm().item()
    assert read_log(tmp_path, 'train')[0]['grad_norm'] == pytest.approx(norm, rel=1e-5)  # the norm before the clip
    assert norm > 1e6 * clip
    after = ckpt['model']
    for n, p in net.named_parameters():
        g = grads[n] * (clip / (norm + 1e-6))  # clip_grad_norm_'s factor
        step = -lr * g / (g.abs() + eps)
        torch.testing.assert_close(after[n] - p.detach(), step, rtol=1e-3, atol=2e-7)
    assert max((after[n] - p.detach()).abs().max().item() for n, p in net.named_parameters()) < lr / 50


def test_dropout_masks_change_every_step_and_repeat_on_resume(tmp_path):
    """With every window of the data the same and a learning rate too small to move any weight,
    only dropout's masks change the training loss from step to step: they must, and a resumed run
    must draw the same ones."""
    write_dataset(tmp_path, 'constant', [7] * 300, [7] * 100)
    args = ['--dataset=constant', '--dropout=0.1', '--learning_rate=1e-30', '--decay_lr=False', '--eval_interval=3',
            '--dtype=float32']
    train(tmp_path, tmp_path / 'full', *args, '--max_iters=6')
    train(tmp_path, tmp_path / 'split', *args, '--max_iters=3')
    train(tmp_path, tmp_path / 'split', *args, '--max_iters=6', '--init_from=resume')
    full = [(r['iter'], r['loss']) for r in read_log(tmp_path / 'full', 'train')]
    assert full == [(r['iter'], r['loss']) for r in read_log(tmp_path / 'split', 'train')]
    assert [i for i, _ in full] == [1, 2, 3, 4, 5, 6] and len({loss for _, loss in full}) == 6
    ckpt = load_checkpoint(os.path.join(tmp_path / 'full', 'ckpt.pt'))
    from model_nesterov import build_model
    torch.manual_seed(ckpt['config']['seed'])  # train.py's initial weights
    init = build_model(ckpt['model_type'], ckpt['model_args']).state_dict()
    assert all(torch.equal(ckpt['model'][k], v) for k, v in init.items())  # no weight moved


DIVERGE_AT_STEP_3 = '''
import runpy, sys
import torch
import torch.nn.functional as F
real, steps = F.cross_entropy, []
def cross_entropy(*args, **kw):
    loss = real(*args, **kw)
    if torch.is_grad_enabled():  # a training step, not an evaluation
        steps.append(loss)
        if len(steps) == 3:  # that step's loss is NaN, its gradients are untouched
            return loss + float('nan')
    return loss
F.cross_entropy = cross_entropy
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_non_finite_loss_between_log_steps_stops_the_run(data_root, tmp_path):
    """A NaN loss at step 3 whose gradients (and so the weights) stay finite: the next log step
    (5) sees it, though steps 4 and 5 are finite, and the run stops before it saves again."""
    driver = tmp_path / 'driver.py'
    driver.write_text(DIVERGE_AT_STEP_3)
    proc = run_script(str(driver), os.path.join(os.path.dirname(__file__), '..', 'train.py'),
                      f'--data_root={data_root}', f'--out_dir={tmp_path / "out"}', *TINY, '--max_iters=10',
                      '--log_interval=5', '--eval_interval=100', '--dtype=float32', check=False)  # no probe steps
    assert proc.returncode == EXIT_DIVERGED, proc.stderr
    assert proc.stderr.startswith('error: non-finite loss at iter 5')
    assert load_checkpoint(os.path.join(tmp_path / 'out', 'ckpt.pt'))['iter_num'] == 0
    assert read_log(tmp_path / 'out', 'train') == []


def test_learning_rate_follows_the_schedule_at_every_step(data_root, tmp_path):
    """Linear warmup from lr / (W + 1) at step 0 to the peak at step W, cosine to min_lr at step D,
    then min_lr; the log's lr at every step, and what the optimizer groups hold at the end."""
    import math
    lr, min_lr, W, D = 1e-3, 1e-4, 4, 10
    train(data_root, tmp_path, '--model_type=nesterov', '--max_iters=13', '--eval_interval=13',
          f'--learning_rate={lr}', f'--min_lr={min_lr}', f'--warmup_iters={W}', f'--lr_decay_iters={D}')

    def want(it):
        if it <= W:
            return lr * (it + 1) / (W + 1)
        return min_lr + 0.5 * (1 + math.cos(math.pi * min(it - W, D - W) / (D - W))) * (lr - min_lr)
    logged = [r['lr'] for r in read_log(tmp_path, 'train')] + [read_log(tmp_path, 'eval')[-1]['lr']]
    assert len(logged) == 14  # steps 0..12 (logged after them, at iter 1..13) and the final eval at 13
    assert [(e['iter'], e['tokens']) for e in read_log(tmp_path, 'eval')] == [(0, 0), (13, 13 * 8 * 32)]
    assert logged == pytest.approx([want(it) for it in range(14)], rel=1e-12)
    assert logged[0] == pytest.approx(lr / 5) and logged[W] == pytest.approx(lr)
    assert logged[W - 1] < lr and logged[D] == pytest.approx(min_lr) and logged[D + 1:] == [min_lr] * 3
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    groups = [g for opt in ckpt['optimizers'] for g in opt['param_groups']]
    assert len(groups) == 3 and all(g['lr'] == pytest.approx(g['base_lr'] * min_lr / lr) for g in groups)
