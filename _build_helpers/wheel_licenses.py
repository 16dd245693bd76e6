"""Append the licence of the OpenMP runtime a repaired wheel bundles to its LICENSE.

auditwheel (Linux), delocate (macOS) and delvewheel (Windows) copy the
OpenMP runtime the extensions link into the wheel: libgomp (GPL-3.0-or-later
WITH GCC-exception-3.1), libomp (Apache-2.0 WITH LLVM-exception) or
vcomp140.dll (Microsoft's Visual C++ redistributable terms).  Its licence must
travel with it.  As scikit-learn does with its ``LICENSE_<platform>.txt``
files, the runtime's licence (``_build_helpers/licenses/<runtime>.txt``) is
appended to the wheel's ``<dist-info>/licenses/LICENSE``, so the core
metadata stays identical to the sdist's (PEP 643) and ``RECORD`` gets the new
hash.  Which runtime is bundled is read from the wheel itself.

Usage (cibuildwheel's repair-wheel-command, after the repair tool; stdlib only)::

    python _build_helpers/wheel_licenses.py WHEEL_OR_FOLDER ...
    python _build_helpers/wheel_licenses.py --check-installed   # in the test step

A wheel that bundles no OpenMP runtime, or one without a licence here, is an
error: a repaired release wheel always bundles exactly one.
"""

import argparse
import base64
import hashlib
import importlib.metadata
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

LICENSES = Path(__file__).resolve().parent / "licenses"
# runtime -> pattern of the bundled file's path inside the wheel
RUNTIMES = {
    "libgomp": re.compile(r"(^|/)libgomp[^/]*\.so[^/]*$"),
    "libomp": re.compile(r"(^|/)libomp[^/]*\.(dylib|so[^/]*)$"),
    "vcomp": re.compile(r"(^|/)vcomp[^/]*\.dll$", re.IGNORECASE),
}
# how the appended text starts: also what --check-installed looks for
MARKER = "This binary distribution of cymlp also bundles the following software:"
SEPARATOR = "\n\n" + "-" * 78 + "\n\n"


def bundled_runtimes(names):
    """The OpenMP runtimes among the file ``names`` of a wheel (or an installed distribution)."""
    return sorted({runtime for name in names for runtime, pattern in RUNTIMES.items()
                   if pattern.search(name.replace("\\", "/"))})


def licence_text(runtime):
    return (LICENSES / f"{runtime}.txt").read_text(encoding="utf-8")


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def add_licence(wheel):
    """Append the bundled runtime's licence to ``wheel``'s LICENSE (in place); return the runtime.

    Does nothing when the LICENSE already carries it.  Raises ValueError when
    the wheel bundles no OpenMP runtime, or several.
    """
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as archive:
        infos = archive.infolist()
        contents = {info.filename: archive.read(info) for info in infos}
    runtimes = bundled_runtimes(contents)
    if len(runtimes) != 1:
        raise ValueError(f"{wheel.name}: bundles {runtimes or 'no OpenMP runtime'}; a repaired wheel "
                         f"bundles exactly one of {', '.join(RUNTIMES)} (was it repaired?)")
    runtime = runtimes[0]
    records = [name for name in contents if re.fullmatch(r"[^/]+\.dist-info/RECORD", name)]
    if len(records) != 1:
        raise ValueError(f"{wheel.name}: expected one .dist-info/RECORD, found {records}")
    dist_info = records[0].rsplit("/", 1)[0]
    licence_name = f"{dist_info}/licenses/LICENSE"
    if licence_name not in contents:
        raise ValueError(f"{wheel.name}: has no {licence_name}")
    text = licence_text(runtime)
    old = contents[licence_name].decode("utf-8")
    if text.strip() in old:
        return runtime
    new = (old.rstrip("\n") + SEPARATOR + text).encode("utf-8")
    contents[licence_name] = new

    record_lines = contents[records[0]].decode("utf-8").splitlines()
    rewritten = [f"{licence_name},{_record_hash(new)},{len(new)}" if line.split(",")[0] == licence_name else line
                 for line in record_lines]
    if rewritten == record_lines:
        raise ValueError(f"{wheel.name}: RECORD does not list {licence_name}")
    contents[records[0]] = ("\n".join(rewritten) + "\n").encode("utf-8")

    handle, temp_name = tempfile.mkstemp(dir=wheel.parent, prefix=f".{wheel.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as out:
            for info in infos:                   # same order, names, dates and permissions
                out.writestr(info, contents[info.filename], compress_type=zipfile.ZIP_DEFLATED)
        os.replace(temp_name, wheel)
    except BaseException:
        os.unlink(temp_name)
        raise
    return runtime


def check_installed(distribution="cymlp"):
    """Raise SystemExit unless the installed distribution's LICENSE names the runtime it bundles."""
    dist = importlib.metadata.distribution(distribution)
    runtimes = bundled_runtimes(str(path) for path in dist.files or ())
    licence = dist.read_text("licenses/LICENSE") or ""
    if len(runtimes) != 1:
        raise SystemExit(f"installed {distribution} bundles {runtimes or 'no OpenMP runtime'}")
    if MARKER not in licence or licence_text(runtimes[0]).strip() not in licence:
        raise SystemExit(f"installed {distribution}'s LICENSE lacks the licence of the bundled {runtimes[0]}")
    print(f"{distribution}: LICENSE carries the licence of the bundled {runtimes[0]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="*", help="wheel files, or folders whose *.whl to process")
    parser.add_argument("--check-installed", action="store_true",
                        help="check the installed cymlp instead of changing wheels")
    args = parser.parse_args(argv)
    if args.check_installed:
        check_installed()
        return 0
    wheels = [wheel for arg in map(Path, args.wheels)
              for wheel in (sorted(arg.glob("*.whl")) if arg.is_dir() else [arg])]
    if not wheels:
        parser.error("no wheel given (or the folders hold none)")
    for wheel in wheels:
        try:
            runtime = add_licence(wheel)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{wheel.name}: LICENSE carries the licence of the bundled {runtime}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
