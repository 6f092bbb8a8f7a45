"""
What every prepare script shares: the on-disk format, the document-level split, atomic writes.

Format (as nanoGPT): data/<name>/train.bin and val.bin hold uint16 token ids, read back with
np.memmap; meta.json beside them names the tokenizer and vocab size and records how the data
was made. meta.json is written last, so its presence means both .bin files are complete.

The second half is the streaming path of the GPT-2 corpora (tinystories.py, openwebtext.py):
a `datasets` Dataset with a 'text' column, from the Hub or from local files, is tokenized in
parallel into the datasets cache, counted, and streamed shard by shard into pre-sized memmaps
named <split>.bin.tmp that are renamed only when complete. RAM stays bounded by one shard.
"""
import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np

from tokenizer import get_tokenizer

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


# ---------------------------------------------------------------------------------------------
# GPT-2 corpora through `datasets`: the one code path for Hub and local sources

EOT_TEXT = '<|endoftext|>'  # the separator line between stories in the TinyStories .txt releases
ROWS_PER_WRITE = 8192  # documents per memmap write: ~10M tokens (~20 MB) of OpenWebText at most
FORMATS = {'.txt': 'text', '.json': 'json', '.jsonl': 'json', '.json.gz': 'json', '.jsonl.gz': 'json',
           '.parquet': 'parquet'}


def gb(n_bytes):
    return f"{n_bytes / 1e9:.2f} GB"


def begin(out_dir, force):
    """False if out_dir is already prepared (nothing to do). Otherwise remove what a previous run
    left, meta.json first, so a half-made dataset can never pass for a finished one."""
    if is_prepared(out_dir) and not force:
        print(f"{out_dir} is already prepared (use --force to redo)")
        return False
    os.makedirs(out_dir, exist_ok=True)
    for name in ('meta.json', 'train.bin', 'val.bin', 'train.bin.tmp', 'val.bin.tmp'):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    return True


def load_hub(name, what_to_do, **kwargs):
    """datasets.load_dataset from the Hub, with a one-line error when it cannot be reached."""
    import datasets
    try:
        return datasets.load_dataset(name, **kwargs)
    except Exception as e:  # offline, gated, renamed: all end the same way for the user
        raise SystemExit(f"error: could not load {name} from the Hub ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}): {what_to_do}")


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
    except ValueError as e:  # what datasets raises for files without a single document
        raise SystemExit(f"error: no documents read from {files} ({e}): check the files "
                         f"(a .txt needs text between '<|endoftext|>' lines)")
    if 'text' not in ds.column_names:
        raise SystemExit(f"error: {files} have no 'text' field (fields: {ds.column_names}): rename the text field to 'text'")
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
    features = datasets.Features({'ids': datasets.List(datasets.Value('uint16')), 'len': datasets.Value('int64'),
                                  'val': datasets.Value('bool')})  # uint16 halves the cache against int32
    return ds.map(_encode, fn_kwargs={'val': val}, with_indices=True, batched=True, remove_columns=ds.column_names,
                  features=features, num_proc=num_proc if num_proc > 1 else None, desc=desc)


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
          f"({gb(shutil.disk_usage(out_dir).free)} free) and as much again for the tokenized copy in "
          f"the datasets cache {HF_DATASETS_CACHE}; time: about {tokens / rate / num_proc / 60:.1f} min "
          f"to tokenize on {num_proc} processes at the {rate / 1e6:.2f}M tokens/s measured here")


def write_bins(out_dir, tokenized):
    """Stream the tokenized datasets into train.bin and val.bin (each row's 'val' picks the file):
    count, check the disk, fill pre-sized <split>.bin.tmp memmaps shard by shard, rename at the end.
    Returns the token and document counts of each split."""
    import pyarrow.compute as pc
    from tqdm import tqdm
    counts = {}
    cols = [d.with_format('numpy', columns=['len', 'val'])[:] for d in tokenized]  # 9 bytes a document
    for split, want in (('train', False), ('val', True)):
        counts[f'{split}_tokens'] = sum(int(c['len'][c['val'] == want].sum()) for c in cols)
        counts[f'{split}_documents'] = sum(int((c['val'] == want).sum()) for c in cols)
        if counts[f'{split}_tokens'] == 0:
            raise SystemExit(f"error: the {split} split is empty: give more documents (or a larger --val_fraction)")
    need = (counts['train_tokens'] + counts['val_tokens']) * DTYPE().itemsize
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise SystemExit(f"error: train.bin + val.bin need {gb(need)} in {out_dir} but {gb(free)} is free: "
                         f"free some space or pass another --out_dir")
    tmp = {s: os.path.join(out_dir, f'{s}.bin.tmp') for s in ('train', 'val')}
    try:
        out = {s: np.memmap(tmp[s], dtype=DTYPE, mode='w+', shape=(counts[f'{s}_tokens'],)) for s in tmp}
        pos = dict.fromkeys(tmp, 0)
        with tqdm(total=need // DTYPE().itemsize, unit='tok', unit_scale=True, desc=f'writing {out_dir}') as bar:
            for d in tokenized:
                table = d.with_format('arrow')
                for start in range(0, len(d), ROWS_PER_WRITE):
                    rows = table[start:start + ROWS_PER_WRITE]
                    for s, keep in (('train', pc.invert(rows['val'])), ('val', rows['val'])):
                        ids = pc.list_flatten(pc.filter(rows['ids'], keep)).to_numpy()
                        out[s][pos[s]:pos[s] + len(ids)] = ids
                        pos[s] += len(ids)
                        bar.update(len(ids))
        for s, arr in out.items():
            assert pos[s] == counts[f'{s}_tokens'], f"wrote {pos[s]} {s} tokens, counted {counts[f'{s}_tokens']}"
            arr.flush()
        del out, arr
    except BaseException:  # Ctrl-C included: a partial .tmp only takes disk space
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
        raise
    for s, path in tmp.items():
        os.replace(path, os.path.join(out_dir, f'{s}.bin'))
    return counts


def finish(out_dir, counts, **meta):
    """meta.json last: from here on the dataset counts as prepared."""
    write_meta(out_dir, dict(tokenizer='gpt2', vocab_size=get_tokenizer('gpt2').vocab_size, **counts, **meta))
    print(f"wrote {out_dir}: train {counts['train_tokens']:,} tokens ({counts['train_documents']:,} documents), "
          f"val {counts['val_tokens']:,} tokens ({counts['val_documents']:,} documents)")
