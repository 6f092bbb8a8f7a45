"""
prepare/tinystories.py and prepare/openwebtext.py on small local files (text, json, parquet),
through the same code path as the Hub once `datasets` has loaded the data. Never touches the network.

    python -m pytest tests/test_prepare.py
"""
import errno
import io
import json
import os
import re
import runpy
import shutil
import signal
import stat
import subprocess
import sys

os.environ['HF_DATASETS_OFFLINE'] = '1'  # before `datasets` is imported: any Hub access fails fast
os.environ['HF_HUB_OFFLINE'] = '1'

import datasets  # noqa: E402
import fsspec.implementations.local  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import loader  # noqa: E402
from configurator import UserError  # noqa: E402
from prepare import common, openwebtext, python_docs, tinystories  # noqa: E402
from prepare.common import is_prepared, is_val_document  # noqa: E402
from tokenizer import get_tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def snapshot(path, skip=('hf_cache',)):
    """Every byte under path: a folder's files by name, a file's bytes, None where nothing is."""
    if os.path.isdir(path):
        return {name: snapshot(os.path.join(path, name)) for name in sorted(os.listdir(path)) if name not in skip}
    if os.path.exists(path):
        with open(path, 'rb') as f:
            return f.read()
    return None


def assert_one_line(message, fragment):
    """A SystemExit with a string ends the process with exit code 1 and that string on stderr: it
    must be one line, start with 'error: ' and (the fragment) say what went wrong."""
    assert isinstance(message, str), f"exit code {message!r}, not a message"
    assert message.startswith('error: ') and '\n' not in message and fragment in message, message


def ctrl_c_at(monkeypatch, owner, name, call):
    """owner.name is interrupted as by Ctrl-C (KeyboardInterrupt) at its call-th call; returns the calls."""
    real, calls = getattr(owner, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapped)
    return calls


def small_disk(monkeypatch, free):
    """The disk fills after `free` more bytes, as when another job writes to it between the free-space
    check and the write: each file prepare/common.py writes then fails the way write(2) does (ENOSPC)."""
    left = [free]

    class File(io.FileIO):
        def write(self, b):
            if memoryview(b).nbytes > left[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= memoryview(b).nbytes
            return super().write(b)
    monkeypatch.setattr(common, 'open', lambda path, mode='r', **kw: File(path, mode) if 'w' in mode else
                        open(path, mode, **kw), raising=False)


@pytest.fixture(scope='module')
def finished_once(tmp_path_factory):
    d = tmp_path_factory.mktemp('finished')
    with pytest.MonkeyPatch.context() as m:
        m.setattr(datasets.config, 'HF_DATASETS_CACHE', d / 'hf_cache')
        tinystories.prepare(str(d / 'out'), [write_v2_txt(d / 'train.txt', STORIES)],
                            [write_v2_txt(d / 'valid.txt', VAL_STORIES)])
    return str(d / 'out')


@pytest.fixture
def finished(tmp_path, finished_once):
    """tmp_path/out: a finished TinyStories dataset, as a rebuild finds it."""
    shutil.copytree(finished_once, tmp_path / 'out')
    return str(tmp_path / 'out')


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
    with monkeypatch.context() as m:
        if where == 'tokenizing':
            calls = ctrl_c_at(m, common, 'is_val_document', 3)
        else:
            m.setattr(common, 'ROWS_PER_WRITE', 16)
            calls = ctrl_c_at(m, pc, 'list_flatten', 3)
        with pytest.raises(KeyboardInterrupt):
            openwebtext.prepare(out, [src], val_fraction=0.1)
    assert len(calls) == 3
    # out_dir is made only when writing starts, and the write removes its .tmp files: no .bin, no meta.json
    assert snapshot(out) == (None if where == 'tokenizing' else {})
    assert not is_prepared(out)
    with pytest.raises(UserError, match=re.escape(f'`python prepare/openwebtext.py --out_dir={out}`')):
        loader.read_meta(out)
    with pytest.raises(UserError):
        loader.open_split(out, 'train', 8, 50257, dict(train_tokens=0, val_tokens=0))
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
        data = loader.open_split(out, split, block_size, meta['vocab_size'], meta)
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


BAD_INPUTS = [  # (the command, what its --out_dir is, a fragment of its one line); --force is added to each
    ('tinystories.py --train_files missing.txt --val_files valid.txt', 'finished', 'no file matches missing.txt'),
    ('tinystories.py --train_files train.txt --val_files bad.jsonl', 'finished', 'JSON parse error'),
    ('tinystories.py --train_files train.txt --val_files empty.jsonl', 'finished', 'no documents read from'),
    ('tinystories.py --train_files train.txt --val_files empty.txt', 'finished', 'no documents read from'),
    ('tinystories.py --train_files train.txt --val_files latin1.txt', 'finished', 'UnicodeDecodeError'),
    ('tinystories.py --train_files train.txt --val_files not.parquet', 'finished', 'no documents read from'),
    ('tinystories.py --train_files train.txt', 'finished', 'both --train_files and --val_files'),
    ('tinystories.py', 'missing', '--train_files/--val_files'),  # the Hub, unreachable offline
    ('tinystories.py --train_files train.txt --val_files valid.txt --num_proc 0', 'finished', '--num_proc is 0'),
    ('tinystories.py --train_files train.txt --val_files valid.txt --num_proc -2', 'missing', '--num_proc is -2'),
    ('tinystories.py --train_files train.txt --val_files valid.txt', 'a file', 'is a file'),
    ('tinystories.py --train_files train.txt --val_files valid.txt', 'read-only', 'is not writable'),
    ('openwebtext.py --data_files a.csv', 'finished', 'must all be one of'),
    ('openwebtext.py --data_files no_text.parquet', 'finished', "no 'text' field"),
    ('openwebtext.py --data_files train.txt --val_fraction 0 --num_proc 1', 'finished', 'val split is empty'),
    ('openwebtext.py', 'finished', '--data_files'),  # the Hub, unreachable offline
    ('python_docs.py', 'under a file', 'is a file'),
    ('python_docs.py', 'read-only', 'is not writable'),
    ('tinystories.py --train_files train.txt --val_files null.jsonl', 'finished', '1 records have no text (null'),
    ('tinystories.py --train_files train.txt --val_files no_field.jsonl', 'finished', "no 'text' field)"),
    ('tinystories.py --train_files train.txt --val_files number.jsonl', 'finished', "'text' field holds Json values"),
    ('tinystories.py --train_files train.txt --val_files numbers.jsonl', 'finished', "'text' field holds int64 values"),
    ('openwebtext.py --data_files train.txt --val_fraction 1.5', 'finished', '--val_fraction is 1.5: pass a fraction'),
    ('openwebtext.py --data_files train.txt --val_fraction 1 --num_proc 1', 'finished',
     'train split is empty: give more documents (openwebtext.py: or a smaller --val_fraction)'),
]


def write_inputs(d):
    """The files BAD_INPUTS names, in folder d."""
    write_v2_txt(d / 'train.txt', STORIES)
    write_v2_txt(d / 'valid.txt', VAL_STORIES)
    (d / 'bad.jsonl').write_text('{"text": "fine"}\n{"text": "no closing brace"\n')
    (d / 'null.jsonl').write_text('{"text": "fine"}\n{"text": null}\n')
    (d / 'no_field.jsonl').write_text('{"text": "fine"}\n{"body": "text under another name"}\n')
    (d / 'number.jsonl').write_text('{"text": "fine"}\n{"text": 5}\n')
    (d / 'numbers.jsonl').write_text('{"text": 5}\n{"text": 6}\n')
    (d / 'empty.jsonl').write_text('')
    (d / 'empty.txt').write_text('<|endoftext|>\n')
    (d / 'latin1.txt').write_bytes('Un café.\n'.encode('latin-1'))
    (d / 'not.parquet').write_bytes(b'not parquet')
    (d / 'a.csv').write_text('text\nhi\n')
    pq.write_table(pa.table({'body': ['hi']}), d / 'no_text.parquet')


def make_read_only(monkeypatch, path):
    """Mode 555. Root writes there all the same, so for root os.access answers from the mode bits, as it
    does for a user who owns the folder: that is what prepare asks before it starts."""
    os.chmod(path, 0o555)  # pytest's clean-up of tmp_path copes with it
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, 'access', lambda p, mode, **kw: real(p, mode, **kw) and not (
            mode & os.W_OK and not os.stat(p).st_mode & stat.S_IWUSR))


def main(monkeypatch, script, args):
    """`python prepare/<script> <args>` in this process (datasets is imported once): the SystemExit's
    code it ends with (None when it ends normally)."""
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the script puts the repo root in front
    try:
        runpy.run_path(os.path.join(ROOT, 'prepare', script), run_name='__main__')
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize('command, out_is, fragment', BAD_INPUTS)
def test_bad_input_fails_in_one_line_and_changes_nothing(tmp_path, monkeypatch, finished, command, out_is, fragment):
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = {'finished': finished, 'read-only': finished, 'missing': tmp_path / 'new' / 'out',
           'a file': tmp_path / 'train.txt', 'under a file': tmp_path / 'train.txt' / 'out'}[out_is]
    if out_is == 'read-only':
        make_read_only(monkeypatch, out)
    before = snapshot(tmp_path)  # the finished dataset in tmp_path/out and every input
    script, *args = command.split()
    assert_one_line(main(monkeypatch, script, [*args, '--out_dir', str(out), '--force']), fragment)
    assert snapshot(tmp_path) == before


NEW_STORIES, NEW_VAL_STORIES = [s.upper() for s in STORIES] + ["A new story."], VAL_STORIES[::-1]
FAILED_REBUILDS = [  # (script, what goes wrong in its --force rebuild of a finished dataset)
    ('tinystories', 'Ctrl-C while tokenizing'),
    ('tinystories', 'Ctrl-C while writing'),
    ('tinystories', 'disk full at train.bin'),
    ('tinystories', 'disk full midway through train.bin'),
    ('tinystories', 'disk full at val.bin'),
    ('tinystories', 'disk full at meta.json'),
    ('python_docs', 'disk full at train.bin'),
    ('python_docs', 'disk full at val.bin'),
    ('python_docs', 'disk full at meta.json'),
]


@pytest.mark.parametrize('script, fault', FAILED_REBUILDS)
def test_failed_rebuild_keeps_the_finished_dataset(tmp_path, monkeypatch, finished, script, fault):
    if script == 'tinystories':  # other stories, so a half-made new dataset would show
        out = finished
        train, val = write_v2_txt(tmp_path / 'new.txt', NEW_STORIES), write_v2_txt(tmp_path / 'val.txt', NEW_VAL_STORIES)
        sizes = [2 * len(expected_ids(NEW_STORIES, strip=True)), 2 * len(expected_ids(NEW_VAL_STORIES, strip=True))]
    else:
        out = str(tmp_path / 'python_docs')
        python_docs.prepare(out)
        sizes = [os.path.getsize(os.path.join(out, f'{s}.bin')) for s in ('train', 'val')]
    before = snapshot(out)
    with monkeypatch.context() as m:
        m.setattr(common, 'ROWS_PER_WRITE', 1)  # a write per document: faults land between writes
        if fault == 'Ctrl-C while tokenizing':
            ctrl_c_at(m, common, '_encode', 1)
        elif fault == 'Ctrl-C while writing':
            ctrl_c_at(m, pc, 'list_flatten', 3)
        else:
            small_disk(m, {'at train.bin': 0, 'midway through train.bin': sizes[0] // 2, 'at val.bin': sizes[0],
                           'at meta.json': sum(sizes)}[fault.removeprefix('disk full ')])
        with pytest.raises(KeyboardInterrupt if fault.startswith('Ctrl-C') else SystemExit) as e:
            if script == 'tinystories':
                tinystories.prepare(out, [train], [val], force=True)
            else:
                python_docs.prepare(out, force=True)
    if fault.startswith('disk full'):
        assert_one_line(e.value.code, f'the disk is full: could not write {out}')
    assert snapshot(out) == before and is_prepared(out)  # byte for byte, and no .tmp file left


@pytest.mark.parametrize('script', ['tinystories', 'python_docs'])
def test_stale_tmp_files_are_removed_at_the_next_start(tmp_path, finished, script):
    """A kill -9 runs no handler: a rebuild killed while writing leaves its .tmp files beside the
    finished dataset, and the next start, even one with nothing to do, removes them."""
    out = finished if script == 'tinystories' else str(tmp_path / 'python_docs')
    if script == 'python_docs':
        python_docs.prepare(out)
    before = snapshot(out)
    for name in ('train.bin.tmp', 'val.bin.tmp', 'meta.json.tmp'):
        with open(os.path.join(out, name), 'wb') as f:
            f.write(b'half-written')
    if script == 'tinystories':
        tinystories.prepare(out, [str(tmp_path / 'unread.txt')], [str(tmp_path / 'unread.txt')])
    else:
        python_docs.prepare(out)
    assert snapshot(out) == before


KILL_AT = """
import os, signal, sys
from prepare import python_docs
calls = 0


def killed_at(real):
    def op(*args, **kwargs):
        global calls
        calls += 1
        if calls == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return op
os.remove, os.replace = killed_at(os.remove), killed_at(os.replace)
python_docs.prepare(sys.argv[1], force=True)
"""


def test_kill_at_any_point_leaves_the_old_or_the_new_dataset_or_none(tmp_path):
    """kill -9 before each rename or removal of a --force rebuild: whatever is left that loads as
    complete is the old dataset or the new one, never a mix, and the next start cleans up."""
    out = str(tmp_path / 'python_docs')
    python_docs.prepare(out)
    new = snapshot(out)
    for split in ('train', 'val'):  # an old dataset of the same sizes, so a mix would pass for complete
        path = os.path.join(out, f'{split}.bin')
        np.fromfile(path, dtype=np.uint16)[::-1].tofile(path)
    old = snapshot(out)
    kills = 0
    while True:
        shutil.rmtree(out)
        os.makedirs(out)
        for name, data in old.items():
            with open(os.path.join(out, name), 'wb') as f:
                f.write(data)
        proc = subprocess.run([sys.executable, '-c', KILL_AT, out, str(kills + 1)], cwd=ROOT, capture_output=True,
                              env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        kills += 1
        left = {name: data for name, data in snapshot(out).items() if not name.endswith('.tmp')}
        assert not is_prepared(out) or left in (old, new)
        python_docs.prepare(out)  # the next start: already prepared, or rebuilt
        assert snapshot(out) in (old, new)
    assert kills >= 4 and snapshot(out) == new  # remove meta.json, three renames: each one was a kill point


@pytest.mark.parametrize('phase', ['reading', 'tokenizing'])
def test_full_datasets_cache_fails_in_one_line(tmp_path, monkeypatch, phase):
    src, out = write_parquet(tmp_path / 'owt.parquet', owt_docs(50)), str(tmp_path / 'owt')
    if phase == 'tokenizing':  # the text is cached by a first run; another seed needs a new tokenized copy
        openwebtext.prepare(str(tmp_path / 'first'), [src], seed=1, val_fraction=0.2)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, 'write', full)  # how datasets writes its cache
    with pytest.raises(SystemExit) as e:
        openwebtext.prepare(out, [src], seed=2, val_fraction=0.2)
    assert_one_line(e.value.code, f'the disk is full: could not write {datasets.config.HF_DATASETS_CACHE}')
    assert snapshot(out) is None


def run(script, *args):
    """A script in a fresh interpreter from the repo root, as a user runs it."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
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
    before = snapshot(out)
    (tmp_path / 'bad.jsonl').write_text('{"text": "fine"}\n{"text": "no closing brace"\n')
    failed = run(*args[:4], tmp_path / 'bad.jsonl', *args[5:], '--force')
    errors = [line for line in failed.stderr.splitlines() if line.startswith('error: ')]
    assert failed.returncode == 1 and 'Traceback' not in failed.stderr, failed.stderr
    assert len(errors) == 1 and 'JSON parse error' in errors[0]
    assert snapshot(out) == before  # --force checked its inputs first: the finished dataset is intact


def test_python_sources_writes_every_stdlib_module_once_as_a_document(tmp_path):
    """scripts/python_sources.py: each top-level stdlib .py file is one document of exactly one
    split, ended by the separator prepare/tinystories.py reads, and the split is the same every time."""
    import glob
    import sysconfig
    files = glob.glob(os.path.join(sysconfig.get_paths()['stdlib'], '*.py'))
    for out in ('a', 'b'):
        assert run('scripts/python_sources.py', f'--out_dir={tmp_path / out}', '--val_files=5').returncode == 0
    texts = {split: (tmp_path / 'a' / f'{split}.txt').read_text(encoding='utf-8') for split in ('train', 'val')}
    docs = {split: text.split('\n<|endoftext|>\n')[:-1] for split, text in texts.items()}
    assert len(docs['val']) == 5 and len(docs['train']) == len(files) - 5
    assert all(text.endswith('\n<|endoftext|>\n') for text in texts.values())
    with open(os.path.join(sysconfig.get_paths()['stdlib'], 'this.py'), encoding='utf-8') as f:
        this = f.read()
    assert sum(doc == this for split in docs for doc in docs[split]) == 1
    assert all((tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes() for f in ('train.txt', 'val.txt'))
