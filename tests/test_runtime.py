"""runtime.py: what 'auto' chooses on the CPU and why (a measured probe, cached per machine), an
explicit choice always winning, the CUDA-only options refused, and the numbers behind MFU."""
import json
import time

import pytest
import torch

import runtime
from configurator import UserError
from model import GPT

TINY_ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=256, bias=False, dropout=0.0)
STEP = runtime.Step('gpt', TINY_ARGS, batch_size=8, optimizer='adamw')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of this test's own, and a probe that reports fixed times and counts its calls."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    calls = []

    def probe(step, dtype, budget=None, times=dict(float32=0.004, bfloat16=0.001)):
        calls.append((step, dtype))
        return times[dtype]
    monkeypatch.setattr(runtime, 'probe_step', probe)
    return tmp_path, calls


def auto(dtype='auto', compile=False, step=STEP, iters=0):
    return runtime.decide(runtime.setup('cpu', dtype, compile), step, iters)


def test_auto_dtype_takes_the_faster_precision_measured_on_the_runs_step(cache, capsys):
    _, calls = cache
    rt = auto()
    assert rt.dtype == 'bfloat16' and calls == [(STEP, 'float32'), (STEP, 'bfloat16')]
    assert rt.auto['dtype'] == dict(float32=0.004, bfloat16=0.001, cached=False)
    assert "dtype auto: bfloat16: a training step of this run's model took 4.00 ms in float32, 1.00 ms" \
           in capsys.readouterr().out


def test_the_measurement_is_cached_per_machine_torch_and_step(cache, capsys):
    path, calls = cache
    auto()
    rt = auto()
    assert rt.dtype == 'bfloat16' and len(calls) == 2 and rt.auto['dtype']['cached']  # the second run only reads
    assert '(cached)' in capsys.readouterr().out.splitlines()[-1]
    stored = json.loads((path / 'yuriiformer' / 'cpu.json').read_text())
    key = runtime.machine_key()
    assert torch.__version__ in key and stored[key]['dtype probe ' + runtime.step_key(STEP, 'auto', 'cpu')] == \
        dict(float32=0.004, bfloat16=0.001)
    auto(step=runtime.Step('gpt', TINY_ARGS, batch_size=8, optimizer='muon'))  # another step: measured anew
    assert len(calls) == 4


def test_an_explicit_choice_wins_without_measuring(cache):
    _, calls = cache
    assert auto('float32').dtype == 'float32'
    assert calls == []


def test_setup_keeps_auto_as_asked_until_decide():
    rt = runtime.setup('cpu', 'auto', 'auto')
    assert (rt.dtype, rt.compile) == ('auto', 'auto')
    assert (runtime.decide(rt).dtype, runtime.decide(rt).compile) == ('float32', False)  # no step: nothing to measure


def test_the_probe_times_real_training_steps_of_the_model():
    """Forward, backward and the optimizer step of its own model, in both precisions, without
    touching the run's random stream."""
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    t32, t16 = (runtime.probe_step(STEP, d, budget=2.0) for d in ('float32', 'bfloat16'))
    assert 0 < t32 < 60 and 0 < t16 < 60  # seconds of a tiny step, on however busy a machine
    assert torch.equal(torch.rand(3), before)
    assert 0 < runtime.probe_step(runtime.Step('nesterov', TINY_ARGS, 8, None), 'float32') < 60  # sampling: forward


def test_the_probe_is_capped_for_big_models(monkeypatch):
    """A GPT-2 sized step probes fewer tokens: about PROBE_FLOP a step, not 12 x 1024 tokens."""
    shapes = []

    def forward(self, idx, targets=None):
        shapes.append(tuple(idx.shape))
        raise StopIteration  # the shape is all this test needs
    monkeypatch.setattr(GPT, 'forward', forward)
    args = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304, bias=False, dropout=0.0)
    with pytest.raises(StopIteration):
        runtime.probe_step(runtime.Step('gpt', args, batch_size=12, optimizer='adamw'), 'float32')
    n_params = 85e6 + 50304 * 768  # about: the blocks and the tied head
    assert shapes[0][0] == 1 and abs(shapes[0][1] - runtime.PROBE_FLOP / (6 * n_params)) < 1
    default = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=256, bias=False, dropout=0.0)
    with pytest.raises(StopIteration):  # train.py's default model probes its whole micro-batch
        runtime.probe_step(runtime.Step('gpt', default, batch_size=16, optimizer='adamw'), 'float32')
    assert shapes[1] == (16, 128)


def test_a_slow_step_is_timed_within_the_budget():
    """An emulated bf16 can be 50x slower than fp32: a warm-up past the budget decides it, and
    the timed calls stop where the next would overrun it."""
    calls = []
    assert runtime.best_seconds(lambda: calls.append(1), 3, budget=-1.0) >= 0 and len(calls) == 1
    assert runtime.best_seconds(lambda: calls.append(1), 3) >= 0 and len(calls) == 1 + 4
    calls.clear()
    assert runtime.best_seconds(lambda: (calls.append(1), time.sleep(0.05)), 10, budget=0.18) >= 0.05
    assert len(calls) == 3  # warm-up and two timed calls: a fourth would pass 0.18 s


def test_the_step_key_names_everything_that_changes_the_compute():
    nesterov = runtime.Step('nesterov', dict(TINY_ARGS, momentum='nesterov'), 8, 'adamw')
    key = runtime.step_key(nesterov, 'float32', 'cpu')
    # the config class's defaults are filled in: a partial and a full args dict name the same step
    full = runtime.Step('nesterov', runtime.dataclasses.asdict(runtime.model_config('nesterov', nesterov.model_args)),
                        8, 'adamw')
    assert runtime.step_key(full, 'float32', 'cpu') == key
    # the initial values of the learned scalars do not change the compute
    assert runtime.step_key(runtime.Step('nesterov', dict(nesterov.model_args, mu_init=0.9, gamma_init=1.0), 8, 'adamw'),
                            'float32', 'cpu') == key
    changed = [dict(splitting='euler'), dict(momentum='polyak'), dict(velocity_norm='shared'),
               dict(velocity_init='zero'), dict(n_layer=3), dict(n_head=4), dict(n_embd=64), dict(block_size=16),
               dict(vocab_size=512), dict(dropout=0.1), dict(bias=True)]
    keys = {runtime.step_key(runtime.Step('nesterov', dict(nesterov.model_args, **c), 8, 'adamw'), 'float32', 'cpu')
            for c in changed}
    keys |= {runtime.step_key(runtime.Step('nesterov', nesterov.model_args, 16, 'adamw'), 'float32', 'cpu'),
             runtime.step_key(runtime.Step('nesterov', nesterov.model_args, 8, 'muon'), 'float32', 'cpu'),
             runtime.step_key(runtime.Step('gpt', TINY_ARGS, 8, 'adamw'), 'float32', 'cpu'),
             runtime.step_key(runtime.Step('nesterov', dict(TINY_ARGS, momentum='gd', table_skip=True), 8, 'adamw'),
                              'float32', 'cpu'),
             runtime.step_key(nesterov, 'bfloat16', 'cpu'), runtime.step_key(nesterov, 'float32', 'cuda')}
    assert key not in keys and len(keys) == len(changed) + 6


def test_auto_compile_on_the_cpu_follows_what_bench_measured(cache, monkeypatch):
    monkeypatch.setattr(runtime, 'compile_blocker', lambda device_type: None)  # as if a compiler were present
    compile_, record, why = runtime.cpu_compile(STEP, 'float32', iters=1000)
    assert compile_ is False and record is None and 'no measurement' in why  # a CPU compile rarely pays back
    runtime.record_step_times(STEP, 'float32', eager_ms=100.0, compiled_ms=60.0, compile_s=30.0)
    assert runtime.cpu_compile(STEP, 'float32', iters=1000)[:2] == (True, dict(eager_ms=100.0, compiled_ms=60.0,
                                                                                 compile_s=30.0))
    assert runtime.cpu_compile(STEP, 'float32', iters=500)[0] is False  # 20 s saved < 30 s
    assert runtime.cpu_compile(STEP, 'bfloat16', iters=1000)[1] is None  # another dtype: another step
    rt = auto('float32', 'auto', iters=1000)
    assert rt.compile is True and rt.auto['compile'] == dict(record=dict(eager_ms=100.0, compiled_ms=60.0,
                                                                         compile_s=30.0), iters=1000)
    assert auto('float32', False, iters=1000).compile is False  # explicit wins


def test_compile_without_a_compiler_falls_back_with_a_notice(monkeypatch, capsys):
    monkeypatch.setenv('PATH', '/nonexistent')
    assert runtime.decide(runtime.setup('cpu', 'float32', True)).compile is False
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


@pytest.mark.parametrize('arm, extra_tables', [
    (dict(momentum='nesterov'), True), (dict(momentum='gd', table_skip=True), True),
    (dict(momentum='nesterov', velocity_init='tied'), False), (dict(momentum='gd'), False),
])
def test_memory_estimate_counts_each_arms_own_parameters(arm, extra_tables):
    """The estimate's weight term is 16 bytes a parameter of the model itself: an arm with the
    velocity tables (nesterov, the tables control) is charged for them, one without is not; the
    count, taken from 1- and 2-layer models, is exact at 5 layers."""
    base = dict(TINY_ARGS, n_layer=5)
    args = dict(base, **arm)
    gpt = runtime.train_memory_bytes('gpt', base, 8, 2, 'float32')
    other = runtime.train_memory_bytes('nesterov', args, 8, 2, 'float32')
    extra = 16 * (runtime.count_params('nesterov', args)[0] - runtime.count_params('gpt', base)[0])
    assert other - gpt == extra
    tables = (base['vocab_size'] + base['block_size']) * base['n_embd']
    assert (extra >= 16 * tables) == extra_tables
