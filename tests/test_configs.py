"""config/: every file is valid, the arms of a comparison differ only in the model, and the
paper's recipe is what the paper configs say."""
import dataclasses
import glob
import os
import sys

import pytest

from configurator import configure
from conftest import ROOT
from model import GPTConfig
from model_nesterov import NesterovConfig

MODEL_KEYS = {'model_type', 'momentum', 'splitting', 'velocity_init', 'velocity_norm', 'out_dir', 'wandb_run_name'}


def train_defaults():
    """train.py's knobs and defaults: its source up to the configurator call, run on its own."""
    with open(os.path.join(ROOT, 'train.py')) as f:
        source = f.read()
    scope, hook = {'__name__': 'train_defaults'}, sys.excepthook
    exec(compile(source[:source.index('config, overrides = configure_globals')], 'train.py', 'exec'), scope)
    sys.excepthook = hook  # train.py installs its own
    return {k: v for k, v in scope.items() if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None)))}


def load(name):
    return configure(train_defaults(), [os.path.join(ROOT, 'config', name)])


def test_every_shipped_config_file_is_valid():
    files = sorted(glob.glob(os.path.join(ROOT, 'config', '*.py')))
    assert len(files) >= 10
    for f in files:
        configure(train_defaults(), [f])  # raises on an unknown key or a wrong type


def test_train_py_nesterov_defaults_match_the_model():
    defaults = train_defaults()
    gpt_fields = {f.name for f in dataclasses.fields(GPTConfig)}
    added = [f for f in dataclasses.fields(NesterovConfig) if f.name not in gpt_fields]
    assert len(added) >= 7
    for f in added:
        assert defaults[f.name] == f.default, f.name


def test_model_type_nesterov_is_the_papers_model():
    """`--model_type=nesterov` alone builds what config/nesterov.py (the paper's block) describes."""
    defaults = train_defaults()
    plain = dict(defaults, **configure(defaults, ['--model_type=nesterov']))
    paper = dict(defaults, **load('nesterov.py'))
    assert plain == paper


@pytest.mark.parametrize('family', ['train_tinystories', 'train_owt', 'train_owt24', 'cpu'])
def test_arms_differ_only_in_the_model(family):
    files = [os.path.basename(f) for f in glob.glob(os.path.join(ROOT, 'config', f'{family}_*.py'))
             if os.path.basename(f)[len(family) + 1:-3].replace('_euler', '') in ('baseline', 'nesterov', 'polyak', 'gd')]
    assert f'{family}_baseline.py' in files and f'{family}_nesterov.py' in files
    base = load(f'{family}_baseline.py')
    for f in files:
        cfg = load(f)
        differing = {k for k in set(base) | set(cfg) if base.get(k) != cfg.get(k)}
        assert differing <= MODEL_KEYS, (f, differing - MODEL_KEYS)


@pytest.mark.parametrize('name,muon_lr,steps,warmup,shape', [
    ('train_tinystories_nesterov.py', 0.02, 10000, 1000, (12, 12, 768)),
    ('train_owt_nesterov.py', 0.004, 30000, 3000, (12, 12, 768)),
    ('train_owt24_nesterov.py', 0.006, 30000, 3000, (24, 16, 1024)),
])
def test_paper_recipe(name, muon_lr, steps, warmup, shape):
    c = load(name)
    assert c['batch_size'] * c['block_size'] * c['gradient_accumulation_steps'] == 491_520
    assert (c['n_layer'], c['n_head'], c['n_embd']) == shape and c['block_size'] == 1024
    assert c['optimizer'] == 'muon' and c['muon_lr'] == muon_lr and c['learning_rate'] == 6e-4
    assert c['learning_rate'] * c['scalar_lr_mult'] == pytest.approx(3e-3)
    assert (c['beta1'], c['beta2'], c['weight_decay'], c['grad_clip']) == (0.9, 0.95, 0.1, 1.0)
    assert c['max_iters'] == c['lr_decay_iters'] == steps and c['warmup_iters'] == warmup
    assert c['min_lr'] == pytest.approx(0.1 * c['learning_rate'])
    assert c['eval_interval'] == 100 and c['dtype'] == 'bfloat16' and not c['bias'] and c['dropout'] == 0.0
