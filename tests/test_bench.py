"""bench.py as a user runs it, on a tiny shape: one table, and a JSON with every number."""
import json
import os

from conftest import run_script, write_dataset

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


def test_compile_both_records_what_compile_auto_reads(tmp_path, data_root):
    """Eager and compiled, side by side; the measured step times (and the compile time) go into
    runtime's cache, where train.py's compile='auto' finds them for this shape."""
    out = tmp_path / 'bench.json'
    env_cache = os.environ['XDG_CACHE_HOME']
    run_script('bench.py', *TINY_SHAPE, '--arms=baseline', '--compile=both', f'--data_root={data_root}', f'--out={out}')
    report = json.loads(out.read_text())
    assert [r['compile'] for r in report['results']] == [False, True]
    with open(os.path.join(env_cache, 'yuriiformer', 'cpu.json')) as f:
        cache = json.load(f)
    recorded = [v for entry in cache.values() for k, v in entry.items() if k.startswith('step ms') and 'n_embd=32' in k]
    assert recorded and all(v['eager_ms'] > 0 and v['compiled_ms'] > 0 for v in recorded)


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
