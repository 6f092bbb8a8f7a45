# The paper's TinyStories run, Nesterov + Lie-Trotter arm (the paper's headline model).
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_nesterov.py
# 8 GPUs, the same global batch:   torchrun --standalone --nproc_per_node=8 train.py config/train_tinystories_nesterov.py
# Differs from train_tinystories_baseline.py only in the model block below (a test checks it).

out_dir = 'out-tinystories-nesterov'
wandb_log = False
wandb_project = 'yuriiformer'
wandb_run_name = 'tinystories-nesterov'

dataset = 'tinystories'
# 30 batch size * 1024 block size * 16 gradaccum = 491,520 tokens per optimizer step
batch_size = 30
block_size = 1024
gradient_accumulation_steps = 16

# model
model_type = 'nesterov'
momentum = 'nesterov'
splitting = 'lie_trotter'
velocity_init = 'embedding'  # the paper: separate learned token and position tables for V0

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False

# Muon on the block matrices, AdamW on embeddings, norms and scalars (scalars at 5x)
optimizer = 'muon'
muon_lr = 0.02
learning_rate = 6e-4
scalar_lr_mult = 5.0
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.1
grad_clip = 1.0

# 10k steps: 1k warmup, cosine to 0.1x peak
max_iters = 10000
lr_decay_iters = 10000
warmup_iters = 1000
min_lr = 6e-5

# validation every 100 steps; log.jsonl keeps every value, so best and final are both reported
eval_interval = 100
eval_iters = 20
log_interval = 10

dtype = 'bfloat16'
compile = True
