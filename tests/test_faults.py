"""Nothing lost, nothing silent: bad input to any script is one line on stderr, a non-zero exit and
no file changed (under torchrun too); a diverged run never saves; a resumed run continues its own
config with what its command line changes, or refuses; an out_dir is one live run's; a killed
save or run, Ctrl-C or a torn log line leaves nothing behind that misleads, and never loses the
best model. See README, "Guarantees"."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import compare
from checkpoint import link_checkpoint, load_checkpoint, save_checkpoint
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
    write_dataset(root, 'bytes_as_gpt2', ids, ids, tokenizer='gpt2', vocab_size=256)
    write_dataset(root, 'big_vocab', ids, ids, vocab_size=100_000)
    write_dataset(root, 'text_vocab', ids, ids, vocab_size='256')
    write_dataset(root, 'float_count', ids, ids)
    with open(os.path.join(root, 'float_count', 'meta.json'), 'w') as f:
        json.dump(dict(tokenizer='bytes', vocab_size=256, train_tokens=398.0, val_tokens=398), f)


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
    ('sample.py', ['--temperature=-1'], 2, 'temperature=-1.0: must be 0 (greedy) or a finite number >= 1e-3'),
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
    ('diagnostics.py', ['{tmp}/corrupt/ckpt.pt'], 1, 'is not a readable checkpoint'),
    # sizes that cannot fit: refused before anything is allocated (else minutes, then MemoryError)
    (TRAIN, ['--n_layer=1000000'], 2, 'this run needs at least'),
    (TRAIN, ['--batch_size=100000000'], 2, 'this run needs at least'),
    (TRAIN, ['--eval_iters=1000000000000'], 2, 'this run needs at least'),
    (TRAIN, ['--vocab_size=10000000000'], 2, 'this run needs at least'),
    (TRAIN, ['--seed=-1'], 2, 'seed=-1: must be in [0, 2**64)'),
    (TRAIN, ['--backend=mpi'], 1, "backend='mpi': expected 'auto', 'nccl' or 'gloo'"),
    pytest.param(TRAIN, ['--backend=nccl'], 1, "backend='nccl' needs CUDA but the device is 'cpu'",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is here')),
    # config files that are not Python, or that end the run
    (TRAIN, ['{tmp}/config.yaml'], 2, "config.yaml' is not a Python file (.py)"),
    (TRAIN, ['{tmp}/exits.py'], 2, 'exits.py called sys.exit(0): a config assigns values'),
    # meta.json that lies
    (TRAIN, ['--data_root={bad}', '--dataset=bytes_as_gpt2'], 1, 'says vocab_size=256 but the gpt2 tokenizer has 50257'),
    (TRAIN, ['--data_root={bad}', '--dataset=big_vocab'], 1, 'says vocab_size=100000 but the bytes tokenizer has 256'),
    (TRAIN, ['--data_root={bad}', '--dataset=text_vocab'], 1, "has vocab_size='256': expected a count"),
    (TRAIN, ['--data_root={bad}', '--dataset=float_count'], 1, 'has train_tokens=398.0: expected a count'),
    # the default corpus cannot be made where data_root points: the hint names data_root
    (TRAIN, ['--data_root=/sys/yuriiformer-data'], 1, 'pass another --data_root'),
    # checkpoints that lack a key, do not fit their model, or were damaged
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/no_config'], 1, 'ckpt.pt lacks config, meta: it is not a checkpoint'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/flipped'], 1, 'does not match its checksum): use '),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/flipped_linked'], 1, 'does not match its checksum): retrain'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/misfit'], 1, 'its weights do not fit the model'),
    (TRAIN, ['--init_from=resume', '--out_dir={tmp}/damaged_log'], 1, 'log.jsonl line 2 is not JSON: the log is damaged'),
    ('sample.py', ['--out_dir={tmp}/no_config', '--ckpt_name=ckpt.pt'], 1, 'ckpt.pt lacks meta'),
    ('sample.py', ['--out_dir={tmp}/misfit', '--ckpt_name=ckpt.pt'], 1, 'its weights do not fit the model'),
    ('sample.py', ['--out_dir={tmp}/only_last'], 1, 'ckpt.pt is there: load that one (sample.py: --ckpt_name=ckpt.pt)'),
    ('sample.py', ['--out_dir={tmp}/flipped', '--ckpt_name=ckpt.pt'], 1, 'is damaged (archive/data/0 does not match'),
    ('sample.py', ['--top_k=True'], 2, 'top_k=True: must be None (all tokens) or an integer >= 1'),
    ('sample.py', ['--temperature=1e-30'], 2, 'temperature=1e-30: must be 0 (greedy)'),
    ('sample.py', ['--temperature=1e999'], 2, 'temperature=inf: must be 0 (greedy)'),
    ('sample.py', ['{tmp}/nan_temperature.py'], 2, 'temperature=nan: must be 0 (greedy)'),
    # comparisons that would report wrong statistics
    ('compare.py', ['--arms', 'baseline', '--seeds', '1', '1', '--max_iters=1'], 2, '--seeds 1 1 repeats a seed'),
    ('compare.py', ['--arms', 'baseline', '--seeds', '2', '--out_dir={tmp}/comparison', '--max_iters=2'], 2,
     "holds a comparison run with the flags '--max_iters=1', not '--max_iters=2'"),
    ('compare.py', ['--arms', 'baseline=polyak', '--seeds', '2', '--out_dir={tmp}/comparison', '--max_iters=1'], 2,
     "holds arm 'baseline' run as `--max_iters=1"),
    ('compare.py', ['--summarize', '{tmp}/same_name'], 2, "are both arm 'run' seed 0"),
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
    (tmp / 'config.yaml').write_text('eval_only: True\n')  # Python reads it as an annotation: a no-op
    (tmp / 'config.json').write_text('{"eval_only": true}\n')
    (tmp / 'exits.py').write_text('import sys\nsys.exit(0)\n')
    (tmp / 'nan_temperature.py').write_text("temperature = float('nan')\n")
    ckpt = load_checkpoint(str(finished / 'ckpt.pt'))
    for name in ('no_config', 'misfit', 'only_last', 'flipped', 'flipped_linked', 'damaged_log', 'same_name/a/run',
                 'same_name/b/run', 'comparison'):
        (tmp / name).mkdir(parents=True)
    torch.save({k: v for k, v in ckpt.items() if k not in ('config', 'meta')}, tmp / 'no_config' / 'ckpt.pt')
    torch.save(dict(ckpt, model_args=dict(ckpt['model_args'], bias=True)), tmp / 'misfit' / 'ckpt.pt')  # no bias weights
    shutil.copy(finished / 'ckpt.pt', tmp / 'only_last' / 'ckpt.pt')
    for name in ('ckpt.pt', 'ckpt_best.pt'):
        shutil.copy(finished / name, tmp / 'flipped' / name)
    flip_a_tensor_bit(tmp / 'flipped' / 'ckpt.pt')
    shutil.copy(tmp / 'flipped' / 'ckpt.pt', tmp / 'flipped_linked' / 'ckpt.pt')
    os.link(tmp / 'flipped_linked' / 'ckpt.pt', tmp / 'flipped_linked' / 'ckpt_best.pt')  # one file, two names
    shutil.copytree(finished, tmp / 'damaged_log', dirs_exist_ok=True)
    lines = (finished / 'log.jsonl').read_text().splitlines(keepends=True)
    (tmp / 'damaged_log' / 'log.jsonl').write_text(lines[0] + '{"event": "tr\n' + ''.join(lines[1:]))
    for d in ('a', 'b'):
        (tmp / 'same_name' / d / 'run' / 'log.jsonl').write_text('{"event": "eval", "iter": 0, "val_loss": 1.0, '
                                                                 '"train_loss": 1.0, "train_time": 0.0}\n')
    name, argv, _ = compare.arm_argv('baseline', ['--max_iters=1'])
    (tmp / 'comparison' / 'comparison.json').write_text(json.dumps({'common': ['--max_iters=1'], 'arms': {name: argv}}))
    return tmp


def flip_a_tensor_bit(path):
    """Flip one bit in the bytes of the checkpoint's first tensor, as a bad disk or copy would."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith('/data/0'))
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), 'little') for _ in range(2))
        f.seek(info.header_offset + 30 + name_len + extra_len + 5)  # a byte inside the tensor's data
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x10]))


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
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'ckpt_best.pt', 'log.jsonl', 'run.lock']


def test_eval_only_writes_nothing(finished, data_root, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    before = snapshot(out)
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, '--eval_only=True')
    assert 'step 0: train loss' in proc.stdout and snapshot(out) == before


def test_torchrun_prints_an_error_once(data_root, tmp_path):
    # the model's own fields are checked when it is built, after the process group starts
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--n_head=0',
                      '--gradient_accumulation_steps=2', torchrun=2, check=False)
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
    assert counts == dict(kills=3, corrupt_checkpoints=0, failed_resumes=0, stale_temporaries=0, log_not_monotone=0,
                          best_lost=0, best_not_lowest=0)


def test_torchrun_error_after_the_process_group_starts_is_one_line(data_root, tmp_path):
    """The dataset is read after the process group is up, when torch's excepthook buffers stderr:
    the user still sees the error, once."""
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--dataset=nothing',
                      '--gradient_accumulation_steps=2', '--max_iters=2', torchrun=2, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert proc.returncode != 0 and len(errors) == 1 and 'nothing/meta.json not found' in errors[0], proc.stderr


def killed_after_replace(n, where, *args):
    """train.py killed -9 right after its n-th os.replace into a path containing `where`
    (scripts/kill_hook)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'scripts', 'kill_hook'), ROOT]),
               OMP_NUM_THREADS='1', KILL_AFTER_REPLACE=f'{n}:{where}')
    return subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_kill_inside_the_best_checkpoint_step_loses_no_best_model(data_root, tmp_path):
    """Killed between the two renames of an improving eval (the 4th rename: the log, eval 0's two,
    then eval 1's first): the best model any checkpoint has seen is on disk, and the resumed run
    ends with ckpt_best.pt at the lowest logged val loss."""
    common = [f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--eval_interval=1', '--max_iters=3',
              '--warmup_iters=0', '--learning_rate=1e-2', '--decay_lr=False']
    assert killed_after_replace(4, str(tmp_path), *common).returncode == -signal.SIGKILL
    evals = read_log(tmp_path, 'eval')
    assert [r['iter'] for r in evals] == [0, 1] and evals[1]['val_loss'] < evals[0]['val_loss']  # eval 1 improved
    last, best = (load_checkpoint(os.path.join(tmp_path, name)) for name in ('ckpt.pt', 'ckpt_best.pt'))
    assert best['best_val_loss'] <= last['best_val_loss']
    run_script('train.py', *common, '--init_from=resume')
    lowest = min(read_log(tmp_path, 'eval'), key=lambda r: r['val_loss'])
    best = load_checkpoint(os.path.join(tmp_path, 'ckpt_best.pt'))
    assert (best['iter_num'], best['best_val_loss']) == (lowest['iter'], lowest['val_loss'])


def test_a_scratch_run_killed_after_its_log_reset_leaves_no_old_checkpoints(finished, data_root, tmp_path):
    """A fresh start over a finished run: killed right after it reset the log, the out_dir holds
    no checkpoint of the old run beside the new, empty log."""
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    proc = killed_after_replace(1, 'log.jsonl', f'--data_root={data_root}', f'--out_dir={out}', *TINY)
    assert proc.returncode == -signal.SIGKILL
    assert (out / 'log.jsonl').read_text() == '' and not (out / 'ckpt.pt').exists() and not (out / 'ckpt_best.pt').exists()


def test_a_resume_continues_its_own_config_with_only_the_overrides_changed(data_root, tmp_path):
    """The issue's case: a run with learning_rate=1e-4 and no decay, resumed with only --max_iters,
    keeps 1e-4 and no decay (train.py's defaults are 1e-3 with warmup and decay), and says what changed."""
    where = [f'--data_root={data_root}', f'--out_dir={tmp_path}']
    run_script('train.py', *where, *TINY, '--learning_rate=1e-4', '--decay_lr=False', '--max_iters=4', '--eval_interval=2')
    proc = run_script('train.py', *where, '--init_from=resume', '--max_iters=8')
    assert [r['lr'] for r in read_log(tmp_path, 'train')] == [1e-4] * 8
    config = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))['config']
    assert (config['learning_rate'], config['decay_lr'], config['max_iters'], config['n_embd']) == (1e-4, False, 8, 32)
    assert f"resume: {tmp_path}/ckpt.pt at iter 4 with its config; changed: max_iters 4 -> 8" in proc.stdout


def test_a_torn_last_log_line_is_dropped_and_the_run_resumes(finished, data_root, tmp_path):
    """What a full disk leaves in the middle of a log write: the resume warns, drops the line and goes on."""
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    with open(out / 'log.jsonl', 'a') as f:
        f.write('{"event": "train", "it')
    proc = run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, '--init_from=resume',
                      '--max_iters=6', '--eval_interval=2')
    assert 'log.jsonl ends in a torn line (a write cut short): ignoring it' in proc.stdout
    records = [json.loads(line) for line in open(out / 'log.jsonl')]  # every line parses
    assert [r['iter'] for r in records if r['event'] == 'eval'] == [0, 2, 4, 6]
    assert [r['iter'] for r in records if r['event'] == 'train'] == list(range(1, 7))


def test_a_live_run_owns_its_out_dir_and_ctrl_c_ends_it_in_one_line(data_root, tmp_path):
    """A second run on the out_dir of a live one is refused in one line and removes none of its
    files (its temporaries included); Ctrl-C then ends the first with one line that names what is
    saved; the next run takes over the dead run's lock, removes the stale temporary and resumes."""
    common = [f'--data_root={data_root}', f'--out_dir={tmp_path}', *TINY, '--eval_interval=2', '--log_interval=1']
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    live = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *common, '--max_iters=100000'], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ((tmp_path / 'ckpt.pt').exists() and (tmp_path / 'run.lock').read_text().strip() == str(live.pid)):
            assert time.time() < deadline and live.poll() is None
            time.sleep(0.2)
        (tmp_path / 'ckpt.pt.tmp424242').write_bytes(b'a save in progress')  # as the live run's own would be
        second = run_script('train.py', *common, '--max_iters=2', check=False)
        assert second.returncode == 1 and second.stderr == (f"error: out_dir={str(tmp_path)!r} is in use by another run "
                                                            f"(pid {live.pid}): wait for it to end, or pick another --out_dir\n")
        assert (tmp_path / 'ckpt.pt.tmp424242').exists() and (tmp_path / 'ckpt.pt').exists()
    finally:
        live.send_signal(signal.SIGINT)
        stderr = live.communicate(timeout=60)[1]
    saved = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))['iter_num']
    assert live.returncode == 130 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith('error: interrupted (Ctrl-C) at iter ') and stderr.endswith(
        f": {tmp_path}/ckpt.pt holds iter {saved}; continue with --init_from=resume\n"), stderr
    run_script('train.py', *common, '--init_from=resume', f'--max_iters={saved}')
    assert not (tmp_path / 'ckpt.pt.tmp424242').exists()


def test_ctrl_c_inside_a_save_is_an_interrupt_not_a_full_disk(tmp_path, monkeypatch):
    """torch's zip writer turns a KeyboardInterrupt in a write into a RuntimeError, which read as
    a short write ("is the disk full?"); the interrupt goes on as such, the old checkpoint whole."""
    path = str(tmp_path / 'ckpt.pt')
    save_checkpoint({'model': {'w': torch.ones(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    real_save = torch.save

    class Interrupted:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, b):
            self.writes += 1
            if self.writes == 3:
                raise KeyboardInterrupt
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)
    monkeypatch.setattr(torch, 'save', lambda obj, f: real_save(obj, Interrupted(f)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'model': {'w': torch.zeros(3)}, 'model_type': 'gpt', 'model_args': {}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)['model']['w'], torch.ones(3)) and os.listdir(tmp_path) == ['ckpt.pt']


def test_the_copy_fallback_of_the_best_link_checks_the_free_space(tmp_path, monkeypatch):
    src, dst = str(tmp_path / 'ckpt_best.pt'), str(tmp_path / 'ckpt.pt')
    save_checkpoint({'model': {'w': torch.ones(1 << 20)}, 'model_type': 'gpt', 'model_args': {}}, src)
    monkeypatch.setattr(os, 'link', lambda a, b: (_ for _ in ()).throw(OSError(1, 'Operation not permitted')))
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 2 << 20))
    with pytest.raises(UserError, match=r'cannot write .*ckpt.pt: the disk is full \(2.0 MiB free, the copy needs about '
                                        r'5.0 MiB\); .*ckpt_best.pt is saved'):
        link_checkpoint(src, dst)
    assert os.listdir(tmp_path) == ['ckpt_best.pt']
