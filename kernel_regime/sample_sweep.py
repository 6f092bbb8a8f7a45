"""
Sample-size sweep: the smallest width m* that reaches a target, against the number of training
samples n. The claim is m* ~ log n. Two targets, each solved on the log-log line fitted to the
measured value against m (so m* is not stuck on the width grid):
  - loss:   minimum training loss of projected GD <= target_loss * (loss at f = 0);
  - approx: approximation error max_{i <= n} |f_lin,m(X_i) - f*(X_i)| (mean over `draws` draws of
    the m heads) <= target_approx * std(y), the sup over n points the log n of the bound comes from.

Over n = 500 .. 8000, log n and a small power n^p differ only in curvature against log n, so both
are fitted to m* and their residuals compared.

    python -m kernel_regime.sample_sweep           # n in 500..8000, K 300
    python -m kernel_regime.sample_sweep --full    # M 8192, K 4000, m up to 256
    python -m kernel_regime.sample_sweep --seeds 3 --cache_dir DIR   # one seed per process; the same
                                                   # command over all seeds then only collects
"""
import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import make_teacher, random_feature_model, teacher_data
from kernel_regime.model import init_transformer, train_pgd, transformer_heads
from kernel_regime.report import cached, lr_or_authors, parser, save, setup

QUICK = dict(Ns=[500, 1000, 2000, 4000, 8000], widths=[8, 16, 32, 64, 128], M=2048, steps=300, seeds=[0, 1, 2])
FULL = dict(Ns=[500, 1000, 2000, 4000, 8000], widths=[8, 16, 32, 64, 128, 256], M=8192, steps=4000,
            seeds=[0, 1, 2])

def smallest_width(widths, values, target):
    """Solve the log-log line fitted through (m, value) for value = target. A fit over all widths
    rather than the first grid crossing, because each width is its own random draw of heads."""
    b, a = np.polyfit(np.log(widths), np.log(values), 1)
    m_star = float(np.exp((np.log(target) - a) / b))
    # far outside the measured widths the line is a guess: report nothing rather than a number
    return m_star if min(widths) / 2 <= m_star <= 2 * max(widths) else float('nan')

def log_and_power_fits(Ns, m_star):
    """Least-squares fits m* = a + b log n and (in log space) m* = A n^p, each with the RMS of its
    residuals in m*: the model with the smaller residual describes the curve better."""
    x, m_star = np.log(Ns), np.asarray(m_star)
    b, a = np.polyfit(x, m_star, 1)
    p, log_A = np.polyfit(x, np.log(m_star), 1)
    rms = lambda fit: float(np.sqrt(np.mean((m_star - fit) ** 2)))
    return {'intercept': float(a), 'per_log_n': float(b), 'rms_log': rms(a + b * x),
            'prefactor': float(np.exp(log_A)), 'power': float(p), 'rms_power': rms(np.exp(log_A + p * x))}

def run_seed(seed, Ns, widths, d, T, M, R, nu, rho, steps, lr, draws, dtype=torch.float32):
    """Nested data sets (the first n of one draw) under one teacher. Returns per-n curves over m,
    keyed by str(n) so that the result survives a round trip through JSON."""
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
        out[str(n)] = {'relative_loss': loss, 'approx_error': approx}
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
    p.add_argument('--cache_dir', default=None,
                   help='keep each seed\'s result here and reuse it when the settings match')
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    settings = dict(Ns=args.Ns, widths=args.widths, d=args.d, T=args.T, M=args.M, R=args.R, nu=args.nu,
                    rho=args.rho_dict, steps=args.steps, lr=lr, draws=args.draws)
    runs = [cached(args.cache_dir, f'seed{s}', lambda: run_seed(s, **settings), settings) for s in args.seeds]
    Ns = np.array(args.Ns, dtype=float)
    m_star = {'loss': [[smallest_width(args.widths, r[str(n)]['relative_loss'], args.target_loss) for n in args.Ns]
                       for r in runs],
              'approx': [[smallest_width(args.widths, r[str(n)]['approx_error'], args.target_approx * r['y_std'])
                          for n in args.Ns] for r in runs]}
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_seed': runs, 'm_star': m_star, 'fits': {}}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (k, title) in zip(axes, [('loss', f'min training loss <= {args.target_loss} x loss(f=0)'),
                                     ('approx', f'max_i |f_lin,m - f*| <= {args.target_approx} std(y)')]):
        ms = np.array(m_star[k]).mean(0)  # nan where a seed's target was out of the width range
        ok = np.isfinite(ms)
        if ok.sum() >= 3:
            fit = log_and_power_fits(Ns[ok], ms[ok])
            # the same comparison seed by seed: how often does log n fit better than a power?
            per_seed = [log_and_power_fits(Ns[np.isfinite(row)], np.array(row)[np.isfinite(row)])
                        for row in m_star[k] if np.isfinite(row).sum() >= 3]
            result['fits'][k] = dict(fit, m_star_mean=ms.tolist(),
                                     seeds_log_better=sum(f['rms_log'] < f['rms_power'] for f in per_seed),
                                     seeds_fitted=len(per_seed))
            ax.plot(Ns, fit['intercept'] + fit['per_log_n'] * np.log(Ns), 'k:',
                    label=f"{fit['intercept']:.1f} + {fit['per_log_n']:.1f} log n (rms {fit['rms_log']:.2f})")
            ax.plot(Ns, fit['prefactor'] * Ns ** fit['power'], 'k--',
                    label=f"{fit['prefactor']:.1f} n^{fit['power']:.3f} (rms {fit['rms_power']:.2f})")
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
