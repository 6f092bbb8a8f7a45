# The paper's OpenWebText run, baseline arm: GPT-2 small, GD + Lie-Trotter (nanoGPT's block).
# One GPU (30 x 16 accumulation):  python train.py config/train_owt_baseline.py
# 8 GPUs, the same global batch:   torchrun --standalone --nproc_per_node=8 train.py config/train_owt_baseline.py
from config.paper import *  # noqa: F401,F403  the recipe

out_dir = 'out-owt-baseline'
wandb_run_name = 'owt-baseline'
dataset = 'openwebtext'
model_type = 'gpt'
muon_lr = 0.004  # the TinyStories value (0.02) is far too high here
# 30k steps: 3k warmup, cosine to 0.1x peak
max_iters = 30000
lr_decay_iters = 30000
warmup_iters = 3000
