"""
Width sweep: against m, the minimum training loss of projected GD, the approximation error of
the m-head random-feature model, and the linearization error at the edge of the projection ball,
log-log with fitted slopes and the spread over seeds.

    python -m kernel_regime.width_sweep            # n 1000, M 2048, K 500, m 8..128
    python -m kernel_regime.width_sweep --full     # paper sizes: n 5000, M 8192, K 4000, m 8..256
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import make_teacher, random_feature_model, teacher_data
from kernel_regime.model import (edge_direction, init_transformer, linearization_error,
                                 train_pgd, transformer_heads)
from kernel_regime.report import loglog_panel, lr_or_authors, parser, save, setup

QUICK = dict(n=1000, T=16, M=2048, steps=500, widths=[8, 16, 32, 64, 128], seeds=[0, 1, 2])
FULL = dict(n=5000, T=16, M=8192, steps=4000, widths=[8, 16, 32, 64, 128, 256], seeds=[0, 1, 2, 3, 4])

def run_seed(seed, widths, n, d, T, M, R, nu, rho, steps, lr, dtype=torch.float32):
    """One teacher and data set, every width. Returns {quantity: [value per width]}."""
    teacher = make_teacher(d, T, R, M, nu, seed, dtype)
    X, y = teacher_data(n, d, T, teacher, seed, dtype)
    n_train = int(0.8 * n)
    Xtr, ytr, Xva, yva = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    out = {k: [] for k in ('min_train_loss', 'min_val_loss', 'approx_error', 'lin_error_coherent',
                           'lin_error_random', 'lin_error_trained')}
    for m in widths:
        p0 = init_transformer(m, d, 1000 * seed + m, dtype)
        # the random-feature model is the student's linearization along Delta_i = v(phi_i)/sqrt(m)
        out['approx_error'].append((random_feature_model(p0, teacher, Xtr) - ytr).abs().max().item())
        p, hist = train_pgd(transformer_heads, p0, Xtr, ytr, steps, lr, rho, Xva, yva)
        out['min_train_loss'].append(min(hist['loss']))
        out['min_val_loss'].append(min(hist['val_loss']))
        for kind in ('coherent', 'random'):
            delta = edge_direction(p0, rho, kind, Xtr[0], seed)
            out['lin_error_' + kind].append(linearization_error(transformer_heads, p0, delta, Xtr))
        trained = {k: p[k] - p0[k] for k in p}
        out['lin_error_trained'].append(linearization_error(transformer_heads, p0, trained, Xtr))
        print(f"seed {seed} m {m:4d} " + ' '.join(f"{k} {v[-1]:.3g}" for k, v in out.items()), flush=True)
    return out

def main():
    p = parser(__doc__)
    p.add_argument('--n', type=int, default=None, help='samples (80/20 train/validation)')
    p.add_argument('--T', type=int, default=None, help='sequence length')
    p.add_argument('--M', type=int, default=None, help='Monte Carlo heads of the teacher')
    p.add_argument('--R', type=int, default=16, help='anchor inputs of the transport map')
    p.add_argument('--nu', type=float, default=3.0, help='norm bound of the transport map')
    p.add_argument('--widths', type=int, nargs='+', default=None)
    p.add_argument('--fit_from', type=int, default=1,
                   help='fit slopes from this width index on: the smallest m is far from linear')
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    runs = [run_seed(s, args.widths, args.n, args.d, args.T, args.M, args.R, args.nu, args.rho_dict,
                     args.steps, lr) for s in args.seeds]
    widths = np.array(args.widths, dtype=float)
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_seed': runs, 'slopes': {}, 'slope_std': {}}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [('min_train_loss', 'min_val_loss'), ('approx_error',),
              ('lin_error_coherent', 'lin_error_random', 'lin_error_trained')]
    titles = ['minimum loss of projected GD', 'approximation error max_i |f_lin,m - f*|',
              'linearization error (edge of the ball)']
    for ax, keys, title in zip(axes, panels, titles):
        for k in keys:
            slope, spread = loglog_panel(ax, widths, [r[k] for r in runs], k, args.fit_from)
            result['slopes'][k], result['slope_std'][k] = slope, spread
        ax.loglog(widths, 0.8 * runs[0][keys[0]][args.fit_from] *
                  (widths / widths[args.fit_from]) ** -0.5, 'k:', label='slope -1/2')
        if 'lin_error_random' in keys:  # the cancelling directions fall one order faster
            ax.loglog(widths, 0.8 * runs[0]['lin_error_random'][args.fit_from] *
                      (widths / widths[args.fit_from]) ** -1.0, 'k--', label='slope -1')
        ax.set_xlabel('heads m'); ax.set_title(title, fontsize=10); ax.legend(fontsize=7)
    fig.suptitle(f"n={args.n} d={args.d} T={args.T} M={args.M} K={args.steps} lr={lr:.3g} "
                 f"rho={args.rho} seeds={args.seeds}", fontsize=9)
    save(fig, result, args.out_dir, 'width_sweep')
    print('slopes', {k: round(v, 3) for k, v in result['slopes'].items()})

if __name__ == '__main__':
    main()
