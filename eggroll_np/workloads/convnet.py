"""The Simple CNN (Conv2d -> Conv2d -> Linear -> Linear): parameters, plain and population forwards.

Layout NCHW, cross-correlation with torch.nn.functional.conv2d semantics; ReLU after every layer
but the last. The second convolution has stride 2 (the downsampling a pooling layer would do);
images wider than 16 pixels (MNIST's 28x28) use stride 2 in the first one too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..population import Population

__all__ = [
    "KERNEL",
    "init_cnn",
    "strides_for",
    "conv_output_side",
    "im2col",
    "col2im",
    "conv2d",
    "cnn_forward",
    "cnn_population_forward",
    "lowrank_kernels",
]

KERNEL = 3  # 3x3 kernels, padding 1


def strides_for(side: int) -> tuple[int, int]:
    """Strides of (conv1, conv2) for square images of `side` pixels."""
    return (1, 2) if side <= 16 else (2, 2)


def conv_output_side(side: int, stride: int, kernel: int = KERNEL, padding: int = 1) -> int:
    """Output height/width of a convolution on a `side`-pixel input."""
    return (side + 2 * padding - kernel) // stride + 1


def init_cnn(
    image_shape: Sequence[int],
    channels: Sequence[int],
    hidden: int,
    classes: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Float32 params {"conv1", "conv2", "fc1", "fc2"}, each {"W", "b"}; He-normal W, zero b.

    Args:
        image_shape: (C, H, W) of one image, H == W.
        channels: output channels of (conv1, conv2).
        hidden: width of fc1.
        classes: outputs of fc2.

    Conv kernels are (O, C, 3, 3); dense W are (inputs, outputs).
    """
    c, side, _ = (int(s) for s in image_shape)
    s1, s2 = strides_for(side)
    out_side = conv_output_side(conv_output_side(side, s1), s2)
    c1, c2 = (int(x) for x in channels)

    def normal(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    flat = c2 * out_side * out_side
    return {
        "conv1": {"W": normal((c1, c, KERNEL, KERNEL), c * KERNEL**2), "b": np.zeros(c1, "f4")},
        "conv2": {"W": normal((c2, c1, KERNEL, KERNEL), c1 * KERNEL**2), "b": np.zeros(c2, "f4")},
        "fc1": {"W": normal((flat, hidden), flat), "b": np.zeros(hidden, "f4")},
        "fc2": {"W": normal((hidden, classes), hidden) / 2, "b": np.zeros(classes, "f4")},
    }


def lowrank_kernels(params: dict[str, Any]) -> dict[str, bool]:
    """The `lowrank=` choice of `eggroll_np.init` that makes both conv kernels low-rank.

    Their noise then uses the (O, C*kh*kw) matrix view (DESIGN.md, noise contract); the dense W
    are low-rank by default and the biases full-rank.
    """
    return {"conv1/W": True, "conv2/W": True}


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Patches of x (B, C, H, W) -> (B, H', W', C * kernel * kernel), C-major like the kernels."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (B, C, H', W', k, k)
    ho, wo = win.shape[2], win.shape[3]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b, ho, wo, c * kernel * kernel)


def col2im(
    cols: np.ndarray, x_shape: Sequence[int], kernel: int, stride: int, padding: int
) -> np.ndarray:
    """Adjoint of `im2col`: patch gradients (B, H', W', C*k*k) summed back into (B, C, H, W)."""
    b, c, h, w = x_shape
    ho, wo = cols.shape[1], cols.shape[2]
    cols = cols.reshape(b, ho, wo, c, kernel, kernel)
    out = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += cols[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    return out[:, :, padding : padding + h, padding : padding + w]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Plain convolution: x (B, C, H, W), w (O, C, k, k), b (O,) -> (B, O, H', W')."""
    cols = im2col(x, w.shape[2], stride, padding)
    out = cols @ w.reshape(w.shape[0], -1).T + b  # (B, H', W', O)
    return out.transpose(0, 3, 1, 2)


def cnn_forward(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Logits (B, classes) of images x (B, C, H, W) with plain NumPy."""
    s1, s2 = strides_for(x.shape[-1])
    h = np.maximum(conv2d(x, params["conv1"]["W"], params["conv1"]["b"], s1, 1), 0)
    h = np.maximum(conv2d(h, params["conv2"]["W"], params["conv2"]["b"], s2, 1), 0)
    h = h.reshape(len(h), -1)
    h = np.maximum(h @ params["fc1"]["W"] + params["fc1"]["b"], 0)
    return h @ params["fc2"]["W"] + params["fc2"]["b"]


def cnn_population_forward(pop: Population, x: np.ndarray) -> np.ndarray:
    """Every member's logits (N, B, classes) for shared images x (B, C, H, W).

    conv1 sees the shared images, so its patches and base convolution are computed once and each
    member adds only its low-rank correction; later layers take per-member inputs.
    """
    s1, s2 = strides_for(x.shape[-1])
    h = np.maximum(pop.conv2d(x, "conv1/W", "conv1/b", stride=s1, padding=1), 0)
    h = np.maximum(pop.conv2d(h, "conv2/W", "conv2/b", stride=s2, padding=1), 0)
    h = h.reshape(h.shape[0], h.shape[1], -1)  # (N, B, C*H*W), the same order as cnn_forward
    h = pop.linear(h, "fc1/W", "fc1/b", activation="relu")
    return pop.linear(h, "fc2/W", "fc2/b")
