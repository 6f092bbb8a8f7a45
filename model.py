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
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.kv_cache = None  # while GPT.generate runs: the keys and values of the tokens seen so far

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.kv_cache is not None:  # generating: one new token attends to every earlier one
            if self.kv_cache:
                assert T == 1, "after the prompt, the cache takes one token at a time"
                k, v = torch.cat((self.kv_cache[0], k), dim=2), torch.cat((self.kv_cache[1], v), dim=2)
            self.kv_cache = (k, v)
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
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


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
        """block: the layer class, one optimizer iteration (model_nesterov.py passes its own)."""
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([block(config) for _ in range(config.n_layer)]),
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

    def embed(self, idx, start_pos=0):
        """X0 = token + position embeddings (b, t, n_embd) for tokens at start_pos, start_pos + 1, ..."""
        b, t = idx.size()
        assert start_pos + t <= self.config.block_size, \
            f"Cannot forward sequence of length {start_pos + t}, block size is only {self.config.block_size}"
        pos = torch.arange(start_pos, start_pos + t, dtype=torch.long, device=idx.device)  # (t)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))

    def head(self, x, targets):
        """Final LayerNorm and tied head. Without targets only the last position's logits are
        computed (all a sampler needs); with targets, all of them and the mean loss."""
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # list index keeps the time dim
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def forward(self, idx, targets=None, start_pos=0):
        x = self.embed(idx, start_pos)
        for block in self.transformer.h:
            x = block(x)
        return self.head(x, targets)

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
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, kv_cache=True):
        """Continue idx (b, t) by max_new_tokens; temperature 0 is greedy (argmax). With kv_cache,
        each attention layer keeps the keys and values of the tokens it has seen, so a new token
        costs a forward pass over itself alone. Positions are absolute: once the context outgrows
        block_size the window slides, every position changes, and each step recomputes the window
        as it does without the cache."""
        attns = [m for m in self.modules() if isinstance(m, CausalSelfAttention)]
        n_cached = 0  # tokens of idx whose keys and values are in the caches
        try:
            for _ in range(max_new_tokens):
                if kv_cache and idx.size(1) <= self.config.block_size:
                    if n_cached == 0:
                        for attn in attns:
                            attn.kv_cache = ()
                    logits, _ = self(idx[:, n_cached:], start_pos=n_cached)
                    n_cached = idx.size(1)
                else:
                    for attn in attns:
                        attn.kv_cache = None
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
        finally:
            for attn in attns:
                attn.kv_cache = None
        return idx
