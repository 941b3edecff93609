"""charlm's corpus at scale (issue 25: a 50 MB --data file peaked at 1147 MB): loading, the
vocabulary, the tokens and the count baselines stay within a small multiple of the file, and
the chunked code gives the numbers of the plain one."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from eggroll_np.training.workloads import corpus


def _text_file(tmp_path, nbytes: int):
    seed = ("The quick brown fox — Grüße, naïve café. 0123456789\n" * 64).encode()
    path = tmp_path / "big.txt"
    path.write_bytes((seed * (nbytes // len(seed) + 1))[:nbytes].decode("utf-8", "ignore").encode())
    return path


def test_a_large_corpus_is_loaded_tokenized_and_counted_in_bounded_memory(tmp_path):
    path = _text_file(tmp_path, 16 << 20)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        data, _ = corpus.load_text(path)
        train, val = corpus.split(data, 0.1)
        vocab = corpus.Vocabulary(train)
        tokens = vocab.tokens(train)
        corpus.token_counts(tokens, vocab.size)
        corpus.unigram_bits_per_byte(train, val)
        corpus.bigram_bits_per_byte(train, val)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tokens.dtype == np.uint8
    assert len(tokens) == len(train)
    # bytes + uint8 tokens (2x the file) plus one chunk's temporaries; measured 2.1x + 18 MB
    # (before: int64 tokens and whole-corpus bincounts, ~23x)
    assert peak < 2 * size + (32 << 20), peak / size


def test_tokens_equal_the_table_lookup():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 200, 5000).astype(np.uint8)
    vocab = corpus.Vocabulary(train)
    text = rng.integers(0, 256, (7, 300)).astype(np.uint8)  # unseen bytes too, any shape
    got = vocab.tokens(text)
    assert got.dtype == np.uint8
    assert got.shape == text.shape
    np.testing.assert_array_equal(got, vocab.to_token[text])


def test_all_256_byte_values_seen_still_fit_a_byte():
    vocab = corpus.Vocabulary(np.arange(256, dtype=np.uint8))
    assert vocab.size == 257
    assert vocab.unseen == 0
    np.testing.assert_array_equal(vocab.tokens(np.arange(256, dtype=np.uint8)), np.arange(256))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_chunked_counts_equal_whole_array_counts(monkeypatch, chunk):
    monkeypatch.setattr(corpus, "_CHUNK", chunk)
    t = np.random.default_rng(1).integers(0, 5, 101).astype(np.uint8)
    np.testing.assert_array_equal(corpus.token_counts(t, 5), np.bincount(t, minlength=5))
    want = np.zeros((5, 5), np.int64)
    np.add.at(want, (t[:-1], t[1:]), 1)
    np.testing.assert_array_equal(corpus.pair_counts(t, 5), want)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 20])
def test_utf8_is_checked_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(corpus, "_CHUNK", chunk)
    good = ("€uro — ü " * 10).encode()  # 3- and 2-byte characters cut by every chunk size
    path = tmp_path / "good.txt"
    path.write_bytes(good)
    data, _ = corpus.load_text(path)
    assert data.tobytes() == good
    for offset in (0, 1, 37, len(good) - 1):
        bad = bytearray(good)
        bad[offset] = 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(UnicodeDecodeError) as whole:  # where decoding all at once fails
            bytes(bad).decode("utf-8")
        want = whole.value.start
        with pytest.raises(ValueError, match=rf"good\.txt.*not UTF-8.*offset {want}$"):
            corpus.load_text(path)
    path.write_bytes(good + "€".encode()[:2])  # the text ends inside a character
    with pytest.raises(ValueError, match=rf"not UTF-8.*offset {len(good)}$"):
        corpus.load_text(path)
