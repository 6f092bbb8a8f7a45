"""
What every kernel-regime experiment shares: the common command-line flags, the log-log slope
fit, writing the PNG + JSON pair, and the per-run result cache. Not run on its own; see the experiment modules:

    python -m kernel_regime.width_sweep      python -m kernel_regime.seqlen_sweep
    python -m kernel_regime.sample_sweep     python -m kernel_regime.rnn_contrast
"""
import argparse
import hashlib
import json
import math
import os

import matplotlib
matplotlib.use('Agg')  # no display on the CPU boxes we run on
import matplotlib.pyplot as plt
import numpy as np
import torch

def parser(doc):
    """Flags every experiment has; each module adds its own sizes."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument('--full', action='store_true', help="the paper's sizes instead of the quick defaults")
    p.add_argument('--seeds', type=int, nargs='+', default=None, help='seeds (default depends on --full)')
    p.add_argument('--out_dir', default=os.path.join('kernel_regime', 'figures'))
    p.add_argument('--d', type=int, default=8, help='token dimension')
    p.add_argument('--rho', type=float, default=3.0,
                   help='projection radius (times 1/sqrt m) of every parameter; 0: plain GD, no projection')
    p.add_argument('--lr', type=float, default=0.5,
                   help='GD step size on the mean squared error; 0 selects the authors\' 1.75/sqrt(K)')
    p.add_argument('--steps', type=int, default=None, help='GD steps K (default depends on --full)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads: 1 is much faster on a shared 2-core box than oversubscribing')
    return p

def setup(args, quick, full):
    """Fill the size flags the user left unset from the quick or the full preset."""
    torch.set_num_threads(args.threads)
    for k, v in (full if args.full else quick).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.rho_dict = {'W': args.rho, 'U': args.rho, 'c': args.rho, 'W_in': args.rho, 'u': args.rho} \
        if args.rho > 0 else None
    os.makedirs(args.out_dir, exist_ok=True)
    return args

def fit_slope(x, y):
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])

def loglog_panel(ax, x, per_seed, label, fit_from=0):
    """Mean over seeds with min-max band, and the slope fitted to the mean (from index fit_from).
    per_seed: (seeds, len(x)). Returns (slope of the mean, std of the per-seed slopes)."""
    per_seed = np.asarray(per_seed)
    mean = per_seed.mean(0)
    slope = fit_slope(x[fit_from:], mean[fit_from:])
    spread = float(np.std([fit_slope(x[fit_from:], s[fit_from:]) for s in per_seed]))
    ax.loglog(x, mean, 'o-', label=f'{label}: slope {slope:.2f} +- {spread:.2f}')
    ax.fill_between(x, per_seed.min(0), per_seed.max(0), alpha=0.25)
    return slope, spread

def save(fig, result, out_dir, name):
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name + '.png'), dpi=100)
    plt.close(fig)
    with open(os.path.join(out_dir, name + '.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f"wrote {os.path.join(out_dir, name)}.png and .json")

def lr_or_authors(lr, steps):
    """lr <= 0 selects the authors' schedule-free step 1.75 / sqrt(K)."""
    return lr if lr > 0 else 1.75 / math.sqrt(steps)

def cached(cache_dir, stem, compute, settings):
    """compute(), or its result from an earlier call with the same stem and settings, kept as JSON
    in cache_dir (None: no cache). A run of several CPU-hours can then be split over processes
    (disjoint seeds or lags) and resumed after an interruption."""
    if cache_dir is None:
        return compute()
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = os.path.join(cache_dir, f'{stem}_{key}.json')
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)['result']
    out = compute()
    os.makedirs(cache_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump({'settings': settings, 'result': out}, f)
    return out
