"""Model files: save/load round trips, hostile and damaged files, zip bombs, file modes, signals.

Issue 11's cases 2, 3, 8 (the load part) and 12 each have a test named after the case.  A
damaged or hostile file must raise ValueError naming the path (or load correctly), never
anything else, and must not make ``load`` decompress or allocate much more than the model needs.
"""

import io
import json
import os
import pickle
import re
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
from _helpers import BACKENDS, read_line_until, subprocess_env

import cymlp
import cymlp._files
from cymlp import Network, cli

SIZES = [4, 6, 3]
TEMP_NAME = re.compile(r"model\.npz\.cymlp-tmp-[A-Za-z0-9_]+")


def saved(tmp_path, dtype="float32", name="model.npz", sizes=SIZES, seed=1):
    net = Network(sizes, dtype=dtype, backend="numpy", seed=seed)
    path = tmp_path / name
    net.save(path)
    return net, path


def assert_rejected(path, match=None):
    with pytest.raises(ValueError) as info:
        Network.load(path)
    assert str(path) in str(info.value)
    if match is not None:
        assert re.search(match, str(info.value)), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- zip surgery helpers

def members(data):
    """``{name: bytes}`` of a zip's members, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def rezip(content, compression=zipfile.ZIP_STORED):
    """A zip holding ``content`` (``{name: bytes}``), written by zipfile."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in content.items():
            z.writestr(name, data)
    return buf.getvalue()


def npy(array=None, header=None, payload=b""):
    """The bytes of a .npy file: of ``array``, or a raw ``header`` dict text plus ``payload``."""
    if array is not None:
        f = io.BytesIO()
        np.save(f, array, allow_pickle=False)
        return f.getvalue()
    text = header.encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def directory_offsets(data):
    """Offsets of the (central directory entry, local header) of each member, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        start, infos = z.start_dir, z.infolist()
    out, pos = [], start
    for info in infos:
        assert data[pos:pos + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack("<3H", data[pos + 28:pos + 34])
        out.append((pos, info.header_offset))
        pos += 46 + n + m + k
    return out


def patch_u16(data, central_field, local_field, value, which, where=("central", "local")):
    """Set a 16-bit field of member ``which``'s central entry and/or local header."""
    data = bytearray(data)
    central, local = directory_offsets(bytes(data))[which]
    if "central" in where:
        data[central + central_field:central + central_field + 2] = struct.pack("<H", value)
    if "local" in where:
        data[local + local_field:local + local_field + 2] = struct.pack("<H", value)
    return bytes(data)


def set_flags(data, which, flags, where=("central", "local")):
    return patch_u16(data, 8, 6, flags, which, where)


def set_method(data, which, method, where=("central", "local")):
    return patch_u16(data, 10, 8, method, which, where)


def raw_zip(entries):
    """A zip written by hand: ``entries`` are (name, stored bytes, method, crc, file_size)."""
    out, central = io.BytesIO(), []
    for name, data, method, crc, size in entries:
        offset = out.tell()
        name = name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21,
                              crc, len(data), size, len(name), 0) + name)
        out.write(data)
        central.append(struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21,
                                   crc, len(data), size, len(name), 0, 0, 0, 0, 0, offset) + name)
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def stored_entries(data):
    return [(name, body, zipfile.ZIP_STORED, zlib.crc32(body), len(body))
            for name, body in members(data).items()]


def deflate_bomb_entry(name, gib=1):
    """A deflated member of ``gib`` GiB of zeros, built in well under a second.

    Each 1 MiB block is compressed independently (a full flush resets the
    dictionary), so one compressed block repeated is a valid deflate stream.
    """
    block = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    stream = one * (1024 * gib) + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(block, crc)
    return (name, stream, zipfile.ZIP_DEFLATED, crc, (1 << 30) * gib)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_is_exact(tmp_path, backend, dtype):
    net, path = saved(tmp_path, dtype)
    loaded = Network.load(path, backend=backend)
    assert (loaded.sizes, loaded.activation, loaded.output, loaded.loss_name, loaded.dtype,
            loaded.seed, loaded.backend) == (net.sizes, net.activation, net.output, net.loss_name,
                                             net.dtype, net.seed, backend)
    np.testing.assert_array_equal(loaded.get_flat_params(), net.get_flat_params())
    assert loaded._theta.flags.c_contiguous and loaded._theta.flags.owndata
    assert np.shares_memory(loaded.weights[0], loaded._theta)
    X = np.random.default_rng(0).standard_normal((5, SIZES[0]))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.copy(backend=backend).predict_proba(X))


def test_pickle_and_copy_round_trip(tmp_path):
    net, _ = saved(tmp_path)
    net.n_threads = 1
    net.fit(np.random.default_rng(0).standard_normal((12, 4)), np.arange(12) % 3, epochs=1, batch_size=4)
    for clone in (pickle.loads(pickle.dumps(net)), net.copy()):
        np.testing.assert_array_equal(clone.get_flat_params(), net.get_flat_params())
        assert clone._rng.bit_generator.state == net._rng.bit_generator.state
        assert len(clone.history_) == 1
        assert (clone.backend, clone.n_threads) == (net.backend, 1)
        clone.weights[0][...] = 0
        assert not np.all(net.weights[0] == 0)


def test_load_does_not_initialise_a_network_randomly(tmp_path, monkeypatch):
    # issue 11, case 3: the network is built once from the file, not initialised and overwritten
    net, path = saved(tmp_path)

    def no_init(*args, **kwargs):
        raise AssertionError("load called Network.__init__")
    monkeypatch.setattr(Network, "__init__", no_init)
    np.testing.assert_array_equal(Network.load(path).get_flat_params(), net.get_flat_params())


def test_a_loaded_network_draws_from_its_saved_seed(tmp_path):
    _, path = saved(tmp_path, seed=11)
    assert Network.load(path)._rng.bit_generator.state == np.random.default_rng(11).bit_generator.state


def test_load_never_uses_pickle_or_np_load(tmp_path, monkeypatch):
    net, path = saved(tmp_path)
    evil = tmp_path / "evil.npz"                       # a pickled object array smuggled in
    np.save(tmp_path / "obj.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    evil.write_bytes(rezip({**members(path.read_bytes()), "evil.npy": (tmp_path / "obj.npy").read_bytes()}))

    def forbidden(*args, **kwargs):
        raise AssertionError("load must not call pickle or np.load")
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    np.testing.assert_array_equal(Network.load(path).get_flat_params(), net.get_flat_params())
    assert_rejected(evil, "unknown members")


def test_a_directory_raises_os_error(tmp_path):
    with pytest.raises(OSError):
        Network.load(tmp_path)


def test_deflated_and_fortran_order_files_load_equal(tmp_path):
    net, path = saved(tmp_path, "float64")
    content = members(path.read_bytes())
    (tmp_path / "deflated.npz").write_bytes(rezip(content, zipfile.ZIP_DEFLATED))
    np.testing.assert_array_equal(Network.load(tmp_path / "deflated.npz").get_flat_params(), net.get_flat_params())
    content["W0.npy"] = npy(np.asfortranarray(net.weights[0]))
    assert b"'fortran_order': True" in content["W0.npy"]
    (tmp_path / "fortran.npz").write_bytes(rezip(content))
    np.testing.assert_array_equal(Network.load(tmp_path / "fortran.npz").get_flat_params(), net.get_flat_params())


# ---------------------------------------------------------------- issue 11, case 2: the reproducers

def _case2_compression_method(data):
    return set_method(data, 2, 99)


def _case2_encrypted_flag(data):
    return set_flags(data, 2, 0x0001)


def _case2_brace_removed(data):
    content = members(data)
    content["W0.npy"] = content["W0.npy"].replace(b"}", b" ", 1)
    return rezip(content)


def _case2_flipped_deflated_byte(data):
    deflated = bytearray(rezip(members(data), zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(io.BytesIO(bytes(deflated))) as z:
        info = z.getinfo("W0.npy")
    start = info.header_offset + 30 + len("W0.npy")
    deflated[start + info.compress_size // 2] ^= 0x5A
    return bytes(deflated)


def _case2_no_npy_suffix(data):
    content = members(data)
    content["W0"] = content.pop("W0.npy")
    return rezip(content)


def _case2_nested_config(data):
    content = members(data)
    content["config.npy"] = npy(np.array("[" * 100000))
    return rezip(content)


def _case2_nested_config_under_the_size_cap(data):
    content = members(data)
    content["config.npy"] = npy(np.array("[" * 12000))
    return rezip(content)


def _case2_extra_member_claiming_a_huge_shape(data):
    content = members(data)
    content["extra.npy"] = npy(header="{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }")
    return rezip(content)


def _case2_parameter_claiming_a_huge_shape(data):
    content = members(data)
    content["W0.npy"] = npy(header="{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }")
    return rezip(content)


CASE2 = {f.__name__[len("_case2_"):]: f for f in (
    _case2_compression_method, _case2_encrypted_flag, _case2_brace_removed,
    _case2_flipped_deflated_byte, _case2_no_npy_suffix, _case2_nested_config,
    _case2_nested_config_under_the_size_cap, _case2_extra_member_claiming_a_huge_shape,
    _case2_parameter_claiming_a_huge_shape)}


@pytest.mark.parametrize("case", CASE2)
def test_case2_damaged_file_raises_value_error_naming_the_path(tmp_path, case):
    _, good = saved(tmp_path)
    path = tmp_path / f"{case}.npz"
    path.write_bytes(CASE2[case](good.read_bytes()))
    assert_rejected(path)


@pytest.mark.parametrize("case", ["compression_method", "encrypted_flag", "no_npy_suffix"])
def test_case2_cymlp_predict_prints_one_line_for_a_damaged_model(tmp_path, capsys, case):
    _, good = saved(tmp_path, sizes=[64, 8, 10])
    path = tmp_path / f"{case}.npz"
    path.write_bytes(CASE2[case](good.read_bytes()))
    status = cli.main(["predict", str(path)])
    _, err = capsys.readouterr()
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and "cymlp predict: error" in err


@pytest.mark.slow
def test_case2_cymlp_predict_in_a_subprocess_exits_non_zero_without_traceback(tmp_path):
    path = tmp_path / "damaged.npz"
    _, good = saved(tmp_path, sizes=[64, 8, 10])
    path.write_bytes(_case2_flipped_deflated_byte(good.read_bytes()))
    result = subprocess.run([sys.executable, "-m", "cymlp", "predict", str(path)], env=subprocess_env(),
                            cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_case2_existing_broken_files_name_the_path(tmp_path):
    _, good = saved(tmp_path)
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "text.npz": b"hello, I am not a model\n",
        "pickle.npz": pickle.dumps(Network(SIZES, backend="numpy")),
        "single.npy": npy(np.zeros((5, 4))),
        "object.npz": rezip(dict(members(data), **{"W0.npy": npy(header=(
            "{'descr': '|O', 'fortran_order': False, 'shape': (6, 4), }"), payload=b"\x80" * 64)})),
        "version-2.npz": rezip(dict(members(data), **{"format_version.npy": npy(np.array(2))})),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert_rejected(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "missing.npz")


# ---------------------------------------------------------------- the fuzz test

def _mutations(good, rng):
    """One random damaged variant of ``good`` (bytes of a saved model) per call."""
    content = members(good)
    names = list(content)

    def flip():
        data = bytearray(good)
        for _ in range(rng.integers(1, 5)):
            data[rng.integers(len(data))] ^= int(rng.integers(1, 256))
        return bytes(data)

    def truncate():
        return good[:rng.integers(len(good))]

    def rename():
        new = dict(content)
        old = names[rng.integers(len(names))]
        new[str(rng.choice(["X0.npy", "W9.npy", "w0.npy", "W0.npz", "W0", "config", "../W0.npy",
                            "W00.npy", "b1.npy", "format_version.npy"]))] = new.pop(old)
        return rezip(new)

    def extra():
        new = dict(content)
        new[str(rng.choice(["extra.npy", "W2.npy", "b5.npy", "notes.txt", "W0.npy/"]))] = \
            npy(np.zeros(int(rng.integers(1, 100))))
        return rezip(new)

    def drop():
        new = dict(content)
        new.pop(names[rng.integers(len(names))])
        return rezip(new)

    def flags():
        where = [("central",), ("local",), ("central", "local")][rng.integers(3)]
        return set_flags(good, int(rng.integers(len(names))), 1 << int(rng.integers(16)), where)

    def method():
        where = [("central",), ("local",), ("central", "local")][rng.integers(3)]
        return set_method(good, int(rng.integers(len(names))),
                          int(rng.choice([1, 6, 9, 12, 14, 93, 98, 99, 0xFFFF])), where)

    def header_edit():
        new = dict(content)
        name = names[rng.integers(len(names))]
        body = bytearray(new[name])
        edit = rng.integers(6)
        if edit == 0:
            body = body.replace(b"}", b" ", 1)
        elif edit == 1:
            body = body.replace(b"'shape': (", b"'shape': (1000000000000, ", 1)
        elif edit == 2:
            body = body.replace(b"False", b"True ", 1)
        elif edit == 3:
            body[rng.integers(10, 64)] = int(rng.choice(list(b"{}()[]'\",:0123456789 ")))
        elif edit == 4:
            body = body.replace(b"<f", rng.choice([b"<i", b"<c", b">f", b"|O", b"<U", b"<M"]), 1)
        else:
            body[8:10] = struct.pack("<H", int(rng.integers(0, 65536)))
        new[name] = bytes(body)
        return rezip(new)

    def config_edit():
        new = dict(content)
        config = json.loads(str(np.load(io.BytesIO(content["config.npy"]))))
        choice = rng.integers(7)
        if choice == 0:
            config["sizes"] = [int(n) for n in rng.integers(1, 10**7, rng.integers(1, 5))]
        elif choice == 1:
            config["sizes"] = [4, 6.0, 3]
        elif choice == 2:
            config.pop(str(rng.choice(list(config))))
        elif choice == 3:
            config[str(rng.choice(list(config)))] = [None, "x", -1, 10**30, {}][rng.integers(5)]
        elif choice == 4:
            config["extra"] = 1
        elif choice == 5:
            config = "[" * int(rng.integers(1, 20000))
        else:
            config["dtype"] = "float64"        # float32 arrays under a float64 config: cast, loads
        text = config if isinstance(config, str) else json.dumps(config)
        new["config.npy"] = npy(np.array(text))
        return rezip(new)

    def deflated_flip():
        data = bytearray(rezip(content, zipfile.ZIP_DEFLATED))
        data[rng.integers(len(data))] ^= int(rng.integers(1, 256))
        return bytes(data)

    kinds = [flip, truncate, rename, extra, drop, flags, method, header_edit, config_edit, deflated_flip]
    while True:
        yield kinds[rng.integers(len(kinds))]()


def check_load(path, expected):
    """ValueError naming ``path``, or a network with ``expected``'s shapes and finite parameters."""
    try:
        net = Network.load(path)
    except ValueError as exc:
        assert str(path) in str(exc), str(exc)
        return "rejected"
    assert net.sizes == expected.sizes
    assert net.get_flat_params().shape == expected.get_flat_params().shape
    assert np.isfinite(net.get_flat_params()).all()
    same = np.array_equal(net.get_flat_params().astype(np.float64), expected.get_flat_params().astype(np.float64))
    return "equal" if same else "loaded"


def test_fuzzed_model_files_raise_value_error_or_load_correctly(tmp_path):
    expected, good = saved(tmp_path)
    rng = np.random.default_rng(20261128)
    outcomes = {"rejected": 0, "equal": 0, "loaded": 0}
    path = tmp_path / "fuzzed.npz"
    for _, data in zip(range(300), _mutations(good.read_bytes(), rng)):
        path.write_bytes(data)
        outcomes[check_load(path, expected)] += 1
    assert outcomes["rejected"] > 150 and outcomes["equal"] > 0, outcomes


# ---------------------------------------------------------------- issue 11, case 3: zip bombs

MEMORY_PROBE = """
import json, sys
from cymlp import Network

def status(field):                              # kB, from /proc/self/status (Linux)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

Network.load(sys.argv[1])                       # warm up: imports, first allocations
results = []
for path in sys.argv[2:]:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                            # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    try:
        Network.load(path)
        outcome = "loaded"
    except ValueError as exc:
        outcome = "ValueError" if path in str(exc) else "ValueError without the path"
    results.append([outcome, status("VmHWM") - before])
print(json.dumps(results))
"""


def probe_memory(warmup, *paths):
    """``[outcome, growth of the peak RSS in KiB]`` for loading each path, in a fresh process."""
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(warmup), *map(str, paths)],
                            env=subprocess_env(), cwd=os.path.dirname(warmup), capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_case3_zip_bombs_and_a_big_npy_are_rejected_without_inflating(tmp_path):
    _, good = saved(tmp_path)
    entries = stored_entries(good.read_bytes())
    bomb_extra = tmp_path / "bomb-extra.npz"        # the case: an unknown member of 1 GiB
    bomb_extra.write_bytes(raw_zip([*entries, deflate_bomb_entry("extra.npy")]))
    bomb_param = tmp_path / "bomb-param.npz"        # a known name whose size the config contradicts
    bomb_param.write_bytes(raw_zip([e for e in entries if e[0] != "W0.npy"]
                                   + [deflate_bomb_entry("W0.npy")]))
    big_npy = tmp_path / "big.npy"                  # 1 GiB (sparse) .npy passed by mistake
    with open(big_npy, "wb") as f:
        f.write(npy(header=f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({1 << 28},), }}"))
        f.truncate(f.tell() + (1 << 30))
    assert bomb_extra.stat().st_size < 8 << 20
    t0 = time.perf_counter()
    results = probe_memory(good, bomb_extra, bomb_param, big_npy)
    for (outcome, growth_kib), path in zip(results, (bomb_extra, bomb_param, big_npy)):
        assert outcome == "ValueError", (path.name, outcome)
        assert growth_kib < 50 * 1024, (path.name, growth_kib)    # inflating would take 1 GiB
    assert time.perf_counter() - t0 < 60                           # was 9 s of inflating per file


def test_case3_member_claiming_more_than_deflate_can_expand_is_rejected(tmp_path):
    _, good = saved(tmp_path)
    entries = stored_entries(good.read_bytes())
    name, body, _, crc, _ = next(e for e in entries if e[0] == "W0.npy")
    compressed = zlib.compress(body)[2:-4]
    lying = [e for e in entries if e[0] != "W0.npy"] + [(name, compressed, zipfile.ZIP_DEFLATED, crc, 10**9)]
    path = tmp_path / "lying.npz"
    path.write_bytes(raw_zip(lying))
    assert_rejected(path, "W0")


def test_case3_loading_a_real_model_allocates_about_its_size(tmp_path):
    sizes = [2000, 2500, 10]                       # 5.0 M parameters: 20 MB in float32
    _, path = saved(tmp_path, sizes=sizes, name="big.npz")
    _, warm = saved(tmp_path, name="warm.npz")
    ((outcome, growth_kib),) = probe_memory(warm, path)
    model_kib = path.stat().st_size / 1024
    assert outcome == "loaded"
    # the parameters (~20 MB) plus one read chunk, not a copy of every member and a random init
    assert growth_kib < 1.5 * model_kib + 8 * 1024, (growth_kib, model_kib)


# ---------------------------------------------------------------- issue 11, case 8 (load)

@pytest.mark.parametrize("array_dtype, value", [("float64", 1e300), ("longdouble", "1e4000")])
def test_case8_float32_config_with_values_too_large_for_float32_is_rejected(tmp_path, array_dtype, value):
    if array_dtype == "longdouble" and np.finfo(np.longdouble).max < np.longdouble("1e4000"):
        pytest.skip("long double is double on this platform")
    net, good = saved(tmp_path, "float32")
    content = members(good.read_bytes())
    content["W1.npy"] = npy(np.full(net.weights[1].shape, np.array(value, dtype=array_dtype)))
    path = tmp_path / "too-large.npz"
    path.write_bytes(rezip(content))
    assert_rejected(path, "too large for float32")


def test_case8_wider_arrays_that_fit_are_cast_to_the_configured_dtype(tmp_path):
    net, good = saved(tmp_path, "float32")
    content = members(good.read_bytes())
    content["W1.npy"] = npy(net.weights[1].astype(np.float64))
    content["b1.npy"] = npy(net.biases[1].astype(np.longdouble))
    path = tmp_path / "wide.npz"
    path.write_bytes(rezip(content))
    loaded = Network.load(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded.get_flat_params(), net.get_flat_params())


def test_case8_nan_in_a_file_is_rejected(tmp_path):
    net, good = saved(tmp_path, "float64")
    content = members(good.read_bytes())
    content["b0.npy"] = npy(np.full(net.biases[0].shape, np.nan))
    path = tmp_path / "nan.npz"
    path.write_bytes(rezip(content))
    assert_rejected(path, "NaN")


# ---------------------------------------------------------------- issue 11, case 12: saving

@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_case12_resaving_keeps_the_file_mode(tmp_path, mode):
    net, path = saved(tmp_path)
    os.chmod(path, mode)
    net.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_case12_a_new_file_gets_the_umask_mode(tmp_path):
    net = Network(SIZES, backend="numpy")
    old = os.umask(0o027)
    try:
        net.save(tmp_path / "new.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640


def test_case12_saving_to_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    old, _ = saved(tmp_path / "real")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    new = Network(SIZES, backend="numpy", seed=7)
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(Network.load(target).get_flat_params(), new.get_flat_params())
    assert not np.array_equal(new.get_flat_params(), old.get_flat_params())
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "real"]
    assert os.listdir(tmp_path / "real") == ["model.npz"]
    dangling = tmp_path / "dangling.npz"                 # a link to a file not yet there: created
    dangling.symlink_to(tmp_path / "real" / "fresh.npz")
    new.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "fresh.npz").is_file()


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
def test_a_crash_or_ctrl_c_mid_save_keeps_the_old_model_and_removes_the_temp_file(
        tmp_path, monkeypatch, where, error):
    good, path = saved(tmp_path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        if where == "savez":      # write half a file first, as a crash would
            args[0].write(b"PK\x03\x04 partial")
        raise error("disk full (simulated)")
    monkeypatch.setattr(*{"savez": (np, "savez"), "fsync": (os, "fsync"), "replace": (os, "replace")}[where],
                        crash)
    with pytest.raises(error):
        Network([4, 7, 3], backend="numpy", seed=9).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    np.testing.assert_array_equal(Network.load(path).get_flat_params(), good.get_flat_params())


SIGTERM_CHILD = """
import os, sys, time
from cymlp import Network
net = Network([4, 6, 3], backend="numpy", seed=5)

def stalled_fsync(fd):          # a large save, caught in the middle
    print("SAVING", flush=True)
    time.sleep(60)
os.fsync = stalled_fsync
net.save(sys.argv[1])
"""


@pytest.mark.slow
def test_case12_sigterm_mid_save_leaves_the_old_model_and_only_a_documented_temp_file(tmp_path):
    _, path = saved(tmp_path)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_CHILD, str(path)], env=subprocess_env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_line_until(proc, "SAVING", timeout=60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert path.read_bytes() == before
    leftovers = sorted(set(os.listdir(tmp_path)) - {"model.npz"})
    assert len(leftovers) == 1 and TEMP_NAME.fullmatch(leftovers[0]), leftovers  # docs/guarantees.md
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))


def test_temp_file_name_matches_the_documentation():
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "guarantees.md")) as f:
        text = f.read()
    assert "PATH.cymlp-tmp-" in text
    assert cymlp._files.TEMP_INFIX == ".cymlp-tmp-"


# ---------------------------------------------------------------- the memory bound (issue 21, item 14)


def test_max_bytes_refuses_before_allocating(tmp_path):
    """A model needing more memory than max_bytes is refused from its configuration alone."""
    import tracemalloc
    net = Network([300, 1000, 10], dtype="float64", backend="numpy", seed=0)    # 311,010 params
    net.fit(np.zeros((4, 300)), [0, 1, 2, 3], epochs=1, batch_size=4, optimizer="adam")   # + m, v
    path = tmp_path / "m.npz"
    net.save(path)
    needed = 3 * 311_010 * 8
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"needs {needed:,} bytes.*max_bytes=1,000,000.*"
                                             "Network.load\\(path, max_bytes=...\\).*--max-model-bytes"):
            Network.load(path, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < needed / 10                             # nothing of the model's size was allocated
    assert Network.load(path, max_bytes=needed).n_params == 311_010
    assert Network.load(path, max_bytes=None).n_params == 311_010
    assert Network.load(path).n_params == 311_010         # the default: 4 GiB
    net.save(path, training_state=False)                  # one buffer without the state
    assert Network.load(path, max_bytes=311_010 * 8).training_state_ is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1GB", True])
def test_max_bytes_itself_is_checked_before_the_file(tmp_path, bad):
    with pytest.raises((TypeError, ValueError), match="max_bytes"):
        Network.load(tmp_path / "missing.npz", max_bytes=bad)
