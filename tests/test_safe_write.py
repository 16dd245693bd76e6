"""Every file cymlp writes replaces a regular file or creates a new one, and nothing else (issue 21, item 1).

One writer (``cymlp._files.write_atomically``) serves every writer of the
library and the command line: ``Network.save``, ``to_onnx``,
``History.to_json``, ``History.plot``, ``datasets.write_idx``, ``cymlp train
--save/--json/--plot`` and ``cymlp bench --json/--plot``.  Each refused target
(a folder, a FIFO, the real ``/dev/null`` through a symlink, a symlink to a
FIFO, ...) is checked to be exactly as it was, with no temporary file left
beside it.  The real ``/dev/null`` is only ever *named* here: the code under
test must refuse it before opening it.
"""

import os
import stat

import numpy as np
import pytest
from _helpers import call_within

from cymlp import History, Network, cli, datasets
from cymlp._files import TEMP_INFIX, check_writable, write_atomically

LIMIT_S = 20


def within_limit(call):
    """``call()``'s result; its exception re-raised.  Fails, instead of hanging, if it blocks.

    A regression that opened a FIFO for writing would wait for a reader forever: the call
    runs in a daemon thread, left behind if it blocks.
    """
    outcome = call_within(call, LIMIT_S, f"the write blocked for {LIMIT_S} s (opened a FIFO or device?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


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
    elif kind == "link-to-dev-null":        # the real one, named through a link, never opened
        if not os.path.exists("/dev/null") or not stat.S_ISCHR(os.stat("/dev/null").st_mode):
            return None
        path.symlink_to("/dev/null")
    elif kind == "link-loop":
        path.symlink_to(folder / "other")
        (folder / "other").symlink_to(path)
    else:                                   # link-to-KIND: a symlink to a KIND in a subfolder
        real = make_target(folder / "real", kind.removeprefix("link-to-"))
        if real is None:
            return None
        path.symlink_to(real)
    return path


def snapshot(path):
    """What must not change: kind, device numbers, inode and mtime of the target (and what it links to)."""
    def of(p):
        try:
            st = os.stat(p)
        except OSError:                     # a symlink loop
            return os.readlink(p)
        listing = sorted(os.listdir(p)) if os.path.isdir(p) else None
        return stat.S_IFMT(st.st_mode), st.st_rdev, st.st_ino, st.st_mtime_ns, listing
    return of(path), os.path.islink(path), sorted(os.listdir(path.parent))


KINDS = ["folder", "fifo", "char-device", "link-to-dev-null", "link-to-folder", "link-to-fifo",
         "link-to-char-device", "link-loop"]


def _history():
    history = History()
    history.append(epoch=1, loss=0.5, accuracy=0.8, lr=0.1, seconds=0.1, examples_per_second=10.0)
    return history


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def writers():
    """(name, write(path)) for every public way cymlp writes a file."""
    yield "save", lambda path: Network([3, 4, 2], backend="numpy").save(path)
    yield "History.to_json", lambda path: _history().to_json(path)
    yield "write_idx", lambda path: datasets.write_idx(path, np.zeros((2, 3), np.uint8))
    if _has("onnx"):
        yield "to_onnx", lambda path: Network([3, 4, 2], backend="numpy").to_onnx(path)
    if _has("matplotlib"):
        yield "History.plot", lambda path: _history().plot(path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", list(writers()), ids=lambda w: w[0])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path, kind, writer):
    path = make_target(tmp_path / "area", kind)
    if path is None:
        pytest.skip(f"cannot make a {kind} here (mknod needs privileges)")
    before = snapshot(path)
    match = {"folder": "folder", "link-to-folder": "folder", "link-loop": "symbolic links"}
    with pytest.raises(OSError, match=match.get(kind, "not a regular file")):
        within_limit(lambda: writer[1](path))
    assert snapshot(path) == before
    assert not [name for name in os.listdir(path.parent) if TEMP_INFIX in name]


@pytest.mark.parametrize("kind", ["folder", "fifo", "link-to-dev-null", "link-to-fifo"])
@pytest.mark.parametrize("option", ["--save", "--json", "--plot"])
def test_the_command_line_refuses_them_before_training(tmp_path, capsys, kind, option):
    if option == "--plot" and not _has("matplotlib"):
        pytest.skip("--plot needs matplotlib")
    path = make_target(tmp_path / "area", kind)
    if path is None:
        pytest.skip(f"cannot make a {kind} here")
    before = snapshot(path)
    status = within_limit(lambda: cli.main(["train", "--epochs", "1", "--hidden", "4", "--no-progress", option,
                                            str(path)]))
    out, err = capsys.readouterr()
    assert status == 1 and "epoch" not in out                   # refused before any training
    assert len(err.strip().splitlines()) == 1 and err.startswith("cymlp train: error: "), err
    assert option in err and ("folder" in err if kind == "folder" else "not a regular file" in err)
    assert snapshot(path) == before


def test_cymlp_export_refuses_them_before_loading(tmp_path, capsys):
    pytest.importorskip("onnx")
    Network([3, 4, 2], backend="numpy").save(tmp_path / "m.npz")
    path = make_target(tmp_path / "area", "link-to-dev-null")
    if path is None:
        pytest.skip("no /dev/null here")
    before = snapshot(path)
    status = within_limit(lambda: cli.main(["export", str(tmp_path / "m.npz"), "--onnx", str(path)]))
    err = capsys.readouterr().err
    assert status == 1 and "--onnx" in err and "character device" in err and len(err.strip().splitlines()) == 1
    assert snapshot(path) == before


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_cymlp_bench_refuses_them_before_measuring(tmp_path, capsys, option):
    path = make_target(tmp_path / "area", "link-to-fifo")
    before = snapshot(path)
    status = within_limit(lambda: cli.main(["bench", "--sizes", "4,4,2", "--impl", "numpy", "--seconds", "0.01",
                                            option, str(path)]))
    out, err = capsys.readouterr()
    assert status == 1 and "not a regular file" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(path) == before


def test_the_refusal_names_the_kind_of_file_and_what_to_do(tmp_path):
    path = make_target(tmp_path / "area", "fifo")
    with pytest.raises(OSError) as info:
        within_limit(lambda: write_atomically(path, lambda f: f.write(b"x")))
    assert "FIFO" in str(info.value) and "regular or new file" in str(info.value)
    assert not str(info.value).startswith("[Errno")         # one clean sentence for the CLI


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


def test_a_dangling_symlink_creates_its_target_when_the_folder_exists(tmp_path):
    (tmp_path / "link.npz").symlink_to(tmp_path / "made.npz")
    Network([3, 4, 2], backend="numpy", seed=1).save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink() and (tmp_path / "made.npz").is_file()
    assert Network.load(tmp_path / "link.npz").sizes == (3, 4, 2)
    (tmp_path / "lost.npz").symlink_to(tmp_path / "no-such-folder" / "m.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Network([3, 4, 2], backend="numpy").save(tmp_path / "lost.npz")
    assert not (tmp_path / "no-such-folder").exists()


def test_check_writable_returns_the_file_a_write_replaces(tmp_path):
    (tmp_path / "a").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "a")
    assert check_writable(tmp_path / "l") == str(tmp_path / "a")
    assert check_writable(tmp_path / "new") == str(tmp_path / "new")


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


@pytest.mark.skipif(not _has("matplotlib"), reason="needs matplotlib")
def test_the_figure_format_follows_the_extension(tmp_path):
    _history().plot(tmp_path / "curves.png")
    _history().plot(tmp_path / "curves.svg")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "curves.svg").read_bytes()[:500]


def test_save_still_writes_a_loadable_model(tmp_path):
    net = Network([3, 4, 2], backend="numpy", seed=2)
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(Network.load(tmp_path / "m.npz").get_flat_params(), net.get_flat_params())


@pytest.mark.parametrize("kind", ["folder", "fifo", "link-to-dev-null", "link-to-fifo"])
def test_cymlp_predict_output_refuses_them_before_predicting(tmp_path, capsys, kind):
    Network([3, 4, 2], backend="numpy").save(tmp_path / "m.npz")
    np.save(tmp_path / "X.npy", np.zeros((5, 3)))
    path = make_target(tmp_path / "area", kind)
    if path is None:
        pytest.skip(f"cannot make a {kind} here")
    before = snapshot(path)
    status = within_limit(lambda: cli.main(["predict", str(tmp_path / "m.npz"), "--input",
                                            str(tmp_path / "X.npy"), "--output", str(path)]))
    err = capsys.readouterr().err
    assert status == 1 and "--output" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(path) == before
    assert not [name for name in os.listdir(path.parent) if TEMP_INFIX in name]
