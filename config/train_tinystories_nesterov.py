# The paper's TinyStories run, Nesterov + Lie-Trotter arm (the headline model).
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_nesterov.py
# 8 GPUs, the same global batch:   torchrun --standalone --nproc_per_node=8 train.py config/train_tinystories_nesterov.py
from config.train_tinystories_baseline import *  # noqa: F401,F403  the same run...
from config.nesterov import *  # noqa: F401,F403  ...with the accelerated block

out_dir = 'out-tinystories-nesterov'
wandb_run_name = 'tinystories-nesterov'
