"""What cymlp writes replaces a regular file or creates a new one, and nothing else (issue 22).

``Network.save`` and the ONNX export share one writer
(``cymlp._persistence.write_atomically``); these tests run it through
``save`` (no optional package needed) and, where onnx is installed, through
``to_onnx`` (see also tests/test_onnx_export.py).  Each refused target is
checked to be exactly as it was, with no temporary file left beside it.
"""

import os
import stat

import numpy as np
import pytest

from cymlp import Network
from cymlp._persistence import TEMP_INFIX, write_atomically


def make_target(folder, kind):
    """``folder/target``, of the given kind; None when this machine cannot make it."""
    folder.mkdir()
    path = folder / "target"
    if kind == "folder":
        path.mkdir()
        (path / "keep.txt").write_text("precious")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "char-device":             # a private /dev/null twin: never the real one
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError:
            return None
    else:                                   # link-to-KIND: a symlink to a KIND in a subfolder
        real = make_target(folder / "real", kind.removeprefix("link-to-"))
        if real is None:
            return None
        path.symlink_to(real)
    return path


def snapshot(path):
    """What must not change: the kind, device numbers and inode of the target and of what it links to."""
    def of(p):
        st = os.stat(p)
        return stat.S_IFMT(st.st_mode), st.st_rdev, st.st_ino, sorted(os.listdir(p)) if os.path.isdir(p) else None
    return of(path), os.path.islink(path), sorted(os.listdir(path.parent))


KINDS = ["folder", "fifo", "char-device", "link-to-folder", "link-to-fifo", "link-to-char-device"]


def writers():
    """(name, write(net, path)) for every public way cymlp writes a model."""
    yield "save", lambda net, path: net.save(path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        return
    yield "to_onnx", lambda net, path: net.to_onnx(path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", list(writers()), ids=lambda w: w[0])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path, kind, writer):
    path = make_target(tmp_path / "area", kind)
    if path is None:
        pytest.skip(f"cannot make a {kind} here (mknod needs privileges)")
    before = snapshot(path)
    with pytest.raises(OSError, match="folder" if "folder" in kind else "not a regular file"):
        writer[1](Network([3, 4, 2], backend="numpy"), path)
    assert snapshot(path) == before
    assert not [name for name in os.listdir(path.parent) if TEMP_INFIX in name]


def test_the_refusal_names_the_kind_of_file_and_what_to_do(tmp_path):
    path = make_target(tmp_path / "area", "fifo")
    with pytest.raises(OSError) as info:
        write_atomically(path, lambda f: f.write(b"x"))
    assert "FIFO" in str(info.value) and "regular or new file" in str(info.value)


def test_regular_files_new_files_and_links_to_them_are_written(tmp_path):
    def write(path, data):
        write_atomically(path, lambda f: f.write(data))
    write(tmp_path / "new.bin", b"new")
    (tmp_path / "old.bin").write_bytes(b"old")
    write(tmp_path / "old.bin", b"replaced")
    (tmp_path / "link.bin").symlink_to(tmp_path / "old.bin")
    write(tmp_path / "link.bin", b"through the link")
    assert (tmp_path / "new.bin").read_bytes() == b"new"
    assert (tmp_path / "old.bin").read_bytes() == b"through the link"
    assert (tmp_path / "link.bin").is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["link.bin", "new.bin", "old.bin"]


def test_a_target_replaced_by_a_fifo_while_writing_is_not_replaced(tmp_path):
    # the check runs again just before the rename
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def write(f):
        path.unlink()
        os.mkfifo(path)
        f.write(b"new")
    with pytest.raises(OSError, match="FIFO"):
        write_atomically(path, write)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_still_writes_a_loadable_model(tmp_path):
    net = Network([3, 4, 2], backend="numpy", seed=2)
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(Network.load(tmp_path / "m.npz").get_flat_params(), net.get_flat_params())
