"""Examples read from a file block by block, so that the file may be larger than memory.

What ``cymlp predict --input`` reads.  :func:`open_rows` recognises the format
by the file's first bytes (the name does not matter):

``.npy``
    NumPy's format (``numpy.save``), memory-mapped: a block is read from
    disk when it is used.  One example per row; examples of more than one
    dimension (images of shape (n, 28, 28)) are flattened row by row.
IDX
    The MNIST/Fashion-MNIST format (:func:`cymlp.datasets.read_idx`), plain or
    gzipped, read sequentially.  The first dimension counts the examples.
CSV
    Text, one example per line, numbers separated by commas (plain or
    gzipped, UTF-8, quoted numbers allowed).  Blank lines and lines starting
    with ``#`` are skipped; a first line with no number in it (column names)
    is a header and skipped too.

Inputs are converted as ``cymlp train`` converts its data sets: uint8 values
(IDX images, uint8 ``.npy``) are divided by 255, everything else is used as
it is.  A file is untrusted: it is opened only if it is a regular file (a
FIFO or device would block; :func:`cymlp._files.open_regular`), its header is checked against its size before
anything is read, and every problem (truncated data, a non-numeric field, a
row of another length, NaN) raises ``ValueError`` naming the file and the row.
"""

from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._files import open_regular
from ._typing import FloatArray, PathLike

_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
# IDX type code -> big-endian element type (as cymlp.datasets reads them)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_BROKEN_GZIP = (OSError, EOFError, zlib.error)


class Rows:
    """The examples of one file: ``n_features`` per row, ``n_rows`` (None until a CSV is read)."""

    format = ""

    def __init__(self, path: str, file: io.BufferedIOBase) -> None:
        self.path = path
        self.file = file
        self.n_rows: int | None = None
        self.n_features: int | None = None
        self.scale: float | None = None      # divide by this (255 for uint8 data)

    def blocks(self, rows: int, dtype: np.dtype[Any]) -> Iterator[FloatArray]:
        """C-contiguous blocks of at most ``rows`` rows, in ``dtype``, checked finite."""
        first = 0
        for raw in self._raw_blocks(rows):
            block = np.ascontiguousarray(raw.reshape(len(raw), -1), dtype=dtype)
            if self.scale is not None:
                block /= self.scale
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                row = first + int(np.argmax(bad))
                raise ValueError(f"{self.path}: row {row + 1:,} holds NaN or infinity (or a value too "
                                 f"large for {dtype.name}); clean or impute the data first")
            first += len(block)
            yield block

    def _raw_blocks(self, rows: int) -> Iterator[np.ndarray[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Rows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shape_check(path: str, shape: tuple[int, ...]) -> None:
    if len(shape) < 2:
        hint = (f" (a single example? save it as shape (1, {shape[0]}); one feature per example? "
                f"as shape ({shape[0]}, 1))" if len(shape) == 1 else "")
        raise ValueError(f"{path}: holds an array of shape {shape}; it needs one example per row, "
                         f"at least 2 dimensions{hint}")


class _NpyRows(Rows):
    format = "npy"

    def __init__(self, path: str, file: io.BufferedIOBase) -> None:
        super().__init__(path, file)
        try:
            version = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(file, max_header_size=10_000)
        except (ValueError, OSError, EOFError, SyntaxError, struct.error) as exc:
            raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None:
            raise ValueError(f"{path}: holds {dtype}; cymlp predicts from numbers (bool, integer or "
                             f"float)")
        _shape_check(path, shape)
        offset = file.tell()
        needed = math.prod(shape) * dtype.itemsize
        size = os.fstat(file.fileno()).st_size
        if size - offset != needed:
            raise ValueError(f"{path}: {'truncated' if size - offset < needed else 'trailing bytes'}: "
                             f"shape {shape} of {dtype} needs {needed:,} bytes after the header, the "
                             f"file has {size - offset:,}")
        self.n_rows = shape[0]
        self.n_features = math.prod(shape[1:])
        self.scale = 255.0 if dtype == np.uint8 else None
        self._array = None if needed == 0 else np.memmap(
            file, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)

    def _raw_blocks(self, rows: int) -> Iterator[np.ndarray[Any, Any]]:
        if self._array is None:
            return
        for start in range(0, self._array.shape[0], rows):
            yield self._array[start:start + rows]

    def close(self) -> None:
        self._array = None          # the memory map goes with the last reference
        super().close()


class _IdxRows(Rows):
    format = "idx"

    def __init__(self, path: str, file: io.BufferedIOBase, stream: io.BufferedIOBase) -> None:
        super().__init__(path, file)
        self.stream = stream        # the file itself, or its gzip decompressor
        try:
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or head[3] == 0:
                raise ValueError(f"{path}: not an IDX file (magic number 0x{head.hex()})")
            ndim = head[3]
            dims = stream.read(4 * ndim)
        except _BROKEN_GZIP as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from None
        if len(dims) < 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions)")
        shape = struct.unpack(f">{ndim}I", dims)
        _shape_check(path, shape)
        self.dtype = np.dtype(_IDX_DTYPES[head[2]])
        self.n_rows = shape[0]
        self.n_features = math.prod(shape[1:])
        self.scale = 255.0 if self.dtype == np.uint8 else None

    def _raw_blocks(self, rows: int) -> Iterator[np.ndarray[Any, Any]]:
        assert self.n_rows is not None and self.n_features is not None
        row_bytes = self.n_features * self.dtype.itemsize
        done = 0
        try:
            while done < self.n_rows:
                count = min(rows, self.n_rows - done)
                data = self.stream.read(count * row_bytes)
                if len(data) < count * row_bytes:
                    raise ValueError(f"{self.path}: truncated IDX data: the header promises "
                                     f"{self.n_rows:,} rows, the file ends in row "
                                     f"{done + len(data) // row_bytes + 1:,}")
                done += count
                yield np.frombuffer(data, dtype=self.dtype).reshape(count, self.n_features)
            if self.stream.read(1):
                raise ValueError(f"{self.path}: trailing bytes after the {self.n_rows:,} rows the IDX "
                                 f"header promises")
        except _BROKEN_GZIP as exc:
            raise ValueError(f"{self.path}: corrupt or truncated gzip stream ({exc})") from None


class _CsvRows(Rows):
    format = "csv"

    def __init__(self, path: str, file: io.BufferedIOBase, stream: io.BufferedIOBase) -> None:
        super().__init__(path, file)
        self.text = codecs.getreader("utf-8-sig")(stream)
        self.line_no = 0
        self._first = self._next_data_line()
        if self._first is not None and not any(_is_number(f) for f in self._first[1].split(",")):
            self._first = self._next_data_line()       # a header of column names
        if self._first is not None:
            self.n_features = len(self._first[1].split(","))

    def _next_data_line(self) -> tuple[int, str] | None:
        """The next line holding data, with its line number in the file."""
        try:
            for line in self.text:
                self.line_no += 1
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    return self.line_no, stripped
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: line {self.line_no + 1:,} is not UTF-8 text: not a CSV "
                             f"file (give a .npy, CSV or IDX file)") from None
        except _BROKEN_GZIP as exc:
            raise ValueError(f"{self.path}: corrupt or truncated gzip stream ({exc})") from None
        return None

    def _raw_blocks(self, rows: int) -> Iterator[np.ndarray[Any, Any]]:
        n_rows = 0
        line = self._first
        while line is not None:
            lines = [line]
            while len(lines) < rows and (line := self._next_data_line()) is not None:
                lines.append(line)
            yield self._parse(lines)
            n_rows += len(lines)
            line = self._next_data_line() if len(lines) == rows else None
        self.n_rows = n_rows

    def _parse(self, lines: list[tuple[int, str]]) -> np.ndarray[Any, Any]:
        try:
            block = np.loadtxt([text for _, text in lines], delimiter=",", dtype=np.float64, ndmin=2,
                               quotechar='"', comments=None)
            if block.shape[1] == self.n_features:
                return block
        except ValueError:
            pass
        for line_no, text in lines:          # the line to blame, by its number in the file
            fields = text.split(",")
            bad = [i for i, field in enumerate(fields) if not _is_number(field)]
            if bad:
                raise ValueError(f"{self.path}: line {line_no:,}, column {bad[0] + 1}: "
                                 f"{fields[bad[0]].strip()[:40]!r} is not a number; the CSV must hold "
                                 f"numbers only, one example per line")
            if len(fields) != self.n_features:
                raise ValueError(f"{self.path}: line {line_no:,} has {len(fields)} values, the first "
                                 f"row {self.n_features}; every row needs one value per feature")
        raise ValueError(f"{self.path}: lines {lines[0][0]:,} to {lines[-1][0]:,} are not numbers "
                         f"separated by commas")


def _is_number(field: str) -> bool:
    try:
        float(field.strip().strip('"'))
    except ValueError:
        return False
    return True


def open_rows(path: PathLike) -> Rows:
    """Open a file of examples (see the module docstring); close it with ``with`` or ``close()``."""
    name = os.fspath(path)
    file: io.BufferedIOBase = open_regular(name, "--input")    # a FIFO or device: OSError, never a hang
    try:
        head = file.read(8)
        file.seek(0)
        if head.startswith(_NPY_MAGIC):
            return _NpyRows(name, file)
        if head.startswith(_ZIP_MAGIC):
            raise ValueError(f"{name}: a zip archive (.npz?); give one array: save it with numpy.save "
                             f"(a .npy file), or evaluate an .npz data set with --dataset")
        stream: io.BufferedIOBase = file
        if head.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=file, mode="rb")
            try:
                head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
            except _BROKEN_GZIP as exc:
                raise ValueError(f"{name}: corrupt or truncated gzip stream ({exc})") from None
        if head[:2] == b"\0\0" and len(head) >= 4 and head[2] in _IDX_DTYPES:
            return _IdxRows(name, file, stream)
        return _CsvRows(name, file, stream)
    except BaseException:
        file.close()
        raise
