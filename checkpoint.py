"""
What a run keeps in its out_dir, and every way it can fail reported in one line that names the
file and the cause: checkpoints (written atomically, their zip CRCs verified before
torch.load(weights_only=True) reads them back), log.jsonl (one JSON record a line), and the
lock that makes the out_dir one run's at a time.

A checkpoint is a plain dict that torch.load(..., weights_only=True) can read:
    model           state_dict of the uncompiled, unwrapped module (no '_orig_mod.' keys)
    model_type      'gpt' | 'nesterov'
    model_args      the model's config dataclass as a dict
    optimizers      list of optimizer state_dicts, scaler: GradScaler state_dict
    iter_num, best_val_loss, train_time, config (every train.py knob), meta (the dataset's
    meta.json: tokenizer and vocab), rng_state (the data-order generator)
"""
import fcntl
import glob
import json
import os
import shutil
import zipfile

import torch

from configurator import UserError


def lock_out_dir(out_dir):
    """Make out_dir this process's until it exits: an flock on out_dir/run.lock, which the kernel
    releases when the process dies however it dies, so the lock of a killed run is simply taken
    over. Returns the open lock file (keep it open). Another live run holding it is one line."""
    path = os.path.join(out_dir, 'run.lock')
    f = open(path, 'a+')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'unknown'
        f.close()
        raise UserError(f"out_dir={out_dir!r} is in use by another run (pid {holder}): wait for it to end, "
                        f"or pick another --out_dir")
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def remove_stale_temporaries(out_dir):
    """Delete the temporary files of saves that were killed half-way (kill -9, power loss):
    each can be as large as a checkpoint, and nothing reads them. Only under lock_out_dir: the
    temporaries of a live run are its saves in progress."""
    for path in glob.glob(os.path.join(out_dir, '*.pt.tmp*')):
        os.remove(path)


def read_log(path):
    """The records of a log.jsonl. A last line that is not JSON is a write cut short (a kill, a
    full disk): dropped with a warning. A damaged line before it is an error."""
    with open(path) as f:
        lines = f.read().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if n < len(lines):
                raise UserError(f"{path} line {n} is not JSON: the log is damaged; repair or remove that line")
            print(f"warning: {path} ends in a torn line (a write cut short): ignoring it")
    return records


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
        if isinstance(e.__context__, (KeyboardInterrupt, UserError)):  # and so a Ctrl-C inside a write
            raise e.__context__ from None
        raise UserError(f"cannot save {path}: writing failed ({str(e).splitlines()[0]}), is the disk full? "
                        f"The previous checkpoint is unchanged") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def link_checkpoint(src, dst):
    """dst becomes the same file as src (a hard link, renamed into place atomically): a best
    checkpoint that is also the last one costs no second write. Where hard links are not
    possible, a copy, after a free-space check."""
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        try:
            os.link(src, tmp)
        except OSError:
            need, free = os.path.getsize(src) + (1 << 20), shutil.disk_usage(os.path.dirname(dst) or '.').free
            if need > free:
                raise UserError(f"cannot write {dst}: the disk is full ({free / 2**20:,.1f} MiB free, the copy needs "
                                f"about {need / 2**20:,.1f} MiB); {src} is saved")
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        raise UserError(f"cannot write {dst}: {e.strerror or e}; {src} is saved") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def other_checkpoints(path):
    """The other checkpoint files beside path (not the same file under another name)."""
    others = sorted(glob.glob(os.path.join(os.path.dirname(path) or '.', '*.pt')))
    return [p for p in others if not (os.path.exists(path) and os.path.samefile(p, path))]


def damaged_member(path):
    """The name of the first entry of the checkpoint's zip whose bytes do not match their CRC-32
    (torch.load does not check them: a flipped bit in a tensor loads without a word), or None."""
    if not zipfile.is_zipfile(path):
        return None  # truncated or not a zip: torch.load says which
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return str(e)


def load_checkpoint(path, map_location='cpu', mmap=False, keys=('model', 'model_type', 'model_args')):
    """The checkpoint dict, with at least `keys`; mmap=True maps the tensors instead of reading
    them (for metadata: the CRCs are then not verified, which would read every byte)."""
    others = other_checkpoints(path)
    instead = f"use {' or '.join(others)}, or retrain" if others else "retrain"
    if not os.path.exists(path):
        if others:
            raise UserError(f"no checkpoint at {path}, but {', '.join(others)} is there: load that one "
                            f"(sample.py: --ckpt_name={os.path.basename(others[0])})")
        raise UserError(f"no checkpoint at {path}: train one first (python train.py --out_dir={os.path.dirname(path) or '.'})")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read {path}: permission denied")
    bad = None if mmap else damaged_member(path)
    if bad:
        raise UserError(f"{path} is damaged ({bad} does not match its checksum): {instead}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        if 'GLOBAL' in str(e):  # weights_only refused to build an object of some class: it never runs it
            raise UserError(f"{path} holds Python objects that weights_only loading refuses to build: it is "
                            f"not a checkpoint of this repo and was not loaded") from e
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}): it is corrupt or "
                        f"truncated; {instead}") from e
    missing = sorted(set(keys) - set(ckpt)) if isinstance(ckpt, dict) else sorted(keys)
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it is not a checkpoint of this repo, or of an "
                        f"older version of train.py; {instead}")
    return ckpt


def load_weights(model, ckpt, path):
    """ckpt['model'] into model, or one line when the two do not fit (a key missing or a shape
    that differs: a checkpoint edited or from another version)."""
    try:
        model.load_state_dict(ckpt['model'])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: its weights do not fit the model its model_args describe "
                        f"({str(e).splitlines()[0].strip()}): it is damaged or of another version") from e
