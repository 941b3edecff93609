"""Byte-level text for `charlm`: the corpus loader, the held-out split, count-model baselines.

Text is modelled as its UTF-8 bytes (vocabulary 256), so "bits per byte" is well defined for any
language. The default corpus ships with every Python: the standard library's `pydoc_data`
documentation topics (~465 KB of English). Bits per byte of a text t are always measured on the
predictions of t[1:], each from the bytes before it (t[0] is context only), so a count model and
a recurrent model are scored on the same positions.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import _checks

__all__ = [
    "VOCAB",
    "load_text",
    "encode",
    "decode",
    "split",
    "training_windows",
    "Vocabulary",
    "unigram_probs",
    "bigram_probs",
    "unigram_bits_per_byte",
    "bigram_bits_per_byte",
    "token_counts",
    "pair_counts",
    "token_count_logits",
    "verdict",
    "PROMPT_END",
    "text_sampler",
]

#: Put between a sample's prompt and the bytes the model generated after it.
PROMPT_END = " <<prompt ends; generated:>> "


def text_sampler(
    sample: Callable[..., np.ndarray], val: np.ndarray, length: int, vocab: Any, seed: int
) -> Callable[[Any], str] | None:
    """A Task's `sample` for a byte model, or None when `length` is 0: params -> the held-out
    split's first 64 bytes, PROMPT_END, then `length` bytes drawn after them by
    `sample(params, prompt, length, vocab, rng)`, with the run's own rng stream [seed, 7]."""
    if not length:
        return None

    def text(params: Any) -> str:
        prompt = val[:64]
        drawn = sample(params, prompt, length, vocab, np.random.default_rng([seed, 7]))
        return f"{decode(prompt)}{PROMPT_END}{decode(drawn)}"

    return text

VOCAB = 256  # every byte value
_MIN_BYTES = 64  # shorter files cannot give a training and a held-out split worth the name
# Bytes per step of the loops over a whole corpus: their temporaries (int64 indices, decoded
# text) stay ~10-30 MB however large the file is, instead of 8-24x the file.
_CHUNK = 1 << 20


def load_text(data: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, str]:
    """The corpus as uint8 bytes and a description of where it came from.

    A file is read straight into the returned array and checked as UTF-8 a chunk at a time, so
    memory stays about the file's size (no Python str or bytes copy of the whole text).

    Args:
        data: None for the pydoc_data topics shipped with Python (joined in sorted topic order),
            else the path of a UTF-8 text file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is empty, binary (NUL bytes), not valid UTF-8 or shorter than
            64 bytes (naming the path).
    """
    if data is None:
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[k] for k in sorted(topics))
        return encode(text), "pydoc_data.topics (Python's documentation topics)"
    path = os.fspath(data)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--data {path!r} is not a file")
    with open(path, "rb") as fh:
        raw = np.empty(os.fstat(fh.fileno()).st_size, np.uint8)
        view, have = memoryview(raw), 0
        while have < len(raw):  # readinto may return less than asked
            got = fh.readinto(view[have:])
            if not got:
                break
            have += got
    raw = raw[:have]  # a file that shrank while it was read
    if not have:
        raise ValueError(f"--data {path!r} is empty")
    nul = _first_nul(raw)
    if nul is not None:  # valid UTF-8, but no text file holds NUL bytes
        raise ValueError(f"--data {path!r} is binary, not text: a NUL byte at offset {nul}")
    bad = _first_invalid_utf8(raw)
    if bad is not None:
        raise ValueError(f"--data {path!r} is not UTF-8 text: invalid byte at offset {bad}")
    if len(raw) < _MIN_BYTES:
        raise ValueError(f"--data {path!r} has {len(raw)} bytes; need at least {_MIN_BYTES}")
    return raw, path


def _first_nul(raw: np.ndarray) -> int | None:
    """Offset of the first zero byte of `raw`, or None; _CHUNK bytes at a time."""
    for start in range(0, len(raw), _CHUNK):
        found = np.flatnonzero(raw[start : start + _CHUNK] == 0)
        if len(found):
            return start + int(found[0])
    return None


def _first_invalid_utf8(raw: np.ndarray) -> int | None:
    """Offset of the first byte that makes `raw` invalid UTF-8, or None; decoded _CHUNK bytes at
    a time (the decoder carries a character cut by a chunk's end into the next)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    for start in range(0, max(len(raw), 1), _CHUNK):
        pending = len(decoder.getstate()[0])  # bytes of a character begun in the last chunk
        try:
            decoder.decode(view[start : start + _CHUNK], final=start + _CHUNK >= len(raw))
        except UnicodeDecodeError as exc:
            return start - pending + exc.start
    return None


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of `text` as a uint8 array."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(data: np.ndarray) -> str:
    """Text of uint8 bytes (a malformed sequence, e.g. cut mid-character, shows as U+FFFD)."""
    return np.asarray(data, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")


def split(data: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the last `val_fraction` of the bytes is held out, the rest trains.

    One contiguous tail, not random windows: no training window can overlap the held-out text.
    """
    val_fraction = _checks.real("--val-fraction", val_fraction, 0.0, lo_open=True, hi=1.0)
    n_val = int(round(len(data) * val_fraction))
    if n_val < 2 or len(data) - n_val < 2:
        raise ValueError(
            f"--val-fraction {val_fraction} of {len(data)} bytes leaves a split under 2 bytes"
        )
    cut = len(data) - n_val
    return data[:cut], data[cut:]


def training_windows(
    train: np.ndarray, rng: np.random.Generator, batch: int, length: int
) -> np.ndarray:
    """(batch, length + 1) windows of `train` at random starts: inputs [:, :-1], targets [:, 1:].

    Raises:
        ValueError: windows longer than the training split.
    """
    span = length + 1
    if span > len(train):
        raise ValueError(
            f"--length {length} needs {span} training bytes, the training split has {len(train)}"
        )
    starts = rng.integers(0, len(train) - span + 1, size=batch)
    return train[starts[:, None] + np.arange(span)]


class Vocabulary:
    """The model's tokens: each byte value seen in training, plus one token for all others.

    A byte never seen in training maps to the last token, whose probability is shared evenly by
    the `unseen` byte values, so bits per byte stay exact over all 256 values while the output
    layer and its softmax shrink to the bytes the text uses (~100 for English).

    Attributes:
        size: number of tokens (seen byte values + 1).
        unseen: byte values that share the last token.
        to_token: (256,) int64, byte value -> token.
        to_byte: (size - 1,) uint8, token -> byte value (the last token has none).
    """

    def __init__(self, train: np.ndarray) -> None:
        seen = np.flatnonzero(token_counts(np.asarray(train, np.uint8), VOCAB)).astype(np.uint8)
        self.size = len(seen) + 1
        self.unseen = VOCAB - len(seen)
        self.to_token = np.full(VOCAB, len(seen), np.int64)
        self.to_token[seen] = np.arange(len(seen))
        self.to_byte = seen
        # Tokens fit a byte: the last token, len(seen), exists only while a byte is unseen.
        self._to_token8 = self.to_token.astype(np.uint8)

    def tokens(self, data: np.ndarray) -> np.ndarray:
        """The tokens of uint8 bytes `data` as a uint8 array of the same shape (equal to
        to_token[data]), made a chunk at a time: no int64 copy of a large corpus."""
        data = np.asarray(data, np.uint8)
        flat = data.reshape(-1)
        out = np.empty(flat.shape, np.uint8)
        for start in range(0, len(flat), _CHUNK):
            out[start : start + _CHUNK] = self._to_token8[flat[start : start + _CHUNK]]
        return out.reshape(data.shape)

    def log2_share(self, tokens: np.ndarray) -> np.ndarray:
        """log2 of the share of its token's probability that one byte gets (0, or -log2 unseen)."""
        other = np.log2(self.unseen) if self.unseen else 0.0
        return np.where(np.asarray(tokens) == self.size - 1, -other, 0.0)


def token_counts(tokens: np.ndarray, size: int) -> np.ndarray:
    """(size,) int64: how often each value of `tokens` (ints in [0, size)) occurs; memory stays
    a chunk's worth however long `tokens` is."""
    counts = np.zeros(size, np.int64)
    for start in range(0, len(tokens), _CHUNK):
        counts += np.bincount(tokens[start : start + _CHUNK], minlength=size)
    return counts


def pair_counts(tokens: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int64: [a, b] counts the j with tokens[j] = a and tokens[j + 1] = b (ints in
    [0, size)); memory stays a chunk's worth however long `tokens` is."""
    counts = np.zeros(size * size, np.int64)
    for start in range(0, len(tokens) - 1, _CHUNK):
        nxt = tokens[start + 1 : start + _CHUNK + 1]
        pairs = tokens[start : start + len(nxt)].astype(np.int64) * size + nxt
        counts += np.bincount(pairs, minlength=size * size)
    return counts.reshape(size, size)


def _add_one(counts: np.ndarray) -> np.ndarray:
    """The add-one estimate from token counts: (count + 1) / (total + size)."""
    return (counts + 1.0) / (counts.sum() + len(counts))


def _back_off(pairs: np.ndarray, uni: np.ndarray, prior: float) -> np.ndarray:
    """Bigram rows from pair counts, each backing off to `uni` with weight `prior`."""
    return (pairs + prior * uni[None, :]) / (pairs.sum(axis=1, keepdims=True) + prior)


def unigram_probs(train: np.ndarray) -> np.ndarray:
    """(256,) float64 add-one (Laplace) estimate: P(b) = (count(b) + 1) / (len + 256)."""
    return _add_one(token_counts(np.asarray(train, np.uint8), VOCAB).astype(np.float64))


def bigram_probs(train: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """(256, 256) float64 P[a, b] = (count(a b) + prior * P_uni(b)) / (count(a .) + prior).

    Each row backs off smoothly to the unigram estimate: a context seen rarely (or never) in
    training predicts like the unigram model. count(a .) counts the bigrams that start with a.
    """
    pairs = pair_counts(np.asarray(train, np.uint8), VOCAB).astype(np.float64)
    return _back_off(pairs, unigram_probs(train), prior)


def token_count_logits(
    tokens: np.ndarray, size: int, prior: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The unigram and bigram count models of `tokens` (ints in [0, size)) as logits.

    The estimates of `unigram_probs` and `bigram_probs`, over `size` tokens instead of 256
    bytes (counted a chunk at a time). Fit them on the training split only.

    Returns:
        (log P(b), shape (size,); log P(b | a) - log P(b), shape (size, size)), float64: the
        first as an output bias plus row a of the second scores exactly the bigram model after
        token a.
    """
    uni = _add_one(token_counts(tokens, size).astype(np.float64))
    log_uni = np.log(uni)
    bigram = _back_off(pair_counts(tokens, size).astype(np.float64), uni, prior)
    return log_uni, np.log(bigram) - log_uni[None, :]


def unigram_bits_per_byte(train: np.ndarray, text: np.ndarray) -> float:
    """Mean -log2 P_uni(text[j]) over j >= 1, the unigram model fitted on `train`."""
    # sum over byte values of count * log2 P: the mean over positions, without an array per byte
    counts = token_counts(np.asarray(text, np.uint8)[1:], VOCAB)
    return float(-(counts * np.log2(unigram_probs(train))).sum() / counts.sum())


def bigram_bits_per_byte(train: np.ndarray, text: np.ndarray, prior: float = 1.0) -> float:
    """Mean -log2 P(text[j] | text[j-1]) over j >= 1, the bigram model fitted on `train`."""
    counts = pair_counts(np.asarray(text, np.uint8), VOCAB)
    return float(-(counts * np.log2(bigram_probs(train, prior))).sum() / counts.sum())


def verdict(bits: float, baselines: Mapping[str, float]) -> str:
    """One sentence for a run's summary: is the held-out `bits` per byte below the bigram
    baseline? Both baselines (`unigram_bits_per_byte`, `bigram_bits_per_byte`) stand beside it."""
    bigram, unigram = baselines["bigram_bits_per_byte"], baselines["unigram_bits_per_byte"]
    below = "below" if bits < bigram else "NOT below"
    return (
        f"held-out {bits:.3f} bits per byte is {below} the bigram baseline {bigram:.3f} "
        f"(unigram {unigram:.3f})"
    )
