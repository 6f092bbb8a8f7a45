"""
diagnostics.py, the checkpoint command: the table it prints (on the checkpoint's validation data
where it exists, random tokens where not), the baseline's, and one-line errors on bad files.
$ python -m pytest tests/test_diagnostics.py
"""
import math
from dataclasses import asdict

import pytest
import torch

import loader
import model
from conftest import run_script, write_dataset
from diagnostics import format_diagnostics
from model_nesterov import NesterovConfig, NesterovGPT

TINY = dict(n_layer=3, n_head=2, n_embd=32, vocab_size=64, block_size=16, bias=True, dropout=0.0)


def make(**kw):
    torch.manual_seed(0)
    return NesterovGPT(NesterovConfig(**{**TINY, **kw})).eval()


def run_command(*args):
    return run_script('diagnostics.py', *args, check=False, timeout=60)


def write_ckpt(path, net, model_type='nesterov', dataset='none'):
    torch.save(dict(model=net.state_dict(), model_args=asdict(net.config), model_type=model_type, iter_num=7,
                    config=dict(data_root=str(path.parent), dataset=dataset, batch_size=2)), path)


def test_command_prints_a_checkpoints_diagnostics(tmp_path):
    net = make(mu_init=0.9, beta_init=0.9, gamma_init=1.0)
    with torch.no_grad():
        net.transformer.h[2].gamma_m.softplus_inv.fill_(math.log(math.expm1(2.7)))  # gamma/beta = 3
    write_ckpt(tmp_path / 'ckpt.pt', net)
    r = run_command(tmp_path / 'ckpt.pt')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert 'random tokens' in lines[1]  # no dataset beside this checkpoint
    header = lines[-4].split()
    assert header == ['layer', 'rms_x', 'rms_v', 'mu_a', 'beta_a', 'gamma/beta_a', 'mu_m', 'beta_m', 'gamma/beta_m',
                      'gain_a', 'gain_m']
    row = dict(zip(header, lines[-1].split()))
    assert (row['layer'], row['mu_m'], row['beta_m'], row['gamma/beta_m']) == ('2', '0.9000', '0.9000', '3.0000')


def test_command_reads_the_checkpoints_validation_data(tmp_path):
    """With the run's dataset present, the table is the model's diagnostics on the first
    evaluation windows of its val split (the command used to crash here: open_split needs meta)."""
    g = torch.Generator().manual_seed(3)
    val = torch.randint(TINY['vocab_size'], (200,), generator=g).tolist()
    write_dataset(str(tmp_path), 'tiny', val, val)
    net = make()
    write_ckpt(tmp_path / 'ckpt.pt', net, dataset='tiny')
    r = run_command(tmp_path / 'ckpt.pt')
    assert r.returncode == 0, r.stderr
    assert f"2 x 16 tokens of {tmp_path / 'tiny'}/val.bin" in r.stdout.splitlines()[1]
    data = loader.open_split(str(tmp_path / 'tiny'), 'val', 16, 64, loader.read_meta(str(tmp_path / 'tiny')))
    idx, _ = loader.get_batch(data, loader.eval_offsets(len(data), 16, 2), 16, 'cpu')
    assert r.stdout.strip().endswith(format_diagnostics(net.diagnostics(idx)))


def test_command_on_baseline_and_bad_files(tmp_path):
    torch.manual_seed(0)
    write_ckpt(tmp_path / 'gpt.pt', model.GPT(model.GPTConfig(**TINY)), model_type='gpt')
    r = run_command(tmp_path / 'gpt.pt')
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-4].split() == ['layer', 'rms_x']
    (tmp_path / 'corrupt.pt').write_bytes(b'not a checkpoint')
    for bad in (tmp_path / 'missing.pt', tmp_path / 'corrupt.pt'):
        r = run_command(bad)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith('error: ')


@pytest.mark.parametrize('diag,table', [
    ({'rms_x': [1.0, 2.5]}, 'layer        rms_x\n    0       1.0000\n    1       2.5000'),
])
def test_format_diagnostics_is_one_row_per_layer(diag, table):
    assert format_diagnostics(diag) == table
