"""
Experiments on accelerated attention as inertial dynamics (dynamics/inertial.py). Each writes a
PNG and a JSON of its numbers into --out_dir.
$ python -m dynamics.exp_inertial --experiment all        # all three, ~1 min on 2 cores
$ python -m dynamics.exp_inertial --experiment energy --N 512 --d 6 --target 1e-2
Experiments: energy (energy against oracle calls), moments (matrix ODE against particles),
drift (energy drift against step size at alpha = 0).
"""
import argparse
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from dynamics import save_experiment
import dynamics.inertial as inertial
from dynamics.inertial import (energy, moments, particle_field, presymplectic_step, reference_setup, run,
                               solve_moments, steps_to_target, strang_step)
from dynamics.sphere import rk4

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--experiment", default="all", choices=["all", "energy", "moments", "drift"])
parser.add_argument("--out_dir", default="dynamics/figures")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--N", type=int, default=256, help="tokens")
parser.add_argument("--d", type=int, default=4, help="dimension; Q = diag(1, .5, .2, .05, .05, ...)")
parser.add_argument("--n_starts", type=int, default=2, help="random x_0 ~ N(0, I) per setting")
parser.add_argument("--h", type=float, default=0.1, help="layer step")
parser.add_argument("--n_steps", type=int, default=500, help="energy experiment: steps of the one-call blocks")
parser.add_argument("--target", type=float, default=2.28e-2, help="E = (1/2N) sum x^T Q x to reach")
parser.add_argument("--c_log", type=float, default=3.0, help="accelerated damping alpha = c_log / t + c_lin")
parser.add_argument("--c_lin", type=float, default=0.0)
parser.add_argument("--c_const", type=float, default=1.0, help="the constant-damping block: alpha = c_const")
parser.add_argument("--t0", type=float, default=1.0, help="time of the first layer (alpha = c_log / t needs t0 > 0)")
parser.add_argument("--softmax_beta", type=float, default=1.0, help="inverse temperature of the softmax kernel")
parser.add_argument("--threads", type=int, default=1, help="torch threads; these systems are too small to gain from more")


def energy_vs_calls(args, g):
    """E against oracle calls: classical, accelerated (c_log / t + c_lin), constant damping,
    undamped, and the accelerated block with the two-call second-order scheme; linear and softmax."""
    x0, V, A = reference_setup(args.n_starts, args.N, args.d, g)
    acc = dict(c_log=args.c_log, c_lin=args.c_lin, t0=args.t0)
    blocks = {"classical": dict(block="classical"),
              f"accelerated, alpha = {args.c_log:g}/t + {args.c_lin:g}": acc,
              f"constant damping alpha = {args.c_const:g}": dict(c_log=0.0, c_lin=args.c_const),
              "undamped, alpha = 0": dict(c_log=0.0, c_lin=0.0),
              "accelerated, second order (2 calls/step)": dict(acc, scheme="strang")}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    numbers = {"N": args.N, "d": args.d, "h": args.h, "n_starts": args.n_starts, "target": args.target,
               "t0": args.t0, "x0": "N(0, I)", "y0": 0}
    for ax, kind in zip(axes, ["linear", "softmax"]):
        numbers[kind] = {}
        for name, kw in blocks.items():
            calls_per_step = 2 if kw.get("scheme") == "strang" else 1
            before = inertial.n_oracle_calls
            E, _, y = run(x0, args.n_steps // calls_per_step, args.h, V, A, kind=kind, beta=args.softmax_beta, **kw)
            counted = (inertial.n_oracle_calls - before) / (len(E) - 1)  # counted, not assumed
            steps = steps_to_target(E, args.target)
            E = E.clamp(min=1e-30)
            ax.semilogy(torch.arange(len(E)) * counted, E.median(1).values, label=name)
            numbers[kind][name] = {"oracle_calls_per_step": counted, "steps_to_target": steps.tolist(),
                                   "oracle_calls_to_target": (steps * counted).tolist(),
                                   "E_final_median": E[-1].median().item(), "max_abs_y_final": y.abs().max().item()}
        ax.axhline(args.target, color="k", lw=0.8, ls=":")
        ax.set(xlabel="oracle calls (kernel evaluations)", ylabel="E = (1/2N) sum x^T Q x", ylim=(1e-4, 2),
               title=f"{kind} attention, N = {args.N}, d = {args.d}, h = {args.h}")
        ax.legend(fontsize=7)
    # constant damping: steps to target against its value, beside the classical block and the schedule
    consts = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5]
    scan = [steps_to_target(run(x0[:1], 1000, args.h, V, A, c_log=0.0, c_lin=c)[0], args.target).item()
            for c in consts]
    ax = axes[2]
    ax.plot(consts, scan, "o-", label="constant damping")
    for k, name in enumerate(["classical", f"accelerated, alpha = {args.c_log:g}/t + {args.c_lin:g}"]):
        ax.axhline(numbers["linear"][name]["steps_to_target"][0], color=f"C{k + 1}", ls="--", label=name)
    ax.set(xlabel="constant damping alpha", ylabel="steps to target", title="linear, first start", yscale="log")
    ax.legend(fontsize=8)
    numbers["linear_constant_damping_scan"] = {"alpha": consts, "steps_to_target": scan}
    fig.tight_layout()
    save_experiment(fig, "energy", numbers, args.out_dir)


def moments_vs_particles(args, g):
    """Second moments: the matrix ODE (RK4) against particles (presymplectic Euler at several h,
    and RK4 on the continuous particle dynamics), accelerated block, linear kernel."""
    x0, V, A = reference_setup(1, args.N, args.d, g)
    y0 = torch.zeros_like(x0)
    t0, T, dt = args.t0, args.t0 + 10.0, 0.01
    tM, Ms = solve_moments(moments(x0, y0), t0, T, dt, V, A, args.c_log, args.c_lin)  # (T', 1, 3, d, d)
    z = torch.stack([x0, y0])
    for k in range(round((T - t0) / dt)):
        z = rk4(lambda w, t: particle_field(w, t, V, A, c_log=args.c_log, c_lin=args.c_lin), z, dt, t0 + k * dt)
    numbers = {"N": args.N, "d": args.d, "t0": t0, "t_final": T, "ode_dt": dt,
               "rk4_particles_max_abs_error": (moments(*z) - Ms[-1]).abs().max().item(), "presymplectic": {}}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i in range(args.d):
        axes[0].semilogy(tM, Ms[:, 0, 0, i, i], color=f"C{i}", label=f"ODE M_xx[{i},{i}]")
    hs = [0.2, 0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        x, y, err = x0, y0, 0.0
        for k in range(round((T - t0) / h)):
            x, y = presymplectic_step(x, y, t0 + k * h, h, V, A, c_log=args.c_log, c_lin=args.c_lin)
            M = moments(x, y)[0]
            err = max(err, (M - Ms[round((k + 1) * h / dt), 0]).abs().max().item())
            if h == args.h and k % 5 == 4:
                axes[0].plot([t0 + (k + 1) * h] * args.d, M[0].diagonal(), "k.", ms=2)
        errs.append(err)
    axes[0].plot([], [], "k.", label=f"particles, presymplectic h = {args.h}")
    axes[0].set(xlabel="t", ylabel="second moment", title=f"accelerated linear block, N = {args.N}, d = {args.d}")
    axes[0].legend(fontsize=7)
    slope = (math.log(errs[-1]) - math.log(errs[0])) / (math.log(hs[-1]) - math.log(hs[0]))
    axes[1].loglog(hs, errs, "o-", label=f"presymplectic Euler (slope {slope:.2f})")
    axes[1].axhline(numbers["rk4_particles_max_abs_error"], color="C1", ls="--", label="RK4 particles, dt = 0.01")
    axes[1].set(xlabel="h", ylabel="max |M_particles - M_ODE|", title="particles against the matrix ODE")
    axes[1].legend(fontsize=8)
    numbers["presymplectic"] = {"h": hs, "max_abs_error": errs, "fitted_order": slope}
    fig.tight_layout()
    save_experiment(fig, "moments", numbers, args.out_dir)


def drift(args, g):
    """alpha = 0: max |H(t) - H(0)| over t in [0, 2] against h, both schemes, both kernels."""
    x0, V, A = reference_setup(1, 16, args.d, g)
    y0 = 0.5 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    hs = [0.08, 0.04, 0.02, 0.01, 0.005]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    numbers = {"N": 16, "d": args.d, "t_final": 2.0, "h": hs, "y0": "0.5 N(0, I)"}
    for kind in ["linear", "softmax"]:
        H0 = energy(x0, y0, V, A, kind, args.softmax_beta)
        for name, step in [("presymplectic", presymplectic_step), ("strang", strang_step)]:
            drifts = []
            for h in hs:
                x, y, worst = x0, y0, 0.0
                for _ in range(round(2.0 / h)):
                    x, y = step(x, y, 1.0, h, V, A, kind, args.softmax_beta, c_log=0.0, c_lin=0.0)
                    worst = max(worst, (energy(x, y, V, A, kind, args.softmax_beta) - H0).abs().item())
                drifts.append(worst)
            slope = (math.log(drifts[-1]) - math.log(drifts[1])) / (math.log(hs[-1]) - math.log(hs[1]))
            ax.loglog(hs, drifts, "o-" if kind == "linear" else "s--", label=f"{kind}, {name} (slope {slope:.2f})")
            numbers[f"{kind}_{name}"] = {"max_abs_drift": drifts, "fitted_order_h<=0.04": slope}
    ax.set(xlabel="h", ylabel="max |H - H(0)|, t <= 2", title=f"energy drift at alpha = 0, N = 16, d = {args.d}")
    ax.legend(fontsize=8)
    save_experiment(fig, "drift", numbers, args.out_dir)


if __name__ == "__main__":
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiments = {"energy": energy_vs_calls, "moments": moments_vs_particles, "drift": drift}
    for name, run_experiment in experiments.items():
        if args.experiment in (name, "all"):
            run_experiment(args, torch.Generator().manual_seed(args.seed))
