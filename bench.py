"""
What a training step costs, per model, on identical shapes and data: ms per iteration,
tokens/s, MFU, peak memory, parameter counts and forward-only throughput, eager and compiled.

$ python bench.py                                   # the repo's default CPU model, eager, about a minute
$ python bench.py --compile=both                    # eager and torch.compile (compiling adds minutes on a CPU)
$ python bench.py --shape=gpt2                      # GPT-2 small (12/12/768, block 1024), for a GPU
$ python bench.py --arms=gpt,nesterov,nesterov_euler --out=bench_euler.json
$ python bench.py --dataset=tinystories            # another prepared dataset (GPT-2 BPE: vocab 50304)

Speed is measured side by side: one process builds every arm and times them step by step in
turn (alternating the order), so a neighbour's load or a change of clock speed, which on a
shared machine swings a step's time by tens of percent within seconds, hits every arm alike.
`rounds` repeats that in fresh processes and pools the iterations. Peak memory is measured in
a fresh process per arm, since a CPU peak RSS is a lifetime high-water mark. Warm-up steps (and
compilation) are excluded from every timing. Prints one table and writes `out` as JSON,
including the ratios of every arm to the baseline (gpt).
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import loader
import runtime
from checkpoint import build_model
from configurator import configure_globals

# -----------------------------------------------------------------------------
shape = 'cpu'  # 'cpu': the repo's default model (4 layers, 128 wide, bytes); 'gpt2': GPT-2 small
arms = 'gpt,polyak,nesterov'  # comma-separated: gpt (model.py) or {gd,polyak,nesterov}[_euler] (model_nesterov.py)
batch_size = None  # None: the shape's; any of these five overrides it
block_size = None
n_layer = None
n_head = None
n_embd = None
vocab_size = None  # None: the shape's, or the dataset's (padded to a multiple of 64) where that is larger
dataset = 'python_docs'  # real batches from data_root/<dataset>, or 'random' tokens; identical for every arm
data_root = 'data'
warmup_iters = 5  # per arm, excluded from the timings (compilation happens here)
bench_iters = 30  # timed training iterations per arm and round, the arms taking turns
fwd_iters = 10  # timed forward-only (no_grad, eval mode) iterations per arm and round, taking turns
rounds = 2  # timing processes per compile mode; their iterations are pooled
compile = 'auto'  # 'both', 'True' (compiled only), 'False' (eager only); 'auto': both on CUDA, eager on the CPU
threads = 0  # torch threads per process; 0 keeps torch's default. 1 is far steadier on a shared, loaded machine
device = 'auto'
dtype = 'auto'  # as in train.py: bfloat16 where the hardware has it, else float32
seed = 1337
out = 'bench.json'
child = ''  # internal: 'time:COMPILE' times every arm in this process, 'ARM:COMPILE' measures one arm's memory; prints one JSON line
# -----------------------------------------------------------------------------
config = configure_globals(globals())
# -----------------------------------------------------------------------------
SHAPES = dict(cpu=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, vocab_size=256),
              gpt2=dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=12, vocab_size=50304))
NUMBERS = ['ms_per_iter', 'tokens_per_s', 'mfu', 'peak_mem_mb', 'model_mem_mb', 'params_total',
           'params_non_embedding', 'fwd_ms_per_iter', 'fwd_tokens_per_s']


def arm_model(arm):
    """(model_type, extra model args) for an arm name."""
    if arm == 'gpt':
        return 'gpt', {}
    momentum, _, splitting = arm.partition('_')
    if momentum not in ('gd', 'polyak', 'nesterov') or splitting not in ('', 'euler'):
        sys.exit(f"error: unknown arm {arm!r}: use gpt, gd, polyak, nesterov, gd_euler, polyak_euler or nesterov_euler")
    return 'nesterov', dict(momentum=momentum, splitting=splitting or 'lie_trotter')


def the_shape():
    if shape not in SHAPES:
        sys.exit(f"error: shape={shape!r}: use 'cpu' or 'gpt2'")
    s = dict(SHAPES[shape])
    s.update({k: config[k] for k in ('batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd') if config[k] is not None})
    if vocab_size is not None:
        s['vocab_size'] = vocab_size
    elif dataset != 'random':  # a GPT-2 BPE dataset needs the 50304 vocab at any shape
        try:
            s['vocab_size'] = max(s['vocab_size'], loader.model_vocab_size(loader.read_meta(data_dir())))
        except loader.DataError as e:
            sys.exit(f"error: {e}")
    return s


def data_dir():
    d = os.path.join(data_root, dataset)
    loader.make_default_corpus_if_missing(d)
    return d


def make_batches(s, device, n=4):
    """n fixed batches (the same for every arm): windows of the prepared corpus, or random ids."""
    gen = torch.Generator().manual_seed(seed)
    if dataset == 'random':
        xs = [torch.randint(s['vocab_size'], (s['batch_size'], s['block_size'] + 1), generator=gen) for _ in range(n)]
        return [(x[:, :-1].to(device), x[:, 1:].to(device)) for x in xs]
    try:
        data = loader.open_split(data_dir(), 'train', s['block_size'], s['vocab_size'])
    except loader.DataError as e:
        sys.exit(f"error: {e}")
    return [loader.get_batch(data, loader.batch_offsets(gen, len(data), s['block_size'], s['batch_size']),
                             s['block_size'], device) for _ in range(n)]


def peak_memory_mb(device_type):
    if device_type == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


def timed(fn, n, sync):
    """Seconds per call of fn, one entry per call."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def child_setup(compiled):
    """What every measuring process starts with: the shape, the runtime, and the fixed batches."""
    s = the_shape()
    try:
        rt = runtime.setup(device, dtype, compiled, verbose=False)
    except runtime.RuntimeSetupError as e:
        sys.exit(f"error: {e}")
    if threads > 0:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if rt.device_type == 'cuda' else (lambda: None)
    return s, rt, sync, make_batches(s, rt.device)


def build(arm, s, rt, batches):
    """An arm's model and its train and forward steps; every arm starts from the same seed."""
    model_type, extra = arm_model(arm)
    torch.manual_seed(seed)
    raw_model = build_model(model_type, dict(block_size=s['block_size'], vocab_size=s['vocab_size'], n_layer=s['n_layer'],
                                             n_head=s['n_head'], n_embd=s['n_embd'], dropout=0.0, bias=False, **extra))
    raw_model.to(rt.device)
    # train.py's default optimizer and step: AdamW, autocast, clipping at 1.0
    optimizers = raw_model.configure_optimizers('adamw', 0.1, 1e-3, (0.9, 0.99), rt.device_type)
    model = rt.maybe_compile(raw_model)
    step_count = [0]

    def train_step():
        X, Y = batches[step_count[0] % len(batches)]
        step_count[0] += 1
        with rt.autocast():
            _, loss = model(X, Y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), 1.0)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    def forward_step():
        X, Y = batches[step_count[0] % len(batches)]
        step_count[0] += 1
        with torch.no_grad(), rt.autocast():
            model(X, Y)

    return raw_model, train_step, forward_step


def take_turns(steps, n, sync):
    """Times n calls of every step, the steps taking turns in alternating order: {name: [seconds]}."""
    names = list(steps)
    times = {name: [] for name in names}
    for i in range(n):
        for name in (names if i % 2 == 0 else names[::-1]):
            times[name] += timed(steps[name], 1, sync)
    return times


def time_arms(arm_list, compiled):
    """Every arm in this process, side by side: warm-up, then the arms take turns step by step."""
    s, rt, sync, batches = child_setup(compiled)
    models = {arm: build(arm, s, rt, batches) for arm in arm_list}
    for _, train_step, _ in models.values():
        timed(train_step, warmup_iters, sync)
    train_times = take_turns({arm: m[1] for arm, m in models.items()}, bench_iters, sync)
    for raw_model, _, forward_step in models.values():
        raw_model.eval()
        timed(forward_step, max(2, warmup_iters // 2), sync)  # eval mode compiles a graph of its own
    fwd_times = take_turns({arm: m[2] for arm, m in models.items()}, fwd_iters, sync)
    return dict(compile=rt.compile, device=rt.device, dtype=rt.dtype, train_times=train_times, fwd_times=fwd_times,
                mfu_per_s={arm: m[0].estimate_mfu(s['batch_size'], 1.0, rt.device, rt.dtype) for arm, m in models.items()})


def measure_memory(arm, compiled):
    """One arm alone in this (fresh) process: peak memory over training and forward steps."""
    s, rt, sync, batches = child_setup(compiled)
    mem_before = peak_memory_mb(rt.device_type)  # torch, the data and the interpreter: not the model's
    raw_model, train_step, forward_step = build(arm, s, rt, batches)
    timed(train_step, max(2, warmup_iters), sync)  # the first step allocates the grads and AdamW's state
    raw_model.eval()
    timed(forward_step, 2, sync)
    peak = peak_memory_mb(rt.device_type)
    return dict(arm=arm, compile=rt.compile, peak_mem_mb=peak,
                model_mem_mb=peak - mem_before if rt.device_type != 'cuda' else peak,
                params_total=raw_model.get_num_params(False), params_non_embedding=raw_model.get_num_params(True))


def summarize(arm, timings, memory, s):
    """An arm's timing rounds pooled (median iteration time) and its memory run."""
    tokens = s['batch_size'] * s['block_size']
    ms = 1000 * statistics.median([t for r in timings for t in r['train_times'][arm]])
    fwd_ms = 1000 * statistics.median([t for r in timings for t in r['fwd_times'][arm]])
    mfu = timings[0]['mfu_per_s'][arm]  # MFU at dt = 1 s; None where the device's peak is unknown
    return dict(arm=arm, compile=timings[0]['compile'], ms_per_iter=ms, tokens_per_s=tokens / ms * 1000,
                mfu=None if mfu is None else mfu / (ms / 1000), peak_mem_mb=memory['peak_mem_mb'],
                model_mem_mb=memory['model_mem_mb'], params_total=memory['params_total'],
                params_non_embedding=memory['params_non_embedding'], fwd_ms_per_iter=fwd_ms,
                fwd_tokens_per_s=tokens / fwd_ms * 1000, rounds=len(timings))


def device_name(device):
    """What the numbers were measured on: the GPU's name, or the CPU's model name (Linux)."""
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or 'unknown'


def run_child(spec):
    """Runs this script with --child=spec in a fresh process; returns the JSON line it prints."""
    argv = [a for a in sys.argv[1:] if not a.startswith('--child=')] + [f'--child={spec}']
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__))))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        sys.exit(f"error: measuring {spec} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(lines[-1])


def main():
    s = the_shape()
    arm_list = [a.strip() for a in arms.split(',') if a.strip()]
    for a in arm_list:
        arm_model(a)  # unknown names stop here, before any process starts
    make_batches(s, 'cpu', n=1)  # and so does a missing or mismatched dataset
    try:
        cuda = runtime.resolve_device(device).startswith('cuda')
    except runtime.RuntimeSetupError as e:
        sys.exit(f"error: {e}")
    modes = dict(both=[False, True], true=[True], false=[False], auto=[False, True] if cuda else [False]).get(compile.lower())
    if modes is None:
        sys.exit(f"error: compile={compile!r}: use 'auto', 'both', 'True' or 'False'")
    print(f"bench: shape {shape} {s}, arms {arm_list}, compile {modes}, {rounds} round(s) of {warmup_iters} warm-up + "
          f"{bench_iters} timed iterations per arm, taken in turns; data {dataset}")
    timings, memory, rows = {}, {}, []
    for compiled in modes:
        timings[compiled] = []
        for r in range(rounds):
            timings[compiled].append(run_child(f'time:{compiled}'))
            print(f"  round {r + 1}, compile={compiled!s:5s} median ms/iter: " + ', '.join(
                f"{arm} {1000 * statistics.median(timings[compiled][-1]['train_times'][arm]):.1f}" for arm in arm_list))
        for arm in arm_list:
            memory[(arm, compiled)] = run_child(f'{arm}:{compiled}')
            print(f"  memory, compile={compiled!s:5s} {arm:15s} peak {memory[(arm, compiled)]['peak_mem_mb']:8.1f} MB")
        rows += [summarize(arm, timings[compiled], memory[(arm, compiled)], s) for arm in arm_list]
    base = arm_list[0] if 'gpt' not in arm_list else 'gpt'
    ratios = {}
    for row in rows:
        ref = next(b for b in rows if b['arm'] == base and b['compile'] == row['compile'])
        if row['arm'] != base:
            ratios[f"{row['arm']}/{base}" + (' compiled' if row['compile'] else ' eager')] = {
                k: row[k] / ref[k] for k in ('tokens_per_s', 'fwd_tokens_per_s', 'peak_mem_mb', 'model_mem_mb')}
    first = timings[modes[0]][0]
    machine = dict(device=first['device'], device_name=device_name(first['device']), dtype=first['dtype'],
                   torch=torch.__version__, cpus=os.cpu_count(), threads=threads or torch.get_num_threads(),
                   date=time.strftime('%Y-%m-%d %H:%M'))
    print(f"\n{machine['device']} ({machine['device_name']}), {machine['dtype']}, torch {machine['torch']}, "
          f"{machine['cpus']} cpus, batch {s['batch_size']} x block {s['block_size']}, {machine['threads']} threads; "
          f"median of {rounds} x {bench_iters} iterations per arm, the arms taking turns")
    print(f"| arm | compile | ms/iter | tokens/s | MFU | peak mem MB | model mem MB | params | non-emb params "
          f"| fwd ms/iter | fwd tokens/s |\n|{'---|' * 11}")
    for r in rows:
        mfu = 'n/a' if r['mfu'] is None else f"{100 * r['mfu']:.2f}%"
        print(f"| {r['arm']} | {r['compile']} | {r['ms_per_iter']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} "
              f"| {r['peak_mem_mb']:.0f} | {r['model_mem_mb']:.1f} | {r['params_total']:,} | {r['params_non_embedding']:,} "
              f"| {r['fwd_ms_per_iter']:.1f} | {r['fwd_tokens_per_s']:,.0f} |")
    print("\nratios to the baseline (model mem = peak minus the process's memory before the model was built):")
    for name, rat in ratios.items():
        print(f"  {name}: tokens/s {rat['tokens_per_s']:.3f}x (target >= 0.90x), fwd tokens/s "
              f"{rat['fwd_tokens_per_s']:.3f}x, peak mem {rat['peak_mem_mb']:.3f}x (target <= 1.30x), "
              f"model mem {rat['model_mem_mb']:.3f}x")
    with open(out, 'w') as f:
        json.dump(dict(config=config, shape=s, machine=machine, results=rows, ratios=ratios,
                       runs=dict(timing=[r for c in modes for r in timings[c]], memory=list(memory.values()))), f, indent=1)
    print(f"wrote {out}")


if __name__ == '__main__':
    if child:
        what, _, flag = child.partition(':')
        if what == 'time':
            print(json.dumps(time_arms([a.strip() for a in arms.split(',') if a.strip()], flag == 'True')))
        else:
            print(json.dumps(measure_memory(what, flag == 'True')))
    else:
        main()
