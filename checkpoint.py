"""
Checkpoints and the model_type seam: which class a run trains, how a checkpoint is written
(atomically) and read back (weights_only=True, with a one-line error when it cannot be).

A checkpoint is a plain dict that torch.load(..., weights_only=True) can read:
    model           state_dict of the uncompiled, unwrapped module (no '_orig_mod.' keys)
    model_type      'gpt' | 'nesterov'
    model_args      the model's config dataclass as a dict
    optimizers      list of optimizer state_dicts, scaler: GradScaler state_dict
    iter_num, best_val_loss, config (every train.py knob), meta (the dataset's meta.json:
    tokenizer and vocab), rng_state (the data-order generator)
"""
import dataclasses
import os

import torch

from model import GPT, GPTConfig


class CheckpointError(Exception):
    """A missing, corrupt or mismatched checkpoint; the message says what to do."""


def model_classes(model_type):
    """(config class, model class) for a model_type config value."""
    if model_type == 'gpt':
        return GPTConfig, GPT
    if model_type == 'nesterov':
        from model_nesterov import NesterovConfig, NesterovGPT
        return NesterovConfig, NesterovGPT
    raise ValueError(f"unknown model_type {model_type!r}: expected 'gpt' or 'nesterov'")


def model_arg_names(model_type):
    return [f.name for f in dataclasses.fields(model_classes(model_type)[0])]


def build_model(model_type, model_args):
    config_cls, model_cls = model_classes(model_type)
    return model_cls(config_cls(**model_args))


def save_checkpoint(ckpt, path):
    """Write to a temporary file in the same directory, fsync, then rename over `path`: a crash
    or a full disk mid-save leaves the previous checkpoint intact."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, 'wb') as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, map_location='cpu', mmap=False):
    """The checkpoint dict; mmap=True maps the tensors instead of reading them (for metadata)."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}: train one first (python train.py --out_dir={os.path.dirname(path) or '.'})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}): it is corrupt or "
                              f"truncated; use the other checkpoint in its directory or retrain")
    missing = {'model', 'model_type', 'model_args'} - set(ckpt) if isinstance(ckpt, dict) else {'model'}
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this repo (missing {sorted(missing)})")
    return ckpt


def model_from_checkpoint(ckpt):
    """The model a checkpoint describes, with its weights loaded, in eval mode."""
    model = build_model(ckpt['model_type'], ckpt['model_args'])
    model.load_state_dict(ckpt['model'])
    return model.eval()
