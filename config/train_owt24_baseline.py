# The paper's OpenWebText run, baseline arm: GPT-2 medium shape (24L/16H/1024), GD + Lie-Trotter.
# One GPU (30 x 16 accumulation):  python train.py config/train_owt24_baseline.py
# 8 GPUs, the same global batch:   torchrun --standalone --nproc_per_node=8 train.py config/train_owt24_baseline.py
# Differs from train_owt24_nesterov.py only in the model block below (a test checks it).

out_dir = 'out-owt24-baseline'
wandb_log = False
wandb_project = 'yuriiformer'
wandb_run_name = 'owt24-baseline'

dataset = 'openwebtext'
# 30 batch size * 1024 block size * 16 gradaccum = 491,520 tokens per optimizer step
batch_size = 30
block_size = 1024
gradient_accumulation_steps = 16

# model
model_type = 'gpt'

n_layer = 24
n_head = 16
n_embd = 1024
dropout = 0.0
bias = False

# Muon on the block matrices, AdamW on embeddings, norms and scalars (scalars at 5x)
optimizer = 'muon'
muon_lr = 0.006
learning_rate = 6e-4
scalar_lr_mult = 5.0
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.1
grad_clip = 1.0

# 30k steps: 3k warmup, cosine to 0.1x peak
max_iters = 30000
lr_decay_iters = 30000
warmup_iters = 3000
min_lr = 6e-5

# validation every 100 steps; log.jsonl keeps every value, so best and final are both reported
eval_interval = 100
eval_iters = 20
log_interval = 10

dtype = 'bfloat16'
compile = True
