"""runtime.py: what 'auto' chooses on the CPU and why (a measured probe, cached per machine), an
explicit choice always winning, the CUDA-only options refused, and the numbers behind MFU."""
import json

import pytest
import torch

import runtime
from configurator import UserError

SHAPE = dict(model_type='gpt', momentum='gd', n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of this test's own, and a probe that reports fixed times and counts its calls."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    calls = []

    def probe(n_embd, tokens, dtype, give_up=None, times=dict(float32=0.004, bfloat16=0.001)):
        calls.append((n_embd, tokens, dtype))
        return times[dtype]
    monkeypatch.setattr(runtime, 'probe_cpu_step', probe)
    return tmp_path, calls


def test_auto_dtype_takes_the_faster_precision_measured_here(cache, capsys):
    _, calls = cache
    rt = runtime.setup('cpu', 'auto', False, shape=SHAPE)
    assert rt.dtype == 'bfloat16' and calls == [(32, 256, 'float32'), (32, 256, 'bfloat16')]
    assert 'dtype auto: bfloat16: an MLP step of width 32 on 256 tokens took 4.00 ms in float32, 1.00 ms' \
           in capsys.readouterr().out


def test_the_measurement_is_cached_per_machine_and_torch(cache, capsys):
    path, calls = cache
    runtime.setup('cpu', 'auto', False, shape=SHAPE)
    rt = runtime.setup('cpu', 'auto', False, shape=SHAPE)
    assert rt.dtype == 'bfloat16' and len(calls) == 2  # the second run only reads
    assert '(cached)' in capsys.readouterr().out.splitlines()[-1]
    stored = json.loads((path / 'yuriiformer' / 'cpu.json').read_text())
    key = runtime.machine_key()
    assert torch.__version__ in key and stored[key]['dtype probe 32x256'] == dict(float32=0.004, bfloat16=0.001)


def test_an_explicit_choice_wins_without_measuring(cache):
    _, calls = cache
    assert runtime.setup('cpu', 'float32', False, shape=SHAPE).dtype == 'float32'
    assert calls == []


def test_real_probe_times_both_precisions():
    t32, t16 = (runtime.probe_cpu_step(16, 64, d) for d in ('float32', 'bfloat16'))
    assert 0 < t32 < 1 and 0 < t16 < 10


def test_a_slow_precision_is_timed_once():
    """An emulated bf16 can be 50x slower than fp32: one call past give_up decides it."""
    calls = []
    assert runtime.best_seconds(lambda: calls.append(1), 3, give_up=-1.0) >= 0 and len(calls) == 1
    assert runtime.best_seconds(lambda: calls.append(1), 3) >= 0 and len(calls) == 1 + 4


def test_the_probe_is_capped_for_wide_models(cache):
    _, calls = cache
    runtime.cpu_dtype(768, 12 * 1024)
    assert calls[0] == (768, 141, 'float32')  # 2e9 / (24 x 768^2) rows: about 2 GFLOP a step


def test_auto_compile_on_the_cpu_follows_what_bench_measured(cache, monkeypatch):
    monkeypatch.setattr(runtime, 'compile_blocker', lambda device_type: None)  # as if a compiler were present
    key = dict(SHAPE, dtype='float32')
    compile_, why = runtime.cpu_compile(key, iters=1000)
    assert compile_ is False and 'no measurement' in why  # unmeasured: a CPU compile rarely pays back
    runtime.record_step_times(key, eager_ms=100.0, compiled_ms=60.0, compile_s=30.0)
    assert runtime.cpu_compile(key, iters=1000)[0] is True  # 1000 x 40 ms = 40 s saved > 30 s to compile
    assert runtime.cpu_compile(key, iters=500)[0] is False  # 20 s saved < 30 s
    assert runtime.setup('cpu', 'float32', 'auto', shape=SHAPE, iters=1000).compile is True
    assert runtime.setup('cpu', 'float32', False, shape=SHAPE, iters=1000).compile is False  # explicit wins


def test_compile_without_a_compiler_falls_back_with_a_notice(monkeypatch, capsys):
    monkeypatch.setenv('PATH', '/nonexistent')
    assert runtime.setup('cpu', 'float32', True).compile is False
    assert 'note: torch.compile is off: no C++ compiler found' in capsys.readouterr().out


@pytest.mark.parametrize('kw,message', [
    (dict(dtype='float16'), "float16' needs CUDA"),
    (dict(dtype='fp8'), "dtype='fp8'"),
    (dict(compile='yes'), "compile='yes'"),
    (dict(device='tpu'), "device='tpu'"),
])
def test_impossible_requests_are_one_line_errors(kw, message):
    with pytest.raises(UserError, match=message):
        runtime.setup(**{**dict(device='cpu', dtype='float32', compile=False), **kw})


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a machine without CUDA')
def test_cuda_requested_without_cuda():
    with pytest.raises(UserError, match="CUDA is not available here: use --device=cpu"):
        runtime.setup('cuda', 'auto', 'auto')


def test_flops_per_token_is_palms_count():
    # 6N + 12 L H Q T with N = 1000, L = 2, H = 4, Q = 8, T = 16
    assert runtime.flops_per_token(1000, 2, 4, 32, 16) == 6 * 1000 + 12 * 2 * 4 * 8 * 16


def test_cpu_peak_flops_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    rt = runtime.Runtime('cpu', 'cpu', 'float32', False, False)
    peak = rt.peak_flops()
    assert 1e8 < peak < 1e14
    monkeypatch.setattr(runtime, 'best_seconds', lambda *a, **k: pytest.fail('measured twice'))
    assert rt.peak_flops() == peak
