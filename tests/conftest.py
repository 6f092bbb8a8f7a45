"""Shared fixtures: the repo root, a prepared default corpus, and running the scripts as a user would."""
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests never reach the network or wandb, and keep runtime.py's measurements of this machine in
# a cache of their own; one thread keeps subprocess timings stable on 2 cores
os.environ.update(WANDB_MODE='disabled', HF_DATASETS_OFFLINE='1', HF_HUB_OFFLINE='1')
os.environ['XDG_CACHE_HOME'] = tempfile.mkdtemp(prefix='yuriiformer-test-cache-')

# a tiny model that trains in seconds on the CPU; every test that runs train.py starts from it
TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8',
        '--compile=False', '--eval_iters=4', '--log_interval=1', '--warmup_iters=5']


def run_script(script, *args, cwd=ROOT, check=True, torchrun=0, timeout=300, env=None):
    """Run a repo script in a fresh interpreter; returns the CompletedProcess (text output).
    env: variables set on top of this process's environment."""
    launcher = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={torchrun}'] \
        if torchrun else [sys.executable]
    env = {**os.environ, 'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': '1', **(env or {})}
    proc = subprocess.run(launcher + [os.path.join(ROOT, script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope='module')
def one_thread():
    """Tiny numerical systems run several times faster on one torch thread than on two busy
    cores; restored afterwards for the other tests."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    """data_root with the offline default corpus prepared once for the whole session."""
    from prepare.python_docs import prepare
    root = tmp_path_factory.mktemp('data')
    prepare(str(root / 'python_docs'))
    return str(root)


def write_dataset(root, name, train_ids, val_ids, tokenizer='bytes', vocab_size=256):
    """A dataset as prepare/ writes it, with the given token ids."""
    import json
    import numpy as np
    d = os.path.join(root, name)
    os.makedirs(d)
    np.array(train_ids, dtype=np.uint16).tofile(os.path.join(d, 'train.bin'))
    np.array(val_ids, dtype=np.uint16).tofile(os.path.join(d, 'val.bin'))
    with open(os.path.join(d, 'meta.json'), 'w') as f:
        json.dump(dict(tokenizer=tokenizer, vocab_size=vocab_size, train_tokens=len(train_ids),
                       val_tokens=len(val_ids)), f)


def read_log(out_dir, event):
    import json
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['event'] == event]
