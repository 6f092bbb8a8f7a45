"""
Tokens as interacting particles (equations: docs/papers.md, part 2): clustering on the sphere
(dynamics/sphere.py) and accelerated attention as inertial dynamics (dynamics/inertial.py).
Each experiment is a command that writes a PNG and a JSON of its numbers:
$ python -m dynamics.exp_sphere --experiment all
$ python -m dynamics.exp_inertial --experiment all
"""
import json
import os


def save_experiment(fig, name, numbers, out_dir):
    """Write fig to out_dir/name.png and numbers to out_dir/name.json."""
    import matplotlib.pyplot as plt  # only the experiments need matplotlib, not the library
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, name + ".png"), dpi=100)
    plt.close(fig)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(numbers, f, indent=1)
    print(f"wrote {out_dir}/{name}.png, .json")
