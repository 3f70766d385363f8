"""CIFAR-10 data: two on-disk formats, class-balanced subsets, and augmentation on the device.

Formats read here:
  * ImageFolder layout, as a directory or a tar(.gz): `{train,test}/<class>/<name>.jpg|png`.
    The built-in default `data/cifar10-mini.tar.gz` (5,000 train / 1,000 test JPEGs) is one.
  * The official python batches `cifar-10-batches-py/` (Krizhevsky 2009): pickled dicts with
    b'data' (N, 3072) uint8, rows R…G…B of a 32×32 image, and b'labels'. As a directory, or the
    archive `cifar-10-python.tar.gz` (downloaded where a network allows; its MD5 is checked).

Decoded images are cached as `.npz` under `data/cache/` (git-ignored), so JPEG decoding happens once.
A missing or unreadable path raises `DataError` (one line); `load_or_fallback` turns that into the
built-in subset plus the message, for the page and the CLI to show.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "data" / "cifar10-mini.tar.gz"
FULL = REPO / "data" / "full" / "cifar10-jpeg.tar.gz"
CACHE_DIR = REPO / "data" / "cache"
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of the CIFAR-10 training set (0–1 scale), used to normalise inputs.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_EXT = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """A data path that is missing, unreadable or in an unknown format. str(e) is one line."""


@dataclass(frozen=True)
class CifarData:
    """A whole data set in memory: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str  # human-readable: which file it came from


# ---------------------------------------------------------------------------------------------
# Resolving the user's choice to a path
# ---------------------------------------------------------------------------------------------


def resolve(spec: str) -> Path:
    """'builtin' → the mini subset in the repo; 'full' → data/full (the 60k JPEG archive, if one
    was copied there); anything else is a path."""
    spec = (spec or "builtin").strip()
    if spec == "builtin":
        return BUILTIN
    if spec == "full":
        for p in (FULL, FULL.parent):
            if p.exists():
                return p
        return FULL
    return Path(spec).expanduser()


def load(spec: str = "builtin", md5: str | None = None) -> CifarData:
    """Load a data set by name or path; raise DataError (one line) if that fails.
    'download' fetches the official archive (network needed) and checks its MD5."""
    path = download_official() if (spec or "").strip() == "download" else resolve(spec)
    if not path.exists():
        raise DataError(f"data path not found: {str(path)[:200]}")
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"cannot read {path.name}: {e.strerror}") from None
    if md5 is not None:
        check_md5(path, md5)  # before any cache: the file on disk is what must match
    return _load_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def load_or_fallback(spec: str = "builtin") -> tuple[CifarData, str | None]:
    """Load `spec`; if that fails, load the built-in subset and return the reason as a message."""
    try:
        return load(spec), None
    except DataError as e:
        if resolve(spec) == BUILTIN:
            raise
        return load("builtin"), f"{e}; using the built-in subset (5,000 train / 1,000 test images) instead"


@lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int) -> CifarData:
    """Decode once per (path, size, mtime): in memory (this LRU) and on disk (data/cache/*.npz)."""
    key = hashlib.sha1(f"{path}|{size}|{mtime_ns}".encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{key}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                data = CifarData(z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                                 tuple(str(c) for c in z["classes"]), str(z["source"]))
            return _readonly(data)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file: decode again and overwrite it
    data = _decode(Path(path))
    if len(data.y_train) + len(data.y_test) < 2000:
        return _readonly(data)  # small sets decode in a blink: no cache file (keeps data/cache tidy)
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                 y_test=data.y_test, classes=np.array(data.classes), source=np.array(data.source))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only checkout still works, it just decodes every time
    return _readonly(data)


def _readonly(d: CifarData) -> CifarData:
    for a in (d.x_train, d.y_train, d.x_test, d.y_test):
        a.flags.writeable = False  # shared between sessions through the cache: nobody may modify
    return d


def _decode(path: Path) -> CifarData:
    try:
        if path.is_dir():
            if (path / "data_batch_1").exists() or (path / "cifar-10-batches-py").is_dir():
                return load_official(path)
            return load_imagefolder(path)
        if not tarfile.is_tarfile(path):
            raise DataError(f"{path.name} is neither a directory nor a tar archive")
        with tarfile.open(path) as tar:
            names = tar.getnames()
        if any(n.endswith("data_batch_1") for n in names):
            return load_official(path)
        return load_imagefolder(path)
    except DataError:
        raise
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, ValueError, KeyError) as e:
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{path.name} is corrupt or unreadable ({msg})") from None


# ---------------------------------------------------------------------------------------------
# ImageFolder: {train,test}/<class>/<image>
# ---------------------------------------------------------------------------------------------


def _decode_image(raw: bytes) -> np.ndarray:
    from PIL import Image  # PIL comes with streamlit; torchvision is not available

    with Image.open(io.BytesIO(raw)) as im:
        im = im.convert("RGB")
        if im.size != (32, 32):
            im = im.resize((32, 32), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # HWC → CHW


def _split_class(name: str) -> tuple[str, str] | None:
    """'…/train/cat/0001.jpg' → ('train', 'cat'); None for anything else."""
    parts = Path(name).parts
    if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_EXT) or parts[-1].startswith("."):
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in ("train", "test") else None


def load_imagefolder(path: Path) -> CifarData:
    """Read `{train,test}/<class>/*.jpg|png` from a directory or a tar archive."""
    items: list[tuple[str, str, bytes]] = []
    path = Path(path)
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            sc = _split_class(str(f.relative_to(path)))
            if sc and f.is_file():
                items.append((*sc, f.read_bytes()))
    else:
        with tarfile.open(path) as tar:
            for m in tar:
                sc = _split_class(m.name)
                if sc and m.isfile():
                    items.append((*sc, tar.extractfile(m).read()))
    classes = tuple(sorted({c for s, c, _ in items if s == "train"}))
    if not classes or not any(s == "test" for s, _, _ in items):
        raise DataError(f"{path.name}: no train/<class>/ and test/<class>/ images found")
    index = {c: i for i, c in enumerate(classes)}
    items = [it for it in items if it[1] in index]
    # PIL releases the GIL while decoding, so threads help on a many-core machine
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        images = list(pool.map(_decode_image, [raw for _, _, raw in items], chunksize=256))
    out = {}
    for split in ("train", "test"):
        sel = [i for i, it in enumerate(items) if it[0] == split]
        out[split] = (np.stack([images[i] for i in sel]),
                      np.array([index[items[i][1]] for i in sel], dtype=np.int64))
    return CifarData(*out["train"], *out["test"], classes, path.name)


# ---------------------------------------------------------------------------------------------
# The official python batches
# ---------------------------------------------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Only the numpy classes an array needs may be rebuilt: a pickle from a user's path can
    otherwise run arbitrary code when loaded."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes; it only encodes a string
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _unpickle(raw: bytes) -> dict:
    d = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()  # the files were written by Python 2
    if not isinstance(d, dict):
        raise DataError("a CIFAR batch file does not hold a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _batch_arrays(d: dict) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(d["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"a CIFAR batch has data of shape {x.shape}, expected (N, 3072)")
    y = np.asarray(d["labels"], dtype=np.int64)
    return x.reshape(-1, 3, 32, 32), y  # rows are R(1024) G(1024) B(1024), each 32×32 row-major


def load_official(path: Path) -> CifarData:
    """Read `cifar-10-batches-py` (data_batch_1…5, test_batch, batches.meta) from a dir or a tar."""
    path = Path(path)
    files: dict[str, bytes] = {}
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    if path.is_dir():
        base = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for w in wanted:
            if (base / w).exists():
                files[w] = (base / w).read_bytes()
    else:
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile() and Path(m.name).name in wanted:
                    files[Path(m.name).name] = tar.extractfile(m).read()
    train = [files[w] for w in wanted[:5] if w in files]
    if not train or "test_batch" not in files:
        raise DataError(f"{path.name}: data_batch_* or test_batch missing")
    xs, ys = zip(*(_batch_arrays(_unpickle(b)) for b in train))
    x_test, y_test = _batch_arrays(_unpickle(files["test_batch"]))
    classes = CIFAR_CLASSES
    if "batches.meta" in files:
        names = _unpickle(files["batches.meta"]).get("label_names")
        if names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return CifarData(np.concatenate(xs), np.concatenate(ys), x_test, y_test, classes, path.name)


def check_md5(path: Path, expected: str) -> None:
    """Raise DataError unless the file's MD5 equals `expected` (a truncated download fails here)."""
    h = hashlib.md5()  # noqa: S324 - a checksum against corruption, not a security hash
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"cannot read {Path(path).name}: {e.strerror}") from None
    if h.hexdigest() != expected.lower():
        raise DataError(f"{Path(path).name}: checksum mismatch (MD5 {h.hexdigest()}, expected {expected})")


def download_official(dest_dir: Path = CACHE_DIR, url: str = OFFICIAL_URL, md5: str = OFFICIAL_MD5) -> Path:
    """Download the official archive (where a network allows) and check its MD5. Returns its path."""
    dest = Path(dest_dir) / "cifar-10-python.tar.gz"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, tmp)  # noqa: S310 - a fixed https URL, not user text
        except OSError as e:
            raise DataError(f"download of the CIFAR-10 archive failed ({e})") from None
        os.replace(tmp, dest)
    check_md5(dest, md5)
    return dest


# ---------------------------------------------------------------------------------------------
# Subsets and the device
# ---------------------------------------------------------------------------------------------


def balanced_subset(labels: np.ndarray, size: int, classes: tuple[int, ...] | None = None,
                    seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced subset of `size` examples from `classes` (all if None), drawn with
    `seed`: each class gets size // C examples, the first size % C classes one more. A class with
    fewer examples gives all it has. Returned in a seeded random order."""
    labels = np.asarray(labels)
    classes = tuple(sorted(set(int(c) for c in labels))) if classes is None else tuple(classes)
    rng = np.random.default_rng(seed)
    per, extra = divmod(int(size), len(classes))
    picks = []
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        picks.append(rng.permutation(idx)[: per + (i < extra)])
    return rng.permutation(np.concatenate(picks))


def to_device(x: np.ndarray, device: torch.device | str, dtype=torch.float32,
              channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) → normalised float on the device: (x/255 − mean) / std per channel."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    mean = torch.tensor(MEAN, device=t.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=t.device).view(1, 3, 1, 1)
    t = ((t.float() / 255.0 - mean) / std).to(dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random horizontal flip (p = 1/2) and a random translation by up to `pad` pixels, done on the
    device for the whole batch at once: reflect-pad by `pad`, then crop a 32×32 window at a random
    offset per image (a gather, no Python loop over images). `flip=False` translates only (the airbench
    recipe flips on its own schedule, core.cifar.airbench_train.alternating_flip)."""
    n, _, h, w = x.shape
    if flip:
        flipped = torch.rand(n, device=x.device, generator=gen) < 0.5
        x = torch.where(flipped.view(n, 1, 1, 1), x.flip(3), x)
    if pad <= 0:
        return x
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    c = x.shape[1]
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    # crop rows dy … dy+h−1, then columns dx … dx+w−1: two 1-D gathers, no Python loop over images
    rows = (dy.view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)).expand(n, c, h, w + 2 * pad)
    cols = (dx.view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)).expand(n, c, h, w)
    crop = padded.gather(2, rows).gather(3, cols)
    return crop.contiguous(memory_format=torch.channels_last) if channels_last else crop
