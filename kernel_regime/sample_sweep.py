"""
Sample-size sweep: the smallest width m* that reaches a target, against the number of training
samples n. The claim is m* ~ log n. Two targets, each solved on the log-log line fitted to the
measured value against m (so m* is not stuck on the width grid):
  - loss:   minimum training loss of projected GD <= target_loss * (loss at f = 0);
  - approx: approximation error max_{i <= n} |f_lin,m(X_i) - f*(X_i)| (mean over `draws` draws of
    the m heads) <= target_approx * std(y), the sup over n points the log n of the bound comes from.

    python -m kernel_regime.sample_sweep           # quick: n in 250..2000, ~3 min on 2 cores
    python -m kernel_regime.sample_sweep --full    # n in 500..8000, K 4000
"""
import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import make_teacher, random_feature_model, teacher_data
from kernel_regime.model import init_transformer, train_pgd, transformer_heads
from kernel_regime.report import fit_slope, lr_or_authors, parser, save, setup

QUICK = dict(Ns=[250, 500, 1000, 2000], widths=[8, 16, 32, 64, 128], M=2048, steps=300, seeds=[0, 1])
FULL = dict(Ns=[500, 1000, 2000, 4000, 8000], widths=[8, 16, 32, 64, 128, 256], M=8192, steps=4000,
            seeds=[0, 1, 2])

def smallest_width(widths, values, target):
    """Solve the log-log line fitted through (m, value) for value = target. A fit over all widths
    rather than the first grid crossing, because each width is its own random draw of heads."""
    b, a = np.polyfit(np.log(widths), np.log(values), 1)
    m_star = float(np.exp((np.log(target) - a) / b))
    # far outside the measured widths the line is a guess: report nothing rather than a number
    return m_star if min(widths) / 2 <= m_star <= 2 * max(widths) else float('nan')

def run_seed(seed, Ns, widths, d, T, M, R, nu, rho, steps, lr, draws, dtype=torch.float32):
    """Nested data sets (the first n of one draw) under one teacher. Returns per-n curves over m."""
    teacher = make_teacher(d, T, R, M, nu, seed, dtype)
    X, y = teacher_data(max(Ns), d, T, teacher, seed, dtype)
    out = {'y_std': y.std().item()}  # one scale for every n: the targets must not move with n
    for n in Ns:
        Xn, yn = X[:n], y[:n]
        loss, approx = [], []
        for m in widths:
            inits = [init_transformer(m, d, 1000 * seed + m + 7 * k, dtype) for k in range(draws)]
            approx.append(np.mean([(random_feature_model(p0, teacher, Xn) - yn).abs().max().item() for p0 in inits]))
            hist = train_pgd(transformer_heads, inits[0], Xn, yn, steps, lr, rho)[1]
            loss.append(min(hist['loss']) / hist['loss'][0])  # relative to f = 0
        out[n] = {'relative_loss': loss, 'approx_error': approx}
        print(f"seed {seed} n {n:5d} relative loss {np.round(loss, 4)} approx {np.round(approx, 3)}", flush=True)
    return out

def main():
    p = parser(__doc__)
    p.add_argument('--Ns', type=int, nargs='+', default=None, help='training sample sizes')
    p.add_argument('--widths', type=int, nargs='+', default=None)
    p.add_argument('--T', type=int, default=16)
    p.add_argument('--M', type=int, default=None)
    p.add_argument('--R', type=int, default=16)
    p.add_argument('--nu', type=float, default=3.0)
    p.add_argument('--draws', type=int, default=8, help='draws of the m heads averaged in the approximation error')
    p.add_argument('--target_loss', type=float, default=0.02, help='relative training loss to reach')
    p.add_argument('--target_approx', type=float, default=1.0, help='approximation error to reach, in units of std(y)')
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    runs = [run_seed(s, args.Ns, args.widths, args.d, args.T, args.M, args.R, args.nu, args.rho_dict,
                     args.steps, lr, args.draws) for s in args.seeds]
    Ns = np.array(args.Ns, dtype=float)
    m_star = {'loss': [[smallest_width(args.widths, r[n]['relative_loss'], args.target_loss) for n in args.Ns]
                       for r in runs],
              'approx': [[smallest_width(args.widths, r[n]['approx_error'], args.target_approx * r['y_std'])
                          for n in args.Ns] for r in runs]}
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_seed': [{str(n): v for n, v in r.items()} for r in runs], 'm_star': m_star, 'fits': {}}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (k, title) in zip(axes, [('loss', f'min training loss <= {args.target_loss} x loss(f=0)'),
                                     ('approx', f'max_i |f_lin,m - f*| <= {args.target_approx} std(y)')]):
        ms = np.array(m_star[k]).mean(0)  # nan where a seed's target was out of the width range
        ok = np.isfinite(ms)
        if ok.sum() >= 2:
            b, a = np.polyfit(np.log(Ns[ok]), ms[ok], 1)
            power = fit_slope(Ns[ok], ms[ok])
            result['fits'][k] = {'m_star_mean': ms.tolist(), 'per_log_n': float(b), 'intercept': float(a),
                                 'loglog_slope': power}
            ax.plot(Ns, a + b * np.log(Ns), 'k:', label=f'm* = {a:.1f} + {b:.1f} log n (log-log slope {power:.2f})')
        else:
            print(f"{k}: the target is outside the widths' reach for most n; change --target_{k} or --widths")
        for s, row in zip(args.seeds, m_star[k]):
            ax.plot(Ns, row, '.', alpha=0.5, label=f'seed {s}')
        ax.plot(Ns, ms, 'o-', label='mean over seeds')
        ax.set_xscale('log'); ax.set_xlabel('training samples n'); ax.set_ylabel('smallest width m*')
        ax.set_title(title, fontsize=10); ax.legend(fontsize=7)
    fig.suptitle(f"d={args.d} T={args.T} M={args.M} K={args.steps} lr={lr:.3g} rho={args.rho} "
                 f"widths={args.widths}", fontsize=9)
    save(fig, result, args.out_dir, 'sample_sweep')
    print('fits', result['fits'])

if __name__ == '__main__':
    main()
