"""
TinyStories (Eldan & Li 2023, arXiv:2305.07759) in GPT-2 BPE: data/tinystories/{train,val}.bin.

    python prepare/tinystories.py                 # the Hub's roneneldan/TinyStories, its train/validation splits
    python prepare/tinystories.py --train_files TinyStoriesV2-GPT4-train.txt --val_files TinyStoriesV2-GPT4-valid.txt
    python prepare/tinystories.py --train_files 'train-*.parquet' --val_files 'validation-*.parquet' --num_proc 16

Local .txt files are read as TinyStories ships them (a story is the text between '<|endoftext|>'
lines); .json/.jsonl/.parquet files need a 'text' field. Each story becomes its GPT-2 ids followed
by <|endoftext|> (50256). Re-running with the outputs present does nothing unless --force.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for `python prepare/x.py`
from prepare.common import begin, finish, load_hub, load_local, print_plan, tokenize, write_bins  # noqa: E402

HF_DATASET = 'roneneldan/TinyStories'  # parquet on the Hub (data/train-*, data/validation-*): loads with datasets 4+


def prepare(out_dir, train_files=None, val_files=None, num_proc=1, force=False):
    if bool(train_files) != bool(val_files):
        raise SystemExit("error: give both --train_files and --val_files (or neither, to download from the Hub)")
    if not begin(out_dir, force, num_proc):
        return
    if train_files:
        (train, train_paths), (val, val_paths) = load_local(train_files, num_proc), load_local(val_files, num_proc)
        source = dict(source='local files', train_files=train_paths, val_files=val_paths)
    else:
        ds = load_hub(HF_DATASET, "on a machine without network pass local copies with --train_files/--val_files",
                      num_proc=num_proc)
        train, val = ds['train'], ds['validation']
        source = dict(source=f'Hugging Face {HF_DATASET}')
    print_plan([train, val], out_dir, num_proc)
    counts = write_bins(out_dir, [tokenize(train, num_proc, False, 'tokenizing train'),
                                  tokenize(val, num_proc, True, 'tokenizing val')])
    finish(out_dir, counts, split="the source's own: train files -> train.bin, validation files -> val.bin", **source)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out_dir', default=os.path.join('data', 'tinystories'))
    parser.add_argument('--train_files', nargs='+', help='local training files or globs (.txt, .json/.jsonl, .parquet)')
    parser.add_argument('--val_files', nargs='+', help='local validation files or globs, same formats')
    parser.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 2) // 2), help='tokenizer processes')
    parser.add_argument('--force', action='store_true', help='rebuild even if the outputs exist')
    args = parser.parse_args()
    prepare(args.out_dir, args.train_files, args.val_files, args.num_proc, args.force)
