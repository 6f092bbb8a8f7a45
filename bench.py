"""
What a training step costs, per model arm, on identical shapes and data: ms per iteration,
tokens/s, MFU, peak memory and parameter counts; optionally the speed of greedy sampling with
and without the KV cache.

$ python bench.py                                  # the default CPU model, dtype/compile as train.py decides
$ python bench.py --compile=both                   # eager and torch.compile; on a CPU this also tells
                                                   # train.py's compile='auto' whether compiling pays here
$ python bench.py --shape=gpt2 --compile=True      # GPT-2 small (12/12/768, block 1024), for a GPU
$ python bench.py --arms=baseline,nesterov_euler --sample_tokens=500   # + tokens/s sampling 500 tokens
$ python bench.py --auto_check=True --arms=baseline   # fp32/bf16 x eager/compiled against what 'auto' picks
$ python bench.py --arms=baseline,nesterov --bench_iters=0 --sample_tokens=500 [--shape=gpt2 --dataset=random]
                                                   # the KV cache's speed-up alone (docs/measurements.md)

Speed is measured side by side: one process builds every arm and times them step by step in
turn, alternating the order, so a neighbour's load or a change of clock speed, which on a shared
machine swings a step's time by tens of percent within seconds, hits every arm alike. Peak
memory: on CUDA what the arm allocates at its peak (weights, optimizer state, activations); on a
CPU the peak RSS of a fresh interpreter that runs only that arm (torch itself included), since a
process's peak RSS is a lifetime high-water mark. Prints one table and writes `out`
(JSON) with every number and the ratios of each arm to the first.

auto_check: at the shapes 'cpu' and 'wide', each arm in the four explicit choices taking turns
(float32 and bf16 autocast, eager and compiled), their compile records written as --compile=both
writes them, then what train.py's dtype='auto', compile='auto' pick for that step over
auto_iters iterations, and its ms/iter over the fastest choice's.
"""
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

import loader
import runtime
from arms import ARMS
from configurator import UserError, configure_globals, exit_on_user_error
from model_nesterov import build_model

# -----------------------------------------------------------------------------
shape = 'cpu'  # 'cpu': the repo's default model (4 layers, 128 wide, bytes); 'wide': 6 layers, 384 wide; 'gpt2': GPT-2 small
arms = 'baseline,polyak,nesterov'  # comma-separated names of arms.ARMS; ratios are to the first
batch_size = 0  # 0: the shape's; any of these five overrides it
block_size = 0
n_layer = 0
n_head = 0
n_embd = 0
dataset = 'python_docs'  # real batches from data_root/<dataset> (its vocab), or 'random' tokens of the shape's vocab
data_root = 'data'
optimizer = 'adamw'  # as in train.py: 'adamw', or 'muon'
warmup_iters = 3  # per arm and mode, excluded from the timings (compilation happens here)
bench_iters = 20  # timed training iterations per arm, the arms taking turns; 0: time only the sampling
sample_tokens = 0  # > 0: also time greedy sampling of this many tokens, with and without the KV cache
device = 'auto'  # 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # as in train.py
compile = 'auto'  # as in train.py, or 'both' (eager, then compiled)
auto_check = False  # True: the four explicit dtype x compile choices against what 'auto' picks (see above)
auto_iters = 1500  # the run length auto_check's compile 'auto' decides for (train.py's default max_iters)
seed = 1337
out = 'bench.json'
# -----------------------------------------------------------------------------
SHAPES = dict(cpu=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, vocab_size=256),
              wide=dict(n_layer=6, n_head=6, n_embd=384, block_size=128, batch_size=16, vocab_size=256),
              gpt2=dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=12, vocab_size=50304))


def check(cfg):
    """The benchmark's own values, before anything is measured or written (the model's sizes are
    checked by its config class when it is built); returns the list of arms."""
    if cfg['shape'] not in SHAPES:
        raise UserError(f"shape={cfg['shape']!r}: expected one of {', '.join(SHAPES)}", exit_code=2)
    arm_list = [a.strip() for a in cfg['arms'].split(',') if a.strip()]
    if not arm_list:
        raise UserError(f"arms={cfg['arms']!r} names no arm: give one or more of {', '.join(ARMS)}", exit_code=2)
    for arm in arm_list:
        if arm not in ARMS:
            raise UserError(f"unknown arm {arm!r}: expected one of {', '.join(ARMS)}", exit_code=2)
        if arm_list.count(arm) > 1:
            raise UserError(f"arms={cfg['arms']!r} lists {arm!r} twice: name each arm once", exit_code=2)
    for k in ('batch_size', 'warmup_iters', 'bench_iters', 'sample_tokens', 'auto_iters'):
        if cfg[k] < 0:
            raise UserError(f"{k}={cfg[k]}: must be >= 0", exit_code=2)
    if cfg['bench_iters'] == 0 and (not cfg['sample_tokens'] or cfg['auto_check']):
        raise UserError("bench_iters=0 times only the sampling: give --sample_tokens too (and no auto_check)",
                        exit_code=2)
    if cfg['optimizer'] not in ('adamw', 'muon'):
        raise UserError(f"optimizer={cfg['optimizer']!r}: expected 'adamw' or 'muon'", exit_code=2)
    try:  # here, not after minutes of benchmarking
        if os.path.isdir(cfg['out']):
            raise IsADirectoryError(21, 'it is a directory')
        probe = f"{cfg['out']}.tmp{os.getpid()}"
        open(probe, 'w').close()
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write out={cfg['out']!r}: {e.strerror}; pick a writable --out") from None
    return arm_list


def load_shape(cfg, name):
    """The shape's sizes with the config's overrides, and the dataset's vocab and training split."""
    s = dict(SHAPES[name], **{k: v for k, v in cfg.items() if k in SHAPES[name] and v})
    if cfg['dataset'] != 'random':
        data_dir = os.path.join(cfg['data_root'], cfg['dataset'])
        loader.make_default_corpus_if_missing(data_dir)
        meta = loader.read_meta(data_dir)
        s['vocab_size'] = loader.model_vocab_size(meta)  # a GPT-2 BPE dataset needs 50304 at any width
        s['data'] = loader.open_split(data_dir, 'train', s['block_size'], s['vocab_size'], meta)
    return s


def arm_step(arm, s, optimizer):
    """The training step an arm runs at shape s: train.py's defaults for everything else."""
    model_args = dict({k: s[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'vocab_size')}, bias=False,
                      dropout=0.0, **{k: v for k, v in ARMS[arm].items() if k != 'model_type'})
    return runtime.Step(ARMS[arm]['model_type'], model_args, s['batch_size'], optimizer)


def batches(s, seed, device, n=4):
    """n fixed batches, the same for every arm: windows of the corpus, or random ids."""
    gen = torch.Generator().manual_seed(seed)
    if 'data' not in s:
        xs = [torch.randint(s['vocab_size'], (s['batch_size'], s['block_size'] + 1), generator=gen) for _ in range(n)]
        return [(x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device)) for x in xs]
    data = s['data']
    return [loader.get_batch(data, loader.batch_offsets(gen, len(data), s['block_size'], s['batch_size']),
                             s['block_size'], device) for _ in range(n)]


def build(step, s, rt, seed):
    """A step's model and its training step i (runtime.train_step, on the i-th fixed batch)."""
    torch.manual_seed(seed)
    model = build_model(step.model_type, step.model_args)
    model.to(rt.device)
    optimizers = model.configure_optimizers(step.optimizer, 0.1, 1e-3, (0.9, 0.99), rt.device_type,
                                            muon_ns_dtype='bfloat16' if rt.dtype == 'bfloat16' else 'float32')
    fast = rt.maybe_compile(model)
    data = batches(s, seed, rt.device)

    def train_step(i):
        runtime.train_step(model, fast, optimizers, *data[i % len(data)], rt.autocast())
        rt.sync()
    return model, train_step


def peak_memory_mb(cfg, arm, dtype, compiled):
    """Run in a fresh interpreter by cpu_memory_mb: one arm's peak RSS over a few training steps."""
    s = load_shape(cfg, cfg['shape'])
    rt = runtime.decide(runtime.setup(cfg['device'], dtype, compiled), verbose=False)  # explicit: nothing to decide
    _, train_step = build(arm_step(arm, s, cfg['optimizer']), s, rt, cfg['seed'])
    for i in range(cfg['warmup_iters'] + 2):  # the first step allocates the gradients and the optimizer's state
        train_step(i)
    try:  # this process image's peak
        with open('/proc/self/status') as f:
            peak_kib = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    except (OSError, StopIteration):
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere (Linux reports KiB)
    return peak_kib / 2**10


def cpu_memory_mb(cfg, arm, dtype, compiled):
    """peak_memory_mb in a process of its own, started by spawn: a fresh interpreter that imports
    this file (which does no work at import) and runs only that arm."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        try:
            return pool.submit(peak_memory_mb, cfg, arm, dtype, compiled).result()
        except BrokenProcessPool:
            raise UserError(f"measuring the memory of {arm} failed: its process died (out of memory?)") from None


def time_runs(runs, s, cfg, memory=True):
    """Each run, a (arm, step, rt), in this process: warm-up (and compilation) timed alone, then
    the runs take turns; one row per run."""
    built, warmup_s, cuda_mb, times = [], [], [], [[] for _ in runs]
    for arm, step, rt in runs:
        if rt.device_type == 'cuda':  # the arm's own peak: what it allocates beyond the arms built before it
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        built.append(build(step, s, rt, cfg['seed']))
        t0 = time.perf_counter()
        for i in range(cfg['warmup_iters']):
            built[-1][1](i)
        warmup_s.append(time.perf_counter() - t0)
        cuda_mb.append((torch.cuda.max_memory_allocated() - before) / 2**20 if rt.device_type == 'cuda' else None)
    for i in range(cfg['bench_iters']):
        for j in (range(len(runs)) if i % 2 == 0 else reversed(range(len(runs)))):
            t0 = time.perf_counter()
            built[j][1](cfg['warmup_iters'] + i)
            times[j].append(time.perf_counter() - t0)
    rows = []
    for (arm, step, rt), (model, _), w, mb, ts in zip(runs, built, warmup_s, cuda_mb, times):
        ms = 1000 * statistics.median(ts)
        tokens_per_s = s['batch_size'] * s['block_size'] / ms * 1000
        flops = runtime.flops_per_token(model.get_num_params(), s['n_layer'], s['n_head'], s['n_embd'], s['block_size'])
        peak = rt.peak_flops()
        rows.append(dict(arm=arm, compile=rt.compile, dtype=rt.dtype, ms_per_iter=ms, tokens_per_s=tokens_per_s,
                         mfu=flops * tokens_per_s / peak if peak else None, warmup_s=w,
                         params_total=model.get_num_params(False), params_non_embedding=model.get_num_params(),
                         iter_times=ts))
        if cfg['sample_tokens']:
            rows[-1].update(sample_speed(model.eval(), s, rt, cfg['sample_tokens']))
        if memory:  # CPU: the peak RSS is a lifetime high-water mark, so each arm runs alone in a fresh process
            rows[-1]['peak_mem_mb'] = mb or cpu_memory_mb(cfg, arm, rt.dtype, rt.compile)
    return rows


def sample_only(cfg, s, steps):
    """bench_iters=0: greedy sampling speed alone, for shapes where training steps take minutes."""
    rows = []
    for arm, step in steps.items():
        rt = runtime.decide(runtime.setup(cfg['device'], cfg['dtype'], False), step)
        model = build(step, s, rt, cfg['seed'])[0].eval()
        rows.append(dict(arm=arm, compile=False, dtype=rt.dtype, params_total=model.get_num_params(False),
                         **sample_speed(model, s, rt, cfg['sample_tokens'])))
        print(f"{arm}: " + ', '.join(f'{k} {v:.2f}' for k, v in rows[-1].items() if k.startswith('sample')), flush=True)
    return rt, rows


def sample_speed(model, s, rt, sample_tokens):
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


def record_compile(rows, steps):
    """On a CPU, each arm's eager and compiled rows of one dtype: what compile='auto' reads."""
    for arm, step in steps.items():
        for eager in (r for r in rows if r['arm'] == arm and r['compile'] is False):
            for compiled in (r for r in rows if r['arm'] == arm and r['compile'] is True and r['dtype'] == eager['dtype']):
                runtime.record_step_times(step, eager['dtype'], eager['ms_per_iter'], compiled['ms_per_iter'],
                                          compiled['warmup_s'] - eager['warmup_s'])


def run_auto_check(cfg, arm_list):
    """Per shape and arm: ms/iter of float32 and bf16 autocast, eager and compiled, and what
    dtype/compile 'auto' pick once these are recorded, against the fastest of the four."""
    variants = [(d, c) for d in ('float32', 'bfloat16') for c in (False, True)]
    results = []
    for name in ('cpu', 'wide'):
        s = load_shape(cfg, name)
        for arm in arm_list:
            step = arm_step(arm, s, cfg['optimizer'])
            runs = [(arm, step, runtime.decide(runtime.setup(cfg['device'], d, c), step)) for d, c in variants]
            rows = time_runs(runs, s, cfg, memory=False)
            if runs[0][2].device_type == 'cpu':
                record_compile(rows, {arm: step})
            auto = runtime.decide(runtime.setup(cfg['device'], 'auto', 'auto'), step, cfg['auto_iters'])
            # by the choice asked for: without a compiler the 'compiled' ones ran eager (a note says so)
            ms = {f"{d} {'compiled' if c else 'eager'}": r['ms_per_iter'] for (d, c), r in zip(variants, rows)}
            picked = f"{auto.dtype} {'compiled' if auto.compile else 'eager'}"
            results.append(dict(shape=name, arm=arm, **{k: v for k, v in s.items() if k != 'data'}, ms_per_iter=ms,
                                auto=picked, auto_over_fastest=ms[picked] / min(ms.values()), fastest=min(ms, key=ms.get),
                                auto_from=auto.auto, iter_times=[r['iter_times'] for r in rows]))
            print(f"{name} {arm}: " + ', '.join(f'{k} {v:.1f}' for k, v in ms.items()) + f" ms/iter; auto: {picked}",
                  flush=True)
    cols = [f'{d} {"compiled" if c else "eager"}' for d, c in variants]
    print(f"\n{runtime.device_name(runs[0][2].device)}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median ms/iter of {cfg['bench_iters']} iterations, the four choices in turns; auto for {cfg['auto_iters']} "
          f"iterations")
    print('| shape | arm | ' + ' | '.join(cols) + ' | auto picks | auto / fastest |\n|' + '---|' * (len(cols) + 4))
    for r in results:
        print(f"| {r['shape']} {r['n_layer']}L/{r['n_embd']} | {r['arm']} | "
              + ' | '.join(f"{r['ms_per_iter'][c]:.1f}" for c in cols) + f" | {r['auto']} | {r['auto_over_fastest']:.3f} |")
    return results


def write_json(path, report):
    """out, replaced whole (a temporary, then a rename): an interrupted write leaves the old one."""
    with open(f'{path}.tmp', 'w') as f:
        json.dump(report, f, indent=1)
    os.replace(f'{path}.tmp', path)
    print(f"wrote {path}")


def main():
    config, _ = configure_globals(globals())
    arm_list = check(config)
    machine = dict(torch=torch.__version__, threads=torch.get_num_threads(), date=time.strftime('%Y-%m-%d %H:%M'))
    if auto_check:
        results = run_auto_check(config, arm_list)
        write_json(out, dict(config=config, machine=dict(machine, device_name=runtime.device_name(
            runtime.resolve_device(device))), auto_check=results))
        return
    s = load_shape(config, shape)
    steps = {arm: arm_step(arm, s, optimizer) for arm in arm_list}
    modes = {'both': [False, True]}.get(str(compile), [compile])
    if bench_iters == 0:
        rt, results = sample_only(config, s, steps)
        modes = [False]
    else:
        results = []
        for mode in modes:
            where = runtime.setup(device, dtype, mode)
            rows = time_runs([(arm, step, runtime.decide(where, step, bench_iters)) for arm, step in steps.items()],
                             s, config)
            for row in rows:
                row['mode'] = mode
            results += rows
            rt = where
            print(f"compile={mode}: " + ', '.join(f"{r['arm']} {r['ms_per_iter']:.1f} ms/iter" for r in rows))
    if len(modes) == 2 and rt.device_type == 'cpu':  # what compile='auto' will read on this machine
        record_compile(results, steps)
    ratios = {}
    for r in results:
        ref = next(b for b in results if b['arm'] == arm_list[0] and b.get('mode') == r.get('mode'))
        if r is not ref:
            name = {False: 'eager', True: 'compiled'}.get(r.get('mode', False), str(r.get('mode')))
            ratios[f"{r['arm']}/{ref['arm']} {name}"] = {
                k: r[k] / ref[k] for k in ('tokens_per_s', 'peak_mem_mb', 'sample_tokens_per_s_cached') if k in r}
    machine = dict(machine, device=rt.device, device_name=runtime.device_name(rt.device))
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
    write_json(out, dict(shape={k: v for k, v in s.items() if k != 'data'}, config=config, machine=machine,
                         results=results, ratios=ratios))


if __name__ == '__main__':
    sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do
    main()
