"""
The accelerated transformer suite: model.py's GPT with its layers read as momentum iterations
(YuriiFormer, arXiv 2601.23236; docs/papers.md has the equations and the numbers we compare against).

Same oracles as the baseline, a(X) = attn(ln_1(X)) and m(X) = mlp(ln_2(X)), imported from
model.py and called once each per layer. Tokens carry a velocity V (B, T, C) next to X, and each
layer learns its step sizes mu, beta in (0, 1) and gamma > 0:

    nesterov + lie_trotter (the paper's model), NesterovBlock:
        V = LN_v(beta_a V + gamma_a a(X + mu_a V));  X = X + V     attention substep
        V = LN_v(beta_m V + gamma_m m(X + mu_m V));  X = X + V     MLP substep, at the new X
    nesterov + euler (our reading: one step, both oracles at one look-ahead point), EulerBlock:
        Xe = X + mu V;  V = LN_v(beta V + gamma_a a(Xe) + gamma_m m(Xe));  X = X + V
    polyak: the same blocks without the look-ahead (the oracles at X, mu = 0, no mu parameter)
    gd: no velocity; lie_trotter is model.Block, euler the parallel block X = X + a(X) + m(X)
    gd + table_skip (the control arm: the velocity tables without the dynamics):
        X = X + g_l E before layer l, E = vte(idx) + vpe(pos), g_l a learned gain, zero at init

The paper's symbols in the code:
    X, V            x, v (B, T, C); V0 = initial_velocity(idx): vte(idx) + vpe(pos), the paper's
                    separate learned token and position tables (velocity_init='embedding')
    a(.), m(.)      self.attn(self.ln_1(.)), self.mlp(self.ln_2(.)): each oracle's output is the
                    negative (preconditioned) gradient step of its energy, so it is added, as in the
                    residual X + a(X): V = beta V + gamma a(.), where a textbook Nesterov writes
                    V = beta V - gamma grad f(.)
    mu_a, beta_a,   per layer, modules holding the stored number: mu_a.logit (mu_a = sigmoid(logit)),
    gamma_a, ...    beta_a.logit, gamma_a.softplus_inv (gamma_a = softplus(softplus_inv)), so that
                    unconstrained training keeps mu, beta in (0, 1) and gamma > 0
    LN_v            ln_v_a, ln_v_m (one per substep, velocity_norm='per_substep') or one shared
                    ln_v_a = ln_v_m per block ('shared'); ln_v under euler
LN_v is scale-invariant (LN_v(c u) = LN_v(u) for c > 0, to its eps), so through it only gamma/beta
of each substep is identifiable, not beta and gamma apart; mu still matters, since it moves the
point where the oracle looks. That leaves 4 of the 6 scalars per layer carrying information (all
6 with velocity_norm='none'); diagnostics() reports mu, beta and gamma/beta.
Where our choices and the paper's may differ (its full text was not available to us; see
docs/papers.md): the scalars' initial values (ours raw = 0, i.e. mu = beta = 0.5, gamma = ln 2,
as one public reproduction; the other uses 0.9, 0.9, 1.0); LN_v per substep by default (the
reproductions disagree; 'shared' is an option); the Euler variants are our reading, not
confirmed from the paper; V0 may also be zero or the token embedding wte (velocity_init), to
separate what the extra tables buy from what the dynamics buy.

The velocity is discarded at the end: logits = lm_head(ln_f(X_L)). The control arm has
nesterov's tables and parameter count (to within LN_v and the scalars) but carries nothing from
layer to layer except X, so comparing the two separates what the dynamics buy from what a second
embedding table buys. Trained by train.py with model_type='nesterov'; the named arms of a
comparison are in arms.py; `python diagnostics.py out/ckpt.pt` prints a checkpoint's learned
scalars and per-layer diagnostics.
"""
import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from configurator import UserError
from model import GPT, Block, GPTConfig, LayerNorm

CHOICES = dict(momentum=('gd', 'polyak', 'nesterov'), splitting=('lie_trotter', 'euler'),
               velocity_norm=('shared', 'per_substep', 'none'),
               velocity_init=('embedding', 'zero', 'tied'))


@dataclass
class NesterovConfig(GPTConfig):
    momentum: str = 'nesterov'  # 'gd' | 'polyak' | 'nesterov'
    splitting: str = 'lie_trotter'  # 'lie_trotter' | 'euler'
    # initial values after the transform: raw = 0, the neutral point of sigmoid and softplus
    # (a public reproduction's other choice, 0.9/0.9/1.0, tied with it at 4L/128: see the README)
    mu_init: float = 0.5
    beta_init: float = 0.5
    gamma_init: float = math.log(2)
    velocity_norm: str = 'per_substep'  # LN_v: one per substep (= per block under euler) | 'shared' per block | 'none'
    velocity_init: str = 'embedding'  # V0: vte(idx) + vpe(pos) | zero | wte(idx) (no wpe: see NesterovGPT)
    table_skip: bool = False  # momentum='gd' only: vte(idx) + vpe(pos) added into every layer at a learned gain

    def __post_init__(self):
        super().__post_init__()
        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field}={getattr(self, field)!r}: must be one of {', '.join(allowed)}")
        for field in ('mu_init', 'beta_init'):
            if not 0.0 < getattr(self, field) < 1.0:
                raise ValueError(f"{field}={getattr(self, field)}: must be in (0, 1) (it is a sigmoid)")
        if not self.gamma_init > 0.0:
            raise ValueError(f"gamma_init={self.gamma_init}: must be > 0 (it is a softplus)")
        if self.table_skip and self.momentum != 'gd':
            raise ValueError(f"table_skip=True is the control arm of momentum='gd' (with momentum={self.momentum!r} "
                             f"the tables already feed V0): drop table_skip or set momentum='gd'")


class Fraction(nn.Module):
    """A learned step size in (0, 1) (mu, beta), stored as its logit: calling it gives sigmoid(logit)."""
    def __init__(self, init):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(init / (1.0 - init))))

    def forward(self):
        return torch.sigmoid(self.logit)


class Positive(nn.Module):
    """A learned step size > 0 (gamma), stored as its inverse softplus: calling it gives
    softplus(softplus_inv)."""
    def __init__(self, init):
        super().__init__()
        self.softplus_inv = nn.Parameter(torch.tensor(math.log(math.expm1(init))))

    def forward(self):
        return F.softplus(self.softplus_inv)


def look_ahead(x, v, mu):
    """Where the oracles look: nesterov's X + mu V, or polyak's X itself (mu is None)."""
    return x if mu is None else x + mu() * v


def value(mu):
    """A look-ahead's value for the diagnostics: polyak's is 0."""
    return 0.0 if mu is None else mu()


def velocity_norm(config):
    return nn.Identity() if config.velocity_norm == 'none' else LayerNorm(config.n_embd, bias=config.bias)


class NesterovBlock(Block):
    """Nesterov (polyak: no look-ahead) with Lie-Trotter splitting: the attention substep, then
    the MLP substep at the new point. model.Block's ln_1, attn, ln_2, mlp come first (same names
    and init order, so one seed gives both models the same weights); the step sizes and LN_v
    draw no random numbers."""
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        nesterov = config.momentum == 'nesterov'
        self.mu_a = Fraction(config.mu_init) if nesterov else None
        self.beta_a, self.gamma_a = Fraction(config.beta_init), Positive(config.gamma_init)
        self.mu_m = Fraction(config.mu_init) if nesterov else None
        self.beta_m, self.gamma_m = Fraction(config.beta_init), Positive(config.gamma_init)
        self.ln_v_a = velocity_norm(config)
        self.ln_v_m = velocity_norm(config) if config.velocity_norm == 'per_substep' else self.ln_v_a

    def forward(self, x, v, kv_cache=None):
        a = self.attn(self.ln_1(look_ahead(x, v, self.mu_a)), kv_cache)
        v = self.ln_v_a(self.beta_a() * v + self.gamma_a() * a)
        x = x + v
        m = self.mlp(self.ln_2(look_ahead(x, v, self.mu_m)))
        v = self.ln_v_m(self.beta_m() * v + self.gamma_m() * m)
        x = x + v
        return x, v

    def diagnostics(self):
        beta_a, beta_m = self.beta_a(), self.beta_m()
        d = {'mu_a': value(self.mu_a), 'beta_a': beta_a, 'gamma/beta_a': self.gamma_a() / beta_a,
             'mu_m': value(self.mu_m), 'beta_m': beta_m, 'gamma/beta_m': self.gamma_m() / beta_m}
        if isinstance(self.ln_v_a, LayerNorm):
            d.update(gain_a=self.ln_v_a.weight.mean(), gain_m=self.ln_v_m.weight.mean())
        return d


class EulerBlock(Block):
    """Nesterov (polyak: no look-ahead) with Euler splitting: one velocity update per layer, both
    oracles at the same look-ahead point."""
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.mu = Fraction(config.mu_init) if config.momentum == 'nesterov' else None
        self.beta = Fraction(config.beta_init)
        self.gamma_a, self.gamma_m = Positive(config.gamma_init), Positive(config.gamma_init)
        self.ln_v = velocity_norm(config)

    def forward(self, x, v, kv_cache=None):
        xe = look_ahead(x, v, self.mu)
        v = self.ln_v(self.beta() * v + self.gamma_a() * self.attn(self.ln_1(xe), kv_cache)
                      + self.gamma_m() * self.mlp(self.ln_2(xe)))
        x = x + v
        return x, v

    def diagnostics(self):
        beta = self.beta()
        d = {'mu': value(self.mu), 'beta': beta, 'gamma_a/beta': self.gamma_a() / beta,
             'gamma_m/beta': self.gamma_m() / beta}
        if isinstance(self.ln_v, LayerNorm):
            d.update(gain=self.ln_v.weight.mean())
        return d


class ParallelBlock(Block):
    """Gradient descent with Euler splitting: both oracles at X, one step."""
    def forward(self, x, kv_cache=None):
        return x + self.attn(self.ln_1(x), kv_cache) + self.mlp(self.ln_2(x))


def block_for(config, layer_idx):
    """The layer of a variant: {gd, polyak, nesterov} x {lie_trotter, euler}."""
    if config.momentum == 'gd':
        return (Block if config.splitting == 'lie_trotter' else ParallelBlock)(config, layer_idx)
    return (NesterovBlock if config.splitting == 'lie_trotter' else EulerBlock)(config, layer_idx)


# a step size's state_dict key before the keys said what they hold (`mu_a` held mu_a's logit)
OLD_STEP_SIZE_KEY = re.compile(r'transformer\.h\.\d+\.(mu|beta|gamma)(_a|_m)?')


def rename_old_step_sizes(module, state_dict, prefix, *args):
    """A load_state_dict pre-hook: a checkpoint saved before the rename loads as saved."""
    for key in list(state_dict):
        old = OLD_STEP_SIZE_KEY.fullmatch(key[len(prefix):]) if key.startswith(prefix) else None
        if old:
            state_dict[key + ('.softplus_inv' if old[1] == 'gamma' else '.logit')] = state_dict.pop(key)


class NesterovGPT(GPT):

    def __init__(self, config):
        # GPT builds and initializes what the two models share in the baseline's order (the
        # scalars and LN_v draw no random numbers), so one seed gives both the same weights there
        # and gd exactly the baseline; the velocity tables come after, from the same stream
        super().__init__(config, block=block_for)
        if config.table_skip or (config.momentum != 'gd' and config.velocity_init == 'embedding'):
            self.transformer.vte = nn.Embedding(config.vocab_size, config.n_embd)
            self.transformer.vpe = nn.Embedding(config.block_size, config.n_embd)
            self.transformer.vte.apply(self._init_weights)
            self.transformer.vpe.apply(self._init_weights)
        if config.table_skip:
            # one 0-dim gain per layer (trained with the step sizes, at scalar_lr_mult), zero at init:
            # the control starts as the baseline and learns how much of the tables each layer takes,
            # as modded-nanogpt's embedding skips do
            self.transformer.skip_gain = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in range(config.n_layer))
        self.register_load_state_dict_pre_hook(rename_old_step_sizes)

    def tables(self, idx, pos=0):
        """The velocity tables' lookup vte(idx) + vpe(pos) (b, t, n_embd) for tokens at positions
        pos, pos + 1, ..., after dropout."""
        positions = torch.arange(pos, pos + idx.size(1), dtype=torch.long, device=idx.device)  # (t)
        return self.transformer.drop(self.transformer.vte(idx) + self.transformer.vpe(positions))

    def initial_velocity(self, idx, pos=0):
        """V0 (b, t, n_embd). 'tied' is wte(idx) without wpe: with wpe it would equal X0 (before
        dropout), and the first look-ahead would only rescale X."""
        if self.config.velocity_init == 'zero':
            return torch.zeros(*idx.shape, self.config.n_embd, device=idx.device)
        if self.config.velocity_init == 'tied':
            return self.transformer.drop(self.transformer.wte(idx))
        return self.tables(idx, pos)

    def layers(self, x, idx, pos, kv_cache):
        """GPT.forward's layers: X with the velocity beside it (discarded at the end), or the
        control's tables added into every layer."""
        if self.config.table_skip:  # the control: each layer reads the tables, nothing else is carried
            e = self.tables(idx, pos)
            for block, gain in zip(self.transformer.h, self.transformer.skip_gain):
                x = block(x + gain * e, kv_cache)
            return x
        if self.config.momentum == 'gd':
            return super().layers(x, idx, pos, kv_cache)
        v = self.initial_velocity(idx, pos)
        for block in self.transformer.h:
            x, v = block(x, v, kv_cache)
        return x

    @torch.no_grad()
    def diagnostics(self, idx):
        """Per layer, on a batch: the RMS of X and V after the layer, and the learned step sizes
        that LN_v leaves identifiable. LN_v is scale-invariant, so beta and gamma matter only
        through gamma/beta (beta alone counts for velocity_norm='none'); gain is LN_v's mean weight."""
        if self.config.table_skip:  # the RMS of X after each layer and of what each layer adds of the tables
            x, e = self.embed(idx), self.tables(idx)
            rows = []
            for block, gain in zip(self.transformer.h, self.transformer.skip_gain):
                x = block(x + gain * e)
                rows.append(dict(rms_x=rms(x), skip_gain=gain, rms_skip=rms(gain * e)))
            return columns(rows)
        if self.config.momentum == 'gd':
            return super().diagnostics(idx)
        x, v = self.embed(idx), self.initial_velocity(idx)
        rows = []
        for block in self.transformer.h:
            x, v = block(x, v)
            rows.append(dict(rms_x=rms(x), rms_v=rms(v), **block.diagnostics()))
        return columns(rows)


def rms(t):
    return t.float().pow(2).mean().sqrt()


def columns(rows):
    """Per-layer dicts of scalars -> one list per quantity, layers in order."""
    return {k: torch.stack([torch.as_tensor(r[k]).float() for r in rows]).tolist() for k in rows[0]}


# model_type (a train.py config value) -> (config class, model class)
MODEL_TYPES = dict(gpt=(GPTConfig, GPT), nesterov=(NesterovConfig, NesterovGPT))


def model_config(model_type, model_args):
    """The config object of a run's model; model_args holds fields of its config class (the rest
    take their defaults). The one place where a value the config class refuses becomes bad input:
    one line, exit code 2."""
    if model_type not in MODEL_TYPES:
        raise UserError(f"model_type={model_type!r}: expected one of {', '.join(MODEL_TYPES)}", exit_code=2)
    try:
        return MODEL_TYPES[model_type][0](**model_args)
    except ValueError as e:
        raise UserError(str(e), exit_code=2) from None


def build_model(model_type, model_args):
    """The model a run's config describes (model_config)."""
    return MODEL_TYPES[model_type][1](model_config(model_type, model_args))


def count_params(model_type, model_args):
    """(total, non-embedding) parameters of the model a config describes, built on the meta
    device: no memory, no init time."""
    with torch.device('meta'):
        model = build_model(model_type, model_args)
    return model.get_num_params(False), model.get_num_params(True)


def model_arg_names(model_type):
    return list(MODEL_TYPES[model_type][0].__dataclass_fields__)

