"""A byte-level recurrent language model: embedding -> stacked minGRU cells -> output head.

minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): z_t = sigmoid(x_t Wz + bz),
c_t = tanh(x_t Wh + bh), h_t = (1 - z_t) * h_(t-1) + z_t * c_t. The gates read only the layer's
input, so each layer's matrices act on all T positions in ONE population GEMM (per-member
hidden states of the layer below are its input) and only the cheap elementwise recurrence
runs step by step. Params:
    {"embed": (V, d), "cells": [{"Wz", "bz", "Wh", "bh"}, ...], "head": {"W": (H, V), "b"},
     "skip": (V, V) (optional)}
over the V tokens of a `corpus.Vocabulary` (the bytes seen in training, plus one for the rest).
The optional bigram path adds row `skip[x_t]` of the current token to the logits of the next:
initialised from the training split's counts it makes the untrained model the bigram model, and
ES learns the context the bigram model lacks on top of it instead of first rediscovering it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...epilogue import activation_code, apply_activation
from ...population import Population
from .common import log_softmax
from .corpus import Vocabulary

__all__ = [
    "init_lm",
    "population_logits",
    "logits",
    "bits_per_byte",
    "sample",
    "scan",
    "token_scan",
]

_SIGMOID = activation_code("sigmoid")  # the population layers' own (no overflow for large |h|)


def init_lm(
    vocab: int,
    embed: int,
    hidden: int,
    layers: int,
    rng: np.random.Generator,
    head_bias: np.ndarray | None = None,
    skip: np.ndarray | None = None,
    head_scale: float = 1.0,
) -> dict[str, Any]:
    """Float32 params; W ~ N(0, 1/fan_in), update-gate bias -1 (a long memory to start with).

    Args:
        head_bias: optional (vocab,) initial output bias, e.g. the log of the tokens' training
            frequencies, so the untrained model already predicts like the unigram model instead
            of spending generations learning byte frequencies (zeros if None).
        skip: optional (vocab, vocab) bigram path, the leaf "skip": row a is added to the logits
            after token a (e.g. `corpus.token_count_logits`' bigram correction); None: no path.
        head_scale: the head's W ~ N(0, (0.5 * head_scale)^2 / hidden); below 1 the recurrent
            part starts quiet, so the model starts near what the biases and skip predict.
    """
    if head_bias is None:
        head_bias = np.zeros(vocab, np.float32)
    elif np.shape(head_bias) != (vocab,):
        raise ValueError(f"head_bias must have shape ({vocab},), got {np.shape(head_bias)}")
    if skip is not None and np.shape(skip) != (vocab, vocab):
        raise ValueError(f"skip must have shape ({vocab}, {vocab}), got {np.shape(skip)}")
    if not np.isfinite(head_scale) or head_scale < 0:
        raise ValueError(f"head_scale must be finite and >= 0, got {head_scale}")

    def normal(shape: tuple[int, int], scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    cells = []
    width = embed
    for _ in range(layers):
        cells.append(
            {
                "Wz": normal((width, hidden), 1 / np.sqrt(width)),
                "bz": np.full(hidden, -1.0, np.float32),
                "Wh": normal((width, hidden), 1 / np.sqrt(width)),
                "bh": np.zeros(hidden, np.float32),
            }
        )
        width = hidden
    params = {
        "embed": normal((vocab, embed), 1.0),
        "cells": cells,
        "head": {
            "W": normal((hidden, vocab), 0.5 * head_scale / np.sqrt(hidden)),
            "b": np.asarray(head_bias, np.float32).copy(),
        },
    }
    if skip is not None:
        params["skip"] = np.asarray(skip, np.float32).copy()
    return params


def scan(
    z: np.ndarray,
    c: np.ndarray,
    axis: int,
    h0: np.ndarray | None = None,
    overwrite: bool = False,
) -> np.ndarray:
    """h_t = (1 - z_t) h_(t-1) + z_t c_t along `axis` (time) of z and c; h_(-1) = h0 or 0.

    Returns an array shaped like z: a new one, or with overwrite=True c itself (z then holds
    1 - z), which saves two full-size temporaries when the caller no longer needs z and c.
    h0 has z's shape without the time axis.
    """
    if overwrite:
        h = np.multiply(z, c, out=c)
        a = np.subtract(1.0, z, out=z)
    else:
        h = z * c
        a = 1.0 - z
    hv, av = np.moveaxis(h, axis, 0), np.moveaxis(a, axis, 0)  # views, time first
    if h0 is not None:
        hv[0] += av[0] * h0
    tmp = np.empty_like(hv[0])
    for t in range(1, hv.shape[0]):
        np.multiply(av[t], hv[t - 1], out=tmp)  # no temporary per step
        hv[t] += tmp
    return h


def logits(
    params: dict[str, Any], ids: np.ndarray, state: list[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plain forward of token ids (B, T) -> (logits (B, T, V), final hidden state per layer).

    `state` (from a previous call) continues the sequences where they stopped.
    """
    b, t = np.shape(ids)
    # 2-D (B*T, width) GEMMs: NumPy's stacked matmul on a (1, T, d) input can miss BLAS and
    # run ~80x slower, which made the per-generation held-out monitor cost more than training.
    h = params["embed"][np.reshape(ids, -1)]
    final = []
    for j, cell in enumerate(params["cells"]):
        z = apply_activation(h @ cell["Wz"] + cell["bz"], _SIGMOID).reshape(b, t, -1)
        c = np.tanh(h @ cell["Wh"] + cell["bh"]).reshape(b, t, -1)
        h = scan(z, c, axis=1, h0=None if state is None else state[j], overwrite=True)
        final.append(h[:, -1, :].copy())
        h = h.reshape(b * t, -1)
    out = h @ params["head"]["W"] + params["head"]["b"]
    if "skip" in params:
        out += params["skip"][np.reshape(ids, -1)]
    return out.reshape(b, t, -1), final


def token_scan(z: np.ndarray, c: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`scan` of gates given per TOKEN: h[:, s] = (1 - z[:, w_s]) h[:, s-1] + z[:, w_s] c[:, w_s].

    Args:
        z, c: (N, U, H) each member's gates for U distinct tokens (overwritten: c becomes
            z * c, z becomes 1 - z).
        where: (T, B) int, the token (index into U) at each time step of each sequence.

    Returns:
        (N, T, B, H) hidden states; no (N, T, B, H) gate arrays are ever formed, each step
        gathers its (N, B, H) slices from the small per-token tables.
    """
    zc = np.multiply(z, c, out=c)
    a = np.subtract(1.0, z, out=z)
    n, t, b = z.shape[0], where.shape[0], where.shape[1]
    h = np.empty((n, t, b, z.shape[2]), z.dtype)
    tmp = np.empty((n, b, z.shape[2]), z.dtype)
    np.take(zc, where[0], axis=1, out=h[:, 0], mode="clip")  # indices are valid: no checks
    for s in range(1, t):
        np.take(a, where[s], axis=1, out=tmp, mode="clip")
        tmp *= h[:, s - 1]
        np.take(zc, where[s], axis=1, out=h[:, s], mode="clip")
        h[:, s] += tmp
    return h


def population_logits(pop: Population, ids: np.ndarray) -> np.ndarray:
    """Every member's logits for shared token ids (B, T), TIME-MAJOR: (N, T, B, V).

    Time-major rows make each step of the recurrence a slice of N contiguous (B, H) blocks.
    The first layer's gates depend on the current token alone, so they are computed once per
    DISTINCT token of the batch (U <= V rows per member instead of B*T: ~8x fewer for a
    512-byte batch) and each step gathers its rows (`token_scan`); exact, every member's own
    embedding and gates, and the rows of its own bigram path `skip` if the model has one.
    """
    b, t = ids.shape
    tokens, where = np.unique(np.asarray(ids).T, return_inverse=True)  # time-major positions
    h = pop.embed(tokens, "embed")  # (N, U, d): each member's rows of its own table
    n = h.shape[0]
    layers = sum(1 for p in pop.paths if p.startswith("cells/") and p.endswith("/Wz"))
    for j in range(layers):
        z = pop.linear(h, f"cells/{j}/Wz", f"cells/{j}/bz", activation="sigmoid")
        c = pop.linear(h, f"cells/{j}/Wh", f"cells/{j}/bh", activation="tanh")
        if j == 0:  # z, c: fresh (N, U, H) per-token tables, ours to overwrite
            h = token_scan(z, c, where.reshape(t, b))
        else:
            z, c = z.reshape(n, t, b, -1), c.reshape(n, t, b, -1)
            h = scan(z, c, axis=1, overwrite=True)  # z, c are ours
        h = h.reshape(n, t * b, -1)
    out = pop.linear(h, "head/W", "head/b")  # (N, T*B, V)
    if "skip" in pop.paths:
        out += np.take(pop.embed(tokens, "skip"), where.reshape(-1), axis=1, mode="clip")
    return out.reshape(n, t, b, -1)


def bits_per_byte(
    params: dict[str, Any], text: np.ndarray, vocab: Vocabulary, chunk: int = 4096
) -> float:
    """Mean -log2 p(text[j] | text[:j]) over j >= 1: one sequence, state carried across chunks.

    A byte outside the model's vocabulary gets its share of the unseen-bytes token.
    """
    tokens = vocab.tokens(text)
    total, state = 0.0, None
    for start in range(0, len(tokens) - 1, chunk):
        tgt = tokens[start + 1 : start + chunk + 1]
        inp = tokens[start : start + len(tgt)][None]
        out, state = logits(params, inp, state)
        logp = log_softmax(out[0].astype(np.float64))[np.arange(len(tgt)), tgt] / np.log(2.0)
        total -= float((logp + vocab.log2_share(tgt)).sum())
    return total / (len(tokens) - 1)


def sample(
    params: dict[str, Any],
    prompt: np.ndarray,
    length: int,
    vocab: Vocabulary,
    rng: np.random.Generator,
    temperature: float = 0.8,
) -> np.ndarray:
    """`length` bytes (uint8) drawn after the bytes `prompt`, one at a time, at a temperature."""
    unseen = np.setdiff1d(np.arange(256), vocab.to_byte).astype(np.uint8)
    out, state = logits(params, vocab.to_token[np.asarray(prompt, np.uint8)][None])
    last = out[0, -1]
    drawn = np.empty(length, np.uint8)
    for k in range(length):
        p = np.exp(log_softmax(last.astype(np.float64) / temperature))
        token = int(rng.choice(len(p), p=p / p.sum()))
        drawn[k] = vocab.to_byte[token] if token < len(vocab.to_byte) else rng.choice(unseen)
        out, state = logits(params, np.array([[token]]), state)
        last = out[0, -1]
    return drawn
