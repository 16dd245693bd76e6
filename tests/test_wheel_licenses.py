"""_build_helpers/wheel_licenses.py: the bundled OpenMP runtime's licence
appended to a repaired wheel's LICENSE, with RECORD kept valid.

The real repaired Linux wheel is checked by .ci/run (section 3); these tests
use small synthetic wheels laid out as auditwheel, delocate and delvewheel
leave them.
"""

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "_build_helpers" / "wheel_licenses.py").exists():
    pytest.skip("needs the source tree (_build_helpers/)", allow_module_level=True)
sys.path.insert(0, str(ROOT))
from _build_helpers import wheel_licenses

DIST_INFO = "cymlp-0.1.0.dist-info"
BUNDLED = {
    "libgomp": "cymlp.libs/libgomp-a34b3233.so.1.0.0",          # auditwheel
    "libomp": "cymlp/.dylibs/libomp.dylib",                     # delocate
    "vcomp": "cymlp.libs/vcomp140-5d2ef5a1.dll",                # delvewheel
}


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder, libraries):
    files = {
        "cymlp/__init__.py": b"__version__ = '0.1.0'\n",
        "cymlp/_kernels.cpython-311-x86_64-linux-gnu.so": b"\x7fELF...",
        f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.4\nName: cymlp\nVersion: 0.1.0\n"
                                 b"License-Expression: BSD-3-Clause AND CC-BY-4.0\nLicense-File: LICENSE\n",
        f"{DIST_INFO}/licenses/LICENSE": b"BSD 3-Clause License\n\nCopyright (c) cymlp developers\n",
        **dict.fromkeys(libraries, b"binary"),
    }
    record = "\n".join(record_line(n, d) for n, d in files.items()) + f"\n{DIST_INFO}/RECORD,,\n"
    path = Path(folder) / "cymlp-0.1.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{DIST_INFO}/RECORD", record)
    return path


def read(path):
    with zipfile.ZipFile(path) as wheel:
        return {info.filename: wheel.read(info) for info in wheel.infolist()}


def assert_record_matches(contents):
    lines = contents[f"{DIST_INFO}/RECORD"].decode().splitlines()
    listed = {line.split(",")[0]: line for line in lines}
    assert set(listed) == set(contents)
    for name, data in contents.items():
        if name != f"{DIST_INFO}/RECORD":
            assert listed[name] == record_line(name, data), name


@pytest.mark.parametrize("runtime", sorted(BUNDLED))
def test_licence_of_the_bundled_runtime_is_appended_and_record_updated(tmp_path, runtime):
    wheel = make_wheel(tmp_path, [BUNDLED[runtime]])
    before = read(wheel)
    assert wheel_licenses.add_licence(wheel) == runtime
    after = read(wheel)
    licence = after[f"{DIST_INFO}/licenses/LICENSE"].decode()
    assert licence.startswith("BSD 3-Clause License")                # the project's own licence first
    assert wheel_licenses.MARKER in licence
    assert wheel_licenses.licence_text(runtime).strip() in licence
    assert_record_matches(after)
    assert after[f"{DIST_INFO}/METADATA"] == before[f"{DIST_INFO}/METADATA"]   # metadata as in the sdist
    assert list(after) == list(before)                                        # same files, same order
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]         # no temporary file left

    wheel_licenses.add_licence(wheel)                                         # a second run changes nothing
    assert read(wheel) == after


def test_each_runtime_licence_names_its_terms():
    assert "GCC RUNTIME LIBRARY EXCEPTION" in wheel_licenses.licence_text("libgomp")
    assert "GNU GENERAL PUBLIC LICENSE" in wheel_licenses.licence_text("libgomp")
    assert "LLVM Exceptions to the Apache 2.0 License" in wheel_licenses.licence_text("libomp")
    assert "Apache License" in wheel_licenses.licence_text("libomp")
    assert "Microsoft" in wheel_licenses.licence_text("vcomp")
    for runtime in wheel_licenses.RUNTIMES:
        assert wheel_licenses.licence_text(runtime).startswith(wheel_licenses.MARKER)


@pytest.mark.parametrize("libraries, message", [
    ([], "no OpenMP runtime"),
    ([BUNDLED["libgomp"], BUNDLED["libomp"]], "bundles exactly one"),
])
def test_a_wheel_without_exactly_one_runtime_is_refused_untouched(tmp_path, libraries, message):
    wheel = make_wheel(tmp_path, libraries)
    before = wheel.read_bytes()
    with pytest.raises(ValueError, match=message):
        wheel_licenses.add_licence(wheel)
    assert wheel.read_bytes() == before
    assert wheel_licenses.main([str(tmp_path)]) == 1


def test_command_line_takes_a_folder_as_cibuildwheel_passes_it(tmp_path, capsys):
    make_wheel(tmp_path, [BUNDLED["libgomp"]])
    assert wheel_licenses.main([str(tmp_path)]) == 0
    assert "licence of the bundled libgomp" in capsys.readouterr().out


def test_runtime_detection_on_real_file_names():
    assert wheel_licenses.bundled_runtimes(["cymlp.libs/libgomp-24e2ab19.so.1.0.0"]) == ["libgomp"]
    assert wheel_licenses.bundled_runtimes(["cymlp/.dylibs/libomp.dylib"]) == ["libomp"]
    assert wheel_licenses.bundled_runtimes(["cymlp.libs\\VCOMP140-aa.dll"]) == ["vcomp"]
    assert wheel_licenses.bundled_runtimes(["cymlp/_kernels.cpython-311-x86_64-linux-gnu.so",
                                            "cymlp/libgomp_notes.txt"]) == []
