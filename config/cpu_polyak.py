# CPU-scale pair, Polyak + Lie-Trotter arm:  python train.py config/cpu_polyak.py
from config.cpu_nesterov import *  # noqa: F401,F403  the same run...

momentum = 'polyak'  # ...without the look-ahead
out_dir = 'out-cpu-polyak'
wandb_run_name = 'cpu-polyak'
