# What `python train.py` runs with no arguments, written out: a 4-layer byte-level GPT on the
# offline default corpus (the Python docs), a few minutes on 2 CPU cores.
# A test checks that every value here equals train.py's default.
#   python train.py config/train_default.py      # the same as: python train.py

out_dir = 'out'
dataset = 'python_docs'
batch_size = 16
block_size = 128
gradient_accumulation_steps = 1

model_type = 'gpt'
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

optimizer = 'adamw'
learning_rate = 1e-3
beta1 = 0.9
beta2 = 0.99
weight_decay = 0.1
grad_clip = 1.0

max_iters = 1500
lr_decay_iters = 1500
warmup_iters = 100
min_lr = 1e-4

eval_interval = 250
eval_iters = 20
log_interval = 25
