"""Nothing lost, nothing silent: bad input to any script is one line on stderr, a non-zero exit and
no file changed; a diverged run never saves; a resumed run runs what its command line says or
refuses; a killed save or run leaves nothing behind that misleads. See README, "Guarantees"."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from checkpoint import load_checkpoint, save_checkpoint
from configurator import EXIT_DIVERGED, UserError
from conftest import ROOT, TINY, read_log, run_script, write_dataset


def snapshot(root):
    """Every file under root and the sha256 of its bytes (directories as such)."""
    out = {}
    for path, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(path, d), root)] = 'dir'
        for f in files:
            p = os.path.join(path, f)
            with open(p, 'rb') as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def finished(tmp_path_factory, data_root):
    """A finished tiny training run (ckpt.pt, ckpt_best.pt, log.jsonl) that bad runs must not touch."""
    out = tmp_path_factory.mktemp('finished') / 'run'
    run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, '--max_iters=4', '--eval_interval=2')
    return out


def bad_data(root):
    """Datasets that are wrong in every way a loader can see, beside a good one."""
    ids = list(range(1, 200)) * 2
    for name in ('odd_size', 'empty', 'short', 'no_keys', 'bad_json', 'tokenizer'):
        write_dataset(root, name, ids, ids)
    with open(os.path.join(root, 'odd_size', 'train.bin'), 'ab') as f:
        f.write(b'\0')
    open(os.path.join(root, 'empty', 'train.bin'), 'wb').close()
    with open(os.path.join(root, 'short', 'train.bin'), 'r+b') as f:
        f.truncate(100)  # even, so it still reads as uint16: only meta.json can tell
    for name, meta in (('no_keys', {'tokenizer': 'bytes'}), ('tokenizer', dict(tokenizer='sentencepiece', vocab_size=256,
                                                                               train_tokens=398, val_tokens=398))):
        with open(os.path.join(root, name, 'meta.json'), 'w') as f:
            json.dump(meta, f)
    with open(os.path.join(root, 'bad_json', 'meta.json'), 'w') as f:
        f.write('{"tokenizer": ')


TRAIN = 'train.py'
# (script, arguments, expected exit code, a fragment of the one-line message); {out} is a copy of the
# finished run, {data} the session's data_root, {bad} a root of broken datasets, {tmp} a scratch directory
CASES = [
    (TRAIN, ['--gradient_accumulation_steps=0'], 2, 'gradient_accumulation_steps=0: must be at least 1'),
    (TRAIN, ['--warmup_iters=50', '--lr_decay_iters=50'], 2, 'lr_decay_iters=50 must be > warmup_iters=50'),
    (TRAIN, ['--learning_rate=0'], 2, 'learning_rate=0.0: must be > 0'),
    (TRAIN, ['--learning_rate=-0.001'], 2, 'learning_rate=-0.001: must be > 0'),
    (TRAIN, ['--eval_interval=0'], 2, 'eval_interval=0: must be at least 1'),
    (TRAIN, ['--eval_iters=0'], 2, 'eval_iters=0: must be at least 1'),
    (TRAIN, ['--batch_size=0'], 2, 'batch_size=0: must be at least 1'),
    (TRAIN, ['--block_size=0'], 2, 'block_size=0: must be at least 1'),
    (TRAIN, ['--n_layer=-1'], 2, 'n_layer=-1: must be at least 1'),
    (TRAIN, ['--n_head=0'], 2, 'n_head=0: must be at least 1'),
    (TRAIN, ['--n_embd=30', '--n_head=4'], 2, 'n_embd=30 is not divisible by n_head=4'),
    (TRAIN, ['--log_interval=0'], 2, 'log_interval=0: must be at least 1'),
    (TRAIN, ['--max_iters=-5'], 2, 'max_iters=-5: must be >= 0'),
    (TRAIN, ['--grad_clip=-1'], 2, 'grad_clip=-1.0: must be >= 0'),
    (TRAIN, ['--dropout=1.0'], 2, 'dropout=1.0: must be in [0, 1)'),
    (TRAIN, ['--beta2=1'], 2, 'beta2=1.0: must be in [0, 1)'),
    (TRAIN, ['--optimizer=sgd'], 2, "optimizer='sgd': expected 'adamw' or 'muon'"),
    (TRAIN, ['--model_type=rnn'], 2, "model_type='rnn': expected one of gpt, nesterov"),
    (TRAIN, ['--model_type=nesterov', '--momentum=adam'], 2, "momentum='adam': must be one of gd, polyak, nesterov"),
    (TRAIN, ['--model_type=nesterov', '--mu_init=1.0'], 2, 'mu_init=1.0: must be in (0, 1)'),
    (TRAIN, ['--model_type=nesterov', '--gamma_init=0'], 2, 'gamma_init=0.0: must be > 0'),
    (TRAIN, ['--init_from=gpt2'], 2, "init_from='gpt2': expected 'scratch' or 'resume'"),
    (TRAIN, ['--dtype=float16'], 1, "dtype='float16' needs CUDA"),
    (TRAIN, ['--dtype=fp8'], 1, "dtype='fp8': expected"),
    (TRAIN, ['--compile=maybe'], 1, "compile='maybe': expected 'auto', True or False"),
    (TRAIN, ['--device=cuda'] if not torch.cuda.is_available() else ['--device=tpu'], 1, 'use --device=cpu'
     if not torch.cuda.is_available() else "device='tpu'"),
    (TRAIN, ['--vocab_size=100'], 2, 'vocab_size=100 is smaller than the dataset\'s vocabulary (256, bytes)'),
    (TRAIN, ['--vocab_size=0'], 2, 'vocab_size=0 is smaller than the dataset\'s vocabulary (256, bytes): use --vocab_size=None'),
    (TRAIN, ['--learning_rat=1e-3'], 2, "unknown config key 'learning_rat' in the command line (did you mean 'learning_rate'?)"),
    (TRAIN, ['--batch_size=2.5'], 2, "config key 'batch_size' expects int (default 16) but was given float 2.5"),
    (TRAIN, ['--compile'], 2, "argument '--compile' has no value"),
    (TRAIN, ['{tmp}/nope.py'], 2, 'nope.py\' not found'),
    (TRAIN, ['{tmp}/syntax.py'], 2, 'syntax.py failed: SyntaxError'),
    (TRAIN, ['--init_from=resume', '--optimizer=muon'], 2, "the checkpoint has optimizer='adamw' but this run asks for "
                                                          "optimizer='muon'"),
    (TRAIN, ['--init_from=resume', '--n_layer=3'], 2, 'the checkpoint has n_layer=2 but this run asks for n_layer=3'),
    (TRAIN, ['--init_from=resume', '--model_type=nesterov'], 2, "the checkpoint has model_type='gpt'"),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/empty'], 1, 'no checkpoint at'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/corrupt'], 1, 'is not a readable checkpoint (RuntimeError): it is '
                                                                  'corrupt or truncated'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/malicious'], 1, 'holds Python objects that weights_only loading '
                                                                    'refuses to build'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/dir_ckpt'], 1, 'is a directory, not a checkpoint file'),
    (TRAIN, ['--out_dir={tmp}/a_file'], 2, "is a file, not a directory"),
    (TRAIN, ['--out_dir=/sys/yuriiformer-test'], 1, "cannot write to out_dir='/sys/yuriiformer-test'"),
    (TRAIN, ['--data_root={bad}', '--dataset=odd_size'], 1, 'train.bin has 797 bytes but meta.json promises 398 uint16'),
    (TRAIN, ['--data_root={bad}', '--dataset=empty'], 1, 'train.bin has 0 bytes but meta.json promises 398 uint16'),
    (TRAIN, ['--data_root={bad}', '--dataset=short'], 1, 'train.bin has 100 bytes but meta.json promises'),
    (TRAIN, ['--data_root={bad}', '--dataset=no_keys'], 1, 'meta.json lacks vocab_size, train_tokens, val_tokens'),
    (TRAIN, ['--data_root={bad}', '--dataset=bad_json'], 1, 'meta.json is not valid JSON'),
    (TRAIN, ['--data_root={bad}', '--dataset=tokenizer'], 1, "names the tokenizer 'sentencepiece', which this repo "
                                                           "does not have"),
    (TRAIN, ['--data_root={bad}', '--dataset=nothing'], 1, 'meta.json not found: prepare the dataset first'),
    ('sample.py', ['--top_k=0'], 2, 'top_k=0: must be None (all tokens) or an integer >= 1'),
    ('sample.py', ['--top_k=-3'], 2, 'top_k=-3'),
    ('sample.py', ['--temperature=-1'], 2, 'temperature=-1.0: must be >= 0'),
    ('sample.py', ['--max_new_tokens=-1'], 2, 'max_new_tokens=-1: both must be >= 1'),
    ('sample.py', ['--num_samples=0'], 2, 'num_samples=0'),
    ('sample.py', ['--start='], 2, 'the prompt encodes to no tokens'),
    ('sample.py', ['--start=FILE:{tmp}/missing.txt'], 1, 'cannot read the prompt file'),
    ('sample.py', ['--start=FILE:{tmp}/latin1.txt'], 1, 'latin1.txt\' is not UTF-8 text'),
    ('sample.py', [b'--start=caf\xe9'], 1, 'the prompt is not valid UTF-8 text'),
    ('sample.py', ['--ckpt_name=nope.pt'], 1, 'no checkpoint at'),
    ('bench.py', ['--shape=gpt3'], 2, "shape='gpt3': expected one of cpu, wide, gpt2"),
    ('bench.py', ['--n_embd=30', '--n_head=4'], 2, 'n_embd=30 is not divisible by n_head=4'),
    ('bench.py', ['--n_layer=-2'], 2, 'n_layer=-2: must be at least 1'),
    ('bench.py', ['--arms=,'], 2, "arms=',' names no arm"),
    ('bench.py', ['--arms=baseline,nesterov,baseline'], 2, "lists 'baseline' twice: name each arm once"),
    ('bench.py', ['--bench_iters=-1'], 2, 'bench_iters=-1: must be >= 0'),
    ('bench.py', ['--batch_size=-4'], 2, 'batch_size=-4: must be >= 0'),
    ('bench.py', ['--optimizer=sgd'], 2, "optimizer='sgd': expected 'adamw' or 'muon'"),
    ('bench.py', ['--out=/sys/yuriiformer-test/bench.json'], 1, "cannot write out='/sys/yuriiformer-test/bench.json'"),
    ('bench.py', ['--out={tmp}'], 1, 'is a directory; pick a writable --out'),
    ('bench.py', ['--arms=baseline,adam', '--bench_iters=1', '--warmup_iters=0'], 2, "unknown arm 'adam'"),
    ('bench.py', ['--data_root={bad}', '--dataset=short'], 1, 'train.bin has 100 bytes'),
    ('compare.py', ['--summarize', '{tmp}/torn_logs'], 1, 'log.jsonl line 2 is not JSON: the log is damaged'),
    ('compare.py', ['--summarize', '{tmp}/empty'], 1, 'no log.jsonl under'),
    ('compare.py', ['--arms', 'baseline', 'bogus', '--seeds', '1'], 2, "'bogus' is not a named arm"),
    ('compare.py', ['--arms', 'matched', 'nesterov', '--seeds', '1', '--max_iters=1'], 2, 'list it after the arm it matches'),
    ('model_nesterov.py', ['{tmp}/corrupt/ckpt.pt'], 1, 'is not a readable checkpoint'),
]


@pytest.fixture(scope='module')
def scratch(tmp_path_factory, finished):
    """The files the table's commands point at."""
    tmp = tmp_path_factory.mktemp('scratch')
    (tmp / 'syntax.py').write_text('batch_size = = 3\n')
    (tmp / 'latin1.txt').write_bytes('café'.encode('latin-1'))
    (tmp / 'a_file').write_text('not a directory')
    for name in ('empty', 'corrupt', 'malicious', 'dir_ckpt', 'torn_logs/run'):
        (tmp / name).mkdir(parents=True)
    data = (finished / 'ckpt.pt').read_bytes()
    (tmp / 'corrupt' / 'ckpt.pt').write_bytes(data[:len(data) // 2])
    (tmp / 'dir_ckpt' / 'ckpt.pt').mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {tmp}/pwned',))
    torch.save({'model': Evil(), 'model_type': 'gpt', 'model_args': {}}, tmp / 'malicious' / 'ckpt.pt')
    (tmp / 'torn_logs' / 'run' / 'log.jsonl').write_text('{"event": "eval", "iter": 0}\n{"event": \n{"event": "eval"}\n')
    bad_data(str(tmp / 'bad'))
    return tmp


def case_id(case):
    script, args = (case.values if hasattr(case, 'values') else case)[:2]
    return f'{script}:{" ".join(map(str, args))}'[:60]


@pytest.mark.parametrize('script,args,code,message', CASES, ids=map(case_id, CASES))
def test_bad_input_is_one_line_and_changes_nothing(script, args, code, message, finished, scratch, data_root, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    subs = dict(out=str(out), data=data_root, bad=str(scratch / 'bad'), tmp=str(scratch))
    args = [a.format(**subs) if isinstance(a, str) else a for a in args]
    if script in (TRAIN, 'sample.py', 'bench.py'):
        args = [f'--out_dir={out}' if script != 'bench.py' else f'--out={out}/bench.json', f'--data_root={data_root}',
                *(TINY if script == TRAIN else []), *args]
        args = [a for a in args if not (script == 'sample.py' and isinstance(a, str) and a.startswith('--data_root'))]
    before = snapshot(tmp_path), snapshot(scratch)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=tmp_path, env=env,
                          capture_output=True, timeout=300)
    stderr = proc.stderr.decode()
    assert proc.returncode == code, stderr
    assert stderr.startswith('error: ') and len(stderr.strip().splitlines()) == 1 and 'Traceback' not in stderr, stderr
    assert message in stderr, stderr
    assert (snapshot(tmp_path), snapshot(scratch)) == before  # no file added, changed or removed
    assert not (scratch / 'pwned').exists()


def test_a_run_that_diverges_at_an_eval_saves_nothing(data_root, tmp_path):
    """lr 1e6 with an eval every step: the first update makes the weights non-finite, and the eval
    right after it must not replace the good checkpoint of step 0; the message names that one."""
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--max_iters=5',
                      '--eval_interval=1', '--warmup_iters=0', '--learning_rate=1e6', '--log_interval=100', check=False)
    assert proc.returncode == EXIT_DIVERGED and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith('error: non-finite') and f"the last good checkpoint is {tmp_path}/ckpt.pt" in proc.stderr
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert ckpt['iter_num'] == 0 and all(torch.isfinite(v).all() for v in ckpt['model'].values())
    resumed = run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--init_from=resume',
                         '--max_iters=2', '--eval_interval=1', '--warmup_iters=0', '--learning_rate=1e-3')
    assert 'step 2: train loss' in resumed.stdout  # the named checkpoint resumes


def test_resume_runs_the_optimizer_settings_it_is_given(data_root, tmp_path):
    """learning_rate, beta2 and weight_decay given at resume are what the optimizer uses from then
    on, and what the log and the checkpoint report."""
    common = [f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--eval_interval=4', '--decay_lr=False']
    run_script('train.py', *common, '--max_iters=4')
    run_script('train.py', *common, '--max_iters=8', '--init_from=resume', '--learning_rate=3e-4', '--beta2=0.9',
               '--weight_decay=0.0')
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    groups = ckpt['optimizers'][0]['param_groups']
    assert all(g['lr'] == 3e-4 and g['betas'] == (0.9, 0.9) and g['weight_decay'] == 0.0 for g in groups)
    assert ckpt['config']['learning_rate'] == 3e-4 and ckpt['config']['beta2'] == 0.9
    assert [r['lr'] for r in read_log(tmp_path, 'train') if r['iter'] > 4] == [3e-4] * 4


def test_a_killed_run_resumes_with_a_monotone_log_and_no_stale_temporaries(data_root, tmp_path):
    """What a kill -9 leaves: a half-written checkpoint temporary, and log lines past the last
    checkpoint (logged just before the save). The next start removes the first and drops the
    second, so the log's iterations stay monotone and its evals are not doubled."""
    common = [f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--eval_interval=3']
    run_script('train.py', *common, '--max_iters=3')
    (tmp_path / 'ckpt.pt.tmp12345').write_bytes(b'half a checkpoint')
    with open(tmp_path / 'log.jsonl', 'a') as f:  # what the killed run got to log after its last save
        f.write(json.dumps({'event': 'train', 'iter': 4, 'loss': 1.0}) + '\n')
        f.write(json.dumps({'event': 'eval', 'iter': 6, 'val_loss': 1.0, 'train_loss': 1.0}) + '\n')
    run_script('train.py', *common, '--max_iters=6', '--init_from=resume')
    iters = [json.loads(line)['iter'] for line in open(tmp_path / 'log.jsonl')]
    assert iters == sorted(iters) and [r['iter'] for r in read_log(tmp_path, 'eval')] == [0, 3, 6]
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'ckpt_best.pt', 'log.jsonl']


def test_eval_only_writes_nothing(finished, data_root, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    before = snapshot(out)
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, '--eval_only=True')
    assert 'step 0: train loss' in proc.stdout and snapshot(out) == before


def test_torchrun_prints_an_error_once(data_root, tmp_path):
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--n_head=0',
                      torchrun=2, check=False)
    assert proc.returncode != 0 and proc.stderr.count('error: n_head=0: must be at least 1') == 1


def test_a_full_disk_is_one_line_that_says_so(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pt')
    save_checkpoint({'model': {'w': torch.ones(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 512 << 10))
    with pytest.raises(UserError, match=r'cannot save .*ckpt.pt: the disk is full \(0.5 MiB free, the checkpoint needs '
                                        r'about 1.0 MiB\)'):
        save_checkpoint({'model': {'w': torch.zeros(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    monkeypatch.undo()

    def short_write(obj, f):  # what torch's zip writer raises when the disk fills mid-write
        raise RuntimeError('[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file '
                           'data/0: file write failed\nunexpected pos 64 vs 0')
    monkeypatch.setattr(torch, 'save', short_write)
    with pytest.raises(UserError, match='is the disk full'):
        save_checkpoint({'model': {'w': torch.zeros(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    assert torch.equal(load_checkpoint(path)['model']['w'], torch.ones(3)) and os.listdir(tmp_path) == ['ckpt.pt']


def test_an_unreadable_checkpoint_says_permission(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pt'
    save_checkpoint({'model': {}, 'model_type': 'gpt', 'model_args': {}}, str(path))
    monkeypatch.setattr(os, 'access', lambda p, mode: False)  # root reads any file: pretend not
    with pytest.raises(UserError, match='cannot read .*ckpt.pt: permission denied'):
        load_checkpoint(str(path))


def test_kill_9_at_random_moments_loses_nothing(data_root, tmp_path):
    """scripts/kill_test.py, briefly: a few kills of a run that saves every step, each resumed."""
    proc = run_script('scripts/kill_test.py', '--kills=3', '--max_iters=15', f'--out_dir={tmp_path / "run"}',
                      f'--data_root={data_root}', timeout=600)
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts == dict(kills=3, corrupt_checkpoints=0, failed_resumes=0, stale_temporaries=0, log_not_monotone=0)
