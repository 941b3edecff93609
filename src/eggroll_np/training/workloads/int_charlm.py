"""`train charlm --int8`: an integer recurrent byte model (minGRU-style cell from integer ops).

Every parameter and activation is int8 (q stands for q / 16). A cell reads its input x (int8)
through two int8 layers (`pop.linear`): u = x Wz + bz and v = x Wh + bh. Lookup tables replace
the float activations: the gate z = SIGMOID[u] in [0, 128] (128 z_real) and the candidate
c = TANH[v] in [-127, 127]; the state moves with saturating integer arithmetic,
h_t = h_(t-1) + floor(z_t (c_t - h_(t-1)) / 128), which is minGRU's (1 - z) h + z c. The int8
logits (q / 16) give the fitness: mean log-softmax at the next byte (host code, as a user's
loss would be). Params: {"embed": (V, E), "cells": [{"Wz", "bz", "Wh", "bh"}], "head": {"W", "b"}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ... import _checks
from ...intlayers import dense
from ...population import Population
from . import corpus
from .common import Task, check_options, generation_rng, log_softmax
from .int_mlp import INT8_DEFAULTS, add_int8_arguments, float_run, int_es_options

__all__ = [
    "INT8_OPTIONS",
    "INT8_RECIPE",
    "add_arguments",
    "sample",
    "SIGMOID",
    "TANH",
    "EXP",
    "log_prob_at",
    "init_int_lm",
    "int_scan",
    "int_logits",
    "population_int_logits",
    "bits_per_byte",
    "make_int_charlm_task",
]

#: The --int8 recipe of charlm (its own defaults; options given still win).
INT8_RECIPE = {
    "int8": True,
    "population": 256,
    "generations": 1000,
    "rank": 1,
    "embed": 16,
    "hidden": 32,
    "layers": 1,
    "batch": 8,
    "length": 64,
    "lr_schedule": "linear",  # scales alpha down to 0 over the run
    "lr_final": 0.0,
    "int_sigma_shift": 4,  # sigma 2^-4: k = 1, 2, 3 learned slower in 400-generation runs
    "int_update_fraction": 0.1,
    "float_generations": 1000,
}

#: The option keys charlm gains for --int8 (None means the recipe decides).
INT8_OPTIONS = {**INT8_DEFAULTS, "float_generations": None}


def add_arguments(p: Any) -> None:
    """charlm's --int8 options (an argparse parser)."""
    add_int8_arguments(p, INT8_RECIPE)
    p.add_argument(
        "--float-generations",
        type=int,
        help="with --int8: also train the float model this many generations (same seed and "
        "text) and report its held-out bits per byte beside the result; 0 skips it "
        f"(default {INT8_RECIPE['float_generations']})",
    )


_Q = np.arange(-128, 128) / 16.0  # every int8 value as the real number it stands for
#: The gate table, SIGMOID[u + 128] = round(128 sigmoid(u / 16)), int16 in [0, 128].
SIGMOID = np.rint(128.0 / (1.0 + np.exp(-_Q))).astype(np.int16)
#: The candidate table, TANH[v + 128] = round(127 tanh(v / 16)), int16 in [-127, 127].
TANH = np.rint(127.0 * np.tanh(_Q)).astype(np.int16)
#: The loss table, EXP[q + 128] = exp(q / 16), float32.
EXP = np.exp(_Q).astype(np.float32)


def log_prob_at(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """log softmax(logits / 16) at `target` for int8 logits (..., V) and int indices (...):
    exp by table lookup (`EXP`, no max shift needed: exp(127 / 16) < 2^12), float32 sums."""
    idx = logits.view(np.uint8) ^ np.uint8(128)  # q + 128 as a table index, no widening
    logz = np.log(EXP[idx].sum(axis=-1, dtype=np.float32))
    picked = np.take_along_axis(logits, target[..., None], axis=-1)[..., 0]
    return picked.astype(np.float32) / 16 - logz


def init_int_lm(
    vocab: int, embed: int, hidden: int, layers: int, rng: np.random.Generator,
    head_bias: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """int8 params: embed and cell W ~ N(0, 16^2) (1.0), head W ~ N(0, 2^2), gate bias -16
    (-1.0: a long memory to start with), head bias `head_bias` (int8 (vocab,))."""

    def q(shape: tuple[int, int], std: float) -> np.ndarray:
        return np.clip(np.rint(rng.standard_normal(shape) * std), -127, 127).astype(np.int8)

    cells, width = [], embed
    for _ in range(layers):
        cells.append(
            {
                "Wz": q((width, hidden), 16),
                "bz": np.full(hidden, -16, np.int8),
                "Wh": q((width, hidden), 16),
                "bh": np.zeros(hidden, np.int8),
            }
        )
        width = hidden
    return {
        "embed": q((vocab, embed), 16),
        "cells": cells,
        "head": {"W": q((hidden, vocab), 2), "b": np.asarray(head_bias, np.int8).copy()},
    }


def int_scan(z: np.ndarray, c: np.ndarray, h0: np.ndarray | None = None) -> np.ndarray:
    """h_t = h_(t-1) + floor(z_t (c_t - h_(t-1)) / 128) along axis 0 (time), h_(-1) = h0 or 0.

    Args:
        z: int16 (T, ...) gates in [0, 128]; c: int16 (T, ...) candidates in [-127, 127].

    Returns:
        int8 (T, ...) states (each between h_(t-1) and c_t: never outside [-127, 127]).
    """
    h = np.zeros(z.shape[1:], np.int32) if h0 is None else h0.astype(np.int32)
    out = np.empty(z.shape, np.int8)
    for t in range(z.shape[0]):
        h += (z[t] * (c[t] - h)) >> 7
        out[t] = h
    return out


def _gates(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tables at int8 pre-activations: (SIGMOID[u], TANH[v]) as int16."""
    return SIGMOID[u.astype(np.int16) + 128], TANH[v.astype(np.int16) + 128]


def int_logits(
    params: Mapping[str, Any], ids: np.ndarray, state: list[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plain integer forward of token ids (B, T) -> (int8 logits (B, T, V), final states)."""
    b, t = np.shape(ids)
    h = params["embed"][np.asarray(ids).T.reshape(-1)]  # time-major rows (T*B, E)
    final = []
    for j, cell in enumerate(params["cells"]):
        z, c = _gates(dense(h, cell["Wz"], cell["bz"]), dense(h, cell["Wh"], cell["bh"]))
        hs = int_scan(z.reshape(t, b, -1), c.reshape(t, b, -1), None if state is None else state[j])
        final.append(hs[-1].copy())
        h = hs.reshape(t * b, -1)
    out = dense(h, params["head"]["W"], params["head"]["b"])
    return out.reshape(t, b, -1).transpose(1, 0, 2), final


def population_int_logits(pop: Population, ids: np.ndarray) -> np.ndarray:
    """Every member's int8 logits for shared token ids (B, T), time-major (N, T, B, V).

    The first cell's gates depend on the current token alone: computed once per distinct
    token (U rows per member) and gathered step by step, like the float model.
    """
    b, t = ids.shape
    tokens, where = np.unique(np.asarray(ids).T, return_inverse=True)
    where = where.reshape(t, b)
    h = pop.embed(tokens, "embed")  # (N, U, E) int8
    n = h.shape[0]
    layers = sum(1 for p in pop.paths if p.startswith("cells/") and p.endswith("/Wz"))
    for j in range(layers):
        u = pop.linear(h, f"cells/{j}/Wz", f"cells/{j}/bz")
        v = pop.linear(h, f"cells/{j}/Wh", f"cells/{j}/bh")
        z, c = _gates(u, v)  # (N, U or T*B, H)
        if j == 0:  # (T, B) token positions -> (T, N, B, H) gates
            z, c = z[:, where].transpose(1, 0, 2, 3), c[:, where].transpose(1, 0, 2, 3)
        else:
            z = z.reshape(n, t, b, -1).transpose(1, 0, 2, 3)
            c = c.reshape(n, t, b, -1).transpose(1, 0, 2, 3)
        h = np.ascontiguousarray(int_scan(z, c).transpose(1, 0, 2, 3)).reshape(n, t * b, -1)
    return pop.linear(h, "head/W", "head/b").reshape(n, t, b, -1)


def bits_per_byte(
    params: Mapping[str, Any], text: np.ndarray, vocab: Any, chunk: int = 4096
) -> float:
    """Mean -log2 p(text[j] | text[:j]) (p: softmax of logits / 16), state carried."""
    tokens = vocab.to_token[np.asarray(text, np.uint8)]
    total, state = 0.0, None
    for start in range(0, len(tokens) - 1, chunk):
        tgt = tokens[start + 1 : start + chunk + 1]
        inp = tokens[start : start + len(tgt)][None]
        out, state = int_logits(params, inp, state)
        logp = log_softmax(out[0].astype(np.float64) / 16)[np.arange(len(tgt)), tgt] / np.log(2)
        total -= float((logp + vocab.log2_share(tgt)).sum())
    return total / (len(tokens) - 1)


def sample(
    params: Mapping[str, Any], prompt: np.ndarray, length: int, vocab: Any,
    rng: np.random.Generator, temperature: float = 0.8,
) -> np.ndarray:  # fmt: skip
    """`length` bytes (uint8) drawn after `prompt`, one at a time (softmax of logits / 16)."""
    unseen = np.setdiff1d(np.arange(256), vocab.to_byte).astype(np.uint8)
    out, state = int_logits(params, vocab.to_token[np.asarray(prompt, np.uint8)][None])
    drawn = np.empty(length, np.uint8)
    for k in range(length):
        p = np.exp(log_softmax(out[0, -1].astype(np.float64) / (16 * temperature)))
        token = int(rng.choice(len(p), p=p / p.sum()))
        drawn[k] = vocab.to_byte[token] if token < len(vocab.to_byte) else rng.choice(unseen)
        out, state = int_logits(params, np.array([[token]]), state)
    return drawn


def make_int_charlm_task(config: Mapping[str, Any], monitor_bytes: int = 4096) -> Task:
    """The charlm --int8 Task: fitness = mean log-probability (nats) of the next byte on the
    generation's training windows; evaluate = held-out bits per byte, the count models' and
    (float_generations > 0) the float model's after that many generations, same seed."""
    check_options(config, positive=("embed", "hidden", "layers", "batch", "length"))
    float_gens = _checks.integer("--float-generations", config["float_generations"], 0)
    seed = int(config["seed"])
    data, _ = corpus.load_text(config["data"])
    train, val = corpus.split(data, config["val_fraction"])
    vocab = corpus.Vocabulary(train)
    train_tokens = vocab.to_token[train]
    batch, length = int(config["batch"]), int(config["length"])
    corpus.training_windows(train, np.random.default_rng(0), 1, length)  # length fits?
    counts = np.bincount(train_tokens, minlength=vocab.size) + 1.0
    logf = np.log(counts / counts.max())  # <= 0: the likeliest byte's logit is 0
    params = init_int_lm(
        vocab.size, int(config["embed"]), int(config["hidden"]), int(config["layers"]),
        np.random.default_rng([seed, 1]), np.clip(np.rint(16 * logf), -127, 0),
    )  # fmt: skip
    monitor_text = val[: monitor_bytes + 1]

    def fitness(pop: Population) -> np.ndarray:
        windows = corpus.training_windows(
            train_tokens, generation_rng(seed, pop.generation), batch, length
        )
        out = population_int_logits(pop, windows[:, :-1])  # (N, T, B, V) int8
        target = np.broadcast_to(windows[:, 1:].T[None], out.shape[:-1])
        return log_prob_at(out, target).mean(axis=(1, 2), dtype=np.float64)

    baselines = {
        "unigram_bits_per_byte": corpus.unigram_bits_per_byte(train, val),
        "bigram_bits_per_byte": corpus.bigram_bits_per_byte(train, val),
    }

    def evaluate(p: Any) -> dict[str, Any]:
        bits = bits_per_byte(p, val, vocab)
        return {"val_bits_per_byte": bits, **baselines, "verdict": corpus.verdict(bits, baselines)}

    def monitor(p: Any) -> dict[str, float]:
        return {"val_bits_per_byte_4k": bits_per_byte(p, monitor_text, vocab)}

    def beside() -> dict[str, float]:
        out = dict(baselines)
        if float_gens:
            changes = {"generations": float_gens, "data": config["data"], "sample_bytes": 0}
            changes["val_fraction"] = config["val_fraction"]
            out.update(float_run("charlm", seed, "val_bits_per_byte", **changes))
        return out

    sample_bytes = _checks.integer("--sample-bytes", config["sample_bytes"], 0)

    return Task(
        params=params,
        fitness=fitness,
        batched=True,
        evaluate=evaluate,
        monitor=monitor,
        baseline=beside,
        es_options=int_es_options(config),
        sample=corpus.text_sampler(sample, val, sample_bytes, vocab, seed),
        data=(data,),  # fingerprinted in every checkpoint: a resume on other data is refused
    )
