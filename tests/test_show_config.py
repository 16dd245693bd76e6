"""``cymlp.show_config()``: prints no None field; ``mode="dicts"`` returns the same information."""

import os
import re

import pytest
import threadpoolctl

import cymlp

# what threadpoolctl reports for libgomp: no version, no architecture
GOMP = {"user_api": "openmp", "internal_api": "openmp", "prefix": "libgomp", "version": None,
        "num_threads": 2, "filepath": "/usr/lib/libgomp.so.1"}
OPENBLAS = {"user_api": "blas", "internal_api": "openblas", "prefix": "libopenblas", "version": "0.3.30",
            "num_threads": 2, "threading_layer": "pthreads", "architecture": "Haswell",
            "filepath": "/x/libopenblas.so"}


@pytest.fixture
def unknown_fields(monkeypatch):
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: [dict(OPENBLAS), dict(GOMP)])
    monkeypatch.setattr(os, "cpu_count", lambda: None)


def values(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from values(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from values(value)
    else:
        yield obj


def test_the_printout_has_no_none(capsys, unknown_fields):
    assert cymlp.show_config() is None
    out = capsys.readouterr().out
    assert not re.search(r"\bNone\b", out), out
    assert "cpu_count" not in out
    assert "    - openmp (openmp), 2 threads, /usr/lib/libgomp.so.1" in out
    assert "    - openblas 0.3.30 (blas), 2 threads, pthreads threading, Haswell, /x/libopenblas.so" in out


def test_the_dict_form_holds_what_is_printed(capsys, unknown_fields):
    info = cymlp.show_config(mode="dicts")
    assert capsys.readouterr().out == ""                 # returned, not printed
    assert None not in list(values(info))
    assert "cpu_count" not in info and "version" not in info["threadpools"][1]
    assert info["threadpools"][0] == {k: v for k, v in OPENBLAS.items() if k != "prefix"}
    assert info["backends"] == list(cymlp.available_backends())
    cymlp.show_config()
    out = capsys.readouterr().out
    for key, value in info.items():
        if key != "threadpools":
            assert f"{key:>20}: {value}" in out


def test_the_dict_form_on_this_machine():
    info = cymlp.show_config(mode="dicts")
    assert info["cymlp"] == cymlp.__version__ and info["default_n_threads"] >= 1
    assert isinstance(info["openmp"], bool) and isinstance(info["threadpools"], list)
    assert ("build" in info) == ("cython" in info["backends"]) != ("compiled_path" in info)
    assert None not in list(values(info))


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="'stdout' or 'dicts'"):
        cymlp.show_config(mode="json")
