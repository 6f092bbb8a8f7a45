"""What only a GPU can show: bf16 autocast, fused AdamW, flash attention, torch.compile and the KV
cache on CUDA, and runtime's choices there. Skipped without CUDA; scripts/gpu_check.py runs them."""
import pytest
import torch
import torch.nn.functional as F

import runtime
from model_nesterov import build_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]
ARGS = dict(n_layer=2, n_head=4, n_embd=128, block_size=256, vocab_size=512, dropout=0.0, bias=False)


def build(model_type, **kw):
    torch.manual_seed(0)
    return build_model(model_type, dict(ARGS, **kw)).cuda()


def test_runtime_auto_is_bf16_and_compiled_on_cuda():
    rt = runtime.decide(runtime.setup('auto', 'auto', 'auto'), verbose=False)
    assert rt.device_type == 'cuda'
    assert rt.dtype == ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16')
    assert rt.compile == (runtime.compile_blocker('cuda') is None)
    name = torch.cuda.get_device_name()
    if any(key in name for key, _, _ in runtime.GPU_PEAK_FLOPS):
        assert rt.peak_flops() > 1e13


@pytest.mark.parametrize('model_type', ['gpt', 'nesterov'])
def test_bf16_training_with_fused_adamw_lowers_the_loss(model_type):
    model = build(model_type)
    optimizers = model.configure_optimizers('adamw', 0.1, 3e-3, (0.9, 0.99), 'cuda')
    assert optimizers[0].defaults['fused']
    idx = torch.randint(0, 512, (8, 256), device='cuda', generator=torch.Generator('cuda').manual_seed(0))
    losses = []
    for _ in range(20):
        with torch.autocast('cuda', dtype=torch.bfloat16):
            _, loss = model(idx, idx)
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 1.0


def test_flash_attention_runs_the_oracle():
    """The attention oracle's SDPA call is served by the flash kernel in bf16, and agrees with the
    math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(2, 4, 256, 32, device='cuda', dtype=torch.bfloat16) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel(SDPBackend.MATH):
        math_ = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(flash, math_, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize('model_type', ['gpt', 'nesterov'])
def test_compiled_matches_eager(model_type):
    model = build(model_type)
    idx = torch.randint(0, 512, (4, 256), device='cuda')
    with torch.no_grad():
        eager, _ = model(idx, idx)
        compiled, _ = torch.compile(model)(idx, idx)
    torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize('model_type,extra', [('gpt', {}), ('nesterov', {}), ('nesterov', dict(splitting='euler'))])
def test_kv_cache_generation_equals_uncached(model_type, extra):
    model = build(model_type, **extra).eval()
    prompt = torch.randint(0, 512, (2, 8), device='cuda')
    cached = model.generate(prompt, 64, temperature=0, use_cache=True)
    assert torch.equal(cached, model.generate(prompt, 64, temperature=0, use_cache=False))


def test_float16_with_grad_scaler_trains():
    model = build('nesterov')
    opt, = model.configure_optimizers('adamw', 0.1, 1e-3, (0.9, 0.99), 'cuda')
    scaler = torch.amp.GradScaler('cuda')
    idx = torch.randint(0, 512, (4, 256), device='cuda')
    for _ in range(3):
        with torch.autocast('cuda', dtype=torch.float16):
            _, loss = model(idx, idx)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())
