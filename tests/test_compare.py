"""compare.py as a user runs it: arms x seeds through train.py, then CSVs, plots and the table;
and its statistics against a hand computation."""
import csv
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import compare
from configurator import EXIT_DIVERGED
from conftest import ROOT, TINY, run_script

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
    assert all(float(r['final_train']) > 0 for r in runs)  # train loss beside val
    assert [r['arm'] for r in read_csv(out / 'summary.csv')] == ['baseline', 'copy', 'gd', 'polyak']
    for png in ('curves.png', 'gaps.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(read_csv(out / 'curves.csv')) == len(runs) * 3  # evals at steps 0, 3 and 6
    assert {r['arm'] for r in read_csv(out / 'gaps.csv')} == {'copy', 'gd', 'polyak'}
    table = (out / 'table.md').read_text()
    assert '| arm | params | best val | final val | train @ step 6 | val @ step 6 | minus baseline @ step 6 |' in table
    assert table.strip() in proc.stdout and table.count('\n| ') == len(ARMS)


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
    assert 'acc' not in (tmp_path / 'table.md').read_text()  # no run was evaluated: no downstream columns


def test_downstream_scores_join_the_losses(comparison, tmp_path):
    """A run evaluated by eval.py (its eval.json, as eval.py writes it) gets its scores in runs.csv,
    their mean over the evaluated seeds in summary.csv, and a column in the table."""
    out, _ = comparison
    shutil.copytree(out / 'baseline', tmp_path / 'runs' / 'baseline')
    results = {'tiny_mc': {'acc,none': 0.625, 'acc_stderr,none': 0.18, 'acc_norm,none': 0.5, 'sample_len': 8}}
    (tmp_path / 'runs' / 'baseline' / 'seed1' / 'eval.json').write_text(json.dumps({'results': results}))
    proc = run_script('compare.py', '--summarize', str(tmp_path / 'runs'), f'--out_dir={tmp_path}')
    runs = read_csv(tmp_path / 'runs.csv')
    assert [(r['seed'], r['tiny_mc acc'], r['tiny_mc acc_norm']) for r in runs] == [('1', '0.625', '0.5'), ('2', '', '')]
    summary = read_csv(tmp_path / 'summary.csv')[0]
    assert (float(summary['tiny_mc acc']), float(summary['tiny_mc acc_std'])) == (0.625, 0.0)
    header, _, row = (tmp_path / 'table.md').read_text().splitlines()
    assert header.endswith('| tokens/s | tiny_mc acc | tiny_mc acc_norm |')
    assert row.endswith('| 0.6250 +- 0.0000 | 0.5000 +- 0.0000 |') and row in proc.stdout


def test_matched_width_is_the_closest_baseline():
    args = dict(block_size=128, vocab_size=256, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
    target = compare.count_params('nesterov', dict(args, momentum='nesterov'))[0]
    width = compare.matched_width(args, target)
    best = abs(compare.count_params('gpt', dict(args, n_embd=width))[0] - target)
    assert width % 4 == 0 and width > 128
    for other in (width - 4, width + 4):  # no neighbouring width is closer
        assert abs(compare.count_params('gpt', dict(args, n_embd=other))[0] - target) >= best


def fake_run(arm, seed, vals, iters=(0, 10, 20), diverged=False):
    vals = np.array(vals, float)
    return dict(arm=arm, seed=seed, iters=np.array(iters, float), times=np.array(iters, float) / 10, vals=vals,
                trains=vals - 0.1, diverged=diverged, tokens_per_s=100.0, params_total=1, params_non_embedding=1,
                downstream={})


def test_paired_differences_equal_a_hand_computation():
    """arm b minus arm a at step 20, paired by seed: 2.0-2.5 = -0.5, 3.0-2.9 = +0.1, 2.2-2.4 = -0.2,
    so mean -0.2, sample std sqrt((0.09 + 0.09 + 0) / 2) = 0.3, below 0 in 2 of 3 seeds."""
    runs = [fake_run('a', 1, [5, 3, 2.5]), fake_run('a', 2, [5, 3.5, 2.9]), fake_run('a', 3, [5, 3, 2.4]),
            fake_run('b', 1, [5, 2.5, 2.0]), fake_run('b', 2, [5, 3.6, 3.0]), fake_run('b', 3, [5, 3.1, 2.2])]
    steps, seconds, summary = compare.analyse(runs, 'a')
    assert (steps, seconds) == (20, 2.0)
    b = summary[1]
    assert b['val_at_steps_minus_ref_mean'] == pytest.approx(-0.2)
    assert b['val_at_steps_minus_ref_std'] == pytest.approx(0.3)
    assert (b['val_at_steps_minus_ref_below'], b['val_at_steps_minus_ref_above'], b['val_at_steps_minus_ref_n']) == (2, 1, 3)
    assert b['val_at_steps'] == pytest.approx(7.2 / 3) and b['final_train'] == pytest.approx(7.2 / 3 - 0.1)
    assert summary[0]['val_at_steps_minus_ref_mean'] == 0.0  # the reference against itself
    # the course over training: at step 10 the differences are -0.5, +0.1, +0.1
    gaps = {g['step']: g for g in compare.gaps_vs_step(runs, 'a')}
    assert sorted(gaps) == [0, 10, 20]
    assert gaps[10]['mean'] == pytest.approx(-0.1) and gaps[10]['std'] == pytest.approx(np.std([-0.5, 0.1, 0.1], ddof=1))
    assert (gaps[10]['below'], gaps[10]['above']) == (1, 2) and gaps[0]['mean'] == 0.0


def test_a_diverged_seed_drops_out_of_the_pairs():
    runs = [fake_run('a', 1, [5, 3, 2.5]), fake_run('a', 2, [5, 3, 2.5]),
            fake_run('b', 1, [5, 2.0, 1.5]), fake_run('b', 2, [5, float('nan')], iters=(0, 10), diverged=True)]
    _, _, summary = compare.analyse(runs, 'a')
    assert summary[1]['val_at_steps_minus_ref_n'] == 1 and summary[1]['val_at_steps_minus_ref_mean'] == pytest.approx(-1.0)


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


def test_step_times_put_equal_time_at_steps_times_a_measured_cost(comparison):
    """--step_times DIR: the time of an eval is its step times the arm's median step time in DIR."""
    out, _ = comparison
    costs = compare.step_times(str(out))
    assert set(costs) == {'baseline', 'copy', 'gd', 'polyak'} and all(v > 0 for v in costs.values())
    run = compare.find_runs([str(out / 'polyak' / 'seed1')], costs)[0]
    np.testing.assert_allclose(run['times'], run['iters'] * costs['polyak'])
    with pytest.raises(compare.UserError, match='has no run of arm'):
        compare.find_runs([str(out / 'polyak' / 'seed1')], {'baseline': 1.0})


def test_reuse_resumes_a_run_stopped_midway(tmp_path, data_root):
    """--reuse keeps finished runs and continues a stopped one from its checkpoint: the curve it
    ends with is the uninterrupted run's, bit for bit. The control arm (tables) starts as the
    baseline (its gains are zero at init) and then trains apart from it."""
    out = tmp_path / 'cmp'
    args = ['--arms', 'baseline', 'tables', '--seeds', '1', f'--out_dir={out}', f'--data_root={data_root}', *TINY,
            '--max_iters=6', '--eval_interval=3']
    run_script('compare.py', *args)
    curves = read_csv(out / 'curves.csv')
    base, tables = ([float(r['val_loss']) for r in curves if r['arm'] == arm] for arm in ('baseline', 'tables'))
    assert tables[0] == base[0] and tables[-1] != base[-1]
    run_dir = out / 'tables' / 'seed1'
    argv = compare.json.loads((run_dir / 'compare.json').read_text())['argv']
    for f in run_dir.iterdir():
        f.unlink()
    # the same run stopped after its checkpoint at step 3 (its schedule does not depend on max_iters)
    run_script('train.py', *[a.replace('--max_iters=6', '--max_iters=3') for a in argv])
    (run_dir / 'compare.json').write_text(compare.json.dumps({'argv': argv, 'finished': False}))
    proc = run_script('compare.py', '--reuse', *args)
    assert 'baseline seed 1: reusing' in proc.stdout and '--init_from=resume' in proc.stdout
    resumed = [float(r['val_loss']) for r in read_csv(out / 'curves.csv') if r['arm'] == 'tables']
    assert resumed == tables
    assert compare.json.loads((run_dir / 'compare.json').read_text())['finished'] is True


@pytest.mark.parametrize('code,last_line,diverged', [
    (EXIT_DIVERGED, 'error: whatever the words', True),
    (0, 'saved checkpoints to out', False),
    (1, 'error: non-finite loss at iter 3 (a message that only looks like divergence)', None),
])
def test_run_train_reads_the_exit_code_not_the_wording(tmp_path, monkeypatch, code, last_line, diverged):
    def fake_train(argv, stdout, **kw):
        stdout.write(last_line + '\n')
        return subprocess.CompletedProcess(argv, code)
    monkeypatch.setattr(compare.subprocess, 'run', fake_train)
    run_dir = tmp_path / 'run'
    if diverged is None:
        with pytest.raises(compare.UserError, match=f'failed \\(exit code 1, {run_dir}/train.log\\): error: non-finite'):
            compare.run_train('arm', 1, ['--max_iters=1'], str(run_dir), reuse=False)
        assert compare.json.loads((run_dir / 'compare.json').read_text())['finished'] is False
    else:
        compare.run_train('arm', 1, ['--max_iters=1'], str(run_dir), reuse=False)
        marker = compare.json.loads((run_dir / 'compare.json').read_text())
        assert marker['finished'] is True and marker['diverged'] is diverged


def test_per_seed_calls_share_an_out_dir_and_a_different_comparison_is_refused(tmp_path, data_root):
    """The study's pattern, one call per seed into one out_dir, keeps working; a call whose arm
    would mean other train.py arguments there is refused in one line and changes no run."""
    common = [f'--out_dir={tmp_path}', f'--data_root={data_root}', *TINY, '--max_iters=2', '--eval_interval=2']
    for seed in SEEDS:
        run_script('compare.py', '--arms', 'baseline', '--seeds', seed, *common)
    record = compare.json.loads((tmp_path / 'comparison.json').read_text())
    assert list(record['arms']) == ['baseline'] and all((tmp_path / 'baseline' / f'seed{s}' / 'log.jsonl').exists()
                                                        for s in SEEDS)
    log = (tmp_path / 'baseline' / 'seed1' / 'log.jsonl').read_bytes()
    proc = run_script('compare.py', '--arms', 'baseline', '--seeds', '1', *common, '--learning_rate=1e-2', check=False)
    assert proc.returncode == 2 and proc.stderr.startswith('error: ') and len(proc.stderr.strip().splitlines()) == 1
    assert 'holds a comparison run with the flags' in proc.stderr
    assert (tmp_path / 'baseline' / 'seed1' / 'log.jsonl').read_bytes() == log


def test_kept_run_records_let_a_fresh_machine_continue_the_study(tmp_path, data_root):
    """scripts/study_runs.sh keeps the records of finished runs (no checkpoints); restored into the
    same out_dir, compare.py --reuse skips those runs, sizes the matched arm from the kept parameter
    counts, and ends with the same losses; an unfinished run is not kept, and a restore never
    replaces a file already there."""
    out, kept = tmp_path / 'cmp', tmp_path / 'kept'
    args = ['--arms', 'baseline', 'nesterov', 'matched', '--seeds', '1', f'--out_dir={out}', f'--data_root={data_root}',
            *TINY, '--max_iters=4', '--eval_interval=2']
    run_script('compare.py', *args)
    losses = [(r['arm'], r['iter'], r['val_loss']) for r in read_csv(out / 'curves.csv')]
    marker = out / 'baseline' / 'seed1' / 'compare.json'
    marker.write_text(marker.read_text().replace('"finished": true', '"finished": false'))
    script = os.path.join(ROOT, 'scripts', 'study_runs.sh')
    subprocess.run([script, 'keep', 'cmp', 'kept'], cwd=tmp_path, check=True, capture_output=True)  # relative paths
    assert sorted(p.name for p in (kept / 'nesterov' / 'seed1').iterdir()) == ['compare.json', 'log.jsonl',
                                                                              'machine.txt', 'train.log']
    assert (kept / 'nesterov' / 'seed1' / 'machine.txt').read_text().count('\n') == 1
    assert not (kept / 'baseline').exists()
    shutil.rmtree(out)
    (out / 'nesterov' / 'seed1').mkdir(parents=True)
    (out / 'nesterov' / 'seed1' / 'train.log').write_text('already here\n')
    subprocess.run([script, 'restore', str(kept), str(out)], check=True, capture_output=True)
    assert (out / 'nesterov' / 'seed1' / 'train.log').read_text() == 'already here\n'
    proc = run_script('compare.py', '--reuse', *args)
    assert 'baseline seed 1: python train.py' in proc.stdout
    assert 'nesterov seed 1: reusing' in proc.stdout and 'matched seed 1: reusing' in proc.stdout
    assert [(r['arm'], r['iter'], r['val_loss']) for r in read_csv(out / 'curves.csv')] == losses
    bad = subprocess.run([script, 'keep', str(tmp_path / 'missing'), str(kept)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count('\n') == 1
