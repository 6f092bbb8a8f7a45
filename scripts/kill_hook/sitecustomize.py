"""Kill -9 a Python process right after its N-th os.replace into a path containing SUBSTRING,
with KILL_AFTER_REPLACE=N:SUBSTRING in its environment and this folder on its PYTHONPATH
(Python imports sitecustomize at start-up). Each rename of a checkpoint or of the log is a step
of a save, so this kills between the steps of a save, where a timed kill rarely lands: after
ckpt_best.pt is written and before ckpt.pt is linked to it, say. scripts/kill_test.py and
tests/test_faults.py use it; without the variable it does nothing."""
import os
import signal

if os.environ.get('KILL_AFTER_REPLACE'):
    _n, _, _where = os.environ['KILL_AFTER_REPLACE'].partition(':')
    _left = [int(_n)]
    _replace = os.replace

    def _replace_then_maybe_die(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if _where in os.fspath(dst):
            _left[0] -= 1
            if _left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
    os.replace = _replace_then_maybe_die
