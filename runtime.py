"""
The one place that decides where and how the models run: device, dtype and autocast,
torch.compile, and torchrun/DDP. train.py, sample.py and bench.py read what it decides.

    device: 'auto' (cuda if present, else cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
    dtype:  'auto' (bfloat16 where the hardware has it, else float32) | 'bfloat16' | 'float16' | 'float32'
"""
import ctypes
import os
import platform
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass

import torch


class RuntimeSetupError(Exception):
    """A device/dtype/compile request this machine cannot honour; the message says what to do."""


def cpu_has_bf16():
    # AVX512-BF16 or AMX: bf16 matmuls run natively; elsewhere bf16 autocast is emulated and slow
    return bool(getattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)()
                or getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)())


def resolve_device(device):
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeSetupError(f"device={device!r} but CUDA is not available here: use --device=cpu (or auto)")
    if device == 'mps' and not torch.backends.mps.is_available():
        raise RuntimeSetupError("device='mps' but MPS is not available here: use --device=cpu (or auto)")
    return device


def resolve_dtype(dtype, device_type):
    if dtype == 'auto':
        if device_type == 'cuda':
            return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
        return 'bfloat16' if device_type == 'cpu' and cpu_has_bf16() else 'float32'
    if dtype not in ('bfloat16', 'float16', 'float32'):
        raise RuntimeSetupError(f"dtype={dtype!r}: expected one of 'auto', 'bfloat16', 'float16', 'float32'")
    if dtype == 'float16' and device_type != 'cuda':
        raise RuntimeSetupError("dtype='float16' needs CUDA (its GradScaler is CUDA-only): use bfloat16 or float32")
    return dtype


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


def keep_freed_memory():
    """Make glibc malloc keep freed memory for reuse instead of handing it back to the OS.

    A CPU training step allocates and frees the same activation buffers every iteration. By
    default glibc serves large blocks with mmap and trims the heap top past M_TRIM_THRESHOLD, so
    every step faults the same pages back in and the kernel zeroes them again: at the default
    shape 1.9k page faults per step for the baseline, 4.9k for nesterov (more live activations),
    3 and 11 ms of system time per step. With mmap off and no trimming, the heap is reused and
    faults drop to ~0 (jemalloc and tcmalloc, which PyTorch's CPU tuning guide recommends via
    LD_PRELOAD, behave this way by default). Raising the mmap threshold is not enough: it stops at
    32 MiB, and with GPT-2's vocabulary the logits and their softmax are hundreds of MB (default
    model, 16 x 128 tokens: 550k faults and 0.9 s of system time per step, 1.7 -> 0.8 s per step
    on one thread once they are kept). The price is a higher peak RSS where big blocks of
    different sizes come and go, as the heap settles (there: 1.95 GB -> 2.8-3.6 GB, flat from
    then on); at the default byte-level shape it is unchanged. Linux/glibc only; returns whether
    it applied.
    """
    if sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc':
        return False
    libc = ctypes.CDLL('libc.so.6')
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    # every block from the heap, none from mmap (0 mmap'd blocks at most), and a heap that is never
    # trimmed (-1 disables trimming)
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, -1))


@dataclass
class Runtime:
    device: str            # e.g. 'cuda:3' under torchrun, 'cpu'
    device_type: str       # 'cuda' | 'cpu' | 'mps', for torch.autocast and optimizer kernels
    dtype: str             # resolved: 'bfloat16' | 'float16' | 'float32'
    compile: bool          # resolved: requested and possible
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


def setup(device='auto', dtype='auto', compile=True, backend='auto', verbose=True):
    """Resolve the run's device, dtype and compile, and join the process group when launched by
    torchrun (RANK in the environment): NCCL on CUDA, gloo on CPU."""
    ddp = int(os.environ.get('RANK', -1)) != -1
    rank = local_rank = 0
    world_size = 1
    if ddp:
        rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
        world_size = int(os.environ['WORLD_SIZE'])
        device = resolve_device(device)
        if device.startswith('cuda'):
            device = f'cuda:{local_rank}'  # one GPU per process
            torch.cuda.set_device(device)
        if backend == 'auto':
            backend = 'nccl' if device.startswith('cuda') else 'gloo'
        torch.distributed.init_process_group(backend=backend)
    else:
        device = resolve_device(device)
    device_type = 'cuda' if device.startswith('cuda') else device
    dtype = resolve_dtype(dtype, device_type)
    blocker = compile_blocker(device_type) if compile else None
    if blocker and verbose and rank == 0:
        print(f"note: torch.compile is off: {blocker}")
    if device_type == 'cuda':
        # TF32 matmuls for whatever runs in float32 outside autocast
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device_type == 'cpu':
        keep_freed_memory()
    return Runtime(device, device_type, dtype, bool(compile and not blocker), ddp, rank, local_rank, world_size)


def teardown(rt):
    if rt.ddp and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
