"""charlm's recurrence kernels and initialisation: scan, token_scan, the count-model start."""

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


def test_init_lm_skip_and_head_scale():
    rng = np.random.default_rng(3)
    skip = rng.standard_normal((7, 7))
    params = recurrent.init_lm(7, 4, 5, 1, np.random.default_rng(4), skip=skip, head_scale=0.1)
    assert params["skip"].shape == (7, 7)
    assert params["skip"].dtype == np.float32
    plain = recurrent.init_lm(7, 4, 5, 1, np.random.default_rng(4))
    assert "skip" not in plain
    np.testing.assert_allclose(params["head"]["W"], 0.1 * plain["head"]["W"], rtol=1e-6)
    # the path adds row skip[x_t] to the logits after token x_t
    ids = np.array([[0, 3, 6, 3]])
    with_skip, _ = recurrent.logits(params, ids)
    params["skip"][...] = 0.0
    without, _ = recurrent.logits(params, ids)
    np.testing.assert_allclose(with_skip[0] - without[0], skip[ids[0]], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="skip"):
        recurrent.init_lm(7, 4, 5, 1, rng, skip=np.zeros((7, 6)))
    with pytest.raises(ValueError, match="head_scale"):
        recurrent.init_lm(7, 4, 5, 1, rng, head_scale=-1.0)


def test_token_count_logits_are_the_count_models():
    """Over the 256 byte values, bias + skip row a are exactly the baselines' log P(. | a)."""
    text = corpus.encode("the cat sat on the mat; a stitch in time saves nine. " * 5)
    log_uni, skip = corpus.token_count_logits(text, corpus.VOCAB)
    assert log_uni.shape == (256,)
    assert skip.shape == (256, 256)
    np.testing.assert_allclose(log_uni, np.log(corpus.unigram_probs(text)), rtol=1e-12)
    np.testing.assert_allclose(
        log_uni[None, :] + skip, np.log(corpus.bigram_probs(text)), rtol=1e-12, atol=1e-12
    )


def _charlm(tmp_path, **options):
    path = tmp_path / "text.txt"
    path.write_text("a stitch in time saves nine; the cat sat on the mat. " * 40, "utf-8")
    config = train.resolve_config(get("charlm"), {"data": str(path), **options})
    task = get("charlm").make(config)
    data, _ = corpus.load_text(str(path))
    train_split, val = corpus.split(data, config["val_fraction"])
    vocab = corpus.Vocabulary(train_split)
    return task, vocab, vocab.to_token[train_split], val


def test_charlm_starts_at_the_bigram_model(tmp_path):
    """By default the output bias and the (V, V) bigram path are the training split's token
    counts, so with the head's weights zeroed the model is exactly the bigram count model."""
    task, vocab, tokens, val = _charlm(tmp_path)
    params = task.params
    assert params["skip"].shape == (vocab.size, vocab.size)
    params["head"]["W"][...] = 0.0
    # the bigram model over the vocabulary's tokens, counted here independently
    v = vocab.size
    uni = (np.bincount(tokens, minlength=v) + 1.0) / (len(tokens) + v)
    pairs = np.zeros((v, v))
    for a, b in zip(tokens[:-1], tokens[1:], strict=True):
        pairs[a, b] += 1
    big = (pairs + uni) / (pairs.sum(axis=1, keepdims=True) + 1.0)
    t = vocab.to_token[val]
    want = -np.mean(np.log2(big[t[:-1], t[1:]]) + vocab.log2_share(t[1:]))
    assert recurrent.bits_per_byte(params, val, vocab) == pytest.approx(want, rel=1e-5)


def test_charlm_generation_0_scores_the_bigram_baseline():
    """On the default text the untrained model (head x0.1, not zeroed) is within a few
    hundredths of a bit of the byte bigram baseline, far below the unigram one."""
    config = train.resolve_config(get("charlm"), {})
    task = get("charlm").make(config)
    got = task.evaluate(task.params)
    assert got["val_bits_per_byte"] == pytest.approx(got["bigram_bits_per_byte"], abs=0.05)
    assert got["val_bits_per_byte"] < got["unigram_bits_per_byte"] - 1.0


def test_charlm_without_the_bigram_path_starts_at_the_unigram_model(tmp_path):
    """--no-bigram-path: no skip leaf, and the output bias alone is the unigram model."""
    task, vocab, tokens, val = _charlm(tmp_path, bigram_path=False)
    params = task.params
    assert "skip" not in params
    params["head"]["W"][...] = 0.0
    counts = np.bincount(tokens, minlength=vocab.size) + 1.0
    p = counts / counts.sum()
    val_tokens = vocab.to_token[val]
    want = -np.mean(np.log2(p[val_tokens[1:]]) + vocab.log2_share(val_tokens[1:]))
    got = recurrent.bits_per_byte(params, val, vocab)
    assert got == pytest.approx(want, rel=1e-5)
