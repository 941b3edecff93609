"""The Simple CNN (Conv2d -> Conv2d -> Linear -> Linear): parameters, inference, population forward.

The architecture of eggroll-trainer's Simple CNN benchmark, sized by the input: two 3x3 convs
with padding 1 and a stride each (ReLU; a stride of 2 does the downsampling a pooling layer
would), a hidden linear layer (ReLU) and the class logits. Conv
kernels are low-rank leaves through `lowrank_choices` (their matrix view (O, C*9)); the linear
layers are 2-D leaves, low-rank by default; biases full-rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import namespace_of
from ..conv import conv2d_inference, conv_output_size

__all__ = ["SimpleCNN", "DIGITS_CNN", "MNIST_CNN", "init_params", "lowrank_choices", "inference",
           "population_forward"]  # fmt: skip


@dataclass(frozen=True)
class SimpleCNN:
    """The Simple CNN's shapes: input (C, H, W), conv channels and strides, hidden, classes."""

    in_shape: tuple[int, int, int] = (1, 28, 28)
    channels: tuple[int, int] = (8, 16)
    hidden: int = 128
    classes: int = 10
    strides: tuple[int, int] = (2, 2)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, H, W) after the two convs (the input of the flatten)."""
        _, h, w = self.in_shape
        for s in self.strides:
            h, w = conv_output_size(h, 3, s, 1), conv_output_size(w, 3, s, 1)
        return self.channels[1], h, w

    @property
    def features(self) -> int:
        """Inputs of the hidden linear layer."""
        return int(np.prod(self.feature_shape))


#: scikit-learn's digits (1x8x8), 8 -> 8 -> 4, 16 x 4 x 4 = 256 features.
DIGITS_CNN = SimpleCNN(in_shape=(1, 8, 8), channels=(8, 16), hidden=64, strides=(1, 2))
#: MNIST (1x28x28), 28 -> 14 -> 7, 16 x 7 x 7 = 784 features.
MNIST_CNN = SimpleCNN()


def init_params(arch: SimpleCNN, seed: int = 0, dtype: Any = np.float32) -> dict[str, Any]:
    """He-initialised parameters {"conv1": {"W", "b"}, "conv2": ..., "fc1": ..., "fc2": ...}."""
    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)

    c_in = arch.in_shape[0]
    c1, c2 = arch.channels
    f, hid, cls = arch.features, arch.hidden, arch.classes
    return {
        "conv1": {"W": he((c1, c_in, 3, 3), c_in * 9), "b": np.zeros(c1, dtype)},
        "conv2": {"W": he((c2, c1, 3, 3), c1 * 9), "b": np.zeros(c2, dtype)},
        "fc1": {"W": he((f, hid), f), "b": np.zeros(hid, dtype)},
        "fc2": {"W": he((hid, cls), hid), "b": np.zeros(cls, dtype)},
    }


def lowrank_choices() -> dict[str, str]:
    """init's `lowrank=` for the Simple CNN: conv kernels low-rank (fc weights are by default)."""
    return {"conv1/W": "lowrank", "conv2/W": "lowrank"}


def inference(params: dict[str, Any], x: Any, arch: SimpleCNN) -> Any:
    """Logits (B, classes) of images x (B, C, H, W) with the unperturbed parameters."""
    s1, s2 = arch.strides
    h = conv2d_inference(x, params["conv1"]["W"], params["conv1"]["b"], s1, 1, "relu")
    h = conv2d_inference(h, params["conv2"]["W"], params["conv2"]["b"], s2, 1, "relu")
    h = h.reshape(h.shape[0], -1) @ params["fc1"]["W"]
    h += params["fc1"]["b"]
    namespace_of(h).maximum(h, 0, out=h)
    out = h @ params["fc2"]["W"]
    out += params["fc2"]["b"]
    return out


def population_forward(pop: Any, x: Any, arch: SimpleCNN) -> Any:
    """Logits (N, B, classes) of every member on images x (B, C, H, W) shared or (N, B, C, H, W)."""
    s1, s2 = arch.strides
    h = pop.conv2d(x, "conv1/W", "conv1/b", s1, 1, "relu")
    h = pop.conv2d(h, "conv2/W", "conv2/b", s2, 1, "relu")
    h = pop.linear(h.reshape(h.shape[0], h.shape[1], -1), "fc1/W", "fc1/b", "relu")
    return pop.linear(h, "fc2/W", "fc2/b")
