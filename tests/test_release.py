"""The promises of the README's quick start, the packaging metadata, the GitHub
workflows, CITATION.cff, CHANGELOG.md and the release checks, each against the
file that keeps it.

These read the source tree (pyproject.toml, .github/, _build_helpers/); where a
file is absent (the suite run against an installed wheel from a copy of tests/)
the test skips.  The quick start itself was run for real, from a fresh clone in
a fresh virtual environment (not here: it downloads and compiles for minutes).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cymlp

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)
SHELLS = ("bash", "sh", "console", "powershell", "pwsh", "bat", "cmd")


def need(*relative):
    paths = [ROOT / r for r in relative]
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"needs the source tree ({', '.join(missing)})")
    return paths[0] if len(paths) == 1 else paths


def toml(path):
    tomllib = pytest.importorskip("tomllib")        # Python >= 3.11
    return tomllib.loads(path.read_text(encoding="utf-8"))


def shell_blocks(text):
    """(info words, [command lines]) of each shell block, in order."""
    for m in FENCE.finditer(text):
        info = m["info"].split()
        if info and info[0] in SHELLS:
            lines = [line.split(" #")[0].strip() for line in m["body"].splitlines()]
            yield info, [line for line in lines if line and not line.startswith("#")]


def release_check():
    need("_build_helpers/release_check.py")
    sys.path.insert(0, str(ROOT))
    from _build_helpers import release_check
    return release_check


# ------------------------------------------------------------------ README


def test_readme_first_shell_block_installs_the_checkout_and_trains():
    """What a new user runs first: install this checkout, then the main job."""
    blocks = list(shell_blocks(README.read_text(encoding="utf-8")))
    info, commands = blocks[0]
    assert "notest" not in info
    assert commands == ["pip install .", "cymlp train"]
    test_info, test_commands = blocks[1]                      # the test command right after it
    assert test_commands == ['pip install ".[test]"', "pytest"]


def test_readme_quick_start_comes_first_and_pip_install_cymlp_is_marked_unpublished():
    text = README.read_text(encoding="utf-8")
    quick = text.index("## Quick start")
    assert quick < text.index("## Using it from Python")
    assert text.index("```bash", quick) == text.index("```bash")       # the first shell block is there
    mentions = [p for p in re.split(r"\n\s*\n", text) if re.search(r"pip\s+install\s+cymlp(?![-\w.*])", p)]
    assert mentions                                           # said once, as the future
    for paragraph in mentions:
        assert "once cymlp is published" in paragraph.lower().replace("\n", " "), paragraph


def test_docs_quote_extras_for_every_shell():
    """Single quotes fail in cmd.exe: extras and version pins are in double quotes."""
    files = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in files:
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"pip install[^\n`]*'", text), f"{path.name}: single-quoted pip argument"
    for path in sorted((ROOT / "cymlp").rglob("*.py")):
        assert "pip install '" not in path.read_text(encoding="utf-8"), path


def test_readme_sets_environment_variables_in_posix_and_powershell_syntax():
    text = README.read_text(encoding="utf-8")
    blocks = list(shell_blocks(text))
    posix = {m for info, cmds in blocks if info[0] == "bash" for c in cmds for m in re.findall(r"^(\w+)=\S+ ", c)}
    powershell = {m for info, cmds in blocks if info[0] == "powershell" for c in cmds
                  for m in re.findall(r"\$env:(\w+)", c)}
    assert "CYMLP_NO_OPENMP" in posix
    assert posix <= powershell, posix - powershell


def test_readme_cython_version_is_the_build_requirement():
    pyproject = toml(need("pyproject.toml"))
    pinned = [r for r in pyproject["build-system"]["requires"] if r.lower().startswith("cython")]
    assert pinned == ["Cython>=3.1"]
    text = README.read_text(encoding="utf-8")
    assert 'pip install "Cython>=3.1"' in text and "Cython>=3.0" not in text
    assert "Cython>=3.0" not in need("setup.py").read_text(encoding="utf-8")


def test_no_placeholder_urls():
    """There is no public repository or PyPI project yet: nothing links to one."""
    for path in (README, ROOT / "pyproject.toml", ROOT / "CITATION.cff", ROOT / "CHANGELOG.md",
                 *sorted((ROOT / "docs").glob("*.md"))):
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert "github.com/cymlp" not in text and "pypi.org/project/cymlp" not in text, path.name
    if (ROOT / "pyproject.toml").exists():
        assert "urls" not in toml(ROOT / "pyproject.toml")["project"]


def test_readme_wheel_promises_match_the_build_configuration():
    pyproject = toml(need("pyproject.toml"))
    cibw = pyproject["tool"]["cibuildwheel"]
    text = " ".join(README.read_text(encoding="utf-8").split())
    targets = {o["select"]: o["environment"]["MACOSX_DEPLOYMENT_TARGET"] for o in cibw["overrides"]
               if "MACOSX_DEPLOYMENT_TARGET" in o.get("environment", {})}
    assert targets == {"*-macosx_x86_64": "10.13", "*-macosx_arm64": "12.0"}
    assert "Intel from macOS 10.13, Apple silicon from macOS 12.0" in text
    assert "run on macOS 10.13 (Intel) and 12.0 (Apple silicon)" in text
    assert cibw["linux"]["manylinux-x86_64-image"] == "manylinux_2_28" and "glibc ≥ 2.28" in text
    assert cibw["linux"]["musllinux-x86_64-image"] == "musllinux_1_2" and "musl ≥ 1.2" in text
    assert "CPython 3.10–3.14" in text


# ------------------------------------------------------------ packaging metadata


def test_licence_expression_covers_code_and_data():
    pyproject = toml(need("pyproject.toml"))["project"]
    assert pyproject["license"] == "BSD-3-Clause AND CC-BY-4.0"
    assert set(pyproject["license-files"]) == {"LICENSE", "cymlp/data/README-digits.md"}
    assert "CC BY 4.0" in (ROOT / "cymlp" / "data" / "README-digits.md").read_text(encoding="utf-8") \
        if (ROOT / "cymlp" / "data" / "README-digits.md").exists() else True


def test_python_versions_agree_everywhere():
    """requires-python, the classifiers, the wheels built and the CI matrix: 3.10 to 3.14."""
    rc = release_check()
    pyproject = toml(need("pyproject.toml"))
    classifiers = [c.rsplit(" ", 1)[1] for c in pyproject["project"]["classifiers"]
                   if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert classifiers == ["3.10", "3.11", "3.12", "3.13", "3.14"]
    assert pyproject["project"]["requires-python"] == ">=3.10"
    assert pyproject["tool"]["cibuildwheel"]["build"] == [f"{p}-*" for p in rc.PYTHONS]
    assert [f"cp{v.replace('.', '')}" for v in classifiers] == list(rc.PYTHONS)
    yaml = pytest.importorskip("yaml")
    ci = yaml.safe_load(need(".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python"] == [classifiers[0], classifiers[-1]]


def test_every_wheel_is_repaired_licensed_and_tested():
    cibw = toml(need("pyproject.toml"))["tool"]["cibuildwheel"]
    assert "wheel_licenses.py --check-installed" in cibw["test-command"]
    assert '-m "not slow"' in cibw["test-command"]
    tools = {"linux": "auditwheel repair", "macos": "delocate-wheel", "windows": "delvewheel repair"}
    for platform, tool in tools.items():
        command = cibw[platform]["repair-wheel-command"]
        assert command.startswith(tool) and command.endswith("_build_helpers/wheel_licenses.py {dest_dir}")


def test_sdist_manifest_ships_the_release_files():
    manifest = need("MANIFEST.in").read_text(encoding="utf-8")
    include = next(line for line in manifest.splitlines() if line.startswith("include "))
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff"):
        assert name in include.split()
    assert "graft _build_helpers" in manifest


# ------------------------------------------------------------------ workflows


def workflows():
    yaml = pytest.importorskip("yaml")
    folder = need(".github/workflows")
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.yml"))}


def test_ci_workflow_tests_every_os_with_openmp():
    ci = workflows()["ci.yml"]
    oses = ci["jobs"]["test"]["strategy"]["matrix"]["os"]
    assert {"ubuntu-24.04", "macos-15", "macos-15-intel", "windows-2022"} == set(oses)
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "llvm-openmp" in text and "-Xpreprocessor -fopenmp" in text and "-lomp" in text
    assert 'grep "cymlp: OpenMP flags" build.log' in text


def test_wheel_workflow_covers_every_architecture_and_publishes_only_after_all():
    wheels = workflows()["wheels.yml"]
    cibw = toml(ROOT / "pyproject.toml")["tool"]["cibuildwheel"]
    matrix = wheels["jobs"]["wheels"]["strategy"]["matrix"]["include"]
    built = {(entry["os"], entry["archs"]) for entry in matrix}
    assert built == {("ubuntu-24.04", "x86_64"), ("ubuntu-24.04-arm", "aarch64"),
                     ("macos-15-intel", "x86_64"), ("macos-15", "arm64"), ("windows-2022", "AMD64")}
    archs = {a for _, a in built}
    assert set(cibw["linux"]["archs"]) | set(cibw["macos"]["archs"]) | set(cibw["windows"]["archs"]) == archs
    assert wheels["jobs"]["wheels"]["strategy"]["fail-fast"] is False
    assert set(wheels["jobs"]["check"]["needs"]) == {"wheels", "sdist"}
    for job in ("publish", "publish-testpypi"):
        assert wheels["jobs"][job]["needs"] == ["check"]
        assert wheels["jobs"][job]["permissions"] == {"id-token": "write"}
        assert any("pypa/gh-action-pypi-publish" in step.get("uses", "") for step in wheels["jobs"][job]["steps"])
    assert wheels["jobs"]["publish"]["if"] == "startsWith(github.ref, 'refs/tags/v')"
    on = wheels.get("on", wheels.get(True))           # PyYAML reads the key `on` as True
    assert on["push"]["tags"] == ["v*"]
    for name, flow in workflows().items():
        for job in flow["jobs"].values():
            runners = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
            assert "macos-13" not in runners, f"{name}: macos-13 is retired"


@pytest.mark.slow                     # starts a process
def test_workflows_validate_against_githubs_schema_and_a_broken_one_does_not(tmp_path):
    pytest.importorskip("check_jsonschema")
    files = sorted(need(".github/workflows").glob("*.yml"))
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    result = subprocess.run(command + [str(f) for f in files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(files[0].read_text(encoding="utf-8").replace("runs-on:", "runs_on:"), encoding="utf-8")
    assert subprocess.run(command + [str(broken)], capture_output=True).returncode != 0


# ------------------------------------------------------- CITATION and CHANGELOG


def test_citation_has_the_required_keys_and_this_version():
    text = need("CITATION.cff").read_text(encoding="utf-8")
    keys = set(re.findall(r"^([a-z-]+):", text, re.MULTILINE))
    assert {"cff-version", "message", "title", "authors", "version", "license"} <= keys
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.MULTILINE)
    assert release_check().citation_problems(text, cymlp.__version__) == []


@pytest.mark.slow                     # starts a process
def test_citation_validates_against_the_cff_schema():
    pytest.importorskip("check_jsonschema")
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                             "vendor.citation-file-format", "--default-filetype", "yaml",
                             str(need("CITATION.cff"))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_changelog_has_a_section_for_this_version_and_its_links_resolve():
    text = need("CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+) — (.+)$", text, re.MULTILINE)
    assert headings[0][0] == cymlp.__version__                      # the top section is this version
    assert headings[0][1] == "unreleased" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", headings[0][1])
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        assert "://" in target or (ROOT / target).exists(), target


def test_release_check_wants_a_dated_changelog_and_the_citation_version():
    rc = release_check()
    assert rc.changelog_problems("## 1.2.0 — unreleased\n", "1.2.0")       # not dated yet
    assert rc.changelog_problems("## 1.1.0 — 2026-01-02\n", "1.2.0")       # no section
    assert rc.changelog_problems("## 1.2.0 — 2026-01-02\n", "1.2.0") == []
    assert rc.citation_problems('version: "1.2.0"\n', "1.2.0") == []
    assert rc.citation_problems("version: 1.1.0\n", "1.2.0")


# ------------------------------------------------------------- release checks


def full_release(version="0.1.0"):
    rc = release_check()
    identifiers = [f"{py}-{plat}" for plats in rc.PROMISED.values() for plat in plats for py in rc.PYTHONS]
    tags = {"manylinux_x86_64": "manylinux_2_27_x86_64.manylinux_2_28_x86_64",
            "manylinux_aarch64": "manylinux_2_26_aarch64.manylinux_2_28_aarch64",
            "musllinux_x86_64": "musllinux_1_2_x86_64", "musllinux_aarch64": "musllinux_1_2_aarch64",
            "macosx_x86_64": "macosx_10_13_x86_64", "macosx_arm64": "macosx_12_0_arm64",
            "win_amd64": "win_amd64"}
    names = [f"cymlp-{version}-{py}-{py}-{tags[plat]}.whl" for py, plat in (i.split("-", 1) for i in identifiers)]
    return rc, identifiers, names + [f"cymlp-{version}.tar.gz"]


def test_release_check_accepts_a_complete_release_and_counts_35_wheels():
    rc, identifiers, names = full_release()
    assert len(identifiers) == 35 and rc.matrix_problems(
        {p: [i for i in identifiers if any(i.endswith(plat) for plat in rc.PROMISED[p])] for p in rc.PROMISED}) == []
    assert rc.dist_problems(names, identifiers, tag="v0.1.0") == []
    assert "35 wheels in all" in " ".join(need("docs/releasing.md").read_text(encoding="utf-8").split())


@pytest.mark.parametrize("change, message", [
    (lambda names: [n for n in names if "cp314-cp314-win_amd64" not in n], "build cp314-win_amd64: 0 wheels"),
    (lambda names: names + ["cymlp-0.1.0-cp39-cp39-win_amd64.whl"], "is no expected build"),
    (lambda names: [n for n in names if not n.endswith(".tar.gz")], "expected one sdist"),
    (lambda names: [n.replace("0.1.0-cp310", "0.1.1-cp310") for n in names], "more than one version"),
    (lambda names: names + ["notes.txt"], "unexpected file"),
])
def test_release_check_refuses_an_incomplete_or_mixed_release(change, message):
    rc, identifiers, names = full_release()
    problems = rc.dist_problems(change(names), identifiers)
    assert any(message in p for p in problems), problems


def test_release_check_refuses_a_tag_that_is_not_the_version():
    rc, identifiers, names = full_release()
    assert any("does not name the version" in p for p in rc.dist_problems(names, identifiers, tag="v0.2.0"))


@pytest.mark.slow                     # starts a process
def test_cibuildwheel_builds_cpython_310_to_314_everywhere():
    """cibuildwheel --print-build-identifiers, for Linux, macOS and Windows, with this pyproject."""
    rc = release_check()
    found = shutil.which("cibuildwheel") or shutil.which("cibuildwheel", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("cibuildwheel not installed (the lint extra has it)")
    identifiers = {p: rc.build_identifiers(p, found) for p in rc.PLATFORMS}
    assert rc.matrix_problems(identifiers) == []
    assert sum(map(len, identifiers.values())) == 35
