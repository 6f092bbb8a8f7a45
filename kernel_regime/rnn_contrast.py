"""
Transformer against an IndRNN of equal width on an AR(L) series x_t = 0.9 x_{t-L} + noise,
window T = L + 1, both trained by the same projected GD in the kernel regime. Against the lag L:
minimum validation loss relative to f = 0 (the best predictor 0.9 x_{t+1-L} reaches 1 - 0.81),
the loss gradient norm and the per-sample Jacobian norm ||grad_theta f(X)|| at initialization, and the
IndRNN's Jacobian norm for recurrent weights started above 1.

    python -m kernel_regime.rnn_contrast           # quick: L in 4 8 16 32, ~3 min on 2 cores
    python -m kernel_regime.rnn_contrast --full    # L in 4 16 72 96, n 5000, K 4000
"""
import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import ar_windows
from kernel_regime.model import (indrnn_heads, init_indrnn, init_transformer, jacobian_norm,
                                 train_pgd, transformer_heads)
from kernel_regime.report import lr_or_authors, parser, save, setup

QUICK = dict(n=1000, m=64, steps=500, Ls=[4, 8, 16, 32], seeds=[0, 1])
FULL = dict(n=5000, m=64, steps=4000, Ls=[4, 16, 72, 96], seeds=[0, 1, 2])

def run_L(seed, L, m, n, d, rho, steps, lr, u_max, dtype=torch.float32):
    X, y, bayes = ar_windows(n, L, d, seed, dtype=dtype)
    n_train = int(0.8 * n)
    out = {'bayes_loss': bayes / (0.5 * 0.25)}  # the fraction 1 - phi^2 of the series' variance
    for name, heads_fn, p0 in [('transformer', transformer_heads, init_transformer(m, d, 1000 * seed + L, dtype)),
                               ('indrnn', indrnn_heads, init_indrnn(m, d, 1000 * seed + L, u_max, dtype))]:
        hist = train_pgd(heads_fn, p0, X[:n_train], y[:n_train], steps, lr, rho, X[n_train:], y[n_train:])[1]
        # relative to the loss of f = 0 (step 0): the series is long-memory, so a 20% validation
        # block can have a variance far from the whole series' and raw losses do not compare
        out[name] = {'min_val_loss': min(hist['val_loss']) / hist['val_loss'][0],
                     'min_train_loss': min(hist['loss']) / hist['loss'][0],
                     'grad_norm_init': hist['grad_norm'][0], 'grad_norm_max': max(hist['grad_norm']),
                     'jacobian_norm_init': jacobian_norm(heads_fn, p0, X[:200]).mean().item()}
    return out

def main():
    p = parser(__doc__)
    p.add_argument('--n', type=int, default=None, help='windows (80/20 train/validation)')
    p.add_argument('--m', type=int, default=None, help='heads of the transformer = units of the IndRNN')
    p.add_argument('--Ls', type=int, nargs='+', default=None, help='lags of the AR series')
    p.add_argument('--u_max', type=float, default=1.0, help='IndRNN recurrent weights start in U(0, u_max)')
    p.add_argument('--u_max_probe', type=float, nargs='+', default=[0.5, 1.0, 1.5, 2.0],
                   help='IndRNN u_max values whose Jacobian norm at init is also measured against L')
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    runs = {L: [] for L in args.Ls}
    for L in args.Ls:
        for s in args.seeds:
            runs[L].append(run_L(s, L, args.m, args.n, args.d, args.rho_dict, args.steps, lr, args.u_max))
            r = runs[L][-1]
            print(f"L {L:3d} seed {s} bayes {r['bayes_loss']:.4f} " + ' '.join(
                f"{net}: val {r[net]['min_val_loss']:.4f} grad {r[net]['grad_norm_max']:.3g} "
                f"jac {r[net]['jacobian_norm_init']:.3g}" for net in ('transformer', 'indrnn')), flush=True)
    # does the IndRNN's Jacobian grow with the lag once recurrent weights exceed 1? (init only: cheap)
    probe = {str(u): [float(np.mean([jacobian_norm(indrnn_heads, init_indrnn(args.m, args.d, 1000 * s + L, u),
                                                   ar_windows(200, L, args.d, s)[0]).mean().item()
                                     for s in args.seeds])) for L in args.Ls] for u in args.u_max_probe}
    print('IndRNN Jacobian norm at init vs L, by u_max:', probe)
    Ls = np.array(args.Ls, dtype=float)
    get = lambda net, k: np.array([[r[net][k] for r in runs[L]] for L in args.Ls])  # (len(Ls), seeds)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for u, v in probe.items():
        axes[2].plot(Ls, v, 'o-', label=f'u_max {u}')
    axes[2].set_title('IndRNN Jacobian norm at init, by recurrent init U(0, u_max)', fontsize=10)
    for net in ('transformer', 'indrnn'):
        v = get(net, 'min_val_loss')
        axes[0].errorbar(Ls, v.mean(1), yerr=v.std(1), marker='o', capsize=3, label=net)
        for k, style in (('grad_norm_max', 'o-'), ('jacobian_norm_init', 's--')):
            v = get(net, k)
            axes[1].errorbar(Ls, v.mean(1), yerr=v.std(1), fmt=style, capsize=3, label=f'{net} {k}')
    axes[0].axhline(runs[args.Ls[0]][0]['bayes_loss'], color='k', ls=':', label='Bayes loss')
    axes[0].set_title('minimum validation loss / loss of f = 0', fontsize=10)
    axes[1].set_title('gradient norms', fontsize=10)
    for ax in axes:
        ax.set_xscale('log', base=2); ax.set_yscale('log'); ax.set_xlabel('lag L (window T = L + 1)')
        ax.legend(fontsize=7)
    fig.suptitle(f"AR(L), phi=0.9, m={args.m} n={args.n} d={args.d} K={args.steps} lr={lr:.3g} "
                 f"rho={args.rho} u_max={args.u_max} seeds={args.seeds}", fontsize=9)
    summary = {net: {k: {str(L): float(np.mean([r[net][k] for r in runs[L]])) for L in args.Ls}
                     for k in runs[args.Ls[0]][0][net]} for net in ('transformer', 'indrnn')}
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_L': {str(L): v for L, v in runs.items()}, 'mean_over_seeds': summary,
              'indrnn_jacobian_norm_init_by_u_max': probe}
    save(fig, result, args.out_dir, 'rnn_contrast')
    for net, d in summary.items():
        for k, v in d.items():
            print(net, k, {L: round(x, 4) for L, x in v.items()})

if __name__ == '__main__':
    main()
