"""
Score a train.py checkpoint (baseline or accelerated: the checkpoint says which) on downstream
tasks with EleutherAI's lm-evaluation-harness, through a model class of ours registered with it.

$ python eval.py --out_dir=out-owt-nesterov --tasks=hellaswag,arc_easy,lambada_openai
$ python eval.py --out_dir=out --task_dir=tests/eval_tasks --tasks=tiny_mc   # a task of your own, offline

Writes out_dir/eval.json (every metric, per task) and out_dir/eval.md (the harness's table) next
to the checkpoint (with --log_samples=True also eval_samples.jsonl: each example's requests and
our model's answers, one line per example); compare.py puts them beside the losses. The harness
downloads its tasks' datasets from the Hugging Face hub the first time; offline, only tasks whose data is on disk
work (task_dir: task YAMLs of your own, e.g. `dataset_path: json` with local data_files).

Log-likelihoods come from our own forward pass in batches, with the checkpoint's tokenizer. A
context longer than block_size is truncated from the left (the continuation is always kept, as
far as block_size allows): a model with block_size 128 sees the last 128 tokens of a long
question. An empty context is conditioned on the tokenizer's document separator (GPT-2's
<|endoftext|>, a newline for bytes). Generation is greedy, one request at a time, with the KV
cache (model.generate), cut at the task's stop strings.
"""
import difflib
import json
import os
import sys

import torch
import torch.nn.functional as F

import runtime
from checkpoint import load_checkpoint
from configurator import UserError, configure_globals, exit_on_user_error
from model_nesterov import build_model
from tokenizer import get_tokenizer

sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do

# -----------------------------------------------------------------------------
out_dir = 'out'  # the run directory train.py wrote; the results go there too
ckpt_name = 'ckpt_best.pt'  # 'ckpt_best.pt' (best validation loss) or 'ckpt.pt' (last)
tasks = 'hellaswag,arc_easy,lambada_openai'  # comma-separated harness task (or group) names
task_dir = ''  # a directory of task YAMLs of your own, searched before the harness's built-in tasks
num_fewshot = 0  # examples in each prompt
limit = 0  # if > 0: only the first `limit` examples of each task (a quick look, not a score)
batch_size = 32  # sequences per forward pass when scoring
max_gen_tokens = 256  # generation length when a task does not set max_gen_toks
seed = 1337
device = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # as in train.py
log_samples = False  # True: also out_dir/eval_samples.jsonl, every example's requests and our model's answers
# -----------------------------------------------------------------------------
configure_globals(globals())
# -----------------------------------------------------------------------------
task_names = [t.strip() for t in tasks.split(',') if t.strip()]
if not task_names:
    raise UserError("tasks='': name at least one task, e.g. --tasks=hellaswag", exit_code=2)
for k in ('batch_size', 'max_gen_tokens'):
    if globals()[k] < 1:
        raise UserError(f"{k}={globals()[k]}: must be >= 1", exit_code=2)
if num_fewshot < 0 or limit < 0:
    raise UserError(f"num_fewshot={num_fewshot}, limit={limit}: both must be >= 0", exit_code=2)
if task_dir and not os.path.isdir(task_dir):
    raise UserError(f"task_dir={task_dir!r} is not a directory of task YAML files", exit_code=2)

ckpt_path = os.path.join(out_dir, ckpt_name)
ckpt = load_checkpoint(ckpt_path)
if not isinstance(ckpt.get('meta'), dict) or 'tokenizer' not in ckpt['meta']:
    raise UserError(f"{ckpt_path} names no tokenizer (meta.tokenizer): it is not a checkpoint saved by train.py")
args = ckpt['model_args']
# every batch has another length: compiling would not pay
rt = runtime.decide(runtime.setup(device, dtype, compile=False),
                    runtime.Step(ckpt['model_type'], args, batch_size=batch_size, optimizer=None))
torch.manual_seed(seed)
model = build_model(ckpt['model_type'], args)
model.load_state_dict(ckpt['model'])
model.eval().to(rt.device)
tok = get_tokenizer(ckpt['meta']['tokenizer'])

import lm_eval  # noqa: E402  (after the checks: importing the harness takes seconds)
from lm_eval.api.model import LM  # noqa: E402
from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window, make_table  # noqa: E402


@register_model('yuriiformer')
class HarnessModel(LM):
    """A train.py model as the harness sees it: text in, log-likelihoods and generations out."""

    def __init__(self, model, tok, rt, batch_size, max_gen_tokens):
        super().__init__()
        self.model, self.tok, self.rt = model, tok, rt
        self.batch_size, self.max_gen_tokens = batch_size, max_gen_tokens
        self.block_size = model.config.block_size
        # what the training data puts between documents: the context of a text with none
        self.prefix = [tok.eot_token] if tok.eot_token is not None else tok.encode('\n')

    def encode_pair(self, context, continuation):
        """(context ids, continuation ids), the harness's convention: trailing spaces of the context
        belong to the continuation, and the pair is encoded whole so that BPE merges as in text."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        if not context:
            return self.prefix, self.tok.encode(continuation)
        ctx, whole = self.tok.encode(context), self.tok.encode(context + continuation)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def score(self, pairs):
        """[(sum of log p(continuation | context), whether greedy decoding gives the continuation)]
        for (context ids, continuation ids) pairs; batches of similar length, longest first."""
        results = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            # the last block_size + 1 tokens: inputs are all but the last, targets all but the first
            seqs = [(pairs[i][0] + pairs[i][1])[-(self.block_size + 1):] for i in batch]
            n_cont = [min(len(pairs[i][1]), len(s) - 1) for i, s in zip(batch, seqs)]
            T = max(len(s) for s in seqs) - 1
            x = torch.zeros(len(batch), T, dtype=torch.long)
            y = torch.full((len(batch), T), -1, dtype=torch.long)  # -1: not scored (context, padding)
            for row, (s, n) in enumerate(zip(seqs, n_cont)):
                x[row, :len(s) - 1] = torch.tensor(s[:-1])
                y[row, len(s) - 1 - n:len(s) - 1] = torch.tensor(s[-n:])
            x, y = x.to(self.rt.device), y.to(self.rt.device)
            with self.rt.autocast():
                logits, _ = self.model(x, y)  # with targets: the logits of every position (b, T, vocab)
            logp = F.log_softmax(logits.float(), dim=-1)
            scored = y >= 0
            token_logp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0] * scored  # (b, T)
            greedy = (logp.argmax(-1) == y) | ~scored
            for row, i in enumerate(batch):
                results[i] = (token_logp[row].sum().item(), bool(greedy[row].all()))
        return results

    def loglikelihood(self, requests):
        return self.score([self.encode_pair(*r.args) for r in requests])

    def loglikelihood_rolling(self, requests):
        """Each text's total log-likelihood in disjoint windows of block_size tokens, every token
        predicted once with as much context as fits (the harness's windows)."""
        windows, owner = [], []
        for n, r in enumerate(requests):
            for w in get_rolling_token_windows(self.tok.encode(r.args[0]), self.prefix[-1], self.block_size, 1):
                windows.append(make_disjoint_window(w))
                owner.append(n)
        totals = [0.0] * len(requests)
        for n, (logp, _) in zip(owner, self.score(windows)):
            totals[n] += logp
        return totals

    @torch.no_grad()
    def generate_until(self, requests):
        out = []
        for r in requests:
            context, kwargs = r.args
            until = kwargs.get('until') or []
            until = [until] if isinstance(until, str) else until
            max_new = kwargs.get('max_gen_toks', self.max_gen_tokens)
            temperature = float(kwargs.get('temperature', 0.0)) if kwargs.get('do_sample') else 0.0
            ids = (self.tok.encode(context) or self.prefix)[-self.block_size:]  # left-truncated
            x = torch.tensor([ids], dtype=torch.long, device=self.rt.device)
            with self.rt.autocast():
                y = self.model.generate(x, max_new, temperature=temperature, use_cache=True)
            text = self.tok.decode(y[0, len(ids):].tolist())
            cut = min([text.find(s) for s in until if s in text], default=len(text))
            out.append(text[:cut])
        return out


# the tasks: task_dir's are indexed at once; the harness's ~14,000 task files only when a name is not there
manager = TaskManager(include_path=task_dir, include_defaults=False) if task_dir else None
if manager is None or any(t not in manager.all_tasks for t in task_names):
    manager = TaskManager(include_path=task_dir or None)
for t in task_names:
    if t not in manager.all_tasks:
        match = difflib.get_close_matches(t, manager.all_tasks, n=1)
        raise UserError(f"unknown task {t!r}" + (f" (did you mean {match[0]!r}?)" if match else "") +
                        f": `lm-eval ls tasks` lists the harness's tasks" + (f"; {task_dir} was searched first" if task_dir else ""),
                        exit_code=2)

lm = HarnessModel(model, tok, rt, batch_size, max_gen_tokens)
try:
    results = lm_eval.simple_evaluate(model=lm, tasks=task_names, task_manager=manager, num_fewshot=num_fewshot,
                                      limit=limit or None, log_samples=log_samples, random_seed=seed,
                                      numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
except (FileNotFoundError, ConnectionError) as e:  # the datasets library's missing file / no network (offline)
    raise UserError(f"the data of task(s) {', '.join(task_names)} is not available here ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}): the harness downloads hub datasets once, "
                    f"online (HF_DATASETS_OFFLINE must be unset); a local task's data_files must exist") from e

report = dict(checkpoint=ckpt_path, model_type=ckpt['model_type'], iter_num=ckpt.get('iter_num'),
              tokenizer=tok.name, block_size=model.config.block_size, num_fewshot=num_fewshot,
              limit=limit or None, lm_eval_version=lm_eval.__version__,
              results={t: {k: v for k, v in r.items() if k not in ('name', 'alias')}
                       for t, r in results['results'].items()},
              samples={t: n['effective'] for t, n in results['n-samples'].items()})
table = make_table(results)
outputs = [('eval.json', json.dumps(report, indent=1) + '\n'), ('eval.md', table)]
if log_samples:  # what each request asked and what the model answered: log-likelihoods, greedy or not, generations
    outputs.append(('eval_samples.jsonl', ''.join(
        json.dumps(dict(task=t, doc_id=x['doc_id'], doc=x['doc'], target=x['target'],
                        requests=[list(a) for a in x['arguments']], responses=x['resps']), default=str) + '\n'
        for t, samples in results['samples'].items() for x in samples)))
for name, text in outputs:
    path = os.path.join(out_dir, name)
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)  # a killed run leaves the previous results whole
print(table)
print(f"wrote {os.path.join(out_dir, 'eval.json')}, " + ', '.join(name for name, _ in outputs[1:]))
