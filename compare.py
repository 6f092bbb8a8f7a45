"""
Side-by-side training comparison: several arms x several seeds through train.py (one process
per run, run one after another), then best/final validation loss per arm (mean +- std over
seeds), loss at equal steps and at equal training time, tokens/s and parameter counts.

$ python compare.py --arms baseline polyak nesterov --seeds 1 2 3 --max_iters=600 --lr_decay_iters=600
$ python compare.py --arms baseline nesterov matched --max_time=120 --max_iters=5000   # equal wall-clock budget
$ python compare.py --arms baseline wide=baseline,n_embd=160 ts=config/train_tinystories_nesterov.py,batch_size=8
$ python compare.py --summarize out-tinystories-baseline out-tinystories-nesterov   # runs made elsewhere (GPUs)

An arm is NAME or NAME=TOKEN,TOKEN,... where a token is a built-in arm (below), a config file
(*.py) or key=value. Built-ins: baseline (model.py), gd, polyak, nesterov and their *_euler
variants (model_nesterov.py), and matched: the baseline widened (n_embd) or deepened (n_layer)
to the parameter count of the largest other arm (matched:ARM picks the arm), since the velocity
tables add parameters and a gain must be attributable. Any other --key=value goes to every
train.py run. Run k of every arm uses --seed=k: the same initial weights of shared modules and
the same data order. Budgets: --max_iters (steps), or --max_time (seconds of training, eval
excluded); the learning rate schedule stays iteration-based (lr_decay_iters), so under a time
budget set lr_decay_iters near the number of steps the budget allows. A run that diverges
(train.py stops at a non-finite loss) is reported as such and the comparison goes on; the
others are compared where they all got to. Writes to --out_dir: runs.csv, summary.csv,
curves.csv, curves.png, table.md, and each run in <arm>/seed<k>/.
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

import loader
from checkpoint import CheckpointError, build_model, load_checkpoint, model_arg_names
from configurator import ConfigError, configure, script_defaults

ROOT = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(ROOT, 'train.py')
BUILTIN = {'baseline': ['--model_type=gpt']}
for _m in ('gd', 'polyak', 'nesterov'):
    BUILTIN[_m] = ['--model_type=nesterov', f'--momentum={_m}', '--splitting=lie_trotter']
    BUILTIN[f'{_m}_euler'] = ['--model_type=nesterov', f'--momentum={_m}', '--splitting=euler']
METRICS = ['best_val', 'final_val', 'val_at_steps', 'val_at_time', 'tokens_per_s']


def parse_arm(spec, common):
    """An arm spec -> (name, train.py argv before out_dir/seed, matched target or None)."""
    name, _, rest = spec.partition('=')
    files, overrides, target = [], [], None
    for tok in (rest.split(',') if rest else [name]):
        kind, _, arg = tok.partition(':')
        if kind == 'matched':
            overrides += BUILTIN['baseline']
            target = arg or ''
        elif tok in BUILTIN:
            overrides += BUILTIN[tok]
        elif tok.endswith('.py'):
            files.append(tok)
        elif '=' in tok:
            overrides.append('--' + tok.lstrip('-'))
        else:
            sys.exit(f"error: arm {spec!r}: {tok!r} is not a built-in arm ({', '.join(BUILTIN)}, matched), "
                     f"a config file (*.py) or key=value")
    common_files = [a for a in common if not a.startswith('--')]
    return name, common_files + files + [a for a in common if a.startswith('--')] + overrides, target


def resolve(argv, defaults):
    """train.py's config for argv, as train.py would resolve it (vocab_size from the dataset)."""
    try:
        cfg = {**defaults, **configure(defaults, argv)}
    except ConfigError as e:
        sys.exit(f"error: {e}")
    if cfg['vocab_size'] is None:
        data_dir = os.path.join(cfg['data_root'], cfg['dataset'])
        loader.make_default_corpus_if_missing(data_dir)
        try:
            cfg['vocab_size'] = loader.model_vocab_size(loader.read_meta(data_dir))
        except loader.DataError as e:
            sys.exit(f"error: {e}")
    return cfg


def count_params(model_type, model_args):
    """(total, non-embedding) parameters, built on the meta device: no memory, no init time."""
    with torch.device('meta'):
        model = build_model(model_type, model_args)
    return model.get_num_params(False), model.get_num_params(True)


def cfg_params(cfg):
    return count_params(cfg['model_type'], {k: cfg[k] for k in model_arg_names(cfg['model_type'])})


def match_params(cfg, target):
    """The override (n_embd or n_layer) that brings the baseline cfg closest to `target` params."""
    widths = [('n_embd', c) for c in range(cfg['n_embd'], 2 * cfg['n_embd'] + 1, cfg['n_head'])]
    depths = [('n_layer', n) for n in range(cfg['n_layer'], 3 * cfg['n_layer'] + 1)]
    return min(widths + depths, key=lambda kv: abs(cfg_params({**cfg, kv[0]: kv[1]})[0] - target))


def read_run(run_dir, arm, seed):
    """One train.py run directory: its eval curve, logged speed and parameter counts. A run that
    compare.py saw diverge (non-finite loss) keeps its curve up to its last evaluation."""
    marker = os.path.join(run_dir, 'compare.json')
    diverged = os.path.exists(marker) and json.load(open(marker)).get('diverged', False)
    with open(os.path.join(run_dir, 'log.jsonl')) as f:
        records = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in records if r['event'] == 'eval']
    if not evals:
        sys.exit(f"error: {run_dir}/log.jsonl has no evaluation yet: let the run reach its first eval")
    speeds = [r['tokens_per_s'] for r in records if r['event'] == 'train' and r['iter'] > 5]  # warm-up excluded
    if not speeds and evals[-1]['train_time'] > 0:
        speeds = [evals[-1]['tokens'] / evals[-1]['train_time']]
    run = dict(arm=arm, seed=seed, dir=run_dir, iters=np.array([r['iter'] for r in evals], float),
               times=np.array([r['train_time'] for r in evals]), vals=np.array([r['val_loss'] for r in evals]),
               tokens_per_s=float(np.median(speeds)) if speeds else np.nan,
               params_total=None, params_non_embedding=None, diverged=diverged)
    ckpt_path = os.path.join(run_dir, 'ckpt.pt')
    if os.path.exists(ckpt_path):  # mmap: a GPT-2 checkpoint's tensors are not read for the model args
        try:
            ckpt = load_checkpoint(ckpt_path, mmap=True)
        except CheckpointError as e:
            sys.exit(f"error: {e}")
        run['params_total'], run['params_non_embedding'] = count_params(ckpt['model_type'], ckpt['model_args'])
    return run


def find_runs(dirs):
    """Every run (a directory with log.jsonl) under dirs; <arm>/seed<k> names the arm and seed."""
    runs = []
    for top in dirs:
        for path, _, files in sorted(os.walk(top)):
            if 'log.jsonl' in files:
                m = re.fullmatch(r'seed(\d+)', os.path.basename(path))
                arm = os.path.basename(os.path.dirname(path)) if m else os.path.basename(os.path.normpath(path))
                runs.append(read_run(path, arm, int(m.group(1)) if m else 0))
    if not runs:
        sys.exit(f"error: no log.jsonl under {' '.join(dirs)}: pass run directories made by train.py")
    return runs


def analyse(runs):
    """Per-run metrics at the common step and time, and per-arm mean and std over seeds. A
    diverged run does not shorten the others: it has no final loss, and no loss at a step or
    time it did not reach (NaN, left out of its arm's mean)."""
    finished = [r for r in runs if not r['diverged']] or runs
    steps = min(r['iters'][-1] for r in finished)  # every finished run reached this many steps
    seconds = min(r['times'][-1] for r in finished)  # and this much training time
    at = lambda x, xs, ys: np.interp(x, xs, ys) if x <= xs[-1] else np.nan  # noqa: E731
    for r in runs:
        r.update(best_val=r['vals'].min(), final_val=np.nan if r['diverged'] else r['vals'][-1],
                 final_iter=int(r['iters'][-1]), train_time=r['times'][-1],
                 val_at_steps=at(steps, r['iters'], r['vals']), val_at_time=at(seconds, r['times'], r['vals']))
    arms = list(dict.fromkeys(r['arm'] for r in runs))
    summary = []
    for arm in arms:
        rs = [r for r in runs if r['arm'] == arm]
        row = dict(arm=arm, seeds=len(rs), diverged=sum(r['diverged'] for r in rs), params_total=rs[0]['params_total'],
                   params_non_embedding=rs[0]['params_non_embedding'])
        for k in METRICS:
            v = np.array([r[k] for r in rs], float)
            v = v[np.isfinite(v)]
            row[k] = v.mean() if len(v) else np.nan
            row[k + '_std'] = v.std(ddof=1) if len(v) > 1 else 0.0
        summary.append(row)
    return steps, seconds, summary


def write_outputs(runs, steps, seconds, summary, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cols = ['arm', 'seed', 'params_total', 'params_non_embedding', 'best_val', 'final_val', 'final_iter', 'train_time',
            'val_at_steps', 'val_at_time', 'tokens_per_s', 'diverged', 'dir']
    with open(os.path.join(out_dir, 'runs.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(cols + ['equal_steps', 'equal_time_s'])
        w.writerows([[r[c] for c in cols] + [steps, seconds] for r in runs])
    with open(os.path.join(out_dir, 'summary.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    with open(os.path.join(out_dir, 'curves.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['arm', 'seed', 'iter', 'train_time', 'val_loss'])
        w.writerows([r['arm'], r['seed'], int(i), t, v] for r in runs for i, t, v in zip(r['iters'], r['times'], r['vals']))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in summary:
        rs = [r for r in runs if r['arm'] == row['arm'] and not r['diverged']] or \
            [r for r in runs if r['arm'] == row['arm']]
        for ax, key in zip(axes, ('iters', 'times')):
            grid = np.linspace(0, min(r[key][-1] for r in rs), 200)
            curves = np.array([np.interp(grid, r[key], r['vals']) for r in rs])
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(grid, mean, label=f"{row['arm']} ({len(rs)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.25)
    for ax, xlabel in zip(axes, ('step', 'training time (s, eval excluded)')):
        ax.set_xlabel(xlabel)
        ax.set_ylabel('validation loss (nats/token)')
        ax.set_ylim(top=min(ax.get_ylim()[1], 1.1 * max(r['vals'][min(2, len(r['vals']) - 1)] for r in runs)))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle('validation loss, mean +- std over seeds')
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'curves.png'), dpi=120)
    table = format_table(steps, seconds, summary)
    with open(os.path.join(out_dir, 'table.md'), 'w') as f:
        f.write(table + '\n')
    return table


def format_table(steps, seconds, summary):
    """The paper's format (best / final validation loss), plus equal-step and equal-time columns."""
    def pm(row, k, d=4):
        return '-' if np.isnan(row[k]) else f"{row[k]:.{d}f} +- {row[k + '_std']:.{d}f}"  # '-': every seed diverged
    ref = summary[0]
    lines = [f"| arm | params | best val | final val | val @ step {steps:.0f} | vs {ref['arm']} @ step {steps:.0f} "
             f"| val @ {seconds:.3g} s | tokens/s |", '|' + '---|' * 8]
    for row in summary:
        params = 'n/a' if row['params_total'] is None else f"{row['params_total'] / 1e6:.3f}M"
        seeds = f"{row['seeds']}, {row['diverged']} diverged" if row['diverged'] else row['seeds']
        gap = row['val_at_steps'] - ref['val_at_steps']
        lines.append(f"| {row['arm']} ({seeds}) | {params} | {pm(row, 'best_val')} | {pm(row, 'final_val')} "
                     f"| {pm(row, 'val_at_steps')} | {'-' if np.isnan(gap) else f'{gap:+.4f}'} "
                     f"| {pm(row, 'val_at_time')} | {pm(row, 'tokens_per_s', 0)} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     epilog='any other --key=value is passed to every train.py run')
    parser.add_argument('--arms', nargs='+', default=['baseline', 'polyak', 'nesterov'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--out_dir', default='out-compare')
    parser.add_argument('--reuse', action='store_true', help='skip runs already finished with the same arguments')
    parser.add_argument('--summarize', nargs='+', metavar='DIR', help='only summarize existing train.py run dirs')
    args, common = parser.parse_known_args()
    if args.summarize:
        runs = find_runs(args.summarize)
        print(write_outputs(runs, *analyse(runs), args.out_dir))
        print(f"wrote runs.csv, summary.csv, curves.csv, curves.png and table.md to {args.out_dir}")
        return
    defaults = script_defaults(TRAIN)
    arms = [parse_arm(spec, common) for spec in args.arms]
    if len({a[0] for a in arms}) != len(arms):
        sys.exit("error: two arms share a name: name them, e.g. --arms baseline copy=baseline")
    cfgs = {name: resolve(argv, defaults) for name, argv, _ in arms}
    for i, (name, argv, target) in enumerate(arms):
        if target is not None:
            others = {n: cfg_params(cfgs[n])[0] for n, _, t in arms if t is None}
            if not others or (target and target not in others):
                sys.exit(f"error: arm {name}: nothing to match (matched:ARM names another, unmatched arm)")
            target = target or max(others, key=others.get)
            key, value = match_params(cfgs[name], others[target])
            arms[i] = (name, argv + [f'--{key}={value}'], target)
            cfgs[name] = {**cfgs[name], key: value}
            print(f"{name}: the baseline with {key}={value} has {cfg_params(cfgs[name])[0]:,} parameters, "
                  f"{target} has {others[target]:,}")
    runs = []
    for seed in args.seeds:  # all arms of one seed, then the next: load drift hits every arm alike
        for name, argv, _ in arms:
            run_dir = os.path.join(args.out_dir, name, f'seed{seed}')
            full = [TRAIN, *argv, f'--out_dir={run_dir}', f'--seed={seed}', '--wandb_log=False']
            marker = os.path.join(run_dir, 'compare.json')
            if args.reuse and os.path.exists(marker) and json.load(open(marker))['argv'] == full[1:]:
                print(f"{name} seed {seed}: reusing {run_dir}")
            else:
                os.makedirs(run_dir, exist_ok=True)
                if os.path.exists(marker):
                    os.remove(marker)  # it vouches for the run about to be replaced
                print(f"{name} seed {seed}: python train.py {' '.join(full[1:])}", flush=True)
                with open(os.path.join(run_dir, 'train.log'), 'w') as log:
                    proc = subprocess.run([sys.executable, *full], stdout=log, stderr=subprocess.STDOUT,
                                          env=dict(os.environ, WANDB_MODE='disabled', PYTHONUNBUFFERED='1'))
                diverged = False
                if proc.returncode != 0:
                    tail = open(os.path.join(run_dir, 'train.log')).read().splitlines()[-5:] or ['']
                    # a run that diverges (train.py stops at a non-finite loss) is a result, not an error
                    diverged = 'non-finite loss' in tail[-1]
                    if not diverged:
                        sys.exit(f"error: {name} seed {seed} failed ({run_dir}/train.log):\n" + '\n'.join(tail))
                with open(marker, 'w') as f:
                    json.dump({'argv': full[1:], 'diverged': diverged}, f)
            runs.append(read_run(run_dir, name, seed))
            r = runs[-1]
            if r['diverged']:
                print(f"  diverged (non-finite loss) after its eval at step {r['iters'][-1]:.0f}, "
                      f"val {r['vals'][-1]:.4f}", flush=True)
            else:
                print(f"  {r['iters'][-1]:.0f} steps in {r['times'][-1]:.0f} s, final val {r['vals'][-1]:.4f}, "
                      f"{r['tokens_per_s']:,.0f} tokens/s", flush=True)
    print(write_outputs(runs, *analyse(runs), args.out_dir))
    print(f"wrote runs.csv, summary.csv, curves.csv, curves.png and table.md to {args.out_dir}")


if __name__ == '__main__':
    main()
