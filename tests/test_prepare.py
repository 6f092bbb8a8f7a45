"""
prepare/tinystories.py and prepare/openwebtext.py on small local files (text, json, parquet),
through the same code path as the Hub once `datasets` has loaded the data. Never touches the network.

    python -m pytest tests/test_prepare.py
"""
import json
import os
import re
import subprocess
import sys

os.environ['HF_DATASETS_OFFLINE'] = '1'  # before `datasets` is imported: any Hub access fails fast
os.environ['HF_HUB_OFFLINE'] = '1'

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import loader  # noqa: E402
from prepare import common, openwebtext, tinystories  # noqa: E402
from prepare.common import is_prepared, is_val_document  # noqa: E402
from tokenizer import get_tokenizer  # noqa: E402

EOT = 50256
STORIES = [
    "Once upon a time, there was a little cat named Tom.\nTom liked to play.\n\n\"Hello!\" said Tom.",
    "Lily saw a café. The sign said <|endoftext|> in big letters, and she laughed.",
    "The dragon flew over 日本 and said 😀.",
    "   Ben had a red ball.   ",
    "The end? No: the last story has no marker after it.",
]
VAL_STORIES = ["Sue and Max went to the park.", "It was a sunny day.\nThey had fun."]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """Each test gets its own datasets cache, and the Hub is off even if datasets was imported earlier."""
    monkeypatch.setattr(datasets.config, 'HF_DATASETS_CACHE', tmp_path / 'hf_cache')
    monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', True)


def write_v2_txt(path, stories):
    """The TinyStories V2 release format; the last story ends without its marker line."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n<|endoftext|>\n'.join(stories) + '\n')
    return str(path)


def write_jsonl(path, texts):
    with open(path, 'w', encoding='utf-8') as f:
        for t in texts:
            f.write(json.dumps({'text': t, 'id': len(t)}) + '\n')
    return str(path)


def write_parquet(path, texts):
    pq.write_table(pa.table({'text': texts}), path)
    return str(path)


def expected_ids(texts, strip=False):
    """GPT-2 ids of each document then <|endoftext|>; stories from .txt lose their surrounding whitespace
    (the newlines around the markers), json and parquet text is kept as it is."""
    tok = get_tokenizer('gpt2')
    return [i for t in texts for i in tok.encode(t.strip() if strip else t) + [EOT]]


def read_bin(d, split):
    return np.fromfile(os.path.join(d, f'{split}.bin'), dtype=np.uint16).tolist()


def owt_docs(n):
    return [f"Document {i}: {STORIES[i % len(STORIES)]}" for i in range(n)]


def test_tinystories_txt_ids_and_separators(tmp_path):
    out = str(tmp_path / 'tinystories')
    tinystories.prepare(out, [write_v2_txt(tmp_path / 'train.txt', STORIES)],
                        [write_v2_txt(tmp_path / 'valid.txt', VAL_STORIES)], num_proc=2)
    assert read_bin(out, 'train') == expected_ids(STORIES, strip=True)  # one story per marker, not per line
    assert read_bin(out, 'val') == expected_ids(VAL_STORIES, strip=True)
    train = read_bin(out, 'train')
    assert train.count(EOT) == len(STORIES) and train[-1] == EOT
    meta = loader.read_meta(out)
    assert (meta['tokenizer'], meta['vocab_size']) == ('gpt2', 50257)
    assert (meta['train_tokens'], meta['val_tokens']) == (len(train), len(read_bin(out, 'val')))
    assert (meta['train_documents'], meta['val_documents']) == (len(STORIES), len(VAL_STORIES))
    assert meta['train_files'] == [str(tmp_path / 'train.txt')] and is_prepared(out)


@pytest.mark.parametrize('fmt', ['jsonl', 'parquet'])
def test_tinystories_json_and_parquet_give_the_same_ids(tmp_path, fmt):
    write = write_jsonl if fmt == 'jsonl' else write_parquet
    out = str(tmp_path / 'tinystories')
    tinystories.prepare(out, [write(tmp_path / f'train.{fmt}', STORIES)], [write(tmp_path / f'val.{fmt}', VAL_STORIES)])
    assert read_bin(out, 'train') == expected_ids(STORIES)
    assert read_bin(out, 'val') == expected_ids(VAL_STORIES)


def test_openwebtext_split_is_seeded_by_document_and_deterministic(tmp_path):
    docs, seed, frac = owt_docs(400), 7, 0.1
    src = write_parquet(tmp_path / 'owt.parquet', docs)
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    openwebtext.prepare(a, [src], num_proc=1, seed=seed, val_fraction=frac)
    openwebtext.prepare(b, [write_jsonl(tmp_path / 'owt.jsonl', docs)], num_proc=2, seed=seed, val_fraction=frac)
    is_val = [is_val_document(i, seed, frac) for i in range(len(docs))]
    assert 0 < sum(is_val) < len(docs)
    assert read_bin(a, 'val') == expected_ids([d for d, v in zip(docs, is_val) if v])
    assert read_bin(a, 'train') == expected_ids([d for d, v in zip(docs, is_val) if not v])
    for split in ('train', 'val'):  # another format and worker count: the same bytes
        assert read_bin(a, split) == read_bin(b, split)
    meta = loader.read_meta(a)
    assert (meta['seed'], meta['val_fraction'], meta['documents']) == (seed, frac, len(docs))
    assert (meta['val_documents'], meta['train_documents']) == (sum(is_val), len(docs) - sum(is_val))
    c = str(tmp_path / 'c')
    openwebtext.prepare(c, [src], seed=seed + 1, val_fraction=frac)
    assert read_bin(c, 'val') != read_bin(a, 'val')  # the seed is what chooses


def test_rerun_is_a_noop_unless_forced(tmp_path, monkeypatch):
    out, src = str(tmp_path / 'owt'), write_parquet(tmp_path / 'owt.parquet', owt_docs(200))
    openwebtext.prepare(out, [src], val_fraction=0.1)
    stamps = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in ('train.bin', 'val.bin', 'meta.json')}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a prepared dataset was tokenized again")
    monkeypatch.setattr(openwebtext, 'tokenize', must_not_run)
    openwebtext.prepare(out, [src], val_fraction=0.1)
    assert stamps == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in stamps}
    with pytest.raises(AssertionError, match='tokenized again'):
        openwebtext.prepare(out, [src], val_fraction=0.1, force=True)


@pytest.mark.parametrize('where', ['tokenizing', 'writing'])
def test_interrupted_prepare_leaves_nothing_that_loads(tmp_path, monkeypatch, where):
    out, docs = str(tmp_path / 'openwebtext'), owt_docs(200)
    src = write_parquet(tmp_path / 'owt.parquet', docs)
    if where == 'writing':  # a finished dataset first, then a forced rebuild that dies while writing
        openwebtext.prepare(out, [src], val_fraction=0.1)
    calls = []

    def dies_midway(real):
        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return wrapped
    with monkeypatch.context() as m:
        if where == 'tokenizing':
            m.setattr(common, 'is_val_document', dies_midway(common.is_val_document))
        else:
            m.setattr(common, 'ROWS_PER_WRITE', 16)
            m.setattr(pc, 'list_flatten', dies_midway(pc.list_flatten))
        with pytest.raises(KeyboardInterrupt):
            openwebtext.prepare(out, [src], val_fraction=0.1, force=True)
    assert len(calls) == 3
    assert os.listdir(out) == []  # no .bin, no .tmp, no meta.json
    assert not is_prepared(out)
    with pytest.raises(loader.DataError, match=re.escape(f'`python prepare/openwebtext.py --out_dir={out}`')):
        loader.read_meta(out)
    with pytest.raises(loader.DataError):
        loader.open_split(out, 'train', 8, 50257)
    openwebtext.prepare(out, [src], val_fraction=0.1)  # running it again finishes the job
    is_val = [is_val_document(i, openwebtext.SEED, 0.1) for i in range(len(docs))]
    assert read_bin(out, 'val') == expected_ids([d for d, v in zip(docs, is_val) if v]) and is_prepared(out)


def test_loader_reads_what_prepare_wrote(tmp_path):
    out = str(tmp_path / 'tinystories')
    tinystories.prepare(out, [write_v2_txt(tmp_path / 'train.txt', STORIES * 3)],
                        [write_v2_txt(tmp_path / 'valid.txt', VAL_STORIES)])
    meta, tok, block_size = loader.read_meta(out), get_tokenizer('gpt2'), 8
    source = {'train': ''.join(s.strip() + '<|endoftext|>' for s in STORIES * 3),
              'val': ''.join(s.strip() + '<|endoftext|>' for s in VAL_STORIES)}
    for split in ('train', 'val'):
        data = loader.open_split(out, split, block_size, meta['vocab_size'])
        assert len(data) == meta[f'{split}_tokens']
        offsets = loader.eval_offsets(len(data), block_size, 4)
        x, y = loader.get_batch(data, offsets, block_size, torch.device('cpu'))
        assert x.shape == y.shape == (4, block_size)
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert tok.decode(data[:].tolist()) == source[split]
        for row in x.tolist():
            assert tok.decode(row) in source[split]


def test_text_marker_inside_a_line_stays_text(tmp_path):
    path = tmp_path / 'x.txt'
    path.write_text("a <|endoftext|> b\n<|endoftext|>\n\n<|endoftext|>\nc\n  <|endoftext|>  \n", encoding='utf-8')
    docs = [d['text'] for d in common._text_documents([str(path)], None)]
    assert docs == ["a <|endoftext|> b", "c"]  # empty stories are dropped


def test_bad_inputs_fail_with_one_line(tmp_path):
    txt = write_v2_txt(tmp_path / 'train.txt', STORIES)
    out = str(tmp_path / 'out')
    with pytest.raises(SystemExit, match='both --train_files and --val_files'):
        tinystories.prepare(out, [txt], None)
    with pytest.raises(SystemExit, match='no file matches'):
        openwebtext.prepare(out, [str(tmp_path / 'missing-*.parquet')])
    (tmp_path / 'a.csv').write_text('text\nhi\n')
    with pytest.raises(SystemExit, match='must all be one of'):
        openwebtext.prepare(out, [str(tmp_path / 'a.csv')])
    pq.write_table(pa.table({'body': ['hi']}), tmp_path / 'b.parquet')
    with pytest.raises(SystemExit, match="no 'text' field"):
        openwebtext.prepare(out, [str(tmp_path / 'b.parquet')])
    (tmp_path / 'empty.txt').write_text('<|endoftext|>\n', encoding='utf-8')
    with pytest.raises(SystemExit, match='no documents'):
        tinystories.prepare(out, [txt], [str(tmp_path / 'empty.txt')])
    with pytest.raises(SystemExit, match='val split is empty'):
        openwebtext.prepare(out, [txt], val_fraction=0.0)
    assert not os.path.exists(os.path.join(out, 'meta.json'))


def test_hub_unreachable_says_to_use_local_files(tmp_path):
    with pytest.raises(SystemExit, match='--data_files'):
        openwebtext.prepare(str(tmp_path / 'owt'))
    with pytest.raises(SystemExit, match='--train_files/--val_files'):
        tinystories.prepare(str(tmp_path / 'ts'))


def run(script, *args):
    """A script in a fresh interpreter from the repo root, as a user runs it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, os.path.join(root, script), *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_scripts_run_as_a_user_would(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_DATASETS_CACHE', str(tmp_path / 'hf_cache'))
    train, val = write_v2_txt(tmp_path / 'train.txt', STORIES), write_v2_txt(tmp_path / 'valid.txt', VAL_STORIES)
    out = str(tmp_path / 'tinystories')
    args = ['prepare/tinystories.py', '--train_files', train, '--val_files', val, '--out_dir', out, '--num_proc', 2]
    first = run(*args)
    assert first.returncode == 0 and 'plan:' in first.stdout and f'wrote {out}' in first.stdout
    assert read_bin(out, 'train') == expected_ids(STORIES, strip=True)
    assert 'already prepared' in run(*args).stdout
    failed = run('prepare/openwebtext.py', '--data_files', tmp_path / 'nope.parquet', '--out_dir', tmp_path / 'owt')
    assert failed.returncode != 0 and failed.stderr.strip().splitlines()[-1].startswith('error: no file matches')
