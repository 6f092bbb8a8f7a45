"""
The named arms of a comparison (compare.py's --arms, bench.py's --arms): each is a set of
config values on top of train.py's defaults, so an arm is reproduced by passing them as flags.
"""
from model_nesterov import CHOICES

ARMS = dict(baseline=dict(model_type='gpt'))
for _m in CHOICES['momentum']:
    ARMS[_m] = dict(model_type='nesterov', momentum=_m, splitting='lie_trotter')
    ARMS[f'{_m}_euler'] = dict(model_type='nesterov', momentum=_m, splitting='euler')
# the 2x2 of tables x dynamics: baseline (neither), tables (the control), nesterov_tied, nesterov (both)
ARMS['tables'] = dict(model_type='nesterov', momentum='gd', splitting='lie_trotter', table_skip=True)
ARMS['nesterov_tied'] = dict(model_type='nesterov', momentum='nesterov', splitting='lie_trotter', velocity_init='tied')
