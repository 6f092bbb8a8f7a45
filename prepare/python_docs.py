"""
The offline default corpus: the Python reference documentation that ships with every CPython
install (the standard library's pydoc_data, ~466 KB of English and code in 79 topics), as bytes.

    python prepare/python_docs.py            # writes data/python_docs/, in about a second

train.py runs this by itself when the default dataset is missing.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for `python prepare/x.py`
from prepare.common import begin, is_val_document, write_dataset  # noqa: E402
from tokenizer import get_tokenizer  # noqa: E402

SEED = 1337
VAL_FRACTION = 0.1


def prepare(data_dir, force=False):
    if not begin(data_dir, force):
        return
    import pydoc_data.topics
    topics = pydoc_data.topics.topics
    tok = get_tokenizer('bytes')
    splits = {'train': [], 'val': []}
    for i, name in enumerate(sorted(topics)):  # sorted: the same order on every Python
        doc = tok.encode(topics[name].strip() + '\n\n')  # no end-of-text id in a byte vocab: a blank line separates
        splits['val' if is_val_document(i, SEED, VAL_FRACTION) else 'train'].extend(doc)
    write_dataset(data_dir, splits, dict(
        tokenizer='bytes', vocab_size=tok.vocab_size, source=f'pydoc_data.topics (Python {sys.version.split()[0]})',
        split=f'by document, sha256(seed:index) < {VAL_FRACTION}', seed=SEED, documents=len(topics),
        train_tokens=len(splits['train']), val_tokens=len(splits['val'])))
    print(f"wrote {data_dir}: train {len(splits['train']):,} tokens, val {len(splits['val']):,} tokens")


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out_dir', default=os.path.join('data', 'python_docs'))
    parser.add_argument('--force', action='store_true', help='rebuild even if the outputs exist')
    args = parser.parse_args()
    prepare(args.out_dir, args.force)
