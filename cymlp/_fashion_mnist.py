"""Where :func:`cymlp.datasets.load_fashion_mnist` finds its four IDX files,
and fetching them when they are nowhere.

Folders searched, first with all four files wins:

1. ``path`` (or its ``fashion-mnist`` subfolder) when given, and nothing else;
2. ``$CYMLP_DATA`` (or its ``fashion-mnist`` subfolder);
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``);
4. the download folder, ``<cache>/fashion-mnist`` (:func:`cymlp._download.cache_dir`).

When none has them (and no ``path`` was given), the missing files are
downloaded from :data:`DEFAULT_URL` (or ``base_url``, or
``$CYMLP_FASHION_MNIST_URL``) into the download folder and checked against
:data:`CONTENT`.

The checksums are of the *uncompressed* files.  They were computed from
Debian's ``dataset-fashion-mnist`` (0.0~git20200523.55506a9-1), whose gzip
files were recompressed (no file name in the header, 23-24 bytes shorter
than Zalando's) but hold the same content: the two label files decompress to
exactly the bytes of Zalando's, whose ``.gz`` files match the MD5 sums of
Zalando's README; the images match the published training-set pixel mean
and standard deviation (0.2860, 0.3530).
"""

import os
from pathlib import Path

from . import _download

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# name -> (uncompressed size in bytes, SHA-256 of the uncompressed file)
CONTENT = {
    "train-images-idx3-ubyte": (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
# Zalando's repository holds the four .gz files (data/fashion/), served over HTTPS.
DEFAULT_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
URL_ENV_VAR = "CYMLP_FASHION_MNIST_URL"
DATA_ENV_VAR = "CYMLP_DATA"
SUBFOLDER = "fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def base_url(url=None):
    """``url``, else ``$CYMLP_FASHION_MNIST_URL``, else :data:`DEFAULT_URL`; ends with ``/``."""
    url = url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    return url if url.endswith("/") else url + "/"


def download_dir():
    """The folder downloads go to: ``<cache>/fashion-mnist``."""
    return _download.cache_dir() / SUBFOLDER


def locate(path=None, *, download=True, url=None, progress=True):
    """Return ``{key: Path}`` of the four files (keys as in :data:`FILES`).

    Raises FileNotFoundError naming the folders searched and, when a
    download was tried, the URL, what went wrong and how to place the files
    by hand.
    """
    if path is not None:
        roots = [Path(path)]
    elif os.environ.get(DATA_ENV_VAR):
        roots = [Path(os.environ[DATA_ENV_VAR])]
    else:
        roots = []
    folders = [folder for root in roots for folder in (root, root / SUBFOLDER)]
    if path is None:
        folders += [SYSTEM_DIR, download_dir()]
    folders = list(dict.fromkeys(folders))          # $CYMLP_DATA/fashion-mnist is also the download folder

    report = []
    for folder in folders:
        found, missing = _files_in(folder)
        if not missing:
            return found
        report.append(f"  {folder} ({'no such folder' if found is None else 'missing: ' + ', '.join(missing)})")

    failure = None
    if path is None and download:
        try:
            return fetch_all(download_dir(), url=url, progress=progress)
        except _download.DownloadError as error:
            failure = error
    raise FileNotFoundError(_not_found_message(report, failure, url, path is None and download)) from failure


def fetch_all(folder, *, url=None, progress=True):
    """Download into ``folder`` each of the four files it lacks; return ``{key: Path}``."""
    folder = Path(folder)
    found = _files_in(folder)[0] or {}
    for key, name in FILES.items():
        if key not in found:
            size, sha256 = CONTENT[name]
            found[key] = _download.fetch(base_url(url) + name + ".gz", folder / f"{name}.gz",
                                         sha256=sha256, size=size, progress=progress)
    return found


def _files_in(folder):
    """({key: Path} of the files present, [names missing]); (None, all names) without the folder."""
    if not folder.is_dir():
        return None, list(FILES.values())
    found, missing = {}, []
    for key, name in FILES.items():
        existing = [file for file in (folder / name, folder / f"{name}.gz") if file.is_file()]
        if existing:
            found[key] = existing[0]
        else:
            missing.append(name)
    return found, missing


def _not_found_message(report, failure, url, tried):
    names = "\n".join(f"  {name}[.gz]" for name in FILES.values())
    lines = ["Fashion-MNIST not found. Expected these four files in one folder:", names,
             "Folders searched:", *report]
    if tried:
        lines.append(f"Downloading them failed: {failure}")
    source = base_url(url)
    lines += [
        "To get them:",
        "  - on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist` "
        f"(installs to {SYSTEM_DIR}); or",
        f"  - download {source}<name>.gz for each name above (e.g. with a browser or curl) into "
        f"{download_dir()}, or into any folder and set {DATA_ENV_VAR}=<folder> or pass path=<folder>; or",
        f"  - set {URL_ENV_VAR} (or base_url=) to a mirror holding the four .gz files.",
    ]
    if not tried:
        lines.append("  (load_fashion_mnist downloads them itself when called without path= and "
                     "with download=True, the default.)")
    return "\n".join(lines)
