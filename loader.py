"""
Reads what prepare/ wrote (data/<name>/{train.bin, val.bin, meta.json}) and cuts it into
batches, with every way the data can be wrong reported here, at the boundary, in one line.

Data order is a pure function of the seed: every iteration draws the offsets of the whole
global batch (all ranks, all micro-steps) from one generator, and each rank takes its share.
So two model arms with the same seed see the same tokens in the same order, a torchrun run
sees the same global batch as a single process, and a resumed run continues the same stream.
"""
import json
import os

import numpy as np
import torch

from configurator import UserError


def prepare_command(data_dir):
    """The command that makes data_dir: the prepare script of its name, or for any other name
    the local-files path (text, json or parquet files of your own, in GPT-2 BPE)."""
    name = os.path.basename(os.path.normpath(data_dir))
    if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'prepare', f'{name}.py')):
        return f"python prepare/tinystories.py --train_files TRAIN.txt --val_files VAL.txt --out_dir={data_dir}"
    where = '' if os.path.normpath(data_dir) == os.path.join('data', name) else f' --out_dir={data_dir}'
    return f"python prepare/{name}.py{where}"


def read_meta(data_dir):
    """meta.json, checked: it names a tokenizer this repo has, and the sizes of both splits."""
    from tokenizer import TOKENIZERS, VOCAB_SIZES
    path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(path):
        raise UserError(f"{path} not found: prepare the dataset first with `{prepare_command(data_dir)}`")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}): re-run `{prepare_command(data_dir)} --force`")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}")
    missing = [k for k in ('tokenizer', 'vocab_size', 'train_tokens', 'val_tokens') if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: re-run `{prepare_command(data_dir)} --force`")
    redo = f"re-run `{prepare_command(data_dir)} --force`"
    if meta['tokenizer'] not in TOKENIZERS:
        raise UserError(f"{path} names the tokenizer {meta['tokenizer']!r}, which this repo does not have "
                        f"({', '.join(TOKENIZERS)}): re-prepare the data with one of them")
    for k in ('vocab_size', 'train_tokens', 'val_tokens'):
        if type(meta[k]) is not int or meta[k] < 0:
            raise UserError(f"{path} has {k}={meta[k]!r}: expected a count (an integer >= 0); {redo}")
    # the ids were made by the tokenizer named: a vocab_size that is not its own says the label is wrong
    # (bytes data called gpt2 would train a 50k-row embedding on 256 ids, a larger one crash sample.py)
    if meta['vocab_size'] != VOCAB_SIZES[meta['tokenizer']]:
        raise UserError(f"{path} says vocab_size={meta['vocab_size']} but the {meta['tokenizer']} tokenizer has "
                        f"{VOCAB_SIZES[meta['tokenizer']]}: the data was not made by it; {redo}")
    return meta


def make_default_corpus_if_missing(data_dir):
    """The offline default corpus (python_docs) prepares itself on first use, in about a second;
    every other dataset has its prepare command."""
    is_default = os.path.basename(os.path.normpath(data_dir)) == 'python_docs'
    if is_default and not os.path.exists(os.path.join(data_dir, 'meta.json')):
        from prepare.python_docs import prepare
        try:
            prepare(data_dir)
        except SystemExit as e:  # prepare's one line, whose --out_dir is train.py's --data_root
            message = str(e.code).removeprefix('error: ').replace('another --out_dir', 'another --data_root')
            raise UserError(f"cannot prepare the default corpus in {data_dir}: {message}") from None


def model_vocab_size(meta):
    """The model's vocab_size for a dataset: its vocabulary padded up to a multiple of 64 (GPT-2's
    50257 -> 50304), which makes the embedding and head matmuls faster."""
    return ((meta['vocab_size'] + 63) // 64) * 64


def open_split(data_dir, split, block_size, vocab_size, meta):
    """The split as a read-only uint16 memmap, checked: present, as long as meta.json says, long
    enough for one window, and every id < vocab_size."""
    path = os.path.join(data_dir, f'{split}.bin')
    if not os.path.exists(path):
        raise UserError(f"{path} not found: prepare the dataset first with `{prepare_command(data_dir)}`")
    size, expected = os.path.getsize(path), 2 * meta[f'{split}_tokens']
    if size != expected:
        raise UserError(f"{path} has {size:,} bytes but meta.json promises {meta[f'{split}_tokens']:,} uint16 tokens "
                        f"({expected:,} bytes): it is truncated or from another run; re-run "
                        f"`{prepare_command(data_dir)} --force`")
    if size < 2 * (block_size + 1):
        raise UserError(f"{path} has {size // 2} tokens, fewer than block_size + 1 = {block_size + 1}: "
                        f"lower block_size or prepare more data")
    data = np.memmap(path, dtype=np.uint16, mode='r')
    # a full scan of a multi-GB split costs minutes at start-up; every 64th 1M-token chunk catches
    # a wrong tokenizer (its ids are everywhere) without that cost
    chunk = 1 << 20
    starts = range(0, len(data), chunk if len(data) <= 64 * chunk else 64 * chunk)
    top = max(int(data[s:s + chunk].max()) for s in starts)
    if top >= vocab_size:
        raise UserError(f"{path} holds token id {top} but the model's vocab_size is {vocab_size}: "
                        f"the data was made with another tokenizer; re-prepare it or fix vocab_size")
    return data


def batch_offsets(generator, n_tokens, block_size, n):
    """n random window starts in a split of n_tokens, drawn from `generator` (advances it)."""
    return torch.randint(n_tokens - block_size, (n,), generator=generator)


def eval_offsets(n_tokens, block_size, n):
    """A fixed evaluation set: n windows spread evenly over the whole split, the same for every
    run, arm and world size."""
    return torch.linspace(0, n_tokens - block_size - 1, n).long()


def get_batch(data, offsets, block_size, device):
    """Inputs and next-token targets (len(offsets), block_size) at the given window starts."""
    ix = offsets.tolist()
    x = torch.from_numpy(np.stack([data[i:i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64))
    if str(device).startswith('cuda'):
        # pinned memory lets the host-to-device copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
