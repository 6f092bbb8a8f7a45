# The paper's training recipe (YuriiFormer, "small": GPT-2 small 12L/12H/768, context 1024), written
# once; the train_{tinystories,owt,owt24}_* files add the dataset, its schedule and the model.
# 30 batch size * 1024 block size * 16 gradaccum = 491,520 tokens per optimizer step
batch_size = 30
block_size = 1024
gradient_accumulation_steps = 16

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False

# Muon on the block matrices, AdamW on embeddings, norms and scalars (scalars at 5x = 3e-3)
optimizer = 'muon'
learning_rate = 6e-4
scalar_lr_mult = 5.0
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.1
grad_clip = 1.0
min_lr = 6e-5  # cosine down to 0.1x peak

# validation every 100 steps; log.jsonl keeps every value, so best and final are both reported
eval_interval = 100
eval_iters = 20
log_interval = 10

wandb_project = 'yuriiformer'
dtype = 'bfloat16'
compile = True
