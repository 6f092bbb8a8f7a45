# The accelerated block: Nesterov + Lie-Trotter, the paper's headline model. Add it to any
# baseline config: python train.py config/train_owt_baseline.py config/nesterov.py
model_type = 'nesterov'
momentum = 'nesterov'
splitting = 'lie_trotter'
velocity_init = 'embedding'  # the paper: separate learned token and position tables for V0
velocity_norm = 'shared'  # one LN_v per block
