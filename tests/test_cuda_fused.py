"""The fused linear layer's kernels (csrc/cuda/fused.cu), run on the CPU by the host emulator.

fused.cu makes a layer's factors A, B and its bias noise from Philox inside the projection and
epilogue kernels. The emulator checks, case by case, that this gives the same bits as the same
kernels reading the factors that noise.cu's separate pass wrote, and as layers.cu's plain
epilogue; here the generated output is compared bit for bit with NumPy: the contract's values
(`noise.normals_batch`) summed in the kernels' documented order.
"""

from __future__ import annotations

import numpy as np
import pytest

from eggroll_np import noise

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import emulator as emu
except ImportError:
    import emulator as emu  # type: ignore[no-redef]

pytestmark = pytest.mark.skipif(emu.skip_reason() is not None, reason=str(emu.skip_reason()))

# (N, rows, m, n, r, per_member, bias: 0 none / 1 frozen / 2 noisy, act, transpose, tiny grid)
CASES = [
    (6, 1, 37, 20, 1, False, 2, 1, False, False),  # rl-like: one row per member
    (8, 5, 16, 12, 1, False, 2, 0, False, True),  # sup-like: a shared batch; one block
    (6, 3, 40, 13, 2, True, 2, 0, False, False),
    (4, 2, 33, 8, 3, False, 1, 1, True, False),  # transposed: A and B swap, offset m*r on the left
    (10, 2, 9, 17, 4, True, 0, 1, False, True),
    (6, 3, 70, 9, 8, False, 2, 4, False, False),  # the widest rank of the fused kernels
    (4, 2, 11, 6, 5, True, 2, 2, True, False),
    (300, 1, 24, 10, 1, False, 2, 3, False, False),  # more warps than the emulated grid holds
    (2, 4, 130, 70, 1, True, 1, 0, False, False),
]


def _oracle_projection(x, values, off, m, r):
    """xa of fused_kernels.cuh's project_kernel in float32: lane l sums the values of Philox
    blocks l, l + 32, ... in ascending order, then warp_sum's xor butterfly adds the lanes."""
    S, rows = values.shape[0], x.shape[1]
    acc = np.zeros((S, rows, 32, r), np.float32)
    first, last = off // 4, (off + m * r + 3) // 4
    for lane in range(32):
        for b in range(first + lane, last, 32):
            for u in range(4):
                v = 4 * b + u
                if off <= v < off + m * r:
                    row, q = divmod(v - off, r)
                    acc[:, :, lane, q] += x[:, :, row] * values[:, None, v - off]
    for s in (16, 8, 4, 2, 1):
        acc = acc + acc[:, :, np.arange(32) ^ s]
    return acc[:, :, 0, :]


def _oracle_output(src, xa, right, coef, bias, bias_coef, bias_noise):
    """The epilogue in float32: s = sum_q xa_q * right_q ascending, h = src + coef * s, then the
    bias and coef_b * its noise (the activation is applied by the caller)."""
    s = np.zeros(np.broadcast_shapes(src.shape, (xa.shape[0], 1, right.shape[1])), np.float32)
    for q in range(xa.shape[2]):
        s += xa[:, :, q : q + 1] * right[:, None, :, q]
    h = src + coef[:, None, None] * s
    if bias is not None:
        h = h + bias
    if bias_noise is not None:
        h = h + bias_coef[:, None, None] * bias_noise[:, None, :]
    return h


def test_fused_kernels_match_the_separate_pass_and_numpy_bit_for_bit(tmp_path):
    from eggroll_np import epilogue

    exe = emu.build(tmp_path)
    rng = np.random.default_rng(11)
    cases = emu.Cases(tmp_path)
    seed, epoch, leaf_w, leaf_b = 0xDEADBEEF12345, 3, 4, 5
    wants = {}
    for j, (N, rows, m, n, r, per_member, bias_kind, act, transpose, tiny) in enumerate(CASES):
        name = f"f{j}"
        member_keys = (np.arange(N) // 2 * 7 + 3).astype(np.uint32)  # antithetic pairs
        ukeys, local = np.unique(member_keys, return_inverse=True)
        ukeys, local = ukeys.astype(np.uint32), local.astype(np.uint32)
        # W is (m_w, n_w); x @ W.T reads B on the left (offset m_w * r) and A on the right
        lo, ro = (n * r, 0) if transpose else (0, m * r)
        f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
        x, src = f(N if per_member else 1, rows, m), f(N if per_member else 1, rows, n)
        coef, bias, bcoef = f(N), f(n), f(N)
        cases.put(name, x=x, src=src, ukeys=ukeys, local=local, coef=coef, bias=bias, bcoef=bcoef)
        cases.lines.append(
            f"fused {name} {seed} {epoch} {leaf_w} {leaf_b} {int(per_member)} {int(bias_kind > 0)} "
            f"{int(bias_kind == 2)} {act} {N} {rows} {m} {n} {r} {ukeys.size} {lo} {ro} {int(tiny)}"
        )
        # the contract's values of every member's key
        left = noise.normals_batch(seed, leaf_w, member_keys, epoch, m * r, lo)
        right = noise.normals_batch(seed, leaf_w, member_keys, epoch, n * r, ro).reshape(N, n, r)
        bn = noise.normals_batch(seed, leaf_b, member_keys, epoch, n, 0)
        slot = np.arange(N) if per_member else np.unique(local, return_index=True)[1]
        xa = _oracle_projection(x if per_member else np.broadcast_to(x, (slot.size, rows, m)),
                                left[slot], lo, m, r)  # fmt: skip
        rows_of = np.arange(N) if per_member else local
        h = _oracle_output(src, xa[rows_of], right, coef, bias if bias_kind else None, bcoef,
                           bn if bias_kind == 2 else None)  # fmt: skip
        wants[name] = (xa, h, act, (N, rows, n))
    out = cases.run(exe)
    assert "FAIL" not in out, out
    assert out.count("ok   fused") == 2 * len(CASES)
    for name, (xa, h, act, shape) in wants.items():
        np.testing.assert_array_equal(cases.get(name, "xa", np.float32, xa.shape), xa)
        got = cases.get(name, "out", np.float32, shape)
        if act in (0, 1):  # plain float32 arithmetic: the same bits
            np.testing.assert_array_equal(got, epilogue.apply_activation(h, act), err_msg=name)
        else:  # the device's tanhf/expf against NumPy's: within float32 rounding
            want = epilogue.apply_activation(h.astype(np.float64), act)
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6, err_msg=name)
