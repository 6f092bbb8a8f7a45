"""
A GPT-2 BPE corpus that every machine has offline: the .py files of this Python's standard
library (top level, not the packages), one document each, written as TinyStories-style text
files for prepare/tinystories.py's local-files path. The study in docs/acceleration.md uses it:

$ python scripts/python_sources.py --out_dir=data/pysrc_text
$ python prepare/tinystories.py --train_files data/pysrc_text/train.txt --val_files data/pysrc_text/val.txt --out_dir=data/pysrc
"""
import argparse
import glob
import os
import random
import sysconfig

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument('--out_dir', default=os.path.join('data', 'pysrc_text'))
parser.add_argument('--val_files', type=int, default=12, help='files held out for validation (a seeded draw)')
parser.add_argument('--seed', type=int, default=0)
args = parser.parse_args()

files = sorted(glob.glob(os.path.join(sysconfig.get_paths()['stdlib'], '*.py')))  # sorted: the same draw everywhere
random.Random(args.seed).shuffle(files)
os.makedirs(args.out_dir, exist_ok=True)
for split, chosen in (('val', files[:args.val_files]), ('train', files[args.val_files:])):
    with open(os.path.join(args.out_dir, f'{split}.txt'), 'w', encoding='utf-8') as out:
        for path in chosen:
            with open(path, encoding='utf-8', errors='replace') as f:
                out.write(f.read().replace('<|endoftext|>', '') + '\n<|endoftext|>\n')
    print(f"{split}: {len(chosen)} files -> {os.path.join(args.out_dir, f'{split}.txt')}")
