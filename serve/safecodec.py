"""A format for what crosses the hall's network (the shared cache, the job queue): no pickle, no code.

Whoever can write to the hall's Redis must not run code in the replicas or the workers. `pickle.loads` of a
crafted value runs any function it names, so nothing read from Redis is unpickled. Instead a value is

    MAGIC (8 bytes) | header length (4 bytes, big-endian) | header (JSON, UTF-8) | raw array bytes …

The header is a JSON tree of plain values (None, bool, int, float incl. NaN/±inf, str, list) and tagged
objects:

* `{"$t": [...]}` a tuple; `{"$d": [[key, value], ...]}` a dict (keys of any plain type, order kept);
* `{"$a": i, "dtype": "<f8", "shape": [..]}` a numpy array whose bytes are the i-th raw block after the header
  (numeric and bool dtypes only: an object array could hold anything, so it is refused both ways);
* `{"$pt": i, "dtype": "float32", "shape": [..]}` a torch tensor, the same way (`torch.frombuffer`: the bytes
  are copied into a tensor, nothing is evaluated; this is how a CIFAR job's weights travel back);
* `{"$s": "float64", "v": 0.5}` a numpy scalar;
* `{"$dc": "core.toy.simulate:SimResult", "f": {...}}` a dataclass, rebuilt ONLY if its name is in the
  allow-list `ALLOWED` (the result and config types the hall's caches and jobs carry); any other name is
  refused.

`decode` raises `Refused` on anything else (another format, e.g. a pickle, a type not allowed, a malformed
header); callers log it and recompute. `encode` raises `Unstorable` for a value this format cannot carry
(then the caller simply does not store it). A round trip returns an equal value: floats are written by
`repr` (exact), arrays byte for byte.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import struct
from typing import Any

import numpy as np

MAGIC = b"SAMLAB1\n"

# The types the hall's shared cache and job queue carry (app/cache.py's and the pages' cached functions:
# simulate, escape/valley runs, measure's statistics, theory's exact chains; the CIFAR jobs' configs).
# A name not here is refused when read, whatever the bytes say.
ALLOWED = frozenset({
    "core.toy.simulate:SimConfig",
    "core.toy.simulate:SimResult",
    "core.toy.measure:EscapeStats",
    "core.toy.measure:StationaryMean",
    "core.toy.measure:OneStepResult",
    "core.toy.measure:CostResult",
    "core.toy.measure:SweepResult",
    "core.toy.measure:MinimumOutcome",
    "core.toy.theory:ChainResult",
    "core.toy.theory:ScheduleChainResult",
    "core.toy.tournament:TournamentConfig",
    "core.toy.tournament:MethodResult",
    "core.toy.tournament:TournamentResult",
    "core.cifar.train:TrainConfig",
    "core.cifar.profiles:EscapeConfig",
    # a page's ρ grid (issue 18): the payload bytes and the per-step numbers the page reads
    "app.rhogrid:GridView",
    "app.rhogrid:Slider",
    "app.stats_charts:EscapeSeries",
})
_PLAIN_DTYPES = "biufc"  # bool, signed, unsigned, float, complex: fixed-size numbers, no objects


class Refused(ValueError):
    """What was read is not a value of this format (or names a type outside the allow-list)."""


class Unstorable(TypeError):
    """A value this format cannot carry (a type outside the allow-list, an object array, a function …)."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------

def _enc(v: Any, blobs: list[bytes]) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int) and not isinstance(v, np.integer):
        return v
    if isinstance(v, float) and not isinstance(v, np.floating):
        return v
    if isinstance(v, bytes):  # raw bytes (a ρ grid's payload), as a blob
        blobs.append(v)
        return {"$by": len(blobs) - 1}
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in _PLAIN_DTYPES:
            raise Unstorable(f"numpy array of dtype {v.dtype}")
        a = np.ascontiguousarray(v)
        blobs.append(a.tobytes())
        return {"$a": len(blobs) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
    if isinstance(v, np.generic):
        if v.dtype.kind not in _PLAIN_DTYPES:
            raise Unstorable(f"numpy scalar of dtype {v.dtype}")
        return {"$s": v.dtype.str, "v": _enc(v.item(), blobs)}
    if isinstance(v, tuple):
        return {"$t": [_enc(x, blobs) for x in v]}
    if isinstance(v, list):
        return [_enc(x, blobs) for x in v]
    if isinstance(v, dict):
        return {"$d": [[_enc(k, blobs), _enc(x, blobs)] for k, x in v.items()]}
    if type(v).__module__ == "torch" and type(v).__name__ in ("Tensor", "Parameter"):
        t = v.detach().cpu().contiguous()
        data = t.view(-1).view(_torch_uint8()).numpy().tobytes() if t.numel() else b""
        blobs.append(data)
        return {"$pt": len(blobs) - 1, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        name = _allowed_name(type(v))
        return {"$dc": name, "f": {f.name: _enc(getattr(v, f.name), blobs) for f in dataclasses.fields(v)}}
    raise Unstorable(f"type {type(v).__module__}.{type(v).__qualname__}")


def _torch_uint8():
    import torch

    return torch.uint8


def encode(value: Any) -> bytes:
    """value → bytes of this format; Unstorable if it holds something the format does not carry."""
    blobs: list[bytes] = []
    tree = _enc(value, blobs)
    header = json.dumps({"v": tree, "n": [len(b) for b in blobs]}, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack(">I", len(header)), header, *blobs])


def _allowed_name(cls: type) -> str:
    """The allow-list's name of `cls`: its own module:qualname, or the name under which the allow-list imports
    it (a class that moved to another module but is still imported under its listed name)."""
    name = _name(cls)
    if name in ALLOWED:
        return name
    for listed in sorted(ALLOWED):
        try:
            if _allowed_class(listed) is cls:
                return listed
        except (ImportError, AttributeError, Refused):
            continue
    raise Unstorable(f"type {name} is not in serve.safecodec.ALLOWED")


# ------------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------------

_CLASSES: dict[str, type] = {}


def _allowed_class(name: str) -> type:
    if name not in ALLOWED:
        raise Refused(f"type {name!r} is not allowed")
    if name not in _CLASSES:
        module, _, qual = name.partition(":")
        cls = getattr(importlib.import_module(module), qual)  # a module of this repository, by the allow-list
        if not dataclasses.is_dataclass(cls):
            raise Refused(f"{name} is not a dataclass")
        _CLASSES[name] = cls
    return _CLASSES[name]


def _dec(t: Any, blobs: list[memoryview]) -> Any:
    if t is None or isinstance(t, (bool, int, float, str)):
        return t
    if isinstance(t, list):
        return [_dec(x, blobs) for x in t]
    if not isinstance(t, dict) or len(t) == 0:
        raise Refused("malformed value")
    if "$t" in t:
        return tuple(_dec(x, blobs) for x in t["$t"])
    if "$d" in t:
        return {_dec(k, blobs): _dec(x, blobs) for k, x in t["$d"]}
    if "$a" in t:
        dtype = np.dtype(str(t["dtype"]))
        if dtype.kind not in _PLAIN_DTYPES:
            raise Refused(f"array dtype {dtype}")
        shape = tuple(int(s) for s in t["shape"])
        return np.frombuffer(blobs[int(t["$a"])], dtype=dtype).reshape(shape).copy()
    if "$by" in t:
        return bytes(blobs[int(t["$by"])])
    if "$pt" in t:
        import torch

        dtype = getattr(torch, str(t["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise Refused(f"tensor dtype {t['dtype']!r}")
        shape = tuple(int(s) for s in t["shape"])
        raw = bytearray(blobs[int(t["$pt"])])
        if not raw:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(raw, dtype=dtype).reshape(shape)
    if "$s" in t:
        dtype = np.dtype(str(t["$s"]))
        if dtype.kind not in _PLAIN_DTYPES:
            raise Refused(f"scalar dtype {dtype}")
        return dtype.type(_dec(t["v"], blobs))
    if "$dc" in t:
        cls = _allowed_class(str(t["$dc"]))
        values = {k: _dec(x, blobs) for k, x in dict(t["f"]).items()}
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        if set(values) - names:
            raise Refused(f"unknown fields for {t['$dc']}: {sorted(set(values) - names)}")
        return cls(**values)
    raise Refused("malformed value")


def decode(raw: bytes) -> Any:
    """bytes of this format → the value. Refused for anything else (never evaluates what it reads)."""
    raw = bytes(raw) if not isinstance(raw, bytes) else raw
    if not raw.startswith(MAGIC):
        raise Refused("not the hall's safe format" + (" (a pickle)" if raw[:1] == b"\x80" else ""))
    try:
        (n,) = struct.unpack(">I", raw[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        header = json.loads(raw[start:start + n])
        sizes = [int(s) for s in header["n"]]
        view, pos, blobs = memoryview(raw), start + n, []
        for s in sizes:
            if s < 0 or pos + s > len(raw):
                raise Refused("truncated value")
            blobs.append(view[pos:pos + s])
            pos += s
        return _dec(header["v"], blobs)
    except Refused:
        raise
    except (ValueError, KeyError, TypeError, IndexError, struct.error, AttributeError, ImportError) as e:
        raise Refused(f"malformed value ({type(e).__name__})") from None

