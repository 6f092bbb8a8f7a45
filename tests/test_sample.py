"""sample.py end to end from checkpoints that train.py wrote, baseline and accelerated."""
import os

import pytest

from conftest import TINY, run_script


@pytest.fixture(scope='module', params=['gpt', 'nesterov'])  # dropout: sampling must turn it off
def trained(request, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp(f'run_{request.param}')
    run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, f'--model_type={request.param}',
               '--max_iters=60', '--eval_interval=30', '--learning_rate=3e-3', '--dropout=0.1')
    return out


def sample(out_dir, *args, **kw):
    return run_script('sample.py', f'--out_dir={out_dir}', '--max_new_tokens=40', *args, **kw)


def text(proc):
    """The first sample: what follows the configuration and runtime lines."""
    lines = proc.stdout.split('---------------')[0].splitlines()
    while lines and lines[0].startswith(('config: ', 'dtype auto', 'compile auto', 'note: ')):
        lines.pop(0)
    return '\n'.join(lines)


def test_sample_generates_text(trained):
    proc = sample(trained, '--num_samples=2', '--start=def ')
    samples = proc.stdout.split('---------------\n')
    assert len(samples) == 3 and samples[-1] == ''
    first, second = text(proc), samples[1]
    assert all(s.startswith('def ') and len(s.encode()) >= 40 for s in (first, second))


def test_greedy_sampling_is_deterministic_seed_independent_and_the_same_without_the_cache(trained):
    a = sample(trained, '--temperature=0', '--seed=1', '--num_samples=1', '--max_new_tokens=50')
    b = sample(trained, '--temperature=0', '--seed=2', '--num_samples=1', '--max_new_tokens=50', '--use_cache=False')
    assert text(a) == text(b) and len(text(a)) >= 50
    top1 = sample(trained, '--top_k=1', '--temperature=2.0', '--num_samples=1', '--max_new_tokens=50')
    assert text(top1) == text(a)  # top_k=1 keeps the argmax alone, at any temperature


def test_the_seed_sets_the_samples_with_or_without_the_cache(trained):
    """At one seed the cache changes no sampled token (so sampling draws no random numbers but
    the tokens': dropout is off); another seed gives other samples."""
    a, b = (text(sample(trained, f'--seed={s}', '--num_samples=1', '--start=def ')) for s in (1, 2))
    assert a != b
    assert text(sample(trained, '--seed=1', '--num_samples=1', '--start=def ', '--use_cache=False')) == a


def test_prompt_from_file_and_last_checkpoint(trained, tmp_path):
    prompt = tmp_path / 'prompt.txt'
    prompt.write_text('  The for statement\n')  # indented, with its newline: both belong to the prompt
    proc = sample(trained, f'--start=FILE:{prompt}', '--ckpt_name=ckpt.pt', '--num_samples=1', '--temperature=0')
    assert text(proc).startswith('  The for statement\n')


def test_missing_checkpoint_is_one_line_error(tmp_path):
    proc = sample(tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: no checkpoint at {os.path.join(tmp_path, 'ckpt_best.pt')}: " \
                                  f"train one first (python train.py --out_dir={tmp_path})"


def peaked_model(model_type):
    """A tiny untrained model of either kind whose next-token distribution is far from uniform."""
    import torch
    from model_nesterov import build_model, model_arg_names
    torch.manual_seed(0)
    args = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=32, dropout=0.0, bias=False)
    net = build_model(model_type, {k: v for k, v in args.items() if k in model_arg_names(model_type)}).eval()
    with torch.no_grad():
        net.lm_head.weight.mul_(6)  # tied to wte: logits with a std of about 0.7 nats
    return net


def tv(p, q):
    return 0.5 * (p - q).abs().sum().item()


def test_temperature_sets_the_distribution_and_zero_is_argmax():
    """GPT.generate, every model's sampler: one new token for 20,000 copies of a prompt has the
    frequencies softmax(logits / T) (to the sampling noise, TV about 0.016 here: < 0.04), over the
    top_k tokens alone, renormalized, when top_k is set; T = 0 is the argmax at every step."""
    import torch
    net = peaked_model('nesterov')
    prompt = torch.tensor([[3]])
    with torch.no_grad():
        logits = net(prompt)[0][0, -1]
    n = 20000
    for temperature, top_k in ((0.5, None), (2.0, None), (1.0, 4)):
        torch.manual_seed(1)
        new = net.generate(prompt.expand(n, -1), 1, temperature=temperature, top_k=top_k)[:, -1]
        freq = torch.bincount(new, minlength=logits.numel()).float() / n
        scaled = logits / temperature
        if top_k is not None:
            scaled = scaled.masked_fill(scaled < scaled.topk(top_k).values[-1], -float('inf'))
        assert tv(freq, torch.softmax(scaled, -1)) < 0.04, (temperature, top_k)
        if top_k is not None:
            assert set(new.tolist()) == set(logits.topk(top_k).indices.tolist())
    hot, cold = torch.softmax(logits / 2.0, -1), torch.softmax(logits / 0.5, -1)
    assert tv(hot, cold) > 0.2 and tv(hot, torch.softmax(logits, -1)) > 0.1  # the temperatures are told apart
    greedy = net.generate(prompt, 8, temperature=0)
    for t in range(prompt.size(1), greedy.size(1)):
        with torch.no_grad():
            assert greedy[0, t].item() == net(greedy[:, :t])[0][0, -1].argmax().item()


def tensors_in(value):
    """Every tensor in a value: itself, or inside tuples, lists, dicts and objects' attributes."""
    import torch
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    if hasattr(value, '__dict__') and not isinstance(value, (type, torch.nn.Module)):
        return tensors_in(vars(value))
    return []


@pytest.mark.parametrize('model_type', ['gpt', 'nesterov'])
def test_generation_leaves_no_state_behind(model_type):
    """After generate (with the cache, within and past block_size), no module holds a tensor
    other than its parameters and buffers, and the model computes what a fresh copy does."""
    import torch
    net = peaked_model(model_type)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    for max_new_tokens in (6, 20):  # 11 tokens fit in block_size 16; 25 slide the window
        torch.manual_seed(0)
        net.generate(prompt, max_new_tokens, temperature=1.0, use_cache=True)
        for name, module in net.named_modules():
            state = {k: v for k, v in vars(module).items() if k not in ('_parameters', '_buffers', '_modules')}
            assert tensors_in(state) == [], f'{name or "model"} keeps {[k for k in state if tensors_in(state[k])]}'
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        fresh = peaked_model(model_type)
        fresh.load_state_dict(net.state_dict())
        idx = torch.tensor([[2, 7, 1, 8, 2, 8, 1, 8]])
        with torch.no_grad():
            assert torch.equal(net(idx, idx)[0], fresh(idx, idx)[0]) and torch.equal(net(idx)[0], fresh(idx)[0])
            assert torch.equal(net(idx[:, :1])[0], fresh(idx[:, :1])[0])  # one token, as the cache feeds them
