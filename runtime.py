"""
The one place that decides where and how the models run: device, dtype and autocast,
torch.compile, torchrun/DDP, and the device's peak FLOP/s that MFU is measured against.
train.py, sample.py, bench.py and compare.py (through train.py) read what it decides.

    device:  'auto' (cuda if present, else cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
    dtype:   'auto' | 'bfloat16' | 'float16' | 'float32'
    compile: 'auto' | True | False

On CUDA, 'auto' is bf16 autocast (fp16 with a GradScaler where the GPU lacks bf16) and
torch.compile. On the CPU no flag tells which is faster: bf16 autocast was 2.5x faster than fp32
on one Xeon of ours and 2.3x slower on another that reports AVX512-BF16. So 'auto' measures, on
this machine, a training step of the run's width in both precisions (and, for compile, reads
what bench.py measured at the run's shape), caches the result per machine and torch version in
~/.cache/yuriiformer/, and prints one line with what it chose and why.
"""
import json
import os
import platform
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from configurator import UserError

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


def best_seconds(fn, reps, give_up=float('inf')):
    """The fastest of reps calls after a warm-up call (first-call kernel selection and allocation);
    just the warm-up's time if that already took longer than give_up seconds."""
    t0 = time.perf_counter()
    fn()
    best = time.perf_counter() - t0
    if best > give_up:
        return best
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def probe_cpu_step(n_embd, tokens, dtype, give_up=float('inf')):
    """Seconds for forward + backward of a transformer MLP (n_embd -> 4 n_embd -> n_embd) on
    `tokens` tokens, in float32 or under bf16 autocast: the matmul shapes of a training step."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, n_embd, generator=g)
    w1 = (0.02 * torch.randn(n_embd, 4 * n_embd, generator=g)).requires_grad_()
    w2 = (0.02 * torch.randn(4 * n_embd, n_embd, generator=g)).requires_grad_()

    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16'):
            y = torch.nn.functional.gelu(x @ w1) @ w2
        y.float().square().mean().backward()
    return best_seconds(step, 3, give_up)


def cpu_dtype(n_embd, tokens):
    """float32 or bfloat16, whichever runs the probe step faster here, and the reason in words."""
    # the run's rows, capped at about 2 GFLOP a step: a fraction of a second in the faster precision
    tokens = min(tokens, 4096, max(64, int(2e9 / (24 * n_embd ** 2))))
    key = f'dtype probe {n_embd}x{tokens}'
    t = read_cache().get(key)
    cached = t is not None
    if not cached:
        t32 = probe_cpu_step(n_embd, tokens, 'float32')
        # a bf16 warm-up 4x slower than fp32 has decided it: no need to wait for more of them
        t = dict(float32=t32, bfloat16=probe_cpu_step(n_embd, tokens, 'bfloat16', give_up=4 * t32))
        write_cache(key, t)
    best = min(t, key=t.get)
    why = (f"an MLP step of width {n_embd} on {tokens} tokens took {1000 * t['float32']:.2f} ms in float32, "
           f"{1000 * t['bfloat16']:.2f} ms in bf16 autocast on this CPU ({'cached' if cached else 'measured now'})")
    return best, why


def cpu_peak_flops(dtype):
    """The CPU has no datasheet figure we can trust across machines: the best FLOP/s of a
    1024^3 matmul in `dtype` on this machine's threads, measured once and cached."""
    key = f'matmul flops {dtype}'
    flops = read_cache().get(key)
    if flops is None:
        a, b = (torch.randn(1024, 1024, dtype=getattr(torch, dtype)) for _ in range(2))
        flops = 2 * 1024 ** 3 / best_seconds(lambda: a @ b, 5, give_up=1.0)  # emulated bf16 can take seconds
        write_cache(key, flops)
    return flops


def compile_key(shape):
    return 'step ms ' + ' '.join(f'{k}={shape[k]}' for k in sorted(shape))


def record_step_times(shape, eager_ms, compiled_ms, compile_s):
    """bench.py's measurement of one shape, eager and compiled: what compile='auto' reads."""
    write_cache(compile_key(shape), dict(eager_ms=eager_ms, compiled_ms=compiled_ms, compile_s=compile_s))


def cpu_compile(shape, iters):
    """Whether compiling pays back its compile time within `iters` iterations, by what bench.py
    measured for this shape on this machine; without a measurement, no: on a CPU compiling takes
    tens of seconds and a short run rarely earns them back."""
    m = read_cache().get(compile_key(shape))
    if m is None:
        return False, (f"no measurement of the compiled step at this shape on this CPU; "
                       f"`python bench.py --compile=both` at the same shape records one")
    saved = (m['eager_ms'] - m['compiled_ms']) / 1000 * iters
    return saved > m['compile_s'], (f"compiled {m['compiled_ms']:.1f} ms/iter vs eager {m['eager_ms']:.1f}, "
                                    f"{m['compile_s']:.0f} s to compile: {iters} iterations save {saved:.0f} s "
                                    f"(measured by bench.py)")


# the run's runtime ------------------------------------------------------------

@dataclass
class Runtime:
    device: str            # e.g. 'cuda:3' under torchrun, 'cpu'
    device_type: str       # 'cuda' | 'cpu' | 'mps', for torch.autocast and optimizer kernels
    dtype: str             # resolved: 'bfloat16' | 'float16' | 'float32'
    compile: bool          # resolved: requested (or chosen) and possible
    ddp: bool
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

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


def train_memory_bytes(n_layer, n_head, n_embd, block_size, batch_size, vocab_size, eval_iters, dtype, tables):
    """A low estimate of the memory a training run allocates on each rank: weights, gradients and
    two optimizer moments in float32 (16 bytes a parameter), the activations of one micro-batch
    (Korthikanti et al. 2022: 34 C + 5 H T bytes a token a layer in 16 bits, twice that in
    float32; the logits and their gradient), and the evaluation's window offsets. tables: the
    nesterov model's velocity tables (a second token and position table)."""
    params = 12 * n_layer * n_embd ** 2 + (vocab_size + block_size) * n_embd * (2 if tables else 1)
    width = 2 if dtype in ('bfloat16', 'float16') else 4
    tokens = batch_size * block_size
    activations = tokens * n_layer * (34 * n_embd + 5 * n_head * block_size) * width // 2 + 3 * tokens * vocab_size * 4
    return 16 * params + activations + 16 * eval_iters * batch_size


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


def setup(device='auto', dtype='auto', compile='auto', backend='auto', shape=None, iters=0, verbose=True):
    """Resolve the run's device, dtype and compile, and join the process group when launched by
    torchrun (RANK in the environment): NCCL on CUDA, gloo on CPU. shape (the model and batch
    dimensions) and iters tell 'auto' what to measure on the CPU."""
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
    notes = []
    if rank == 0:
        dtype, compile, notes = choose(dtype, compile, device_type, shape, iters)
    if ddp:  # every rank runs what rank 0 measured and chose
        choice = [dtype, compile]
        torch.distributed.broadcast_object_list(choice, src=0)
        dtype, compile = choice
    if device_type == 'cuda':
        # TF32 matmuls for whatever runs in float32 outside autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if verbose:
        for note in notes:
            print(note)
    return Runtime(device, device_type, dtype, compile, ddp, rank, local_rank, world_size)


def choose(dtype, compile, device_type, shape, iters):
    """What 'auto' means here (see the module docstring), and one line per choice saying why."""
    notes = []
    if dtype == 'auto':
        if device_type == 'cuda':
            dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
        elif device_type == 'cpu' and shape:
            dtype, why = cpu_dtype(shape['n_embd'], shape['batch_size'] * shape['block_size'])
            notes.append(f"dtype auto: {dtype}: {why}")
        else:
            dtype = 'float32'
    blocker = compile_blocker(device_type) if compile else None
    if blocker:
        if compile is True:
            notes.append(f"note: torch.compile is off: {blocker}")
        compile = False
    elif compile == 'auto':
        if device_type == 'cpu' and shape:
            compile, why = cpu_compile(dict(shape, dtype=dtype), iters)
            notes.append(f"compile auto: {compile}: {why}")
        else:
            compile = device_type == 'cuda'
    return dtype, compile, notes


def teardown(rt):
    if rt.ddp and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
