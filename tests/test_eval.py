"""eval.py as a user runs it: a checkpoint of each tokenizer scored by lm-evaluation-harness on the
local task in tests/eval_tasks, the harness's accuracy against a hand computation from our
model's log-likelihoods, and its one-line errors. Offline: HF_DATASETS_OFFLINE=1 (conftest)."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from checkpoint import load_checkpoint
from conftest import ROOT, TINY, run_script, write_dataset
from model_nesterov import build_model
from tokenizer import get_tokenizer

TASK_DIR = os.path.join(ROOT, 'tests', 'eval_tasks')


@pytest.fixture(scope='module', params=['bytes', 'gpt2'])
def evaluated(request, tmp_path_factory, data_root):
    """A 3-step checkpoint (a byte-level gpt, a GPT-2 BPE nesterov) and eval.py's report on tiny_mc."""
    tmp = tmp_path_factory.mktemp(f'eval_{request.param}')
    if request.param == 'bytes':
        data = [f'--data_root={data_root}', '--model_type=gpt']
    else:
        rng = np.random.default_rng(0)
        write_dataset(str(tmp), 'bpe', rng.integers(0, 50257, 2000), rng.integers(0, 50257, 500), 'gpt2', 50257)
        data = [f'--data_root={tmp}', '--dataset=bpe', '--model_type=nesterov']
    out = tmp / 'out'
    run_script('train.py', *TINY, *data, '--max_iters=3', '--eval_interval=3', '--dtype=float32', f'--out_dir={out}')
    proc = run_script('eval.py', f'--out_dir={out}', f'--task_dir={TASK_DIR}', '--tasks=tiny_mc,tiny_gen',
                      '--batch_size=5', '--dtype=float32', '--log_samples=True')
    return out, json.loads((out / 'eval.json').read_text()), proc


def load_model(out):
    ckpt = load_checkpoint(os.path.join(out, 'ckpt_best.pt'))
    model = build_model(ckpt['model_type'], ckpt['model_args']).eval()
    model.load_state_dict(ckpt['model'])
    return model, get_tokenizer(ckpt['meta']['tokenizer']), ckpt['model_args']['block_size']


def samples(out, task):
    with open(out / 'eval_samples.jsonl') as f:
        return sorted((r for r in map(json.loads, f) if r['task'] == task), key=lambda r: r['doc_id'])


def hand_scores(out):
    """acc and acc_norm of tiny_mc from our model's log-likelihoods, one unbatched forward pass per
    choice: log p(' ' + choice | question), the pick is the argmax (acc) or the argmax per character
    of the choice (acc_norm); and the log-likelihoods, per question and choice."""
    model, tok, block_size = load_model(out)
    hits, hits_norm, all_lls = [], [], []
    with open(os.path.join(TASK_DIR, 'tiny_mc.jsonl')) as f:
        docs = [json.loads(line) for line in f]
    for doc in docs:
        lls = []
        for choice in doc['choices']:
            ctx, whole = tok.encode(doc['question']), tok.encode(doc['question'] + ' ' + choice)
            n = len(whole) - len(ctx)  # the choice's tokens
            seq = whole[-(block_size + 1):]  # a long question loses its start (block_size 32 here)
            x, y = torch.tensor([seq[:-1]]), torch.tensor([seq[1:]])
            with torch.no_grad():
                logits, _ = model(x, y)
            lls.append(F.log_softmax(logits[0], -1)[torch.arange(len(seq) - 1), y[0]][-n:].sum().item())
        hits.append(int(np.argmax(lls)) == doc['answer'])
        hits_norm.append(int(np.argmax([ll / len(c) for ll, c in zip(lls, doc['choices'])])) == doc['answer'])
        all_lls.append(lls)
    return np.mean(hits), np.mean(hits_norm), len(docs), all_lls


def test_harness_accuracy_and_log_likelihoods_equal_a_hand_computation(evaluated):
    out, report, proc = evaluated
    acc, acc_norm, n, lls = hand_scores(out)
    r = report['results']['tiny_mc']
    assert report['samples'] == {'tiny_mc': n, 'tiny_gen': 4}
    # every choice's log-likelihood, batched and padded by eval.py, as the unbatched pass gives it
    logged = [[choice[0][0] for choice in x['responses']] for x in samples(out, 'tiny_mc')]
    assert len(logged) == n and all(np.allclose(a, b, rtol=0, atol=1e-4) for a, b in zip(logged, lls))
    assert r['acc,none'] == pytest.approx(acc, abs=1e-9) and r['acc_norm,none'] == pytest.approx(acc_norm, abs=1e-9)
    assert report['tokenizer'] == load_checkpoint(os.path.join(out, 'ckpt_best.pt'))['meta']['tokenizer']
    table = (out / 'eval.md').read_text()
    assert table.startswith('|') and '|tiny_mc|' in table.replace(' ', '') and table.strip() in proc.stdout


def test_generation_tasks_get_the_models_greedy_continuation_cut_at_the_stop_string(evaluated):
    """tiny_gen: what the harness scored is what greedy decoding without the cache gives, cut at
    the task's newline; exact_match is their agreement with the targets."""
    out, report, _ = evaluated
    model, tok, block_size = load_model(out)
    hits = []
    for x in samples(out, 'tiny_gen'):
        ids = tok.encode(x['doc']['context'])[-block_size:]
        with torch.no_grad():
            y = model.generate(torch.tensor([ids]), 8, temperature=0, use_cache=False)
        text = tok.decode(y[0, len(ids):].tolist()).split('\n')[0]
        assert x['responses'] == [[text]]
        hits.append(text == x['target'])
    assert len(hits) == 4 and report['results']['tiny_gen']['exact_match,none'] == pytest.approx(np.mean(hits))


@pytest.mark.parametrize('args, code, message', [
    (['--tasks=tiny_mcc'], 2, "unknown task 'tiny_mcc' (did you mean 'tiny_mc'?)"),
    (['--tasks=no_data'], 1, 'the data of task(s) no_data is not available here (FileNotFoundError'),
    (['--tasks=hub_task'], 1, 'the data of task(s) hub_task is not available here'),
    (['--ckpt_name=weights.pt'], 1, 'lacks model, model_args, model_type'),
])
def test_bad_input_is_one_line(evaluated, tmp_path, args, code, message):
    out, _, _ = evaluated
    if 'gpt2' in str(out):
        pytest.skip('the errors do not depend on the tokenizer')
    tasks = tmp_path / 'tasks'
    tasks.mkdir()
    for name, source in (('no_data', f'dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path}/gone.jsonl\n'),
                         ('hub_task', 'dataset_path: Rowan/hellaswag\n'), ('tiny_mc', None)):
        text = (open(os.path.join(TASK_DIR, 'tiny_mc.yaml')).read().replace('task: tiny_mc', f'task: {name}')
                .replace('dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: tests/eval_tasks/tiny_mc.jsonl\n',
                         source or f'dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {TASK_DIR}/tiny_mc.jsonl\n'))
        (tasks / f'{name}.yaml').write_text(text)
    torch.save({'weights': torch.zeros(2)}, out / 'weights.pt')
    before = sorted(os.listdir(out))
    proc = run_script('eval.py', f'--out_dir={out}', f'--task_dir={tasks}', '--tasks=tiny_mc', *args, check=False)
    assert proc.returncode == code
    assert proc.stderr.strip().splitlines()[-1].startswith('error: ') and message in proc.stderr.splitlines()[-1]
    assert sorted(os.listdir(out)) == before  # nothing written
