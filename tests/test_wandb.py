"""train.py's wandb logging, run for real in wandb's offline mode (no network): what wandb wrote
to its run directory against log.jsonl, a resume appending to the same wandb run, and runs
without wandb_log never importing it."""
import glob
import json
import os
import struct

import pytest

from checkpoint import load_checkpoint
from conftest import TINY, read_log, run_script

RUN = [*TINY, '--eval_interval=3', '--dtype=float32', '--wandb_log=True']


def wandb_records(path):
    """The protobuf records of a .wandb file: wandb's transaction log, LevelDB's log format
    (a 7-byte file header, then 32 KiB blocks of records, each with a crc32, length and type)."""
    from wandb.proto import wandb_internal_pb2
    with open(path, 'rb') as f:
        data = f.read()
    assert struct.unpack('<4sHB', data[:7]) == (b':W&B', 0xBEE1, 0)
    pos, block, pending = 7, 32768, b''
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if kind == 0:  # zero fill after the last record
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b''
            yield record


def read_wandb_run(path):
    """(run id, config, {step: {key: value}}) of one offline run file."""
    run_id, config, history = None, {}, {}
    for r in wandb_records(path):
        kind = r.WhichOneof('record_type')
        if kind == 'run':
            run_id = r.run.run_id
            config = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.run.config.update}
            config.pop('_wandb')
        elif kind == 'history':
            items = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history[r.history.step.num] = {k: v for k, v in items.items() if not k.startswith('_')}
    return run_id, config, history


@pytest.fixture(scope='module')
def resumed_run(tmp_path_factory, data_root):
    """6 iterations, then a resume to 9, logging to wandb offline into one WANDB_DIR."""
    tmp = tmp_path_factory.mktemp('wandb')
    out, env = tmp / 'out', dict(WANDB_MODE='offline', WANDB_DIR=str(tmp))
    run_script('train.py', *RUN, f'--data_root={data_root}', f'--out_dir={out}', '--max_iters=6', env=env)
    run_script('train.py', *RUN, f'--data_root={data_root}', f'--out_dir={out}', '--max_iters=9',
               '--init_from=resume', env=env)
    files = sorted(glob.glob(str(tmp / 'wandb' / 'offline-run-*' / 'run-*.wandb')))  # named by start time
    return out, [read_wandb_run(f) for f in files]


def test_wandb_logs_what_log_jsonl_has(resumed_run):
    out, runs = resumed_run
    history = {step: row for _, _, h in runs for step, row in h.items()}
    evals, trains = read_log(out, 'eval'), read_log(out, 'train')
    assert [r['iter'] for r in evals] == [0, 3, 6, 9] and len(trains) == 9
    for r in evals:
        row = history[r['iter']]
        assert (row['train/loss'], row['val/loss']) == (r['train_loss'], r['val_loss'])
        diag = {f'diagnostics/{k}/layer{i}': v for k, vs in r['diagnostics'].items() for i, v in enumerate(vs)}
        assert len(diag) == 2 and {k: row[k] for k in diag} == diag  # rms_x of both layers
    for r in trains:
        row = history[r['iter']]
        assert (row['train/step_loss'], row['lr'], row['grad_norm'], row['tokens_per_s']) == \
            (r['loss'], r['lr'], r['grad_norm'], r['tokens_per_s'])
        assert 'mfu' not in row or 0 < row['mfu'] < 100  # a percentage of the peak, once warm-up is past
    assert any('mfu' in history[r['iter']] for r in trains)
    config = load_checkpoint(os.path.join(out, 'ckpt.pt'))['config']
    assert runs[-1][1] == json.loads(json.dumps(config))  # every knob of the resumed run, as its checkpoint saved them


def test_a_resumed_run_continues_the_same_wandb_run(resumed_run):
    out, runs = resumed_run
    assert len(runs) == 2  # offline, each process writes its own file; `wandb sync` uploads both into one run
    first, second = runs
    assert first[0] == second[0] == load_checkpoint(os.path.join(out, 'ckpt.pt'))['wandb_run_id']
    assert sorted(first[2]) == list(range(7)) and sorted(second[2]) == [7, 8, 9]  # steps go on, none repeated


def test_runs_without_wandb_log_never_import_it(tmp_path, data_root):
    """A wandb on the path that records its import and then fails as a missing package would:
    a run without wandb_log trains without touching it, one with wandb_log stops in one line."""
    shim, marker = tmp_path / 'shim', tmp_path / 'imported'
    (shim / 'wandb').mkdir(parents=True)
    (shim / 'wandb' / '__init__.py').write_text(
        f"open({str(marker)!r}, 'w').close()\nraise ImportError('No module named wandb')\n")
    env = dict(PYTHONPATH=f"{shim}{os.pathsep}{os.path.dirname(os.path.dirname(__file__))}")
    args = [*TINY, f'--data_root={data_root}', '--max_iters=2', '--eval_interval=2', '--dtype=float32']
    run_script('train.py', *args, f'--out_dir={tmp_path / "a"}', env=env)
    assert not marker.exists()
    proc = run_script('train.py', *args, f'--out_dir={tmp_path / "b"}', '--wandb_log=True', env=env, check=False)
    assert marker.exists() and proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        'error: wandb_log=True needs the wandb package: pip install wandb (or drop wandb_log)'
    assert not (tmp_path / 'b').exists()  # nothing on disk before the check
