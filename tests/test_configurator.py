"""configurator.py: nanoGPT's config semantics, with the fixes listed in its docstring."""
import pytest

from configurator import ConfigError, configure
from conftest import run_script

DEFAULTS = dict(batch_size=12, learning_rate=6e-4, compile=True, device='auto', vocab_size=None,
                start="\n", wandb_run_name='run')


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
