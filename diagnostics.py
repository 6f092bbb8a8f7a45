"""
A checkpoint's learned step sizes and per-layer diagnostics (model.diagnostics(idx): the RMS of
X and V after each layer, mu, beta, gamma/beta, LN_v's gain), on a batch of its validation data,
or of random tokens where the data is not there. train.py prints the same table at each eval.

$ python diagnostics.py out/ckpt.pt
$ python diagnostics.py out/ckpt_best.pt --data_root=/elsewhere/data
"""
import argparse
import os
import sys

import torch

import loader
from checkpoint import load_checkpoint
from configurator import exit_on_user_error
from model_nesterov import CHOICES, build_model


def format_diagnostics(diag):
    """diagnostics() as a table: one row per layer, one column per quantity."""
    names = list(diag)
    lines = ['layer ' + ' '.join(f'{n:>12}' for n in names)]
    for i in range(len(diag[names[0]])):
        lines.append(f'{i:>5} ' + ' '.join(f'{diag[n][i]:12.4f}' for n in names))
    return '\n'.join(lines)


def main():
    sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do
    parser = argparse.ArgumentParser(description="print a checkpoint's learned step sizes and per-layer diagnostics "
                                                 "(on a batch of its validation data, or of random tokens without it)")
    parser.add_argument('ckpt', help='a checkpoint saved by train.py, e.g. out/ckpt.pt')
    parser.add_argument('--data_root', help="where the checkpoint's dataset lives (default: the run's data_root)")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.ckpt)
    model = build_model(ckpt['model_type'], ckpt['model_args'])
    model.load_state_dict(ckpt['model'])
    cfg, model_args = ckpt['config'], ckpt['model_args']
    data_dir = os.path.join(args.data_root or cfg['data_root'], cfg['dataset'])
    n, t = min(cfg['batch_size'], 8), model_args['block_size']
    if os.path.exists(os.path.join(data_dir, 'val.bin')):
        val = loader.open_split(data_dir, 'val', t, model_args['vocab_size'], loader.read_meta(data_dir))
        idx, _ = loader.get_batch(val, loader.eval_offsets(len(val), t, n), t, 'cpu')
        source = f'{n} x {t} tokens of {data_dir}/val.bin'
    else:
        idx = torch.randint(model_args['vocab_size'], (n, t), generator=torch.Generator().manual_seed(0))
        source = f'{n} x {t} random tokens ({data_dir} not found)'
    print(f"{args.ckpt}: {ckpt['model_type']}, " + ', '.join(f'{k}={model_args[k]}' for k in CHOICES
                                                                  if k in model_args) + f", iter {ckpt['iter_num']}")
    print(f"diagnostics on {source}:")
    print(format_diagnostics(model.eval().diagnostics(idx)))


if __name__ == '__main__':
    main()
