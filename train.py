"""
The one trainer, for every model in this repo (model_type='gpt' or 'nesterov'). With no
arguments it trains a small byte-level GPT on the offline default corpus (prepared on the
fly) in a few minutes on a laptop CPU.

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
"""
import json
import math
import os
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import loader
import runtime
from checkpoint import (CheckpointError, build_model, load_checkpoint, model_arg_names,
                        save_checkpoint)
from configurator import configure_globals
from model_nesterov import format_scalars

# -----------------------------------------------------------------------------
# default config values: a 4-layer byte-level GPT on the Python docs, about 2.5 minutes on 2 CPU cores
# I/O
out_dir = 'out'
eval_interval = 250  # evaluate, print the learned scalars, and save checkpoints every this many iters
log_interval = 25
eval_iters = 20  # batches per split in each evaluation (a fixed set, the same for every run)
eval_only = False  # if True, evaluate once and exit
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
gamma_init = 0.6931471805599453  # initial step gamma = softplus(raw); softplus(0) = ln 2
velocity_norm = 'shared'  # LayerNorm on the velocity: 'shared' per block, 'per_substep', or 'none'
velocity_init = 'embedding'  # initial velocity: 'embedding' (own learned tables, the paper), 'zero', 'tied'
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
dtype = 'auto'  # 'auto' (bfloat16 where supported, else float32), 'bfloat16', 'float16' (CUDA), 'float32'
compile = True  # torch.compile the model where it works (a notice says when it cannot)
backend = 'auto'  # DDP backend: 'auto' (nccl on CUDA, gloo on CPU), 'nccl', 'gloo'
seed = 1337  # the same seed gives the same initialization and the same data order
# -----------------------------------------------------------------------------
config = configure_globals(globals())  # overrides from config files and --key=value
# -----------------------------------------------------------------------------


def fail(message):
    """Bad input or a broken run: one line on stderr, non-zero exit, nothing on disk touched."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


try:
    rt = runtime.setup(device, dtype, compile, backend)
except runtime.RuntimeSetupError as e:
    fail(e)
if gradient_accumulation_steps % rt.world_size != 0:
    fail(f"gradient_accumulation_steps={gradient_accumulation_steps} must be divisible by the "
         f"{rt.world_size} torchrun processes")
grad_accum_local = gradient_accumulation_steps // rt.world_size
tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
if rt.master_process:
    print(f"tokens per iteration will be: {tokens_per_iter:,} "
          f"({rt.world_size} x {grad_accum_local} x {batch_size} x {block_size}) on {rt.device} in {rt.dtype}")
    os.makedirs(out_dir, exist_ok=True)

# data -------------------------------------------------------------------------
data_dir = os.path.join(data_root, dataset)
if rt.master_process:
    loader.make_default_corpus_if_missing(data_dir)
if rt.ddp:
    torch.distributed.barrier()  # the other ranks read what rank 0 may just have written
ckpt = None
if init_from == 'resume':
    try:
        ckpt = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'), map_location=rt.device)
    except CheckpointError as e:
        fail(e)
    # the architecture is the checkpoint's; a resumed run cannot change it
    for k, v in ckpt['model_args'].items():
        config[k] = globals()[k] = v
    model_type = config['model_type'] = ckpt['model_type']
elif init_from != 'scratch':
    fail(f"init_from={init_from!r}: expected 'scratch' or 'resume'")
try:
    meta = loader.read_meta(data_dir)
    if ckpt is not None and ckpt['meta']['tokenizer'] != meta['tokenizer']:
        fail(f"the checkpoint was trained with the {ckpt['meta']['tokenizer']!r} tokenizer but {data_dir} "
             f"uses {meta['tokenizer']!r}: resume on the dataset it was trained on")
    if vocab_size is None:
        vocab_size = config['vocab_size'] = loader.model_vocab_size(meta)
    if vocab_size < meta['vocab_size']:
        fail(f"vocab_size={vocab_size} is smaller than the dataset's vocabulary ({meta['vocab_size']}, "
             f"{meta['tokenizer']}): use --vocab_size=None")
    train_data = loader.open_split(data_dir, 'train', block_size, vocab_size)
    val_data = loader.open_split(data_dir, 'val', block_size, vocab_size)
except loader.DataError as e:
    fail(e)
splits = {'train': train_data, 'val': val_data}

# model and optimizer ----------------------------------------------------------
torch.manual_seed(seed)  # same seed, same initial weights on every rank and in every arm
try:
    model_args = {k: config[k] for k in model_arg_names(model_type)}
    model = build_model(model_type, model_args)
except ValueError as e:  # unknown model_type or variant name
    fail(e)
if ckpt is not None:
    model.load_state_dict(ckpt['model'])
model.to(rt.device)
raw_model = model  # the plain module: checkpoints, eval and the learned scalars read it
optimizers = model.configure_optimizers(optimizer, weight_decay, learning_rate, (beta1, beta2), rt.device_type,
                                        muon_lr=muon_lr, muon_momentum=muon_momentum,
                                        muon_weight_decay=muon_weight_decay, scalar_lr_mult=scalar_lr_mult)
scaler = torch.amp.GradScaler('cuda', enabled=(rt.dtype == 'float16'))  # only fp16 needs loss scaling
data_rng = torch.Generator().manual_seed(seed)  # the training data order, identical on every rank
iter_num, best_val_loss, train_time = 0, float('inf'), 0.0
if ckpt is not None:
    for opt, state in zip(optimizers, ckpt['optimizers'], strict=True):
        opt.load_state_dict(state)
    scaler.load_state_dict(ckpt['scaler'])
    data_rng.set_state(ckpt['rng_state']['data'])
    iter_num, best_val_loss, train_time = ckpt['iter_num'], ckpt['best_val_loss'], ckpt['train_time']
    ckpt = None  # free the memory
resumed_at = iter_num if init_from == 'resume' else None  # its evaluation is already in the log
if rt.master_process:
    print(f"{model_type} model: {raw_model.get_num_params() / 1e6:.2f}M non-embedding parameters, "
          f"{raw_model.get_num_params(False) / 1e6:.2f}M total")
model = eval_model = rt.maybe_compile(model)
if rt.ddp:
    model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == 'cuda' else None)


@torch.no_grad()
def estimate_loss():
    """Mean loss over a fixed set of eval_iters batches per split, shared out across ranks."""
    out = {}
    raw_model.eval()
    for split, data in splits.items():
        offsets = loader.eval_offsets(len(data), block_size, eval_iters * batch_size).view(eval_iters, batch_size)
        total = torch.zeros(2, device=rt.device)  # (sum of batch losses, number of batches)
        for k in range(rt.rank, eval_iters, rt.world_size):
            X, Y = loader.get_batch(data, offsets[k], block_size, rt.device)
            with rt.autocast():
                _, loss = eval_model(X, Y)
            total += torch.stack([loss.float(), torch.ones((), device=rt.device)])
        if rt.ddp:
            torch.distributed.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    raw_model.train()
    return out


def get_lr(it):
    """AdamW learning rate at iteration it: linear warmup, cosine decay to min_lr, then min_lr."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)


def save(name):
    save_checkpoint({
        'model': raw_model.state_dict(), 'model_type': model_type, 'model_args': model_args,
        'optimizers': [opt.state_dict() for opt in optimizers], 'scaler': scaler.state_dict(),
        'iter_num': iter_num, 'best_val_loss': best_val_loss, 'train_time': train_time,
        'config': config, 'meta': meta, 'rng_state': {'data': data_rng.get_state()},
    }, os.path.join(out_dir, name))


def log_json(record):
    """One JSON line per event in out_dir/log.jsonl: what compare.py and plots read."""
    with open(os.path.join(out_dir, 'log.jsonl'), 'a') as f:
        f.write(json.dumps(record) + '\n')


if wandb_log and rt.master_process:
    import wandb
    wandb.init(project=wandb_project, name=wandb_run_name, config=config, resume='allow')
if rt.master_process and iter_num == 0 and os.path.exists(os.path.join(out_dir, 'log.jsonl')):
    os.remove(os.path.join(out_dir, 'log.jsonl'))  # a fresh run starts a fresh log



def out_of_time():
    """The time budget is spent; rank 0's clock decides for every rank, so all stop together."""
    if max_time <= 0:
        return False
    flag = torch.tensor([float(train_time >= max_time)], device=rt.device)
    if rt.ddp:
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


# training loop ----------------------------------------------------------------
running_mfu = -1.0
while True:
    # the same schedule multiplies every group (AdamW, Muon, the learned scalars) alike
    lr_scale = (get_lr(iter_num) if decay_lr else learning_rate) / learning_rate
    for opt in optimizers:
        for group in opt.param_groups:
            group['lr'] = group['base_lr'] * lr_scale

    last_iter = iter_num >= max_iters or out_of_time()
    if (iter_num % eval_interval == 0 or last_iter) and iter_num != resumed_at or eval_only:
        losses = estimate_loss()
        if rt.master_process:
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            scalars = raw_model.learned_scalars()
            if scalars:
                print(format_scalars(scalars))
            log_json({'event': 'eval', 'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
                      'lr': lr_scale * learning_rate, 'train_time': train_time, 'tokens': iter_num * tokens_per_iter,
                      'scalars': scalars})
            if wandb_log:
                wandb.log({'iter': iter_num, 'train/loss': losses['train'], 'val/loss': losses['val'],
                           'lr': lr_scale * learning_rate, 'mfu': running_mfu * 100,
                           **{f'scalars/{n}/layer{i}': v for n, vs in scalars.items() for i, v in enumerate(vs)}})
            if not eval_only:
                if losses['val'] < best_val_loss:
                    best_val_loss = losses['val']
                    save('ckpt_best.pt')
                save('ckpt.pt')
                print(f"saved checkpoints to {out_dir}")
    if last_iter or eval_only:
        break

    # one optimizer step over the global batch: all ranks draw the same offsets, each takes its share
    t0 = time.perf_counter()
    # dropout masks depend only on (seed, rank, iter_num), so a resumed run draws the same ones
    torch.manual_seed(seed + 100_003 * rt.rank + 7 * iter_num + 1)
    offsets = loader.batch_offsets(data_rng, len(train_data), block_size, gradient_accumulation_steps * batch_size)
    offsets = offsets.view(gradient_accumulation_steps, batch_size)[rt.rank * grad_accum_local:][:grad_accum_local]
    loss_sum = torch.zeros((), device=rt.device)
    X, Y = loader.get_batch(train_data, offsets[0], block_size, rt.device)
    for micro_step in range(grad_accum_local):
        if rt.ddp:
            # sync gradients only on the last micro step (what DDP's no_sync() does, without the context manager)
            model.require_backward_grad_sync = (micro_step == grad_accum_local - 1)
        with rt.autocast():
            _, loss = model(X, Y)
            loss = loss / grad_accum_local  # average over the micro steps
        if micro_step + 1 < grad_accum_local:  # fetch the next micro-batch while this one computes
            X, Y = loader.get_batch(train_data, offsets[micro_step + 1], block_size, rt.device)
        scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    if rt.ddp:
        torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
    if not torch.isfinite(loss_sum):
        fail(f"non-finite loss ({loss_sum.item()}) at iter {iter_num}: stopping before the update; the last good "
             f"checkpoint is {os.path.join(out_dir, 'ckpt.pt')}. Try a lower learning_rate or dtype='float32'")
    for opt in optimizers:
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float('inf'))
    for opt in optimizers:
        scaler.step(opt)
    scaler.update()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    iter_num += 1

    if iter_num % log_interval == 0 and rt.master_process:
        lossf = loss_sum.item()  # a host sync: only at log time
        dt = time.perf_counter() - t0
        train_time += dt
        if iter_num > 5:  # the first iterations include compilation and warm-up
            mfu = raw_model.estimate_mfu(batch_size * grad_accum_local, dt, rt.device, rt.dtype)
            if mfu is not None:
                running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
        print(f"iter {iter_num}: loss {lossf:.4f}, lr {lr_scale * learning_rate:.2e}, grad norm {grad_norm.item():.3f}, "
              f"time {dt * 1000:.1f}ms, {tokens_per_iter / dt:,.0f} tok/s, "
              f"mfu {'n/a' if running_mfu < 0 else f'{running_mfu * 100:.2f}%'}")
        log_json({'event': 'train', 'iter': iter_num, 'loss': lossf, 'lr': lr_scale * learning_rate,
                  'grad_norm': grad_norm.item(), 'dt': dt, 'tokens_per_s': tokens_per_iter / dt})
    else:
        train_time += time.perf_counter() - t0

runtime.teardown(rt)
