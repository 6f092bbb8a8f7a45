"""The baseline GPT (model.py): shapes, causality, GPT-2 parameter count, optimizer groups,
generation with and without the KV cache, diagnostics."""
import pytest
import torch

from model import GPT, GPTConfig, KVCache
from muon import Muon

CFG = dict(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32, bias=False)


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**CFG, **kw})).eval()


def test_shapes_and_initial_loss_near_uniform():
    model = tiny()
    idx, targets = torch.randint(0, 64, (2, 3, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 16, 64)
    # small init: the first prediction is close to uniform over the vocab
    assert abs(loss.item() - torch.log(torch.tensor(64.0)).item()) < 0.1
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 64) and loss is None  # inference: last position only


def test_causality_future_tokens_do_not_change_past_logits():
    model = tiny()
    idx = torch.randint(0, 64, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 64
    a, _ = model(idx, idx)
    b, _ = model(changed, changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_gpt2_small_parameter_count():
    # GPT-2 small (124M) with its 50257 vocab and biases: the published 124,439,808 parameters
    model = GPT(GPTConfig(vocab_size=50257, bias=True))
    assert model.get_num_params(non_embedding=False) == 124_439_808
    assert model.get_num_params() == 124_439_808 - 1024 * 768  # minus the position table


def test_residual_projections_scaled_at_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=8, n_embd=256, n_head=4, vocab_size=256, block_size=32))
    std = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / (2 * 8) ** 0.5, rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_greedy_generation_is_deterministic_and_matches_argmax():
    model = tiny()
    idx = torch.randint(0, 64, (2, 5))
    a = model.generate(idx, 20, temperature=0)
    b = model.generate(idx, 20, temperature=0)
    assert torch.equal(a, b) and a.shape == (2, 25)
    logits, _ = model(a[:, :5])
    assert torch.equal(a[:, 5], logits[:, -1].argmax(-1))
    # generating past block_size crops the context instead of failing
    assert model.generate(idx, 30, temperature=0).shape == (2, 35)


def test_top_k_one_equals_greedy():
    model = tiny()
    idx = torch.randint(0, 64, (2, 5))
    torch.manual_seed(1)
    assert torch.equal(model.generate(idx, 10, temperature=1.0, top_k=1), model.generate(idx, 10, temperature=0))


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_optimizer_groups_cover_every_parameter_once(optimizer):
    model = tiny(bias=True)
    opts = model.configure_optimizers(optimizer, 0.1, 6e-4, (0.9, 0.95), 'cpu', muon_lr=0.02)
    seen = [p for opt in opts for g in opt.param_groups for p in g['params']]
    assert len(seen) == len(set(map(id, seen))) == len(list(model.parameters()))
    adamw = opts[0]
    assert adamw.defaults['fused']  # one kernel per tensor on the CPU too
    decayed = {id(p) for g in adamw.param_groups if g['weight_decay'] > 0 for p in g['params']}
    assert id(model.transformer.wte.weight) in decayed and id(model.transformer.wpe.weight) in decayed
    assert all(p.dim() >= 2 for g in adamw.param_groups if g['weight_decay'] > 0 for p in g['params'])
    if optimizer == 'muon':
        muon = opts[1]
        assert isinstance(muon, Muon) and muon.param_groups[0]['lr'] == 0.02
        hidden = muon.param_groups[0]['params']
        assert len(hidden) == 4 * 2 and all(p.dim() == 2 for p in hidden)  # c_attn, c_proj, c_fc, c_proj per layer
    else:
        assert len(opts) == 1


def test_muon_training_step_lowers_loss():
    model = tiny().train()
    opts = model.configure_optimizers('muon', 0.0, 1e-2, (0.9, 0.95), 'cpu', muon_lr=0.02)
    idx = torch.randint(0, 64, (4, 16))
    losses = []
    for _ in range(10):
        _, loss = model(idx, idx)
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def perturbed():
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():  # away from init, so that the logits are far from ties
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_kv_cache_generation_equals_recomputing_the_context():
    """Greedy tokens are the same with the cache, within block_size and after the window slides."""
    model = perturbed()
    idx = torch.randint(0, 64, (2, 5))
    cached = model.generate(idx, 30, temperature=0, use_cache=True)  # 35 tokens > block_size 16
    assert torch.equal(cached, model.generate(idx, 30, temperature=0, use_cache=False))
    long_prompt = torch.randint(0, 64, (2, 20))  # longer than the window from the start
    assert torch.equal(model.generate(long_prompt, 5, temperature=0, use_cache=True),
                       model.generate(long_prompt, 5, temperature=0, use_cache=False))


def test_kv_cache_holds_every_layers_keys_and_values_at_their_positions():
    """A prompt, then one token at a time: the logits are the full forward's at each position,
    pos counts the tokens, the buffers (allocated once) hold each layer's keys and values as the
    full forward computes them, and a second chunk of several tokens is refused."""
    model = perturbed()
    idx = torch.randint(0, 64, (2, 16))
    keys = []
    for block in model.transformer.h:  # the keys each layer computes in the full forward
        block.attn.c_attn.register_forward_hook(lambda m, i, o: keys.append(o.split(32, dim=2)[1]))
    with torch.no_grad():
        full, _ = model(idx, idx)
        cache = KVCache(model.config, 2, 16, 'cpu', torch.float32)
        buffer = cache.k.data_ptr()
        steps = [model(idx[:, :5], kv_cache=cache)[0]]
        assert cache.pos == 5
        for t in range(5, 16):
            steps.append(model(idx[:, t:t + 1], kv_cache=cache)[0])
    assert cache.pos == 16 and cache.k.data_ptr() == buffer and cache.k.shape == (2, 2, 2, 16, 16)
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 4:], rtol=0, atol=1e-5)
    for layer in range(2):  # (B, T, C) -> (B, nh, T, hs)
        want = keys[layer].view(2, 16, 2, 16).transpose(1, 2)
        torch.testing.assert_close(cache.k[layer], want, rtol=0, atol=1e-5)
    chunked = KVCache(model.config, 2, 16, 'cpu', torch.float32)
    model(idx[:, :3], kv_cache=chunked)
    with pytest.raises(AssertionError, match='one token at a time'):  # is_causal would misalign the mask
        model(idx[:, 3:5], kv_cache=chunked)


def test_kv_cache_under_bf16_autocast_takes_autocasts_dtype(monkeypatch):
    """Under autocast the keys come out of c_attn in bf16: the cache is allocated in bf16 (half the
    memory, no cast per token), in float32 without autocast; the tokens are the uncached ones."""
    import model as model_module
    made = []

    class Recorded(KVCache):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)
    monkeypatch.setattr(model_module, 'KVCache', Recorded)
    model = perturbed()
    idx = torch.randint(0, 64, (2, 5))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        cached = model.generate(idx, 8, temperature=0, use_cache=True)
        uncached = model.generate(idx, 8, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    model.generate(idx, 2, temperature=0)
    assert [c.k.dtype for c in made] == [torch.bfloat16, torch.float32]


def test_diagnostics_are_the_rms_of_the_residual_stream():
    model = tiny()
    idx = torch.randint(0, 64, (2, 16))
    x = model.embed(idx)
    want = []
    for block in model.transformer.h:
        x = block(x)
        want.append(x.pow(2).mean().sqrt().item())
    assert model.diagnostics(idx) == {'rms_x': pytest.approx(want, rel=1e-6)}


@pytest.mark.parametrize('field,value,message', [
    ('n_embd', 31, 'n_embd=31 is not divisible by n_head=2'),
    ('n_head', 0, 'n_head=0: must be at least 1'),
    ('n_layer', -1, 'n_layer=-1: must be at least 1'),
    ('block_size', 0, 'block_size=0: must be at least 1'),
    ('vocab_size', None, 'vocab_size=None: must be at least 1'),
    ('vocab_size', 2.5, 'vocab_size=2.5: must be at least 1'),
    ('dropout', 1.0, r'dropout=1.0: must be in \[0, 1\)'),
])
def test_the_config_checks_its_own_fields(field, value, message):
    """Checked once, in GPTConfig (NesterovConfig inherits it); build_model, the one boundary,
    turns the refusal into the scripts' one-line error, exit code 2."""
    from configurator import UserError
    from model_nesterov import NesterovConfig, build_model
    for config_class in (GPTConfig, NesterovConfig):
        with pytest.raises(ValueError, match=message):
            config_class(**{**CFG, field: value})
    with pytest.raises(UserError, match=message) as refused:
        build_model('nesterov', {**CFG, field: value})
    assert refused.value.exit_code == 2
