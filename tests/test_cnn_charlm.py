"""The cnn and charlm workloads and the mnist recipe: forwards agree with members, learning, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import cli
from eggroll_np.population import NoiseKind
from eggroll_np.training import run_folder, train
from eggroll_np.training.workloads import charlm, cnn, corpus, get, recurrent

pytest.importorskip("sklearn")


def _config(name, **kw):
    return train.resolve_config(get(name), kw)


def _init(task, config):
    keys = ("population", "sigma", "lr", "rank", "seed", "optimizer", "shaping")
    return egg.init(task.params, **{k: config[k] for k in keys}, **task.es_options)


def _train(task, config, generations):
    state = _init(task, config)
    params = task.params
    for _ in range(generations):
        params, state = egg.step(params, task.fitness, state, batched=True)
    return params, state


# ---- cnn ---------------------------------------------------------------------------------------


def test_cnn_kernels_are_lowrank_and_it_learns():
    config = _config("cnn", population=32, batch=64, baseline=False, lr=0.03)
    task = get("cnn").make(config)
    state = _init(task, config)
    kinds = dict(zip(state.spec.path_strings, state.config.kinds, strict=True))
    assert kinds["conv1/W"] is NoiseKind.LOWRANK
    assert kinds["conv2/W"] is NoiseKind.LOWRANK
    assert kinds["fc1/W"] is NoiseKind.LOWRANK
    assert kinds["conv1/b"] is NoiseKind.FULL
    before = task.evaluate(task.params)["test_accuracy"]
    params, _ = _train(task, config, 30)
    after = task.evaluate(params)["test_accuracy"]
    assert after > 0.25 > before  # chance is 0.1


def test_cnn_sgd_baseline_is_named_and_learns():
    config = _config("cnn")
    x_tr, y_tr, x_te, y_te = cnn.load_images(config)
    assert x_tr.shape[1:] == (1, 8, 8)
    result = cnn.sgd_baseline(config, x_tr, y_tr, x_te, y_te, epochs=3)
    assert result["baseline_test_accuracy"] > 0.8
    assert "SGD" in cnn.BASELINE
    assert "backprop" in cnn.BASELINE
    assert "SGD" in get("cnn").help


def _write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.tobytes())


@pytest.fixture
def tiny_mnist(tmp_path):
    """A stand-in MNIST directory (28x28 IDX files of random images)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return tmp_path


def test_cnn_reads_mnist_from_data(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "cnn", "--data", str(tiny_mnist), "--population", "8", "--generations", "2",
         "--batch", "16", "--no-baseline", "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert cnn.load_images(_config("cnn", data=str(tiny_mnist)))[0].shape[1:] == (1, 28, 28)


# ---- charlm ------------------------------------------------------------------------------------


def test_charlm_population_logits_match_each_member():
    config = _config("charlm", population=4, embed=8, hidden=12, layers=2)
    task = get("charlm").make(config)
    state = _init(task, config)
    pop = egg.ask(task.params, state)
    assert "skip" in pop.paths  # each member's own bigram path rows, perturbed too
    vocab_size = task.params["embed"].shape[0]
    assert 90 < vocab_size < 120  # the bytes of pydoc_data's training split, plus one
    ids = np.random.default_rng(0).integers(0, vocab_size, (3, 7))
    got = recurrent.population_logits(pop, ids)  # time-major
    assert got.shape == (4, 7, 3, vocab_size)
    for i in range(4):
        want, _ = recurrent.logits(pop.member(i), ids)
        np.testing.assert_allclose(got[i].transpose(1, 0, 2), want, rtol=1e-4, atol=1e-5)


def test_charlm_bits_per_byte_and_carried_state():
    rng = np.random.default_rng(1)
    vocab = corpus.Vocabulary(corpus.encode("abcdefgh"))
    assert vocab.size == 9
    assert vocab.unseen == 248
    params = recurrent.init_lm(vocab.size, 8, 12, 2, rng)
    text = corpus.encode("abcxhgfedcbaxxha" * 3)  # 'x' was never seen in training
    # chunked evaluation carries the state: same value as one chunk
    one = recurrent.bits_per_byte(params, text, vocab, chunk=1000)
    assert recurrent.bits_per_byte(params, text, vocab, chunk=7) == pytest.approx(one, rel=1e-9)
    tokens = vocab.to_token[text]
    out, _ = recurrent.logits(params, tokens[None, :-1])
    logp = out[0] - np.log(np.exp(out[0]).sum(-1, keepdims=True))
    bits = -logp[np.arange(len(text) - 1), tokens[1:]] / np.log(2)
    bits += np.where(text[1:] == ord("x"), np.log2(248), 0.0)  # one of the 248 unseen bytes
    assert one == pytest.approx(bits.mean(), rel=1e-6)
    drawn = recurrent.sample(params, text[:5], 40, vocab, np.random.default_rng(0), 1.0)
    assert drawn.dtype == np.uint8
    assert drawn.shape == (40,)


def test_charlm_learns_on_a_small_file_and_reports_baselines(tmp_path, capsys):
    """Without the bigram path too: from the unigram start, the model learns the context."""
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "charlm", "--data", str(path), "--population", "32", "--generations", "40",
         "--hidden", "16", "--embed", "8", "--layers", "1", "--length", "16",
         "--lr", "0.05", "--lr-schedule", "constant", "--sample-bytes", "20", "--quiet",
         "--no-bigram-path", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    data, _ = corpus.load_text(str(path))
    train_split, val = corpus.split(data, 0.1)
    assert summary["unigram_bits_per_byte"] == pytest.approx(
        corpus.unigram_bits_per_byte(train_split, val)
    )
    assert summary["bigram_bits_per_byte"] < summary["unigram_bits_per_byte"]
    records = train.read_metrics(str(out / train.METRICS))
    assert records[-1]["val_bits_per_byte_4k"] < records[0]["val_bits_per_byte_4k"] - 1.0
    assert summary["val_bits_per_byte"] < 8.0 - 2.0  # from uniform over 256 bytes
    printed = capsys.readouterr().out
    assert printed.startswith("charlm: val_bits_per_byte ")
    assert "sample:\n" in printed
    assert summary["sample"].startswith(corpus.decode(val[:64]) + charlm.PROMPT_END)
    assert len(summary["sample"]) > len(corpus.decode(val[:64]) + charlm.PROMPT_END)


_SMALL_TEXT = (
    "the cat sat on the mat. the dog ate the log. a bird in the hand is worth two in the bush. "
    "we sat on the log and the dog sat on the mat. "
) * 40
_SHORT_RUN = [
    "--population", "32", "--hidden", "16", "--embed", "8", "--length", "16",
    "--lr", "0.05", "--lr-schedule", "constant", "--sample-bytes", "0", "--quiet",
]  # fmt: skip


def test_charlm_learns_below_the_bigram_baseline_and_says_so(tmp_path, capsys):
    """Starting at the bigram model (generation 0 scores it), 40 generations go well below it
    on a small text with context beyond one byte; the summary and the printed verdict say so."""
    path = tmp_path / "small.txt"
    path.write_text(_SMALL_TEXT, encoding="utf-8")
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "charlm", "--data", str(path), "--generations", "40", *_SHORT_RUN,
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    bigram = summary["bigram_bits_per_byte"]
    records = train.read_metrics(str(out / train.METRICS))
    assert records[0]["val_bits_per_byte_4k"] == pytest.approx(bigram, abs=0.05)
    assert summary["val_bits_per_byte"] < bigram - 0.1
    assert "is below the bigram baseline" in summary["verdict"]
    assert f"{bigram:.3f}" in summary["verdict"]
    assert f"{summary['unigram_bits_per_byte']:.3f}" in summary["verdict"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == f"verdict: {summary['verdict']}"
    assert "verdict" not in printed[0]  # the summary line keeps its numbers only


def test_charlm_says_plainly_when_it_is_not_below_the_bigram_baseline(tmp_path, capsys):
    """Without the bigram path an untrained model scores about the unigram model: the verdict
    says NOT below, beside both baselines."""
    path = tmp_path / "small.txt"
    path.write_text(_SMALL_TEXT, encoding="utf-8")
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "charlm", "--data", str(path), "--no-bigram-path", "--generations", "0",
         *_SHORT_RUN, "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_bits_per_byte"] > summary["bigram_bits_per_byte"]
    assert "is NOT below the bigram baseline" in summary["verdict"]
    assert f"verdict: {summary['verdict']}" in capsys.readouterr().out
    assert corpus.verdict(3.0, {"bigram_bits_per_byte": 3.0, "unigram_bits_per_byte": 4.0}) == (
        "held-out 3.000 bits per byte is NOT below the bigram baseline 3.000 (unigram 4.000)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"text\x00\x01\x02 with NUL bytes" * 8, "binary.*offset 4"),
        ("café ".encode("latin-1") * 40, "not UTF-8"),
        (b"short", "5 bytes"),
        (b"a long enough text, but shorter than the window. " * 3, "too short for --length"),
    ],
)
def test_charlm_bad_data_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"bad.txt.*{message}"):
        get("charlm").make(_config("charlm", data=str(path), length=200))


def test_charlm_bad_options_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="--length"):
        get("charlm").make(_config("charlm", length=0))
    with pytest.raises(ValueError, match="--sample-bytes"):
        get("charlm").make(_config("charlm", sample_bytes=-1))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        get("charlm").make(_config("charlm", data=str(tmp_path / "nope.txt")))


# ---- mnist recipe ------------------------------------------------------------------------------


def test_mnist_recipe_sets_options_and_explicit_ones_win():
    w = get("mnist")
    config = train.resolve_config(w, {"recipe": "eggroll_mnist"})
    assert config["hidden"] == (256,)
    assert config["activation"] == "gelu"
    assert config["fitness"] == "accuracy"
    assert config["recipe"] == "eggroll_mnist"
    config = train.resolve_config(w, {"recipe": "eggroll_mnist", "population": 64})
    assert config["population"] == 64
    # a resumed run keeps its recipe's values
    saved = dict(train.resolve_config(w, {"recipe": "eggroll_mnist", "lr": 0.001}))
    again = train.resolve_config(w, {}, saved)
    assert again["lr"] == 0.001
    assert again["fitness"] == "accuracy"
    with pytest.raises(ValueError, match="--recipe"):
        train.resolve_config(w, {"recipe": "nope"})


def test_mnist_recipe_runs_unchanged_on_data(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    rc = cli.main(
        ["train", "mnist", "--recipe", "eggroll_mnist", "--data", str(tiny_mnist),
         "--population", "8", "--generations", "2", "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    saved = json.loads((out / run_folder.RUN_FILE).read_text())["config"]
    assert saved["recipe"] == "eggroll_mnist"
    assert saved["fitness"] == "accuracy"
    assert saved["hidden"] == [256]
