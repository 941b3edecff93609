"""Byte-level text for `charlm`: the corpus loader, the held-out split and count-model baselines.

Text is modelled as its UTF-8 bytes (vocabulary 256), so "bits per byte" is well defined for any
language. The default corpus ships with every Python: the standard library's `pydoc_data`
documentation topics (~465 KB of English). Bits per byte of a text t are always measured on the
predictions of t[1:], each from the bytes before it (t[0] is context only), so a count model and
a recurrent model are scored on the same positions.
"""

from __future__ import annotations

import os

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
    "token_count_logits",
]

VOCAB = 256  # every byte value
_MIN_BYTES = 64  # shorter files cannot give a training and a held-out split worth the name


def load_text(data: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, str]:
    """The corpus as uint8 bytes and a description of where it came from.

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
        raw = fh.read()
    if not raw:
        raise ValueError(f"--data {path!r} is empty")
    nul = raw.find(b"\0")
    if nul >= 0:  # valid UTF-8, but no text file holds NUL bytes
        raise ValueError(f"--data {path!r} is binary, not text: a NUL byte at offset {nul}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"--data {path!r} is not UTF-8 text: invalid byte at offset {exc.start}"
        ) from None
    if len(raw) < _MIN_BYTES:
        raise ValueError(f"--data {path!r} has {len(raw)} bytes; need at least {_MIN_BYTES}")
    return np.frombuffer(raw, dtype=np.uint8).copy(), path


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
        seen = np.unique(np.asarray(train, np.uint8))
        self.size = len(seen) + 1
        self.unseen = VOCAB - len(seen)
        self.to_token = np.full(VOCAB, len(seen), np.int64)
        self.to_token[seen] = np.arange(len(seen))
        self.to_byte = seen

    def log2_share(self, tokens: np.ndarray) -> np.ndarray:
        """log2 of the share of its token's probability that one byte gets (0, or -log2 unseen)."""
        other = np.log2(self.unseen) if self.unseen else 0.0
        return np.where(np.asarray(tokens) == self.size - 1, -other, 0.0)


def _unigram(t: np.ndarray, size: int) -> np.ndarray:
    counts = np.bincount(t, minlength=size).astype(np.float64)
    return (counts + 1.0) / (counts.sum() + size)


def _bigram(t: np.ndarray, size: int, uni: np.ndarray, prior: float) -> np.ndarray:
    pairs = np.bincount(t[:-1] * size + t[1:], minlength=size * size).astype(np.float64)
    pairs = pairs.reshape(size, size)
    return (pairs + prior * uni[None, :]) / (pairs.sum(axis=1, keepdims=True) + prior)


def unigram_probs(train: np.ndarray) -> np.ndarray:
    """(256,) float64 add-one (Laplace) estimate: P(b) = (count(b) + 1) / (len + 256)."""
    return _unigram(np.asarray(train, np.int64), VOCAB)


def bigram_probs(train: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """(256, 256) float64 P[a, b] = (count(a b) + prior * P_uni(b)) / (count(a .) + prior).

    Each row backs off smoothly to the unigram estimate: a context seen rarely (or never) in
    training predicts like the unigram model. count(a .) counts the bigrams that start with a.
    """
    t = np.asarray(train, np.int64)
    return _bigram(t, VOCAB, _unigram(t, VOCAB), prior)


def token_count_logits(
    tokens: np.ndarray, size: int, prior: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The unigram and bigram count models of `tokens` (ints in [0, size)) as logits.

    The estimates of `unigram_probs` and `bigram_probs`, over `size` tokens instead of 256
    bytes. Fit them on the training split only.

    Returns:
        (log P(b), shape (size,); log P(b | a) - log P(b), shape (size, size)), float64: the
        first as an output bias plus row a of the second scores exactly the bigram model after
        token a.
    """
    t = np.asarray(tokens, np.int64)
    uni = _unigram(t, size)
    log_uni = np.log(uni)
    return log_uni, np.log(_bigram(t, size, uni, prior)) - log_uni[None, :]


def unigram_bits_per_byte(train: np.ndarray, text: np.ndarray) -> float:
    """Mean -log2 P_uni(text[j]) over j >= 1, the unigram model fitted on `train`."""
    t = np.asarray(text, np.int64)
    return float(-np.mean(np.log2(unigram_probs(train)[t[1:]])))


def bigram_bits_per_byte(train: np.ndarray, text: np.ndarray, prior: float = 1.0) -> float:
    """Mean -log2 P(text[j] | text[j-1]) over j >= 1, the bigram model fitted on `train`."""
    t = np.asarray(text, np.int64)
    return float(-np.mean(np.log2(bigram_probs(train, prior)[t[:-1], t[1:]])))
