# The paper's OpenWebText run at "medium" size (24L/16H/1024), Nesterov + Lie-Trotter arm.
# 8 GPUs:  torchrun --standalone --nproc_per_node=8 train.py config/train_owt24_nesterov.py
from config.train_owt24_baseline import *  # noqa: F401,F403  the same run...
from config.nesterov import *  # noqa: F401,F403  ...with the accelerated block

out_dir = 'out-owt24-nesterov'
wandb_run_name = 'owt24-nesterov'
