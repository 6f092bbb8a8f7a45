"""bench.py as a user runs it, on a tiny shape: one table, and a JSON with every number."""
import json

from conftest import run_script, write_dataset

TINY_SHAPE = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
              '--rounds=2', '--warmup_iters=1', '--bench_iters=2', '--fwd_iters=2', '--compile=False']


def test_bench_writes_every_field_positive(tmp_path, data_root):
    out = tmp_path / 'bench.json'
    proc = run_script('bench.py', *TINY_SHAPE, '--arms=gpt,polyak,nesterov', f'--data_root={data_root}', f'--out={out}')
    assert '| arm | compile | ms/iter |' in proc.stdout
    report = json.loads(out.read_text())
    assert [r['arm'] for r in report['results']] == ['gpt', 'polyak', 'nesterov']
    for row in report['results']:
        assert row['compile'] is False and row['rounds'] == 2
        for field in ('ms_per_iter', 'tokens_per_s', 'mfu', 'peak_mem_mb', 'model_mem_mb', 'params_total',
                      'params_non_embedding', 'fwd_ms_per_iter', 'fwd_tokens_per_s'):
            assert row[field] is not None and row[field] > 0, (row['arm'], field, row[field])
        assert row['params_non_embedding'] < row['params_total']
    rows = {r['arm']: r for r in report['results']}
    # the velocity tables (vte, vpe) are embeddings: extra total parameters, almost no extra non-embedding ones
    assert rows['nesterov']['params_total'] - rows['gpt']['params_total'] == (256 + 32) * 32 + 2 * 6 + 2 * 32
    assert set(report['ratios']) == {'polyak/gpt eager', 'nesterov/gpt eager'}
    for ratio in report['ratios'].values():
        assert all(v > 0 for v in ratio.values())
    # speed: one process per round times every arm, taking turns; memory: one fresh process per arm
    timing, memory = report['runs']['timing'], report['runs']['memory']
    assert len(timing) == 2 and all(set(r['train_times']) == set(rows) for r in timing)
    assert all(len(t) == 2 for r in timing for t in list(r['train_times'].values()) + list(r['fwd_times'].values()))
    assert [m['arm'] for m in memory] == ['gpt', 'polyak', 'nesterov']
    assert report['machine']['device'] == 'cpu' and report['machine']['device_name']


def test_bench_rejects_unknown_arm(tmp_path):
    proc = run_script('bench.py', '--arms=gpt,adam', f'--out={tmp_path / "b.json"}', check=False)
    assert proc.returncode != 0 and 'unknown arm' in proc.stderr and not (tmp_path / 'b.json').exists()


def test_bench_takes_the_vocab_of_a_bpe_dataset(tmp_path):
    # GPT-2 ids at the tiny shape: the model needs the dataset's vocab, padded, 50257 -> 50304
    write_dataset(tmp_path, 'bpe', list(range(0, 50257, 7)), list(range(3, 50257, 11)), tokenizer='gpt2', vocab_size=50257)
    out = tmp_path / 'bench.json'
    args = [*(a for a in TINY_SHAPE if not a.startswith('--rounds')), '--rounds=1', '--arms=gpt,nesterov',
            f'--data_root={tmp_path}', '--dataset=bpe']
    run_script('bench.py', *args, f'--out={out}')
    report = json.loads(out.read_text())
    assert report['shape']['vocab_size'] == 50304
    params = {r['arm']: r['params_total'] for r in report['results']}
    assert params['nesterov'] - params['gpt'] == (50304 + 32) * 32 + 2 * 6 + 2 * 32  # vte, vpe, scalars, LN_v
    proc = run_script('bench.py', *args, '--vocab_size=256', f'--out={tmp_path / "b.json"}', check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"error: {tmp_path}/bpe/train.bin holds token id 50253 but the model's vocab_size is 256: "
        "the data was made with another tokenizer; re-prepare it or fix vocab_size")
    assert not (tmp_path / 'b.json').exists()
