"""
The accelerated transformer suite: model.py's GPT with its layers read as momentum iterations.

Same oracles as the baseline, a(X) = attn(ln_1(X)) and m(X) = mlp(ln_2(X)), imported from
model.py and called once each per layer. Tokens carry a velocity V (B, T, C) next to X, and each
layer learns its step sizes mu, beta = sigmoid(raw) and gamma = softplus(raw):

    nesterov + lie_trotter (the paper's model), NesterovBlock:
        V = LN_v(beta_a V + gamma_a a(X + mu_a V));  X = X + V     attention substep
        V = LN_v(beta_m V + gamma_m m(X + mu_m V));  X = X + V     MLP substep, at the new X
    nesterov + euler (our reading: one step, both oracles at one look-ahead point), EulerBlock:
        Xe = X + mu V;  V = LN_v(beta V + gamma_a a(Xe) + gamma_m m(Xe));  X = X + V
    polyak: the same blocks with mu = 0 (no look-ahead, no mu parameter)
    gd: no velocity; lie_trotter is model.Block, euler the parallel block X = X + a(X) + m(X)
    gd + table_skip (the control arm: the velocity tables without the dynamics):
        X = X + g_l E before layer l, E = vte(idx) + vpe(pos), g_l a learned gain, zero at init

V0 comes from separate learned token and position tables vte, vpe (the paper), zero, or the
token embedding wte. The velocity is discarded at the end: logits = lm_head(ln_f(X_L)).
The control arm has nesterov's tables and parameter count (to within LN_v and the scalars)
but carries nothing from layer to layer except X, so comparing the two separates what the
dynamics buy from what a second embedding table buys.
Trained by train.py with model_type='nesterov'. A checkpoint's learned scalars and per-layer
diagnostics:
    python model_nesterov.py out/ckpt.pt
"""
import argparse
import math
import os
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
    # (the spec's other choice, 0.9/0.9/1.0, tied with it at 4L/128: see the README)
    mu_init: float = 0.5
    beta_init: float = 0.5
    gamma_init: float = math.log(2)
    velocity_norm: str = 'shared'  # LN_v: one per block | one per substep (= shared under euler) | off
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


class MomentumBlock(Block):
    """model.Block's ln_1, attn, ln_2, mlp (same names and init order, so one seed gives both
    models the same weights) plus learned step sizes, stored raw: mu, beta = sigmoid(raw),
    gamma = softplus(raw). Polyak has no mu: its look-ahead is mu = 0."""
    def __init__(self, config, scalar_names):
        super().__init__(config)
        self.scalar_names = scalar_names
        for name in scalar_names:
            if name.startswith('mu') and config.momentum == 'polyak':
                continue
            init = getattr(config, name.split('_')[0] + '_init')
            raw = math.log(math.expm1(init)) if name.startswith('gamma') else math.log(init / (1.0 - init))
            self.register_parameter(name, nn.Parameter(torch.tensor(raw)))

    def scalars(self):
        """The step sizes in scalar_names order, after their transforms."""
        return [0.0 if not hasattr(self, n) else F.softplus(getattr(self, n)) if n.startswith('gamma')
                else torch.sigmoid(getattr(self, n)) for n in self.scalar_names]


def velocity_norm(config):
    return nn.Identity() if config.velocity_norm == 'none' else LayerNorm(config.n_embd, bias=config.bias)


class NesterovBlock(MomentumBlock):
    """Nesterov (Polyak: mu = 0) with Lie-Trotter splitting: the attention substep, then the MLP
    substep at the new point."""
    def __init__(self, config):
        super().__init__(config, ['mu_a', 'beta_a', 'gamma_a', 'mu_m', 'beta_m', 'gamma_m'])
        self.ln_v_a = velocity_norm(config)
        self.ln_v_m = velocity_norm(config) if config.velocity_norm == 'per_substep' else self.ln_v_a

    def forward(self, x, v):
        mu_a, beta_a, gamma_a, mu_m, beta_m, gamma_m = self.scalars()
        v = self.ln_v_a(beta_a * v + gamma_a * self.attn(self.ln_1(x + mu_a * v)))
        x = x + v
        v = self.ln_v_m(beta_m * v + gamma_m * self.mlp(self.ln_2(x + mu_m * v)))
        x = x + v
        return x, v

    def diagnostics(self):
        mu_a, beta_a, gamma_a, mu_m, beta_m, gamma_m = self.scalars()
        d = {'mu_a': mu_a, 'beta_a': beta_a, 'gamma/beta_a': gamma_a / beta_a,
             'mu_m': mu_m, 'beta_m': beta_m, 'gamma/beta_m': gamma_m / beta_m}
        if isinstance(self.ln_v_a, LayerNorm):
            d.update(gain_a=self.ln_v_a.weight.mean(), gain_m=self.ln_v_m.weight.mean())
        return d


class EulerBlock(MomentumBlock):
    """Nesterov (Polyak: mu = 0) with Euler splitting: one velocity update per layer, both oracles
    at the same look-ahead point."""
    def __init__(self, config):
        super().__init__(config, ['mu', 'beta', 'gamma_a', 'gamma_m'])
        self.ln_v = velocity_norm(config)

    def forward(self, x, v):
        mu, beta, gamma_a, gamma_m = self.scalars()
        xe = x + mu * v
        v = self.ln_v(beta * v + gamma_a * self.attn(self.ln_1(xe)) + gamma_m * self.mlp(self.ln_2(xe)))
        x = x + v
        return x, v

    def diagnostics(self):
        mu, beta, gamma_a, gamma_m = self.scalars()
        d = {'mu': mu, 'beta': beta, 'gamma_a/beta': gamma_a / beta, 'gamma_m/beta': gamma_m / beta}
        if isinstance(self.ln_v, LayerNorm):
            d.update(gain=self.ln_v.weight.mean())
        return d


class ParallelBlock(Block):
    """Gradient descent with Euler splitting: both oracles at X, one step."""
    def forward(self, x):
        return x + self.attn(self.ln_1(x)) + self.mlp(self.ln_2(x))


def block_for(config):
    """The layer of a variant: {gd, polyak, nesterov} x {lie_trotter, euler}."""
    if config.momentum == 'gd':
        return Block(config) if config.splitting == 'lie_trotter' else ParallelBlock(config)
    return NesterovBlock(config) if config.splitting == 'lie_trotter' else EulerBlock(config)


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

    def tables(self, idx, start_pos=0):
        """The velocity tables' lookup vte(idx) + vpe(pos) (b, t, n_embd), after dropout."""
        pos = torch.arange(start_pos, start_pos + idx.size(1), dtype=torch.long, device=idx.device)  # (t)
        return self.transformer.drop(self.transformer.vte(idx) + self.transformer.vpe(pos))

    def initial_velocity(self, idx, start_pos=0):
        """V0 (b, t, n_embd). 'tied' is wte(idx) without wpe: with wpe it would equal X0 (before
        dropout), and the first look-ahead would only rescale X."""
        if self.config.velocity_init == 'zero':
            return torch.zeros(*idx.shape, self.config.n_embd, device=idx.device)
        if self.config.velocity_init == 'tied':
            return self.transformer.drop(self.transformer.wte(idx))
        return self.tables(idx, start_pos)

    def forward(self, idx, targets=None, start_pos=0):
        if self.config.momentum == 'gd' and not self.config.table_skip:
            return super().forward(idx, targets, start_pos)
        x = self.embed(idx, start_pos)
        if self.config.table_skip:  # the control: each layer reads the tables, nothing else is carried
            e = self.tables(idx, start_pos)
            for block, gain in zip(self.transformer.h, self.transformer.skip_gain):
                x = block(x + gain * e)
            return self.head(x, targets)
        v = self.initial_velocity(idx, start_pos)
        for block in self.transformer.h:
            x, v = block(x, v)
        return self.head(x, targets)  # the velocity is discarded

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
# the named arms of a comparison (compare.py, bench.py): config values on top of train.py's defaults
ARMS = dict(baseline=dict(model_type='gpt'))
for _m in CHOICES['momentum']:
    ARMS[_m] = dict(model_type='nesterov', momentum=_m, splitting='lie_trotter')
    ARMS[f'{_m}_euler'] = dict(model_type='nesterov', momentum=_m, splitting='euler')
# the 2x2 of tables x dynamics: baseline (neither), tables (the control), nesterov_tied, nesterov (both)
ARMS['tables'] = dict(model_type='nesterov', momentum='gd', splitting='lie_trotter', table_skip=True)
ARMS['nesterov_tied'] = dict(model_type='nesterov', momentum='nesterov', splitting='lie_trotter', velocity_init='tied')


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


def model_arg_names(model_type):
    return list(MODEL_TYPES[model_type][0].__dataclass_fields__)


def format_diagnostics(diag):
    """diagnostics() as a table: one row per layer, one column per quantity."""
    names = list(diag)
    lines = ['layer ' + ' '.join(f'{n:>12}' for n in names)]
    for i in range(len(diag[names[0]])):
        lines.append(f'{i:>5} ' + ' '.join(f'{diag[n][i]:12.4f}' for n in names))
    return '\n'.join(lines)


if __name__ == '__main__':
    import sys

    import loader
    from checkpoint import load_checkpoint
    from configurator import exit_on_user_error
    sys.excepthook = exit_on_user_error  # bad input ends the run with one line that says what to do
    parser = argparse.ArgumentParser(description="print a checkpoint's learned step sizes and per-layer diagnostics "
                                                 "(on a batch of its validation data, or of random tokens without it)")
    parser.add_argument('ckpt', help='a checkpoint saved by train.py, e.g. out/ckpt.pt')
    parser.add_argument('--data_root', help="where the checkpoint's dataset lives (default: the run's data_root)")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.ckpt)
    model = build_model(ckpt['model_type'], ckpt['model_args'])
    model.load_state_dict(ckpt['model'])
    cfg, model_args = ckpt['config'], ckpt['model_args']
    data_dir = os.path.join(args.data_root or cfg['data_root'], cfg['dataset'])
    n, t = min(cfg['batch_size'], 8), model_args['block_size']
    if os.path.exists(os.path.join(data_dir, 'val.bin')):
        val = loader.open_split(data_dir, 'val', t, model_args['vocab_size'])
        idx, _ = loader.get_batch(val, loader.eval_offsets(len(val), t, n), t, 'cpu')
        source = f'{n} x {t} tokens of {data_dir}/val.bin'
    else:
        idx = torch.randint(model_args['vocab_size'], (n, t), generator=torch.Generator().manual_seed(0))
        source = f'{n} x {t} random tokens ({data_dir} not found)'
    print(f"{args.ckpt}: {ckpt['model_type']}, " + ', '.join(f'{k}={model_args[k]}' for k in CHOICES
                                                                  if k in model_args) + f", iter {ckpt['iter_num']}")
    print(f"diagnostics on {source}:")
    print(format_diagnostics(model.eval().diagnostics(idx)))
