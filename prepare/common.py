"""
What every prepare script shares: the on-disk format, the document-level split, safe writes.

Format (as nanoGPT): data/<name>/train.bin and val.bin hold uint16 token ids, read back with
np.memmap; meta.json beside them names the tokenizer and vocab size and records how the data
was made. meta.json is written last, so its presence means both .bin files are complete.

Safe writes: nothing in out_dir changes until every input has been read (and, for the GPT-2
corpora, tokenized). The new files are written beside the old ones as <name>.tmp; then the old
meta.json goes, the two .bin files are renamed over the old ones and meta.json comes back last.
So a bad input, a full disk or Ctrl-C leaves the previous dataset as it was (a --force rebuild
needs room for both), and a kill -9 during the three renames leaves no meta.json: nothing that
loads as complete. A failure removes its .tmp files; what a kill -9 left, the next start removes.

The second half is the streaming path of the GPT-2 corpora (tinystories.py, openwebtext.py):
a `datasets` Dataset with a 'text' column, from the Hub or from local files, is tokenized in
parallel into the datasets cache, counted, and streamed shard by shard into train.bin.tmp and
val.bin.tmp. RAM stays bounded by one shard.
"""
import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np

from tokenizer import get_tokenizer

DTYPE = np.uint16  # every vocab here is < 65536
OUTPUTS = ('train.bin', 'val.bin', 'meta.json')  # in the order they are renamed into place: meta.json last


def is_val_document(index, seed, val_fraction):
    """Held out by a seeded hash of the document index: stable across machines, numpy versions
    and worker counts, and a document never straddles the split."""
    h = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(h[:8], 'little') / 2 ** 64 < val_fraction


def is_prepared(data_dir):
    """True when meta.json exists and each .bin holds exactly the tokens meta.json promises."""
    try:
        with open(os.path.join(data_dir, 'meta.json')) as f:
            meta = json.load(f)
        return all(os.path.getsize(os.path.join(data_dir, f'{s}.bin')) == meta[f'{s}_tokens'] * DTYPE().itemsize
                   for s in ('train', 'val'))
    except (OSError, ValueError, KeyError):
        return False


def tmp(out_dir, name):
    return os.path.join(out_dir, name + '.tmp')


def remove_tmp(out_dir):
    """The .tmp files of this run or of an earlier one killed midway: never part of a dataset."""
    for name in OUTPUTS:
        if os.path.exists(tmp(out_dir, name)):
            os.remove(tmp(out_dir, name))


def nearest_existing(path):
    """out_dir, or the closest folder above it that exists (out_dir is made only when writing starts)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def begin(out_dir, force, num_proc=1):
    """The checks that need no data, before anything slow: False if out_dir is already prepared
    (nothing to do). Removes nothing but the .tmp files of a killed run."""
    if num_proc < 1:
        raise SystemExit(f"error: --num_proc is {num_proc}: pass 1 or more tokenizer processes")
    where = nearest_existing(out_dir)
    if not os.path.isdir(where):
        raise SystemExit(f"error: {where} is a file, not a directory: pass another --out_dir")
    if is_prepared(out_dir) and not force:
        remove_tmp(out_dir)
        print(f"{out_dir} is already prepared (use --force to redo)")
        return False
    if not os.access(where, os.W_OK | os.X_OK):
        raise SystemExit(f"error: {where} is not writable: make it writable or pass another --out_dir")
    return True


def disk_error(e, path, instead):
    """One line for an OSError while writing under path: a full disk, a read-only folder."""
    if e.errno == errno.ENOSPC:
        return f"error: the disk is full: could not write {e.filename or path}: free some space or {instead}"
    return f"error: could not write {e.filename or path} ({e.strerror}): {instead}"


@contextlib.contextmanager
def writing(out_dir):
    """Around every change to out_dir: on any failure (Ctrl-C included) the .tmp files go, and an
    OSError becomes one line. The finished files are only ever replaced by commit()."""
    try:
        yield
    except BaseException as e:
        remove_tmp(out_dir)
        if isinstance(e, OSError):
            raise SystemExit(disk_error(e, out_dir, 'pass another --out_dir')) from None
        raise


def write_file(path, chunks):
    """Write byte-like chunks to path and fsync, so a rename never exposes a partial file. Returns the bytes."""
    n = 0
    with open(path, 'wb') as f:
        for chunk in chunks:
            f.write(chunk)
            n += memoryview(chunk).nbytes
        f.flush()
        os.fsync(f.fileno())
    return n


def make_out_dir(out_dir):
    """The first change to out_dir, once every input has been read; call inside writing()."""
    os.makedirs(out_dir, exist_ok=True)
    remove_tmp(out_dir)  # what a killed earlier run left


def commit(out_dir, meta):
    """Put train.bin.tmp and val.bin.tmp in place of the old dataset, with meta.json last."""
    with writing(out_dir):
        # the last write that can fail (a full disk), while the old dataset is still whole
        write_file(tmp(out_dir, 'meta.json'), [json.dumps(meta, indent=2).encode()])
        if os.path.exists(os.path.join(out_dir, 'meta.json')):  # from here to the last rename nothing loads
            os.remove(os.path.join(out_dir, 'meta.json'))
        for name in OUTPUTS:
            os.replace(tmp(out_dir, name), os.path.join(out_dir, name))


def write_dataset(out_dir, splits, meta):
    """A dataset that fits in RAM (python_docs): {'train': ids, 'val': ids}, then meta.json."""
    with writing(out_dir):
        make_out_dir(out_dir)
        for split, ids in splits.items():
            ids = np.asarray(ids)
            assert ids.max(initial=0) < 2 ** 16, "token ids do not fit in uint16"
            write_file(tmp(out_dir, f'{split}.bin'), [ids.astype(DTYPE)])
    commit(out_dir, meta)


# ---------------------------------------------------------------------------------------------
# GPT-2 corpora through `datasets`: the one code path for Hub and local sources

EOT_TEXT = '<|endoftext|>'  # the separator line between stories in the TinyStories .txt releases
ROWS_PER_WRITE = 8192  # documents per write: ~10M tokens (~20 MB) of OpenWebText at most
FORMATS = {'.txt': 'text', '.json': 'json', '.jsonl': 'json', '.json.gz': 'json', '.jsonl.gz': 'json',
           '.parquet': 'parquet'}
CACHE_INSTEAD = 'set HF_DATASETS_CACHE to a folder on another disk'


def gb(n_bytes):
    return f"{n_bytes / 1e9:.2f} GB"


def reason(e):
    """An exception in a few words, for a one-line error."""
    return f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__


def load_hub(name, what_to_do, **kwargs):
    """datasets.load_dataset from the Hub, with a one-line error when it cannot be reached."""
    import datasets
    try:
        return datasets.load_dataset(name, **kwargs)
    except Exception as e:  # offline, gated, renamed: all end the same way for the user
        raise SystemExit(f"error: could not load {name} from the Hub ({reason(e)}): {what_to_do}")


def _text_documents(files, stamps):
    """Documents of .txt files as TinyStories ships them: the text between '<|endoftext|>' lines (the
    marker inside a line is story text). `stamps` (size, mtime) is unused here but part of the cache
    key, so an edited file is read again."""
    for path in files:
        doc = []
        with open(path, encoding='utf-8') as f:
            for line in f:  # line by line: a 2 GB file never sits in RAM
                if line.strip() != EOT_TEXT:
                    doc.append(line)
                    continue
                if ''.join(doc).strip():
                    yield {'text': ''.join(doc).strip()}
                doc = []
        if ''.join(doc).strip():  # the last story may lack its marker
            yield {'text': ''.join(doc).strip()}


def load_local(patterns, num_proc):
    """Local copies as a Dataset with a 'text' column, and the files it came from: .txt (TinyStories
    format), .json/.jsonl (one object per line with a 'text' field) or .parquet; globs allowed."""
    import datasets
    from datasets.config import HF_DATASETS_CACHE
    files = []
    for pattern in patterns:
        hits = sorted(glob.glob(os.path.expanduser(pattern)))
        if not hits:
            raise SystemExit(f"error: no file matches {pattern}: check the path")
        files += hits
    kinds = {next((k for ext, k in FORMATS.items() if f.endswith(ext)), None) for f in files}
    if None in kinds or len(kinds) > 1:
        raise SystemExit(f"error: {files} must all be one of {', '.join(FORMATS)}: convert or split them")
    kind = kinds.pop()
    try:
        if kind == 'text':
            stamps = [(os.path.getsize(f), os.path.getmtime(f)) for f in files]
            ds = datasets.Dataset.from_generator(_text_documents, gen_kwargs=dict(files=files, stamps=stamps),
                                                 features=datasets.Features({'text': datasets.Value('string')}))
        else:
            ds = datasets.load_dataset(kind, data_files=files, split='train', num_proc=min(num_proc, len(files)))
    # what datasets raises for a file without a single document (ValueError; StopIteration for an empty
    # .json), one that is not parquet (ValueError), a malformed json line or a .txt that is not UTF-8
    # (DatasetGenerationError, the cause says which), or its cache on a full disk (the cause: ENOSPC)
    except (OSError, ValueError, StopIteration, datasets.exceptions.DatasetGenerationError) as e:
        cause = e.__cause__ or e
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise SystemExit(disk_error(cause, HF_DATASETS_CACHE, CACHE_INSTEAD)) from None
        raise SystemExit(f"error: no documents read from {files} ({reason(cause)}): check the files (a .txt needs "
                         f"text between '<|endoftext|>' lines, a .json/.jsonl one object a line)") from None
    if 'text' not in ds.column_names:
        raise SystemExit(f"error: {files} have no 'text' field (fields: {ds.column_names}): rename the text field to 'text'")
    # a number, a list or a mix of types in 'text' loads as another type; null (or a record without
    # 'text') as a missing value: each is a document we cannot tokenize
    text_type = getattr(ds.features['text'], 'dtype', type(ds.features['text']).__name__)
    if text_type not in ('string', 'large_string'):
        raise SystemExit(f"error: {files}: the 'text' field holds {text_type} values, not only strings: make every "
                         f"record's text a string")
    missing = ds.data.column('text').null_count
    if missing:
        raise SystemExit(f"error: {files}: {missing:,} records have no text (null, or no 'text' field): drop them "
                         f"or give them text")
    return ds, files


def _encode(batch, indices, val):
    tok = get_tokenizer('gpt2')
    # encode_ordinary: '<|endoftext|>' inside a document is text; the real separator is appended after it
    ids = [tok.encode(text) + [tok.eot_token] for text in batch['text']]
    if isinstance(val, bool):  # a split of its own (TinyStories' validation)
        is_val = [val] * len(ids)
    else:  # held out by the seeded hash of the document index (OpenWebText)
        is_val = [is_val_document(i, *val) for i in indices]
    return {'ids': ids, 'len': [len(x) for x in ids], 'val': is_val}


def tokenize(ds, num_proc, val, desc):
    """GPT-2 ids of every document, cached by `datasets` (a re-run after an interruption of the
    write reuses them). val: True/False for the whole dataset, or (seed, val_fraction)."""
    import datasets
    from datasets.config import HF_DATASETS_CACHE
    features = datasets.Features({'ids': datasets.List(datasets.Value('uint16')), 'len': datasets.Value('int64'),
                                  'val': datasets.Value('bool')})  # uint16 halves the cache against int32
    try:
        return ds.map(_encode, fn_kwargs={'val': val}, with_indices=True, batched=True, remove_columns=ds.column_names,
                      features=features, num_proc=num_proc if num_proc > 1 else None, desc=desc)
    except OSError as e:  # the tokenized copy fills the cache's disk
        raise SystemExit(disk_error(e, HF_DATASETS_CACHE, CACHE_INSTEAD)) from None


def print_plan(datasets_, out_dir, num_proc):
    """Tokens, disk and time, measured on the first documents and extrapolated, before the long part."""
    from datasets.config import HF_DATASETS_CACHE
    if not all(len(d) for d in datasets_):
        raise SystemExit("error: a split has no documents: check the source files")
    tok = get_tokenizer('gpt2')
    sample = datasets_[0].select(range(min(2000, len(datasets_[0]))))['text']
    t0 = time.time()
    sample_tokens = sum(len(tok.encode(t)) + 1 for t in sample)
    rate = sample_tokens / max(time.time() - t0, 1e-6)
    text_bytes = sum(d.data.nbytes for d in datasets_)
    tokens = text_bytes / (sum(len(t.encode()) for t in sample) / sample_tokens)
    print(f"plan: {sum(len(d) for d in datasets_):,} documents, {gb(text_bytes)} of text -> about "
          f"{tokens:,.0f} tokens; disk: {gb(2 * tokens)} for train.bin + val.bin in {out_dir} "
          f"({gb(shutil.disk_usage(nearest_existing(out_dir)).free)} free) and as much again for the tokenized "
          f"copy in the datasets cache {HF_DATASETS_CACHE}; time: about {tokens / rate / num_proc / 60:.1f} min "
          f"to tokenize on {num_proc} processes at the {rate / 1e6:.2f}M tokens/s measured here")


def write_bins(out_dir, tokenized):
    """Stream the tokenized datasets into train.bin.tmp and val.bin.tmp (each row's 'val' picks the
    file), ROWS_PER_WRITE documents at a time, after checking the disk. finish() puts them in place.
    Returns the token and document counts of each split."""
    import pyarrow.compute as pc
    from tqdm import tqdm
    counts = {}
    cols = [d.with_format('numpy', columns=['len', 'val'])[:] for d in tokenized]  # 9 bytes a document
    for split, want in (('train', False), ('val', True)):
        counts[f'{split}_tokens'] = sum(int(c['len'][c['val'] == want].sum()) for c in cols)
        counts[f'{split}_documents'] = sum(int((c['val'] == want).sum()) for c in cols)
        if counts[f'{split}_tokens'] == 0:
            raise SystemExit(f"error: the {split} split is empty: give more documents (openwebtext.py: or a "
                             f"{'larger' if split == 'val' else 'smaller'} --val_fraction)")
    need = (counts['train_tokens'] + counts['val_tokens']) * DTYPE().itemsize
    free = shutil.disk_usage(nearest_existing(out_dir)).free
    if need > free:  # the old dataset stays until the new one is complete: a rebuild needs room for both
        raise SystemExit(f"error: train.bin + val.bin need {gb(need)} in {out_dir} but {gb(free)} is free: "
                         f"free some space or pass another --out_dir")
    bar = tqdm(total=need // DTYPE().itemsize, unit='tok', unit_scale=True, desc=f'writing {out_dir}')

    def ids_of(want):  # one pass per split, so that each file is written front to back
        for d in tokenized:
            table = d.with_format('arrow')
            for first in range(0, len(d), ROWS_PER_WRITE):
                rows = table[first:first + ROWS_PER_WRITE]
                keep = rows['val'] if want else pc.invert(rows['val'])
                ids = pc.list_flatten(pc.filter(rows['ids'], keep)).to_numpy()
                bar.update(len(ids))
                yield np.ascontiguousarray(ids, dtype=DTYPE)
    with writing(out_dir), bar:
        make_out_dir(out_dir)
        for split, want in (('train', False), ('val', True)):
            n = write_file(tmp(out_dir, f'{split}.bin'), ids_of(want)) // DTYPE().itemsize
            assert n == counts[f'{split}_tokens'], f"wrote {n} {split} tokens, counted {counts[f'{split}_tokens']}"
    return counts


def finish(out_dir, counts, **meta):
    """meta.json last: from here on the dataset counts as prepared."""
    commit(out_dir, dict(tokenizer='gpt2', vocab_size=get_tokenizer('gpt2').vocab_size, **counts, **meta))
    print(f"wrote {out_dir}: train {counts['train_tokens']:,} tokens ({counts['train_documents']:,} documents), "
          f"val {counts['val_tokens']:,} tokens ({counts['val_documents']:,} documents)")
