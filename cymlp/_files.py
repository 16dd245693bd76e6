"""Every file cymlp writes or reads goes through here: a write destroys nothing but its target,
a read never blocks.

Writing (:func:`write_atomically`; :func:`check_writable` is its first check,
for callers that want to fail before long work): the bytes go to
``PATH.cymlp-tmp-XXXXXXXX`` beside the target, are ``fsync``ed and renamed over
it.  Only a regular file is ever replaced.  A target that exists and is a
folder, a FIFO, a device or a socket, directly or through symlinks, is refused
before anything is written (and again just before the rename).  A symlink to
a regular file is written through (its target is replaced, the link stays), as
``open(path, "w")`` would write it; a dangling symlink creates the file it
points to, when that file's folder exists.

Reading (:func:`open_regular`): a path is checked to be a regular file (after
symlinks) before it is opened, and the open itself cannot block (a FIFO
swapped in between is caught by ``fstat`` on a non-blocking descriptor), so a
FIFO, a device or a folder given by mistake is an ``OSError`` at once, never a
hang.  Used by model files, ``cymlp train --dataset``/``--resume``, ``cymlp
predict``, IDX files and Dask shard files.

Used by ``Network.save``, ``Network.to_onnx``, ``History.to_json``,
``History.plot``, :func:`cymlp.datasets.write_idx`, the data set download cache
(:mod:`cymlp._download`) and the command line's ``--save``, ``--json``,
``--plot`` and ``cymlp bench --json/--plot``.
"""

import os
import stat

TEMP_INFIX = ".cymlp-tmp-"          # a write goes to PATH.cymlp-tmp-XXXXXXXX, then is renamed to PATH

_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode):
    return next((kind for test, kind in _NOT_REGULAR if test(mode)), "not a regular file")


def _where(path, target):
    path = os.fspath(path)
    return repr(path) + ("" if path == target else f" (-> {target!r})")


# ---------------------------------------------------------------- writing

def check_writable(path):
    """Refuse ``path`` if it exists (after symlinks) and is not a regular file; return its target.

    Parameters
    ----------
    path : str or os.PathLike
        The file about to be written.

    Returns
    -------
    str
        The file the write will replace or create (``path`` with its symlinks resolved).

    Raises
    ------
    IsADirectoryError
        The target is a folder.
    FileNotFoundError
        The target's folder does not exist (a dangling symlink into a missing folder, too).
    OSError
        The target is a FIFO, a device, a socket or a symlink loop.
    """
    target = os.path.realpath(os.fspath(path))       # a symlink: write its target, as open() would
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {_where(path, target)}: the folder "
                                    f"{folder!r} does not exist") from None
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{_where(path, target)} is a folder; give the path "
                                f"of a file to write")
    if not stat.S_ISREG(mode):
        raise OSError(f"refusing to write {_where(path, target)}: it is {_kind(mode)}, "
                      f"not a regular file, and cymlp replaces only regular files; give the path "
                      f"of a regular or new file")
    return target


def write_atomically(path, write, verify=None):
    """Write the file ``path`` through ``write(f)`` (``f`` a binary file object), atomically.

    See the module docstring: only a regular file (or a new one) is ever
    written; rewriting keeps the file's permission bits; an interrupted write
    leaves the old file and removes its temporary file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (symlinks are followed).
    write : callable
        Called once with the open temporary file; writes the whole content.
    verify : callable or None
        Called with the temporary file's path once it is written and closed,
        before the rename: an exception it raises leaves ``path`` as it was
        (a download checked against its checksum, for example).
    """
    target = check_writable(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # rewriting keeps the file's permissions
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    import tempfile  # here: importing it costs ~5 ms that `import cymlp` need not pay
    directory, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=name + TEMP_INFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)                   # mkstemp made it 0600
        if verify is not None:
            verify(tmp)
        if check_writable(path) != target:    # it may have changed while we wrote
            raise OSError(f"{os.fspath(path)!r} changed while it was written; try again")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text):
    """:func:`write_atomically` a string as UTF-8."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def save_figure(fig, path, **savefig_kwargs):
    """:func:`write_atomically` a matplotlib figure, its format from the name (PNG by default)."""
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    write_atomically(path, lambda f: fig.savefig(f, format=extension or "png", **savefig_kwargs))


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


# ---------------------------------------------------------------- reading

def check_readable(path, what="file"):
    """Refuse ``path`` unless it is a regular file (after symlinks), without opening it.

    Parameters
    ----------
    path : str or os.PathLike
        The file about to be read.
    what : str
        What the file is, for the message (``"model file"``, ``"--dataset"``, ...).

    Raises
    ------
    FileNotFoundError
        There is no such file.
    IsADirectoryError
        It is a folder.
    OSError
        It is a FIFO, a device or a socket (reading one could block forever).
    """
    name = os.fspath(path)
    _refuse_unless_regular(name, os.stat(name).st_mode, what)


def open_regular(path, what="file"):
    """Open a regular file for binary reading; anything else raises at once, never blocks.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    what : str
        What the file is, for the message.

    Returns
    -------
    file object
        Opened ``"rb"``; the caller closes it.
    """
    name = os.fspath(path)
    check_readable(name, what)          # a device is never even opened
    # O_NONBLOCK: a FIFO put in its place since the check opens at once instead of waiting
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _refuse_unless_regular(name, os.fstat(fd).st_mode, what)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_unless_regular(name, mode, what):
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{what} {name!r} is a folder, not a file")
    raise OSError(f"cannot read {what} {name!r}: it is {_kind(mode)}, not a regular "
                  f"file (cymlp reads only regular files: a pipe or device could block forever)")
