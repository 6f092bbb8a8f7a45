"""
Sample from a trained model (baseline or accelerated: the checkpoint says which).

$ python sample.py --out_dir=out --start="Once upon a time" --num_samples=3 --max_new_tokens=200
$ python sample.py --start=FILE:prompt.txt --temperature=0     # greedy, deterministic

The tokenizer comes from the checkpoint's metadata, so no data directory is needed.
"""
import os
import sys

import torch

import runtime
from checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from configurator import configure_globals
from tokenizer import get_tokenizer

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume': load a checkpoint of this repo from out_dir
out_dir = 'out'  # ignored if init_from is not 'resume'
ckpt_name = 'ckpt_best.pt'  # 'ckpt_best.pt' (best validation loss) or 'ckpt.pt' (last)
start = "\n"  # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples = 3  # number of samples to draw
max_new_tokens = 300  # number of tokens generated in each sample
temperature = 0.8  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = greedy (argmax)
top_k = None  # keep only the top_k most likely tokens, None for all (nanoGPT uses 200)
seed = 1337
device = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'bfloat16', 'float16', 'float32'
compile = False  # torch.compile the model; pays off only for long generations
# -----------------------------------------------------------------------------
configure_globals(globals())


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


if init_from != 'resume':
    fail(f"init_from={init_from!r}: only 'resume' (a checkpoint in out_dir) is supported offline")
try:
    rt = runtime.setup(device, dtype, compile)
    ckpt = load_checkpoint(os.path.join(out_dir, ckpt_name), map_location=rt.device)
except (runtime.RuntimeSetupError, CheckpointError) as e:
    fail(e)
torch.manual_seed(seed)
model = model_from_checkpoint(ckpt).to(rt.device)
model = rt.maybe_compile(model)
tok = get_tokenizer(ckpt['meta']['tokenizer'])

if start.startswith('FILE:'):
    try:
        with open(start[5:], 'r', encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        fail(f"cannot read the prompt file {start[5:]!r}: {e.strerror}")
start_ids = tok.encode(start)
if not start_ids:
    fail("the prompt encodes to no tokens: give a non-empty --start")
x = torch.tensor(start_ids, dtype=torch.long, device=rt.device)[None, ...]

with torch.no_grad(), rt.autocast():
    for k in range(num_samples):
        y = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k)
        print(tok.decode(y[0].tolist()))
        print('---------------')
