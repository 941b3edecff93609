"""Generated bad inputs against every entry point: only ValueError/TypeError, nothing changed.

init, step, ask, tell, load and the Population methods (and its layers, where they exist) get
wrong types, out-of-range values, mismatched trees, non-finite or non-real fitness and damaged
checkpoint files. Each must raise ValueError or TypeError (never another exception, never a
silent success) and leave the params and the state exactly as they were.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import eggroll_np as egg
from eggroll_np import optim
from eggroll_np.tree import flatten

N = 8
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ERRORS = (ValueError, TypeError)


def _params():
    rng = np.random.default_rng(0)
    return {
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "b": np.zeros(3, np.float32),
        "deep": [{"V": rng.standard_normal((3, 2))}],  # float64, low-rank
    }


def _snapshot(params, state):
    leaves, _, _ = flatten(params)
    return (
        [x.copy() for x in leaves],
        state.generation,
        (state.opt_state.count, [np.array(v, copy=True) for v in optim.state_arrays(state.opt_state)]),
        copy.deepcopy(state.info),
        state.config,
    )


def _assert_unchanged(params, state, snap):
    leaves, generation, opt, info, config = snap
    now, _, _ = flatten(params)
    assert len(now) == len(leaves)
    for a, b in zip(now, leaves, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert state.generation == generation
    assert state.opt_state.count == opt[0]
    now_opt = optim.state_arrays(state.opt_state)
    assert len(now_opt) == len(opt[1])
    for a, b in zip(now_opt, opt[1], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert state.info == info
    assert state.config == config


def _stepped():
    params = _params()
    state = egg.init(params, population=N, sigma=0.1, lr=0.05, seed=1)
    params, state = egg.step(params, lambda p: -float((p["W"] ** 2).sum()), state)
    return params, state


# ---- init -----------------------------------------------------------------------------------

_GARBAGE = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.complex_numbers(allow_nan=False, min_magnitude=1e-3).filter(lambda z: z.imag != 0),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.just(object()),
)
_NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf, np.float32("nan"), float("1e400")])

# Values that are wrong for one argument (the other arguments valid), besides _GARBAGE.
_BAD_VALUES = {
    "population": st.one_of(
        st.integers(max_value=0),
        st.integers(0, 1000).map(lambda k: 2 * k + 1),  # odd with antithetic sampling
        st.integers(2**32, 2**80).map(lambda k: k + k % 2),  # more member keys than 2**32
        st.floats(2, 64),
        st.just(True),
        st.just("8"),
    ),
    "sigma": st.one_of(st.floats(max_value=0.0), _NONFINITE, st.just(True)),
    "lr": st.one_of(st.floats(max_value=-1e-300), _NONFINITE, st.just(True)),
    "rank": st.one_of(
        st.integers(max_value=0), st.integers(4, 10**6), st.floats(1, 3), st.just(True)
    ),
    "seed": st.one_of(
        st.integers(max_value=-1), st.integers(2**64, 2**70), st.floats(0, 9), st.just(True)
    ),
    "antithetic": st.sampled_from([0, 1, "yes", 1.0]),
    "noise_reuse": st.one_of(st.integers(max_value=0), st.floats(1, 9), st.just(True)),
    "optimizer": st.text(max_size=6).filter(lambda s: s not in ("sgd", "momentum", "adam")),
    "shaping": st.text(max_size=6).filter(
        lambda s: s not in ("none", "centered_rank", "zscore", "group_zscore")
    ),
    "weight_decay": st.one_of(st.floats(max_value=-1e-300), _NONFINITE),
    "maximize": st.sampled_from([0, 1, "no", 1.0]),
    "noise": st.text(max_size=6).filter(lambda s: s not in ("lowrank", "full")),
    "lowrank": st.one_of(
        st.just({"nope": "full"}),
        st.just({"b": "lowrank"}),  # a 1-D leaf cannot be low-rank
        st.just({"W": "sideways"}),
        st.integers(),
    ),
}
# The optimizer's own hyperparameters, with the optimizer they belong to.
_HYPER = {
    "momentum": ("momentum", st.one_of(st.floats(1.0, 10.0), st.floats(max_value=-1e-9))),
    "b1": ("adam", st.one_of(st.floats(1.0, 10.0), st.floats(max_value=-1e-9))),
    "b2": ("adam", st.one_of(st.floats(1.0, 10.0), st.floats(max_value=-1e-9))),
    "eps": ("adam", st.one_of(st.floats(max_value=0.0), _NONFINITE)),
}


@st.composite
def bad_init_kwargs(draw):
    kwargs = {"population": N, "sigma": 0.1, "lr": 0.05}
    key = draw(st.sampled_from(sorted([*_BAD_VALUES, *_HYPER])))
    if key in _HYPER:
        optimizer, values = _HYPER[key]
        kwargs["optimizer"] = optimizer
    else:
        values = _BAD_VALUES[key]
    if key in ("lowrank",):
        kwargs[key] = draw(values)
    else:
        garbage = _GARBAGE.filter(lambda v: v is not None) if key == "rank" else _GARBAGE
        kwargs[key] = draw(st.one_of(values, garbage))  # rank=None is valid: full rank
    return kwargs


@SETTINGS
@given(bad_init_kwargs())
def test_init_refuses_bad_hyperparameters(kwargs):
    params = _params()
    before = [x.copy() for x in flatten(params)[0]]
    with pytest.raises(ERRORS):
        egg.init(params, **kwargs)
    for a, b in zip(flatten(params)[0], before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 2}, "group_size"),  # without group_zscore it would be ignored
        ({"shaping": "group_zscore", "group_size": 1}, "group_size"),  # a zero update
        ({"shaping": "group_zscore"}, "group_size"),
        ({"shaping": "group_zscore", "group_size": 3}, "divide"),
        ({"seed": True}, "seed"),
        ({"rank": 4}, "rank"),  # W is 4x3: rank at most 3
        ({"population": 2**33}, "population"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_init_refuses_named_combinations(kwargs, message):
    with pytest.raises(ERRORS, match=message):
        egg.init(_params(), **{"population": N, **kwargs})


# ---- step / tell: fitness ------------------------------------------------------------------


@st.composite
def bad_fitness(draw):
    kind = draw(
        st.sampled_from(
            ["shape", "nonfinite", "complex", "strings", "none", "huge", "masked", "object"]
        )
    )
    good = draw(hnp.arrays(np.float64, (N,), elements=st.floats(-10, 10)))
    i = draw(st.integers(0, N - 1))
    if kind == "shape":
        shape = draw(
            hnp.array_shapes(min_dims=0, max_dims=3, max_side=10).filter(lambda s: s != (N,))
        )
        return np.zeros(shape)
    if kind == "nonfinite":
        good[i] = draw(_NONFINITE)
        return good
    if kind == "complex":
        return good + 1j * draw(st.floats(0.5, 2))
    if kind == "strings":
        return [str(v) for v in good]
    if kind == "none":
        out = list(good)
        out[i] = None
        return out
    if kind == "huge":
        out = [float(v) for v in good]
        out[i] = 10 ** draw(st.integers(309, 500))
        return out
    if kind == "masked":
        mask = np.zeros(N, bool)
        mask[i] = True
        return np.ma.MaskedArray(good, mask=mask)
    return np.array([*good[:-1], object()], dtype=object)


@SETTINGS
@given(fitness=bad_fitness())
def test_tell_refuses_bad_fitness(fitness):
    params, state = _stepped()
    egg.ask(params, state)
    snap = _snapshot(params, state)
    with pytest.raises(ERRORS):
        egg.tell(params, fitness, state)
    _assert_unchanged(params, state, snap)


@SETTINGS
@given(fitness=bad_fitness())
def test_batched_step_refuses_bad_fitness(fitness):
    params, state = _stepped()
    snap = _snapshot(params, state)
    with pytest.raises(ERRORS):
        egg.step(params, lambda pop: fitness, state, batched=True)
    _assert_unchanged(params, state, snap)


_BAD_MEMBER_FITNESS = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.complex_numbers(min_magnitude=1e-3, allow_nan=False).filter(lambda z: z.imag != 0),
    _NONFINITE,
    st.integers(309, 400).map(lambda e: 10**e),
    st.just(np.ma.masked),
    hnp.arrays(np.float64, st.integers(2, 4)),  # not a scalar
)


@SETTINGS
@given(value=_BAD_MEMBER_FITNESS, member=st.integers(0, N - 1))
def test_black_box_step_refuses_a_bad_member_fitness(value, member):
    params, state = _stepped()
    snap = _snapshot(params, state)
    calls = iter(range(N))

    def fitness(p):
        return value if next(calls) == member else 1.0

    with pytest.raises(ERRORS):
        egg.step(params, fitness, state)
    _assert_unchanged(params, state, snap)


# ---- ask / tell / step: params that do not match the state -----------------------------------


@st.composite
def mismatched_params(draw):
    params = _params()
    change = draw(
        st.sampled_from(["shape", "dtype", "missing", "extra", "not_array", "container", "none"])
    )
    if change == "shape":
        shape = draw(
            hnp.array_shapes(min_dims=0, max_dims=3, max_side=5).filter(lambda s: s != (4, 3))
        )
        params["W"] = np.zeros(shape, np.float32)
    elif change == "dtype":
        dt = draw(st.sampled_from([np.float16, np.int32, np.complex64, np.float64, np.bool_]))
        params["W"] = params["W"].astype(dt)
    elif change == "missing":
        del params["b"]
    elif change == "extra":
        params["c"] = np.zeros(2, np.float32)
    elif change == "not_array":
        params["W"] = params["W"].tolist()
    elif change == "container":
        params["deep"] = tuple(params["deep"])
    else:
        params["b"] = None
    return params


@SETTINGS
@given(bad=mismatched_params(), entry=st.sampled_from(["ask", "tell", "step", "save"]))
def test_entry_points_refuse_params_that_do_not_match(tmp_path, bad, entry):
    params, state = _stepped()
    snap = _snapshot(params, state)
    calls = {
        "ask": lambda: egg.ask(bad, state),
        "tell": lambda: egg.tell(bad, np.zeros(N), state),
        "step": lambda: egg.step(bad, lambda p: 0.0, state),
        "save": lambda: egg.save(tmp_path / "c.npz", bad, state),
    }
    with pytest.raises(ERRORS):
        calls[entry]()
    _assert_unchanged(params, state, snap)
    if entry == "save":
        assert not (tmp_path / "c.npz").exists()


@SETTINGS
@given(state=st.one_of(_GARBAGE, st.integers(), st.floats()))
def test_entry_points_refuse_something_that_is_not_a_state(state):
    params = _params()
    for call in (
        lambda: egg.ask(params, state),
        lambda: egg.tell(params, np.zeros(N), state),
    ):
        with pytest.raises(ERRORS):
            call()


# ---- Population methods ----------------------------------------------------------------------

_BAD_PATHS = st.one_of(
    st.integers(),
    st.none(),
    st.floats(),
    st.text(max_size=6).filter(lambda s: s not in ("W", "b", "deep/0/V")),
    st.tuples(st.text(max_size=3), st.integers()),
)
_BAD_X = st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)).filter(
        lambda x: (
            not (x.ndim == 2 and x.shape[1] == 4)
            and not (x.ndim == 3 and x.shape[0] == N and x.shape[2] == 4)
        )
    ),
    hnp.arrays(np.complex64, (2, 4), elements=st.just(1 + 1j)),
    st.just(np.array([["a"] * 4] * 2)),
    st.just(np.array([[object()] * 4] * 2, dtype=object)),
    st.none(),
    st.text(max_size=3),
)


@st.composite
def bad_population_calls(draw):
    method = draw(
        st.sampled_from(["matmul_path", "matmul_x", "matmul_t", "perturbed", "member", "slice"])
    )
    if method == "matmul_path":
        return (
            "matmul",
            (np.ones((2, 4), np.float32), draw(st.one_of(_BAD_PATHS, st.just("b")))),
            {},
        )
    if method == "matmul_x":
        return ("matmul", (draw(_BAD_X), "W"), {})
    if method == "matmul_t":
        t = draw(st.one_of(st.sampled_from(["yes", 1, 0, None, 1.0, "False"]), _GARBAGE))
        return ("matmul", (np.ones((2, 4), np.float32), "W"), {"transpose": t})
    if method == "perturbed":
        return ("perturbed", (draw(_BAD_PATHS),), {})
    if method == "member":
        i = draw(
            st.one_of(
                st.integers(max_value=-1),
                st.integers(N, 2**70),
                st.floats(),
                st.just(True),
                _GARBAGE,
            )
        )
        return ("member", (i,), {})
    start = draw(st.one_of(st.integers(max_value=-1), st.integers(N + 1), _GARBAGE))
    return ("slice", (start, N), {})


@SETTINGS
@given(call=bad_population_calls())
def test_population_methods_refuse_bad_arguments(call):
    params, state = _stepped()
    pop = egg.ask(params, state)
    snap = _snapshot(params, state)
    name, args, kwargs = call
    with pytest.raises(ERRORS):
        getattr(pop, name)(*args, **kwargs)
    _assert_unchanged(params, state, snap)
    # the population still works, and tell gives what it gives without the bad call
    fresh_params, fresh_state = _stepped()
    np.testing.assert_array_equal(
        pop.perturbed("b"), egg.ask(fresh_params, fresh_state).perturbed("b")
    )


_LAYER_CALLS = {
    "linear": lambda pop, bad: pop.linear(bad, "W"),
    "conv2d": lambda pop, bad: pop.conv2d(bad, "W"),
    "embed": lambda pop, bad: pop.embed(bad, "W"),
}


@pytest.mark.parametrize("layer", sorted(_LAYER_CALLS))
@SETTINGS
@given(bad=_BAD_X)
def test_population_layers_refuse_bad_inputs(layer, bad):
    params, state = _stepped()
    pop = egg.ask(params, state)
    if not hasattr(pop, layer):
        pytest.skip(f"Population.{layer} is not in this version")
    snap = _snapshot(params, state)
    with pytest.raises(ERRORS):
        _LAYER_CALLS[layer](pop, bad)
    _assert_unchanged(params, state, snap)


# ---- load: damaged and edited checkpoint files -----------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    params, state = _stepped()
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    egg.save(path, params, state)
    return path.read_bytes()


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path, arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _load_refused(path):
    # the message names the file (as repr: quotes) and is one line
    with pytest.raises(ValueError, match=re.escape(repr(str(path)))) as exc:
        egg.load(path)
    assert "\n" not in str(exc.value)


@SETTINGS
@given(cut=st.integers(0, 10**9))
def test_load_refuses_a_truncated_file(tmp_path, checkpoint_bytes, cut):
    path = tmp_path / "cut.npz"
    path.write_bytes(checkpoint_bytes[: cut % len(checkpoint_bytes)])
    _load_refused(path)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_load_refuses_random_bytes(tmp_path, data):
    path = tmp_path / "noise.npz"
    path.write_bytes(data)
    _load_refused(path)


@SETTINGS
@given(position=st.integers(0, 10**9), bit=st.integers(0, 7))
def test_a_bit_flip_is_refused_or_harmless(tmp_path, checkpoint_bytes, position, bit):
    flipped = bytearray(checkpoint_bytes)
    flipped[position % len(flipped)] ^= 1 << bit
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(flipped))
    try:
        params, state = egg.load(path)
    except ValueError as exc:
        message = str(exc)
        params = state = None
    if state is None:
        assert repr(str(path)) in message
        return
    # Some bytes (zip timestamps, padding) carry nothing: then the load must be the original.
    good_path = tmp_path / "good.npz"
    good_path.write_bytes(checkpoint_bytes)
    good_params, good_state = egg.load(good_path)
    _assert_unchanged(params, state, _snapshot(good_params, good_state))


def _edit_meta(meta: dict, where: str, value) -> None:
    """Set meta[where] ('config.sigma', 'generation', ...); optimizer hyperparameters may live
    in config['hyperparams'] (format 2) or flat in config (format 1)."""
    parts = where.split(".")
    target = meta
    for p in parts[:-1]:
        target = target[p]
    key = parts[-1]
    if parts[0] == "config" and key not in target and "hyperparams" in target:
        target = target["hyperparams"]
    target[key] = value


_META_EDITS = st.one_of(
    st.tuples(st.just("config.sigma"), st.sampled_from([-1.0, 0.0, None, "0.1", [0.1]])),
    st.tuples(st.just("config.lr"), st.sampled_from([-5.0, None, "x", 1e400])),
    st.tuples(st.just("config.population"), st.sampled_from([3, 0, -8, 8.5, "8", None, 2**40])),
    st.tuples(st.just("config.b2"), st.sampled_from([1.0, 1.5, -0.1, None])),
    st.tuples(st.just("config.rank"), st.sampled_from([0, -1, 1.5, "1", 99])),
    st.tuples(st.just("config.seed"), st.sampled_from([-1, 2**64, True, 0.5])),
    st.tuples(
        st.just("config.kinds"),
        st.sampled_from(
            [
                ["lowrank"],
                [],
                "lowrank",
                [1, 2, 3],
                ["lowrank", "full", "sideways"],
                ["lowrank", "lowrank", "lowrank"],
            ]
        ),
    ),
    st.tuples(st.just("config.optimizer"), st.sampled_from(["lbfgs", 3, None, "sgd"])),
    st.tuples(st.just("config.shaping"), st.sampled_from(["rank", None])),
    st.tuples(st.just("config.antithetic"), st.sampled_from([1, "yes", None])),
    st.tuples(st.just("config.noise_reuse"), st.sampled_from([0, -1, 1.5])),
    st.tuples(st.just("config"), st.sampled_from([None, [], "x", 3])),
    st.tuples(st.just("generation"), st.sampled_from([-3, 1.7, "2", None, True, [1]])),
    st.tuples(st.just("info"), st.sampled_from([None, [], "x", {"update_norm": "big"}])),
    st.tuples(st.just("spec"), st.sampled_from([None, "{", "[]", "{}", 3, '{"paths": 1}'])),
    st.tuples(st.just("format_version"), st.sampled_from([0, 99, None, "1", 1.5])),
)


@SETTINGS
@given(edit=_META_EDITS)
def test_load_refuses_an_edited_meta(tmp_path, checkpoint_bytes, edit):
    arrays = _arrays(checkpoint_bytes)
    meta = json.loads(arrays["meta"].tobytes().decode())
    where, value = edit
    _edit_meta(meta, where, value)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path = tmp_path / "edited.npz"
    _write(path, arrays)
    _load_refused(path)


_ARRAY_EDITS = st.sampled_from(
    [
        ("drop", "param/0"),
        ("drop", "meta"),
        ("drop", "opt/count"),
        # Adam's state arrays in optim.state_arrays order: opt/0 = mu of leaf 0, opt/1 = nu of
        # leaf 0, opt/2 = mu of leaf 1, ..., opt/5 = nu of leaf 2
        ("drop", "opt/0"),
        ("dtype", "param/0"),
        ("dtype", "opt/0"),
        ("dtype", "opt/5"),
        ("shape", "param/1"),
        ("shape", "opt/1"),
        ("nan", "param/0"),
        ("nan", "opt/2"),
        ("negative", "opt/1"),
        ("negative", "opt/count"),
        ("count_dtype", "opt/count"),
        ("extra", "opt/zeta/0"),
        ("extra", "param/9"),
        ("meta_dtype", "meta"),
    ]
)


@SETTINGS
@given(edit=_ARRAY_EDITS)
def test_load_refuses_edited_arrays(tmp_path, checkpoint_bytes, edit):
    arrays = _arrays(checkpoint_bytes)
    what, name = edit
    if what == "drop":
        del arrays[name]
    elif what == "dtype":
        arrays[name] = arrays[name].astype(
            np.float64 if arrays[name].dtype == np.float32 else np.float32
        )
    elif what == "shape":
        arrays[name] = np.concatenate([arrays[name].ravel(), [0]]).astype(arrays[name].dtype)
    elif what == "nan":
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = np.nan
    elif what == "negative":
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = -1
    elif what == "count_dtype":
        arrays[name] = arrays[name].astype(np.float64)
    elif what == "extra":
        arrays[name] = np.zeros(3, np.float32)
    else:
        arrays[name] = arrays[name].astype(np.int64)
    assume(name in arrays or what == "drop")
    path = tmp_path / "edited.npz"
    _write(path, arrays)
    _load_refused(path)


def test_load_refuses_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    _load_refused(tmp_path / "empty.npz")
    _load_refused(tmp_path)  # a directory
    np.save(tmp_path / "plain.npy", np.zeros(3))
    _load_refused(tmp_path / "plain.npy")
    (tmp_path / "text.npz").write_text("not a checkpoint\n")
    _load_refused(tmp_path / "text.npz")
    _write(tmp_path / "other.npz", {"x": np.zeros(2)})
    _load_refused(tmp_path / "other.npz")


def test_a_valid_checkpoint_still_loads_and_steps(tmp_path, checkpoint_bytes):
    path = tmp_path / "good.npz"
    path.write_bytes(checkpoint_bytes)
    params, state = egg.load(path)
    params, state = egg.step(params, lambda p: -float((p["W"] ** 2).sum()), state)
    assert state.generation == 2


# ---- overflow in the update ------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize(
    ("dtype", "kwargs", "leaf"),
    [
        (np.float32, {"sigma": 1e-45}, "'b'"),  # 1/(N*sigma) overflows float32
        (np.float32, {"lr": 1e39}, "'W'"),
        (np.float64, {"lr": 1e300}, "'W'"),
    ],
)
def test_a_non_finite_update_is_an_error_naming_the_leaf(optimizer, dtype, kwargs, leaf):
    params = {"W": np.ones((4, 3), dtype), "b": np.ones(3, dtype)}
    state = egg.init(params, population=N, optimizer=optimizer, **kwargs)
    snap = _snapshot(params, state)

    def fitness(p):
        return float(p["W"].sum() + p["b"].sum() + p["W"][0, 0] * 1e3)

    with pytest.raises(ValueError, match=f"generation 0: the (update|new values) of leaf {leaf}"):
        egg.step(params, fitness, state)
    _assert_unchanged(params, state, snap)


# ---- the messages name what is wrong -----------------------------------------------------------


def _masked():
    return np.ma.MaskedArray(np.arange(N, dtype=float), mask=[i == 2 for i in range(N)])


@pytest.mark.parametrize(
    ("fitness", "error", "message"),
    [
        (
            [str(float(i)) for i in range(N)],
            TypeError,
            "fitness must be real numbers, got dtype <U",
        ),
        (np.arange(N) + 0.5j, TypeError, r"got dtype complex128 \(complex\)"),
        ([*range(3), None, *range(4)], TypeError, "fitness of member 3 must be a real number"),
        ([*range(N - 1), 10**400], ValueError, "member 7 is about 10\\^400, beyond the float64"),
        (_masked(), ValueError, "member 2 masked"),
    ],
)
def test_fitness_errors_name_the_member_and_the_problem(fitness, error, message):
    params, state = _stepped()
    snap = _snapshot(params, state)
    with pytest.raises(error, match=message):
        egg.tell(params, fitness, state)
    _assert_unchanged(params, state, snap)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5", "value for member 0 must be a real number, got str"),
        (None, "got NoneType"),
        (2 + 1j, "got complex"),
        (np.ma.masked, "value for member 0 is masked"),
    ],
)
def test_black_box_fitness_errors_name_the_member(value, message):
    params, state = _stepped()
    with pytest.raises(TypeError, match=message):
        egg.step(params, lambda p: value, state)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda pop: pop.matmul(np.ones((2, 4), np.float32), 0), TypeError, "path must be a str"),
        (lambda pop: pop.perturbed(None), TypeError, "path must be a str"),
        (lambda pop: pop.matmul(np.ones((2, 4)), "W", transpose="yes"), TypeError, "transpose"),
        (lambda pop: pop.matmul(np.ones((2, 4)) * 1j, "W"), TypeError, "x must be a real"),
        (lambda pop: pop.member(True), TypeError, "member index i must be an integer, got bool"),
        (lambda pop: pop.perturbed("nope"), ValueError, "'nope' is not a leaf"),
    ],
)
def test_population_errors_name_the_argument(call, error, message):
    params, state = _stepped()
    with pytest.raises(error, match=message):
        call(egg.ask(params, state))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            (0, "mu"),
            np.zeros((4, 3), np.float64),
            r"opt_state mu of leaf 0 is float64 \(4, 3\) but its leaf is float32",
        ),
        ((1, "nu"), np.zeros(4, np.float32), r"opt_state nu of leaf 1 is float32 \(4,\)"),
        ((1, "nu"), -np.ones(3, np.float32), r"opt_state nu of leaf 1 must be >= 0"),
        ((9, "mu"), np.zeros(3, np.float32), r"exactly the leaves \[0, 1, 2\]"),
    ],
)
def test_a_state_whose_optimizer_arrays_do_not_fit_the_params(key, value, message):
    params, state = _stepped()
    (leaf, field), opt = key, state.opt_state
    one = opt.leaves.get(leaf, optim.AdamState(value, value))._replace(**{field: value})
    bad = dataclasses.replace(state, opt_state=opt._replace(leaves={**opt.leaves, leaf: one}))
    snap = _snapshot(params, bad)
    with pytest.raises(ValueError, match=message):
        egg.step(params, lambda p: 0.0, bad)
    _assert_unchanged(params, bad, snap)
