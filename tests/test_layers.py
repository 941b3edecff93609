"""Tests of the population layers (pop.linear, pop.conv2d, pop.embed) against dense members."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import dispatch, epilogue
from eggroll_np.models import simple_cnn
from eggroll_np.config import NoiseKind

from .engine_helpers import fit_rank, unit_noise

ACTS = [None, "relu", "tanh", "sigmoid", "gelu"]
KINDS = ["lowrank", "full", "frozen"]


def _act(h, name):
    if name == "relu":
        return np.maximum(h, 0)
    if name == "tanh":
        return np.tanh(h)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-h))
    if name == "gelu":
        return 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    return h


def _pop(params, n, seed, rank, kinds, dtype=np.float32, generation=0):
    rank = fit_rank(rank, params, kinds)  # init refuses a rank above min(m, n)
    state = egg.init(params, population=n, sigma=0.3, rank=rank, seed=seed, lowrank=kinds)
    return egg.ask(params, dataclasses.replace(state, generation=generation))


def _close(got, want, dtype):
    tol = 2e-4 if dtype == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def _conv_dense(x, W, b, stride, padding):
    """Direct float64 cross-correlation of x (B, C, H, W) with W (O, C, kh, kw), torch-style."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Co, C, kh, kw = W.shape
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], Co, Ho, Wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw]
            out += np.einsum("bchw,oc->bohw", patch, W[:, :, i, j].astype(np.float64))
    if b is not None:
        out += b.astype(np.float64).reshape(1, -1, 1, 1)
    return out


# What every linear/conv population-layer case draws besides its shapes.
LAYER_CASE = dict(
    pairs=st.integers(1, 3),
    rank=st.integers(1, 3),
    w_kind=st.sampled_from(KINDS),
    b_kind=st.sampled_from(["none", "full", "frozen"]),
    act=st.sampled_from(ACTS),
    shared=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 9),
    n=st.integers(1, 11),
    batch=st.integers(1, 4),
    transpose=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    **LAYER_CASE,
)
def test_linear_equals_dense_members(
    m, n, batch, pairs, rank, w_kind, b_kind, act, shared, transpose, dtype, seed
):
    rng = np.random.default_rng(seed)
    N = 2 * pairs
    out_w = m if transpose else n
    params = {"W": rng.standard_normal((m, n)).astype(dtype)}
    kinds = {"W": w_kind}
    if b_kind != "none":
        params["b"] = rng.standard_normal(out_w).astype(dtype)
        kinds["b"] = b_kind
    pop = _pop(params, N, seed, rank, kinds)
    in_w = n if transpose else m
    x = rng.standard_normal((batch, in_w) if shared else (N, batch, in_w)).astype(dtype)
    got = pop.linear(x, "W", "b" if b_kind != "none" else None, activation=act, transpose=transpose)
    assert got.shape == (N, batch, out_w)
    assert got.dtype == dtype
    for i in range(N):
        mem = pop.member(i)
        Wi = mem["W"].astype(np.float64)
        xi = (x if shared else x[i]).astype(np.float64)
        h = xi @ (Wi.T if transpose else Wi)
        if b_kind != "none":
            h = h + mem["b"]
        _close(got[i], _act(h, act), dtype)


@settings(max_examples=40, deadline=None)
@given(
    C=st.integers(1, 3),
    Co=st.integers(1, 5),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    H=st.integers(1, 6),
    Wd=st.integers(1, 6),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    batch=st.integers(1, 3),
    scalar_args=st.booleans(),
    **LAYER_CASE,
)
def test_conv2d_equals_dense_members(
    C, Co, kh, kw, H, Wd, stride, padding, batch, pairs, rank, w_kind, b_kind, act, shared,
    scalar_args, seed,
):  # fmt: skip
    if scalar_args:  # an int means the same value on both axes
        stride, padding = (stride[0], stride[0]), (padding[0], padding[0])
    if kh > H + 2 * padding[0] or kw > Wd + 2 * padding[1]:
        return  # covered by the bad-input test
    rng = np.random.default_rng(seed)
    N = 2 * pairs
    params = {"K": rng.standard_normal((Co, C, kh, kw)).astype(np.float32)}
    kinds = {"K": w_kind}
    if b_kind != "none":
        params["c"] = rng.standard_normal(Co).astype(np.float32)
        kinds["c"] = b_kind
    pop = _pop(params, N, seed, rank, kinds)
    x = rng.standard_normal((batch, C, H, Wd) if shared else (N, batch, C, H, Wd))
    x = x.astype(np.float32)
    st_arg = stride[0] if scalar_args else stride
    pd_arg = padding[0] if scalar_args else padding
    got = pop.conv2d(x, "K", "c" if b_kind != "none" else None, st_arg, pd_arg, activation=act)
    Ho = (H + 2 * padding[0] - kh) // stride[0] + 1
    Wo = (Wd + 2 * padding[1] - kw) // stride[1] + 1
    assert got.shape == (N, batch, Co, Ho, Wo)
    assert got.dtype == np.float32
    for i in range(N):
        mem = pop.member(i)
        want = _conv_dense(x if shared else x[i], mem["K"], mem.get("c"), stride, padding)
        _close(got[i], _act(want, act), np.float32)


@settings(max_examples=40, deadline=None)
@given(
    V=st.integers(1, 12),
    d=st.integers(1, 9),
    ids_shape=st.lists(st.integers(0, 3), min_size=0, max_size=3),
    pairs=st.integers(1, 3),
    rank=st.integers(1, 3),
    kind=st.sampled_from(KINDS),
    per_member=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_embed_equals_dense_members(V, d, ids_shape, pairs, rank, kind, per_member, seed):
    rng = np.random.default_rng(seed)
    N = 2 * pairs
    params = {"E": rng.standard_normal((V, d)).astype(np.float32)}
    pop = _pop(params, N, seed, rank, {"E": kind})
    shape = ((N,) if per_member else ()) + tuple(ids_shape)
    ids = rng.integers(0, V, shape)
    got = pop.embed(ids, "E", per_member=per_member)
    assert got.shape == (N, *ids_shape, d)
    for i in range(N):
        table = pop.member(i)["E"]
        _close(got[i], table[ids[i] if per_member else ids], np.float32)


def test_lowrank_conv_kernel_member_uses_the_matrix_view():
    params = {"K": np.ones((4, 2, 3, 3), np.float32)}
    state = egg.init(params, population=4, sigma=0.5, rank=2, seed=7, lowrank={"K": "lowrank"})
    assert state.config.kinds == (NoiseKind.LOWRANK,)
    pop = egg.ask(params, state)
    for i in range(4):
        eps = unit_noise(7, 0, i // 2, 0, (4, 2, 3, 3), NoiseKind.LOWRANK, 2)
        want = 1.0 + 0.5 * (1 if i % 2 == 0 else -1) * eps
        np.testing.assert_allclose(pop.member(i)["K"], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pop.perturbed("K")[i], want, rtol=1e-5, atol=1e-5)
    # The factors' rank structure: eps's matrix view (4, 18) has rank <= 2.
    eps = unit_noise(7, 0, 0, 0, (4, 2, 3, 3), NoiseKind.LOWRANK, 2)
    assert np.linalg.matrix_rank(eps.reshape(4, 18)) <= 2


@settings(max_examples=15, deadline=None)
@given(pairs=st.integers(1, 4), rank=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_lowrank_conv_kernel_update_is_the_dense_formula(pairs, rank, seed):
    rng = np.random.default_rng(seed)
    N = 2 * pairs
    shape = (3, 2, 2, 3)
    params = {"K": rng.standard_normal(shape).astype(np.float32)}
    sigma, lr = 0.1, 0.05
    state = egg.init(
        params, population=N, sigma=sigma, lr=lr, rank=rank, seed=seed, optimizer="sgd",
        shaping="none", lowrank={"K": "lowrank"},
    )  # fmt: skip
    f = rng.standard_normal(N)
    new, _ = egg.tell(params, f, state)
    g = np.zeros(shape)
    for i in range(N):
        s = 1.0 if i % 2 == 0 else -1.0
        g += f[i] * s * unit_noise(seed, 0, i // 2, 0, shape, NoiseKind.LOWRANK, rank)
    want = params["K"] + lr * g / (N * sigma)
    np.testing.assert_allclose(new["K"], want, rtol=1e-4, atol=1e-5)


def test_lowrank_may_not_mark_vectors():
    with pytest.raises(ValueError, match="'b' has shape"):
        egg.init({"b": np.ones(3, np.float32)}, lowrank={"b": "lowrank"})


def _bad_pop():
    params = {
        "W": np.ones((3, 4), np.float32),
        "b": np.ones(4, np.float32),
        "K": np.ones((2, 3, 3, 3), np.float32),
        "E": np.ones((5, 2), np.float32),
    }
    return egg.ask(params, egg.init(params, population=2, lowrank={"K": "lowrank"}))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda p: p.linear(np.ones((2, 3)), "W", activation="swish"), ValueError, "activation"),
        (lambda p: p.linear(np.ones((2, 3)), "W", activation=np.tanh), TypeError, "activation"),
        (lambda p: p.linear(np.ones((2, 5)), "W"), ValueError, "x must have shape"),
        (lambda p: p.linear(np.ones((2, 3)), "W", "E"), ValueError, "b: leaf 'E'"),
        (lambda p: p.linear(np.ones((2, 3)), "K"), ValueError, "w: linear needs a 2-D"),
        (lambda p: p.conv2d(np.ones((1, 2, 5, 5)), "K"), ValueError, "2 channels"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", padding=-1), ValueError, "padding"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", padding=1.5), TypeError, "padding"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", stride=0), ValueError, "stride"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", stride=(1, 2, 3)), ValueError, "stride"),
        (lambda p: p.conv2d(np.ones((1, 3, 2, 2)), "K"), ValueError, "larger than the padded"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "W"), ValueError, "w: conv2d needs a 4-D"),
        (lambda p: p.conv2d(np.ones((3, 5, 5)), "K"), ValueError, "x must have shape"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", "b"), ValueError, "b: leaf 'b'"),
        (lambda p: p.conv2d(np.ones((1, 3, 5, 5)), "K", activation="elu"), ValueError, "activ"),
        (lambda p: p.embed(np.array([0, 5]), "E"), ValueError, "ids must be in"),
        (lambda p: p.embed(np.array([-1]), "E"), ValueError, "ids must be in"),
        (lambda p: p.embed(np.array([0.0, 1.0]), "E"), TypeError, "ids must be integers"),
        (lambda p: p.embed(np.array([[0, 1]]), "E", per_member=True), ValueError, "ids must have"),
        (lambda p: p.embed(np.array([0]), "K"), ValueError, "w: embed needs a 2-D"),
        (lambda p: p.embed(np.array([0]), "nope"), ValueError, "nope"),
    ],
)
def test_bad_input_names_the_argument(call, exc, match):
    pop = _bad_pop()
    with pytest.raises(exc, match=match):
        call(pop)


def test_activation_reference_matches_the_definitions():
    h = np.linspace(-30, 30, 601)
    for code, name in enumerate(epilogue.ACTIVATIONS):
        got = epilogue.apply_activation(h.copy(), code)
        np.testing.assert_allclose(got, _act(h, name), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_simple_cnn_population_forward_equals_member_inference(shared):
    arch = simple_cnn.SimpleCNN(in_shape=(2, 9, 7), channels=(3, 4), hidden=5, classes=3)
    params = simple_cnn.init_params(arch, seed=2)
    N, B = 4, 3
    state = egg.init(params, population=N, sigma=0.1, rank=2, seed=5,
                     lowrank=simple_cnn.lowrank_choices())  # fmt: skip
    assert state.config.kinds[0] is NoiseKind.LOWRANK  # conv1/W
    pop = egg.ask(params, state)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, *arch.in_shape) if shared else (N, B, *arch.in_shape))
    x = x.astype(np.float32)
    got = simple_cnn.population_forward(pop, x, arch)
    assert got.shape == (N, B, arch.classes)
    for i in range(N):
        want = simple_cnn.inference(pop.member(i), x if shared else x[i], arch)
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)


def test_reference_workloads_setup_gives_consistent_pieces():
    from eggroll_np.benchmarks import reference

    assert reference.NAMES == ("rl", "sup", "cnn")
    w, params, infer, fitness, extra = reference.setup("cnn")
    assert w.inference_rows == 256 * 32
    state = egg.init(params, population=w.population, rank=1, seed=0, **extra)
    assert state.config.kinds[0] is NoiseKind.LOWRANK  # conv1/W through its matrix view
    f = fitness(egg.ask(params, state))
    assert f.shape == (w.population,)
    assert np.isfinite(f).all()
    member = reference.cnn_member_fitness()
    assert np.isfinite(member(params))


@pytest.mark.parametrize("shared", [True, False])
def test_conv2d_in_chunks_equals_one_chunk(shared, monkeypatch):
    # Per-member inputs are processed in member chunks sized by _PATCH_VALUES, and the reference
    # epilogue in chunks of _CHUNK_VALUES: tiny budgets must give the same values.
    from eggroll_np import conv

    rng = np.random.default_rng(3)
    params = {"K": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
              "c": rng.standard_normal(3).astype(np.float32)}  # fmt: skip
    pop = _pop(params, 6, 1, 2, {"K": "lowrank"})
    x = rng.standard_normal((2, 2, 5, 5) if shared else (6, 2, 2, 5, 5)).astype(np.float32)
    want = pop.conv2d(x, "K", "c", 1, 1, "relu")
    monkeypatch.setattr(conv, "_PATCH_VALUES", 1)
    monkeypatch.setattr(conv, "_CHUNK_VALUES", 1)
    with dispatch.use("numpy"):
        got = pop.conv2d(x, "K", "c", 1, 1, "relu")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_layers_on_a_population_slice_equal_the_whole_populations_rows():
    # Workers evaluate pop.slice(a, b): its layers must give the same members' outputs.
    rng = np.random.default_rng(4)
    params = {"W": rng.standard_normal((5, 6)).astype(np.float32),
              "b": rng.standard_normal(6).astype(np.float32),
              "K": rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
              "E": rng.standard_normal((9, 4)).astype(np.float32)}  # fmt: skip
    pop = _pop(params, 8, 2, 2, {"K": "lowrank"})
    part = pop.slice(3, 7)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    img = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    ids = rng.integers(0, 9, (8, 3))
    same = np.testing.assert_array_equal
    same(part.linear(x, "W", "b", "relu"), pop.linear(x, "W", "b", "relu")[3:7])
    same(part.conv2d(img, "K", None, 2, 1), pop.conv2d(img, "K", None, 2, 1)[3:7])
    same(part.embed(ids[3:7], "E", per_member=True), pop.embed(ids, "E", per_member=True)[3:7])
