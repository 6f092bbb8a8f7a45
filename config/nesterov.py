# The accelerated block: Nesterov + Lie-Trotter, the paper's headline model. Add it to any
# baseline config: python train.py config/train_owt_baseline.py config/nesterov.py
model_type = 'nesterov'
momentum = 'nesterov'
splitting = 'lie_trotter'
velocity_init = 'embedding'  # the paper: separate learned token and position tables for V0
# one LN_v per substep (train.py's default too, written here so the paper's block is complete):
# the public reproduction that matches the paper's gaps does this, and at CPU scale one per block
# ties with it (docs/acceleration.md), so nothing here argues otherwise
velocity_norm = 'per_substep'
