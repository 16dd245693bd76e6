"""Fashion-MNIST downloads, against an HTTP server on 127.0.0.1 (never the internet).

The server (``http.server`` in a thread) serves gzipped IDX files and can
misbehave on purpose: corrupt content, a broken gzip stream, a transfer cut
off half way, a 404.  Most tests serve four tiny fake files whose checksums
replace the real ones; one serves Debian's ``dataset-fashion-mnist`` files
(when installed) and checks them against the real checksums.
"""

import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from cymlp import _download, _fashion_mnist
from cymlp.datasets import load_fashion_mnist, read_idx, write_idx

NAMES = list(_fashion_mnist.FILES.values())
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` ({name: bytes}) at /<name>; ``mode`` picks a misbehaviour."""

    daemon_threads = True

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.mode, self.requests = files, "ok", []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/data/"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        body = server.files.get(name)
        if body is None or server.mode == "404":
            self.send_error(404)
            return
        if server.mode == "wrong-content":      # valid gzip, other content: the checksum must catch it
            content = bytearray(gzip.decompress(body))
            content[-1] ^= 0xFF
            body = gzip.compress(bytes(content))
        elif server.mode == "broken-gzip":
            body = body[:-12] + bytes(12)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.mode == "cut-off":            # promise all, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve({name: gz bytes}) -> a running Server; stopped after the test."""
    servers = []

    def start(files):
        server = Server(files)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $CYMLP_DATA, no system copy, the cache in tmp_path/cache; proxies bypassed for 127.0.0.1."""
    monkeypatch.delenv("CYMLP_DATA", raising=False)
    monkeypatch.delenv("CYMLP_FASHION_MNIST_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(_fashion_mnist, "SYSTEM_DIR", tmp_path / "no-system-copy")
    return tmp_path / "cache" / "cymlp" / "fashion-mnist"


@pytest.fixture
def fake_files(monkeypatch, tmp_path):
    """Four tiny valid Fashion-MNIST files (gz bytes by name); their checksums replace the real ones."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
    }
    files, content = {}, {}
    for name, array in arrays.items():
        write_idx(tmp_path / name, array)
        raw = (tmp_path / name).read_bytes()
        content[name] = (len(raw), hashlib.sha256(raw).hexdigest())
        files[name + ".gz"] = gzip.compress(raw)
    monkeypatch.setattr(_fashion_mnist, "CONTENT", content)
    return files


def folder_listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_caches_and_the_second_call_makes_no_request(serve, isolated, fake_files, capsys):
    server = serve(fake_files)
    X_train, y_train, X_test, y_test = load_fashion_mnist(base_url=server.url, progress=False)
    assert X_train.shape == (20, 784) and X_test.shape == (6, 784) and y_train.dtype == np.int64
    assert sorted(server.requests) == sorted(f"/data/{name}.gz" for name in NAMES)
    assert folder_listing(isolated) == sorted(f"{name}.gz" for name in NAMES)   # no temporary files left
    for name in NAMES:
        assert (isolated / f"{name}.gz").read_bytes() == fake_files[f"{name}.gz"]
    assert capsys.readouterr().err == ""                                        # progress=False: silent

    again = load_fashion_mnist(base_url=server.url)
    assert len(server.requests) == 4                                            # read from the cache
    for first, second in zip((X_train, y_train, X_test, y_test), again):
        np.testing.assert_array_equal(first, second)


def test_only_missing_files_are_fetched_and_nothing_else_is_touched(serve, isolated, fake_files):
    isolated.mkdir(parents=True)
    (isolated / "notes.txt").write_text("mine")
    (isolated / "train-labels-idx1-ubyte.gz").write_bytes(fake_files["train-labels-idx1-ubyte.gz"])
    before = (isolated / "train-labels-idx1-ubyte.gz").stat().st_mtime_ns
    server = serve(fake_files)
    load_fashion_mnist(base_url=server.url, progress=False)
    assert len(server.requests) == 3 and not any("train-labels" in r for r in server.requests)
    assert (isolated / "notes.txt").read_text() == "mine"
    assert (isolated / "train-labels-idx1-ubyte.gz").stat().st_mtime_ns == before


def test_cymlp_data_is_also_the_download_folder(serve, isolated, fake_files, monkeypatch, tmp_path):
    monkeypatch.setenv("CYMLP_DATA", str(tmp_path / "mydata"))
    server = serve(fake_files)
    load_fashion_mnist(base_url=server.url, progress=False)
    assert folder_listing(tmp_path / "mydata" / "fashion-mnist") == sorted(f"{n}.gz" for n in NAMES)
    assert not isolated.exists()


def test_base_url_from_the_environment(serve, isolated, fake_files, monkeypatch):
    server = serve(fake_files)
    monkeypatch.setenv("CYMLP_FASHION_MNIST_URL", server.url.rstrip("/"))   # the trailing / is optional
    load_fashion_mnist(progress=False)
    assert len(server.requests) == 4


@pytest.mark.parametrize("mode, message", [
    ("wrong-content", "checksum mismatch"),
    ("broken-gzip", "not a valid gzip file"),
    ("cut-off", "the transfer stopped"),
    ("404", "HTTP 404"),
])
def test_a_bad_download_is_rejected_and_nothing_is_cached(serve, isolated, fake_files, mode, message):
    server = serve(fake_files)
    server.mode = mode
    with pytest.raises(FileNotFoundError, match=message) as error:
        load_fashion_mnist(base_url=server.url, progress=False)
    assert server.url in str(error.value)
    assert isinstance(error.value.__cause__, _download.DownloadError)
    assert folder_listing(isolated) == []                # no partial or temporary file

    server.mode = "ok"                                   # the next call starts clean and succeeds
    load_fashion_mnist(base_url=server.url, progress=False)
    assert folder_listing(isolated) == sorted(f"{name}.gz" for name in NAMES)


def test_server_down_fails_with_the_url_and_how_to_place_the_files(isolated):
    with socket.socket() as probe:                       # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/mirror/"
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(base_url=url)
    message = str(error.value)
    assert f"{url}train-images-idx3-ubyte.gz: cannot connect" in message
    assert str(isolated) in message                      # where to put the files by hand
    assert "CYMLP_DATA" in message and "path=" in message and "dataset-fashion-mnist" in message
    assert folder_listing(isolated) == []


def test_interrupted_download_leaves_nothing(serve, isolated, fake_files, monkeypatch):
    server = serve(fake_files)

    def interrupt(self, n):
        raise KeyboardInterrupt
    monkeypatch.setattr(_download._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_fashion_mnist(base_url=server.url, progress=False)
    assert folder_listing(isolated) == []


def test_download_false_or_an_explicit_path_never_downloads(serve, isolated, fake_files, tmp_path):
    server = serve(fake_files)
    with pytest.raises(FileNotFoundError, match="downloads them itself"):
        load_fashion_mnist(download=False, base_url=server.url)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing: train-images"):
        load_fashion_mnist(tmp_path / "empty", base_url=server.url)
    assert server.requests == []


def test_progress_is_a_plain_stderr_line_without_tqdm(serve, isolated, fake_files, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)     # import fails: no tqdm
    server = serve(fake_files)
    load_fashion_mnist(base_url=server.url)
    err = capsys.readouterr().err
    for name in NAMES:
        assert f"cymlp: downloading {name}.gz" in err and f"{name}.gz: " in err


def test_progress_uses_tqdm_when_installed(serve, isolated, fake_files, capsys):
    pytest.importorskip("tqdm")
    server = serve(fake_files)
    load_fashion_mnist(base_url=server.url)
    err = capsys.readouterr().err
    assert "cymlp: train-images-idx3-ubyte.gz" in err and "100%" in err


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path, serve, monkeypatch):
    """Decompression stops one byte past the expected size."""
    bomb = gzip.compress(bytes(50_000_000))               # 50 MB of zeros, 49 kB compressed
    server = serve({"bomb.gz": bomb})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(_download.DownloadError, match="more than 1,000 bytes"):
        _download.fetch(server.url + "bomb.gz", tmp_path / "bomb.gz", sha256="0" * 64, size=1000,
                        progress=False)
    assert folder_listing(tmp_path) == []


def test_cache_dir_order(monkeypatch, tmp_path):
    assert _download.cache_dir({"CYMLP_DATA": "/d", "XDG_CACHE_HOME": "/x"}) == Path("/d")
    assert _download.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x") / "cymlp"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    assert _download.cache_dir({}) == tmp_path / ".cache" / "cymlp"


def test_cli_fashion_mnist_downloads_when_missing(serve, isolated, fake_files, monkeypatch, capsys):
    from cymlp import cli

    server = serve(fake_files)
    monkeypatch.setenv("CYMLP_FASHION_MNIST_URL", server.url)
    status = cli.main(["train", "--dataset", "fashion-mnist", "--epochs", "1", "--hidden", "8",
                       "--validation-fraction", "0", "--batch-size", "10"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "test accuracy" in out and "cymlp: " in err            # progress on stderr
    assert len(server.requests) == 4


@pytest.mark.skipif(not all((DEBIAN / f"{name}.gz").is_file() for name in NAMES),
                    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
def test_real_files_pass_the_real_checksums(serve, isolated):
    """Serve Debian's copies: the published checksums accept them, and the cache
    then loads the same arrays as the system copy."""
    server = serve({f"{name}.gz": (DEBIAN / f"{name}.gz").read_bytes() for name in NAMES})
    downloaded = load_fashion_mnist(base_url=server.url, progress=False, dtype="float64")
    assert folder_listing(isolated) == sorted(f"{name}.gz" for name in NAMES)
    direct = [read_idx(DEBIAN / f"{name}.gz") for name in NAMES]
    assert downloaded[0].shape == (60000, 784) and downloaded[2].shape == (10000, 784)
    np.testing.assert_array_equal(downloaded[1], direct[1])
    np.testing.assert_array_equal(downloaded[0], direct[0].reshape(60000, -1) / 255)


@pytest.mark.parametrize("kind", ["fifo", "link-to-fifo", "folder"])
def test_a_cache_entry_that_is_not_a_regular_file_is_refused_and_left_alone(serve, isolated, fake_files, kind):
    """Issue 21, item 1: the download cache writes through cymlp's one writer."""
    import os
    import stat
    server = serve(fake_files)
    isolated.mkdir(parents=True)
    target = isolated / "train-images-idx3-ubyte.gz"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.mkfifo(isolated.parent / "elsewhere")
        target.symlink_to(isolated.parent / "elsewhere")
    before = (os.lstat(target).st_ino, stat.S_IFMT(os.stat(target).st_mode))
    with pytest.raises(OSError, match="folder" if kind == "folder" else "FIFO"):
        load_fashion_mnist(base_url=server.url, progress=False)
    assert (os.lstat(target).st_ino, stat.S_IFMT(os.stat(target).st_mode)) == before
    assert not [name for name in folder_listing(isolated) if "tmp" in name or name.endswith(".part")]
