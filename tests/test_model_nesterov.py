"""
Tests for model_nesterov.py: the oracle count, the equivalences that tie the suite to the
baseline (gd == GPT, polyak == nesterov at mu = 0), causality, gradients, checkpoints, the
optimizer groups and the scalar-printing command. CPU, tiny shapes: python -m pytest tests/test_model_nesterov.py
"""
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import model
import model_nesterov
from model_nesterov import NesterovConfig, NesterovGPT

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(n_layer=3, n_head=2, n_embd=32, vocab_size=64, block_size=16, bias=True, dropout=0.0)
VARIANTS = [(m, s) for m in ('gd', 'polyak', 'nesterov') for s in ('lie_trotter', 'euler')]
MOMENTUM_VARIANTS = [v for v in VARIANTS if v[0] != 'gd']


def make(seed=0, **kw):
    torch.manual_seed(seed)
    return NesterovGPT(NesterovConfig(**{**TINY, **kw})).eval()


def batch(seed=1, b=2, t=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY['vocab_size'], (b, t), generator=g)


def perturb(net, std=0.05):
    """A trained-looking state: weights off their init, so every term of the update matters."""
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 0:  # a learned scalar's raw value: anywhere, not near its init
                p.copy_(torch.randn(()))
            else:
                p.add_(std * torch.randn_like(p))
    return net


def all_logits(net, idx):
    """Logits at every position (the head computes them all when given targets)."""
    return net(idx, idx)[0]


@pytest.mark.parametrize('velocity_norm', ['shared', 'per_substep', 'none'])
@pytest.mark.parametrize('momentum,splitting', VARIANTS)
def test_oracle_count(momentum, splitting, velocity_norm):
    net = make(momentum=momentum, splitting=splitting, velocity_norm=velocity_norm)
    calls = {}
    for name, mod in net.named_modules():
        if isinstance(mod, (model.CausalSelfAttention, model.MLP)):
            calls[name] = 0
            mod.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls[name] + 1))
    net(batch())
    n = TINY['n_layer']
    assert sum(1 for k in calls if k.endswith('attn')) == n and sum(1 for k in calls if k.endswith('mlp')) == n
    assert all(c == 1 for c in calls.values()), calls


def baseline_and_gd(splitting):
    """A baseline GPT off its init, and the gd variant loaded strictly from its state_dict."""
    torch.manual_seed(0)
    base = perturb(model.GPT(model.GPTConfig(**TINY)).eval())
    gd = make(seed=1, momentum='gd', splitting=splitting)
    gd.load_state_dict(base.state_dict(), strict=True)
    return base, gd


@pytest.mark.parametrize('momentum,splitting', [('gd', 'lie_trotter'), ('polyak', 'lie_trotter'),
                                                ('nesterov', 'lie_trotter'), ('nesterov', 'euler')])
def test_same_seed_gives_the_baseline_initial_weights(momentum, splitting):
    """Every parameter shared with the baseline starts equal under one seed, so compared arms
    differ only in what the mathematics adds."""
    torch.manual_seed(7)
    base = model.GPT(model.GPTConfig(**TINY)).state_dict()
    torch.manual_seed(7)
    net = NesterovGPT(NesterovConfig(**TINY, momentum=momentum, splitting=splitting)).state_dict()
    assert all(torch.equal(net[k], v) for k, v in base.items())
    extra = set(net) - set(base)
    assert (extra == set()) == (momentum == 'gd')
    assert {'transformer.vte.weight', 'transformer.vpe.weight'} <= extra or momentum == 'gd'


def test_gd_variant_equals_baseline():
    base, gd = baseline_and_gd('lie_trotter')
    idx = batch()
    torch.testing.assert_close(all_logits(gd, idx), all_logits(base, idx), rtol=0, atol=1e-6)
    torch.testing.assert_close(gd(idx)[0], base(idx)[0], rtol=0, atol=1e-6)  # the sampling path
    assert gd.learned_scalars() == {} and gd.scalar_param_names() == []


def test_gd_euler_is_the_parallel_block():
    base, gd = baseline_and_gd('euler')
    idx = batch()
    with torch.no_grad():
        x = base.embed(idx)
        for blk in base.transformer.h:
            x = x + blk.attn(blk.ln_1(x)) + blk.mlp(blk.ln_2(x))
        expected = base.head(x, idx)[0]
        torch.testing.assert_close(all_logits(gd, idx), expected, rtol=0, atol=1e-6)
        assert not torch.allclose(expected, all_logits(base, idx), atol=1e-4)  # the splitting matters


@pytest.mark.parametrize('velocity_init', ['embedding', 'zero', 'tied'])
@pytest.mark.parametrize('splitting', ['lie_trotter', 'euler'])
def test_polyak_equals_nesterov_with_mu_zero(splitting, velocity_init):
    nest = make(momentum='nesterov', splitting=splitting, velocity_init=velocity_init)
    polyak = make(seed=5, momentum='polyak', splitting=splitting, velocity_init=velocity_init)
    mu_names = [n for n in nest.scalar_param_names() if n.split('.')[-1].startswith('mu')]
    assert len(mu_names) == TINY['n_layer'] * (2 if splitting == 'lie_trotter' else 1)
    perturb(nest)
    idx = batch()
    with torch.no_grad():
        before = all_logits(nest, idx)
        sd = {k: v for k, v in nest.state_dict().items() if k not in mu_names}
        polyak.load_state_dict(sd, strict=True)
        assert not torch.allclose(before, all_logits(polyak, idx), atol=1e-4)  # the look-ahead matters
        for name, p in nest.named_parameters():
            if name in mu_names:
                p.fill_(-float('inf'))  # sigmoid(-inf) = 0 exactly
        torch.testing.assert_close(all_logits(nest, idx), all_logits(polyak, idx), rtol=0, atol=1e-6)


def spec_block(block, x, v):
    """One block written straight from the module docstring, unfused: the reference."""
    s = block.scalars()
    attn = lambda z: block.attn(block.ln_1(z))
    mlp = lambda z: block.mlp(block.ln_2(z))
    if block.splitting == 'lie_trotter':
        for sub, oracle, ln_v in (('_a', attn, block.ln_v[0]), ('_m', mlp, block.ln_v[-1])):
            v = ln_v(s['beta' + sub] * v + s['gamma' + sub] * oracle(x + s.get('mu' + sub, 0.0) * v))
            x = x + v
        return x, v
    z = x + s.get('mu', 0.0) * v
    v = block.ln_v[0](s['beta'] * v + s['gamma_a'] * attn(z) + s['gamma_m'] * mlp(z))
    return x + v, v


def block_outputs_and_grads(forward, block, dtype):
    g = torch.Generator().manual_seed(3)
    x, v, wx, wv = (torch.randn(2, 16, TINY['n_embd'], generator=g, dtype=dtype) for _ in range(4))
    block.zero_grad()
    xo, vo = forward(x, v)
    ((xo * wx).sum() + (vo * wv).sum()).backward()
    return [xo.detach(), vo.detach()] + [p.grad.clone() for p in block.parameters()]


def test_scaled_add_is_addcmul_with_its_exact_gradient():
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2))
    s = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.equal(model_nesterov.ScaledAdd.apply(x, s, y), torch.addcmul(x, s, y))
    assert torch.autograd.gradcheck(model_nesterov.ScaledAdd.apply, (x, s, y))
    # a bfloat16 y (an oracle's output under autocast) gets its gradient back in bfloat16
    yb = y.detach().bfloat16().requires_grad_()
    model_nesterov.ScaledAdd.apply(x.float(), s.float(), yb).sum().backward()
    assert yb.grad.dtype == torch.bfloat16 and torch.equal(yb.grad, torch.full_like(yb, 0.7))


@pytest.mark.parametrize('velocity_norm', ['shared', 'per_substep', 'none'])
@pytest.mark.parametrize('momentum,splitting', MOMENTUM_VARIANTS)
def test_block_computes_the_spec_update_and_its_gradients(momentum, splitting, velocity_norm, monkeypatch):
    """The block's fused update (addcmul, and gamma folded into LN_v) is the spec's formula: the
    same outputs and the same gradient for every parameter, scalars included. Exactly so (to
    float64 rounding) with LayerNorm's eps at 0; with eps = 1e-5 the fold turns LN_v's eps into
    eps * gamma^2, which moves X and V here (random scalars, gamma up to ~2.5) by < 0.1%."""
    block = perturb(make(momentum=momentum, splitting=splitting, velocity_norm=velocity_norm)).transformer.h[1]
    spec = lambda x, v: spec_block(block, x, v)
    got = block_outputs_and_grads(block.forward, block, torch.float32)
    want = block_outputs_and_grads(spec, block, torch.float32)
    assert len(got) == 2 + len(list(block.parameters())) and all(g is not None for g in got)
    for a, b in zip(got[:2], want[:2]):  # X and V, to 0.1% of their largest entry
        assert (a - b).abs().max() <= 1e-3 * b.abs().max()
    layer_norm = torch.nn.functional.layer_norm
    monkeypatch.setattr(torch.nn.functional, 'layer_norm', lambda x, shape, w, b, eps: layer_norm(x, shape, w, b, 0.0))
    block.double()
    got = block_outputs_and_grads(block.forward, block, torch.float64)
    want = block_outputs_and_grads(spec, block, torch.float64)
    for a, b in zip(got, want):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()


@pytest.mark.parametrize('velocity_init', ['embedding', 'zero', 'tied'])
@pytest.mark.parametrize('momentum,splitting', VARIANTS)
def test_causality(momentum, splitting, velocity_init):
    net = make(momentum=momentum, splitting=splitting, velocity_init=velocity_init)
    idx = batch()
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % TINY['vocab_size']
    with torch.no_grad():
        a, b = all_logits(net, idx), all_logits(net, changed)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=0)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize('velocity_norm', ['shared', 'per_substep', 'none'])
@pytest.mark.parametrize('momentum,splitting', MOMENTUM_VARIANTS)
def test_gradients_reach_every_parameter(momentum, splitting, velocity_norm):
    net = make(momentum=momentum, splitting=splitting, velocity_norm=velocity_norm).train()
    idx = batch()
    net(idx, idx)[1].backward()
    names = dict(net.named_parameters())
    assert 'transformer.vte.weight' in names and 'transformer.vpe.weight' in names
    n_scalars = (3 if momentum == 'nesterov' else 2) * (2 if splitting == 'lie_trotter' else 1)
    n_scalars += splitting == 'euler'  # euler keeps one gamma per oracle
    assert len(net.scalar_param_names()) == TINY['n_layer'] * n_scalars
    for name, p in names.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_learned_scalars_start_at_their_init_values():
    net = make(mu_init=0.9, beta_init=0.8, gamma_init=1.0)
    scalars = net.learned_scalars()
    assert list(scalars) == ['mu_a', 'beta_a', 'gamma_a', 'mu_m', 'beta_m', 'gamma_m']
    for name, want in [('mu', 0.9), ('beta', 0.8), ('gamma', 1.0)]:
        for sub in ('_a', '_m'):
            assert scalars[name + sub] == pytest.approx([want] * TINY['n_layer'], abs=1e-6)


@pytest.mark.parametrize('field,value', [('momentum', 'adam'), ('splitting', 'strang'), ('velocity_norm', 'rms'),
                                         ('velocity_init', 'random'), ('mu_init', 1.0), ('beta_init', 0.0),
                                         ('gamma_init', 0.0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        NesterovConfig(**{field: value})


@pytest.mark.parametrize('momentum,splitting', VARIANTS)
def test_save_load_round_trip(tmp_path, momentum, splitting):
    net = perturb(make(momentum=momentum, splitting=splitting))
    torch.save(dict(model=net.state_dict(), model_args=asdict(net.config), model_type='nesterov'), tmp_path / 'ckpt.pt')
    ckpt = torch.load(tmp_path / 'ckpt.pt', map_location='cpu', weights_only=True)
    torch.manual_seed(123)
    loaded = NesterovGPT(NesterovConfig(**ckpt['model_args'])).eval()
    loaded.load_state_dict(ckpt['model'], strict=True)
    idx = batch()
    with torch.no_grad():
        assert torch.equal(all_logits(loaded, idx), all_logits(net, idx))
    assert loaded.learned_scalars() == net.learned_scalars()


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_configure_optimizers_groups(optimizer):
    net = make()
    opts = net.configure_optimizers(optimizer, weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95),
                                    device_type='cpu', scalar_lr_mult=5.0)
    params = dict(net.named_parameters())
    scalar_ids = {id(params[n]) for n in net.scalar_param_names()}
    assert len(scalar_ids) == TINY['n_layer'] * 6
    adamw_groups = opts[0].param_groups
    scalar_group = [g for g in adamw_groups if {id(p) for p in g['params']} == scalar_ids]
    assert len(scalar_group) == 1
    assert scalar_group[0]['lr'] == pytest.approx(5e-3) and scalar_group[0]['weight_decay'] == 0.0
    decay = {id(p) for g in adamw_groups if g['weight_decay'] > 0 for p in g['params']}
    assert id(params['transformer.vte.weight']) in decay and id(params['transformer.vpe.weight']) in decay
    assert not scalar_ids & decay
    seen = [id(p) for opt in opts for g in opt.param_groups for p in g['params']]
    assert sorted(seen) == sorted(id(p) for p in params.values())  # every parameter exactly once
    if optimizer == 'muon':
        muon_ids = {id(p) for g in opts[1].param_groups for p in g['params']}
        assert muon_ids and not muon_ids & scalar_ids
        assert id(params['transformer.vte.weight']) not in muon_ids


@pytest.mark.parametrize('velocity_init,extra_embedding', [('embedding', (50304 + 1024) * 768), ('zero', 0), ('tied', 0)])
def test_gpt2_small_parameter_count(velocity_init, extra_embedding):
    shape = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, block_size=1024, bias=True)
    with torch.device('meta'):  # shapes only: no memory, no init time
        base = model.GPT(model.GPTConfig(**shape))
        nest = NesterovGPT(NesterovConfig(**shape, velocity_init=velocity_init))
    per_layer = 6 + 2 * 768  # mu, beta, gamma per substep; one shared LN_v (weight and bias)
    assert nest.get_num_params(False) - base.get_num_params(False) == extra_embedding + 12 * per_layer
    assert nest.get_num_params(True) - base.get_num_params(True) == 12 * per_layer


def test_crop_block_size_crops_vpe():
    net = make()
    net.crop_block_size(8)
    assert net.transformer.wpe.weight.shape[0] == 8 and net.transformer.vpe.weight.shape[0] == 8
    assert net(batch(t=8))[0].shape == (2, 1, TINY['vocab_size'])


@pytest.mark.parametrize('momentum,splitting', VARIANTS)
def test_generate(momentum, splitting):
    net = make(momentum=momentum, splitting=splitting)
    out = net.generate(batch(t=4), max_new_tokens=20, temperature=0)  # runs past block_size: cropping path
    assert out.shape == (2, 24)


def test_activations_finite_in_bf16_at_12_layers():
    net = make(n_layer=12, n_embd=64, block_size=32)
    norms = []
    for blk in net.transformer.h:
        blk.register_forward_hook(lambda m, i, o: norms.append(o[0].float().pow(2).mean().sqrt().item()))
    idx = torch.randint(0, TINY['vocab_size'], (2, 32))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, loss = net(idx, idx)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    # each substep adds a normalized velocity (rms ~1): the stream grows at most ~linearly in depth
    assert all(math.isfinite(n) for n in norms) and norms[-1] <= 2 * 12 + 1


def run_scalar_command(path):
    return subprocess.run([sys.executable, str(ROOT / 'model_nesterov.py'), str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_scalar_command_prints_checkpoint_scalars(tmp_path):
    net = make(mu_init=0.9, beta_init=0.9, gamma_init=1.0)
    with torch.no_grad():
        net.transformer.h[2].gamma_m.fill_(model_nesterov.inverse_transform('gamma', 2.5))
    torch.save(dict(model=net.state_dict(), model_args=asdict(net.config), model_type='nesterov', iter_num=7),
               tmp_path / 'ckpt.pt')
    r = run_scalar_command(tmp_path / 'ckpt.pt')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-4].split() == ['layer', 'mu_a', 'beta_a', 'gamma_a', 'mu_m', 'beta_m', 'gamma_m']
    assert lines[-1].split() == ['2', '0.9000', '0.9000', '1.0000', '0.9000', '0.9000', '2.5000']


def test_scalar_command_on_baseline_and_bad_files(tmp_path):
    torch.manual_seed(0)
    base = model.GPT(model.GPTConfig(**TINY))
    torch.save(dict(model=base.state_dict(), model_args=TINY, model_type='gpt'), tmp_path / 'gpt.pt')
    r = run_scalar_command(tmp_path / 'gpt.pt')
    assert r.returncode == 0 and 'no learned scalars' in r.stdout
    (tmp_path / 'corrupt.pt').write_bytes(b'not a checkpoint')
    for bad in (tmp_path / 'missing.pt', tmp_path / 'corrupt.pt'):
        r = run_scalar_command(bad)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'error' in r.stderr
