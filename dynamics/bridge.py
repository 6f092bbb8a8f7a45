"""
The bridge to trained models: do this repo's transformers cluster their tokens across depth, as
the particle dynamics on the sphere predict (dynamics/sphere.py), and does the accelerated model
cluster faster? Runs each checkpoint (model_type 'gpt' or 'nesterov') once on a text, in float32
and eval mode, and records with forward hooks (the models are not changed), per depth:
    depth k = 0..L-1  the output of block k's ln_1: the normalized point the attention oracle sees,
                      LN(X_k) for the baseline, LN(X_k + mu_a V_k) (the look-ahead) for nesterov
    depth L           the output of ln_f: what the head sees
the histogram and mean of the pairwise cosine similarities of tokens in the same window (also
apart for pairs of equal and of different token ids), the fraction of pairs above --threshold,
the share of those that are equal ids, the clusters (sphere.count_clusters), the mean per-token
|X_k| of the residual stream; for nesterov also |V_k|, the norm after every velocity update and
the learned mu/beta/gamma. The text is cut into windows of block_size tokens (positions 0..T-1).
$ python -m dynamics.bridge --ckpt out/ckpt_best.pt --ckpt out-nesterov/ckpt_best.pt
$ python -m dynamics.bridge --ckpt out/ckpt.pt --text_file notes.txt --name bridge_notes --out_dir /tmp/b
Writes <out_dir>/<name>.png (all checkpoints side by side) and <name>.json (all the numbers).
"""
import argparse
import os
import sys

import torch

from checkpoint import load_checkpoint
from configurator import UserError, exit_on_user_error
from dynamics import save_experiment
from dynamics.sphere import count_clusters, gram, normalize, offdiag
from model_nesterov import build_model
from tokenizer import get_tokenizer

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--ckpt", action="append", required=True, help="a checkpoint of train.py; repeat to compare")
parser.add_argument("--label", action="append", help="legend name per --ckpt (default: model_type and directory)")
text_group = parser.add_mutually_exclusive_group()
text_group.add_argument("--text", help="the text to run (default: the 'objects' topic of pydoc_data)")
text_group.add_argument("--text_file", help="read the text from this file")
parser.add_argument("--max_windows", type=int, default=64, help="use at most this many windows of the text")
parser.add_argument("--bins", type=int, default=50, help="histogram bins on [-1, 1]")
parser.add_argument("--threshold", type=float, default=0.999, help="cosine above which two tokens are one cluster")
parser.add_argument("--out_dir", default="dynamics/figures")
parser.add_argument("--name", default="bridge", help="output file stem")


def default_text():
    # a validation document of the default corpus (the seeded by-document split in
    # prepare/python_docs.py), so the models have not trained on it; it ships with Python
    import pydoc_data.topics
    return pydoc_data.topics.topics["objects"]


def windows(ids, block_size, max_windows):
    """Token ids (list) -> (W, T) non-overlapping windows, T = min(block_size, len(ids))."""
    T = min(block_size, len(ids))
    W = min(len(ids) // T, max_windows)
    return torch.tensor(ids[:W * T]).view(W, T)


@torch.no_grad()
def capture(model, idx):
    """One forward pass of idx (W, T) with hooks. Returns lists over depth of (W, T, C) tensors:
    ln (ln_1 outputs then ln_f's), x (X_0..X_L), v (V_0..V_L, nesterov), v_updates (the velocity
    after each LN_v call, in call order: two per block under lie_trotter, one under euler)."""
    seen = dict(ln=[], x=[], v=[], v_updates=[])
    blocks, hooks = model.transformer.h, []
    for block in blocks:
        hooks.append(block.ln_1.register_forward_hook(lambda m, i, o: seen["ln"].append(o)))
        hooks.append(block.register_forward_pre_hook(lambda m, a: seen["x"].append(a[0])))
        # LN_v is an nn.Identity under velocity_norm='none' and shared between the two substeps
        # under 'shared' (ln_v_m is ln_v_a): its hook then fires twice per block, once per update either way
        ln_vs = {id(m): m for m in (getattr(block, n, None) for n in ("ln_v_a", "ln_v_m", "ln_v")) if m is not None}
        for ln_v in ln_vs.values():
            hooks.append(ln_v.register_forward_hook(lambda m, i, o: seen["v_updates"].append(o)))
    if getattr(model.config, "momentum", "gd") != "gd":  # the baseline and gd carry no velocity
        hooks.append(blocks[0].register_forward_pre_hook(lambda m, a: seen["v"].append(a[1])))
        hooks += [b.register_forward_hook(lambda m, a, o: seen["v"].append(o[1])) for b in blocks]
    # a hook that returns something replaces the module's output: these return None
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(lambda m, i: seen["x"].append(i[0])))
    hooks.append(model.transformer.ln_f.register_forward_hook(lambda m, i, o: seen["ln"].append(o)))
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    return seen


def cosine_stats(z, idx, bins, threshold):
    """Pairwise cosines of the tokens of each window, z (W, T, C) from ids idx (W, T): histogram
    counts on [-1, 1] (W T (T-1) / 2 pairs in all), mean, fraction above threshold, mean clusters
    per window; and, apart, the pairs of equal token ids (e.g. two spaces), which a model can map
    close together without any interaction, against the pairs of different ones."""
    u = normalize(z.double())
    cos = offdiag(gram(u)).clamp(-1, 1)  # (W, T(T-1)/2); rounding can step past +-1
    same = offdiag(idx[:, :, None] == idx[:, None, :])
    above = cos > threshold
    counts = torch.histc(cos.flatten(), bins=bins, min=-1, max=1)  # the right edge is included
    mean = lambda t: t.mean().item() if t.numel() else None
    return dict(hist=counts.long().tolist(), mean_cos=cos.mean().item(), frac_above=mean(above.double()),
                clusters=count_clusters(u, threshold).double().mean().item(),
                mean_cos_same_token=mean(cos[same]), mean_cos_other_token=mean(cos[~same]),
                above_same_token=mean(same[above].double()))


def mean_norm(t):
    return t.double().norm(dim=-1).mean().item()


def analyse(model, idx, bins=50, threshold=0.999):
    """All the numbers for one model on windows idx (W, T); per-depth lists have L + 1 entries."""
    seen = capture(model, idx)
    L = model.config.n_layer
    rec = dict(depths=[f"block {k} ln_1" for k in range(L)] + ["ln_f"], n_windows=idx.shape[0], T=idx.shape[1],
               threshold=threshold, bin_edges=torch.linspace(-1, 1, bins + 1).tolist(),
               x_norm=[mean_norm(x) for x in seen["x"]])
    for z in seen["ln"]:
        for k, val in cosine_stats(z, idx, bins, threshold).items():
            rec.setdefault(k, []).append(val)
    if seen["v"]:
        rec["v_norm"] = [mean_norm(v) for v in seen["v"]]
        rec["v_update_norm"] = [mean_norm(v) for v in seen["v_updates"]]
    if seen["v"]:  # the learned step sizes as the model's diagnostics report them (mu, beta, gamma/beta, LN_v gain)
        rec["scalars"] = {k: v for k, v in model.diagnostics(idx).items() if not k.startswith("rms")}
    return rec


def plot(records):
    """Top: histogram per depth for each checkpoint. Bottom: mean cosine, norms, scalars vs depth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(records)
    fig = plt.figure(figsize=(4.2 * max(n, 3), 7.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    for c, (r, ax) in enumerate(zip(records, top.subplots(1, n, squeeze=False)[0])):
        edges = torch.tensor(r["bin_edges"])
        centers, width = (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]
        L = len(r["depths"]) - 1
        for k, counts in enumerate(r["hist"]):
            counts = torch.tensor(counts, dtype=torch.float64)
            density = (counts / counts.sum() / width).clamp(min=1e-4)  # log scale: empty bins at the floor
            ax.plot(centers, density, color=plt.cm.viridis(k / max(L, 1)), label=r["depths"][k])
        ax.set(yscale="log", xlabel="cosine similarity of token pairs", ylabel="density" if c == 0 else None,
               title=f"{r['label']}", ylim=(1e-4, None))
        ax.legend(fontsize=7)
    axes = bottom.subplots(1, 3)
    has_scalars = False  # name the scalars in the legend once, at the first checkpoint that has them
    for c, r in enumerate(records):
        depth = range(len(r["depths"]))
        axes[0].plot(depth, r["mean_cos"], "o-", color=f"C{c}", label=f"{r['label']}: mean")
        axes[0].plot(depth, r["frac_above"], "s:", color=f"C{c}", label=f"fraction > {r['threshold']}")
        axes[1].plot(depth, r["x_norm"], "o-", color=f"C{c}", label=f"{r['label']}: |X|")
        if "v_norm" in r:
            axes[1].plot(depth, r["v_norm"], "^--", color=f"C{c}", label="|V|")
        for j, (name, values) in enumerate(r.get("scalars", {}).items()):
            axes[2].plot(range(len(values)), values, marker="os^vDx"[c % 6], color=f"C{j}",
                         label=None if has_scalars else name)
        has_scalars = has_scalars or "scalars" in r
    ticks = [str(k) for k in range(len(records[0]["depths"]) - 1)] + ["f"]
    axes[0].set(xlabel="depth (block k's ln_1, f = ln_f)", ylabel="pairwise cosine", xticks=range(len(ticks)),
                xticklabels=ticks, title="mean cosine (-), fraction of pairs above threshold (:)")
    axes[1].set(xlabel="depth (input of block k, f = input of ln_f)", ylabel="mean per-token norm",
                yscale="log", xticks=range(len(ticks)), xticklabels=ticks, title="residual stream |X|, velocity |V|")
    axes[2].set(xlabel="layer", ylabel="value", title="learned scalars (marker = checkpoint)",
                xticks=range(len(ticks) - 1))
    if not has_scalars:
        axes[2].text(0.5, 0.5, "no learned scalars\n(baseline)", ha="center", va="center", transform=axes[2].transAxes)
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def main(args):
    if args.label and len(args.label) != len(args.ckpt):
        raise UserError(f"{len(args.label)} --label for {len(args.ckpt)} --ckpt: give one per checkpoint or none")
    if args.text_file:
        try:
            with open(args.text_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UserError(f"cannot read --text_file {args.text_file}: {e.strerror}")
    else:
        text = default_text() if args.text is None else args.text
    records = []
    for c, path in enumerate(args.ckpt):
        ckpt = load_checkpoint(path)
        model = build_model(ckpt["model_type"], ckpt["model_args"])
        model.load_state_dict(ckpt["model"])
        model.eval()  # float32
        ids = get_tokenizer(ckpt["meta"]["tokenizer"]).encode(text)
        if len(ids) < 2:
            raise UserError(f"the text has {len(ids)} token(s); pairwise similarities need at least 2")
        idx = windows(ids, model.config.block_size, args.max_windows)
        rec = analyse(model, idx, args.bins, args.threshold)
        label = args.label[c] if args.label else f"{ckpt['model_type']} ({os.path.basename(os.path.dirname(os.path.abspath(path)))})"
        records.append(dict(label=label, ckpt=path, model_type=ckpt["model_type"], model_args=ckpt["model_args"],
                            text_tokens=len(ids), iter_num=ckpt.get("iter_num"), best_val_loss=ckpt.get("best_val_loss"), **rec))
        print(f"{label}: {rec['n_windows']} windows of {rec['T']} tokens; mean cosine per depth "
              + " ".join(f"{m:.3f}" for m in rec["mean_cos"]))
    numbers = dict(text_start=text[:200], checkpoints=records)
    save_experiment(plot(records), args.name, numbers, args.out_dir)


if __name__ == "__main__":
    sys.excepthook = exit_on_user_error
    main(parser.parse_args())
