"""
nanoGPT's "poor man's configurator", as functions that can be tested, and the one error path of
every script. Usage:

    python train.py config/train_tinystories_nesterov.py --batch_size=32 --compile=False
    python train.py --help          # every knob with its default and comment

Arguments are applied in order: a path is a config file (plain Python that assigns the
globals it wants to change; it may import another config, `from config.x import *`);
`--key=value` overrides one key, value parsed as a Python literal (strings may be bare:
--device=cpu). Every key must already have a default in the calling script, and the value must
have the default's type (an int where a float is expected is fine; a None default takes anything;
an 'auto' default also takes True or False).

Bad input anywhere (a config value, a data file, a checkpoint, the device) raises UserError with
a one-line message that says what to do; a script sets `sys.excepthook = exit_on_user_error`
so that the message, and not a traceback, is what the user sees.
"""
import ast
import difflib
import os
import sys
import time


# a training run that stopped at a non-finite loss or weights (its message says so): a result of
# the run, not bad input, and what compare.py reads to report a diverged run
EXIT_DIVERGED = 3


class UserError(Exception):
    """Bad input, reported as one line that says what to do. Exit codes: 1 for bad input or a
    missing resource (data, checkpoint, device), 2 for a bad command line or config value, and
    EXIT_DIVERGED for a run that diverged."""
    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def exit_on_user_error(kind, error, tb):
    """sys.excepthook: an uncaught UserError prints 'error: <message>' on stderr (once under
    torchrun: by rank 0) and exits with its code; Ctrl-C outside a script's own handling is one
    line too (exit 130)."""
    if isinstance(error, KeyboardInterrupt):
        error = UserError("interrupted (Ctrl-C)", exit_code=130)
    if not isinstance(error, UserError):
        return sys.__excepthook__(kind, error, tb)
    if os.environ.get('RANK', '0') != '0':
        # every rank checks the same input, so rank 0 says it once: torchrun stops this rank when
        # rank 0 exits (exiting first would let torchrun kill rank 0 before it prints); an error
        # of this rank alone is still printed, after the wait
        time.sleep(10)
    # the real stderr: once the process group is up, torch's own excepthook calls this one with
    # sys.stderr swapped for a buffer that it prints only after we return, and we never return
    print(f"error: {error}", file=sys.__stderr__)
    sys.stdout.flush()
    sys.__stderr__.flush()
    os._exit(error.exit_code)  # after the hook, Python itself would always exit with 1


def _closest(key, valid):
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(key, value, default):
    """value, converted to the type of `default`, or UserError."""
    if default is None:
        return value
    if default == 'auto' and isinstance(value, (bool, str)) and str(value).lower() in ('true', 'false'):
        return str(value).lower() == 'true'  # an 'auto' knob also takes True or False: --compile=False
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif type(value) is type(default):
        return value
    raise UserError(f"config key '{key}' expects {type(default).__name__} "
                    f"(default {default!r}) but was given {type(value).__name__} {value!r}", exit_code=2)


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
            raise UserError(f"unknown config key '{key}' in {where}{_closest(key, valid)}", exit_code=2)
        overrides[key] = _coerce(key, value, defaults[key])

    for arg in argv:
        if arg.startswith('--'):
            if '=' not in arg:
                raise UserError(f"argument {arg!r} has no value: write --key=value (--help lists the keys)", exit_code=2)
            key, text = arg[2:].split('=', 1)  # first '=' only: --start="a=b" keeps its '='
            value = _parse_literal(text)
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a string key keeps its text: --wandb_run_name=123
            apply(key, value, 'the command line')
        else:
            if not os.path.isfile(arg):
                raise UserError(f"config file {arg!r} not found (arguments are config files or --key=value)",
                                exit_code=2)
            if not arg.endswith('.py'):  # YAML or JSON would run as Python that assigns nothing
                raise UserError(f"config file {arg!r} is not a Python file (.py): write it as assignments, "
                                f"e.g. batch_size = 32, or pass --key=value", exit_code=2)
            scope = {}
            with open(arg) as f:
                code = f.read()
            try:
                exec(compile(code, arg, 'exec'), scope)
            except SystemExit as e:  # sys.exit() in a config would end the run as if it had finished
                raise UserError(f"config file {arg} called sys.exit({e.code!r}): a config assigns values, "
                                f"it does not end the run", exit_code=2)
            except Exception as e:
                raise UserError(f"config file {arg} failed: {type(e).__name__}: {e}", exit_code=2)
            for key, value in scope.items():
                if key.startswith('_') or type(value).__name__ in ('module', 'function', 'type'):
                    continue  # imports, helpers and dunders are the file's own business
                apply(key, value, arg)
    return overrides


def print_help(script, doc):
    """The script's docstring and its config block (between its first two '# ---' lines): every
    knob, its default and its comment."""
    with open(script) as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('# ---'))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith('# ---'))
    print((doc or '').strip() + '\n\nconfig knobs (set with a config file or --key=value):')
    print('\n'.join(lines[start + 1:end]))


def configure_globals(scope, argv=None):
    """Apply configure() to a script's globals: the ones that are plain values are its config.
    --help prints them and exits 0. Returns (the full config dict, the overrides)."""
    argv = sys.argv[1:] if argv is None else argv
    if '--help' in argv or '-h' in argv:
        print_help(scope['__file__'], scope.get('__doc__'))
        sys.exit(0)
    keys = [k for k, v in scope.items() if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None)))]
    overrides = configure({k: scope[k] for k in keys}, argv)
    for k, v in overrides.items():
        print(f"config: {k} = {v!r}")
    scope.update(overrides)
    return {k: scope[k] for k in keys}, overrides
