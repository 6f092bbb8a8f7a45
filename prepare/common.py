"""
What every prepare script shares: the on-disk format, the document-level split, atomic writes.

Format (as nanoGPT): data/<name>/train.bin and val.bin hold uint16 token ids, read back with
np.memmap; meta.json beside them names the tokenizer and vocab size and records how the data
was made. meta.json is written last, so its presence means both .bin files are complete.
"""
import hashlib
import json
import os

import numpy as np

DTYPE = np.uint16  # every vocab here is < 65536


def is_val_document(index, seed, val_fraction):
    """Held out by a seeded hash of the document index: stable across machines, numpy versions
    and worker counts, and a document never straddles the split."""
    h = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(h[:8], 'little') / 2 ** 64 < val_fraction


def write_tokens(path, ids):
    """Write a whole token array atomically: a crash leaves no file that looks complete."""
    ids = np.asarray(ids)
    assert ids.max(initial=0) < 2 ** 16, "token ids do not fit in uint16"
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(ids.astype(DTYPE).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_meta(data_dir, meta):
    """meta.json goes last and atomically: it is the mark of a finished dataset."""
    path = os.path.join(data_dir, 'meta.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(meta, f, indent=2)
    os.replace(path + '.tmp', path)


def is_prepared(data_dir):
    """True when meta.json exists and each .bin holds exactly the tokens meta.json promises."""
    try:
        with open(os.path.join(data_dir, 'meta.json')) as f:
            meta = json.load(f)
        return all(os.path.getsize(os.path.join(data_dir, f'{s}.bin')) == meta[f'{s}_tokens'] * DTYPE().itemsize
                   for s in ('train', 'val'))
    except (OSError, ValueError, KeyError):
        return False
