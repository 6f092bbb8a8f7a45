"""
The baseline: nanoGPT's GPT, read as plain gradient descent with Lie-Trotter splitting.

A pre-norm block is one optimizer iteration on the token embeddings X (B, T, C):
    X <- X + a(X),   a(X) = CausalSelfAttention(LN(X))   the attention oracle
    X <- X + m(X),   m(X) = MLP(LN(X))                   the MLP oracle
CausalSelfAttention and MLP are the two oracles; model_nesterov.py imports them unchanged and
only changes how their outputs are combined. Everything else here is nanoGPT:
References: https://github.com/openai/gpt-2/blob/master/src/model.py (TF),
https://github.com/karpathy/nanoGPT/blob/master/model.py (PyTorch).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from muon import Muon


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's cannot turn off only the bias)."""
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    """The attention oracle a(.): takes the normalized tokens, returns the update (B, T, C)."""
    def __init__(self, config, layer_idx):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.layer_idx = layer_idx  # where this layer's keys and values go in a KVCache

    def forward(self, x, kv_cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if kv_cache is not None:  # generating: the new tokens attend to every token seen so far
            k, v = kv_cache.insert(self.layer_idx, k, v)  # (B, nh, pos + T, hs)
        # flash attention on CUDA, a fused kernel on the CPU; the same kernel for every model arm
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The MLP oracle m(.): acts on each token alone, as the gradient of a per-token potential."""
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One gradient step with Lie-Trotter splitting: attention step, then MLP step at the new point."""
    def __init__(self, config, layer_idx):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class KVCache:
    """What generation carries from one forward pass to the next: every layer's keys and values
    of the tokens seen so far, in buffers allocated once for max_len tokens, and pos, how many
    tokens they hold (the position of the next token). GPT.forward(idx, kv_cache=cache) places
    idx at positions pos, pos + 1, ..., each attention layer writes its keys and values there and
    attends to all pos + t of them, and forward then advances pos by t."""
    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.empty(shape, device=device, dtype=dtype)  # layer l's keys: k[l] (B, nh, max_len, hs)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0

    def insert(self, layer, k, v):
        """Store a layer's keys and values (B, nh, t, hs) of the new tokens; return that layer's
        keys and values of every token so far (B, nh, pos + t, hs), views of the buffers."""
        # the prompt comes at once, then one token at a time: SDPA's causal mask (is_causal) is
        # right only for a block that starts at position 0, and one new token needs no mask
        assert self.pos == 0 or k.size(2) == 1, "after the prompt, the cache takes one token at a time"
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # True: bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster

    def __post_init__(self):
        """Every field is checked here, once: a value the model cannot be built with is a
        ValueError that says what to do (the scripts report it as one line)."""
        for name in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: must be at least 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                             f"pick n_embd = n_head x head size")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1)")


class GPT(nn.Module):

    def __init__(self, config, block=Block):
        """block(config, layer_idx): one layer, one optimizer iteration (model_nesterov.py passes its own)."""
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([block(config, i) for i in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: https://paperswithcode.com/method/weight-tying
        self.transformer.wte.weight = self.lm_head.weight
        # init all weights
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 n_layer), two per layer
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Parameter count. Non-embedding: minus every position (and velocity) table; the token
        embedding stays in because it is also the output head (nanoGPT's convention)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= sum(m.weight.numel() for name, m in self.named_modules()
                            if isinstance(m, nn.Embedding) and name != 'transformer.wte')
        return n_params

    def embed(self, idx, pos=0):
        """X0 = token + position embeddings (b, t, n_embd) for tokens at positions pos, pos + 1, ..."""
        b, t = idx.size()
        assert pos + t <= self.config.block_size, \
            f"Cannot forward sequence of length {pos + t}, block size is only {self.config.block_size}"
        positions = torch.arange(pos, pos + t, dtype=torch.long, device=idx.device)  # (t)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))

    def head(self, x, targets):
        """Final LayerNorm and tied head. Without targets only the last position's logits are
        computed (all a sampler needs); with targets, all of them and the mean loss."""
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # list index keeps the time dim
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def forward(self, idx, targets=None, kv_cache=None):
        """Logits (and the loss with targets) of idx (b, t). With a KVCache (generation), idx are
        the tokens at positions kv_cache.pos, ...: they attend to the cached ones too, and the
        cache advances past them."""
        pos = 0 if kv_cache is None else kv_cache.pos
        x = self.layers(self.embed(idx, pos), idx, pos, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += idx.size(1)
        return self.head(x, targets)

    def layers(self, x, idx, pos, kv_cache):
        """The residual stream through every layer (model_nesterov.py adds the velocity here)."""
        for block in self.transformer.h:
            x = block(x, kv_cache)
        return x

    @torch.no_grad()
    def diagnostics(self, idx):
        """Per layer, the RMS of the residual stream X on a batch: how far the iterate travels."""
        x = self.embed(idx)
        rms_x = []
        for block in self.transformer.h:
            x = block(x)
            rms_x.append(x.float().pow(2).mean().sqrt())
        return dict(rms_x=torch.stack(rms_x).tolist())

    def configure_optimizers(self, optimizer, weight_decay, learning_rate, betas, device_type,
                             muon_lr=0.02, muon_momentum=0.95, muon_weight_decay=0.0, scalar_lr_mult=5.0,
                             muon_ns_dtype='bfloat16'):
        """AdamW alone, or (the paper's recipe) Muon on the 2-D matrices inside the blocks and
        AdamW on the rest. 0-dim parameters (the accelerated model's learned step sizes) get their
        own group at scalar_lr_mult x learning_rate. Returns a list of optimizers; each group
        keeps its peak learning rate in 'base_lr', so one schedule scales them all."""
        assert optimizer in ('adamw', 'muon'), f"unknown optimizer {optimizer!r}"
        hidden, decay, no_decay, scalars = [], [], [], []
        for name, p in self.named_parameters():
            if p.dim() == 0:
                scalars.append(p)
            elif p.dim() < 2:
                no_decay.append(p)  # biases and norm gains
            elif optimizer == 'muon' and name.startswith('transformer.h.'):
                hidden.append(p)  # attention and MLP matrices; embeddings and the tied head stay on AdamW
            else:
                decay.append(p)  # embeddings (and, with AdamW, every matrix)
        groups = [dict(params=decay, weight_decay=weight_decay, base_lr=learning_rate),
                  dict(params=no_decay, weight_decay=0.0, base_lr=learning_rate),
                  dict(params=scalars, weight_decay=0.0, base_lr=learning_rate * scalar_lr_mult)]
        groups = [dict(g, lr=g['base_lr']) for g in groups if g['params']]
        # fused: one kernel per tensor and step instead of a dozen foreach ops, on CUDA and the CPU
        optimizers = [torch.optim.AdamW(groups, betas=betas, fused=device_type in ('cuda', 'cpu'))]
        if hidden:
            optimizers.append(Muon([dict(params=hidden, lr=muon_lr, base_lr=muon_lr)], momentum=muon_momentum,
                                   weight_decay=muon_weight_decay, ns_dtype=muon_ns_dtype))
        return optimizers

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        """Continue idx (b, t) by max_new_tokens; temperature 0 is greedy (argmax). With use_cache,
        a KVCache keeps every layer's keys and values of the tokens seen so far, so a new token
        costs a forward pass over itself alone. Positions are absolute: once the context outgrows
        block_size the window slides, every position changes, and each step recomputes the window
        as it does without the cache."""
        b, t = idx.size()
        # the keys and values come out of c_attn in autocast's dtype where autocast is on
        on = idx.device.type
        dtype = torch.get_autocast_dtype(on) if torch.is_autocast_enabled(on) else self.lm_head.weight.dtype
        cache = KVCache(self.config, b, min(self.config.block_size, t + max_new_tokens), idx.device, dtype) \
            if use_cache else None
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) <= self.config.block_size:
                logits, _ = self(idx[:, cache.pos:], kv_cache=cache)  # the prompt, then the newest token
            else:
                logits, _ = self(idx[:, -self.config.block_size:])
            logits = logits[:, -1, :].float()
            if temperature == 0:
                idx_next = torch.argmax(logits, dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float('Inf')
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
