"""Fetching a data file once: download, verify, write atomically, cache.

Standard library only (``urllib``), so downloads need no extra package.
:func:`fetch` is the one entry point; the data sets that use it (see
:mod:`cymlp._fashion_mnist`) supply the URL, the destination and the
checksum.

- **Where**: :func:`cache_dir` is ``$XDG_CACHE_HOME/cymlp`` when that
  variable is set, else ``~/.cache/cymlp`` (on every platform, as PyTorch's
  hub cache does); ``$CYMLP_DATA`` replaces it when set.
- **Verified**: a file counts as downloaded only when the SHA-256 of its
  *uncompressed* content matches the expected one (the gzip wrapper differs
  between mirrors: Debian's copies of Zalando's files were recompressed),
  and decompression stops at the expected size, so a hostile "gzip bomb"
  cannot fill the disk or memory.
- **Atomic**: bytes go to a temporary file in the destination's folder
  (:func:`cymlp._files.write_atomically`, cymlp's one writer), which
  replaces the destination only after the checksum matched; on any failure
  (server down, interrupted transfer, checksum mismatch, Ctrl-C) the
  temporary file is removed.  Nothing but the destination file is ever
  written or replaced, and only when it is a regular file or new.
- **Progress**: tqdm's bar when tqdm is installed, a plain line on stderr
  otherwise, nothing with ``progress=False``.
"""

import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from ._files import write_atomically

CHUNK_BYTES = 1 << 16
TIMEOUT_SECONDS = 30


class DownloadError(OSError):
    """A download that did not produce a verified file (nothing was saved)."""


def cache_dir(environ=None):
    """The folder cymlp downloads data sets into (created when first written).

    ``$CYMLP_DATA`` when set, else ``$XDG_CACHE_HOME/cymlp``, else
    ``~/.cache/cymlp``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CYMLP_DATA"):
        return Path(environ["CYMLP_DATA"]).expanduser()
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]).expanduser() / "cymlp"
    return Path.home() / ".cache" / "cymlp"


def fetch(url, dest, *, sha256, size, progress=True, timeout=TIMEOUT_SECONDS):
    """Download ``url`` to ``dest`` unless it is there; return ``dest``.

    Parameters
    ----------
    url : str
        Where the gzipped file is (``http``, ``https`` or ``file``).
    dest : pathlib.Path
        The file to create; its folder is created if needed.
    sha256 : str
        Hex SHA-256 of the file's uncompressed content.
    size : int
        Length in bytes of the uncompressed content.
    progress : bool, default True
        Show progress on stderr (tqdm's bar when tqdm is installed).
    timeout : float, default 30
        Seconds to wait for the connection and for each read.

    Raises
    ------
    DownloadError
        If the server cannot be reached, answers with an error, the transfer
        stops early or the content does not match ``sha256``/``size``.  The
        message names the URL; nothing is left on disk.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # cymlp's one writer: only a regular (or new) file is ever replaced, the temporary file is
    # removed on any failure, and the checksum is checked before the rename
    write_atomically(dest, lambda temp: _download(url, temp, progress, timeout, dest.name),
                     verify=lambda temp_name: _verify(temp_name, url, sha256, size))
    return dest


def _download(url, out, progress, timeout, label):
    """Stream ``url`` into the open file ``out``."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (OSError, ValueError, http.client.HTTPException) as error:   # URLError is an OSError
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with _Progress(label, total, progress) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, ValueError, http.client.HTTPException) as error:  # IncompleteRead, timeouts
                    raise DownloadError(f"{url}: the transfer stopped after {received:,} bytes "
                                        f"({type(error).__name__}: {error})") from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DownloadError(f"{url}: the transfer stopped after {received:,} of {total:,} bytes")


def _verify(path, url, sha256, size):
    """Check the uncompressed content of ``path``, reading at most ``size`` + 1 bytes of it."""
    digest = hashlib.sha256()
    seen = 0
    try:
        with gzip.open(path, "rb") as content:
            while seen <= size:
                chunk = content.read(min(CHUNK_BYTES * 16, size + 1 - seen))
                if not chunk:
                    break
                digest.update(chunk)
                seen += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise DownloadError(f"{url}: not a valid gzip file ({error}); nothing was saved") from None
    if seen != size or digest.hexdigest() != sha256:
        found = f"{seen:,} bytes" if seen <= size else f"more than {size:,} bytes"
        raise DownloadError(f"{url}: checksum mismatch: expected {size:,} bytes with SHA-256 {sha256}, "
                            f"got {found} with SHA-256 {digest.hexdigest()}; nothing was saved")


class _Progress:
    """tqdm's bar, a plain stderr line, or nothing."""

    def __init__(self, label, total, enabled):
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self.bar = None
        self.last_print = 0.0

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            from tqdm.auto import tqdm
        except ImportError:
            size = f" ({self.total / 1e6:.1f} MB)" if self.total else ""
            print(f"cymlp: downloading {self.label}{size}", file=sys.stderr, flush=True)
        else:
            self.bar = tqdm(total=self.total, desc=f"cymlp: {self.label}", unit="B", unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, leave=True)
        return self

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and sys.stderr.isatty() and time.monotonic() - self.last_print > 0.2:
            self.last_print = time.monotonic()
            of = f" / {self.total / 1e6:.1f}" if self.total else ""
            print(f"\r  {self.done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            end = "\r" if sys.stderr.isatty() else ""
            print(f"{end}  {self.label}: {self.done / 1e6:.1f} MB received", file=sys.stderr, flush=True)
        return False
