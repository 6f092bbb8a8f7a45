"""
Tests for model_nesterov.py: the blocks against hand-computed updates, the oracle count, the
equivalences that tie the suite to the baseline (gd == GPT, polyak == nesterov at mu = 0),
causality, gradients, the KV cache, checkpoints (the old step-size names included), the optimizer
groups and the diagnostics. CPU, tiny shapes: python -m pytest tests/test_model_nesterov.py
"""
import math
from dataclasses import asdict

import pytest
import torch

import model
from model import KVCache
from model_nesterov import NesterovConfig, NesterovGPT

TINY = dict(n_layer=3, n_head=2, n_embd=32, vocab_size=64, block_size=16, bias=True, dropout=0.0)
VARIANTS = [(m, s) for m in ('gd', 'polyak', 'nesterov') for s in ('lie_trotter', 'euler')]
MOMENTUM_VARIANTS = [v for v in VARIANTS if v[0] != 'gd']
# every model the cache must serve: the six variants, the control arm and the dynamics without tables
CACHE_ARMS = [dict(momentum=m, splitting=s) for m, s in VARIANTS] + [
    dict(momentum='gd', table_skip=True), dict(momentum='gd', splitting='euler', table_skip=True),
    dict(velocity_init='tied'), dict(splitting='euler', velocity_init='zero')]


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
@pytest.mark.parametrize('momentum,splitting,table_skip', [(*v, False) for v in VARIANTS] +
                         [('gd', 'lie_trotter', True), ('gd', 'euler', True)])
def test_oracle_count(momentum, splitting, table_skip, velocity_norm):
    net = perturb(make(momentum=momentum, splitting=splitting, velocity_norm=velocity_norm, table_skip=table_skip))
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
    assert not [p for p in gd.parameters() if p.dim() == 0]  # no learned step sizes


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


def test_tables_arm_at_zero_gain_is_the_baseline_bit_for_bit():
    """The control arm (gd + table_skip) with every gain at zero computes the baseline's logits and
    gradients exactly, whatever its tables hold; with a gain it does not."""
    base, _ = baseline_and_gd('lie_trotter')
    ctrl = perturb(make(seed=3, table_skip=True, momentum='gd'))  # tables and gains off their init
    missing, unexpected = ctrl.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ['transformer.skip_gain.0', 'transformer.skip_gain.1', 'transformer.skip_gain.2',
                               'transformer.vpe.weight', 'transformer.vte.weight'] and not unexpected
    idx = batch()
    assert not torch.equal(all_logits(ctrl, idx), all_logits(base, idx))  # the gains are not zero yet
    with torch.no_grad():
        for g in ctrl.transformer.skip_gain:
            g.zero_()
    assert torch.equal(all_logits(ctrl, idx), all_logits(base, idx))
    assert torch.equal(ctrl(idx)[0], base(idx)[0])  # the sampling path
    for net in (base, ctrl):
        net.zero_grad()
        net(idx, idx)[1].backward()
    grads = dict(ctrl.named_parameters())
    assert all(torch.equal(p.grad, grads[n].grad) for n, p in base.named_parameters())
    assert all(g.grad.abs() > 0 for g in ctrl.transformer.skip_gain)  # the gains can leave zero


def test_tables_arm_starts_as_the_baseline_with_nesterovs_tables():
    """One seed: the control's shared weights are the baseline's, its tables are nesterov's, and its
    gains start at zero, so at step 0 it is the baseline."""
    torch.manual_seed(7)
    base = model.GPT(model.GPTConfig(**TINY))
    torch.manual_seed(7)
    ctrl = NesterovGPT(NesterovConfig(**TINY, momentum='gd', table_skip=True))
    torch.manual_seed(7)
    nest = NesterovGPT(NesterovConfig(**TINY))
    b, c, n = base.state_dict(), ctrl.state_dict(), nest.state_dict()
    assert all(torch.equal(c[k], v) for k, v in b.items())
    assert all(torch.equal(c[k], n[k]) for k in ('transformer.vte.weight', 'transformer.vpe.weight'))
    assert [g.item() for g in ctrl.transformer.skip_gain] == [0.0] * TINY['n_layer']
    idx = batch()
    assert torch.equal(all_logits(ctrl.eval(), idx), all_logits(base.eval(), idx))



@pytest.mark.parametrize('arm', [dict(), dict(momentum='gd', table_skip=True)], ids=['nesterov', 'tables'])
def test_seed_changes_every_table(arm):
    """The velocity tables come from the run's seeded stream like every other weight: a seed gives
    the same tables again, another seed other tables, and neither table repeats the token embedding."""
    tables = ('transformer.wte.weight', 'transformer.wpe.weight', 'transformer.vte.weight', 'transformer.vpe.weight')
    a, again, b = (make(seed=s, **arm).state_dict() for s in (0, 0, 1))
    for name in tables:
        assert torch.equal(a[name], again[name]), name
        assert not torch.equal(a[name], b[name]), name
        assert a[name].std().item() == pytest.approx(0.02, rel=0.1), name  # _init_weights' N(0, 0.02)
    assert not torch.equal(a['transformer.vte.weight'], a['transformer.wte.weight'])
    assert not torch.equal(a['transformer.vpe.weight'], a['transformer.wpe.weight'][:TINY['block_size']])

@pytest.mark.parametrize('velocity_norm,per_layer', [('shared', 6 + 32 * 2), ('per_substep', 6 + 2 * 32 * 2)])
def test_tables_arm_has_nesterovs_parameter_count(velocity_norm, per_layer):
    """The control has nesterov's parameters but for LN_v and the 6 step sizes per layer, and one
    gain per layer instead."""
    ctrl = make(momentum='gd', table_skip=True)
    nest = make(velocity_norm=velocity_norm)
    L = TINY['n_layer']
    for non_embedding in (False, True):
        assert nest.get_num_params(non_embedding) - ctrl.get_num_params(non_embedding) == L * per_layer - L
    extra = (TINY['vocab_size'] + TINY['block_size']) * TINY['n_embd']
    assert ctrl.get_num_params(False) - make(momentum='gd').get_num_params(False) == extra + L


def test_tables_arm_by_hand():
    """Two layers on C = 2 with ln_1 = ln_2 = identity, a(z) = 2 z and m(z) = z^2 in layer 1,
    a(z) = 3 z and m(z) = z in layer 2; X0 = (1, 3), E = (1, -1), gains 1/2 and 2:
    layer 1: x + E/2 = (1.5, 2.5); + a = (4.5, 7.5); + m = (24.75, 63.75)
    layer 2: x + 2 E = (26.75, 61.75); + a = (107, 247); + m = (214, 494)"""
    net = make(n_layer=2, n_embd=2, n_head=1, momentum='gd', table_skip=True)
    oracles = [(lambda z: 2 * z, lambda z: z * z), (lambda z: 3 * z, lambda z: z)]
    for block, (a, m) in zip(net.transformer.h, oracles):
        block.ln_1 = block.ln_2 = torch.nn.Identity()
        block.attn, block.mlp = Oracle(a), Oracle(m)
    t = net.transformer
    with torch.no_grad():
        t.wte.weight[0], t.wpe.weight[0] = torch.tensor([0.5, 1.0]), torch.tensor([0.5, 2.0])  # X0 = (1, 3)
        t.vte.weight[0], t.vpe.weight[0] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, -1.0])  # E = (1, -1)
        t.skip_gain[0].fill_(0.5)
        t.skip_gain[1].fill_(2.0)
    seen = []
    t.ln_f.register_forward_hook(lambda mod, i, o: seen.append(i[0]))
    net(torch.zeros(1, 1, dtype=torch.long))
    assert seen[0].flatten().tolist() == [214.0, 494.0]  # dyadic numbers: exact


@pytest.mark.parametrize('velocity_init', ['embedding', 'zero', 'tied'])
@pytest.mark.parametrize('splitting', ['lie_trotter', 'euler'])
def test_polyak_equals_nesterov_with_mu_zero(splitting, velocity_init):
    nest = make(momentum='nesterov', splitting=splitting, velocity_init=velocity_init)
    polyak = make(seed=5, momentum='polyak', splitting=splitting, velocity_init=velocity_init)
    mu_names = [n for n, p in nest.named_parameters() if n.split('.')[-2] in ('mu_a', 'mu_m', 'mu')]
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


class Oracle(torch.nn.Module):
    """A stand-in oracle: any function of its input (the attention's cache argument unused)."""
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, z, kv_cache=None):
        return self.fn(z)


def hand_block(momentum, splitting, velocity_norm, gamma_a=1.0, gamma_m=2.0):
    """A block on C = 2 whose oracles are simple enough to follow by hand: ln_1 = ln_2 = identity,
    a(z) = 2 z, m(z) = z^2 (elementwise); mu = beta = 1/2, gamma_a = 1, gamma_m = 2."""
    block = make(n_embd=2, n_head=1, momentum=momentum, splitting=splitting, velocity_norm=velocity_norm,
                 mu_init=0.5, beta_init=0.5).transformer.h[0]
    block.ln_1 = block.ln_2 = torch.nn.Identity()
    block.attn, block.mlp = Oracle(lambda z: 2 * z), Oracle(lambda z: z * z)
    with torch.no_grad():
        block.gamma_a.softplus_inv.fill_(math.log(math.expm1(gamma_a)))
        block.gamma_m.softplus_inv.fill_(math.log(math.expm1(gamma_m)))
    return block


@pytest.mark.parametrize('momentum,splitting,x_out,v_out', [
    # attention substep: z = x + v/2 = (1.5, 2.5), v = v/2 + a(z) = (3.5, 4.5), x = (4.5, 7.5);
    # MLP substep: z = x + v/2 = (6.25, 9.75), v = v/2 + 2 z^2 = (79.875, 192.375), x += v
    ('nesterov', 'lie_trotter', [84.375, 199.875], [79.875, 192.375]),
    # no look-ahead: v = (0.5, -0.5) + 2 x = (2.5, 5.5), x = (3.5, 8.5); v = v/2 + 2 x^2 = (25.75, 147.25)
    ('polyak', 'lie_trotter', [29.25, 155.75], [25.75, 147.25]),
    # one step at xe = x + v/2 = (1.5, 2.5): v = v/2 + 2 xe + 2 xe^2 = (8, 17), x += v
    ('nesterov', 'euler', [9.0, 20.0], [8.0, 17.0]),
    # at xe = x: v = (0.5, -0.5) + (2, 6) + 2 (1, 9) = (4.5, 23.5)
    ('polyak', 'euler', [5.5, 26.5], [4.5, 23.5]),
])
def test_block_update_by_hand_without_velocity_norm(momentum, splitting, x_out, v_out):
    """x = (1, 3), v = (1, -1) through one block, every step size visible (no LN_v)."""
    block = hand_block(momentum, splitting, 'none')
    x, v = block(torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[1.0, -1.0]]]))
    assert x.flatten().tolist() == x_out and v.flatten().tolist() == v_out  # dyadic numbers: exact


@pytest.mark.parametrize('velocity_norm,x_out,v_out', [
    # LN of a 2-vector is (-1, 1) or (1, -1) (to eps): after attention u = (3.5, 4.5) -> v = (-1, 1),
    # x = (0, 4); then z = (-0.5, 4.5), u = v/2 + 2 z^2 = (0, 41) -> (-1, 1), times ln_v_m's gain
    # (2, 2) plus its bias (0.5, 0) when the substeps have their own LN_v
    ('shared', [-1.0, 5.0], [-1.0, 1.0]),
    ('per_substep', [-1.5, 6.0], [-1.5, 2.0]),
])
def test_velocity_norm_follows_each_velocity_update(velocity_norm, x_out, v_out):
    block = hand_block('nesterov', 'lie_trotter', velocity_norm)
    with torch.no_grad():
        if velocity_norm == 'per_substep':
            block.ln_v_m.weight.fill_(2.0)
            block.ln_v_m.bias.copy_(torch.tensor([0.5, 0.0]))
    x, v = block(torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[1.0, -1.0]]]))
    assert x.flatten().tolist() == pytest.approx(x_out, abs=1e-4)
    assert v.flatten().tolist() == pytest.approx(v_out, abs=1e-4)


def test_velocity_norm_is_the_papers_layer_norm_eps_included():
    """LN_v(beta v + gamma a) with LayerNorm's eps = 1e-5 on that very sum. A nearly constant sum
    shows the eps: u = 2 (0.5, 0.501) = (1, 1.002) has variance 1e-6, so LN_v(u) = +-1e-3 /
    sqrt(1e-6 + 1e-5) = +-0.301511; dividing u by gamma first (eps * gamma^2 in effect) gives
    +-0.156174."""
    block = hand_block('nesterov', 'lie_trotter', 'per_substep', gamma_a=2.0).double()
    block.attn = Oracle(lambda z: torch.tensor([0.5, 0.501], dtype=z.dtype).expand_as(z))
    seen = []
    block.ln_v_a.register_forward_hook(lambda m, i, o: seen.append(o))
    block(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, 2, dtype=torch.float64))
    assert seen[0].flatten().tolist() == pytest.approx([-0.301511, 0.301511], abs=1e-6)


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
    assert sum(p.dim() == 0 for p in net.parameters()) == TINY['n_layer'] * n_scalars
    for name, p in names.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_diagnostics_by_hand_at_init():
    """At init every layer reports its initial step sizes, LN_v's unit gain, |V| = 1 (LN_v's output
    has unit RMS) and the RMS of X and V after the layer, as a loop over the blocks computes them."""
    net = make(mu_init=0.9, beta_init=0.8, gamma_init=1.0, velocity_norm='per_substep')
    idx = batch()
    d = net.diagnostics(idx)
    L = TINY['n_layer']
    assert list(d) == ['rms_x', 'rms_v', 'mu_a', 'beta_a', 'gamma/beta_a', 'mu_m', 'beta_m', 'gamma/beta_m',
                       'gain_a', 'gain_m']
    for name, want in [('mu_a', 0.9), ('mu_m', 0.9), ('beta_a', 0.8), ('beta_m', 0.8), ('gamma/beta_a', 1.25),
                       ('gamma/beta_m', 1.25), ('gain_a', 1.0), ('gain_m', 1.0), ('rms_v', 1.0)]:
        assert d[name] == pytest.approx([want] * L, abs=1e-4), name
    with torch.no_grad():
        x, v = net.embed(idx), net.initial_velocity(idx)
        for i, block in enumerate(net.transformer.h):
            x, v = block(x, v)
            assert d['rms_x'][i] == pytest.approx(x.pow(2).mean().sqrt().item(), rel=1e-6)
    euler = make(splitting='euler').diagnostics(idx)
    assert list(euler) == ['rms_x', 'rms_v', 'mu', 'beta', 'gamma_a/beta', 'gamma_m/beta', 'gain']
    assert list(make(momentum='gd').diagnostics(idx)) == ['rms_x']


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
    assert loaded.diagnostics(idx) == net.diagnostics(idx)


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_configure_optimizers_groups(optimizer):
    net = make()
    opts = net.configure_optimizers(optimizer, weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95),
                                    device_type='cpu', scalar_lr_mult=5.0)
    params = dict(net.named_parameters())
    scalar_ids = {id(p) for p in params.values() if p.dim() == 0}
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
    per_layer = 6 + 2 * 2 * 768  # mu, beta, gamma per substep; one LN_v per substep (weight and bias)
    assert nest.get_num_params(False) - base.get_num_params(False) == extra_embedding + 12 * per_layer
    assert nest.get_num_params(True) - base.get_num_params(True) == 12 * per_layer


@pytest.mark.parametrize('arm', CACHE_ARMS, ids=lambda kw: '-'.join(map(str, kw.values())))
def test_kv_cache_greedy_output_equals_uncached(arm):
    """The velocity is per token and causal, so each layer's keys and values at their look-ahead
    points can be cached: greedy tokens are the same, past block_size (the sliding window) too."""
    net = perturb(make(**arm))
    prompt = batch(t=4)
    cached = net.generate(prompt, max_new_tokens=20, temperature=0, use_cache=True)  # 24 > block_size 16
    assert cached.shape == (2, 24)
    assert torch.equal(cached, net.generate(prompt, max_new_tokens=20, temperature=0, use_cache=False))


@pytest.mark.parametrize('arm', CACHE_ARMS, ids=lambda kw: '-'.join(map(str, kw.values())))
def test_kv_cache_forward_token_by_token_equals_the_full_forward(arm):
    """A prompt, then one token at a time through one KVCache: the logits at every position are
    the full forward's, the cache's position follows, and its buffers stay where they were."""
    net = perturb(make(**arm))
    idx = batch()
    full = all_logits(net, idx)  # (2, 16, vocab)
    cache = KVCache(net.config, 2, TINY['block_size'], 'cpu', torch.float32)
    buffers = cache.k.data_ptr(), cache.v.data_ptr()
    with torch.no_grad():
        steps = [net(idx[:, :5], kv_cache=cache)[0]]
        assert cache.pos == 5
        for t in range(5, 16):
            steps.append(net(idx[:, t:t + 1], kv_cache=cache)[0])
    assert cache.pos == 16 and (cache.k.data_ptr(), cache.v.data_ptr()) == buffers
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 4:], rtol=0, atol=1e-5)


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


@pytest.mark.parametrize('splitting', ['lie_trotter', 'euler'])
def test_tables_arm_is_causal_cached_and_trainable(tmp_path, splitting):
    """The control arm as a model of the suite: causal, greedy cached == uncached past block_size,
    gradients on every parameter (once its gains are off zero), a checkpoint round trip, its
    gains trained as step sizes (scalar group, no decay) and its tables decayed as embeddings."""
    net = perturb(make(momentum='gd', splitting=splitting, table_skip=True))
    idx = batch()
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % TINY['vocab_size']
    with torch.no_grad():
        a, b = all_logits(net, idx), all_logits(net, changed)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.allclose(a[:, 10:], b[:, 10:])
    prompt = batch(t=4)
    assert torch.equal(net.generate(prompt, 20, temperature=0, use_cache=True),
                       net.generate(prompt, 20, temperature=0, use_cache=False))
    net.train()(idx, idx)[1].backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.save(dict(model=net.state_dict(), model_args=asdict(net.config)), tmp_path / 'ckpt.pt')
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    loaded = NesterovGPT(NesterovConfig(**ckpt['model_args'])).eval()
    loaded.load_state_dict(ckpt['model'], strict=True)
    assert torch.equal(all_logits(loaded, idx), all_logits(net.eval(), idx))
    d = loaded.diagnostics(idx)
    assert list(d) == ['rms_x', 'skip_gain', 'rms_skip']
    assert d['skip_gain'] == pytest.approx([g.item() for g in net.transformer.skip_gain])
    opt = net.configure_optimizers('adamw', 0.1, 1e-3, (0.9, 0.95), 'cpu', scalar_lr_mult=5.0)[0]
    gains = {id(g) for g in net.transformer.skip_gain}
    group = [g for g in opt.param_groups if gains & {id(p) for p in g['params']}]
    assert len(group) == 1 and {id(p) for p in group[0]['params']} == gains
    assert group[0]['lr'] == pytest.approx(5e-3) and group[0]['weight_decay'] == 0.0
    decayed = {id(p) for g in opt.param_groups if g['weight_decay'] > 0 for p in g['params']}
    assert {id(net.transformer.vte.weight), id(net.transformer.vpe.weight)} <= decayed


@pytest.mark.parametrize('momentum', ['polyak', 'nesterov'])
def test_tables_arm_is_a_gd_arm(momentum):
    with pytest.raises(ValueError, match='table_skip'):
        NesterovConfig(momentum=momentum, table_skip=True)


# each block's step sizes as checkpoints saved before the rename named them (mu_a held mu_a's logit)
OLD_STEP_SIZE_NAMES = dict(lie_trotter=['mu_a', 'beta_a', 'gamma_a', 'mu_m', 'beta_m', 'gamma_m'],
                           euler=['mu', 'beta', 'gamma_a', 'gamma_m'])


@pytest.mark.parametrize('momentum,splitting', MOMENTUM_VARIANTS)
def test_a_checkpoint_with_the_old_step_size_names_loads(tmp_path, momentum, splitting):
    """A state_dict in the names saved before the step sizes said what they hold (`mu_a` for
    mu_a.logit, `gamma_a` for gamma_a.softplus_inv) loads strictly, through a saved file, into
    the same model: the same logits and diagnostics."""
    net = perturb(make(momentum=momentum, splitting=splitting))
    old = {k.removesuffix('.logit').removesuffix('.softplus_inv'): v for k, v in net.state_dict().items()}
    want = [n for n in OLD_STEP_SIZE_NAMES[splitting] if momentum == 'nesterov' or not n.startswith('mu')]
    layer0 = 'transformer.h.0.'
    assert [k[len(layer0):] for k, v in old.items() if k.startswith(layer0) and v.dim() == 0] == want
    torch.save(dict(model=old), tmp_path / 'old.pt')
    loaded = make(seed=5, momentum=momentum, splitting=splitting)
    loaded.load_state_dict(torch.load(tmp_path / 'old.pt', weights_only=True)['model'], strict=True)
    idx = batch()
    assert torch.equal(all_logits(loaded, idx), all_logits(net, idx))
    assert loaded.diagnostics(idx) == net.diagnostics(idx)
    assert set(loaded.state_dict()) == set(net.state_dict())  # it saves in the new names


def test_the_step_sizes_are_stored_under_what_they_hold():
    """mu and beta as logits, gamma as its inverse softplus: the stored numbers at init are the
    transforms' inverses of the configured initial values; polyak stores no mu."""
    net = make(mu_init=0.9, beta_init=0.2, gamma_init=1.5, splitting='euler')
    stored = {k.split('.', 3)[-1]: v.item() for k, v in net.state_dict().items() if k.startswith('transformer.h.0.')
              and v.dim() == 0}
    assert stored == pytest.approx({'mu.logit': math.log(9), 'beta.logit': math.log(0.25),
                                    'gamma_a.softplus_inv': math.log(math.expm1(1.5)),
                                    'gamma_m.softplus_inv': math.log(math.expm1(1.5))})
    polyak = make(momentum='polyak').transformer.h[0]
    assert polyak.mu_a is None and polyak.mu_m is None and polyak.diagnostics()['mu_a'] == 0.0


def test_the_default_is_the_papers_model():
    """NesterovConfig() is the paper's model: nesterov, lie_trotter, its own velocity tables and
    one LN_v per substep."""
    c = NesterovConfig()
    assert (c.momentum, c.splitting, c.velocity_init, c.velocity_norm) == ('nesterov', 'lie_trotter', 'embedding',
                                                                           'per_substep')
    block = make().transformer.h[0]
    assert isinstance(block.ln_v_m, model.LayerNorm) and block.ln_v_m is not block.ln_v_a
