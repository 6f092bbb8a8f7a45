"""configurator.py: nanoGPT's config semantics, with the fixes listed in its docstring, and the
one error path of every script."""
import pytest

from configurator import UserError as ConfigError, configure
from conftest import ROOT, run_script

DEFAULTS = dict(batch_size=12, learning_rate=6e-4, compile=True, device='auto', vocab_size=None,
                start="\n", wandb_run_name='run', dtype='auto')


def test_overrides_parse_as_literals_in_order(tmp_path):
    cfg = tmp_path / 'c.py'
    cfg.write_text("batch_size = 4\nlearning_rate = 1e-3\nimport math\n_private = 1\n")
    out = configure(DEFAULTS, [str(cfg), '--batch_size=8'])
    assert out == {'batch_size': 8, 'learning_rate': 1e-3}  # the later argument wins; imports are ignored


def test_split_on_first_equals_only():
    assert configure(DEFAULTS, ['--start=a=b'])['start'] == 'a=b'


def test_int_accepted_where_float_expected():
    out = configure(DEFAULTS, ['--learning_rate=1'])
    assert out['learning_rate'] == 1.0 and isinstance(out['learning_rate'], float)


def test_none_default_takes_any_value():
    assert configure(DEFAULTS, ['--vocab_size=50304'])['vocab_size'] == 50304


@pytest.mark.parametrize('text,value', [('True', True), ('False', False), ('false', False), ('true', True)])
def test_bools(text, value):
    assert configure(DEFAULTS, [f'--compile={text}'])['compile'] is value


def test_bare_and_numeric_strings_stay_strings():
    assert configure(DEFAULTS, ['--device=cpu'])['device'] == 'cpu'
    assert configure(DEFAULTS, ['--wandb_run_name=123'])['wandb_run_name'] == '123'


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'bach_size'.*did you mean 'batch_size'"):
        configure(DEFAULTS, ['--bach_size=3'])


def test_unknown_key_in_config_file(tmp_path):
    cfg = tmp_path / 'c.py'
    cfg.write_text("learning_rat = 1e-3\n")
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        configure(DEFAULTS, [str(cfg)])


@pytest.mark.parametrize('arg', ['--batch_size=2.5', '--batch_size=abc', '--compile=maybe', '--learning_rate=True'])
def test_wrong_type_names_key_expected_and_given(arg):
    key = arg[2:].split('=')[0]
    with pytest.raises(ConfigError, match=f"'{key}' expects .* but was given"):
        configure(DEFAULTS, [arg])


def test_missing_value_and_missing_file():
    with pytest.raises(ConfigError, match='no value'):
        configure(DEFAULTS, ['--compile'])
    with pytest.raises(ConfigError, match='not found'):
        configure(DEFAULTS, ['config/does_not_exist.py'])


def test_train_py_unknown_key_exits_2_with_one_line():
    proc = run_script('train.py', '--learning_rat=1e-3', check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'learning_rat' in the command line (did you mean 'learning_rate'?)"


@pytest.mark.parametrize('text,value', [('False', False), ('True', True), ('bfloat16', 'bfloat16'), ('auto', 'auto')])
def test_an_auto_knob_also_takes_true_or_false(text, value):
    assert configure(DEFAULTS, [f'--dtype={text}'])['dtype'] == value


def test_a_config_file_can_build_on_another(tmp_path):
    """The paper's arms import its recipe: config/train_owt_nesterov.py is the baseline's run
    plus the accelerated block."""
    defaults = dict(out_dir='out', model_type='gpt', momentum='nesterov', splitting='lie_trotter', velocity_init='embedding',
                    velocity_norm='shared', wandb_run_name='run', dataset='x', muon_lr=0.0, max_iters=0,
                    lr_decay_iters=0, warmup_iters=0, n_layer=0, n_head=0, n_embd=0, batch_size=0, block_size=0,
                    gradient_accumulation_steps=0, dropout=0.1, bias=True, optimizer='adamw', learning_rate=0.0,
                    scalar_lr_mult=0.0, beta1=0.0, beta2=0.0, weight_decay=0.0, grad_clip=0.0, min_lr=0.0,
                    eval_interval=0, eval_iters=0, log_interval=0, wandb_project='p', dtype='auto', compile='auto')
    cfg = configure(defaults, [f'{ROOT}/config/train_owt_nesterov.py'])
    assert cfg['model_type'] == 'nesterov' and cfg['dataset'] == 'openwebtext' and cfg['muon_lr'] == 0.004
    assert cfg['out_dir'] == 'out-owt-nesterov' and cfg['n_embd'] == 768


@pytest.mark.parametrize('script', ['train.py', 'sample.py', 'bench.py'])
def test_help_lists_every_knob_with_its_comment(script):
    proc = run_script(script, '--help')
    assert proc.returncode == 0 and proc.stderr == ''
    assert 'config knobs' in proc.stdout and "device = 'auto'  # 'auto'" in proc.stdout


def test_a_bad_value_exits_2_with_one_line():
    proc = run_script('train.py', '--n_head=0', check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == 'error: n_head=0: must be at least 1'
