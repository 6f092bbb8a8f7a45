"""
What a training step costs, per model arm, on identical shapes and data: ms per iteration,
tokens/s, MFU, peak memory and parameter counts; optionally the speed of greedy sampling with
and without the KV cache.

$ python bench.py                                  # the default CPU model, dtype/compile as train.py decides
$ python bench.py --compile=both                   # eager and torch.compile; on a CPU this also tells
                                                   # train.py's compile='auto' whether compiling pays here
$ python bench.py --shape=gpt2 --compile=True      # GPT-2 small (12/12/768, block 1024), for a GPU
$ python bench.py --arms=baseline,nesterov_euler --sample_tokens=500   # + tokens/s sampling 500 tokens
$ python bench.py --arms=baseline,nesterov --bench_iters=0 --sample_tokens=500 [--shape=gpt2 --dataset=random]
                                                   # the KV cache's speed-up alone (README's table)

Speed is measured side by side: one process builds every arm and times them step by step in
turn, alternating the order, so a neighbour's load or a change of clock speed, which on a shared
machine swings a step's time by tens of percent within seconds, hits every arm alike. Peak
memory: on CUDA what the arm allocates at its peak (weights, optimizer state, activations); on a
CPU the peak RSS of a fresh interpreter that runs only that arm (torch itself included), since a
process's peak RSS is a lifetime high-water mark. Prints one table and writes `out`
(JSON) with every number and the ratios of each arm to the first.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

import loader
import runtime
from arms import ARMS
from configurator import UserError, configure_globals, exit_on_user_error
from model_nesterov import build_model

sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do

# -----------------------------------------------------------------------------
shape = 'cpu'  # 'cpu': the repo's default model (4 layers, 128 wide, bytes); 'gpt2': GPT-2 small
arms = 'baseline,polyak,nesterov'  # comma-separated names of arms.ARMS; ratios are to the first
batch_size = 0  # 0: the shape's; any of these five overrides it
block_size = 0
n_layer = 0
n_head = 0
n_embd = 0
dataset = 'python_docs'  # real batches from data_root/<dataset> (its vocab), or 'random' tokens of the shape's vocab
data_root = 'data'
warmup_iters = 3  # per arm and mode, excluded from the timings (compilation happens here)
bench_iters = 20  # timed training iterations per arm, the arms taking turns; 0: time only the sampling
sample_tokens = 0  # > 0: also time greedy sampling of this many tokens, with and without the KV cache
device = 'auto'  # 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # as in train.py
compile = 'auto'  # as in train.py, or 'both' (eager, then compiled)
seed = 1337
out = 'bench.json'
# -----------------------------------------------------------------------------
config, _ = configure_globals(globals())
# -----------------------------------------------------------------------------
SHAPES = dict(cpu=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, vocab_size=256),
              gpt2=dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=12, vocab_size=50304))


def the_shape():
    if shape not in SHAPES:
        raise UserError(f"shape={shape!r}: expected one of {', '.join(SHAPES)}", exit_code=2)
    s = dict(SHAPES[shape], **{k: v for k, v in config.items() if k in SHAPES[shape] and v})
    if s['n_embd'] % s['n_head'] or min(s.values()) < 1:
        raise UserError(f"shape {s}: sizes must be >= 1 and n_embd divisible by n_head", exit_code=2)
    if dataset != 'random':
        data_dir = os.path.join(data_root, dataset)
        loader.make_default_corpus_if_missing(data_dir)
        meta = loader.read_meta(data_dir)
        s['vocab_size'] = loader.model_vocab_size(meta)  # a GPT-2 BPE dataset needs 50304 at any width
        s['data'] = loader.open_split(data_dir, 'train', s['block_size'], s['vocab_size'], meta)
    return s


def batches(s, device, n=4):
    """n fixed batches, the same for every arm: windows of the corpus, or random ids."""
    gen = torch.Generator().manual_seed(seed)
    if 'data' not in s:
        xs = [torch.randint(s['vocab_size'], (s['batch_size'], s['block_size'] + 1), generator=gen) for _ in range(n)]
        return [(x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device)) for x in xs]
    data = s['data']
    return [loader.get_batch(data, loader.batch_offsets(gen, len(data), s['block_size'], s['batch_size']),
                             s['block_size'], device) for _ in range(n)]


def build(arm, s, rt):
    """An arm's model and its training step (train.py's: AdamW, autocast, clipping at 1.0)."""
    torch.manual_seed(seed)
    args = {k: s[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'vocab_size')}
    model = build_model(ARMS[arm]['model_type'], dict(args, bias=False, dropout=0.0,
                                                      **{k: v for k, v in ARMS[arm].items() if k != 'model_type'}))
    model.to(rt.device)
    optimizers = model.configure_optimizers('adamw', 0.1, 1e-3, (0.9, 0.99), rt.device_type)
    fast = rt.maybe_compile(model)
    data = batches(s, rt.device)

    def step(i):
        X, Y = data[i % len(data)]
        with rt.autocast():
            _, loss = fast(X, Y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        rt.sync()
    return model, step


def report_memory(compiled):
    """In a fresh interpreter (bench.py's CPU memory measurement): one arm's peak RSS over a few
    training steps, printed as a JSON line."""
    s = the_shape()
    rt = runtime.setup(device, dtype, compiled, shape=s, verbose=False)
    _, step = build(arms, s, rt)
    for i in range(warmup_iters + 2):  # the first step allocates the gradients and AdamW's state
        step(i)
    try:  # this process image's peak; getrusage's ru_maxrss would include the parent's at the fork
        with open('/proc/self/status') as f:
            peak_kib = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    except (OSError, StopIteration):
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere (Linux reports KiB)
    print(json.dumps(dict(peak_mem_mb=peak_kib / 2**10)))


def cpu_memory_mb(arm, compiled):
    proc = subprocess.run([sys.executable, '-c', f'import bench; bench.report_memory({compiled})', *sys.argv[1:],
                           f'--arms={arm}'], capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    if proc.returncode != 0:
        raise UserError(f"measuring the memory of {arm} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])['peak_mem_mb']


def time_arms(arm_list, compiled, s):
    """Every arm in this process: warm-up (and compilation) timed alone, then the arms take turns."""
    rt = runtime.setup(device, dtype, compiled, shape=s, iters=bench_iters)
    models, warmup_s, cuda_mb, times = {}, {}, {}, {arm: [] for arm in arm_list}
    for arm in arm_list:
        if rt.device_type == 'cuda':  # the arm's own peak: what it allocates beyond the arms built before it
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        models[arm] = build(arm, s, rt)
        t0 = time.perf_counter()
        for i in range(warmup_iters):
            models[arm][1](i)
        warmup_s[arm] = time.perf_counter() - t0
        if rt.device_type == 'cuda':
            cuda_mb[arm] = (torch.cuda.max_memory_allocated() - before) / 2**20
    for i in range(bench_iters):
        for arm in (arm_list if i % 2 == 0 else arm_list[::-1]):
            t0 = time.perf_counter()
            models[arm][1](warmup_iters + i)
            times[arm].append(time.perf_counter() - t0)
    peak = rt.peak_flops()
    rows = []
    for arm in arm_list:
        model = models[arm][0]
        ms = 1000 * statistics.median(times[arm])
        tokens_per_s = s['batch_size'] * s['block_size'] / ms * 1000
        flops = runtime.flops_per_token(model.get_num_params(), s['n_layer'], s['n_head'], s['n_embd'], s['block_size'])
        rows.append(dict(arm=arm, compile=rt.compile, dtype=rt.dtype, ms_per_iter=ms, tokens_per_s=tokens_per_s,
                         mfu=flops * tokens_per_s / peak if peak else None, warmup_s=warmup_s[arm],
                         params_total=model.get_num_params(False), params_non_embedding=model.get_num_params(),
                         iter_times=times[arm]))
        if sample_tokens:
            rows[-1].update(sample_speed(model.eval(), s, rt))
    for row in rows:  # CPU: the peak RSS is a lifetime high-water mark, so each arm runs alone in a fresh process
        row['peak_mem_mb'] = cuda_mb.get(row['arm']) or cpu_memory_mb(row['arm'], rt.compile)
    return rt, rows


def sample_only(arm_list, s):
    """bench_iters=0: greedy sampling speed alone, for shapes where training steps take minutes."""
    rt = runtime.setup(device, dtype, False, shape=s)
    rows = []
    for arm in arm_list:
        model = build(arm, s, rt)[0].eval()
        rows.append(dict(arm=arm, compile=False, dtype=rt.dtype, params_total=model.get_num_params(False),
                         **sample_speed(model, s, rt)))
        print(f"{arm}: " + ', '.join(f'{k} {v:.2f}' for k, v in rows[-1].items() if k.startswith('sample')), flush=True)
    return rt, rows


def sample_speed(model, s, rt):
    """Greedy tokens/s for sample_tokens new tokens after a one-token prompt, cached and uncached."""
    idx = torch.zeros((1, 1), dtype=torch.long, device=rt.device)
    out = {}
    for cache in (True, False):
        t0 = time.perf_counter()
        with rt.autocast():
            model.generate(idx, sample_tokens, temperature=0, use_cache=cache)
        rt.sync()
        out['sample_tokens_per_s_' + ('cached' if cache else 'uncached')] = sample_tokens / (time.perf_counter() - t0)
    return out


def main():
    arm_list = [a.strip() for a in arms.split(',') if a.strip()]
    for arm in arm_list:
        if arm not in ARMS:
            raise UserError(f"unknown arm {arm!r}: expected one of {', '.join(ARMS)}", exit_code=2)
    s = the_shape()
    modes = {'both': [False, True]}.get(str(compile), [compile])
    if bench_iters == 0:
        if not sample_tokens:
            raise UserError("bench_iters=0 times only the sampling: give --sample_tokens too", exit_code=2)
        rt, results = sample_only(arm_list, s)
        modes = [False]
    else:
        results = []
        for mode in modes:
            rt, rows = time_arms(arm_list, mode, s)
            results += rows
            print(f"compile={rt.compile}: " + ', '.join(f"{r['arm']} {r['ms_per_iter']:.1f} ms/iter" for r in rows))
    if len(modes) == 2 and rt.device_type == 'cpu':  # what compile='auto' will read on this machine
        for arm in arm_list:
            eager, compiled = (next(r for r in results if r['arm'] == arm and r['compile'] == c) for c in (False, True))
            if compiled['compile']:
                key = dict(model_type=ARMS[arm]['model_type'], momentum=ARMS[arm].get('momentum', 'gd'), dtype=rt.dtype,
                           **{k: s[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size')})
                runtime.record_step_times(key, eager['ms_per_iter'], compiled['ms_per_iter'],
                                          compiled['warmup_s'] - eager['warmup_s'])
    ratios = {}
    for r in results:
        ref = next(b for b in results if b['arm'] == arm_list[0] and b['compile'] == r['compile'])
        if r is not ref:
            ratios[f"{r['arm']}/{ref['arm']} {'compiled' if r['compile'] else 'eager'}"] = {
                k: r[k] / ref[k] for k in ('tokens_per_s', 'peak_mem_mb', 'sample_tokens_per_s_cached') if k in r}
    machine = dict(device=rt.device, device_name=runtime.device_name(rt.device), torch=torch.__version__,
                   threads=torch.get_num_threads(), date=time.strftime('%Y-%m-%d %H:%M'))
    print(f"\n{machine['device_name']} ({rt.device}, {machine['threads']} threads), torch {machine['torch']}, "
          f"batch {s['batch_size']} x block {s['block_size']}, median of {bench_iters} iterations, arms in turns")
    cols = [c for c in ('arm', 'compile', 'dtype', 'ms_per_iter', 'tokens_per_s', 'mfu', 'peak_mem_mb', 'params_total')
            if c in results[0]]
    cols += [c for c in ('sample_tokens_per_s_cached', 'sample_tokens_per_s_uncached') if c in results[0]]
    print('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for r in results:
        print('| ' + ' | '.join('n/a' if r[c] is None else f'{r[c]:,.3g}' if isinstance(r[c], float) else str(r[c])
                                for c in cols) + ' |')
    for name, ratio in ratios.items():
        print(f"{name}: " + ', '.join(f'{k} {v:.3f}x' for k, v in ratio.items()))
    with open(out, 'w') as f:
        json.dump(dict(shape={k: v for k, v in s.items() if k != 'data'}, config=config, machine=machine,
                       results=results, ratios=ratios), f, indent=1)
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
