"""
Experiments on accelerated attention as inertial dynamics (dynamics/inertial.py). Each writes a
PNG and a JSON of its numbers into --out_dir.
$ python -m dynamics.exp_inertial --experiment all        # all three (run times: dynamics/README.md)
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
parser.add_argument("--n_steps", type=int, default=1000, help="energy experiment: oracle calls per run")
parser.add_argument("--target", type=float, default=2.28e-2, help="E = (1/2N) sum x^T Q x, or H, to reach")
parser.add_argument("--c_log", type=float, default=3.0, help="accelerated damping alpha = c_log / t + c_lin")
parser.add_argument("--c_lin", type=float, default=0.0)
parser.add_argument("--c_const", type=float, default=0.5, help="constant damping plotted and used in the step-size scan")
parser.add_argument("--c_scan", default="0,0.1,0.2,0.25,0.3,0.4,0.5,0.6,0.75,1,1.5", help="constant dampings scanned")
parser.add_argument("--h_scan", default="0.1,0.2,0.4,0.8,1.6,3.2", help="step sizes scanned")
parser.add_argument("--t0", type=float, default=1.0, help="time of the first layer (alpha = c_log / t needs t0 > 0)")
parser.add_argument("--softmax_beta", type=float, default=1.0, help="inverse temperature of the softmax kernel")
parser.add_argument("--threads", type=int, default=1, help="torch threads; these systems are too small to gain from more")


def energy_vs_calls(args, g):
    """Steps (= oracle calls for the one-call blocks) to reach the target, linear and softmax, measured
    two ways: the spec's E = (1/2N) sum x^T Q x alone, and the block's energy H (potential + kinetic),
    which undamped dynamics conserve, so that a run cannot reach it by blowing up y. Classical,
    accelerated (c_log / t + c_lin), the two-call second-order scheme, a scan of constant damping
    (alpha = 0 included), and a scan of the step size h."""
    x0, V, A = reference_setup(args.n_starts, args.N, args.d, g)
    acc = dict(c_log=args.c_log, c_lin=args.c_lin, t0=args.t0)
    acc_name = f"accelerated, alpha = {args.c_log:g}/t + {args.c_lin:g}"
    blocks = {"classical": dict(block="classical"), acc_name: acc,
              "accelerated, second order (2 calls/step)": dict(acc, scheme="strang")}
    consts = [float(c) for c in args.c_scan.split(",")]
    hs = [float(h) for h in args.h_scan.split(",")]
    numbers = {"N": args.N, "d": args.d, "h": args.h, "n_starts": args.n_starts, "target": args.target, "t0": args.t0,
               "softmax_beta": args.softmax_beta, "x0": "N(0, I)", "y0": 0, "n_steps": args.n_steps}
    reached = lambda trace: {name: steps_to_target(trace[name], args.target).tolist() for name in ("E", "H")}
    gaps = lambda steps: [s if s >= 0 else float("nan") for s in steps]  # -1 (not reached) is not plotted
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for k, kind in enumerate(["linear", "softmax"]):
        runs = dict(blocks, **{f"constant damping alpha = {c:g}": dict(c_log=0.0, c_lin=c) for c in consts})
        numbers[kind] = {}
        for name, kw in runs.items():
            calls_per_step = 2 if kw.get("scheme") == "strang" else 1  # counted in test_equal_oracle_calls_per_step
            trace, _, _ = run(x0, args.n_steps // calls_per_step, args.h, V, A, kind=kind, beta=args.softmax_beta, **kw)
            steps = reached(trace)
            numbers[kind][name] = {"oracle_calls_per_step": calls_per_step, "steps_to_target": steps,
                                   "max_abs_y": trace["y"].amax(0).tolist(), "E_final": trace["E"][-1].tolist(),
                                   "H_final": trace["H"][-1].tolist()}
            if name in blocks or name in (f"constant damping alpha = {args.c_const:g}", "constant damping alpha = 0"):
                calls = torch.arange(len(trace["H"])) * calls_per_step
                axes[k].semilogy(calls, trace["H"].clamp(min=1e-30).median(1).values, label=name)
        axes[k].axhline(args.target, color="k", lw=0.8, ls=":")
        axes[k].set(xlabel="oracle calls (kernel evaluations)", ylabel="H (median over starts)", ylim=(1e-4, 10),
                    title=f"{kind} attention, N = {args.N}, d = {args.d}, h = {args.h}")
        axes[k].legend(fontsize=7)
        # constant damping: steps to target against its value, beside the classical block and the schedule
        ax = axes[2]
        for measure, ls in [("H", "-"), ("E", ":")]:
            scan = [numbers[kind][f"constant damping alpha = {c:g}"]["steps_to_target"][measure][0] for c in consts]
            ax.plot(consts, gaps(scan), "o" + ls, color=f"C{k}",
                    label=f"{kind}, constant, on {measure}")
        ax.axhline(numbers[kind][acc_name]["steps_to_target"]["H"][0], color=f"C{k}", ls="--", lw=0.8)
        # step size: the one-call blocks at larger h (fewer layers for the same time)
        scan_h, diverged = {}, {}
        for name, kw in [("classical", blocks["classical"]), (acc_name, acc),
                         (f"constant damping alpha = {args.c_const:g}", dict(c_log=0.0, c_lin=args.c_const))]:
            traces = [run(x0[:1], math.ceil(args.n_steps * args.h / h), h, V, A, kind=kind, beta=args.softmax_beta,
                          **kw)[0] for h in hs]
            scan_h[name] = [reached(trace)["H"][0] for trace in traces]
            diverged[name] = [not trace["H"].isfinite().all().item() for trace in traces]
            axes[3].plot(hs, gaps(scan_h[name]), "o-" if k == 0 else "s--",
                         color=f"C{list(scan_h).index(name)}", label=f"{kind}, {name}")
        numbers[kind]["step_size_scan"] = {"h": hs, "steps_to_H_target": scan_h, "diverged": diverged}
    axes[2].set(xlabel="constant damping alpha", ylabel="steps to target (first start)", yscale="log",
                title="constant damping; dashed: alpha = 3/t on H")
    axes[2].legend(fontsize=7)
    axes[3].set(xlabel="h", ylabel="steps to H target (first start)", xscale="log", yscale="log",
                title="step size (missing: not reached or diverged)")
    axes[3].legend(fontsize=6)
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
    """alpha = 0: max |H(t) - H(0)| over t in [0, 2] against h, both schemes, both kernels. x_0 is
    halved: at N(0, I) the softmax kernel density z_i of a token far from the others is orders of
    magnitude above the rest, and h = 0.005 is still far from the asymptotic regime."""
    x0, V, A = reference_setup(1, 16, args.d, g)
    x0 = 0.5 * x0
    y0 = 0.5 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    hs = [0.08, 0.04, 0.02, 0.01, 0.005]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    numbers = {"N": 16, "d": args.d, "t_final": 2.0, "h": hs, "x0": "0.5 N(0, I)", "y0": "0.5 N(0, I)"}
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
