# CPU-scale side-by-side pair on the offline default corpus, baseline arm: the default 4-layer
# byte-level model at the setting of docs/acceleration.md (block 64, batch 12, 2000 steps).
#   python train.py config/cpu_baseline.py
out_dir = 'out-cpu-baseline'
wandb_run_name = 'cpu-baseline'
model_type = 'gpt'
block_size = 64
batch_size = 12
max_iters = 2000
lr_decay_iters = 2000
warmup_iters = 100
eval_interval = 100
