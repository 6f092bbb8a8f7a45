"""
Side-by-side training comparison: several arms x several seeds through train.py (one process
per run), then per arm the best/final validation loss (mean +- std over seeds) and, paired by
seed against a reference arm, the difference at equal steps and at equal training time (mean,
std and how many seeds it favours), with its course over training.

$ python compare.py --arms baseline polyak nesterov --seeds 1 2 3 --max_iters=600 --lr_decay_iters=600
$ python compare.py --arms baseline nesterov matched --max_time=120 --max_iters=5000   # equal wall-clock budget
$ python compare.py --arms baseline wide=baseline,n_embd=160 ts=config/train_tinystories_nesterov.py,batch_size=8
$ python compare.py --summarize out-tinystories-baseline out-tinystories-nesterov   # runs made elsewhere (GPUs)

An arm is NAME or NAME=TOKEN,TOKEN,... where a token is a named arm (arms.ARMS:
baseline, gd, polyak, nesterov and their *_euler variants, tables (the velocity tables without
the dynamics) and nesterov_tied (the dynamics without the tables)), a config file (*.py) or
key=value.
`matched` (or matched:ARM) is the baseline widened to the parameter count of the largest other
arm (or of ARM), read off that arm's first checkpoint (or its compare.json, which keeps those
counts), since the velocity tables add parameters and a gain must be attributable; list it after
the arm it matches. Any other --key=value goes to every train.py run. Run k of every arm uses --seed=k: the same initial weights of shared modules
and the same data order. Budgets: --max_iters (steps), or --max_time (seconds of training, eval
excluded). A run that diverges (train.py stops at a non-finite loss) is reported as such and the
comparison goes on; the others are compared where they all got to. Writes to --out_dir: runs.csv,
summary.csv, curves.csv, gaps.csv, curves.png, gaps.png, table.md, each run in <arm>/seed<k>/,
and comparison.json, the arguments of each arm: a later call into the same --out_dir (other
seeds, more arms) must give each arm name the same arguments, or it is refused.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch

from arms import ARMS
from checkpoint import load_checkpoint, read_log
from configurator import EXIT_DIVERGED, UserError, exit_on_user_error
from model_nesterov import count_params

ROOT = os.path.dirname(os.path.abspath(__file__))
METRICS = ['best_val', 'final_val', 'final_train', 'val_at_steps', 'train_at_steps', 'val_at_time', 'tokens_per_s']


def arm_argv(spec, common):
    """An arm spec -> (name, train.py arguments, the arm it is parameter-matched to: '' for the
    largest, None if it is not a matched arm)."""
    name, _, rest = spec.partition('=')
    files, overrides, target = [], [], None
    for tok in (rest.split(',') if rest else [name]):
        kind, _, arg = tok.partition(':')
        if kind == 'matched':
            overrides += [f'--{k}={v}' for k, v in ARMS['baseline'].items()]
            target = arg
        elif tok in ARMS:
            overrides += [f'--{k}={v}' for k, v in ARMS[tok].items()]
        elif tok.endswith('.py'):
            files.append(tok)
        elif '=' in tok:
            overrides.append('--' + tok.lstrip('-'))
        else:
            raise UserError(f"arm {spec!r}: {tok!r} is not a named arm ({', '.join(ARMS)}, matched), "
                            f"a config file (*.py) or key=value", exit_code=2)
    common_files = [a for a in common if not a.startswith('--')]
    return name, common_files + files + [a for a in common if a.startswith('--')] + overrides, target


def matched_width(model_args, target):
    """The baseline n_embd (a multiple of n_head) whose parameter count is closest to `target`."""
    args = {k: model_args[k] for k in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias')}
    widths = range(args['n_embd'], 3 * args['n_embd'] + 1, args['n_head'])
    return min(widths, key=lambda c: abs(count_params('gpt', {**args, 'n_embd': c})[0] - target))


def read_run(run_dir, arm, seed, time_axis='measured'):
    """One train.py run directory: its eval curve, logged speed and parameter counts. A run that
    compare.py saw diverge (non-finite loss) keeps its curve up to its last evaluation. The time
    of an evaluation is the training time train.py measured up to it; with time_axis='median'
    its step times the run's median step time (what a machine shared with other jobs, or a
    paused run, distorts least); with time_axis a dict {arm: seconds per step}, its step times
    that arm's cost measured elsewhere (step_times())."""
    marker = os.path.join(run_dir, 'compare.json')
    state = json.load(open(marker)) if os.path.exists(marker) else {}
    diverged = state.get('diverged', False)
    records = read_log(os.path.join(run_dir, 'log.jsonl'))
    evals = [r for r in records if r['event'] == 'eval']
    if not evals:
        raise UserError(f"{run_dir}/log.jsonl has no evaluation yet: let the run reach its first eval")
    steps = [r for r in records if r['event'] == 'train' and r['iter'] > 5]  # warm-up excluded
    speeds = [r['tokens_per_s'] for r in steps]
    iters = np.array([r['iter'] for r in evals], float)
    times = np.array([r['train_time'] for r in evals])
    if time_axis == 'median' and steps:
        times = iters * float(np.median([r['dt'] for r in steps]))
    elif isinstance(time_axis, dict):
        if arm not in time_axis:
            raise UserError(f"--step_times has no run of arm {arm!r}: run the same arms there", exit_code=2)
        times = iters * time_axis[arm]
    run = dict(arm=arm, seed=seed, dir=run_dir, diverged=diverged, iters=iters, times=times,
               vals=np.array([r['val_loss'] for r in evals]), trains=np.array([r['train_loss'] for r in evals]),
               tokens_per_s=float(np.median(speeds)) if speeds else np.nan,
               diagnostics=evals[-1].get('diagnostics', {}), params_total=None, params_non_embedding=None,
               downstream=read_downstream(run_dir))
    # the checkpoint, or what run_train copied of it into the marker (kept records have no checkpoint)
    run.update(model_facts(run_dir) or {k: state[k] for k in MODEL_FACTS if k in state})
    return run


MODEL_FACTS = ('model_args', 'params_total', 'params_non_embedding')


def model_facts(run_dir):
    """What the tables need of a run's checkpoint: its model args and parameter counts ({} without one)."""
    ckpt_path = os.path.join(run_dir, 'ckpt.pt')
    if not os.path.exists(ckpt_path):
        return {}
    ckpt = load_checkpoint(ckpt_path, mmap=True)  # mmap: a GPT-2 checkpoint's tensors are not read for this
    total, non_embedding = count_params(ckpt['model_type'], ckpt['model_args'])
    return dict(model_args=ckpt['model_args'], params_total=total, params_non_embedding=non_embedding)


def read_downstream(run_dir):
    """eval.py's scores of a run ({'hellaswag acc': 0.30, ...}), {} when it was not evaluated."""
    path = os.path.join(run_dir, 'eval.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        results = json.load(f)['results']
    # the harness names a metric 'acc,none' (metric, filter); its other keys are not scores
    return {f"{task} {key.split(',')[0]}": v for task, r in results.items() for key, v in r.items()
            if ',' in key and '_stderr' not in key and isinstance(v, (int, float))}


def downstream_keys(runs):
    """The downstream scores any of the runs has, in a fixed order: the extra columns."""
    return sorted({k for r in runs for k in r['downstream']})


def run_dirs(dirs):
    """(directory, arm, seed) of every run (a directory with log.jsonl) under dirs; <arm>/seed<k>
    names the arm and seed, any other directory is an arm of its own, seed 0."""
    found = []
    for top in dirs:
        for path, _, files in sorted(os.walk(top)):
            if 'log.jsonl' in files:
                m = re.fullmatch(r'seed(\d+)', os.path.basename(path))
                arm = os.path.basename(os.path.dirname(path)) if m else os.path.basename(os.path.normpath(path))
                found.append((path, arm, int(m.group(1)) if m else 0))
    if not found:
        raise UserError(f"no log.jsonl under {' '.join(dirs)}: pass run directories made by train.py")
    return found


def find_runs(dirs, time_axis='measured'):
    """Every run under dirs, read; two directories that name the same arm and seed are not
    merged into one arm's statistics but refused."""
    found = run_dirs(dirs)
    seen = {}
    for path, arm, seed in found:
        if (arm, seed) in seen:
            raise UserError(f"{seen[arm, seed]} and {path} are both arm {arm!r} seed {seed}: summarize them "
                            f"separately, or rename one run directory", exit_code=2)
        seen[arm, seed] = path
    return [read_run(path, arm, seed, time_axis) for path, arm, seed in found]


def record_comparison(out_dir, arms, common):
    """out_dir/comparison.json: the train.py arguments of every arm ever run into out_dir. Each
    arm name means the same arguments for as long as out_dir lives (calls with other seeds,
    or with more arms under the same common flags, add to it); a different comparison is
    refused before it replaces one arm's runs and leaves the others'."""
    path = os.path.join(out_dir, 'comparison.json')
    record = {'common': common, 'arms': {}}
    if os.path.exists(path):
        try:
            with open(path) as f:
                record = json.load(f)
        except ValueError:
            raise UserError(f"{path} is not JSON: it is damaged; remove it to start the comparison afresh")
    if record['common'] != common:
        raise UserError(f"{out_dir} holds a comparison run with the flags {' '.join(record['common'])!r}, not "
                        f"{' '.join(common)!r}: pick another --out_dir", exit_code=2)
    for name, argv, _ in arms:
        if record['arms'].get(name, argv) != argv:
            raise UserError(f"{out_dir} holds arm {name!r} run as `{' '.join(record['arms'][name])}`, not "
                            f"`{' '.join(argv)}`: name this arm otherwise or pick another --out_dir", exit_code=2)
        record['arms'][name] = argv
    os.makedirs(out_dir, exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'  # two streams of one comparison (other seeds) may write at once
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def step_times(top):
    """{arm: median seconds per training step} over the runs under `top`: short runs of the same
    arms made on a quiet machine, the cost per step that a shared machine's timings blur."""
    dts = {}
    for path, arm, _ in run_dirs([top]):
        with open(os.path.join(path, 'log.jsonl')) as f:
            dts.setdefault(arm, []).extend(r['dt'] for r in map(json.loads, f) if r['event'] == 'train' and r['iter'] > 5)
    return {arm: float(np.median(d)) for arm, d in dts.items() if d}


def at(x, xs, ys):
    """ys interpolated at x, NaN past the end of the run."""
    return float(np.interp(x, xs, ys)) if x <= xs[-1] else np.nan


def mean_std(values):
    v = np.array(values, float)
    v = v[np.isfinite(v)]
    return (v.mean() if len(v) else np.nan), (v.std(ddof=1) if len(v) > 1 else 0.0)


def paired(diffs):
    """Paired differences over seeds: mean, sample std, how many are < 0 and > 0, and n."""
    d = np.array(diffs, float)
    d = d[np.isfinite(d)]
    m, s = mean_std(d)
    return dict(mean=m, std=s, below=int((d < 0).sum()), above=int((d > 0).sum()), n=len(d))


def analyse(runs, ref):
    """Per-run metrics at the common step and time; per arm their mean and std over seeds; and
    each arm minus `ref`, paired by seed. A diverged run does not shorten the others: it has no
    final loss, and no loss at a step or time it did not reach (NaN, left out)."""
    finished = [r for r in runs if not r['diverged']] or runs
    steps = min(r['iters'][-1] for r in finished)  # every finished run reached this many steps
    seconds = min(r['times'][-1] for r in finished)  # and this much training time
    for r in runs:
        r.update(best_val=r['vals'].min(), final_val=np.nan if r['diverged'] else r['vals'][-1],
                 final_train=np.nan if r['diverged'] else r['trains'][-1], final_iter=int(r['iters'][-1]),
                 train_time=r['times'][-1], val_at_steps=at(steps, r['iters'], r['vals']),
                 train_at_steps=at(steps, r['iters'], r['trains']), val_at_time=at(seconds, r['times'], r['vals']))
    arms = list(dict.fromkeys(r['arm'] for r in runs))
    if ref not in arms:
        raise UserError(f"--ref={ref!r} is not one of the arms ({', '.join(arms)})", exit_code=2)
    by_seed = {(r['arm'], r['seed']): r for r in runs}
    summary = []
    for arm in arms:
        rs = [r for r in runs if r['arm'] == arm]
        row = dict(arm=arm, seeds=len(rs), diverged=sum(r['diverged'] for r in rs),
                   params_total=rs[0]['params_total'], params_non_embedding=rs[0]['params_non_embedding'])
        for k in METRICS:
            row[k], row[k + '_std'] = mean_std([r[k] for r in rs])
        for k in downstream_keys(runs):  # over the seeds that were evaluated
            row[k], row[k + '_std'] = mean_std([r['downstream'].get(k, np.nan) for r in rs])
        for k in ('val_at_steps', 'val_at_time', 'final_val'):
            p = paired([r[k] - by_seed[ref, r['seed']][k] for r in rs if (ref, r['seed']) in by_seed])
            row.update({f'{k}_minus_ref_{s}': v for s, v in p.items()})
        summary.append(row)
    return steps, seconds, summary


def gaps_vs_step(runs, ref):
    """Each arm minus ref at every evaluation step both reached, paired by seed: rows of
    (arm, step, mean, std, seeds below, seeds above, n)."""
    by_seed = {(r['arm'], r['seed']): r for r in runs}
    rows = []
    for arm in dict.fromkeys(r['arm'] for r in runs):
        if arm == ref:
            continue
        pairs = [(r, by_seed[ref, r['seed']]) for r in runs if r['arm'] == arm and (ref, r['seed']) in by_seed]
        steps = sorted(set.intersection(*(set(a['iters']) & set(b['iters']) for a, b in pairs))) if pairs else []
        for step in steps:
            p = paired([a['vals'][list(a['iters']).index(step)] - b['vals'][list(b['iters']).index(step)] for a, b in pairs])
            rows.append(dict(arm=arm, step=int(step), **p))
    return rows


def write_csv(path, rows, fields=None):
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields or list(rows[0]), extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)


def write_outputs(runs, steps, seconds, summary, ref, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cols = ['arm', 'seed', 'params_total', 'params_non_embedding', 'best_val', 'final_val', 'final_train', 'final_iter',
            'train_time', 'val_at_steps', 'train_at_steps', 'val_at_time', 'tokens_per_s', 'diverged', 'dir']
    write_csv(os.path.join(out_dir, 'runs.csv'),
              [dict(r, **r['downstream'], equal_steps=steps, equal_time_s=seconds) for r in runs],
              cols + ['equal_steps', 'equal_time_s'] + downstream_keys(runs))
    write_csv(os.path.join(out_dir, 'summary.csv'), summary)
    write_csv(os.path.join(out_dir, 'curves.csv'),
              [dict(arm=r['arm'], seed=r['seed'], iter=int(i), train_time=t, val_loss=v, train_loss=tr)
               for r in runs for i, t, v, tr in zip(r['iters'], r['times'], r['vals'], r['trains'])],
              ['arm', 'seed', 'iter', 'train_time', 'val_loss', 'train_loss'])
    gaps = gaps_vs_step(runs, ref)
    if gaps:
        write_csv(os.path.join(out_dir, 'gaps.csv'), gaps)
    for stale in ('gaps.csv', 'gaps.png'):  # an earlier summary's, which these runs do not support
        if not gaps and os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, row in enumerate(summary):
        rs = [r for r in runs if r['arm'] == row['arm'] and not r['diverged']] or \
            [r for r in runs if r['arm'] == row['arm']]
        for ax, key in zip(axes, ('iters', 'times')):
            grid = np.linspace(0, min(r[key][-1] for r in rs), 200)
            for curve, style in (('vals', '-'), ('trains', ':')):
                curves = np.array([np.interp(grid, r[key], r[curve]) for r in rs])
                mean, std = curves.mean(0), curves.std(0)
                label = f"{row['arm']} ({len(rs)} seeds)" if curve == 'vals' else None
                ax.plot(grid, mean, style, color=f'C{i}', label=label)
                if curve == 'vals':
                    ax.fill_between(grid, mean - std, mean + std, color=f'C{i}', alpha=0.25)
    for ax, xlabel in zip(axes, ('step', 'training time (s, eval excluded)')):
        ax.set_xlabel(xlabel)
        ax.set_ylabel('loss (nats/token)')
        ax.set_ylim(top=min(ax.get_ylim()[1], 1.1 * max(r['vals'][min(2, len(r['vals']) - 1)] for r in runs)))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle('validation loss (solid, mean +- std over seeds) and train loss (dotted, mean)')
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'curves.png'), dpi=120)
    plt.close(fig)
    if gaps:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, arm in enumerate(dict.fromkeys(g['arm'] for g in gaps)):
            g = [x for x in gaps if x['arm'] == arm]
            step, mean, std = (np.array([x[k] for x in g]) for k in ('step', 'mean', 'std'))
            ax.plot(step, mean, color=f'C{i + 1}', label=f'{arm} - {ref}')
            ax.fill_between(step, mean - std, mean + std, color=f'C{i + 1}', alpha=0.2)
        ax.axhline(0, color='k', lw=0.8)
        ax.set(xlabel='step', ylabel='validation loss difference (nats/token)',
               title='paired by seed: mean +- std (below 0: better than ' + ref + ')')
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, 'gaps.png'), dpi=120)
        plt.close(fig)
    table = format_table(steps, seconds, summary, ref, downstream_keys(runs))
    with open(os.path.join(out_dir, 'table.md'), 'w') as f:
        f.write(table + '\n')
    return table


def format_table(steps, seconds, summary, ref, downstream=()):
    """Best / final validation loss (the paper's format), train and validation loss at equal
    steps, each arm minus ref paired by seed at equal steps and at equal time, and the downstream
    scores of eval.py where runs were evaluated."""
    def pm(row, k, d=4):
        return '-' if np.isnan(row[k]) else f"{row[k]:.{d}f} +- {row[k + '_std']:.{d}f}"  # '-': every seed diverged

    def gap(row, k):
        if row['arm'] == ref or not row[f'{k}_minus_ref_n']:
            return ''
        g = {s: row[f'{k}_minus_ref_{s}'] for s in ('mean', 'std', 'below', 'n')}
        return f"{g['mean']:+.4f} +- {g['std']:.4f} ({g['below']}/{g['n']} below)"
    lines = [f"| arm | params | best val | final val | train @ step {steps:.0f} | val @ step {steps:.0f} "
             f"| minus {ref} @ step {steps:.0f} | val @ {seconds:.3g} s | minus {ref} @ {seconds:.3g} s | tokens/s |",
             '|' + '---|' * 10]
    lines[0] += ''.join(f' {k} |' for k in downstream)
    lines[1] += '---|' * len(downstream)
    for row in summary:
        params = 'n/a' if row['params_total'] is None else f"{row['params_total'] / 1e6:.3f}M"
        seeds = f"{row['seeds']}, {row['diverged']} diverged" if row['diverged'] else row['seeds']
        lines.append(f"| {row['arm']} ({seeds}) | {params} | {pm(row, 'best_val')} | {pm(row, 'final_val')} "
                     f"| {pm(row, 'train_at_steps')} | {pm(row, 'val_at_steps')} | {gap(row, 'val_at_steps')} "
                     f"| {pm(row, 'val_at_time')} | {gap(row, 'val_at_time')} | {pm(row, 'tokens_per_s', 0)} |"
                     + ''.join(f' {pm(row, k)} |' for k in downstream))
    return '\n'.join(lines)


def run_train(name, seed, argv, run_dir, reuse):
    """One train.py run into run_dir. With reuse, a finished run with the same arguments is kept,
    and one that was stopped midway (compare.py killed with it) resumes from its last checkpoint,
    which continues it exactly."""
    full = [os.path.join(ROOT, 'train.py'), *argv, f'--out_dir={run_dir}', f'--seed={seed}', '--wandb_log=False']
    marker = os.path.join(run_dir, 'compare.json')
    state = json.load(open(marker)) if os.path.exists(marker) else {}
    same = reuse and state.get('argv') == full[1:]
    if same and state.get('finished', True):  # markers older than 'finished' were written at the end
        print(f"{name} seed {seed}: reusing {run_dir}")
        facts = {} if 'params_total' in state else model_facts(run_dir)  # a marker written before it held them
        if facts:
            with open(marker, 'w') as f:
                json.dump({**state, **facts}, f)
        return
    resume = same and os.path.exists(os.path.join(run_dir, 'ckpt.pt'))
    os.makedirs(run_dir, exist_ok=True)
    with open(marker, 'w') as f:  # it vouches for the run about to start, not the one it replaces
        json.dump({'argv': full[1:], 'finished': False}, f)
    print(f"{name} seed {seed}: python train.py {' '.join(full[1:])}" + (' --init_from=resume' if resume else ''),
          flush=True)
    with open(os.path.join(run_dir, 'train.log'), 'a' if resume else 'w') as log:
        proc = subprocess.run([sys.executable, *full, *(['--init_from=resume'] if resume else [])], stdout=log,
                              stderr=subprocess.STDOUT, env=dict(os.environ, WANDB_MODE='disabled', PYTHONUNBUFFERED='1'))
    diverged = proc.returncode == EXIT_DIVERGED  # a run that diverges is a result, not an error
    if proc.returncode not in (0, EXIT_DIVERGED):
        tail = open(os.path.join(run_dir, 'train.log')).read().splitlines()[-1:] or ['']
        raise UserError(f"{name} seed {seed} failed (exit code {proc.returncode}, {run_dir}/train.log): {tail[-1]}")
    with open(marker, 'w') as f:  # with the model facts, so the run's records alone still give its size
        json.dump({'argv': full[1:], 'finished': True, 'diverged': diverged, **model_facts(run_dir)}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     epilog='any other --key=value is passed to every train.py run')
    parser.add_argument('--arms', nargs='+', default=['baseline', 'polyak', 'nesterov'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--ref', help='the arm the others are compared with, paired by seed (default: the first)')
    parser.add_argument('--out_dir', default='out-compare')
    parser.add_argument('--reuse', action='store_true', help='skip runs already finished with the same arguments, '
                                                             'resume those stopped midway')
    parser.add_argument('--summarize', nargs='+', metavar='DIR', help='only summarize existing train.py run dirs')
    parser.add_argument('--time', choices=['measured', 'median'], default='measured',
                        help="equal-time axis: train.py's measured training time, or steps x the run's median step "
                             "time (for runs on a machine shared with other jobs)")
    parser.add_argument('--step_times', metavar='DIR', help="equal-time axis: steps x each arm's median step time in "
                                                            "the runs under DIR (short runs of the same arms on a quiet machine)")
    args, common = parser.parse_known_args()
    if args.step_times:
        args.time = step_times(args.step_times)
    if args.summarize:
        runs = find_runs(args.summarize, args.time)
    else:
        arms = [arm_argv(spec, common) for spec in args.arms]
        if len({a[0] for a in arms}) != len(arms):
            raise UserError("two arms share a name: name them, e.g. --arms baseline copy=baseline", exit_code=2)
        if len(set(args.seeds)) != len(args.seeds):  # the same run twice is not two samples
            raise UserError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed: give each once", exit_code=2)
        for i, (name, _, target) in enumerate(arms):  # before anything runs or is written
            earlier = [a[0] for a in arms[:i] if a[2] is None]
            if target is not None and (not earlier or (target and target not in earlier)):
                raise UserError(f"arm {name}: list it after the arm it matches (matched:ARM names one)", 2)
        record_comparison(args.out_dir, arms, common)
        runs = []
        for seed in args.seeds:  # all arms of one seed, then the next: load drift hits every arm alike
            for name, argv, target in arms:
                if target is not None:  # the baseline at the parameter count of an arm that already ran
                    others = {r['arm']: r for r in runs if r['seed'] == args.seeds[0] and r['params_total']}
                    if not others or (target and target not in others):
                        raise UserError(f"arm {name}: list it after the arm it matches (matched:ARM names one)", 2)
                    to = others[target] if target else max(others.values(), key=lambda r: r['params_total'])
                    argv = argv + [f"--n_embd={matched_width(to['model_args'], to['params_total'])}"]
                run_dir = os.path.join(args.out_dir, name, f'seed{seed}')
                run_train(name, seed, argv, run_dir, args.reuse)
                r = read_run(run_dir, name, seed, args.time)
                runs.append(r)
                if r['diverged']:
                    print(f"  diverged (non-finite loss) after its eval at step {r['iters'][-1]:.0f}, "
                          f"val {r['vals'][-1]:.4f}", flush=True)
                else:
                    print(f"  {r['iters'][-1]:.0f} steps in {r['times'][-1]:.0f} s, final val {r['vals'][-1]:.4f}, "
                          f"{r['tokens_per_s']:,.0f} tokens/s, {r['params_total']:,} parameters", flush=True)
    ref = args.ref or runs[0]['arm']
    steps, seconds, summary = analyse(runs, ref)
    print(write_outputs(runs, steps, seconds, summary, ref, args.out_dir))
    print(f"wrote runs.csv, summary.csv, curves.csv, gaps.csv, curves.png, gaps.png and table.md to {args.out_dir}")


if __name__ == '__main__':
    sys.excepthook = exit_on_user_error
    main()
