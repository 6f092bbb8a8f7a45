"""
The offline GPT-2 tokenizer (tokenizer.py) gives exactly GPT-2's ids, without network.

    python -m pytest tests/test_tokenizer.py

tiktoken.get_encoding('gpt2') would download, so the expected ids are written down here and
checked a second way: by a pure-Python BPE that follows OpenAI's original gpt-2 encoder.py on the
same encoder.json / vocab.bpe.
"""
import json
import shutil
import socket

import pytest

import tokenizer
from tokenizer import GPT2_EOT, get_tokenizer, gpt2_encoding

# GPT-2 ids of a fixed sentence set: ASCII, whitespace, accents, CJK, emoji, contractions, digits,
# code, and the special token's text (which encode_ordinary keeps as text)
EXPECTED = {
    "Hello world": [15496, 995],
    "The quick brown fox jumps over the lazy dog.": [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13],
    "  leading spaces, trailing\ttab\nand newline\n\n": [220, 3756, 9029, 11, 25462, 197, 8658, 198, 392, 649, 1370, 628],
    "Café naïve résumé — “quotes” ‘and’ ellipsis…": [34, 1878, 2634, 41492, 40560, 16345, 2634, 851, 564, 250, 421,
                                                     6421, 447, 251, 564, 246, 392, 447, 247, 30004, 2419, 271, 1399],
    "日本語のテキスト、中文文本。": [33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302, 23513, 40792, 23877, 229,
                           23877, 229, 17312, 105, 16764],
    "emoji: 😀👍🏽 and a flag 🇫🇷": [368, 31370, 25, 30325, 222, 41840, 235, 8582, 237, 121, 290, 257, 6056, 12520, 229,
                                104, 8582, 229, 115],
    "I'm, you're, it's, we'll, they've, she'd, don't": [40, 1101, 11, 345, 821, 11, 340, 338, 11, 356, 1183, 11, 484, 1053,
                                                        11, 673, 1549, 11, 836, 470],
    "numbers 1234567890 3.14159 -42 1e-5": [77, 17024, 17031, 2231, 30924, 3829, 513, 13, 1415, 19707, 532, 3682, 352, 68,
                                            12, 20],
    "<|endoftext|>": [27, 91, 437, 1659, 5239, 91, 29],
    "def f(x):\n    return x**2  # code": [4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 1174, 17, 220, 1303, 2438],
}


def reference_gpt2_encoder():
    """OpenAI's gpt-2 src/encoder.py algorithm: bytes -> printable unicode, regex pre-split, greedy
    lowest-rank merges. Slow and independent of tiktoken's Rust BPE."""
    regex = pytest.importorskip('regex')
    encoder_json, vocab_bpe = tokenizer.gpt2_vocab_files()
    with open(encoder_json) as f:
        encoder = json.load(f)
    with open(vocab_bpe, encoding='utf-8') as f:
        merges = [tuple(line.split()) for line in f.read().split('\n')[1:-1]]
    ranks = {pair: i for i, pair in enumerate(merges)}
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:  # unprintable bytes map past 255, in order
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_encoder = dict(zip(bs, map(chr, cs)))
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(word):
        word = tuple(word)
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float('inf')))
            if pair not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(text):
        return [encoder[t] for piece in pat.findall(text)
                for t in bpe(''.join(byte_encoder[b] for b in piece.encode('utf-8')))]
    return encode


def test_hello_world_and_special_token():
    tok = get_tokenizer('gpt2')
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.eot_token == GPT2_EOT == 50256
    assert tok.vocab_size == 50257


def test_offline_ids_equal_gpt2_on_fixed_sentences():
    tok = get_tokenizer('gpt2')
    for text, ids in EXPECTED.items():
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text


def test_offline_ids_equal_reference_bpe():
    encode = reference_gpt2_encoder()
    tok = get_tokenizer('gpt2')
    for text, ids in EXPECTED.items():
        assert encode(text) == ids, text
    longer = "Ünïcödé and ASCII mixed: naïve café, 東京, Ελληνικά, русский, 🤖🚀, tabs\tand  double  spaces.\n"
    assert tok.encode(longer) == encode(longer)


def test_endoftext_in_text_is_not_the_separator():
    tok = get_tokenizer('gpt2')
    ids = tok.encode("story one<|endoftext|>story two")
    assert GPT2_EOT not in ids
    assert tok.decode(ids + [GPT2_EOT]) == "story one<|endoftext|>story two<|endoftext|>"


def test_built_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path))  # an empty cache: the files must come from the package

    def no_network(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a network connection")
    monkeypatch.setattr(socket, 'create_connection', no_network)
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    assert gpt2_encoding().encode_ordinary("Hello world") == [15496, 995]


@pytest.mark.parametrize('which', ['encoder.json', 'vocab.bpe'])
def test_corrupted_vocab_file_is_refused(monkeypatch, tmp_path, which):
    encoder_json, vocab_bpe = tokenizer.gpt2_vocab_files()
    paths = {'encoder.json': tmp_path / 'encoder.json', 'vocab.bpe': tmp_path / 'vocab.bpe'}
    shutil.copy(encoder_json, paths['encoder.json'])
    shutil.copy(vocab_bpe, paths['vocab.bpe'])
    monkeypatch.setattr(tokenizer, 'gpt2_vocab_files', lambda: (str(paths['encoder.json']), str(paths['vocab.bpe'])))
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path / 'cache1'))
    assert gpt2_encoding().encode_ordinary("Hello world") == [15496, 995]  # intact copies are accepted...
    text = paths[which].read_text(encoding='utf-8')
    # ...one changed id or one swapped merge is not: the ids would silently differ from GPT-2's
    paths[which].write_text(text.replace('"hello": 31373', '"hello": 31374') if which == 'encoder.json'
                            else text.replace('\nh e\n', '\ne h\n', 1), encoding='utf-8')
    assert paths[which].read_text(encoding='utf-8') != text
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path / 'cache2'))  # tiktoken caches by path: a fresh cache
    with pytest.raises(ValueError, match='[Hh]ash'):
        gpt2_encoding()
