# CPU-scale pair, Nesterov + Lie-Trotter arm:  python train.py config/cpu_nesterov.py
from config.cpu_baseline import *  # noqa: F401,F403  the same run...
from config.nesterov import *  # noqa: F401,F403  ...with the accelerated block

out_dir = 'out-cpu-nesterov'
wandb_run_name = 'cpu-nesterov'
