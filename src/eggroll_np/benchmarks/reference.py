"""The reference workloads (rl, sup, cnn) that `eggroll-np bench`, the GPU bench and asv time.

rl: MLP 1024-1024-1024-16, 1024 members, one input row per member (an RL policy's step).
sup: MLP 784-256-256-10, 256 members sharing one batch of 128 rows (supervised learning); its
forward runs 64 members at a time (`Population.chunks`), so activations stay in cache.
The MLPs are `eggroll_np.models.mlp`: ReLU hidden layers, He-initialised float32 weights, zero
biases.
cnn: the Simple CNN (`eggroll_np.models.simple_cnn.MNIST_CNN`, 1x28x28 -> conv 8 -> conv 16 -> 128 ->
10, conv kernels low-rank), 256 members sharing one batch of 32 images.
One definition for every tool; `setup(name)` gives any of them in one form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import namespace_of
from ..models import mlp, simple_cnn
from ..models.simple_cnn import MNIST_CNN, SimpleCNN
from ..population import Population

__all__ = [
    "Workload",
    "WORKLOADS",
    "make_params",
    "make_inputs",
    "inference",
    "inference_rows",
    "ACTIVATION",
    "make_fitness",
    "CNNWorkload",
    "CNN_WORKLOAD",
    "NAMES",
    "cnn_images",
    "setup",
    "cnn_member_fitness",
]


@dataclass(frozen=True)
class Workload:
    """A reference workload: an MLP, a population, and how the inputs are shared."""

    name: str
    sizes: tuple[int, ...]
    population: int
    rows: int  # rows per member
    shared: bool  # one batch shared by every member (sup) or one input per member (rl)
    # Members per chunk of the CPU forward (`Population.chunks`, `mlp.members_per_chunk`),
    # None for the whole population at once: rl's activations are one row per member, and
    # chunking would only re-read W (measured slower).
    chunk: int | None = None

    def scaled(self, width: int, population: int) -> Workload:
        """The same MLP with hidden layers `width` wide (and input too, for rl) and another
        population: the GPU figures use rl at width 4096 and populations 4096 / 16384."""
        first = width if not self.shared else self.sizes[0]
        sizes = (first, *[width] * (len(self.sizes) - 2), self.sizes[-1])
        name = f"{self.name}-{width}"
        return dataclasses.replace(self, name=name, sizes=sizes, population=population)

    @property
    def inference_rows(self) -> int:
        """Rows that pure inference pushes through the MLP (all members' rows at once)."""
        return self.population * self.rows


#: The hidden activation of the reference MLPs.
ACTIVATION = "relu"

#: The reference workloads by name, rl (one row per member) and sup (one shared batch).
WORKLOADS = {
    "rl": Workload("rl", (1024, 1024, 1024, 16), population=1024, rows=1, shared=False),
    "sup": Workload(
        "sup", (784, 256, 256, 10), population=256, rows=128, shared=True,
        chunk=mlp.members_per_chunk(128, 256),
    ),
}


def make_params(w: Workload, seed: int = 0) -> dict[str, Any]:
    """The workload's MLP (`models.mlp.init`), He-initialised (gain sqrt(2), for ReLU)."""
    return mlp.init(w.sizes, np.random.default_rng(seed), gain=float(np.sqrt(2.0)))


def make_inputs(w: Workload, seed: int = 1) -> np.ndarray:
    """rl: (N, rows, m) one input per member; sup: (rows, m) shared by all members."""
    rng = np.random.default_rng(seed)
    shape = (w.rows, w.sizes[0]) if w.shared else (w.population, w.rows, w.sizes[0])
    return rng.standard_normal(shape, dtype=np.float32)


def inference(params: dict[str, Any], x: Any) -> Any:
    """Pure inference of rows x (R, m) -> (R, n_out) with the unperturbed weights (NumPy or
    CuPy): `models.mlp.forward` with ReLU."""
    return mlp.forward(params, x, ACTIVATION)


def inference_rows(w: Workload, x: np.ndarray) -> np.ndarray:
    """The rows pure inference runs on: every member's rows, (N * rows, m)."""
    if w.shared:
        return np.broadcast_to(x, (w.population, *x.shape)).reshape(-1, x.shape[-1]).copy()
    return x.reshape(-1, x.shape[-1])


def make_fitness(
    w: Workload, x: Any, chunk: int | None = None
) -> Callable[[Population], Any]:
    """A batched fitness (pop -> (N,)): minus the mean squared output (a smooth, cheap score).

    With `chunk`, the forward runs `chunk` members at a time (`Population.chunks`): each member
    sees the same parameters and inputs either way (BLAS may block a smaller GEMM differently,
    so the last bits of a fitness value can differ)."""
    def score(pop: Population, xs: Any) -> Any:
        out = mlp.population_forward(pop, xs, ACTIVATION)
        return -namespace_of(out).mean(out * out, axis=(1, 2), dtype=np.float64)

    def fitness(pop: Population) -> Any:
        if chunk is None:
            return score(pop, x)
        f = namespace_of(x).empty(pop.size, dtype=np.float64)
        for members, sub in pop.chunks(chunk):
            f[members] = score(sub, x if w.shared else x[members])
        return f

    return fitness


@dataclass(frozen=True)
class CNNWorkload:
    """The Simple CNN on one batch of images shared by every member."""

    name: str
    arch: SimpleCNN
    population: int
    rows: int  # images, shared by every member
    shared: bool = True

    @property
    def inference_rows(self) -> int:
        """Images that pure inference pushes through the CNN (all members' images at once)."""
        return self.population * self.rows


#: MNIST-sized (1x28x28) so that the convolutions carry real weight; 32 images per generation.
CNN_WORKLOAD = CNNWorkload("cnn", MNIST_CNN, population=256, rows=32)
#: Every reference workload's name, as `eggroll-np bench --workload` takes them.
NAMES = (*WORKLOADS, CNN_WORKLOAD.name)


def cnn_images() -> np.ndarray:
    """The cnn workload's shared batch (rows, C, H, W), float32."""
    w = CNN_WORKLOAD
    return np.random.default_rng(1).standard_normal((w.rows, *w.arch.in_shape), np.float32)


def setup(name: str) -> tuple[Any, dict[str, Any], Callable[[], Any], Callable, dict[str, Any]]:
    """(workload, params, pure inference of all N*rows rows, batched fitness, extra init kwargs)
    of the reference workload `name` (one of NAMES).

    Inference's input rows are built on its first call, not here (see `_lazy`)."""
    if name == CNN_WORKLOAD.name:
        w = CNN_WORKLOAD
        params = simple_cnn.init_params(w.arch)
        x = cnn_images()
        cnn_rows = _lazy(
            lambda: np.broadcast_to(x, (w.population, *x.shape)).reshape(-1, *x.shape[1:]).copy()
        )

        def fitness(pop: Population) -> Any:
            out = simple_cnn.population_forward(pop, x, w.arch)
            return -np.mean(out * out, axis=(1, 2), dtype=np.float64)

        def infer() -> Any:
            return simple_cnn.inference(params, cnn_rows(), w.arch)

        return w, params, infer, fitness, {"lowrank": simple_cnn.lowrank_choices()}
    wm = WORKLOADS[name]
    params = make_params(wm)
    x = make_inputs(wm)
    mlp_rows = _lazy(lambda: inference_rows(wm, x))
    return wm, params, lambda: inference(params, mlp_rows()), make_fitness(wm, x, wm.chunk), {}


def _lazy(make: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """make() on the first call, the same array after: inference's N * rows input (98 MB for
    sup) exists only in a process that runs inference, so a step's peak memory is its own."""
    held: list[np.ndarray] = []

    def get() -> np.ndarray:
        if not held:
            held.append(make())
        return held[0]

    return get


def cnn_member_fitness() -> Callable[[Any], float]:
    """The cnn workload's fitness of ONE member tree (black-box ES: plain inference per member)."""
    w, x = CNN_WORKLOAD, cnn_images()
    return lambda tree: -float(np.mean(simple_cnn.inference(tree, x, w.arch) ** 2))
