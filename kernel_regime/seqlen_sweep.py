"""
Sequence-length sweep at fixed width: does the optimization error of projected GD depend on T?
One teacher per seed is held fixed across T: its anchors have length T_anchor, and a head's
gradient lives in the same parameter space at every input length, so f* = sum_r alpha_r K(., Xa_r)
labels inputs of any T. Against T: final and minimum training loss, the loss relative to the loss
at f = 0, the gradient norm of the loss, the per-sample Jacobian norm ||grad_theta f(X)||, and the
CPU time per step (the transformer's price: attention memory and time grow with T).

    python -m kernel_regime.seqlen_sweep           # T in 4 16 64 256, n 1000, K 500
    python -m kernel_regime.seqlen_sweep --full    # n 5000, M 8192, K 4000
"""
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from kernel_regime.data import make_teacher, teacher_data
from kernel_regime.model import init_transformer, jacobian_norm, train_pgd, transformer_heads
from kernel_regime.report import lr_or_authors, parser, save, setup

QUICK = dict(n=1000, m=64, M=2048, steps=500, Ts=[4, 16, 64, 256], seeds=[0, 1, 2])
FULL = dict(n=5000, m=64, M=8192, steps=4000, Ts=[4, 16, 64, 256], seeds=[0, 1, 2])

def run_T(seed, T, teacher, m, n, rho, steps, lr, dtype=torch.float32):
    """Train one student on n inputs of length T labelled by the (T-independent) teacher."""
    d = teacher['anchors'].shape[-1]
    X, y = teacher_data(n, d, T, teacher, seed, dtype)
    n_train = int(0.8 * n)
    p0 = init_transformer(m, d, 1000 * seed + m, dtype)
    # CPU time, not wall time: on a shared box the wall clock measures the other jobs
    t0 = time.process_time()
    p, hist = train_pgd(transformer_heads, p0, X[:n_train], y[:n_train], steps, lr, rho,
                        X[n_train:], y[n_train:])
    cpu_ms_per_step = 1000 * (time.process_time() - t0) / steps
    return {'final_train_loss': hist['loss'][-1], 'min_train_loss': min(hist['loss']),
            'min_val_loss': min(hist['val_loss']),
            'relative_loss': min(hist['loss']) / hist['loss'][0],  # f(theta_0) = 0: loss[0] = mean y^2
            'grad_norm_init': hist['grad_norm'][0], 'grad_norm_max': max(hist['grad_norm']),
            'jacobian_norm_init': jacobian_norm(transformer_heads, p0, X[:200]).mean().item(),
            'jacobian_norm_final': jacobian_norm(transformer_heads, p, X[:200]).mean().item(),
            'cpu_ms_per_step': cpu_ms_per_step}

def main():
    p = parser(__doc__)
    p.add_argument('--n', type=int, default=None)
    p.add_argument('--m', type=int, default=None, help='heads (fixed across T)')
    p.add_argument('--M', type=int, default=None, help='Monte Carlo heads of the teacher')
    p.add_argument('--R', type=int, default=16)
    p.add_argument('--nu', type=float, default=3.0)
    p.add_argument('--Ts', type=int, nargs='+', default=None, help='sequence lengths')
    p.add_argument('--T_anchor', type=int, default=16, help="length of the teacher's anchor inputs")
    args = setup(p.parse_args(), QUICK, FULL)
    lr = lr_or_authors(args.lr, args.steps)
    teachers = {s: make_teacher(args.d, args.T_anchor, args.R, args.M, args.nu, s) for s in args.seeds}
    runs = {T: [] for T in args.Ts}
    for T in args.Ts:
        for s in args.seeds:
            runs[T].append(run_T(s, T, teachers[s], args.m, args.n, args.rho_dict, args.steps, lr))
            print(f"T {T:4d} seed {s} " + ' '.join(f"{k} {v:.4g}" for k, v in runs[T][-1].items()), flush=True)
    Ts = np.array(args.Ts, dtype=float)
    get = lambda k: np.array([[r[k] for r in runs[T]] for T in args.Ts])  # (len(Ts), seeds)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, keys, title in zip(axes, [('final_train_loss', 'min_val_loss', 'relative_loss'),
                                      ('grad_norm_init', 'grad_norm_max', 'jacobian_norm_init'),
                                      ('cpu_ms_per_step',)],
                               ['loss after K steps', 'gradient and Jacobian norms', 'cost']):
        for k in keys:
            v = get(k)
            ax.errorbar(Ts, v.mean(1), yerr=v.std(1), marker='o', capsize=3, label=k)
        ax.set_xscale('log', base=2); ax.set_yscale('log'); ax.set_xlabel('sequence length T')
        ax.set_title(title, fontsize=10); ax.legend(fontsize=7)
    fig.suptitle(f"transformer, one teacher across T (anchors T={args.T_anchor}), m={args.m} n={args.n} "
                 f"d={args.d} M={args.M} K={args.steps} "
                 f"lr={lr:.3g} rho={args.rho} seeds={args.seeds}", fontsize=9)
    summary = {k: {str(T): float(np.mean([r[k] for r in runs[T]])) for T in args.Ts} for k in runs[args.Ts[0]][0]}
    result = {'args': {k: v for k, v in vars(args).items() if k != 'rho_dict'}, 'lr': lr,
              'per_T': {str(T): v for T, v in runs.items()}, 'mean_over_seeds': summary}
    save(fig, result, args.out_dir, 'seqlen_sweep')
    for k, v in summary.items():
        print(k, {T: round(x, 5) for T, x in v.items()})

if __name__ == '__main__':
    main()
