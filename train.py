"""
The one trainer, for every model in this repo (model_type='gpt' or 'nesterov'). With no
arguments it trains a small byte-level GPT on the offline default corpus (prepared on the
fly) in a few minutes on a laptop CPU. `python train.py --help` lists every knob.

To run on a single GPU or CPU, example:
$ python train.py config/train_tinystories_nesterov.py --batch_size=32 --compile=False

To run with DDP on 4 gpus on 1 node, example:
$ torchrun --standalone --nproc_per_node=4 train.py config/train_owt_nesterov.py

To run with DDP on 4 gpus across 2 nodes, example:
- Run on the first (master) node with example IP 123.456.123.456:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
- Run on the worker node:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(If your cluster does not have Infiniband interconnect prepend NCCL_IB_DISABLE=1)

On the CPU, torchrun runs the same script over gloo: torchrun --standalone --nproc_per_node=2 train.py

Exit codes: 0 done; 1 bad input or a missing resource (data, checkpoint, device); 2 a bad command
line or config value; 3 (configurator.EXIT_DIVERGED) the loss or the weights became non-finite,
stopped without saving. Each non-zero exit prints one line 'error: ...' that says what to do.
"""
import json
import math
import os
import signal
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import loader
import runtime
from checkpoint import (link_checkpoint, load_checkpoint, load_weights, lock_out_dir, read_log, remove_stale_temporaries,
                        save_checkpoint)
from configurator import EXIT_DIVERGED, UserError, configure_globals, exit_on_user_error
from diagnostics import format_diagnostics
from model_nesterov import MODEL_TYPES, build_model, model_arg_names

sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do

# -----------------------------------------------------------------------------
# default config values: a 4-layer byte-level GPT on the Python docs, a few minutes on 2 CPU cores
# I/O
out_dir = 'out'
eval_interval = 250  # evaluate, print the diagnostics, and save checkpoints every this many iters
log_interval = 25  # print the training loss (a host sync), check it is finite and the time budget
eval_iters = 20  # batches per split in each evaluation (a fixed set, the same for every run)
eval_only = False  # if True, evaluate once and exit, writing nothing
init_from = 'scratch'  # 'scratch' or 'resume' (continue exactly from out_dir/ckpt.pt)
# wandb logging (optional, never required)
wandb_log = False
wandb_project = 'yuriiformer'
wandb_run_name = 'run'
# data
dataset = 'python_docs'  # reads data_root/<dataset>/; made by `python prepare/<dataset>.py`
data_root = 'data'
gradient_accumulation_steps = 1  # global: divided across torchrun ranks
batch_size = 16  # micro-batch size per rank
block_size = 128
# model
model_type = 'gpt'  # 'gpt' (model.py) or 'nesterov' (model_nesterov.py)
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0  # for pretraining 0 is good, for finetuning try 0.1+
bias = False  # bias inside LayerNorm and Linear layers?
vocab_size = None  # None: the dataset's vocab, padded up to a multiple of 64
# the accelerated suite (model_type='nesterov' only; the equations are in model_nesterov.py)
momentum = 'nesterov'  # 'gd' (= the baseline), 'polyak' (heavy ball) or 'nesterov' (look-ahead)
splitting = 'lie_trotter'  # 'lie_trotter' (attention step, then MLP step) or 'euler' (one combined step)
mu_init = 0.5  # initial look-ahead mu = sigmoid(raw)
beta_init = 0.5  # initial momentum beta = sigmoid(raw)
gamma_init = math.log(2)  # initial step gamma = softplus(raw); softplus(0) = ln 2
velocity_norm = 'per_substep'  # LayerNorm on the velocity: 'per_substep' (as the paper configs), 'shared' per block, 'none'
velocity_init = 'embedding'  # initial velocity: 'embedding' (own learned tables, the paper), 'zero', 'tied'
table_skip = False  # with momentum='gd': the control arm, the velocity tables added into every layer, no dynamics
# optimizer
optimizer = 'adamw'  # 'adamw', or 'muon' (Muon on the 2-D block matrices, AdamW on the rest)
learning_rate = 1e-3  # peak AdamW learning rate
max_iters = 1500
max_time = 0.0  # if > 0: stop (with a final eval and checkpoint) after this many seconds of training, eval excluded
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.99  # 0.99: small batches of a small model (nanoGPT's char-level choice); the paper's runs use 0.95
grad_clip = 1.0  # clip gradients at this global norm, or disable if == 0.0
muon_lr = 0.02  # peak Muon learning rate (optimizer='muon')
muon_momentum = 0.95
muon_weight_decay = 0.0
scalar_lr_mult = 5.0  # the learned scalars train at this multiple of learning_rate
# learning rate schedule: linear warmup, then cosine down to min_lr; every group scales alike
decay_lr = True
warmup_iters = 100
lr_decay_iters = 1500  # ~= max_iters per Chinchilla
min_lr = 1e-4  # ~= learning_rate/10 per Chinchilla
# system
device = 'auto'  # 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto' (CUDA: bfloat16, else float16; CPU: whichever a probe finds faster here), 'bfloat16', 'float16', 'float32'
compile = 'auto'  # torch.compile: 'auto' (CUDA: on; CPU: where bench.py measured it pays back in this run), True, False
backend = 'auto'  # DDP backend: 'auto' (nccl on CUDA, gloo on CPU), 'nccl', 'gloo'
seed = 1337  # the same seed gives the same initialization and the same data order
# -----------------------------------------------------------------------------
config, overrides = configure_globals(globals())  # config files and --key=value, checked against the above
# -----------------------------------------------------------------------------

# a resumed run is the run it resumes: the checkpoint's config, with this command line's overrides on top
ckpt = None
if init_from == 'resume':
    ckpt = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'), keys=('model', 'model_type', 'model_args', 'optimizers',
                           'scaler', 'iter_num', 'best_val_loss', 'train_time', 'config', 'meta', 'rng_state'))
    # where it is and that it resumes are this command's; knobs added since the checkpoint keep their defaults
    saved = {k: v for k, v in ckpt['config'].items() if k in config and k not in ('init_from', 'out_dir')}
    # the architecture and the optimizer kind are the checkpoint's: a different one cannot resume it
    fixed = {**ckpt['model_args'], 'model_type': ckpt['model_type'], 'optimizer': saved.get('optimizer', 'adamw')}
    for k, v in overrides.items():
        if k in fixed and fixed[k] != v:
            raise UserError(f"--init_from=resume: the checkpoint has {k}={fixed[k]!r} but this run asks for {k}={v!r}; "
                            f"drop the override, or start a new run in another out_dir", exit_code=2)
    saved.update(fixed)
    changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in overrides.items() if k in saved and saved[k] != v]
    for k, v in saved.items():
        config[k] = globals()[k] = overrides.get(k, v)
    if os.environ.get('RANK', '0') == '0':
        print(f"resume: {out_dir}/ckpt.pt at iter {ckpt['iter_num']} with its config; "
              + (f"changed: {', '.join(changed)}" if changed else "nothing changed"))

# every value is checked before anything on disk is touched, so a bad run never damages a good one:
# the trainer's own here, the model's by its config class when the model is built (build_model)
def require(ok, message):
    if not ok:
        raise UserError(message, exit_code=2)


require(init_from in ('scratch', 'resume'), f"init_from={init_from!r}: expected 'scratch' or 'resume'")
require(model_type in MODEL_TYPES, f"model_type={model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
require(optimizer in ('adamw', 'muon'), f"optimizer={optimizer!r}: expected 'adamw' or 'muon'")
for k in ('batch_size', 'gradient_accumulation_steps', 'eval_interval', 'eval_iters', 'log_interval'):
    require(config[k] >= 1, f"{k}={config[k]}: must be at least 1")
for k in ('learning_rate', 'muon_lr', 'scalar_lr_mult'):
    require(config[k] > 0, f"{k}={config[k]}: must be > 0")
for k in ('max_iters', 'max_time', 'min_lr', 'weight_decay', 'grad_clip', 'muon_weight_decay', 'warmup_iters'):
    require(config[k] >= 0, f"{k}={config[k]}: must be >= 0")
for k in ('beta1', 'beta2', 'muon_momentum'):
    require(0 <= config[k] < 1, f"{k}={config[k]}: must be in [0, 1)")
require(not decay_lr or lr_decay_iters > warmup_iters,
        f"lr_decay_iters={lr_decay_iters} must be > warmup_iters={warmup_iters} (or set decay_lr=False)")
if wandb_log:
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True needs the wandb package: pip install wandb (or drop wandb_log)")

# sizes: what the run will allocate, against the memory it has, before anything is allocated or written
if not 0 <= seed < 2 ** 64:  # torch's generators take 64 bits
    raise UserError(f"seed={seed}: must be in [0, 2**64)", exit_code=2)
data_dir = os.path.join(data_root, dataset)
if vocab_size is None and os.path.exists(os.path.join(data_dir, 'meta.json')):
    vocab_size = config['vocab_size'] = loader.model_vocab_size(loader.read_meta(data_dir))
model_args = {k: config[k] for k in model_arg_names(model_type)}  # vocab_size may still wait for the data
need = runtime.train_memory_bytes(model_type, {**model_args, 'vocab_size': vocab_size or 256}, batch_size,
                                  eval_iters, dtype)
free = runtime.available_memory(device)
if free is not None and need > free:
    raise UserError(f"this run needs at least {need / 2**30:,.1f} GiB (weights, optimizer, activations) but "
                    f"{free / 2**30:,.1f} GiB is free for it: lower n_layer, n_embd, vocab_size, batch_size, "
                    f"block_size or eval_iters (gradient_accumulation_steps keeps the batch)", exit_code=2)

rt = runtime.setup(device, dtype, compile, backend)  # where the run is; dtype and compile 'auto' wait for the model
require(gradient_accumulation_steps % rt.world_size == 0,
        f"gradient_accumulation_steps={gradient_accumulation_steps} must be divisible by the "
        f"{rt.world_size} torchrun processes")
grad_accum_local = gradient_accumulation_steps // rt.world_size
tokens_per_iter = gradient_accumulation_steps * batch_size * block_size

# data -------------------------------------------------------------------------
if rt.master_process:
    loader.make_default_corpus_if_missing(data_dir)
if rt.ddp:
    torch.distributed.barrier()  # the other ranks read what rank 0 may just have written
meta = loader.read_meta(data_dir)
if ckpt is not None:
    require(ckpt['meta']['tokenizer'] == meta['tokenizer'],
            f"the checkpoint was trained with the {ckpt['meta']['tokenizer']!r} tokenizer but {data_dir} "
            f"uses {meta['tokenizer']!r}: resume on the dataset it was trained on")
if vocab_size is None:
    vocab_size = config['vocab_size'] = loader.model_vocab_size(meta)
require(vocab_size >= meta['vocab_size'], f"vocab_size={vocab_size} is smaller than the dataset's vocabulary "
        f"({meta['vocab_size']}, {meta['tokenizer']}): use --vocab_size=None")
splits = {split: loader.open_split(data_dir, split, block_size, vocab_size, meta) for split in ('train', 'val')}

# model and optimizer ----------------------------------------------------------
torch.manual_seed(seed)  # same seed, same initial weights on every rank and in every arm
model_args['vocab_size'] = vocab_size  # known now, from the data
raw_model = build_model(model_type, model_args)  # the plain module: checkpoints and diagnostics read it
# 'auto' decided for this run's own step: its model, micro-batch and optimizer (runtime.py)
rt = runtime.decide(rt, runtime.Step(model_type, model_args, batch_size, optimizer), iters=max_iters)
if rt.master_process:
    print(f"tokens per iteration will be: {tokens_per_iter:,} "
          f"({rt.world_size} x {grad_accum_local} x {batch_size} x {block_size}) on {rt.device} in {rt.dtype}")
if ckpt is not None:
    load_weights(raw_model, ckpt, os.path.join(out_dir, 'ckpt.pt'))
raw_model.to(rt.device)
optimizers = raw_model.configure_optimizers(optimizer, weight_decay, learning_rate, (beta1, beta2), rt.device_type,
                                            muon_lr=muon_lr, muon_momentum=muon_momentum,
                                            muon_weight_decay=muon_weight_decay, scalar_lr_mult=scalar_lr_mult,
                                            # Newton-Schulz in bf16 only where the run's matmuls are (muon.py)
                                            muon_ns_dtype='bfloat16' if rt.dtype == 'bfloat16' else 'float32')
scaler = torch.amp.GradScaler('cuda', enabled=(rt.dtype == 'float16'))  # only fp16 needs loss scaling
data_rng = torch.Generator().manual_seed(seed)  # the training data order, identical on every rank
iter_num, best_val_loss, train_time = 0, float('inf'), 0.0
wandb_run_id = None  # set by the first run that logs to wandb, kept in every checkpoint after it
if ckpt is not None:
    for opt, state in zip(optimizers, ckpt['optimizers'], strict=True):
        # the moments come from the checkpoint, the hyperparameters (lr, betas, weight decay) from
        # this run's config, so an override at resume takes effect and the log reports what ran
        hyper = [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]
        opt.load_state_dict(state)
        for group, h in zip(opt.param_groups, hyper):
            group.update(h)
    scaler.load_state_dict(ckpt['scaler'])
    data_rng.set_state(ckpt['rng_state']['data'])
    iter_num, best_val_loss, train_time = ckpt['iter_num'], ckpt['best_val_loss'], ckpt['train_time']
    wandb_run_id = ckpt.get('wandb_run_id')  # a resumed run continues the same wandb run
    ckpt = None  # free the memory
resumed_at = iter_num if init_from == 'resume' else None  # its evaluation is already in the log
n_params = raw_model.get_num_params()
peak_flops = rt.peak_flops()
flops_per_token = runtime.flops_per_token(n_params, n_layer, n_head, n_embd, block_size)  # forward + backward, for MFU
if rt.master_process:
    print(f"{model_type} model: {n_params / 1e6:.2f}M non-embedding parameters, "
          f"{raw_model.get_num_params(False) / 1e6:.2f}M total")
model = rt.maybe_compile(raw_model)  # what the steps and evaluations call
if rt.ddp:
    model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == 'cuda' else None)

# out_dir: touched only now that every input has been checked -----------------------------------------
log_path = os.path.join(out_dir, 'log.jsonl')
last_good = os.path.join(out_dir, 'ckpt.pt') if init_from == 'resume' else None  # for the stop messages
saved_iter = resumed_at  # the iteration last_good holds
lock = None  # out_dir/run.lock, held by rank 0 while this run lives
if rt.master_process and not eval_only:
    require(not os.path.exists(out_dir) or os.path.isdir(out_dir), f"out_dir={out_dir!r} is a file, not a directory")
    # a resumed run drops what came after its checkpoint (a killed run may have logged past it), so
    # iterations in the log stay monotone; read first, so that a damaged log leaves out_dir as it was
    kept = []
    if resumed_at is not None and os.path.exists(log_path):
        kept = [json.dumps(r) + '\n' for r in read_log(log_path) if r['iter'] <= resumed_at]
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = lock_out_dir(out_dir)  # before anything changes: another live run may own out_dir
        remove_stale_temporaries(out_dir)
        # a fresh run starts a fresh log, and the checkpoints of the run it replaces go first, so
        # that no log ever sits beside the checkpoints of another run
        if resumed_at is None:
            for name in ('ckpt_best.pt', 'ckpt.pt'):
                if os.path.lexists(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
        with open(log_path + '.tmp', 'w') as f:
            f.writelines(kept)
        os.replace(log_path + '.tmp', log_path)
    except OSError as e:
        raise UserError(f"cannot write to out_dir={out_dir!r}: {e.strerror}; pick a writable --out_dir")


def interrupted(signum, frame):
    """Ctrl-C: one line that says what is on disk. Raised wherever the run is; a save it cuts short
    leaves the previous checkpoint whole."""
    saved = f"{last_good} holds iter {saved_iter}; continue with --init_from=resume" if last_good else \
        "no checkpoint was saved by this run"
    raise UserError(f"interrupted (Ctrl-C) at iter {iter_num}: {saved}", exit_code=130)


signal.signal(signal.SIGINT, interrupted)


def log_json(record):
    """One JSON line per event in out_dir/log.jsonl: what compare.py and plots read."""
    try:
        with open(log_path, 'a') as f:
            f.write(json.dumps(record) + '\n')
    except OSError as e:
        raise UserError(f"cannot write {log_path}: {e.strerror}")


def save(name):
    save_checkpoint({
        'model': raw_model.state_dict(), 'model_type': model_type, 'model_args': model_args,
        'optimizers': [opt.state_dict() for opt in optimizers], 'scaler': scaler.state_dict(),
        'iter_num': iter_num, 'best_val_loss': best_val_loss, 'train_time': train_time,
        'config': config, 'meta': meta, 'rng_state': {'data': data_rng.get_state()}, 'wandb_run_id': wandb_run_id,
    }, os.path.join(out_dir, name))


def everywhere(*flags):
    """The flags OR-ed over the torchrun ranks, so that every rank takes the same branch."""
    t = torch.tensor([float(f) for f in flags], device=rt.device)
    if rt.ddp:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(f) for f in t.tolist()]


def stop_diverged(what):
    raise UserError(f"non-finite {what} at iter {iter_num}: stopping without saving; the last good checkpoint is "
                    f"{last_good or 'none (none was saved by this run)'}. Try a lower learning_rate or dtype='float32'",
                    exit_code=EXIT_DIVERGED)


@torch.no_grad()
def estimate_loss():
    """Mean loss over a fixed set of eval_iters batches per split, shared out across ranks."""
    out = {}
    model.eval()
    for split, data in splits.items():
        offsets = loader.eval_offsets(len(data), block_size, eval_iters * batch_size).view(eval_iters, batch_size)
        total = torch.zeros(2, device=rt.device)  # (sum of batch losses, number of batches)
        for k in range(rt.rank, eval_iters, rt.world_size):
            X, Y = loader.get_batch(data, offsets[k], block_size, rt.device)
            with rt.autocast():
                _, loss = model(X, Y)
            total += torch.stack([loss.float(), torch.ones((), device=rt.device)])
        if rt.ddp:
            torch.distributed.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    model.train()
    return out


def get_lr(it):
    """Learning rate at iteration it: linear warmup, cosine decay to min_lr, then min_lr."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)


if wandb_log and rt.master_process and not eval_only:
    # a fresh run gets a new id from wandb (None); wandb's step is the iteration, so a resumed run
    # appends where its checkpoint left off (a killed run's points past it keep their steps: wandb drops repeats)
    wandb_run_id = wandb.init(project=wandb_project, name=wandb_run_name, config=config, id=wandb_run_id,
                              resume='allow').id
if rt.master_process and not eval_only:  # what ran, and what each 'auto' was decided from
    log_json({'event': 'runtime', 'iter': iter_num, 'device': rt.device, 'dtype': rt.dtype, 'compile': rt.compile,
              'world_size': rt.world_size, 'auto': rt.auto})

# diagnostics batch: the first evaluation batch of the validation split, the same in every run
X_diag, _ = loader.get_batch(splits['val'], loader.eval_offsets(len(splits['val']), block_size, batch_size),
                             block_size, rt.device)


def stop_clock(t0):
    """Seconds since t0 once the device has run every step queued since then: on CUDA the host
    runs ahead of the kernels, so the clock is read only after rt.sync()."""
    rt.sync()
    return time.perf_counter() - t0


# training loop ----------------------------------------------------------------
# Time is measured over stretches of training steps, each ended by stop_clock: at every log line
# and before an evaluation, which is not training time. train_time sums the stretches (max_time
# and compare.py's equal-time axis read it); a log line reports its window's mean since the last.
nonfinite = torch.zeros((), dtype=torch.bool, device=rt.device)  # set on device, read at log time: no sync per step
running_mfu = -1.0
out_of_time = False
first_iter = iter_num  # this process's first step compiles and warms up: MFU starts 5 steps later
t0 = None  # when the current stretch of training steps began; None between stretches
window = (iter_num, train_time)  # where the current log window began: its iteration and training time
while True:
    # one schedule for every group (AdamW, Muon, the learned scalars), each from its own peak
    lr_scale = (get_lr(iter_num) if decay_lr else learning_rate) / learning_rate
    for opt in optimizers:
        for group in opt.param_groups:
            group['lr'] = group['base_lr'] * lr_scale

    last_iter = iter_num >= max_iters or out_of_time
    if (iter_num % eval_interval == 0 or last_iter) and iter_num != resumed_at or eval_only:
        if t0 is not None:  # the steps since the last log line count as training time, the evaluation does not
            train_time, t0 = train_time + stop_clock(t0), None
        losses = estimate_loss()
        # never save a diverged model: its checkpoint would replace the last good one
        bad_loss, bad_weights = everywhere(nonfinite.item() or not all(map(math.isfinite, losses.values())),
                                           not all(torch.isfinite(p).all() for p in raw_model.parameters()))
        if bad_loss or bad_weights:
            stop_diverged('loss' if bad_loss else 'weights')
        if rt.master_process:
            raw_model.eval()
            with rt.autocast():
                diagnostics = raw_model.diagnostics(X_diag)
            raw_model.train()
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            print(format_diagnostics(diagnostics))
            if not eval_only:
                log_json({'event': 'eval', 'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
                          'lr': lr_scale * learning_rate, 'train_time': train_time, 'tokens': iter_num * tokens_per_iter,
                          'diagnostics': diagnostics})
                if wandb_log:
                    # lr comes with the training log (at this step it is the last step's lr, as in log.jsonl)
                    wandb.log({'train/loss': losses['train'], 'val/loss': losses['val'],
                               **{f'diagnostics/{k}/layer{i}': v for k, vs in diagnostics.items() for i, v in enumerate(vs)}},
                              step=iter_num)
                # a new best is written as ckpt_best.pt first, then linked as ckpt.pt: killed in between,
                # ckpt.pt is the previous eval's, whose best_val_loss ckpt_best.pt beats, so at every
                # instant the best model any checkpoint has seen is on disk
                improved = losses['val'] < best_val_loss
                best_val_loss = min(best_val_loss, losses['val'])
                if improved:
                    save('ckpt_best.pt')
                    link_checkpoint(os.path.join(out_dir, 'ckpt_best.pt'), os.path.join(out_dir, 'ckpt.pt'))
                else:
                    save('ckpt.pt')
                last_good, saved_iter = os.path.join(out_dir, 'ckpt.pt'), iter_num
                print(f"saved checkpoints to {out_dir}")
    if last_iter or eval_only:
        break

    # one optimizer step over the global batch: all ranks draw the same offsets, each takes its share
    if t0 is None:
        t0 = time.perf_counter()
    # dropout masks are a function of (seed, rank, iter), so a resumed run draws the same ones
    torch.manual_seed(hash((seed, rt.rank, iter_num)))
    offsets = loader.batch_offsets(data_rng, len(splits['train']), block_size, gradient_accumulation_steps * batch_size)
    offsets = offsets.view(gradient_accumulation_steps, batch_size)[rt.rank * grad_accum_local:][:grad_accum_local]
    X, Y = loader.get_batch(splits['train'], offsets[0], block_size, rt.device)
    loss_sum = torch.zeros((), device=rt.device)  # this rank's mean loss over its micro-batches, on device
    for micro_step in range(grad_accum_local):
        if rt.ddp:
            # sync gradients only on the last micro step (what DDP's no_sync() does, without the context manager)
            model.require_backward_grad_sync = (micro_step == grad_accum_local - 1)
        with rt.autocast():
            _, loss = model(X, Y)
            loss = loss / grad_accum_local  # average over the micro steps
        if micro_step + 1 < grad_accum_local:  # fetch the next micro-batch while this one computes
            X, Y = loader.get_batch(splits['train'], offsets[micro_step + 1], block_size, rt.device)
        scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    nonfinite |= ~torch.isfinite(loss_sum)
    for opt in optimizers:
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip if grad_clip > 0 else float('inf'))
    for opt in optimizers:
        scaler.step(opt)
    scaler.update()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    iter_num += 1

    if iter_num % log_interval == 0:  # the only host syncs of a training step, every log_interval steps
        if rt.ddp:
            torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
        lossf = loss_sum.item()  # the mean over the global batch
        train_time, t0 = train_time + stop_clock(t0), None
        # every rank stops at once: on a non-finite loss anywhere, or when the time is up
        diverged, out_of_time = everywhere(nonfinite.item(), max_time > 0 and train_time >= max_time)
        if diverged:
            stop_diverged('loss')
        dt = (train_time - window[1]) / (iter_num - window[0])  # the window's mean seconds per iteration
        if rt.master_process:
            if window[0] >= first_iter + 5 and peak_flops:
                mfu = flops_per_token * grad_accum_local * batch_size * block_size / dt / peak_flops
                running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
            print(f"iter {iter_num}: loss {lossf:.4f}, lr {lr_scale * learning_rate:.2e}, grad norm {grad_norm.item():.3f}, "
                  f"time {dt * 1000:.1f}ms, {tokens_per_iter / dt:,.0f} tok/s, "
                  f"mfu {'n/a' if running_mfu < 0 else f'{running_mfu * 100:.2f}%'}")
            log_json({'event': 'train', 'iter': iter_num, 'loss': lossf, 'lr': lr_scale * learning_rate,
                      'grad_norm': grad_norm.item(), 'dt': dt, 'tokens_per_s': tokens_per_iter / dt})
            if wandb_log:
                wandb.log({'train/step_loss': lossf, 'lr': lr_scale * learning_rate, 'grad_norm': grad_norm.item(),
                           'tokens_per_s': tokens_per_iter / dt, **({'mfu': running_mfu * 100} if running_mfu >= 0 else {})},
                          step=iter_num)
        window = (iter_num, train_time)

if wandb_log and rt.master_process and not eval_only:
    wandb.finish()
runtime.teardown(rt)
