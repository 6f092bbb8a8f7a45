# The paper's TinyStories run, nesterov + euler arm.
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_nesterov_euler.py
from config.train_tinystories_nesterov import *  # noqa: F401,F403  the same run...

momentum = 'nesterov'  # ...with another momentum
splitting = 'euler'
out_dir = 'out-tinystories-nesterov_euler'
wandb_run_name = 'tinystories-nesterov_euler'
