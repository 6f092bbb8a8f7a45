# The paper's OpenWebText run at "medium" size (24L/16H/1024), baseline arm.
# 8 GPUs:  torchrun --standalone --nproc_per_node=8 train.py config/train_owt24_baseline.py
from config.train_owt_baseline import *  # noqa: F401,F403  the small run's recipe and schedule

out_dir = 'out-owt24-baseline'
wandb_run_name = 'owt24-baseline'
n_layer = 24
n_head = 16
n_embd = 1024
muon_lr = 0.006
