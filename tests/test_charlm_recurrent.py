"""charlm's recurrence kernels and initialisation: scan, token_scan, the unigram head bias."""

from __future__ import annotations

import numpy as np
import pytest

from eggroll_np.training import train
from eggroll_np.training.workloads import corpus, get, recurrent


def _naive_scan(z, c, h0=None):
    """h_t = (1 - z_t) h_(t-1) + z_t c_t over axis 1 of (N, T, ...), one step at a time."""
    h = np.zeros_like(z[:, 0]) if h0 is None else h0.copy()
    out = np.empty_like(z)
    for t in range(z.shape[1]):
        h = (1 - z[:, t]) * h + z[:, t] * c[:, t]
        out[:, t] = h
    return out


@pytest.mark.parametrize("overwrite", [False, True])
def test_scan_matches_the_recurrence(overwrite):
    rng = np.random.default_rng(0)
    z = rng.random((3, 9, 2, 5)).astype(np.float32)
    c = rng.uniform(-1, 1, (3, 9, 2, 5)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (3, 2, 5)).astype(np.float32)
    want = _naive_scan(z, c, h0)
    z_in, c_in = z.copy(), c.copy()
    got = recurrent.scan(z_in, c_in, axis=1, h0=h0, overwrite=overwrite)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if overwrite:
        assert got is c_in  # the result is written into c, no full-size temporaries
        np.testing.assert_allclose(z_in, 1 - z)
    else:  # inputs untouched
        np.testing.assert_array_equal(z_in, z)
        np.testing.assert_array_equal(c_in, c)


def test_token_scan_equals_scan_of_gathered_gates():
    rng = np.random.default_rng(1)
    n, u, h, t, b = 4, 6, 5, 11, 3
    z = rng.random((n, u, h)).astype(np.float32)
    c = rng.uniform(-1, 1, (n, u, h)).astype(np.float32)
    where = rng.integers(0, u, (t, b))
    want = _naive_scan(z[:, where], c[:, where])  # (N, T, B, H)
    got = recurrent.token_scan(z.copy(), c.copy(), where)
    assert got.shape == (n, t, b, h)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_init_lm_head_bias_and_its_check():
    rng = np.random.default_rng(2)
    bias = np.log(np.full(7, 1 / 7))
    params = recurrent.init_lm(7, 4, 5, 1, rng, head_bias=bias)
    np.testing.assert_allclose(params["head"]["b"], bias, rtol=1e-6)
    assert params["head"]["b"].dtype == np.float32
    with pytest.raises(ValueError, match="head_bias"):
        recurrent.init_lm(7, 4, 5, 1, rng, head_bias=np.zeros(6))


def test_charlm_starts_at_the_unigram_model(tmp_path):
    """The untrained model's output bias is the training split's log token frequencies, so with
    the head's weights zeroed it scores exactly the unigram model (over its own vocabulary)."""
    path = tmp_path / "text.txt"
    path.write_text("a stitch in time saves nine; " * 40, encoding="utf-8")
    config = train.resolve_config(get("charlm"), {"data": str(path)})
    task = get("charlm").make(config)
    params = task.params
    params["head"]["W"][...] = 0.0
    data, _ = corpus.load_text(str(path))
    train_split, val = corpus.split(data, config["val_fraction"])
    vocab = corpus.Vocabulary(train_split)
    tokens = vocab.to_token[train_split]
    counts = np.bincount(tokens, minlength=vocab.size) + 1.0
    p = counts / counts.sum()
    val_tokens = vocab.to_token[val]
    want = -np.mean(np.log2(p[val_tokens[1:]]) + vocab.log2_share(val_tokens[1:]))
    got = recurrent.bits_per_byte(params, val, vocab)
    assert got == pytest.approx(want, rel=1e-5)
