"""bench.py as a user runs it, on a tiny shape: one table, and a JSON with every number."""
import json
import os
import subprocess
import sys

from conftest import ROOT, TINY, read_log, run_script, write_dataset

TINY_SHAPE = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
              '--warmup_iters=1', '--bench_iters=2', '--dtype=float32']


def test_bench_writes_every_field_and_times_the_arms_in_turns(tmp_path, data_root):
    out = tmp_path / 'bench.json'
    proc = run_script('bench.py', *TINY_SHAPE, '--arms=baseline,polyak,nesterov', '--compile=False',
                      '--sample_tokens=40', f'--data_root={data_root}', f'--out={out}')
    assert '| arm | compile | dtype | ms_per_iter |' in proc.stdout
    report = json.loads(out.read_text())
    rows = {r['arm']: r for r in report['results']}
    assert list(rows) == ['baseline', 'polyak', 'nesterov']
    for row in rows.values():
        assert row['compile'] is False and row['dtype'] == 'float32' and len(row['iter_times']) == 2
        for field in ('ms_per_iter', 'tokens_per_s', 'mfu', 'peak_mem_mb', 'params_total', 'params_non_embedding',
                      'sample_tokens_per_s_cached', 'sample_tokens_per_s_uncached'):
            assert row[field] is not None and row[field] > 0, (row['arm'], field, row[field])
        assert row['tokens_per_s'] == 4 * 32 / row['ms_per_iter'] * 1000
    # the velocity tables (vte, vpe) are embeddings: extra total parameters, few extra non-embedding ones
    assert rows['nesterov']['params_total'] - rows['baseline']['params_total'] == (256 + 32) * 32 + 2 * 6 + 2 * 2 * 32
    assert set(report['ratios']) == {'polyak/baseline eager', 'nesterov/baseline eager'}
    ratio = report['ratios']['nesterov/baseline eager']
    assert ratio['tokens_per_s'] == rows['nesterov']['tokens_per_s'] / rows['baseline']['tokens_per_s']
    assert report['machine']['device'] == 'cpu' and report['machine']['device_name']


def test_train_finds_the_compile_record_that_bench_wrote(tmp_path, data_root):
    """bench.py --compile=both records a step's eager and compiled times under runtime.step_key;
    train.py's compile='auto' for the same model, micro-batch, optimizer and dtype finds that
    record (its 'runtime' log event holds it, as data), and a run of another step finds none."""
    out = tmp_path / 'bench.json'
    run_script('bench.py', *TINY_SHAPE, '--batch_size=8', '--arms=nesterov', '--compile=both', f'--data_root={data_root}',
               f'--out={out}')
    eager, compiled = json.loads(out.read_text())['results']
    assert (eager['compile'], compiled['compile']) == (False, True)
    record = dict(eager_ms=eager['ms_per_iter'], compiled_ms=compiled['ms_per_iter'],
                  compile_s=compiled['warmup_s'] - eager['warmup_s'])
    for extra, found in (([], record), (['--optimizer=muon'], None), (['--splitting=euler'], None)):
        run_dir = tmp_path / ('run' + ''.join(extra))
        run_script('train.py', f'--data_root={data_root}', f'--out_dir={run_dir}', *TINY, '--model_type=nesterov',
                   '--dtype=float32', '--compile=auto', '--max_iters=0', *extra)
        (logged,) = read_log(run_dir, 'runtime')
        assert logged['auto']['compile'] == dict(record=found, iters=0), extra
        assert logged['compile'] is False  # 0 iterations never pay back a compile


def test_importing_bench_does_no_work():
    """No argv parsed, nothing measured or printed: what lets its memory measurement start a fresh
    interpreter that imports it."""
    code = 'import sys; sys.argv = ["bench.py", "--arms=nope", "--bogus=1"]; import bench; print(bench.arms)'
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, 'baseline,polyak,nesterov\n', '')


def test_cpu_memory_is_measured_in_a_fresh_process_per_arm(data_root):
    import bench
    cfg = dict(shape='cpu', n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, dataset='python_docs',
               data_root=data_root, device='cpu', optimizer='adamw', warmup_iters=1, seed=1337)
    small = bench.cpu_memory_mb(cfg, 'baseline', 'float32', False)
    big = bench.cpu_memory_mb(dict(cfg, n_layer=4, n_embd=256), 'baseline', 'float32', False)
    # 3.2M parameters more: weights, gradients and AdamW's two moments, 4 bytes each, are 50 MB
    assert 100 < small < 4000 and big - small > 40


def test_an_unwritable_out_is_refused_before_the_benchmark(data_root):
    proc = run_script('bench.py', *TINY_SHAPE, f'--data_root={data_root}', '--out=/nonexistent/bench.json', check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot write out='/nonexistent/bench.json'")
    assert 'ms/iter' not in proc.stdout


def test_auto_check_prints_each_choice_against_what_auto_picks(tmp_path, data_root):
    """Without a compiler (PATH emptied) the compiled choices run eager, so this stays fast; both
    shapes are shrunk to the tiny one."""
    out = tmp_path / 'auto.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), *TINY_SHAPE[:-1], '--auto_check=True',
                           '--arms=baseline', f'--data_root={data_root}', f'--out={out}'], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=ROOT, PATH=str(tmp_path), OMP_NUM_THREADS='1'),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())['auto_check']
    assert [(r['shape'], r['arm']) for r in results] == [('cpu', 'baseline'), ('wide', 'baseline')]
    for r in results:
        assert list(r['ms_per_iter']) == ['float32 eager', 'float32 compiled', 'bfloat16 eager', 'bfloat16 compiled']
        assert r['auto'] in ('float32 eager', 'bfloat16 eager') and r['auto_from']['dtype']['float32'] > 0
        assert r['auto_over_fastest'] == r['ms_per_iter'][r['auto']] / min(r['ms_per_iter'].values()) >= 1
    assert '| shape | arm | float32 eager | float32 compiled | bfloat16 eager | bfloat16 compiled | auto picks |' \
        in proc.stdout


def test_bench_takes_the_vocab_of_a_bpe_dataset(tmp_path):
    # GPT-2 ids at the tiny shape: the model needs the dataset's vocab, padded, 50257 -> 50304
    write_dataset(tmp_path, 'bpe', list(range(0, 50257, 7)), list(range(3, 50257, 11)), tokenizer='gpt2', vocab_size=50257)
    out = tmp_path / 'bench.json'
    run_script('bench.py', *TINY_SHAPE, '--arms=baseline,nesterov', '--compile=False', f'--data_root={tmp_path}',
               '--dataset=bpe', f'--out={out}')
    report = json.loads(out.read_text())
    assert report['shape']['vocab_size'] == 50304
    params = {r['arm']: r['params_total'] for r in report['results']}
    assert params['nesterov'] - params['baseline'] == (50304 + 32) * 32 + 2 * 6 + 2 * 2 * 32  # vte, vpe, scalars, 2 LN_v
