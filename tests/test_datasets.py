"""Tests for cymlp.datasets: IDX files, loaders, split and scaling helpers."""

import gzip

import numpy as np
import pytest

from cymlp import _fashion_mnist, datasets
from cymlp.datasets import (
    load_digits,
    load_fashion_mnist,
    make_random_classification,
    one_hot,
    read_idx,
    scale_to_unit,
    split_train_test,
    standardize,
    write_idx,
)

DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
FASHION_NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "dtype, shape",
    [
        (np.uint8, (5, 28, 28)),
        (np.int8, (7,)),
        (np.int16, (3, 4)),
        (np.int32, (2, 3, 4, 5)),
        (np.float32, (6, 2)),
        (np.float64, (0, 3)),
    ],
)
def test_idx_round_trip_keeps_values_shape_and_dtype(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info:
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        array = rng.standard_normal(shape).astype(dtype)
    path = tmp_path / f"array.idx{suffix}"
    write_idx(path, array)

    result = read_idx(path)
    assert result.dtype == dtype and result.dtype.isnative
    assert result.shape == shape
    assert result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, array)


def test_idx_is_big_endian_with_the_documented_header(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.array([[1, 2, 3]], dtype=np.int16))
    assert path.read_bytes() == (
        b"\x00\x00\x0b\x02"  # magic: int16, 2 dimensions
        b"\x00\x00\x00\x01" b"\x00\x00\x00\x03"  # shape (1, 3)
        b"\x00\x01\x00\x02\x00\x03"  # big-endian 1, 2, 3
    )


def test_write_idx_gzips_only_names_ending_in_gz(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == (tmp_path / "a").read_bytes()


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_idx(tmp_path / "a.gz", array)
    renamed = tmp_path / "no-suffix"
    renamed.write_bytes((tmp_path / "a.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), array)


@pytest.mark.parametrize("bad", [np.int64, np.uint16, np.bool_, np.complex64])
def test_write_idx_rejects_dtypes_idx_cannot_store(tmp_path, bad):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=bad))


def test_write_idx_rejects_zero_dimensional_arrays(tmp_path):
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a.idx", np.uint8(3))


def _valid_idx_bytes():
    # uint8 array of shape (2, 3): header (4 + 2*4 bytes) then 6 data bytes.
    return b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03" + bytes(range(6))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "two zero bytes"),
        (b"hello, this is a text file\n", "not an IDX file"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", "unknown IDX type code 0x0A"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (_valid_idx_bytes()[:-1], "truncated IDX data"),
        (_valid_idx_bytes() + b"\x00\x00", "2 trailing bytes"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x02" + b"\x00" * 7, "truncated IDX data"),
    ],
    ids=[
        "bad-magic",
        "text-file",
        "wrong-type-code",
        "zero-dims",
        "empty-header",
        "truncated-header",
        "truncated-data",
        "trailing-bytes",
        "float32-short",
    ],
)
def test_read_idx_rejects_corrupt_files_naming_file_and_problem(tmp_path, content, message):
    plain, gzipped = tmp_path / "bad.idx", tmp_path / "bad.idx.gz"
    for path, data in [(plain, content), (gzipped, gzip.compress(content))]:
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message) as error:
            read_idx(path)
        assert str(path) in str(error.value)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_valid_idx_bytes() * 50)[:-10])
    with pytest.raises(ValueError, match="gzip") as error:
        read_idx(path)
    assert str(path) in str(error.value)


# ------------------------------------------------------------------ digits


@pytest.mark.parametrize("dtype", ["float64", "float32", np.float32])
def test_load_digits_shape_dtype_range_and_class_counts(dtype):
    X, y = load_digits(dtype=dtype)
    assert X.shape == (1797, 64) and X.dtype == np.dtype(dtype) and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 1
    np.testing.assert_array_equal(np.bincount(y), DIGITS_CLASS_COUNTS)


def test_load_digits_unscaled_gives_pixel_counts_0_to_16():
    X, _ = load_digits(scale=False)
    assert X.max() == 16
    np.testing.assert_array_equal(X, np.round(X))
    np.testing.assert_allclose(X / 16, load_digits()[0])


def test_load_digits_split_is_stratified_and_reproducible():
    X_train, y_train, X_test, y_test = load_digits(return_split=True, test_fraction=0.25, seed=3)
    assert len(X_test) == round(0.25 * 1797) and len(X_train) + len(X_test) == 1797
    assert X_train.shape[1] == 64 and len(y_train) == len(X_train)
    np.testing.assert_allclose(np.bincount(y_test), np.array(DIGITS_CLASS_COUNTS) * 0.25, atol=1)
    again = load_digits(return_split=True, test_fraction=0.25, seed=3)
    for first, second in zip((X_train, y_train, X_test, y_test), again):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("dtype", ["int32", "float16", "not-a-dtype"])
def test_loaders_reject_non_float32_64_dtypes(dtype):
    with pytest.raises(ValueError, match="float32 or float64"):
        load_digits(dtype=dtype)


# ----------------------------------------------------------- Fashion-MNIST


def _write_fake_fashion_mnist(folder, n_train=12, n_test=5, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                  rng.integers(0, 10, size=n, dtype=np.uint8))


@pytest.fixture
def no_default_fashion_mnist(monkeypatch, tmp_path):
    """Point $CYMLP_DATA and the system folder at empty temporary folders."""
    monkeypatch.setenv("CYMLP_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(_fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


def test_fashion_mnist_missing_message_says_how_to_get_it(no_default_fashion_mnist):
    (no_default_fashion_mnist / "env").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist()
    message = str(error.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "CYMLP_DATA" in message and "path=" in message
    for name in FASHION_NAMES:
        assert name in message
    assert str(no_default_fashion_mnist / "env") in message
    assert str(no_default_fashion_mnist / "system") in message


def test_fashion_mnist_explicit_path_is_the_only_place_searched(no_default_fashion_mnist):
    _write_fake_fashion_mnist(no_default_fashion_mnist / "env")
    empty = no_default_fashion_mnist / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as error:
        load_fashion_mnist(empty)
    assert "missing: train-images-idx3-ubyte" in str(error.value)


@pytest.mark.parametrize("where", ["path", "path-subfolder", "env", "env-subfolder", "system"])
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_search_order_finds_files(no_default_fashion_mnist, where, gz):
    root = no_default_fashion_mnist
    folder = {
        "path": root / "mine",
        "path-subfolder": root / "mine" / "fashion-mnist",
        "env": root / "env",
        "env-subfolder": root / "env" / "fashion-mnist",
        "system": root / "system",
    }[where]
    _write_fake_fashion_mnist(folder, gz=gz)
    path = root / "mine" if where.startswith("path") else None

    X_train, y_train, X_test, y_test = load_fashion_mnist(path, dtype="float64")
    assert X_train.shape == (12, 784) and X_test.shape == (5, 784)
    assert X_train.dtype == np.float64 and y_train.dtype == np.int64
    assert X_train.min() >= 0 and X_train.max() <= 1


def test_fashion_mnist_rejects_images_and_labels_that_do_not_match(no_default_fashion_mnist):
    folder = no_default_fashion_mnist / "mine"
    _write_fake_fashion_mnist(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        load_fashion_mnist(folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((4, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        load_fashion_mnist(folder)


@pytest.fixture(scope="module")
def fashion_mnist():
    try:
        return load_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def test_real_fashion_mnist_shapes_labels_and_range(fashion_mnist):
    X_train, y_train, X_test, y_test = fashion_mnist
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0 and X_train.max() == 1 and X_test.max() <= 1
    # Fashion-MNIST is balanced: 6,000 / 1,000 images per class.
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


# ---------------------------------------------------------------- helpers


def test_make_random_classification_is_seeded_with_requested_shape_and_dtype():
    X, y = make_random_classification(50, 7, 3, seed=4, dtype="float32")
    assert X.shape == (50, 7) and X.dtype == np.float32
    assert y.shape == (50,) and y.dtype == np.int64
    assert X.min() >= 0 and X.max() < 1 and set(np.unique(y)) <= {0, 1, 2}
    X2, y2 = make_random_classification(50, 7, 3, seed=4, dtype="float32")
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, make_random_classification(50, 7, 3, seed=5, dtype="float32")[0])


@pytest.mark.parametrize("args", [(0, 5), (5, 0), (5, 5, 1), (5.0, 5), (True, 5)])
def test_make_random_classification_rejects_bad_sizes(args):
    with pytest.raises(ValueError, match="must be an integer"):
        make_random_classification(*args)


@pytest.mark.parametrize("stratify", [True, False])
def test_split_train_test_is_reproducible_and_partitions_rows(stratify):
    X = np.arange(200, dtype=np.float64).reshape(100, 2)
    y = np.repeat(np.arange(4), 25)
    first = split_train_test(X, y, 0.3, seed=7, stratify=stratify)
    second = split_train_test(X, y, 0.3, seed=7, stratify=stratify)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    X_train, y_train, X_test, y_test = first
    assert len(X_test) == 30 and len(X_train) == 70
    rows = np.concatenate([X_train[:, 0], X_test[:, 0]]) // 2
    np.testing.assert_array_equal(np.sort(rows), np.arange(100))
    np.testing.assert_array_equal(y_train, y[(X_train[:, 0] // 2).astype(int)])
    other_seed = split_train_test(X, y, 0.3, seed=8, stratify=stratify)[2]
    assert not np.array_equal(X_test, other_seed)


def test_split_train_test_stratified_keeps_class_shares():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    X = np.zeros((100, 1))
    for seed in range(5):
        _, y_train, _, y_test = split_train_test(X, y, 0.2, seed=seed)
        np.testing.assert_array_equal(np.bincount(y_test), [10, 6, 4])
        np.testing.assert_array_equal(np.bincount(y_train), [40, 24, 16])


def test_split_train_test_stratified_total_is_exact_with_uneven_classes():
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    _, _, _, y_test = split_train_test(np.zeros((15, 2)), y, 0.5, seed=0)
    assert len(y_test) == round(0.5 * 15)
    np.testing.assert_allclose(np.bincount(y_test), [3.5, 2.5, 1.5], atol=1)


@pytest.mark.parametrize(
    "X, y, fraction, message",
    [
        (np.zeros((4, 2)), np.zeros(3), 0.5, "4 rows but y has 3"),
        (np.zeros((4, 2)), np.zeros(4), 0.0, r"test_fraction must be in \(0, 1\)"),
        (np.zeros((4, 2)), np.zeros(4), 1.0, r"test_fraction must be in \(0, 1\)"),
        (np.zeros((1, 2)), np.zeros(1), 0.5, "at least 2 samples"),
        (np.zeros((4, 2)), np.zeros((4, 1)), 0.5, "1-D y"),
    ],
)
def test_split_train_test_rejects_bad_arguments(X, y, fraction, message):
    with pytest.raises(ValueError, match=message):
        split_train_test(X, y, fraction)


def test_old_dataset_names_warn_and_behave_as_before():
    """train_test_split / make_classification: deprecated aliases, same results, same order."""
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.repeat(np.arange(2), 10)
    with pytest.warns(DeprecationWarning, match="use split_train_test"):
        old = datasets.train_test_split(X, y, 0.25, seed=3, stratify=False)
    for a, b in zip(old, split_train_test(X, y, 0.25, seed=3, stratify=False)):
        np.testing.assert_array_equal(a, b)
    assert [len(part) for part in old] == [15, 15, 5, 5]     # (X_train, y_train, X_test, y_test)
    with pytest.warns(DeprecationWarning, match="use make_random_classification"):
        old = datasets.make_classification(30, 4, 3, seed=2, dtype="float32")
    for a, b in zip(old, make_random_classification(30, 4, 3, seed=2, dtype="float32")):
        np.testing.assert_array_equal(a, b)


def test_public_names_shared_with_scikit_learn_are_gone_from_all():
    assert "train_test_split" not in datasets.__all__
    assert "make_classification" not in datasets.__all__


def test_scale_to_unit_per_dataset_and_per_feature():
    X = np.array([[0, 10], [5, 10], [10, 30]], dtype=np.int64)
    np.testing.assert_allclose(scale_to_unit(X), X / 30)
    np.testing.assert_allclose(scale_to_unit(X, per_feature=True), [[0, 0], [0.5, 0], [1, 1]])
    constant = np.full((3, 2), 4.0, dtype=np.float32)
    scaled = scale_to_unit(constant, per_feature=True)
    assert scaled.dtype == np.float32 and np.all(scaled == 0)


def test_standardize_uses_training_statistics_and_guards_zero_std():
    X_train = np.array([[1.0, 5.0], [3.0, 5.0]])
    X_test = np.array([[2.0, 6.0]])
    train_std, test_std = standardize(X_train, X_test)
    np.testing.assert_allclose(train_std, [[-1, 0], [1, 0]])
    np.testing.assert_allclose(test_std, [[0, 1]])
    np.testing.assert_allclose(standardize(X_train), train_std)
    assert standardize(X_train.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="3 features"):
        standardize(X_train, np.zeros((1, 3)))


def test_one_hot_encodes_labels_and_checks_range():
    Y = one_hot(np.array([2, 0, 1]), 4, dtype="float32")
    assert Y.dtype == np.float32
    np.testing.assert_array_equal(Y, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert one_hot([1, 3]).shape == (2, 4)
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="integer labels"):
        one_hot([0.5, 1.0])
