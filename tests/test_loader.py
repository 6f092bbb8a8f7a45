"""loader.py against the bytes on disk: windows, next-token targets, offsets that stay inside a split."""
import os

import numpy as np
import pytest
import torch

import loader
from configurator import UserError
from conftest import write_dataset

BLOCK = 8


def open_dataset(tmp_path, train_ids, val_ids):
    write_dataset(tmp_path, 'd', train_ids, val_ids)
    data_dir = os.path.join(tmp_path, 'd')
    meta = loader.read_meta(data_dir)
    return data_dir, {s: loader.open_split(data_dir, s, BLOCK, 256, meta) for s in ('train', 'val')}


def test_targets_are_the_next_tokens_of_the_raw_file(tmp_path):
    """x is the window at each offset of the .bin file and y the same window one token later,
    so position t of y is the token that follows position t of x."""
    rng = np.random.default_rng(0)
    data_dir, splits = open_dataset(tmp_path, rng.integers(0, 256, 500), rng.integers(0, 256, 100))
    raw = np.fromfile(os.path.join(data_dir, 'train.bin'), dtype=np.uint16).astype(np.int64)
    offsets = torch.tensor([0, 3, 250, len(raw) - BLOCK - 1])  # the first and the last full window too
    x, y = loader.get_batch(splits['train'], offsets, BLOCK, 'cpu')
    assert x.shape == y.shape == (4, BLOCK) and x.dtype == y.dtype == torch.int64
    for row, o in enumerate(offsets.tolist()):
        assert x[row].tolist() == raw[o:o + BLOCK].tolist()
        assert y[row].tolist() == raw[o + 1:o + 1 + BLOCK].tolist()
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert not torch.equal(x, y)  # random tokens: a copy of the input is not the target


def test_offsets_cover_the_split_and_stay_inside_it(tmp_path):
    """Training offsets are drawn from every start that leaves room for the targets, from the
    generator alone; evaluation offsets span the split from its first to its last full window."""
    _, splits = open_dataset(tmp_path, list(range(40)), list(range(20)))
    n = len(splits['train'])
    starts = loader.batch_offsets(torch.Generator().manual_seed(0), n, BLOCK, 4000)
    assert set(starts.tolist()) == set(range(n - BLOCK))  # every window whose targets fit, and only those
    again = loader.batch_offsets(torch.Generator().manual_seed(0), n, BLOCK, 4000)
    assert torch.equal(starts, again)
    ev = loader.eval_offsets(len(splits['val']), BLOCK, 5)
    assert ev.tolist() == [0, 2, 5, 8, 11] and ev.tolist() == loader.eval_offsets(20, BLOCK, 5).tolist()
    x, y = loader.get_batch(splits['val'], ev, BLOCK, 'cpu')  # the last window's targets end at the last token
    assert y[-1, -1].item() == 19 and x[0, 0].item() == 0


def test_a_split_needs_one_window_and_its_next_token(tmp_path):
    """block_size + 1 tokens make one training window (offset 0); block_size tokens are refused
    with the fix, before any batch is drawn."""
    _, splits = open_dataset(tmp_path / 'fits', list(range(BLOCK + 1)), list(range(BLOCK + 1)))
    offsets = loader.batch_offsets(torch.Generator().manual_seed(0), len(splits['train']), BLOCK, 3)
    x, y = loader.get_batch(splits['train'], offsets, BLOCK, 'cpu')
    assert offsets.tolist() == [0, 0, 0] and y[0].tolist() == list(range(1, BLOCK + 1))
    with pytest.raises(UserError, match=f'fewer than block_size \\+ 1 = {BLOCK + 1}: lower block_size'):
        open_dataset(tmp_path / 'short', list(range(BLOCK + 1)), list(range(BLOCK)))


def test_token_ids_must_be_below_vocab_size(tmp_path):
    write_dataset(tmp_path, 'd', [0, 255] * 20, [1, 2] * 20)
    meta = loader.read_meta(os.path.join(tmp_path, 'd'))
    assert loader.open_split(os.path.join(tmp_path, 'd'), 'train', BLOCK, 256, meta).max() == 255
    with pytest.raises(UserError, match="holds token id 255 but the model's vocab_size is 255"):
        loader.open_split(os.path.join(tmp_path, 'd'), 'train', BLOCK, 255, meta)


@pytest.mark.parametrize('vocab,padded', [(1, 64), (64, 64), (65, 128), (256, 256), (50257, 50304)])
def test_model_vocab_size_pads_to_the_next_multiple_of_64(vocab, padded):
    assert loader.model_vocab_size({'vocab_size': vocab}) == padded
