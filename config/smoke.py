# A seconds-long end-to-end check of the whole pipeline on the CPU (data, training, eval,
# checkpoints): python train.py config/smoke.py   then   python sample.py --out_dir=out-smoke
out_dir = 'out-smoke'
dataset = 'python_docs'
batch_size = 8
block_size = 64
n_layer = 2
n_head = 2
n_embd = 64
max_iters = 100
lr_decay_iters = 100
warmup_iters = 10
eval_interval = 50
eval_iters = 5
log_interval = 10
compile = False  # compiling would take longer than the run
