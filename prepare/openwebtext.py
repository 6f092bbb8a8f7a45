"""
OpenWebText (Gokaslan & Cohen 2019) in GPT-2 BPE: data/openwebtext/{train,val}.bin.

    python prepare/openwebtext.py --num_proc 16             # from the Hub, Skylion007/openwebtext
    python prepare/openwebtext.py --data_files 'owt/*.parquet'   # local copies (.parquet, .json/.jsonl, .txt)

Source: the Hub repository Skylion007/openwebtext, the one nanoGPT's `load_dataset("openwebtext")`
resolves to. nanoGPT's prepare broke with datasets 4, which no longer runs loading scripts; the
maintainer has since converted the repository to parquet shards (data/train-*.parquet) and deleted
its loading script, so it loads with datasets 4+ as plain parquet and needs no trust_remote_code.
Where an older revision is cached, --revision pins another one. There is no official validation
split: a document is held out when the seeded hash of its index falls below --val_fraction, which
is stable across machines and worker counts; meta.json records the seed and the counts.

Needs (nanoGPT's measurement with the same tokenizer): train.bin ~17 GB (9,035,582,198 tokens),
val.bin ~8.5 MB, from 8,013,769 documents; the datasets cache holds the text (OpenWebText states
38 GB) and the tokenized copy (~18 GB). An interrupted run leaves out_dir as it found it (a --force
rebuild keeps the old dataset until the new one is complete); run it again: the download and a
finished tokenization are reused from the datasets cache.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for `python prepare/x.py`
from prepare.common import begin, finish, load_hub, load_local, print_plan, tokenize, write_bins  # noqa: E402

HF_DATASET = 'Skylion007/openwebtext'
SEED = 2357  # nanoGPT's split seed, here for the document hash
VAL_FRACTION = 0.0005  # nanoGPT's: ~4,000 of 8,013,769 documents


def prepare(out_dir, data_files=None, num_proc=1, seed=SEED, val_fraction=VAL_FRACTION, revision=None, force=False):
    if not 0 <= val_fraction <= 1:
        raise SystemExit(f"error: --val_fraction is {val_fraction}: pass a fraction between 0 and 1 (nanoGPT's: "
                         f"{VAL_FRACTION})")
    if not begin(out_dir, force, num_proc):
        return
    if data_files:
        ds, paths = load_local(data_files, num_proc)
        source = dict(source='local files', data_files=paths)
    else:
        print(f"downloading {HF_DATASET}: expect ~17 GB for train.bin and the text (38 GB) plus its tokenized "
              f"copy (~18 GB) in the datasets cache; interrupting is safe, a re-run reuses the download")
        ds = load_hub(HF_DATASET, "on a machine without network pass local copies with --data_files",
                      split='train', revision=revision, num_proc=num_proc)
        source = dict(source=f'Hugging Face {HF_DATASET}' + (f'@{revision}' if revision else ''))
    print_plan([ds], out_dir, num_proc)
    counts = write_bins(out_dir, [tokenize(ds, num_proc, (seed, val_fraction), 'tokenizing')])
    finish(out_dir, counts, split=f'by document: sha256(f"{{seed}}:{{index}}") < {val_fraction}', seed=seed,
           val_fraction=val_fraction, documents=len(ds), **source)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out_dir', default=os.path.join('data', 'openwebtext'))
    parser.add_argument('--data_files', nargs='+', help='local copies or globs (.parquet, .json/.jsonl, .txt)')
    parser.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 2) // 2), help='tokenizer processes')
    parser.add_argument('--seed', type=int, default=SEED, help='seed of the validation hash')
    parser.add_argument('--val_fraction', type=float, default=VAL_FRACTION, help='fraction of documents held out')
    parser.add_argument('--revision', help='a Hub revision (branch, tag or commit) of the dataset')
    parser.add_argument('--force', action='store_true', help='rebuild even if the outputs exist')
    args = parser.parse_args()
    prepare(args.out_dir, args.data_files, args.num_proc, args.seed, args.val_fraction, args.revision, args.force)
