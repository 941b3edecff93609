"""Population conv2d: NCHW cross-correlation (torch conv2d semantics) through im2col patches.

A low-rank kernel W (O, C, kh, kw) is perturbed on its matrix view (O, D), D = C*kh*kw:
eps_k = A_k @ B_k.T with A_k (O, r) and B_k (D, r). On im2col patches P (rows, D) member i's
output is P @ W.T + coef_i * (P @ B_k) @ A_k.T: the patches and the base convolution of a
shared input are computed once, each key's projection P @ B_k is one GEMM for all keys, and a
fused pass (`conv_epilogue`) writes every member's output with its correction, bias and
activation. A low-rank kernel never becomes N dense kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch, epilogue
from .backend import namespace_of
from .epilogue import LeafNoise, activation_code, apply_activation
from .layers import as_input, check_bias, check_pair

__all__ = [
    "conv2d",
    "conv_output_size",
    "im2col",
    "conv2d_inference",
    "conv_epilogue",
    "conv_epilogue_reference",
]

# Values of im2col patches per chunk of a per-member input (or of inference's images). On the
# host: the patches of a chunk are still in cache when its projection reads them again. On a GPU
# a chunk saves no cache misses and costs ten-odd launches and their Python, so chunks there only
# bound the patches' memory (256 MiB of float32).
_PATCH_VALUES = 1 << 21
_DEVICE_PATCH_VALUES = 1 << 26
_CHUNK_VALUES = 1 << 20


def _patch_values(xp: Any) -> int:
    """Patch values per chunk for arrays of namespace xp (see above)."""
    return _PATCH_VALUES if xp is np else _DEVICE_PATCH_VALUES


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of one spatial axis: (size + 2 pad - k) // stride + 1."""
    return (size + 2 * pad - k) // stride + 1


def im2col(x: Any, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int]) -> Any:
    """Patches of x `(B, C, H, W)` as `(B, H'*W', C*kh*kw)`, columns in (c, i, j) order.

    Column order matches the kernel's matrix view W.reshape(O, C*kh*kw), so conv = P @ W.T.
    """
    xp = namespace_of(x)
    Bt, C, H, Wd = x.shape
    (sh, sw), (ph, pw) = stride, padding
    if ph or pw:
        xpad = xp.zeros((Bt, C, H + 2 * ph, Wd + 2 * pw), dtype=x.dtype)
        xpad[:, :, ph : ph + H, pw : pw + Wd] = x
    else:
        xpad = xp.ascontiguousarray(x)
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(Wd, kw, sw, pw)
    s = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad,
        shape=(Bt, Ho, Wo, C, kh, kw),
        strides=(s[0], s[2] * sh, s[3] * sw, s[1], s[2], s[3]),
    )
    return windows.reshape(Bt, Ho * Wo, C * kh * kw)  # one copy


def conv2d_inference(
    x: Any, W: Any, b: Any = None, stride: Any = 1, padding: Any = 0, activation: str | None = None
) -> Any:
    """Plain (unperturbed) conv2d of x (B, C, H, W) -> (B, O, H', W'), same im2col + GEMM as
    the population path (images in chunks): what pure inference of a CNN costs."""
    code = activation_code(activation)
    st, pd = check_pair("stride", stride, 1), check_pair("padding", padding, 0)
    xp = namespace_of(W)
    Co, C, kh, kw = W.shape
    Bt, _, H, Wd = x.shape
    Ho, Wo = conv_output_size(H, kh, st[0], pd[0]), conv_output_size(Wd, kw, st[1], pd[1])
    P, D = Ho * Wo, C * kh * kw
    out = xp.empty((Bt, Co, Ho, Wo), dtype=W.dtype)
    o3 = out.reshape(Bt, Co, P)
    step = max(1, _patch_values(xp) // max(1, P * D))
    Wmat = W.reshape(Co, D)
    for s in range(0, Bt, step):
        cols = im2col(x[s : s + step], kh, kw, st, pd)
        y = (cols.reshape(-1, D) @ Wmat.T).reshape(-1, P, Co).transpose(0, 2, 1)
        dst = o3[s : s + step]
        if b is not None:
            xp.add(y, b.reshape(-1, 1), out=dst)  # the transposing copy adds the bias
        else:
            dst[...] = y
        apply_activation(dst, code)  # on a chunk still in cache
    return out


def conv_epilogue(
    out: Any, src: Any, w: LeafNoise | None, v: Any, v_index: Any, b: LeafNoise | None, code: int
) -> Any:
    """One pass writing out (N, Bt, O, P):

        out[i, b, o, p] = act(src[i, b, o, p] + coef_i * sum_q A_k[o, q] v[v_index[i], b, q, p]
                              + bias_i[o]),  k = keys[i]

    src: (N or 1, Bt, O, P) view (any strides: a shared base, or a per-member GEMM output read
    transposed); v: (X, Bt, r, P) view of the projections P @ B_k (any strides); no correction
    when w is None or not low-rank. Bias as in `epilogue.epilogue`.
    """
    lowrank = w is not None and w.kind == "lowrank"
    members = epilogue.member_operands(w, b)
    a = w.A if lowrank else None
    v, v_index = (v, v_index.astype(namespace_of(out).uint32)) if lowrank else (None, None)
    arrays = [out, src, members[2], members[3], a, v]  # src and v may be strided views
    dispatch.select("conv_epilogue", arrays)(out, src, a, v, v_index, *members, code)
    return out


def conv_epilogue_reference(
    out: Any, src: Any, a: Any, v: Any, v_index: Any, keys: Any, coef: Any, bias: Any,
    bias_noise: Any, bias_coef: Any, act: int,
) -> Any:  # fmt: skip
    """The "conv_epilogue" operation in array code (any dtype, NumPy or CuPy): the reference of
    the compiled kernels, with their arguments (`conv_epilogue` describes them)."""
    xp = namespace_of(out)
    N, Bt, Co, P = out.shape
    out[...] = src
    if a is not None:
        step = max(1, _CHUNK_VALUES // max(1, Bt * Co * P))
        for s in range(0, N, step):
            sl = slice(s, s + step)
            t = coef[sl].reshape(-1, 1, 1) * a[keys[sl]]  # (c, Co, r)
            out[sl] += xp.matmul(t[:, None], v[v_index[sl]])  # (c, 1, Co, r) @ (c, Bt, r, P)
    if bias is not None:
        if bias_noise is None:
            out += bias.reshape(-1, 1)
        else:
            rows = bias + bias_coef.reshape(-1, 1) * bias_noise[keys]  # (N, Co)
            out += rows.reshape(N, 1, Co, 1)
    return apply_activation(out, act)


def conv2d(
    x: Any,
    w: LeafNoise,
    b: LeafNoise | None = None,
    stride: Any = 1,
    padding: Any = 0,
    activation: str | None = None,
) -> Any:
    """Every member's conv2d (torch.nn.functional.conv2d semantics, then the activation).

    Args:
        x: shared (B, C, H, W) or per-member (N, B, C, H, W) input, cast to w's dtype.
        w: a 4-D leaf (O, C, kh, kw): low-rank (matrix view (O, C*kh*kw)), full-rank or frozen.
        b: None or a 1-D leaf (O,) (full-rank or frozen).
        stride, padding: an int or a pair (stride >= 1, padding >= 0; zero padding).
        activation: None, "relu", "tanh", "sigmoid" or "gelu".

    Returns:
        (N, B, O, H', W') array in w's dtype and backend.
    """
    code = activation_code(activation)
    st, pd = check_pair("stride", stride, 1), check_pair("padding", padding, 0)
    W = w.theta
    if W.ndim != 4:
        raise ValueError(
            f"w: conv2d needs a 4-D leaf (O, C, kh, kw), '{w.name}' has shape {tuple(W.shape)}"
        )
    Co, C, kh, kw = W.shape
    x = as_input(x, W, w.name)
    N = w.size
    if x.ndim == 4:
        shared = True
    elif x.ndim == 5 and x.shape[0] == N:
        shared = False
    else:
        raise ValueError(
            f"x must have shape (B, C, H, W) or ({N}, B, C, H, W) for leaf '{w.name}', "
            f"got {tuple(x.shape)}"
        )
    Bt, Cx, H, Wd = x.shape[-4:]
    if Cx != C:
        raise ValueError(f"x has {Cx} channels but w '{w.name}' {tuple(W.shape)} expects {C}")
    Hp, Wp = H + 2 * pd[0], Wd + 2 * pd[1]
    if kh > Hp or kw > Wp:
        raise ValueError(
            f"w: kernel ({kh}, {kw}) of '{w.name}' is larger than the padded input ({Hp}, {Wp})"
        )
    if Bt * C * Hp * Wp * W.itemsize >= 2**63:  # beyond any address space: NumPy's own error
        raise ValueError(  # ("maximum allowed dimension exceeded") would not name padding
            f"padding {pd} makes the padded input {(Bt, C, Hp, Wp)}, too large for memory"
        )
    check_bias(b, Co, w)
    xp = namespace_of(W)
    Ho, Wo = conv_output_size(H, kh, st[0], pd[0]), conv_output_size(Wd, kw, st[1], pd[1])
    P, D = Ho * Wo, C * kh * kw
    Wmat = W.reshape(Co, D)
    out = xp.empty((N, Bt, Co, P), dtype=W.dtype)
    if shared:
        cols = im2col(x, kh, kw, st, pd).reshape(Bt * P, D)
        base = xp.ascontiguousarray((cols @ Wmat.T).reshape(Bt, P, Co).transpose(0, 2, 1))
        if w.kind == "lowrank":  # all keys' projections, one GEMM: (K*r, D) @ (D, Bt*P)
            K, _, r = w.B.shape
            v = (w.B.transpose(0, 2, 1).reshape(K * r, D) @ cols.T).reshape(K, r, Bt, P)
            conv_epilogue(out, base[None], w, v.transpose(0, 2, 1, 3), w.keys, b, code)
        elif w.kind == "full":  # dense kernels are the full-rank leaf's nature
            Wi = Wmat + w.coef.reshape(-1, 1, 1) * w.E[w.keys].reshape(N, Co, D)
            y = xp.matmul(cols, Wi.transpose(0, 2, 1)).reshape(N, Bt, P, Co)
            conv_epilogue(out, y.transpose(0, 1, 3, 2), None, None, None, b, code)
        else:
            conv_epilogue(out, base[None], None, None, None, b, code)
        return out.reshape(N, Bt, Co, Ho, Wo)
    per_member = Bt * P * D
    step = max(1, _patch_values(xp) // max(1, per_member))
    for s in range(0, N, step):  # members in chunks: their patches stay in cache
        sl = slice(s, min(N, s + step))
        c = sl.stop - sl.start
        cols = im2col(x[sl].reshape(c * Bt, C, H, Wd), kh, kw, st, pd).reshape(c, Bt * P, D)
        y = (cols.reshape(-1, D) @ Wmat.T).reshape(c, Bt * P, Co)
        ws = _member_slice(w, sl)
        bs = None if b is None else _member_slice(b, sl)
        src = y.reshape(c, Bt, P, Co).transpose(0, 1, 3, 2)
        if w.kind == "lowrank":
            v = xp.matmul(cols, w.B[ws.keys])  # (c, Bt*P, r): member i's patches @ B_k
            v = v.reshape(c, Bt, P, -1).transpose(0, 1, 3, 2)
            conv_epilogue(out[sl], src, ws, v, xp.arange(c), bs, code)
        elif w.kind == "full":
            E = ws.E[ws.keys].reshape(c, Co, D).transpose(0, 2, 1)
            y += ws.coef.reshape(-1, 1, 1) * xp.matmul(cols, E)
            conv_epilogue(out[sl], src, None, None, None, bs, code)
        else:
            conv_epilogue(out[sl], src, None, None, None, bs, code)
    return out.reshape(N, Bt, Co, Ho, Wo)


def _member_slice(leaf: LeafNoise, sl: slice) -> LeafNoise:
    """The members sl of a LeafNoise (keys and coefficients sliced; factors shared)."""
    coef = None if leaf.coef is None else leaf.coef[sl]
    return LeafNoise(leaf.name, leaf.theta, leaf.kind, leaf.keys[sl], coef, leaf.A, leaf.B, leaf.E)
