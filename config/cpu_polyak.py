# CPU-scale side-by-side pair on the offline default corpus, Polyak + Lie-Trotter arm:
# the default 4-layer byte-level model, a few minutes on 2 CPU cores.
#   python train.py config/cpu_polyak.py
# Differs from cpu_baseline.py only in the model block below (a test checks it).

out_dir = 'out-cpu-polyak'
wandb_run_name = 'cpu-polyak'
dataset = 'python_docs'
batch_size = 16
block_size = 128

# model
model_type = 'nesterov'
momentum = 'polyak'
splitting = 'lie_trotter'
velocity_init = 'embedding'

n_layer = 4
n_head = 4
n_embd = 128

optimizer = 'adamw'
learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
warmup_iters = 100
min_lr = 1e-4
eval_interval = 100
eval_iters = 20
