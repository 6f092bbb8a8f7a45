"""
nanoGPT's "poor man's configurator", kept as a function so it can be tested. Usage:

    python train.py config/train_tinystories_nesterov.py --batch_size=32 --compile=False

Arguments are applied in order: a path is a config file (plain Python that assigns the
globals it wants to change); `--key=value` overrides one key, value parsed as a Python literal
(strings may be bare: --device=cpu). Every key must already have a default in the calling
script, and the value must have the default's type (an int where a float is expected is
fine; a key whose default is None takes anything).
"""
import ast
import difflib
import os
import sys


class ConfigError(Exception):
    """Bad command line or config file; the message is one line that says what to do."""


def _closest(key, valid):
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(key, value, default):
    """value, converted to the type of `default`, or ConfigError."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif type(value) is type(default):
        return value
    raise ConfigError(f"config key '{key}' expects {type(default).__name__} "
                      f"(default {default!r}) but was given {type(value).__name__} {value!r}")


def _parse_literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string: --device=cpu


def configure(defaults, argv):
    """The overrides that argv asks for, checked against `defaults` (name -> default value)."""
    valid = sorted(defaults)
    overrides = {}

    def apply(key, value, where):
        if key not in defaults:
            raise ConfigError(f"unknown config key '{key}' in {where}{_closest(key, valid)}")
        overrides[key] = _coerce(key, value, defaults[key])

    for arg in argv:
        if arg.startswith('--'):
            if '=' not in arg:
                raise ConfigError(f"argument {arg!r} has no value: write --key=value")
            key, text = arg[2:].split('=', 1)  # first '=' only: --start="a=b" keeps its '='
            value = _parse_literal(text)
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a string key keeps its text: --wandb_run_name=123
            apply(key, value, 'the command line')
        else:
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found (arguments are config files or --key=value)")
            scope = {}
            with open(arg) as f:
                code = f.read()
            try:
                exec(compile(code, arg, 'exec'), scope)
            except Exception as e:
                raise ConfigError(f"config file {arg} failed: {type(e).__name__}: {e}")
            for key, value in scope.items():
                if key.startswith('_') or type(value).__name__ in ('module', 'function', 'type'):
                    continue  # imports, helpers and dunders are the file's own business
                apply(key, value, arg)
    return overrides


def configure_globals(scope, argv=None):
    """Apply configure() to a script's globals: the ones that are plain values are its config.
    Exits with status 2 and a one-line message on bad input. Returns the full config dict."""
    keys = [k for k, v in scope.items() if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None)))]
    try:
        overrides = configure({k: scope[k] for k in keys}, sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for k, v in overrides.items():
        print(f"config: {k} = {v!r}")
    scope.update(overrides)
    return {k: scope[k] for k in keys}


def script_defaults(path):
    """A script's config knobs and defaults, read from its source without running it: the
    literal assignments at the top level before `config = configure_globals(...)`."""
    defaults = {}
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == 'config':
                break
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults
