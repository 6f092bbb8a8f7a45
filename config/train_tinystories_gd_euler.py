# The paper's TinyStories run, gd + euler arm.
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_gd_euler.py
from config.train_tinystories_nesterov import *  # noqa: F401,F403  the same run...

momentum = 'gd'  # ...with another momentum
splitting = 'euler'
out_dir = 'out-tinystories-gd_euler'
wandb_run_name = 'tinystories-gd_euler'
