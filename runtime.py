"""
The one place that decides where and how the models run: device, dtype and autocast,
torch.compile, torchrun/DDP, and the device's peak FLOP/s that MFU is measured against.
train.py, sample.py, bench.py and compare.py (through train.py) read what it decides, in two
calls: setup() says where (the device, torchrun's process group) and checks what was asked;
decide() resolves 'auto' for the step the run will take (a Step: the model, its micro-batch and
its optimizer).

    device:  'auto' (cuda if present, else cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
    dtype:   'auto' | 'bfloat16' | 'float16' | 'float32'
    compile: 'auto' | True | False

On CUDA, 'auto' is bf16 autocast (fp16 with a GradScaler where the GPU lacks bf16) and
torch.compile. On the CPU no flag tells which is faster: bf16 autocast has been much faster than
fp32 on one CPU of ours and much slower on another that reports AVX512-BF16 (docs/measurements.md),
and a stand-in matmul does not tell what the whole step costs. So 'auto' times a few steps of the run's own model,
micro-batch and optimizer in both precisions, and for compile reads what bench.py measured for
the same step (step_key() names a step for both). Each measurement is cached per machine and
torch version in ~/.cache/yuriiformer/; decide() prints one line per choice saying why, and
keeps what it decided from in Runtime.auto (train.py logs it).
"""
import dataclasses
import json
import os
import platform
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from configurator import UserError
from model_nesterov import build_model, count_params, model_config

# Dense peak FLOP/s from vendor datasheets (no sparsity): (bf16/fp16 tensor cores, fp32 non-tensor).
# Matched against torch.cuda.get_device_name(); the first match wins, so specific names come first.
GPU_PEAK_FLOPS = [
    ('H100 PCIe', 756e12, 51e12), ('H100', 989e12, 67e12), ('H200', 989e12, 67e12),
    ('H20', 148e12, 44e12), ('GH200', 989e12, 67e12), ('B200', 2250e12, 80e12),
    ('A100', 312e12, 19.5e12), ('A10G', 70e12, 31.2e12), ('A10', 125e12, 31.2e12),
    ('L40S', 362e12, 91.6e12), ('L4', 121e12, 30.3e12), ('V100', 125e12, 15.7e12),
]


def device_name(device):
    """What the numbers are measured on: the GPU's name, or the CPU's model name."""
    if str(device).startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


# measurements on this machine ------------------------------------------------

def cache_path():
    return os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'yuriiformer', 'cpu.json')


def machine_key():
    return f"{device_name('cpu')} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def read_cache():
    try:
        with open(cache_path()) as f:
            return json.load(f).get(machine_key(), {})
    except (OSError, ValueError):
        return {}


def write_cache(key, value):
    """Add one measurement to the cache; a cache that cannot be written is only a lost speed-up."""
    path = cache_path()
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    cache.setdefault(machine_key(), {})[key] = value
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f'{path}.tmp{os.getpid()}'  # torchrun's ranks may write at once
        with open(tmp, 'w') as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def best_seconds(fn, reps, budget=float('inf')):
    """The fastest of up to reps calls after a warm-up call (first-call kernel selection and
    allocation), stopping before a call that would take the total past budget seconds; at least
    one timed call, unless the warm-up alone took longer than budget (then its time)."""
    start = time.perf_counter()
    fn()
    warm_up = time.perf_counter() - start
    if warm_up > budget:
        return warm_up
    best = float('inf')
    for i in range(reps):
        if i and time.perf_counter() - start + best > budget:
            break
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass(frozen=True)
class Step:
    """What one training step computes, which is what its cost depends on: the model (its type
    and config fields), the micro-batch, and the optimizer (None: a forward pass without
    gradients, what sampling runs)."""
    model_type: str
    model_args: dict
    batch_size: int
    optimizer: str | None


def step_key(step, dtype, device_type):
    """The one name of a step's cost, for bench.py's records and what train.py looks up: every
    config field of the model (defaults filled in) but the learned scalars' initial values (the
    float *_init fields: the same compute at any value), the micro-batch, the optimizer, the dtype
    and the device."""
    args = dataclasses.asdict(model_config(step.model_type, step.model_args))
    args = {k: v for k, v in args.items() if not (k.endswith('_init') and isinstance(v, float))}
    parts = dict(model_type=step.model_type, **args, batch_size=step.batch_size, optimizer=step.optimizer,
                 dtype=dtype, device=device_type)
    return ' '.join(f'{k}={v}' for k, v in parts.items())


def train_step(model, forward, optimizers, X, Y, autocast):
    """One training step on one micro-batch as train.py takes it (less its loss scaling and
    accumulation): forward (the compiled module, or the model) under autocast, backward, clipping
    at 1.0, the optimizer step. What bench.py times, and probe_step for 'auto'."""
    with autocast:
        _, loss = forward(X, Y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for opt in optimizers:
        opt.step()
        opt.zero_grad(set_to_none=True)


PROBE_FLOP = 3e10  # at most this many FLOPs a probe step (about a second on a 2-core CPU): big models probe fewer tokens


def probe_step(step, dtype, budget=1.5):
    """Seconds per step of the run's own model on random tokens, in float32 or under bf16
    autocast: forward, backward, clipping and the optimizer step (just the forward, without
    gradients, for optimizer=None). The fastest of up to 3 steps after a warm-up, within about
    budget seconds; a model whose full micro-batch costs more than PROBE_FLOP a step probes fewer
    rows (and, below one row, a shorter window) of it."""
    args = step.model_args
    with torch.random.fork_rng(devices=[]):  # the run's own random stream is not touched
        torch.manual_seed(0)
        model = build_model(step.model_type, args)
        flop_per_token = 6 * model.get_num_params()
        tokens = max(16, min(step.batch_size * args['block_size'], int(PROBE_FLOP / flop_per_token)))
        rows = max(1, min(step.batch_size, tokens // args['block_size']))
        x, y = torch.randint(args['vocab_size'], (2, rows, min(args['block_size'], tokens // rows)))

    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16')
    if step.optimizer is None:
        def run():
            with torch.no_grad(), autocast():
                model(x)
    else:
        optimizers = model.configure_optimizers(step.optimizer, 0.1, 1e-3, (0.9, 0.99), 'cpu',
                                                muon_ns_dtype='bfloat16' if dtype == 'bfloat16' else 'float32')

        def run():
            train_step(model, model, optimizers, x, y, autocast())
    return best_seconds(run, 3, budget)


def cpu_dtype(step):
    """float32 or bfloat16, whichever runs the step faster here; the seconds each took; and the
    reason in words."""
    key = 'dtype probe ' + step_key(step, 'auto', 'cpu')
    t = read_cache().get(key)
    cached = t is not None
    if not cached:
        t32 = probe_step(step, 'float32')
        # a bf16 warm-up 4x slower than fp32 has decided it: no need to wait for more of them
        t = dict(float32=t32, bfloat16=probe_step(step, 'bfloat16', budget=min(1.5, 4 * t32)))
        write_cache(key, t)
    best = min(t, key=t.get)
    why = (f"a training step of this run's model took {1000 * t['float32']:.2f} ms in float32, "
           f"{1000 * t['bfloat16']:.2f} ms in bf16 autocast on this CPU ({'cached' if cached else 'measured now'})")
    return best, dict(t, cached=cached), why


def cpu_peak_flops(dtype):
    """The CPU has no datasheet figure we can trust across machines: the best FLOP/s of a
    1024^3 matmul in `dtype` on this machine's threads, measured once and cached."""
    key = f'matmul flops {dtype}'
    flops = read_cache().get(key)
    if flops is None:
        a, b = (torch.randn(1024, 1024, dtype=getattr(torch, dtype)) for _ in range(2))
        flops = 2 * 1024 ** 3 / best_seconds(lambda: a @ b, 5, budget=1.0)  # emulated bf16 can take seconds
        write_cache(key, flops)
    return flops


def record_step_times(step, dtype, eager_ms, compiled_ms, compile_s):
    """bench.py's measurement of one step on this CPU, eager and compiled: what compile='auto' reads."""
    write_cache('compile ' + step_key(step, dtype, 'cpu'), dict(eager_ms=eager_ms, compiled_ms=compiled_ms,
                                                                 compile_s=compile_s))


def cpu_compile(step, dtype, iters):
    """Whether compiling pays back its compile time within `iters` iterations, by what bench.py
    measured for this step on this machine (the record, or None); without a measurement, no: on
    a CPU compiling takes tens of seconds and a short run rarely earns them back."""
    m = read_cache().get('compile ' + step_key(step, dtype, 'cpu'))
    if m is None:
        return False, None, ("no measurement of the compiled step on this CPU; `python bench.py --compile=both` "
                             "with the same model, batch_size, optimizer and dtype records one")
    saved = (m['eager_ms'] - m['compiled_ms']) / 1000 * iters
    return saved > m['compile_s'], m, (f"compiled {m['compiled_ms']:.1f} ms/iter vs eager {m['eager_ms']:.1f}, "
                                       f"{m['compile_s']:.0f} s to compile: {iters} iterations save {saved:.0f} s "
                                       f"(measured by bench.py)")


# the run's runtime ------------------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    device: str            # e.g. 'cuda:3' under torchrun, 'cpu'
    device_type: str       # 'cuda' | 'cpu' | 'mps', for torch.autocast and optimizer kernels
    dtype: str             # from setup(): as asked ('auto' too); from decide(): 'bfloat16' | 'float16' | 'float32'
    compile: bool | str    # from setup(): as asked ('auto' too); from decide(): requested (or chosen) and possible
    ddp: bool
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    auto: dict = field(default_factory=dict)  # from decide(): what each 'auto' was decided from (data, for the log)

    @property
    def master_process(self):
        return self.rank == 0

    def autocast(self):
        if self.dtype == 'float32':
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=getattr(torch, self.dtype))

    def maybe_compile(self, model):
        return torch.compile(model) if self.compile else model

    def sync(self):
        """Wait for the device: timings on CUDA must include the queued kernels."""
        if self.device_type == 'cuda':
            torch.cuda.synchronize()

    def peak_flops(self):
        """Peak FLOP/s of this device in the run's dtype, or None for an unlisted GPU."""
        if self.device_type == 'cpu':
            return cpu_peak_flops(self.dtype)
        if self.device_type == 'cuda':
            name = torch.cuda.get_device_name(torch.device(self.device))
            for key, half, single in GPU_PEAK_FLOPS:
                if key in name:
                    return single if self.dtype == 'float32' else half
        return None


def flops_per_token(n_params, n_layer, n_head, n_embd, block_size):
    """Forward + backward FLOPs per token, PaLM appendix B: 6N + 12 L H Q T. The momentum models
    add only elementwise work, so the same count holds for them."""
    return 6 * n_params + 12 * n_layer * n_head * (n_embd // n_head) * block_size


def train_memory_bytes(model_type, model_args, batch_size, eval_iters, dtype):
    """A low estimate of the memory a training run allocates on each rank: weights, gradients and
    two optimizer moments in float32 (16 bytes a parameter, counted on the model itself, so every
    arm's tables are in), the activations of one micro-batch (Korthikanti et al. 2022: 34 C + 5 H T
    bytes a token a layer in 16 bits, twice that in float32; the logits and their gradient), and
    the evaluation's window offsets."""
    n_layer, n_head, n_embd = model_args['n_layer'], model_args['n_head'], model_args['n_embd']
    # every layer holds the same parameters, so two small models give the count without building
    # n_layer layers (a million of them would take minutes even on the meta device)
    one, two = (count_params(model_type, {**model_args, 'n_layer': n})[0] for n in (1, 2))
    n_params = one + (n_layer - 1) * (two - one)
    block_size, vocab_size = model_args['block_size'], model_args['vocab_size']
    width = 2 if dtype in ('bfloat16', 'float16') else 4
    tokens = batch_size * block_size
    activations = tokens * n_layer * (34 * n_embd + 5 * n_head * block_size) * width // 2 + 3 * tokens * vocab_size * 4
    return 16 * n_params + activations + 16 * eval_iters * batch_size


def available_memory(device):
    """Bytes free for this process on `device` ('auto' resolves as in setup), or None if unknown."""
    device = resolve_device(device)
    if device.startswith('cuda'):
        index = int(device.split(':')[1]) if ':' in device else int(os.environ.get('LOCAL_RANK', 0))
        return torch.cuda.mem_get_info(index)[0]
    try:  # the CPU (and the unified memory of mps): what the kernel could hand out without swapping
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        # torchrun's ranks on one machine share it
        return int(info['MemAvailable'].split()[0]) * 1024 // int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    except (OSError, KeyError, ValueError):
        return None


def resolve_device(device):
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f"device={device!r} but CUDA is not available here: use --device=cpu (or auto)")
    if device == 'mps' and not torch.backends.mps.is_available():
        raise UserError("device='mps' but MPS is not available here: use --device=cpu (or auto)")
    if device.split(':')[0] not in ('cpu', 'cuda', 'mps'):
        raise UserError(f"device={device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


def compile_blocker(device_type):
    """Why torch.compile cannot work here, or None if it should."""
    if device_type == 'cpu' and not any(shutil.which(c) for c in ('c++', 'g++', 'clang++')):
        return "no C++ compiler found (inductor builds CPU kernels with one)"
    if device_type == 'cuda':
        import importlib.util
        if importlib.util.find_spec('triton') is None:
            return "triton is not installed (inductor generates CUDA kernels with it)"
    if device_type not in ('cpu', 'cuda'):
        return f"inductor does not target device type {device_type!r}"
    return None


def setup(device='auto', dtype='auto', compile='auto', backend='auto'):
    """Where the run is: its device, and the process group joined when launched by torchrun
    (RANK in the environment): NCCL on CUDA, gloo on CPU. dtype and compile are checked and kept
    as asked; decide() resolves 'auto' once the run's step is known."""
    if dtype not in ('auto', 'bfloat16', 'float16', 'float32'):
        raise UserError(f"dtype={dtype!r}: expected 'auto', 'bfloat16', 'float16' or 'float32'")
    if compile not in ('auto', True, False):
        raise UserError(f"compile={compile!r}: expected 'auto', True or False")
    device = resolve_device(device)
    if backend not in ('auto', 'nccl', 'gloo'):
        raise UserError(f"backend={backend!r}: expected 'auto', 'nccl' or 'gloo'")
    if backend == 'nccl' and not device.startswith('cuda'):
        raise UserError(f"backend='nccl' needs CUDA but the device is {device!r}: use --backend=gloo (or auto)")
    ddp = int(os.environ.get('RANK', -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    if ddp:
        rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
        if device.startswith('cuda'):
            device = f'cuda:{local_rank}'  # one GPU per process
            torch.cuda.set_device(device)
        if backend == 'auto':
            backend = 'nccl' if device.startswith('cuda') else 'gloo'
        torch.distributed.init_process_group(backend=backend)
    device_type = 'cuda' if device.startswith('cuda') else device
    if dtype == 'float16' and device_type != 'cuda':
        raise UserError("dtype='float16' needs CUDA (its GradScaler is CUDA-only): use bfloat16 or float32")
    if device_type == 'cuda':
        # TF32 matmuls for whatever runs in float32 outside autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, device_type, dtype, compile, ddp, rank, local_rank, world_size)


def decide(rt, step=None, iters=0, verbose=True):
    """rt with its dtype and compile resolved for `step` (a Step) over `iters` iterations, and one
    printed line per 'auto' saying why; under torchrun rank 0 measures and every rank runs what it
    chose. Without a step, 'auto' on the CPU is float32 and eager."""
    choice = [*choose(rt.dtype, rt.compile, rt.device_type, step, iters)] if rt.rank == 0 else [None] * 4
    if rt.ddp:
        torch.distributed.broadcast_object_list(choice, src=0)
    dtype, compile, auto, notes = choice
    if verbose and rt.rank == 0:
        for note in notes:
            print(note)
    return dataclasses.replace(rt, dtype=dtype, compile=compile, auto=auto)


def choose(dtype, compile, device_type, step, iters):
    """What 'auto' means here (see the module docstring): the dtype, the compile flag, what each
    'auto' was decided from, and one line per choice saying why."""
    auto, notes = {}, []
    if dtype == 'auto':
        if device_type == 'cuda':
            dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
        elif device_type == 'cpu' and step:
            dtype, auto['dtype'], why = cpu_dtype(step)
            notes.append(f"dtype auto: {dtype}: {why}")
        else:
            dtype = 'float32'
    blocker = compile_blocker(device_type) if compile else None
    if blocker:
        if compile is True:
            notes.append(f"note: torch.compile is off: {blocker}")
        compile = False
    elif compile == 'auto':
        if device_type == 'cpu' and step:
            compile, record, why = cpu_compile(step, dtype, iters)
            auto['compile'] = dict(record=record, iters=iters)
            notes.append(f"compile auto: {compile}: {why}")
        else:
            compile = device_type == 'cuda'
    return dtype, compile, auto, notes


def teardown(rt):
    if rt.ddp and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
