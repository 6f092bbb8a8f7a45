"""
Experiments on the clustering of tokens on the sphere (dynamics/sphere.py). Each writes a PNG
and a JSON of its numbers into --out_dir.
$ python -m dynamics.exp_sphere --experiment all          # all five (run times: dynamics/README.md)
$ python -m dynamics.exp_sphere --experiment staircase --n 32 --n_starts 64
Experiments: trajectories, staircase, orthogonal, phase, histograms.
"""
import argparse
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from dynamics import save_experiment
from dynamics.sphere import (angle_field, count_clusters, gamma_ode, gram, offdiag, random_sphere, rk4,
                             simulate, step)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--experiment", default="all",
                    choices=["all", "trajectories", "staircase", "orthogonal", "phase", "histograms"])
parser.add_argument("--out_dir", default="dynamics/figures")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--n", type=int, default=32, help="tokens")
parser.add_argument("--n_starts", type=int, default=32, help="random initial conditions per setting")
parser.add_argument("--dt", type=float, default=0.1, help="projected Euler step, the authors' value")
parser.add_argument("--threshold", type=float, default=0.999,
                    help="tokens with <x_i, x_j> above this are in one cluster (the phase diagram's 1 - delta)")
parser.add_argument("--betas", default="1,3,5,9", help="staircase inverse temperatures")
parser.add_argument("--t_final", type=float, default=300.0, help="staircase horizon")
parser.add_argument("--d_phase", default="2,8,32,128", help="dimensions of the phase diagram, one panel each")
parser.add_argument("--n_starts_phase", type=int, default=256, help="random starts per beta in the phase diagram")
parser.add_argument("--t_phase", type=float, default=40.0, help="phase diagram horizon")
parser.add_argument("--full", action="store_true",
                    help="phase diagram at the authors' size: 2048 starts for each of 90 betas in [0.1, 9]")
parser.add_argument("--threads", type=int, default=1, help="torch threads; these systems are too small to gain from more")


def trajectories(args, g):
    """Left: d = 2 in angles (the angle form, RK4), beta = 1. Right: d = 3, beta = 4, projected Euler."""
    n, beta2, beta3, T = args.n, 1.0, 4.0, 30.0
    theta = 2 * math.pi * torch.rand(1, n, generator=g, dtype=torch.float64)
    thetas = [theta]
    for _ in range(round(T / 0.05)):
        theta = rk4(lambda th: angle_field(th, beta2), theta, 0.05)
        thetas.append(theta)
    thetas = torch.stack(thetas)[:, 0]  # (T, n)
    ts3, xs3 = simulate(random_sphere(1, n, 3, g), T, args.dt, beta3)  # (T, 1, n, 3)
    fig = plt.figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    wrapped = torch.remainder(thetas, 2 * math.pi)
    ax.plot(torch.arange(len(thetas)) * 0.05, wrapped, ".", ms=0.6, color="C0")
    ax.set(xlabel="t", ylabel="theta_i mod 2 pi", title=f"d = 2, n = {n}, SA, beta = {beta2}")
    ax = fig.add_subplot(1, 2, 2, projection="3d")
    for i in range(n):
        ax.plot(*xs3[:, 0, i].T, lw=0.6)
    ax.scatter(*xs3[-1, 0].T, color="k", s=12)
    ax.set_title(f"d = 3, n = {n}, SA, beta = {beta3}, t <= {T:g}")
    xy = torch.stack([torch.cos(thetas[-1]), torch.sin(thetas[-1])], -1)[None]
    numbers = {"n": n, "t_final": T, "clusters_d2_beta1": count_clusters(xy, args.threshold).item(),
               "clusters_d3_beta4": count_clusters(xs3[-1], args.threshold).item()}
    save_experiment(fig, "trajectories", numbers, args.out_dir)


def staircase(args, g):
    """Number of clusters against t (d = 2), median and quartiles over starts, for several beta."""
    betas = [float(b) for b in args.betas.split(",")]
    S = args.n_starts
    x0 = random_sphere(S, args.n, 2, g).repeat(len(betas), 1, 1)  # the same starts for every beta
    beta = torch.tensor(betas).repeat_interleave(S)  # (len(betas) * S,)
    ts, xs = simulate(x0, args.t_final, args.dt, beta, save_every=max(1, round(0.5 / args.dt)))
    counts = torch.stack([count_clusters(x, args.threshold) for x in xs]).view(len(ts), len(betas), S)
    counts = counts.double()
    q = torch.quantile(counts, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=-1)  # (3, T, len(betas))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for b, name in enumerate(betas):
        ax.step(ts[1:], q[1, 1:, b], where="post", label=f"beta = {name:g}")
        ax.fill_between(ts[1:], q[0, 1:, b], q[2, 1:, b], step="post", alpha=0.2)
    ax.set(xscale="log", yscale="log", xlabel="t", ylabel="clusters (median, quartiles)",
           title=f"d = 2, n = {args.n}, SA, Euler dt = {args.dt}, {S} starts")
    ax.legend()
    marks = [t for t in (1, 5, 10, 30, 100, 300) if t <= args.t_final]
    idx = [int(torch.argmin((ts - t).abs())) for t in marks]
    numbers = {"n": args.n, "d": 2, "dt": args.dt, "n_starts": S, "threshold": args.threshold, "t": marks,
               "median": {f"{b:g}": [q[1, i, k].item() for i in idx] for k, b in enumerate(betas)},
               "counts": {f"{b:g}": {str(t): counts[i, k].long().tolist() for t, i in zip(marks, idx)}
                          for k, b in enumerate(betas)}}
    save_experiment(fig, "staircase", numbers, args.out_dir)


def orthogonal(args, g):
    """Orthogonal start (d = n): all <x_i, x_j> equal gamma(t), from particles (RK4) and the ODE."""
    n, T = args.n, 20.0
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    numbers = {"n": n, "d": n, "t_final": T}
    for ax, normalized, betas, dt in [(axes[0], True, [0.0, 1.0, 4.0, 6.0], 0.01),
                                      (axes[1], False, [0.0, 1.0, 2.0], 0.002)]:  # USA is stiff: rate 2 e^beta
        beta = torch.tensor(betas)
        x0 = torch.eye(n, dtype=torch.float64).expand(len(betas), n, n)
        ts, xs = simulate(x0, T, dt, beta, "rk4", save_every=round(0.25 / dt), normalized=normalized)
        tg, gam = gamma_ode(T, beta, n, normalized, dt=dt / 4)
        ip = offdiag(gram(xs))  # (T, len(betas), n(n-1)/2)
        err = (ip - gam[::round(0.25 / dt * 4), :, None]).abs().amax((0, 2))
        for k, b in enumerate(betas):
            ax.plot(tg, gam[:, k], color=f"C{k}", label=f"ODE, beta = {b:g}")
            ax.plot(ts, ip[:, k, :].mean(-1), "o", ms=3, mfc="none", color=f"C{k}")
        name = "SA" if normalized else "USA"
        ax.set(xlabel="t", ylabel="gamma(t) = <x_i, x_j>", title=f"{name}: particles (o, RK4 dt = {dt}) vs ODE")
        ax.legend(fontsize=8)
        numbers[name] = {"betas": betas, "dt": dt, "max_abs_error": err.tolist(),
                         "max_spread_across_pairs": (ip.amax(-1) - ip.amin(-1)).abs().max().item()}
    save_experiment(fig, "orthogonal", numbers, args.out_dir)


def phase(args, g):
    """Fraction of pairs with <x_i, x_j> > 1 - delta over (t, beta), one panel per d, gamma_beta(t) = 1 - delta
    on top (the ODE of the orthogonal start, which a random start approaches only for d >> n)."""
    n, S, T = args.n, 2048 if args.full else args.n_starts_phase, args.t_phase
    dims = [int(d) for d in args.d_phase.split(",")]
    betas = torch.linspace(0.1, 9, 90) if args.full else torch.arange(0, 9.01, 0.5)
    fine = torch.linspace(0, 9, 181)  # the ODE is cheap: a fine beta grid for a smooth curve
    tg, gam = gamma_ode(T, fine, n, dt=0.01)  # (T', 181)
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 4.0), sharey=True, squeeze=False,
                             layout="constrained")
    axes = axes[0]
    cross = lambda v, t: [t[int(c.nonzero()[0])].item() if c.any() else None for c in v.T]  # first t per beta
    numbers = {"n": n, "n_starts": S, "dt": args.dt, "t_final": T, "threshold": args.threshold, "betas": betas.tolist(),
               "t_gamma_ode_reaches_threshold": cross(gam[:, ::10] >= args.threshold, tg)}  # beta = 0, 0.5, .., 9
    for ax, d in zip(axes, dims):
        chunks = []  # a few betas at a time, and only the fraction per step: all states would not fit in memory
        for bs in betas.split(max(1, 8192 // S)):
            beta = bs.repeat_interleave(S)
            x, fracs = random_sphere(len(beta), n, d, g), []
            for k in range(round(T / args.dt) + 1):
                if k > 0:
                    x = step(x, args.dt, beta)
                fracs.append((offdiag(gram(x)) > args.threshold).double().mean(-1).view(len(bs), S).mean(-1))
            chunks.append(torch.stack(fracs))
        frac = torch.cat(chunks, 1)  # (T, len(betas))
        ts = args.dt * torch.arange(len(frac))
        im = ax.pcolormesh(ts, betas, frac.T, shading="nearest", cmap="viridis", vmin=0, vmax=1)
        ax.contour(tg, fine, gam.T, levels=[args.threshold], colors="r")
        ax.set(xlabel="t", title=f"d = {d}")
        numbers[f"d={d}"] = {"t_half_of_pairs_clustered": cross(frac >= 0.5, ts),
                             "fraction_at_t_final": frac[-1].tolist()}
    axes[0].set_ylabel("beta")
    axes[0].plot([], [], "r", label="gamma_beta(t) = 1 - delta (ODE, d >= n)")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.colorbar(im, ax=axes, label=f"fraction of pairs with <x_i, x_j> > {args.threshold}")
    fig.suptitle(f"SA, n = {n}, Euler dt = {args.dt}, {S} starts per beta")
    save_experiment(fig, "phase", numbers, args.out_dir)


def histograms(args, g):
    """Histograms of the pairwise inner products at several t (d = 3, beta = 9)."""
    n, d, beta, S = 64, 3, 9.0, args.n_starts
    marks = [0, 1, 3, 10, 30, 100]
    ts, xs = simulate(random_sphere(S, n, d, g), marks[-1], args.dt, beta, save_every=round(1 / args.dt))
    fig, axes = plt.subplots(1, len(marks), figsize=(13, 2.8), sharey=True)
    numbers = {"n": n, "d": d, "beta": beta, "n_starts": S, "t": marks, "fraction_above_threshold": [],
               "clusters_median": []}
    for ax, t in zip(axes, marks):
        x = xs[int(torch.argmin((ts - t).abs()))]
        ip = offdiag(gram(x)).flatten()
        ax.hist(ip, bins=50, range=(-1, 1), density=True, color="C0")
        ax.set(title=f"t = {t}", xlabel="<x_i, x_j>", yscale="log")
        numbers["fraction_above_threshold"].append((ip > args.threshold).double().mean().item())
        numbers["clusters_median"].append(count_clusters(x, args.threshold).double().median().item())
    fig.tight_layout()
    save_experiment(fig, "histograms", numbers, args.out_dir)


if __name__ == "__main__":
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiments = {"trajectories": trajectories, "staircase": staircase, "orthogonal": orthogonal,
                   "phase": phase, "histograms": histograms}
    for name, run in experiments.items():
        if args.experiment in (name, "all"):
            run(args, torch.Generator().manual_seed(args.seed))
