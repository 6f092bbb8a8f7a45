"""
Transformer against an IndRNN of equal width on the authors' AR(L) task: x_t = 0.9 x_{t-L} + noise,
windows T = L + 1 of 17-dim tokens (value + 8 sin/cos position pairs), z-scored next value as target,
random 80/20 split, both models trained by the same full-batch GD on the mean squared error (by
default the authors' setting: lr 0.05, 5000 steps, no projection, IndRNN recurrent weights +-1.5).
Against the lag L: minimum validation MSE (the best predictor 0.9 x_{t+1-L} reaches about 0.19),
the loss gradient norm, and the per-sample Jacobian norm ||grad_theta f(X)|| at initialization;
a probe of the IndRNN's Jacobian at init for several recurrent inits, on the authors' tokens and
on tokens rescaled to norm <= 1 as the theory assumes.

    python -m kernel_regime.rnn_contrast                        # n 500, seeds 0-1
    python -m kernel_regime.rnn_contrast --seeds 0 1 2 3 4      # the reduced run in the README
    python -m kernel_regime.rnn_contrast --full                 # the authors' n 5000, seeds 1-20
"""
import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import ar_windows
from kernel_regime.model import (indrnn_heads, init_indrnn, init_transformer, jacobian_norm,
                                 train_pgd, transformer_heads)
from kernel_regime.report import cached, lr_or_authors, parser, save, setup

QUICK = dict(n=500, m=64, steps=5000, Ls=[4, 16, 72, 96], seeds=[0, 1])
FULL = dict(n=5000, m=64, steps=5000, Ls=[4, 16, 72, 96], seeds=list(range(1, 21)))
PROBE_INITS = [('sign', 1.5), ('sign', 1.0), ('sign', 0.5), ('uniform', 1.0)]  # (u_dist, u_max)

def run_L(seed, L, m, n, d, rho, steps, lr, u_max=1.5, u_dist='sign', unit_tokens=False,
          dtype=torch.float32):
    """Both models on one data set. Returns {'bayes_mse': .., 'transformer': {..}, 'indrnn': {..}}."""
    X, y, bayes = ar_windows(n, L, seed, d, unit_tokens=unit_tokens, dtype=dtype)
    # a random split as the authors do: neighbouring windows overlap, so a contiguous validation
    # block of a long-memory series would be a different distribution from the training set
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, tr = perm[:n // 5], perm[n // 5:]
    out = {'bayes_mse': bayes}
    for name, heads_fn, p0 in [('transformer', transformer_heads, init_transformer(m, d, 1000 * seed + L, dtype)),
                               ('indrnn', indrnn_heads, init_indrnn(m, d, 1000 * seed + L, u_max, u_dist, dtype))]:
        hist = train_pgd(heads_fn, p0, X[tr], y[tr], steps, lr, rho, X[val], y[val])[1]
        out[name] = {'min_val_mse': min(hist['val_loss']), 'min_train_mse': min(hist['loss']),
                     'final_val_mse': hist['val_loss'][-1],
                     'grad_norm_init': hist['grad_norm'][0], 'grad_norm_max': max(hist['grad_norm']),
                     # the authors' early average over steps 1..50; undefined for a one-step run
                     'grad_norm_early': float(np.mean(hist['grad_norm'][1:51])) if steps > 1 else float('nan'),
                     'jacobian_norm_init': jacobian_norm(heads_fn, p0, X[:200]).mean().item()}
    return out

def jacobian_probe(m, d, Ls, seeds, unit_tokens):
    """IndRNN's mean per-sample Jacobian norm at init against L, for each init in PROBE_INITS."""
    return {f'{dist} {u}': [float(np.mean([jacobian_norm(indrnn_heads, init_indrnn(m, d, 1000 * s + L, u, dist),
                                                         ar_windows(200, L, s, d, unit_tokens=unit_tokens)[0]).mean().item()
                                           for s in seeds])) for L in Ls] for dist, u in PROBE_INITS}

def main():
    p = parser(__doc__)
    p.set_defaults(d=17, lr=0.05, rho=0.0)  # the authors' tokens, step and plain (unprojected) GD
    p.add_argument('--n', type=int, default=None, help='windows (80/20 train/validation)')
    p.add_argument('--m', type=int, default=None, help='heads of the transformer = units of the IndRNN')
    p.add_argument('--Ls', type=int, nargs='+', default=None, help='lags of the AR series')
    p.add_argument('--u_max', type=float, default=1.5, help='IndRNN recurrent weight scale')
    p.add_argument('--u_dist', default='sign', choices=['sign', 'uniform'],
                   help="recurrent init: 'sign' u = +-u_max (the authors'), 'uniform' U(0, u_max)")
    p.add_argument('--unit_tokens', action='store_true', help='rescale tokens to norm <= 1 (the theory)')
    p.add_argument('--probe_Ls', type=int, nargs='*', default=[4, 8, 16, 32, 72, 96],
                   help='lags at which the IndRNN Jacobian at init is probed (no training; none: skip)')
    p.add_argument('--cache_dir', default=None,
                   help='keep each (L, seed) result here and reuse it when the settings match')
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    probe = {scale: jacobian_probe(args.m, args.d, args.probe_Ls, args.seeds, unit)
             for scale, unit in (('authors_tokens', False), ('unit_tokens', True)) if args.probe_Ls}
    print('IndRNN Jacobian norm at init vs L', args.probe_Ls, probe, flush=True)
    runs = {L: [] for L in args.Ls}
    for L in args.Ls:
        for s in args.seeds:
            settings = dict(m=args.m, n=args.n, d=args.d, rho=args.rho_dict, steps=args.steps, lr=lr,
                            u_max=args.u_max, u_dist=args.u_dist, unit_tokens=args.unit_tokens)
            runs[L].append(cached(args.cache_dir, f'L{L}_seed{s}', lambda: run_L(s, L, **settings), settings))
            r = runs[L][-1]
            print(f"L {L:3d} seed {s} bayes {r['bayes_mse']:.4f} " + ' '.join(
                f"{net}: val {r[net]['min_val_mse']:.4f} grad {r[net]['grad_norm_max']:.3g} "
                f"jac {r[net]['jacobian_norm_init']:.3g}" for net in ('transformer', 'indrnn')), flush=True)
    Ls = np.array(args.Ls, dtype=float)
    get = lambda net, k: np.array([[r[net][k] for r in runs[L]] for L in args.Ls])  # (len(Ls), seeds)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for net in ('transformer', 'indrnn'):
        v = get(net, 'min_val_mse')
        axes[0].errorbar(Ls, v.mean(1), yerr=v.std(1), marker='o', capsize=3, label=net)
        for k, style in (('grad_norm_max', 'o-'), ('grad_norm_early', '^:'), ('jacobian_norm_init', 's--')):
            v = get(net, k)
            axes[1].errorbar(Ls, v.mean(1), yerr=v.std(1), fmt=style, capsize=3, label=f'{net} {k}')
    axes[0].plot(Ls, [np.mean([r['bayes_mse'] for r in runs[L]]) for L in args.Ls], 'k:', label='best predictor')
    for (scale, by_init), style in zip(probe.items(), ('o-', 's--')):
        for init, v in by_init.items():
            axes[2].plot(args.probe_Ls, v, style, label=f'u {init}, {scale}')
    axes[0].set_title('minimum validation MSE (y z-scored)', fontsize=10)
    axes[1].set_title('loss gradient and Jacobian norms', fontsize=10)
    axes[2].set_title('IndRNN Jacobian norm at init', fontsize=10)
    for ax in axes if probe else axes[:2]:
        ax.set_xscale('log', base=2); ax.set_yscale('log'); ax.set_xlabel('lag L (window T = L + 1)')
        ax.legend(fontsize=6)
    fig.suptitle(f"AR(L), phi=0.9, m={args.m} n={args.n} d={args.d} K={args.steps} lr={lr:.3g} "
                 f"rho={args.rho} u={args.u_dist} {args.u_max} unit_tokens={args.unit_tokens} "
                 f"seeds={args.seeds}", fontsize=9)
    summary = {net: {k: {str(L): float(np.mean([r[net][k] for r in runs[L]])) for L in args.Ls}
                     for k in runs[args.Ls[0]][0][net]} for net in ('transformer', 'indrnn')}
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_L': {str(L): v for L, v in runs.items()}, 'mean_over_seeds': summary,
              'indrnn_jacobian_norm_init_probe': probe}
    save(fig, result, args.out_dir, 'rnn_contrast')
    for net, d in summary.items():
        for k, v in d.items():
            print(net, k, {L: round(x, 4) for L, x in v.items()})

if __name__ == '__main__':
    main()
