"""
Checkpoints: written atomically, read back with torch.load(weights_only=True), and every way
they can fail reported in one line that names the file and the cause.

A checkpoint is a plain dict that torch.load(..., weights_only=True) can read:
    model           state_dict of the uncompiled, unwrapped module (no '_orig_mod.' keys)
    model_type      'gpt' | 'nesterov'
    model_args      the model's config dataclass as a dict
    optimizers      list of optimizer state_dicts, scaler: GradScaler state_dict
    iter_num, best_val_loss, train_time, config (every train.py knob), meta (the dataset's
    meta.json: tokenizer and vocab), rng_state (the data-order generator)
"""
import glob
import os
import shutil

import torch

from configurator import UserError


def remove_stale_temporaries(out_dir):
    """Delete the temporary files of saves that were killed half-way (kill -9, power loss):
    each can be as large as a checkpoint, and nothing reads them."""
    for path in glob.glob(os.path.join(out_dir, '*.pt.tmp*')):
        os.remove(path)


def tensor_bytes(obj):
    """Bytes of the tensors in a nested dict/list: about what torch.save will write."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(ckpt, path):
    """Write to a temporary file in the same directory, fsync, then rename over `path`: a crash
    or a full disk mid-save leaves the previous checkpoint intact."""
    directory = os.path.dirname(path) or '.'
    need, free = tensor_bytes(ckpt) + (1 << 20), shutil.disk_usage(directory).free
    if need > free:
        raise UserError(f"cannot save {path}: the disk is full ({free / 2**20:,.1f} MiB free, the checkpoint "
                        f"needs about {need / 2**20:,.1f} MiB); free some space and resume with --init_from=resume")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, 'wb') as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot save {path}: {e.strerror or e}; the previous checkpoint is unchanged") from e
    except RuntimeError as e:  # torch's zip writer reports a short write (a disk that filled up) this way
        raise UserError(f"cannot save {path}: writing failed ({str(e).splitlines()[0]}), is the disk full? "
                        f"The previous checkpoint is unchanged") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def link_checkpoint(src, dst):
    """dst becomes the same file as src (a hard link, renamed into place atomically): a best
    checkpoint that is also the last one costs no second write. Where hard links are not
    possible, a copy."""
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        raise UserError(f"cannot write {dst}: {e.strerror or e}; {src} is saved") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, map_location='cpu', mmap=False):
    """The checkpoint dict; mmap=True maps the tensors instead of reading them (for metadata)."""
    if not os.path.exists(path):
        raise UserError(f"no checkpoint at {path}: train one first (python train.py --out_dir={os.path.dirname(path) or '.'})")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read {path}: permission denied")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        if 'GLOBAL' in str(e):  # weights_only refused to build an object of some class: it never runs it
            raise UserError(f"{path} holds Python objects that weights_only loading refuses to build: it is "
                            f"not a checkpoint of this repo and was not loaded") from e
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}): it is corrupt or "
                        f"truncated; use the other checkpoint in its directory or retrain") from e
    missing = {'model', 'model_type', 'model_args'} - set(ckpt) if isinstance(ckpt, dict) else {'model'}
    if missing:
        raise UserError(f"{path} is not a checkpoint of this repo (missing {sorted(missing)})")
    return ckpt
