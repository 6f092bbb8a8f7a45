"""runtime.py's CPU memory setting: a training step stops faulting its memory back in every
iteration once glibc keeps what it frees (see runtime.keep_freed_memory)."""
import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT

# a few steady-state training steps of a small nesterov model; prints page faults per step
STEPS = '''
import resource, sys
import torch
import runtime
from checkpoint import build_model
applied = runtime.keep_freed_memory() if sys.argv[1] == 'keep' else False
torch.manual_seed(0)
model = build_model('nesterov', dict(block_size=128, vocab_size=256, n_layer=2, n_head=4, n_embd=128, dropout=0.0, bias=False))
opt, = model.configure_optimizers('adamw', 0.1, 1e-3, (0.9, 0.99), 'cpu')
idx = torch.randint(256, (16, 128), generator=torch.Generator().manual_seed(0))
def step():
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, loss = model(idx, idx)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
'''


def faults_per_step(mode):
    proc = subprocess.run([sys.executable, '-c', STEPS, mode], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    applied, faults = proc.stdout.split()
    return applied == 'True', float(faults)


@pytest.mark.skipif(sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc', reason='glibc malloc only')
def test_keep_freed_memory_stops_the_page_faults_of_every_step():
    applied, kept = faults_per_step('keep')
    _, default = faults_per_step('default')
    assert applied
    assert default > 1000, default  # glibc's defaults: thousands of fresh pages per step (4 KiB each)
    assert kept < 0.05 * default, (kept, default)  # measured 0-100 against 4,700-8,700


def test_setup_applies_it_on_the_cpu(monkeypatch):
    import runtime
    calls = []
    monkeypatch.setattr(runtime, 'keep_freed_memory', lambda: calls.append(1) or True)
    runtime.setup('cpu', 'float32', compile=False, verbose=False)
    assert calls == [1]


def test_it_does_nothing_off_linux(monkeypatch):
    import runtime
    monkeypatch.setattr(runtime.sys, 'platform', 'darwin')
    assert runtime.keep_freed_memory() is False
