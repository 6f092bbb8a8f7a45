"""compare.py as a user runs it: arms x seeds through train.py, then CSVs, a plot and the table."""
import csv

import pytest

from configurator import script_defaults
from conftest import TINY, run_script

ARMS = ['baseline', 'copy=baseline', 'gd', 'polyak']
SEEDS = ['1', '2']


@pytest.fixture(scope='module')
def comparison(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp('compare')
    proc = run_script('compare.py', '--arms', *ARMS, '--seeds', *SEEDS, f'--out_dir={out}', f'--data_root={data_root}',
                      *TINY, '--max_iters=6', '--eval_interval=3')
    return out, proc


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def at_equal_steps(out, arm):
    return [float(r['val_at_steps']) for r in read_csv(out / 'runs.csv') if r['arm'] == arm]


def test_compare_writes_csv_plot_and_table(comparison):
    out, proc = comparison
    runs = read_csv(out / 'runs.csv')
    assert len(runs) == len(ARMS) * len(SEEDS)
    assert {(r['arm'], r['seed']) for r in runs} == {(a.split('=')[0], s) for a in ARMS for s in SEEDS}
    assert all(int(r['final_iter']) == 6 and float(r['tokens_per_s']) > 0 for r in runs)
    assert [r['arm'] for r in read_csv(out / 'summary.csv')] == ['baseline', 'copy', 'gd', 'polyak']
    assert (out / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(read_csv(out / 'curves.csv')) == len(runs) * 3  # evals at steps 0, 3 and 6
    table = (out / 'table.md').read_text()
    assert '| arm | params | best val | final val | val @ step 6 |' in table and table.strip() in proc.stdout
    assert table.count('\n| ') == len(ARMS)


def test_identical_arms_have_identical_losses(comparison):
    out, _ = comparison
    base = at_equal_steps(out, 'baseline')
    assert at_equal_steps(out, 'copy') == base  # same seed: same init, same data order, bit for bit
    assert base[0] != base[1]  # and the seed does change the run


def test_gd_arm_matches_baseline(comparison):
    out, _ = comparison
    # NesterovGPT with momentum='gd' is the baseline: same seed, same weights, same losses exactly
    assert at_equal_steps(out, 'gd') == at_equal_steps(out, 'baseline')


def test_summarize_existing_runs(comparison, tmp_path):
    out, _ = comparison
    proc = run_script('compare.py', '--summarize', str(out / 'baseline'), str(out / 'polyak'), f'--out_dir={tmp_path}')
    runs = read_csv(tmp_path / 'runs.csv')
    assert [(r['arm'], r['seed']) for r in runs] == [('baseline', '1'), ('baseline', '2'), ('polyak', '1'), ('polyak', '2')]
    assert [float(r['val_at_steps']) for r in runs[:2]] == at_equal_steps(out, 'baseline')
    assert (tmp_path / 'curves.png').exists() and '| polyak (2) |' in proc.stdout


def test_matched_arm_is_the_closest_baseline(tmp_path, data_root):
    import compare
    cfg = compare.resolve(['--n_layer=4', '--n_head=4', '--n_embd=128', f'--data_root={data_root}'], script_defaults(compare.TRAIN))
    target = compare.cfg_params({**cfg, 'model_type': 'nesterov', 'momentum': 'nesterov'})[0]
    key, value = compare.match_params(cfg, target)
    best = abs(compare.cfg_params({**cfg, key: value})[0] - target)
    assert key == 'n_embd' and value % 4 == 0 and value > 128
    for other in (value - 4, value + 4):  # no neighbouring width is closer
        assert abs(compare.cfg_params({**cfg, 'n_embd': other})[0] - target) >= best


def test_a_diverged_run_is_reported_and_the_comparison_goes_on(tmp_path, data_root):
    out = tmp_path / 'compare'
    proc = run_script('compare.py', '--arms', 'baseline', 'boom=baseline,learning_rate=1e30', '--seeds', *SEEDS,
                      f'--out_dir={out}', f'--data_root={data_root}', *TINY, '--max_iters=6', '--eval_interval=3')
    assert 'diverged (non-finite loss)' in proc.stdout and '| boom (2, 2 diverged) |' in proc.stdout
    runs = {(r['arm'], r['seed']): r for r in read_csv(out / 'runs.csv')}
    for seed in SEEDS:
        boom, base = runs['boom', seed], runs['baseline', seed]
        assert boom['diverged'] == 'True' and boom['final_val'] == 'nan' and boom['val_at_steps'] == 'nan'
        # the baseline is compared where it got to, not where the diverged run stopped
        assert base['diverged'] == 'False' and float(base['equal_steps']) == int(base['final_iter']) == 6
        assert float(base['val_at_steps']) == float(base['final_val'])
    summary = {r['arm']: r for r in read_csv(out / 'summary.csv')}
    assert summary['boom']['diverged'] == '2' and summary['baseline']['diverged'] == '0'
    assert (out / 'curves.png').exists()
