# CPU-scale side-by-side pair on the offline default corpus, baseline arm (GD + Lie-Trotter):
# the default 4-layer byte-level model, a few minutes on 2 CPU cores.
#   python train.py config/cpu_baseline.py
# Differs from cpu_nesterov.py / cpu_polyak.py only in the model block below (a test checks it).

out_dir = 'out-cpu-baseline'
wandb_run_name = 'cpu-baseline'
dataset = 'python_docs'
batch_size = 16
block_size = 128

# model
model_type = 'gpt'

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
