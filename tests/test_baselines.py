"""charlm's corpus loader and count models; the NumPy backprop baselines vs finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eggroll_np import conv
from eggroll_np.models import mlp, simple_cnn
from eggroll_np.tree import flatten
from eggroll_np.training.workloads import backprop, common, corpus

# ---- corpus ------------------------------------------------------------------------------------


def test_default_corpus_is_pydoc_data():
    data, source = corpus.load_text(None)
    assert "pydoc_data" in source
    assert data.dtype == np.uint8
    assert 300_000 < len(data) < 2_000_000
    text = corpus.decode(data)
    assert "for" in text
    assert "class" in text


def test_data_file_is_read_as_utf8(tmp_path):
    text = "Grüße aus Köln — ünïcödé text, repeated. " * 4
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    data, source = corpus.load_text(str(path))
    assert source == str(path)
    assert corpus.decode(data) == text
    assert len(data) == len(text.encode("utf-8")) > len(text)  # bytes, not characters


def test_bad_data_files_name_the_path(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café ".encode("latin-1") * 40)
    with pytest.raises(ValueError, match="latin1.txt.*not UTF-8"):
        corpus.load_text(str(bad))
    short = tmp_path / "short.txt"
    short.write_text("hello", encoding="utf-8")
    with pytest.raises(ValueError, match="short.txt.*5 bytes"):
        corpus.load_text(str(short))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        corpus.load_text(str(tmp_path / "missing.txt"))


def test_held_out_split_is_never_trained_on():
    # A corpus whose tail (the held-out part) uses bytes that the head never contains.
    data = np.concatenate([np.full(900, ord("a"), np.uint8), np.full(100, ord("Z"), np.uint8)])
    data[::7] = ord("b")
    data[900:] = ord("Z")
    train, val = corpus.split(data, 0.1)
    assert len(train) == 900
    assert len(val) == 100
    np.testing.assert_array_equal(np.concatenate([train, val]), data)
    rng = np.random.default_rng(0)
    for _ in range(50):
        windows = corpus.training_windows(train, rng, batch=16, length=64)
        assert windows.shape == (16, 65)
        assert not np.any(windows == ord("Z"))
    # every window is a contiguous piece of the training split
    w = corpus.training_windows(train, np.random.default_rng(1), 4, 10)
    for row in w:
        starts = [i for i in range(len(train) - 10) if np.array_equal(train[i : i + 11], row)]
        assert starts
    with pytest.raises(ValueError, match="--length 900"):
        corpus.training_windows(train, rng, 1, 900)
    with pytest.raises(ValueError, match="--val-fraction"):
        corpus.split(data, 1.0)


def test_unigram_and_bigram_bits_per_byte_by_hand():
    train = corpus.encode("abab")
    text = corpus.encode("abb")  # scored: 'b' after 'a', 'b' after 'b'
    # unigram: counts a=2, b=2 of 4 bytes, add-one over 256 values
    p_b = (2 + 1) / (4 + 256)
    assert corpus.unigram_bits_per_byte(train, text) == pytest.approx(-math.log2(p_b))
    # bigram pairs in "abab": ab x2, ba x1; contexts: a twice, b once; prior 1
    p_b_after_a = (2 + p_b) / (2 + 1)
    p_b_after_b = (0 + p_b) / (1 + 1)
    want = -(math.log2(p_b_after_a) + math.log2(p_b_after_b)) / 2
    assert corpus.bigram_bits_per_byte(train, text) == pytest.approx(want, rel=1e-12)
    # each row of the bigram model is a distribution
    np.testing.assert_allclose(corpus.bigram_probs(train).sum(axis=1), 1.0, rtol=1e-12)


def test_bigram_beats_unigram_on_real_text():
    data, _ = corpus.load_text(None)
    train, val = corpus.split(data, 0.1)
    uni = corpus.unigram_bits_per_byte(train, val)
    bi = corpus.bigram_bits_per_byte(train, val)
    assert 3.0 < bi < uni < 5.5


# ---- backprop ----------------------------------------------------------------------------------


def _finite_difference_check(loss_fn, params, grads, rng, probes=12, h=1e-6):
    """Central differences on `probes` random coordinates of every leaf (float64 params)."""
    leaves, _, _ = flatten(params)
    g_leaves, _, _ = flatten(grads)
    for leaf, g in zip(leaves, g_leaves, strict=True):
        assert g.shape == leaf.shape
        flat, gflat = leaf.reshape(-1), g.reshape(-1)
        for k in rng.choice(flat.size, min(probes, flat.size), replace=False):
            old = flat[k]
            flat[k] = old + h
            up = loss_fn(params)
            flat[k] = old - h
            down = loss_fn(params)
            flat[k] = old
            assert gflat[k] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


def _as64(tree):
    leaves, _, structure = flatten(tree)
    from eggroll_np.tree import unflatten

    return unflatten(structure, [np.array(v, np.float64) for v in leaves])


@pytest.mark.parametrize(
    ("activation", "loss", "out_act"),
    [("gelu", "xent", None), ("relu", "xent", None), ("tanh", "mse", "tanh")],
)
def test_mlp_gradient_matches_finite_differences(activation, loss, out_act):
    rng = np.random.default_rng(0)
    params = _as64(mlp.init((5, 7, 6, 3), rng))
    for layer in params["layers"]:
        layer["b"] += rng.standard_normal(layer["b"].shape) * 0.3
    x = rng.standard_normal((9, 5))
    y = rng.integers(0, 3, 9) if loss == "xent" else rng.standard_normal((9, 3)) * 0.5

    def loss_fn(p):
        return backprop.mlp_loss_and_grad(p, x, y, activation, loss, out_act)[0]

    _, grads = backprop.mlp_loss_and_grad(params, x, y, activation, loss, out_act)
    _finite_difference_check(loss_fn, params, grads, rng)


@pytest.mark.parametrize(("side", "strides"), [(8, (1, 2)), (9, (2, 2)), (7, (1, 1))])
def test_cnn_gradient_matches_finite_differences(side, strides):
    rng = np.random.default_rng(1)
    arch = simple_cnn.SimpleCNN(in_shape=(2, side, side), channels=(3, 4), hidden=5, classes=3,
                                strides=strides)  # fmt: skip
    params = _as64(simple_cnn.init_params(arch, seed=1, dtype=np.float64))
    for layer in params.values():
        layer["b"] += rng.standard_normal(layer["b"].shape) * 0.1
    x = rng.standard_normal((4, 2, side, side))
    y = rng.integers(0, 3, 4)

    def loss_fn(p):
        return backprop.cnn_loss_and_grad(p, x, y, arch)[0]

    value, grads = backprop.cnn_loss_and_grad(params, x, y, arch)
    logits = simple_cnn.inference(params, x, arch)
    want = -common.log_softmax(logits)[np.arange(4), y].mean()
    assert value == pytest.approx(want, rel=1e-10)
    _finite_difference_check(loss_fn, params, grads, rng)


@pytest.mark.parametrize("stride", [1, 2])
def test_col2im_is_the_adjoint_of_im2col(stride):
    # <im2col(x), g> == <x, col2im(g)> for every x, g: col2im is im2col's transpose
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = conv.im2col(x, 3, 3, (stride, stride), (1, 1))
    g = rng.standard_normal(cols.shape)
    back = backprop.col2im(g, x.shape, 3, stride, 1)
    assert back.shape == x.shape
    assert np.sum(cols * g) == pytest.approx(np.sum(x * back), rel=1e-12)


def test_sgd_fits_the_training_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    params = mlp.init((4, 8, 2), rng)

    def batches():
        while True:
            yield x, y

    def lg(p, xb, yb):
        return backprop.mlp_loss_and_grad(p, xb, yb, "relu")

    result = backprop.sgd(params, lg, batches(), steps=200, lr=0.1)
    assert result["steps"] == 200
    assert result["losses"][-1] < 0.3 * result["losses"][0]
    acc = (mlp.forward(result["params"], x, "relu").argmax(1) == y).mean()
    assert acc > 0.95
    assert result["params"]["layers"][0]["W"].dtype == np.float32
    stopped = backprop.sgd(params, lg, batches(), 50, 0.1, callback=lambda s, p: s == 7)
    assert stopped["steps"] == 7
