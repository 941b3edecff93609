"""The opt-in shared noise table: its stream, offsets, purity, resume, layers and update."""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _reference, noise, noise_table
from eggroll_np.config import NoiseKind, noise_extents
from eggroll_np.noise_table import OFFSET_LEAF, TABLE_LEAF

from .engine_helpers import as_format_2

T = 4096


def _params():
    rng = np.random.default_rng(0)
    return {
        "emb": rng.standard_normal((7, 5)).astype(np.float32),
        "conv": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
        "w": rng.standard_normal((5, 4)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
    }


def _init(params, **kw):
    kw = {"population": 6, "sigma": 0.1, "lr": 0.05, "seed": 5, "noise_table": T, **kw}
    return egg.init(params, lowrank={"conv": True}, **kw)


def _fitness(p):
    return float(np.tanh(p["w"]).sum() - (p["b"] ** 2).sum() + p["conv"].mean() + p["emb"][0, 0])


def _run(params, state, generations):
    for _ in range(generations):
        params, state = egg.step(params, _fitness, state)
    return params, state


def test_table_is_the_reserved_stream():
    t = noise_table.table(9, 1000)
    assert t.dtype == np.float32
    assert t.shape == (1000,)
    assert not t.flags.writeable
    np.testing.assert_array_equal(t, noise.normals(9, TABLE_LEAF, 0, 0, 1000))
    np.testing.assert_array_equal(t[:64], _reference.normals(9, TABLE_LEAF, 0, 0, 64, 0))
    assert noise_table.table(9, 1000) is t  # cached
    noise_table.clear_cache()
    np.testing.assert_array_equal(noise_table.table(9, 1000), t)  # regenerated bit for bit


def test_cache_is_bounded():
    noise_table.clear_cache()
    for seed in range(noise_table.MAX_CACHED + 3):
        noise_table.table(seed, 64)
    assert len(noise_table._cache) == noise_table.MAX_CACHED


def test_offsets_follow_the_documented_draw():
    keys = np.array([0, 1, 7, 2**32 - 1], dtype=np.uint32)
    seed, size, leaf, epoch, extent = (3 << 32) + 17, 5000, 2, 11, 300
    got = noise_table.offsets(seed, size, leaf, keys, epoch, extent)
    for key, off in zip(keys, got, strict=True):
        block = _reference.philox4x32_10(
            np.array([[leaf, OFFSET_LEAF, key, epoch]], dtype=np.uint32),
            np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32),
        )[0]
        u = int(block[0]) + (int(block[1]) << 32)
        assert off == u % (size - extent + 1)
    assert ((got >= 0) & (got <= size - extent)).all()
    # The full range is reached and spread: many keys cover both ends' neighbourhoods.
    many = noise_table.offsets(seed, size, leaf, np.arange(20000, dtype=np.uint32), epoch, extent)
    assert many.min() < 50
    assert many.max() > size - extent - 50


def test_generation_noise_reads_table_slices():
    params = _params()
    state = _init(params)
    pop = egg.ask(params, state)
    c, spec = state.config, state.spec
    ext = noise_extents(spec.shapes, c.kinds, c.rank)
    t = noise_table.table(c.seed, T)
    for leaf, (shape, kind) in enumerate(zip(spec.shapes, c.kinds, strict=True)):
        starts = noise_table.offsets(c.seed, T, leaf, pop.noise.keys, 0, ext[leaf])
        if kind is NoiseKind.LOWRANK:
            A, B = pop.noise.factors(leaf)
            m = A.shape[1]
            for j, s in enumerate(starts):
                np.testing.assert_array_equal(A[j].reshape(-1), t[s : s + m * c.rank])
                np.testing.assert_array_equal(B[j].reshape(-1), t[s + m * c.rank : s + ext[leaf]])
        else:
            E = pop.noise.full(leaf)
            for j, s in enumerate(starts):
                np.testing.assert_array_equal(E[j].reshape(-1), t[s : s + math.prod(shape)])


_CHILD = """
import sys
import numpy as np
import eggroll_np as egg
rng = np.random.default_rng(0)
params = {
    "emb": rng.standard_normal((7, 5)).astype(np.float32),
    "conv": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
    "w": rng.standard_normal((5, 4)).astype(np.float32),
    "b": rng.standard_normal(4).astype(np.float32),
}
state = egg.init(params, lowrank={"conv": True}, population=6, sigma=0.1, lr=0.05, seed=5,
                 noise_table=%d)
fit = lambda p: float(np.tanh(p["w"]).sum() - (p["b"] ** 2).sum() + p["conv"].mean()
                      + p["emb"][0, 0])
for _ in range(3):
    params, state = egg.step(params, fit, state)
np.savez(sys.argv[1], **params)
"""


def test_two_processes_give_identical_params(tmp_path):
    """A fresh process (its own table, made anew) trains to the same bits as this one."""
    params = _params()
    mine = _run(params, _init(params), 3)[0]
    out = tmp_path / "child.npz"
    subprocess.run([sys.executable, "-P", "-c", _CHILD % T, str(out)], check=True, timeout=300)
    with np.load(out) as theirs:
        for k in mine:
            np.testing.assert_array_equal(mine[k], theirs[k])


def test_resume_equals_uninterrupted_and_saves_the_option(tmp_path):
    params = _params()
    p, s = _run(params, _init(params, noise_reuse=2), 2)
    egg.save(tmp_path / "k.npz", p, s)
    p_full, _ = _run(p, s, 3)
    noise_table.clear_cache()  # a new process would start without the table
    p_res, s_res = egg.load(tmp_path / "k.npz")
    assert s_res.config.noise_table == T
    assert s_res.config == s.config
    p_res, _ = _run(p_res, s_res, 3)
    for k in p_full:
        np.testing.assert_array_equal(p_full[k], p_res[k])


def test_checkpoint_without_the_option_loads_as_default(tmp_path):
    params = _params()
    state = egg.init(params, population=4, seed=1)
    egg.save(tmp_path / "old.npz", params, state)
    # as written before the option existed
    as_format_2(
        tmp_path / "old.npz", tmp_path / "older.npz", lambda m: m["config"].pop("noise_table")
    )
    assert zipfile.is_zipfile(tmp_path / "older.npz")
    _, loaded = egg.load(tmp_path / "older.npz")
    assert loaded.config.noise_table is None
    assert loaded.config == state.config


def test_table_changes_the_noise_but_not_the_default():
    params = _params()
    default = egg.ask(params, _init(params, noise_table=None)).member(0)
    tabled = egg.ask(params, _init(params)).member(0)
    eps = noise.factors(5, 3, [0], 0, (5, 4), 1)
    dense = (eps[0][0] @ eps[1][0].T).astype(np.float64)
    np.testing.assert_allclose(default["w"] - params["w"], 0.1 * dense, rtol=1e-4, atol=1e-6)
    assert not np.allclose(default["w"], tabled["w"])


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_layers_equal_members(activation):
    params = _params()
    pop = egg.ask(params, _init(params))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    img = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    ids = np.array([[0, 6], [3, 3]])
    out = pop.linear(x, "w", "b", activation=activation)
    mm = pop.matmul(x, "w")
    conv = pop.conv2d(img, "conv", padding=1)
    emb = pop.embed(ids, "emb")
    stack = pop.perturbed("b")
    act = {None: lambda v: v, "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
    for i in range(6):
        m = pop.member(i)
        np.testing.assert_allclose(out[i], act(x @ m["w"] + m["b"]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mm[i], x @ m["w"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(emb[i], m["emb"][ids], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(stack[i], m["b"])
        ref = _reference_conv(img, m["conv"])
        np.testing.assert_allclose(conv[i], ref, rtol=1e-4, atol=1e-4)


def _reference_conv(x, w):
    """Padding 1, stride 1 cross-correlation, by loops over the kernel."""
    B, C, H, W = x.shape
    n_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((B, n_out, H, W))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bchw,oc->bohw", xp[:, :, i : i + H, j : j + W], w[:, :, i, j])
    return out


def test_update_equals_the_dense_formula():
    params = _params()
    state = _init(params, optimizer="sgd", shaping="none", population=8)
    pop = egg.ask(params, state)
    fitness = np.linspace(-1.0, 2.0, 8)
    new, _ = egg.tell(params, fitness, state, pop)
    for k in params:
        eps = [(pop.member(i)[k].astype(np.float64) - params[k]) / 0.1 for i in range(8)]
        g = sum(f * e for f, e in zip(fitness, eps, strict=True)) / (8 * 0.1)
        np.testing.assert_allclose(new[k], params[k] + 0.05 * g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("big", TypeError, "noise_table must be an integer"),
        (True, TypeError, "noise_table must be an integer"),
        (1.0e6, TypeError, "noise_table must be an integer"),
        (0, ValueError, "noise_table must be an integer >= 1"),
        (20, ValueError, r"noise_table must be in \[21, 2\^30\]"),  # conv: (3 + 18) * 1
        (2**30 + 1, ValueError, "noise_table must be in"),
    ],
)
def test_bad_values_name_the_option(value, error, match):
    with pytest.raises(error, match=match):
        _init(_params(), noise_table=value)


def test_smallest_table_is_accepted():
    params = _params()
    state = _init(params, noise_table=21)  # conv (3 + 18) * 1 = 21; emb 12, w 9, b 4
    assert state.config.noise_table == 21
    _run(params, state, 1)


def test_bench_rejects_a_bad_table(capsys):
    from eggroll_np import cli

    with pytest.raises(SystemExit):
        cli.main(["bench", "--noise-table", "0"])
    assert "--noise-table" in capsys.readouterr().err


def test_cupy_gather_matches_numpy():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no CUDA device ({e})")
    params = _params()
    state = _init(params)
    host = egg.ask(params, state).member(3)
    dev = egg.ask({k: cp.asarray(v) for k, v in params.items()}, state).member(3)
    for k in host:
        np.testing.assert_allclose(cp.asnumpy(dev[k]), host[k], rtol=1e-5, atol=1e-6)


def test_compiled_gather_equals_the_numpy_form(monkeypatch):
    from eggroll_np import _ext

    if _ext.core is None:
        pytest.skip("the C++ core is not built")
    t = noise_table.table(2, 10000)
    rng = np.random.default_rng(3)
    counts = [0, 1, 16, 700, 3000]
    starts = [rng.integers(0, 10000 - c + 1, 50) for c in counts]
    got = noise_table._gather(t, starts, counts, np)
    monkeypatch.setattr(_ext, "core", None)
    want = noise_table._gather(t, starts, counts, np)
    for g, w, s, c in zip(got, want, starts, counts, strict=True):
        np.testing.assert_array_equal(g, w)
        if c:
            np.testing.assert_array_equal(g[7], t[s[7] : s[7] + c])


def test_compiled_gather_rejects_rows_outside_the_table():
    from eggroll_np import _ext

    if _ext.core is None:
        pytest.skip("the C++ core is not built")
    t = noise_table.table(2, 100)
    out = np.empty((1, 10), np.float32)
    with pytest.raises(ValueError, match="outside the table"):
        _ext.core.gather_rows_many(t, [np.array([91])], [out])
    with pytest.raises(ValueError, match="outside the table"):
        _ext.core.gather_rows_many(t, [np.array([-1])], [out])
