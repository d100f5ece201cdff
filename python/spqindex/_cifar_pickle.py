"""A restricted reader for the pickle files of ``cifar-10-batches-py``.

The CIFAR batches are Python pickles, and unpickling runs arbitrary code. This module does not use the
``pickle`` module: it interprets the small opcode subset those files use (binary protocols 1-4 without
persistent ids or extensions) and builds only dicts, lists, tuples, str, bytes, numbers, None/bool and
numpy arrays of plain numeric dtypes. The only "globals" it accepts are numpy's array reconstructor and
dtype and ``_codecs.encode`` (how Python 3 writes bytes at protocol 2); it never imports or calls them.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Tuple

import numpy as np

_ALLOWED_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"}
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


class _Global:
    def __init__(self, module: str, name: str):
        if (module, name) in _RECONSTRUCT:
            self.kind = "reconstruct"
        elif (module, name) == ("numpy", "ndarray"):
            self.kind = "ndarray"
        elif (module, name) == ("numpy", "dtype"):
            self.kind = "dtype"
        elif (module, name) == ("_codecs", "encode"):
            self.kind = "encode"
        else:
            raise ValueError(f"refusing pickle global {module}.{name} (only numpy arrays and plain data are read)")


class _ArrayStub:
    """An ndarray under construction: _reconstruct(...) followed by BUILD(state)."""

    value = None


class _DTypeStub:
    def __init__(self, code):
        code = code.decode("ascii") if isinstance(code, bytes) else code
        if code not in _ALLOWED_DTYPES:
            raise ValueError(f"refusing numpy dtype {code!r} in pickle")
        self.value = np.dtype(code)


def _reduce(func, args):
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise ValueError("malformed pickle: REDUCE on a non-global")
    if func.kind == "encode":
        if len(args) != 2 or not isinstance(args[0], str) or args[1] != "latin1":
            raise ValueError("malformed pickle: unexpected _codecs.encode arguments")
        return args[0].encode("latin1")
    if func.kind == "dtype":
        return _DTypeStub(args[0])
    if func.kind == "reconstruct":
        if not args or not isinstance(args[0], _Global) or args[0].kind != "ndarray":
            raise ValueError("malformed pickle: _reconstruct of something other than numpy.ndarray")
        return _ArrayStub()
    raise ValueError(f"refusing to call pickle global of kind {func.kind}")


def _build(obj, state):
    if isinstance(obj, _DTypeStub):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
            obj.value = obj.value.newbyteorder(state[1])
        return obj
    if isinstance(obj, _ArrayStub):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ValueError("malformed pickle: unexpected ndarray state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DTypeStub) or not isinstance(raw, (bytes, str)):
            raise ValueError("refusing ndarray of object dtype in pickle")
        raw = raw.encode("latin1") if isinstance(raw, str) else raw
        shape = tuple(int(s) for s in shape)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.value.itemsize != len(raw):
            raise ValueError(f"malformed pickle: array of shape {shape} has {len(raw)} bytes")
        arr = np.frombuffer(raw, dtype=dtype.value).reshape(shape, order="F" if fortran else "C")
        obj.value = arr.astype(dtype.value.newbyteorder("="), copy=True)
        return obj
    raise ValueError(f"refusing BUILD on {type(obj).__name__} in pickle")


def _finish(obj):
    """Replace stubs by their values, recursively."""
    if isinstance(obj, (_ArrayStub, _DTypeStub)):
        if obj.value is None:
            raise ValueError("malformed pickle: array never built")
        return obj.value
    if isinstance(obj, dict):
        return {_finish(k): _finish(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finish(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_finish(v) for v in obj)
    if isinstance(obj, _Global):
        raise ValueError("malformed pickle: bare global in data")
    return obj


def loads(data: bytes) -> Any:
    """Decode ``data`` with the restricted opcode subset; raise ValueError on anything else."""
    stack: list = []
    marks: list = []
    memo: dict = {}
    pos = 0
    n = len(data)

    def take(k: int) -> bytes:
        nonlocal pos
        if pos + k > n:
            raise ValueError("malformed pickle: truncated")
        out = data[pos : pos + k]
        pos += k
        return out

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise ValueError("malformed pickle: truncated line")
        out = data[pos:end]
        pos = end + 1
        return out

    def pop_mark() -> list:
        if not marks:
            raise ValueError("malformed pickle: missing MARK")
        m = marks.pop()
        items = stack[m:]
        del stack[m:]
        return items

    while True:
        op = take(1)
        if op == b"\x80":  # PROTO
            take(1)
        elif op == b"\x95":  # FRAME
            take(8)
        elif op == b".":  # STOP
            if len(stack) != 1:
                raise ValueError("malformed pickle: stack not empty at STOP")
            return _finish(stack[0])
        elif op == b"(":
            marks.append(len(stack))
        elif op == b"}":
            stack.append({})
        elif op == b"]":
            stack.append([])
        elif op == b")":
            stack.append(())
        elif op == b"d":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif op == b"l":
            stack.append(pop_mark())
        elif op == b"t":
            stack.append(tuple(pop_mark()))
        elif op in (b"\x85", b"\x86", b"\x87"):
            k = op[0] - 0x84
            if len(stack) < k:
                raise ValueError("malformed pickle: stack underflow")
            items = tuple(stack[-k:])
            del stack[-k:]
            stack.append(items)
        elif op == b"a":
            v = stack.pop()
            stack[-1].append(v)
        elif op == b"e":
            items = pop_mark()
            stack[-1].extend(items)
        elif op == b"s":
            v = stack.pop()
            k = stack.pop()
            stack[-1][k] = v
        elif op == b"u":
            items = pop_mark()
            stack[-1].update(zip(items[::2], items[1::2]))
        elif op == b"q":
            memo[take(1)[0]] = stack[-1]
        elif op == b"r":
            memo[struct.unpack("<I", take(4))[0]] = stack[-1]
        elif op == b"p":
            memo[int(line())] = stack[-1]
        elif op == b"\x94":  # MEMOIZE
            memo[len(memo)] = stack[-1]
        elif op in (b"h", b"j", b"g"):
            key = take(1)[0] if op == b"h" else struct.unpack("<I", take(4))[0] if op == b"j" else int(line())
            if key not in memo:
                raise ValueError("malformed pickle: unknown memo key")
            stack.append(memo[key])
        elif op == b"J":
            stack.append(struct.unpack("<i", take(4))[0])
        elif op == b"K":
            stack.append(take(1)[0])
        elif op == b"M":
            stack.append(struct.unpack("<H", take(2))[0])
        elif op == b"\x8a":  # LONG1
            stack.append(int.from_bytes(take(take(1)[0]), "little", signed=True))
        elif op == b"I":
            text = line()
            stack.append(True if text == b"01" else False if text == b"00" else int(text))
        elif op == b"G":
            stack.append(struct.unpack(">d", take(8))[0])
        elif op == b"N":
            stack.append(None)
        elif op == b"\x88":
            stack.append(True)
        elif op == b"\x89":
            stack.append(False)
        elif op in (b"U", b"C"):  # SHORT_BINSTRING, SHORT_BINBYTES
            stack.append(take(take(1)[0]))
        elif op in (b"T", b"B"):  # BINSTRING, BINBYTES
            stack.append(take(struct.unpack("<I", take(4))[0]))
        elif op == b"\x8e":  # BINBYTES8
            stack.append(take(struct.unpack("<Q", take(8))[0]))
        elif op == b"X":
            stack.append(take(struct.unpack("<I", take(4))[0]).decode("utf-8"))
        elif op == b"\x8c":
            stack.append(take(take(1)[0]).decode("utf-8"))
        elif op == b"\x8d":
            stack.append(take(struct.unpack("<Q", take(8))[0]).decode("utf-8"))
        elif op == b"c":  # GLOBAL
            stack.append(_Global(line().decode("ascii"), line().decode("ascii")))
        elif op == b"\x93":  # STACK_GLOBAL
            name, module = stack.pop(), stack.pop()
            stack.append(_Global(module, name))
        elif op == b"R":
            args = stack.pop()
            stack.append(_reduce(stack.pop(), args))
        elif op == b"b":
            state = stack.pop()
            stack[-1] = _build(stack[-1], state)
        else:
            raise ValueError(f"refusing pickle opcode {op!r} at byte {pos - 1}")


def load_cifar_batch(path) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> (uint8 (N, 3072) rows in CHW order, int64 (N,) labels)."""
    with open(os.fspath(path), "rb") as f:
        obj = loads(f.read())
    if not isinstance(obj, dict):
        raise ValueError(f"{os.fspath(path)!r}: expected a dict with 'data' and 'labels'")
    obj = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise ValueError(f"{os.fspath(path)!r}: missing 'data' or 'labels' (keys: {sorted(map(str, obj))})")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{os.fspath(path)!r}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape}, {labels.shape}"
        )
    return data, labels
