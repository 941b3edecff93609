""".npz archives read without trusting them: names, .npy headers and sizes before any data.

`np.load` allocates what an array header declares before it reads a byte of data, and tries
pickle on anything that is not a ZIP archive; a hostile or damaged file then costs gigabytes or
gives NumPy's "allow_pickle" advice. `NpzReader` lists the members from the ZIP directory, reads
each .npy header on its own, and checks the declared size against the member's recorded size,
the file's size and a bound on the compression ratio, so a caller can also check names, shapes
and dtypes against what it expects before any array is allocated.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._files import file_kind

__all__ = ["NpzError", "Header", "NpzReader", "named", "ZIP_MAGIC", "MAX_RATIO"]

#: The first bytes of every ZIP archive `np.savez` writes.
ZIP_MAGIC = b"PK\x03\x04"
#: Most bytes a compressed member may expand to per compressed byte. Real arrays compress far
#: less (MNIST's uint8 images about 5:1); a deflate bomb reaches 1000:1.
MAX_RATIO = 100
_SLACK = 1 << 16  # a small member may compress better than MAX_RATIO (all-zero labels)
_MAX_HEADER = 1 << 16  # bytes of one .npy header's dictionary
_CHUNK = 1 << 24  # bytes decompressed at a time

# What zipfile raises for damaged bytes: a flipped flag bit reads as "encrypted" (RuntimeError)
# or as an unknown compression method (NotImplementedError).
_UNREADABLE = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


class NpzError(ValueError):
    """A problem with an .npz archive; the message says what, `named` adds whose file."""


def named(who: str, exc: Exception) -> str:
    """`who` (a quoted path, "--data 'x'") followed by the problem `exc` describes."""
    text = str(exc)
    verb = text.startswith(("is ", "has ", "lacks ", "holds ", "does "))
    return f"{who}{' ' if verb else ': '}{text}"


@dataclass(frozen=True)
class Header:
    """One member's .npy header, checked against the archive.

    Attributes:
        shape: the array's shape.
        dtype: its dtype (never an object dtype).
        fortran_order: whether the data is stored column-major.
        offset: bytes of the .npy header before the data.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """e.g. "float32 of shape (3, 2)"."""
        return f"{self.dtype} of shape {self.shape}"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class NpzReader:
    """An open .npz archive (a context manager); nothing but the ZIP directory is read on open.

    Args:
        path: the file.
        label: what the file should be, for messages ("an eggroll_np checkpoint").
        max_ratio: bound on a compressed member's uncompressed / compressed size.

    Raises:
        FileNotFoundError: no such file.
        NpzError: not a regular file, not starting with a ZIP header (another format, or
            bytes prepended), an unreadable ZIP directory, a member that is not a .npy array or
            is named twice.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        label: str = "an .npz archive",
        max_ratio: int = MAX_RATIO,
    ) -> None:
        self.path = os.fspath(path)
        self.max_ratio = max_ratio
        st = os.stat(self.path)  # FileNotFoundError as it is; a symlink to a file is fine
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise NpzError(f"is a {file_kind(st.st_mode)}, not {label}")
        self._size = st.st_size
        self._fh = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        try:
            head = self._fh.read(len(ZIP_MAGIC))
            if head != ZIP_MAGIC:
                if not head:
                    raise NpzError(f"is empty (not {label})")
                raise NpzError(
                    f"does not start with a ZIP header: it is not {label}, or bytes were added "
                    "in front of one"
                )
            self._fh.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._fh)
                infos = self._zip.infolist()
            except _UNREADABLE as exc:
                raise NpzError(f"is not readable as {label}: {_reason(exc)}") from None
            self._infos: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise NpzError(f"holds {info.filename!r}, which is not a .npy array")
                name = info.filename[: -len(".npy")]
                if name in self._infos:
                    raise NpzError(f"holds {name!r} twice")
                self._infos[name] = info
            self._headers: dict[str, Header] = {}
        except BaseException:
            self._fh.close()
            raise

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays' names (members without ".npy"), in archive order."""
        return tuple(self._infos)

    def header(self, name: str) -> Header:
        """The header of array `name`, read on its own (no data), its declared size checked.

        Raises:
            KeyError: no such member.
            NpzError: a header that is not .npy, an object dtype (pickle), or a declared size that
                the member, the file or MAX_RATIO rules out.
        """
        if name in self._headers:
            return self._headers[name]
        info = self._infos[name]
        try:
            with self._zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    read = np.lib.format.read_array_header_1_0
                elif version == (2, 0):
                    read = np.lib.format.read_array_header_2_0
                else:
                    raise NpzError(f"'{name}' has .npy format {version}, which is not read here")
                shape, fortran_order, dtype = read(fh, max_header_size=_MAX_HEADER)
                offset = fh.tell()
        except NpzError:
            raise
        except _UNREADABLE as exc:
            raise NpzError(f"is damaged: '{name}': {_reason(exc)}") from None
        if dtype.hasobject:
            raise NpzError(f"'{name}' holds Python objects (pickle), which are never loaded")
        header = Header(tuple(int(n) for n in shape), dtype, bool(fortran_order), offset)
        if info.file_size != offset + header.nbytes:
            raise NpzError(
                f"is damaged: '{name}' declares {header.describe()} ({header.nbytes} bytes) but "
                f"its member holds {info.file_size - offset}"
            )
        if info.compress_size > self._size:
            raise NpzError(f"is damaged: '{name}' is larger than the file (truncated?)")
        if (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > self.max_ratio * info.compress_size + _SLACK
        ):
            raise NpzError(
                f"'{name}' expands {info.compress_size} compressed bytes to {info.file_size}, "
                f"more than {self.max_ratio}:1; no real data compresses so well (refused "
                "before decompressing)"
            )
        self._headers[name] = header
        return header

    def read(self, name: str) -> np.ndarray:
        """Array `name`: its header checked first (`header`), then exactly its data, in chunks
        (memory is the array plus one chunk), the member's CRC verified.

        Raises:
            KeyError: no such member.
            NpzError: see `header`; data that is short, long or fails its CRC.
        """
        h = self.header(name)
        out = np.empty(h.shape, h.dtype, order="F" if h.fortran_order else "C")
        flat = out.T if h.fortran_order else out  # C-contiguous view of the stored order
        view = memoryview(flat.reshape(-1)).cast("B") if h.nbytes else memoryview(b"")
        try:
            with self._zip.open(self._infos[name]) as fh:
                fh.read(h.offset)
                pos = 0
                while pos < h.nbytes:
                    part = fh.read(min(_CHUNK, h.nbytes - pos))
                    if not part:
                        raise NpzError(f"is damaged: '{name}' has fewer bytes than it declares")
                    view[pos : pos + len(part)] = part
                    pos += len(part)
                if fh.read(1):  # also makes zipfile check the CRC at the member's end
                    raise NpzError(f"is damaged: '{name}' has more bytes than it declares")
        except NpzError:
            raise
        except _UNREADABLE as exc:
            raise NpzError(f"is damaged: '{name}': {_reason(exc)}") from None
        return out

    def close(self) -> None:
        """Close the file."""
        self._zip.close()
        self._fh.close()

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
