"""CIFAR data: both on-disk formats, the MD5 check, class balance, fallback, device augmentation."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.cifar import data as cdata


def _official_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(i % 10) for i in range(n)], b"batch_label": b"x"}


def _write_official_tar(path, n_per_batch=20):
    """A small file in the official `cifar-10-batches-py` layout, built here (no network)."""
    batches = {f"data_batch_{i}": _official_batch(n_per_batch, i) for i in range(1, 6)}
    batches["test_batch"] = _official_batch(n_per_batch, 99)
    batches["batches.meta"] = {b"label_names": [c.encode() for c in cdata.CIFAR_CLASSES]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches


def test_official_format_tar_roundtrip(tmp_path):
    """The loader decodes b'data' rows as R(1024) G(1024) B(1024) of a 32×32 image, labels as given."""
    batches = _write_official_tar(tmp_path / "cifar-10-python.tar.gz")
    d = cdata.load(str(tmp_path / "cifar-10-python.tar.gz"))
    assert d.x_train.shape == (100, 3, 32, 32) and d.x_test.shape == (20, 3, 32, 32)
    raw = batches["data_batch_2"][b"data"][3]
    assert np.array_equal(d.x_train[23, 1], raw[1024:2048].reshape(32, 32))  # green plane of image 3, batch 2
    assert list(d.y_train[:12]) == [i % 10 for i in range(12)]
    assert d.classes == cdata.CIFAR_CLASSES


def test_official_format_md5(tmp_path):
    """The archive's checksum is checked: the right MD5 passes, a wrong one is a one-line DataError."""
    path = tmp_path / "c.tar.gz"
    _write_official_tar(path)
    good = hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324
    cdata.check_md5(path, good)
    assert cdata.load(str(path), md5=good).x_train.shape[0] == 100
    with pytest.raises(cdata.DataError, match="checksum") as e:
        cdata.load(str(path), md5="0" * 32)
    assert "\n" not in str(e.value)


def test_official_refuses_code_in_pickle(tmp_path):
    """A pickle that would call a function on load is refused (user paths must not run code)."""
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps(_official_batch(4, 0)))
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": print}))
    with pytest.raises(cdata.DataError, match="refusing"):
        cdata.load(str(tmp_path))


def test_imagefolder_directory(tmp_path):
    """{train,test}/<class>/*.png from a directory: classes sorted by name, pixels preserved (PNG)."""
    rng = np.random.default_rng(0)
    imgs = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(a).save(tmp_path / split / cls / f"{i}.png")
                imgs[(split, cls, i)] = a
    d = cdata.load(str(tmp_path))
    assert d.classes == ("cat", "dog")
    assert d.x_train.shape == (6, 3, 32, 32) and list(d.y_train) == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(d.x_test[2].transpose(1, 2, 0), imgs[("test", "dog", 0)])


def test_builtin_imagefolder_tar():
    """The shipped mini subset: 5,000 train / 1,000 test JPEGs, 10 classes, 500 / 100 per class."""
    d = cdata.load("builtin")
    assert d.x_train.shape == (5000, 3, 32, 32) and d.x_test.shape == (1000, 3, 32, 32)
    assert len(d.classes) == 10
    assert np.bincount(d.y_train).tolist() == [500] * 10 and np.bincount(d.y_test).tolist() == [100] * 10
    assert 40 < d.x_train.mean() < 200  # real pixels, not zeros


@pytest.mark.parametrize("size,classes", [(1000, None), (97, (1, 3, 5)), (20, (0, 9))])
def test_balanced_subset(size, classes):
    """Each chosen class gets size // C examples (the first size % C one more), drawn by seed."""
    labels = np.repeat(np.arange(10), 500)
    idx = cdata.balanced_subset(labels, size, classes, seed=3)
    chosen = classes or tuple(range(10))
    counts = [int((labels[idx] == c).sum()) for c in chosen]
    assert sum(counts) == size and max(counts) - min(counts) <= 1
    assert set(labels[idx]) == set(chosen) and len(set(idx)) == size
    assert np.array_equal(idx, cdata.balanced_subset(labels, size, classes, seed=3))
    assert not np.array_equal(idx, cdata.balanced_subset(labels, size, classes, seed=4))


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty_dir"])
def test_bad_paths_fall_back_with_message(tmp_path, kind):
    """A missing or corrupt path is a one-line DataError; load_or_fallback gives the built-in set + message."""
    if kind == "missing":
        path = tmp_path / "nope.tar.gz"
    elif kind == "corrupt":
        path = tmp_path / "bad.tar.gz"
        path.write_bytes(b"\x1f\x8b\x08" + b"garbage" * 100)
    else:
        path = tmp_path
    with pytest.raises(cdata.DataError) as e:
        cdata.load(str(path))
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    d, msg = cdata.load_or_fallback(str(path))
    assert d.source == cdata.BUILTIN.name and "built-in" in msg and str(e.value) in msg


def test_augment_is_flip_and_shift():
    """Each augmented image equals the original, maybe flipped, shifted by ≤ 2 px (centre kept)."""
    x = torch.randn(64, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    out = cdata.augment(x, gen, pad=2)
    assert out.shape == x.shape
    centre = (slice(None), slice(4, 28), slice(4, 28))
    flips, shifts = 0, []
    for i in range(64):
        ok = []
        for src, flipped in ((x[i], False), (x[i].flip(2), True)):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    if torch.equal(out[i][centre], torch.roll(src, (-dy, -dx), (1, 2))[centre]):
                        ok.append((flipped, dy, dx))
        assert len(ok) == 1, f"image {i} is not one flipped/shifted copy: {ok}"
        flips += ok[0][0]
        shifts.append(ok[0][1:])
    assert 16 < flips < 48  # Binomial(64, 1/2): P(outside) < 1e-4
    # the shifts cover both directions on both axes: each of the 5 offsets per axis has probability 1/5, so a
    # given sign is missing from 64 images with probability (3/5)^64 < 1e-14
    for axis in (0, 1):
        assert {(s[axis] > 0) - (s[axis] < 0) for s in shifts} == {-1, 0, 1}
