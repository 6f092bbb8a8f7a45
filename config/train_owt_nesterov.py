# The paper's OpenWebText run, Nesterov + Lie-Trotter arm.
# 8 GPUs:  torchrun --standalone --nproc_per_node=8 train.py config/train_owt_nesterov.py
from config.train_owt_baseline import *  # noqa: F401,F403  the same run...
from config.nesterov import *  # noqa: F401,F403  ...with the accelerated block

out_dir = 'out-owt-nesterov'
wandb_run_name = 'owt-nesterov'
