"""
Kill -9 a short training run at random moments, resume it each time, and count what went wrong:
checkpoints that do not load, resumes that fail, temporary files left behind, log.jsonl
iterations that go backwards or repeat, and a best model lost: a ckpt_best.pt whose val loss is
worse than the best_val_loss ckpt.pt claims (after any kill), or, at the end, a ckpt_best.pt
that is not the evaluation with the lowest logged val loss. Every eval step saves, so timed
kills land inside saves too; every other kill lands right after a random rename into out_dir
(scripts/kill_hook): between the steps of a save, inside the best-checkpoint step included.

$ python scripts/kill_test.py --kills=20 --out_dir=/tmp/kill        # prints the counts; exit 1 on any fault
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from checkpoint import load_checkpoint  # noqa: E402
from configurator import UserError  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument('--kills', type=int, default=10)
parser.add_argument('--max_iters', type=int, default=40, help='length of the run that is killed and resumed')
parser.add_argument('--out_dir', default='out-kill-test')
parser.add_argument('--data_root', default='data')
parser.add_argument('--seed', type=int, default=0, help='seeds the kill times')
args = parser.parse_args()
args.out_dir = os.path.abspath(args.out_dir)  # the kill hook matches the paths train.py renames into

train = [sys.executable, os.path.join(ROOT, 'train.py'), f'--out_dir={args.out_dir}', f'--data_root={args.data_root}',
         '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8', '--eval_iters=2',
         '--eval_interval=1', '--log_interval=1', f'--max_iters={args.max_iters}', f'--lr_decay_iters={args.max_iters}',
         '--warmup_iters=2', '--dtype=float32', '--compile=False']
env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'scripts', 'kill_hook'), ROOT]),
           OMP_NUM_THREADS='1', WANDB_MODE='disabled')
rng = random.Random(args.seed)
shutil.rmtree(args.out_dir, ignore_errors=True)
faults = dict(corrupt_checkpoints=0, failed_resumes=0, stale_temporaries=0, log_not_monotone=0, best_lost=0,
              best_not_lowest=0)
kills = 0


def started():
    return os.path.exists(os.path.join(args.out_dir, 'ckpt.pt'))


def check(after_start):
    """What a user finds in out_dir: every checkpoint loads, and (once a run has started on it)
    no temporary file of a killed save is left and the log's iterations never go back."""
    ckpts = {}
    for name in ('ckpt.pt', 'ckpt_best.pt'):
        path = os.path.join(args.out_dir, name)
        if os.path.exists(path):
            try:
                ckpts[name] = load_checkpoint(path)
            except UserError:
                faults['corrupt_checkpoints'] += 1
    if 'ckpt.pt' in ckpts:  # the best any checkpoint has seen is on disk
        best = ckpts.get('ckpt_best.pt', {}).get('best_val_loss', float('inf'))
        faults['best_lost'] += best > ckpts['ckpt.pt']['best_val_loss']
    if after_start:
        faults['stale_temporaries'] += sum('.tmp' in f for f in os.listdir(args.out_dir))
        with open(os.path.join(args.out_dir, 'log.jsonl')) as f:
            iters = [(r['event'], r['iter']) for r in map(json.loads, f)]
        for event in ('train', 'eval'):
            seq = [i for e, i in iters if e == event]
            faults['log_not_monotone'] += any(b <= a for a, b in zip(seq, seq[1:]))
        with open(os.path.join(args.out_dir, 'log.jsonl')) as f:
            evals = [r for r in map(json.loads, f) if r['event'] == 'eval']
        lowest = min(evals, key=lambda r: r['val_loss'])  # the first of equals, as train.py's strict '<'
        best = ckpts.get('ckpt_best.pt', {})
        faults['best_not_lowest'] += (best.get('iter_num'), best.get('best_val_loss')) != (lowest['iter'], lowest['val_loss'])


while kills < args.kills:
    resume = started()
    at_rename = kills % 2 == 1  # it kills itself after a random rename into out_dir (up to two per eval)
    hook = dict(KILL_AFTER_REPLACE=f'{rng.randint(1, 2 * args.max_iters)}:{os.path.abspath(args.out_dir)}')
    proc = subprocess.Popen(train + (['--init_from=resume'] if resume else []), env={**env, **(hook if at_rename else {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if at_rename:
        proc.wait()
    else:
        time.sleep(rng.uniform(2.0, 6.0))  # start-up takes a few seconds: kills land in training and in saves
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    kills += proc.returncode == -signal.SIGKILL
    if proc.returncode not in (0, -signal.SIGKILL):
        faults['failed_resumes' if resume else 'corrupt_checkpoints'] += 1
        print(f"run exited {proc.returncode}: {err.strip().splitlines()[-1:]}")
    check(after_start=False)
    if proc.returncode == 0:
        shutil.rmtree(args.out_dir)  # it finished before the kill: start over

final = subprocess.run(train + (['--init_from=resume'] if started() else []), env=env, capture_output=True, text=True)
if final.returncode != 0:
    faults['failed_resumes'] += 1
check(after_start=True)
print(json.dumps(dict(kills=kills, **faults)))
sys.exit(1 if any(faults.values()) else 0)
