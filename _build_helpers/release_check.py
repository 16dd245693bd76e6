"""Check what a release would publish, before anything is uploaded.

Run by the ``publish`` jobs of ``.github/workflows/wheels.yml`` on the
downloaded artifacts, and by ``.ci/run`` for the build matrix::

    python _build_helpers/release_check.py dist/ --tag v0.1.0   # before upload
    python _build_helpers/release_check.py --matrix              # the builds cibuildwheel would make

``dist/`` must hold exactly one sdist and exactly one wheel per build
identifier that ``cibuildwheel --print-build-identifiers`` lists for Linux,
macOS and Windows (so a job that quietly built fewer wheels stops the
release), all of one version, equal to the tag without its ``v``.
With ``--tag``, CHANGELOG.md must also have a dated section for that version
and CITATION.cff must carry it.  ``--matrix`` checks that those identifiers
are CPython 3.10 to 3.14 on every platform and architecture the README
promises.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("linux", "macos", "windows")
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314")
# platform -> the platform part of the identifiers each Python must have
PROMISED = {
    "linux": ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64"),
    "macos": ("macosx_x86_64", "macosx_arm64"),
    "windows": ("win_amd64",),
}
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<python>[^-]+)-(?P<abi>[^-]+)"
                        r"-(?P<platform>[^-]+)\.whl$")


def build_identifiers(platform, cibuildwheel="cibuildwheel"):
    """The identifiers ``cibuildwheel --print-build-identifiers`` lists for ``platform``."""
    result = subprocess.run([cibuildwheel, "--print-build-identifiers", "--platform", platform],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.split()


def matrix_problems(identifiers_by_platform):
    """What is missing from, or extra to, the promised CPython 3.10-3.14 matrix."""
    problems = []
    for platform, promised in PROMISED.items():
        found = set(identifiers_by_platform.get(platform, ()))
        wanted = {f"{python}-{plat}" for python in PYTHONS for plat in promised}
        problems += [f"{platform}: no build {ident}" for ident in sorted(wanted - found)]
        problems += [f"{platform}: unexpected build {ident}" for ident in sorted(found - wanted)]
    return problems


def _matches(identifier, wheel):
    """Whether the wheel file name ``wheel`` is the build ``identifier`` (e.g. cp312-musllinux_aarch64)."""
    python, platform = identifier.split("-", 1)
    family, arch = platform.split("_", 1)
    m = WHEEL_NAME.match(wheel)
    return bool(m) and m["python"] == python and any(
        tag == platform or (tag.startswith(family + "_") and tag.endswith("_" + arch))
        for tag in m["platform"].split("."))


def dist_problems(names, identifiers, tag=None):
    """Problems with the files ``names`` of a dist folder holding the release."""
    problems = []
    sdists = [n for n in names if n.endswith(".tar.gz")]
    wheels = [n for n in names if n.endswith(".whl")]
    problems += [f"unexpected file {n}" for n in names if n not in sdists + wheels]
    if len(sdists) != 1:
        problems.append(f"expected one sdist, found {sdists or 'none'}")
    versions = {m["version"] for m in map(WHEEL_NAME.match, wheels) if m}
    versions |= {n[len("cymlp-"):-len(".tar.gz")] for n in sdists}
    if len(versions) > 1:
        problems.append(f"more than one version: {sorted(versions)}")
    if tag is not None and versions != {tag.removeprefix("v")}:
        problems.append(f"the tag {tag} does not name the version built ({sorted(versions)}); "
                        f"set cymlp.__version__ before tagging")
    unmatched = set(wheels)
    for ident in identifiers:
        found = [w for w in wheels if _matches(ident, w)]
        if len(found) != 1:
            problems.append(f"build {ident}: {len(found)} wheels ({found})")
        unmatched -= set(found)
    problems += [f"wheel {w} is no expected build" for w in sorted(unmatched)]
    return problems


def changelog_problems(text, version):
    """CHANGELOG.md must have a ``## <version> — <YYYY-MM-DD>`` section (dated: released)."""
    heading = re.search(rf"^## {re.escape(version)} — (.+)$", text, re.MULTILINE)
    if heading is None:
        return [f"CHANGELOG.md has no section '## {version} — <date>'"]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", heading[1].strip()):
        return [f"CHANGELOG.md's section for {version} is not dated ({heading[1].strip()!r}); "
                f"write the release date (YYYY-MM-DD) before tagging"]
    return []


def citation_problems(text, version):
    found = re.search(r"^version:\s*\"?([^\"\s]+)\"?\s*$", text, re.MULTILINE)
    if found is None or found[1] != version:
        return [f"CITATION.cff's version is {found[1] if found else 'missing'}, not {version}"]
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dist", nargs="?", help="folder with the sdist and the wheels to publish")
    parser.add_argument("--tag", help="the git tag being released (v<version>)")
    parser.add_argument("--matrix", action="store_true", help="check the build matrix instead")
    parser.add_argument("--cibuildwheel", default="cibuildwheel", help="the cibuildwheel command")
    args = parser.parse_args(argv)
    identifiers = {p: build_identifiers(p, args.cibuildwheel) for p in PLATFORMS}
    for platform, idents in identifiers.items():
        print(f"{platform} ({len(idents)}): {' '.join(idents)}")
    if args.matrix:
        problems = matrix_problems(identifiers)
    elif args.dist:
        names = sorted(p.name for p in Path(args.dist).iterdir())
        problems = dist_problems(names, [i for idents in identifiers.values() for i in idents], args.tag)
        if args.tag:
            version = args.tag.removeprefix("v")
            problems += changelog_problems((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), version)
            problems += citation_problems((ROOT / "CITATION.cff").read_text(encoding="utf-8"), version)
    else:
        parser.error("give a dist folder or --matrix")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
