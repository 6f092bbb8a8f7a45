# The paper's TinyStories run, polyak + lie_trotter arm.
# One GPU (30 x 16 accumulation):  python train.py config/train_tinystories_polyak.py
from config.train_tinystories_nesterov import *  # noqa: F401,F403  the same run...

momentum = 'polyak'  # ...with another momentum
splitting = 'lie_trotter'
out_dir = 'out-tinystories-polyak'
wandb_run_name = 'tinystories-polyak'
