"""
A small mutation check of the tests of train.py, loader.py and sample.py: each mutation is one
realistic one-line defect, put into a temporary copy of the repo, and it is caught when the test
files related to its file fail there (pytest -x: the first failure ends the run). First the
unmutated copy runs as the control: it must pass, or a failure would say nothing about a mutation.
Prints each mutation as caught (with the first test that failed) or missed, and the score.

$ python scripts/mutation_check.py                 # all of them (long: test_train.py per mutation)
$ python scripts/mutation_check.py --only 3 7      # some of them, by number
$ python scripts/mutation_check.py --list          # what they are
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the test files that judge a mutation of each file, fastest first
RELATED = {
    'train.py': ['tests/test_train.py'],
    'loader.py': ['tests/test_loader.py', 'tests/test_train.py'],
    'sample.py': ['tests/test_sample.py'],
}
# (file, old, new, what a user would see): old occurs exactly once in file
MUTATIONS = [
    ('train.py', "iter_num, best_val_loss, train_time = ckpt['iter_num'], ckpt['best_val_loss'], ckpt['train_time']",
     "iter_num, best_val_loss, train_time = ckpt['iter_num'], float('inf'), ckpt['train_time']",
     'resume forgets the best val loss: the first eval after it replaces ckpt_best.pt, better or not'),
    ('train.py', "data_rng.set_state(ckpt['rng_state']['data'])", "data_rng.manual_seed(seed)",
     'resume restarts the data order'),
    ('train.py', "loss = loss / grad_accum_local  # average", "loss = loss  # average",
     'micro-batch losses summed, not averaged: the logged loss grows with gradient_accumulation_steps'),
    ('train.py', "X, Y = loader.get_batch(splits['train'], offsets[micro_step + 1], block_size, rt.device)",
     "X, Y = loader.get_batch(splits['train'], offsets[micro_step], block_size, rt.device)",
     'the first micro-batch of each step used twice'),
    ('train.py', "torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)",
     "torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.SUM)",
     'under torchrun the logged loss is the sum over ranks'),
    ('train.py', "group['lr'] = group['base_lr'] * lr_scale", "group['lr'] = learning_rate * lr_scale",
     'every group at the AdamW lr: no scalar_lr_mult, Muon at the AdamW lr'),
    ('train.py', "coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))",
     "coeff = 0.5 * (1.0 + math.cos(0.5 * math.pi * decay_ratio))",
     'the cosine stops half-way: lr jumps down to min_lr at lr_decay_iters'),
    ('train.py', "if r['iter'] <= resumed_at]", "if r['iter'] < resumed_at]",
     'resume drops the eval at its own iteration from the log'),
    ('train.py', "if (iter_num % eval_interval == 0 or last_iter) and iter_num != resumed_at or eval_only:",
     "if iter_num % eval_interval == 0 and iter_num != resumed_at or eval_only:",
     'no final eval or checkpoint when max_iters is not a multiple of eval_interval'),
    ('train.py', "tokens_per_iter = gradient_accumulation_steps * batch_size * block_size",
     "tokens_per_iter = grad_accum_local * batch_size * block_size",
     'under torchrun the token count is one rank\'s'),
    ('train.py', "'tokens': iter_num * tokens_per_iter", "'tokens': (iter_num + 1) * tokens_per_iter",
     'the logged token count is one step ahead'),
    ('train.py', "best_val_loss = min(best_val_loss, losses['val'])", "best_val_loss = losses['val']",
     'best_val_loss is the last val loss: ckpt_best.pt follows any eval better than the one before'),
    ('train.py', "X_diag, _ = loader.get_batch(splits['val'], loader.eval_offsets(len(splits['val'])",
     "X_diag, _ = loader.get_batch(splits['train'], loader.eval_offsets(len(splits['train'])",
     'the logged diagnostics computed on a training batch'),
    ('loader.py', "return torch.randint(n_tokens - block_size, (n,), generator=generator)",
     "return torch.randint(n_tokens - block_size - 1, (n,), generator=generator)",
     'the last training window is never drawn'),
    ('loader.py', "return torch.linspace(0, n_tokens - block_size - 1, n).long()",
     "return torch.linspace(0, n_tokens - block_size, n).long()",
     'the last evaluation window runs one token past the split'),
    ('loader.py', "if size < 2 * (block_size + 1):", "if size < 2 * block_size:",
     'a split of exactly block_size tokens passes the check, then fails in a traceback'),
    ('loader.py', "return ((meta['vocab_size'] + 63) // 64) * 64", "return (meta['vocab_size'] // 64 + 1) * 64",
     'a vocabulary already a multiple of 64 padded by 64 more'),
    ('loader.py', "if top >= vocab_size:", "if top > vocab_size:",
     'a token id equal to vocab_size passes the check, then fails in a traceback'),
    ('sample.py', "torch.manual_seed(seed)", "torch.manual_seed(1337)",
     '--seed ignored: every seed gives the same samples'),
    ('sample.py', "top_k=top_k, use_cache=use_cache)", "top_k=None, use_cache=use_cache)",
     '--top_k ignored'),
    ('sample.py', "start = f.read()", "start = f.read().strip()",
     'a prompt file loses its leading and trailing whitespace (its last newline)'),
    ('sample.py', "model.eval().to(rt.device)", "model.to(rt.device)",
     'sampling in train mode: dropout on, from a model trained with dropout'),
]


def repo_files():
    """The files a clone has: tracked, and untracked ones git does not ignore."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def run_mutation(file, old, new, tests, timeout):
    """'caught' or 'missed' (or 'invalid: ...' when the mutation does not apply), the first test that
    failed ('' if none) and the seconds it took. old=new=None runs the unmutated copy: the control."""
    with open(os.path.join(ROOT, file)) as f:
        source = f.read()
    if old is not None and source.count(old) != 1:
        return f'invalid: {old!r} occurs {source.count(old)} times in {file}', '', 0.0
    mutated = source if old is None else source.replace(old, new)
    try:
        compile(mutated, file, 'exec')
    except SyntaxError as e:
        return f'invalid: {e}', '', 0.0
    with tempfile.TemporaryDirectory(prefix='mutation-') as copy:
        for f in repo_files():
            os.makedirs(os.path.dirname(os.path.join(copy, f)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(copy, f))
        with open(os.path.join(copy, file), 'w') as f:
            f.write(mutated)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-x', '-n0', '-p', 'no:cacheprovider', *tests],
                                  cwd=copy, capture_output=True, text=True, timeout=timeout)
            verdict = 'missed' if proc.returncode == 0 else 'caught'
            failed = next((line.split()[1] for line in proc.stdout.splitlines() if line.startswith(('FAILED ', 'ERROR '))),
                          '')
        except subprocess.TimeoutExpired:
            verdict, failed = 'caught (timeout)', ''  # a hang is a failure a user sees
        return verdict, failed, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--only', type=int, nargs='+', help='run these mutations (numbers from --list)')
    parser.add_argument('--list', action='store_true', help='print the mutations and exit')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per mutation')
    args = parser.parse_args()
    chosen = [(i, m) for i, m in enumerate(MUTATIONS, 1) if not args.only or i in args.only]
    if args.list:
        for i, (file, _, _, what) in chosen:
            print(f'{i:>2} {file}: {what}')
        return
    # the control: the unmutated copy must pass every test file that judges, or a 'caught' says nothing
    tests = list(dict.fromkeys(t for _, (file, *_) in chosen for t in RELATED[file]))
    verdict, failed, seconds = run_mutation(chosen[0][1][0], None, None, tests, args.timeout)
    print(f' 0 {"control" if verdict == "missed" else "FAILED"}  the unmutated copy against {" ".join(tests)} '
          f'({seconds:.0f} s){" fails " + failed if failed else ""}', flush=True)
    if verdict != 'missed':
        sys.exit(f'error: the unmutated copy fails {failed or " ".join(tests)}: fix that before judging mutations')
    caught = 0
    for i, (file, old, new, what) in chosen:
        verdict, failed, seconds = run_mutation(file, old, new, RELATED[file], args.timeout)
        caught += verdict.startswith('caught')
        print(f'{i:>2} {verdict:<8} {file}: {what} ({seconds:.0f} s){" by " + failed if failed else ""}', flush=True)
    print(f'score: {caught} of {len(chosen)} caught')


if __name__ == '__main__':
    main()
