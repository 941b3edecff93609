"""Exact-gradient baselines in NumPy: MLP and Simple CNN losses with backprop, and an SGD loop.

What the benchmark tables compare ES against ("SGD with exact gradients"). Gradients are of the
mean loss over the batch; the tests check them against central finite differences.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...conv import im2col
from ...models.simple_cnn import SimpleCNN
from ...tree import flatten, unflatten
from .common import log_softmax

__all__ = [
    "mlp_loss_and_grad",
    "cnn_loss_and_grad",
    "col2im",
    "sgd",
    "SGDResult",
]

_ACT = {
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
}


def _gelu_and_grad(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # tanh approximation, as the population layers' "gelu" (epilogue.apply_activation)
    c = np.sqrt(2.0 / np.pi)
    u = c * (z + 0.044715 * z**3)
    t = np.tanh(u)
    a = 0.5 * z * (1.0 + t)
    da = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * z * z)
    return a, da


def _activate(z: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(activation, its derivative) of pre-activations z."""
    if name == "gelu":
        return _gelu_and_grad(z)
    if name not in _ACT:
        raise ValueError(f"activation must be one of gelu, relu, tanh, got {name!r}")
    f, df = _ACT[name]
    a = f(z)
    return a, df(z, a)


def _loss_head(out: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """(mean loss, d loss / d out) for outputs out (B, n)."""
    if loss == "xent":
        logp = log_softmax(out)
        rows = np.arange(len(y))
        d = np.exp(logp)
        d[rows, y] -= 1.0
        return float(-logp[rows, y].mean()), d / len(y)
    if loss == "mse":
        diff = out - y
        return float(np.mean(diff * diff)), 2.0 * diff / diff.size
    raise ValueError(f"loss must be 'xent' or 'mse', got {loss!r}")


def mlp_loss_and_grad(
    params: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    activation: str,
    loss: str = "xent",
    output_activation: str | None = None,
) -> tuple[float, dict[str, Any]]:
    """Mean loss of the MLP {"layers": [{"W", "b"}, ...]} on (x, y) and its exact gradient.

    Args:
        x: (B, m) inputs.
        y: (B,) integer labels for loss="xent", (B, n_out) targets for loss="mse".
        activation: between layers ("gelu", "relu", "tanh").
        output_activation: None or one of the same, applied to the last layer's output (the
            matching workload's tanh network).

    Returns:
        (loss, grads) with grads a tree like params (float64).
    """
    layers = params["layers"]
    h = np.asarray(x, np.float64)
    cache = []
    for j, layer in enumerate(layers):
        z = h @ layer["W"] + layer["b"]
        act = activation if j < len(layers) - 1 else output_activation
        a, da = _activate(z, act) if act is not None else (z, None)
        cache.append((h, da))
        h = a
    value, d = _loss_head(h, y, loss)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for j in range(len(layers) - 1, -1, -1):
        h_in, da = cache[j]
        if da is not None:
            d = d * da
        grads[j] = {"W": h_in.T @ d, "b": d.sum(axis=0)}
        d = d @ np.asarray(layers[j]["W"], np.float64).T
    return value, {"layers": grads}


def col2im(
    cols: np.ndarray, x_shape: tuple[int, ...], kernel: int, stride: int, padding: int
) -> np.ndarray:
    """Adjoint of `conv.im2col`: patch gradients (B, H'*W', C*k*k) summed into (B, C, H, W)."""
    b, c, h, w = x_shape
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    cols = cols.reshape(b, ho, wo, c, kernel, kernel)
    out = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += cols[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    return out[:, :, padding : padding + h, padding : padding + w]


def cnn_loss_and_grad(
    params: dict[str, Any], x: np.ndarray, y: np.ndarray, arch: SimpleCNN
) -> tuple[float, dict[str, Any]]:
    """Mean cross-entropy of the Simple CNN (`simple_cnn.inference`) and its exact gradient.

    Args:
        x: (B, C, H, W) images; y: (B,) integer labels; arch: the network's shapes (strides).

    Returns:
        (loss, grads) with grads a tree like params (float64).
    """
    x = np.asarray(x, np.float64)
    h, convs = x, []
    for name, s in zip(("conv1", "conv2"), arch.strides, strict=True):
        w = np.asarray(params[name]["W"], np.float64)
        cols = im2col(h, 3, 3, (s, s), (1, 1))  # (B, H'*W', C*9)
        z = cols @ w.reshape(len(w), -1).T + params[name]["b"]  # (B, H'*W', O)
        ho = (h.shape[2] + 2 - 3) // s + 1
        convs.append((h.shape, cols, z > 0, s))
        h = np.maximum(z, 0).transpose(0, 2, 1).reshape(len(h), len(w), ho, -1)
    conv_shape = h.shape
    flat = h.reshape(len(h), -1)
    z1 = flat @ params["fc1"]["W"] + params["fc1"]["b"]
    a1 = np.maximum(z1, 0)
    out = a1 @ params["fc2"]["W"] + params["fc2"]["b"]
    value, d = _loss_head(out, y, "xent")
    g: dict[str, Any] = {"fc2": {"W": a1.T @ d, "b": d.sum(axis=0)}}
    d = (d @ np.asarray(params["fc2"]["W"], np.float64).T) * (z1 > 0)
    g["fc1"] = {"W": flat.T @ d, "b": d.sum(axis=0)}
    d = (d @ np.asarray(params["fc1"]["W"], np.float64).T).reshape(conv_shape)
    for name, (in_shape, cols, mask, s) in zip(("conv2", "conv1"), reversed(convs), strict=True):
        w = np.asarray(params[name]["W"], np.float64)
        dz = d.reshape(d.shape[0], d.shape[1], -1).transpose(0, 2, 1) * mask  # (B, H'W', O)
        dz2 = dz.reshape(-1, dz.shape[-1])
        g[name] = {
            "W": (dz2.T @ cols.reshape(len(dz2), -1)).reshape(w.shape),
            "b": dz2.sum(axis=0),
        }
        if name == "conv1":
            break  # the images need no gradient
        d = col2im(dz @ w.reshape(len(w), -1), in_shape, 3, s, 1)
    return value, g


class SGDResult(dict):
    """dict with params (float32 tree), steps, train_s and the per-step loss history."""


def sgd(
    params: dict[str, Any],
    loss_and_grad: Callable[[dict[str, Any], np.ndarray, np.ndarray], tuple[float, Any]],
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    steps: int,
    lr: float,
    momentum: float = 0.9,
    callback: Callable[[int, dict[str, Any]], bool] | None = None,
) -> SGDResult:
    """Minibatch SGD with (heavy-ball) momentum on exact gradients.

    Args:
        params: initial tree of float32 arrays (not modified).
        loss_and_grad: (params, x, y) -> (loss, grads tree).
        batches: yields (x, y) minibatches, at least `steps` of them.
        callback: called after each step with (step, params); returning True stops early.

    Returns:
        SGDResult(params=..., steps=..., train_s=..., losses=[...]).
    """
    leaves, _, structure = flatten(params)
    theta = [np.array(v, np.float64) for v in leaves]
    velocity = [np.zeros_like(v) for v in theta]
    losses = []
    start = time.perf_counter()
    done = 0
    for step in range(steps):
        x, y = next(batches)
        current = unflatten(structure, theta)
        value, grads = loss_and_grad(current, x, y)
        losses.append(value)
        for v, t, g in zip(velocity, theta, flatten(grads)[0], strict=True):
            v *= momentum
            v -= lr * g
            t += v
        done = step + 1
        if callback is not None and callback(done, unflatten(structure, theta)):
            break
    out = unflatten(structure, [t.astype(np.float32) for t in theta])
    return SGDResult(params=out, steps=done, train_s=time.perf_counter() - start, losses=losses)
