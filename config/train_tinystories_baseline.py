# The paper's TinyStories run, baseline arm: GPT-2 small, GD + Lie-Trotter (nanoGPT's block).
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_baseline.py
# 8 GPUs, the same global batch:   torchrun --standalone --nproc_per_node=8 train.py config/train_tinystories_baseline.py
from config.paper import *  # noqa: F401,F403  the recipe

out_dir = 'out-tinystories-baseline'
wandb_run_name = 'tinystories-baseline'
dataset = 'tinystories'
model_type = 'gpt'
muon_lr = 0.02
# 10k steps: 1k warmup, cosine to 0.1x peak
max_iters = 10000
lr_decay_iters = 10000
warmup_iters = 1000
