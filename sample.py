"""
Sample from a trained model (baseline or accelerated: the checkpoint says which).

$ python sample.py --out_dir=out --start="Once upon a time" --num_samples=3 --max_new_tokens=200
$ python sample.py --start=FILE:prompt.txt --temperature=0     # greedy, deterministic

The tokenizer comes from the checkpoint's metadata, so no data directory is needed. With
use_cache, a KV cache keeps each layer's keys and values of the tokens seen so far, so a new
token costs a forward pass over itself alone; the output is the same token for token.
"""
import os
import sys

import torch

import runtime
from checkpoint import load_checkpoint, load_weights
from configurator import UserError, configure_globals, exit_on_user_error
from model_nesterov import build_model
from tokenizer import TOKENIZERS, get_tokenizer

sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do

# -----------------------------------------------------------------------------
out_dir = 'out'  # the run directory train.py wrote
ckpt_name = 'ckpt_best.pt'  # 'ckpt_best.pt' (best validation loss) or 'ckpt.pt' (last)
start = "\n"  # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples = 3  # number of samples to draw
max_new_tokens = 300  # number of tokens generated in each sample
temperature = 0.8  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = greedy (argmax)
top_k = None  # keep only the top_k most likely tokens, None for all (nanoGPT uses 200)
use_cache = True  # keep each layer's keys and values in a KV cache (the same tokens, faster)
seed = 1337
device = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # as in train.py
# -----------------------------------------------------------------------------
configure_globals(globals())
# -----------------------------------------------------------------------------
if num_samples < 1 or max_new_tokens < 1:
    raise UserError(f"num_samples={num_samples}, max_new_tokens={max_new_tokens}: both must be >= 1", exit_code=2)
# a tiny temperature is argmax in effect, and once logits / temperature overflow to inf the
# probabilities are NaN: below 1e-3 the user means 0
if not (temperature == 0 or 1e-3 <= temperature < float('inf')):
    raise UserError(f"temperature={temperature}: must be 0 (greedy) or a finite number >= 1e-3", exit_code=2)
if top_k is not None and (type(top_k) is not int or top_k < 1):
    raise UserError(f"top_k={top_k!r}: must be None (all tokens) or an integer >= 1", exit_code=2)

ckpt_path = os.path.join(out_dir, ckpt_name)
ckpt = load_checkpoint(ckpt_path, keys=('model', 'model_type', 'model_args', 'meta'))
if not isinstance(ckpt['meta'], dict) or ckpt['meta'].get('tokenizer') not in TOKENIZERS:
    raise UserError(f"{ckpt_path} names no tokenizer of this repo in its meta ({ckpt['meta']!r:.80}): it is damaged "
                    f"or of another version")
args = ckpt['model_args']
# shapes change every token, so compiling would not pay; dtype 'auto' times this model's forward pass
rt = runtime.decide(runtime.setup(device, dtype, compile=False),
                    runtime.Step(ckpt['model_type'], args, batch_size=1, optimizer=None))
torch.manual_seed(seed)
model = build_model(ckpt['model_type'], args)
load_weights(model, ckpt, ckpt_path)
model.eval().to(rt.device)
tok = get_tokenizer(ckpt['meta']['tokenizer'])

if start.startswith('FILE:'):
    try:
        with open(start[5:], 'r', encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        raise UserError(f"cannot read the prompt file {start[5:]!r}: {e.strerror}")
    except UnicodeDecodeError:
        raise UserError(f"the prompt file {start[5:]!r} is not UTF-8 text")
try:
    start_ids = tok.encode(start)
except UnicodeEncodeError:  # a command-line argument that was not valid UTF-8
    raise UserError("the prompt is not valid UTF-8 text")
if not start_ids:
    raise UserError("the prompt encodes to no tokens: give a non-empty --start", exit_code=2)
x = torch.tensor(start_ids, dtype=torch.long, device=rt.device)[None, ...]

with torch.no_grad(), rt.autocast():
    for k in range(num_samples):
        y = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, use_cache=use_cache)
        print(tok.decode(y[0].tolist()))
        print('---------------')
