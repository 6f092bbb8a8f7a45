"""
The GPU check: everything that can only be seen on a GPU, in one run that fits in 10 minutes on
one H100, with every number it measures written to OUT/gpu_check.json.

$ python scripts/gpu_check.py --out=gpu_check          # on a GPU machine
$ python scripts/gpu_check.py --tiny --out=/tmp/gc     # the same steps at a tiny shape, on any CPU (tested)

1. the test suite's CUDA-marked tests (pytest -m cuda): bf16 autocast, fused AdamW, flash
   attention, torch.compile and the KV cache on the device;
2. bench.py at GPT-2 small (12/12/768, block 1024) for the baseline and nesterov, compiled, in
   bf16: ms/iter, tokens/s, MFU, peak memory;
3. config/train_tinystories_baseline.py and _nesterov.py (the paper's runs), 100 steps, then
   resumed to 200, on Zipf-distributed random tokens of GPT-2's vocabulary (a unigram law a model
   can learn, so the loss must fall): no NaN, checkpoints saved and resumed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configurator import UserError, exit_on_user_error  # noqa: E402

VOCAB = 50257  # GPT-2's, so that the paper configs' padded 50304 applies


def write_zipf_tokens(data_dir, n_train, n_val, seed=0):
    """A dataset as prepare/ writes it: token ids drawn i.i.d. from a Zipf law over GPT-2's vocab."""
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    p /= p.sum()
    for split, n in (('train', n_train), ('val', n_val)):
        rng.choice(VOCAB, size=n, p=p).astype(np.uint16).tofile(os.path.join(data_dir, f'{split}.bin'))
    with open(os.path.join(data_dir, 'meta.json'), 'w') as f:
        json.dump(dict(tokenizer='gpt2', vocab_size=VOCAB, train_tokens=n_train, val_tokens=n_val,
                       source=f'Zipf(1) over {VOCAB} ids, seed {seed}'), f)


def run(step, cmd, log):
    """One step of the check; its output goes to the log, its failure stops the check in one line."""
    t0 = time.perf_counter()
    print(f"[{step}] {' '.join(cmd)}", flush=True)
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=ROOT, WANDB_MODE='disabled'))
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 5):  # pytest's 5: no tests collected (none are CUDA-marked here)
        tail = open(log).read().strip().splitlines()[-1:] or ['']
        raise UserError(f"gpu check step {step} failed (exit {proc.returncode}, {log}): {tail[0]}")
    print(f"    done in {seconds:.0f} s", flush=True)
    return seconds


def evals(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['event'] == 'eval']


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out', default='gpu_check', help='where the logs, runs and gpu_check.json go')
    parser.add_argument('--tiny', action='store_true', help='a tiny shape, for checking the script on a CPU')
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    report = dict(tiny=args.tiny, date=time.strftime('%Y-%m-%d %H:%M'), seconds={})
    py = sys.executable

    report['seconds']['cuda_tests'] = run('1 cuda tests', [py, '-m', 'pytest', '-q', '-n', '0', '-m', 'cuda', 'tests'],
                                          os.path.join(out, 'cuda_tests.log'))

    bench = ['--shape=gpt2', '--compile=True', '--dtype=bfloat16', '--bench_iters=10', '--dataset=random']
    if args.tiny:
        bench = ['--shape=cpu', '--n_layer=2', '--n_embd=32', '--n_head=2', '--block_size=32', '--batch_size=4',
                 '--compile=False', '--dtype=float32', '--bench_iters=2', '--warmup_iters=1', '--dataset=random']
    report['seconds']['bench'] = run('2 bench', [py, 'bench.py', '--arms=baseline,nesterov', *bench,
                                                 f'--out={out}/bench.json'], os.path.join(out, 'bench.log'))
    with open(os.path.join(out, 'bench.json')) as f:
        b = json.load(f)
    report['bench'] = dict(machine=b['machine'], ratios=b['ratios'],
                           results=[{k: r[k] for k in ('arm', 'compile', 'dtype', 'ms_per_iter', 'tokens_per_s', 'mfu',
                                                       'peak_mem_mb', 'params_total')} for r in b['results']])

    data_root = os.path.join(out, 'data')
    n_train = 200_000 if args.tiny else 20_000_000
    write_zipf_tokens(os.path.join(data_root, 'zipf'), n_train, n_train // 20)
    # the paper's recipe at a quarter of its batch (8 x 4 x 1024 tokens), so that both arms fit the time
    train = [f'--data_root={data_root}', '--dataset=zipf', '--eval_iters=10', '--log_interval=10', '--warmup_iters=20',
             '--lr_decay_iters=200', '--batch_size=8', '--gradient_accumulation_steps=4', '--wandb_log=False']
    if args.tiny:
        train += ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4', '--compile=False',
                  '--dtype=float32', '--gradient_accumulation_steps=1', '--max_iters=20', '--lr_decay_iters=20',
                  '--warmup_iters=2', '--eval_iters=2', '--learning_rate=1e-2']
    report['training'] = {}
    for arm in ('baseline', 'nesterov'):
        run_dir = os.path.join(out, f'run-{arm}')
        config = os.path.join('config', f'train_tinystories_{arm}.py')
        half, full = (10, 20) if args.tiny else (100, 200)
        report['seconds'][f'train_{arm}'] = run(f'3 train {arm}', [py, 'train.py', config, *train, f'--out_dir={run_dir}',
                                                                   f'--max_iters={half}', f'--eval_interval={half}'],
                                                os.path.join(out, f'train_{arm}.log'))
        report['seconds'][f'resume_{arm}'] = run(f'3 resume {arm}', [py, 'train.py', config, *train, f'--out_dir={run_dir}',
                                                                     f'--max_iters={full}', f'--eval_interval={half}',
                                                                     '--init_from=resume'],
                                                 os.path.join(out, f'resume_{arm}.log'))
        e = evals(run_dir)
        first, last = e[0]['val_loss'], e[-1]['val_loss']
        if [r['iter'] for r in e] != [0, half, full] or not (np.isfinite(last) and last < first - 0.1):
            raise UserError(f"gpu check: {arm} did not learn or resume (evals {[(r['iter'], r['val_loss']) for r in e]})")
        report['training'][arm] = dict(val_loss_first=first, val_loss_last=last, evals=[r['iter'] for r in e])
    with open(os.path.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))
    print(f"gpu check passed: {out}/gpu_check.json")


if __name__ == '__main__':
    sys.excepthook = exit_on_user_error
    main()
