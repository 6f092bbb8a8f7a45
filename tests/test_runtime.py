"""runtime.py's CPU memory setting: a training step stops faulting its memory back in every
iteration once glibc keeps what it frees, large blocks included (see runtime.keep_freed_memory)."""
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


def faults_per_step(mode, script=STEPS):
    proc = subprocess.run([sys.executable, '-c', script, mode], cwd=ROOT, capture_output=True, text=True, timeout=120,
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


# blocks past glibc's largest mmap threshold (32 MiB), like the logits of a GPT-2-vocabulary model
BIG_BLOCKS = '''
import resource, sys
import torch
import runtime
applied = runtime.keep_freed_memory() if sys.argv[1] == 'keep' else False
for _ in range(12):  # glibc's heap takes a few rounds of aligned 64 MiB blocks to settle
    torch.ones(64 << 18)  # 64 MiB of float32, written and freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(64 << 18)
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
'''


@pytest.mark.skipif(sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc', reason='glibc malloc only')
def test_keep_freed_memory_keeps_blocks_larger_than_any_mmap_threshold():
    applied, kept = faults_per_step('keep', BIG_BLOCKS)
    _, default = faults_per_step('default', BIG_BLOCKS)
    assert applied
    assert default > 10_000, default  # 64 MiB mmap'd afresh every time: 16,384 pages of 4 KiB
    assert kept < 0.01 * default, (kept, default)


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
