"""sample.py end to end from checkpoints that train.py wrote, baseline and accelerated."""
import os

import pytest

from conftest import TINY, run_script


@pytest.fixture(scope='module', params=['gpt', 'nesterov'])
def trained(request, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp(f'run_{request.param}')
    run_script('train.py', f'--data_root={data_root}', f'--out_dir={out}', *TINY, f'--model_type={request.param}',
               '--max_iters=60', '--eval_interval=30', '--learning_rate=3e-3')
    return out


def sample(out_dir, *args, **kw):
    return run_script('sample.py', f'--out_dir={out_dir}', '--max_new_tokens=40', *args, **kw)


def text(proc):
    """The first sample: what follows the configuration and runtime lines."""
    lines = proc.stdout.split('---------------')[0].splitlines()
    while lines and lines[0].startswith(('config: ', 'dtype auto', 'compile auto', 'note: ')):
        lines.pop(0)
    return '\n'.join(lines)


def test_sample_generates_text(trained):
    proc = sample(trained, '--num_samples=2', '--start=def ')
    samples = proc.stdout.split('---------------\n')
    assert len(samples) == 3 and samples[-1] == ''
    first, second = text(proc), samples[1]
    assert all(s.startswith('def ') and len(s.encode()) >= 40 for s in (first, second))


def test_greedy_sampling_is_deterministic_seed_independent_and_the_same_without_the_cache(trained):
    a = sample(trained, '--temperature=0', '--seed=1', '--num_samples=1', '--max_new_tokens=50')
    b = sample(trained, '--temperature=0', '--seed=2', '--num_samples=1', '--max_new_tokens=50', '--use_cache=False')
    assert text(a) == text(b) and len(text(a)) >= 50


def test_prompt_from_file_and_last_checkpoint(trained, tmp_path):
    prompt = tmp_path / 'prompt.txt'
    prompt.write_text('The for statement')
    proc = sample(trained, f'--start=FILE:{prompt}', '--ckpt_name=ckpt.pt', '--num_samples=1', '--temperature=0')
    assert 'The for statement' in proc.stdout


def test_missing_checkpoint_is_one_line_error(tmp_path):
    proc = sample(tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: no checkpoint at {os.path.join(tmp_path, 'ckpt_best.pt')}: " \
                                  f"train one first (python train.py --out_dir={tmp_path})"
