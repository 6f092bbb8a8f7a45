"""scripts/gpu_check.py works before a GPU is at hand: the same steps at a tiny shape on the CPU."""
import json

import numpy as np

from conftest import run_script


def test_gpu_check_runs_on_the_cpu_at_a_tiny_shape(tmp_path):
    proc = run_script('scripts/gpu_check.py', '--tiny', f'--out={tmp_path}', timeout=600)
    assert 'gpu check passed' in proc.stdout
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert [r['arm'] for r in report['bench']['results']] == ['baseline', 'nesterov']
    assert all(r['tokens_per_s'] > 0 and r['peak_mem_mb'] > 0 for r in report['bench']['results'])
    for arm in ('baseline', 'nesterov'):
        t = report['training'][arm]
        assert t['evals'] == [0, 10, 20] and t['val_loss_last'] < t['val_loss_first']
    ids = np.fromfile(tmp_path / 'data' / 'zipf' / 'train.bin', dtype=np.uint16)
    assert ids.max() < 50257 and np.bincount(ids)[0] > np.bincount(ids)[100]  # Zipf: id 0 is the most frequent
