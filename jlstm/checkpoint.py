"""Checkpoints: params trees in a safe, portable file (msgpack, never pickle).

A file is a 24-byte header (magic, format version, payload length, CRC-32) and a
msgpack payload that spells the tree out: dicts (with their keys in order), tuples,
lists and None as themselves, arrays as dtype name, shape and raw little-endian bytes.
So `load` rebuilds the exact tree without `like`, and bfloat16, float32 and int arrays
come back bit for bit. A save writes a temporary file next to the target and renames
it over the target, so a crash never leaves half a checkpoint where a good one was.

>>> import os, tempfile, jax, jax.numpy as jnp
>>> import jlstm
>>> model = jlstm.Sequential([jlstm.LSTM(4), jlstm.Dense(1)])
>>> _, params = model.init(jax.random.key(0), (None, 5, 3))
>>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
>>> jlstm.save(path, params)
>>> restored = jlstm.load(path, like=params)
>>> type(restored).__name__, sorted(restored[0])
('tuple', ['bias', 'kernel', 'recurrent_kernel'])
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

PathLike = str | os.PathLike

MAGIC = b"JLSTMCKP"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQI")  # magic, version, payload length, CRC-32 of the payload
_SCALARS = (bool, int, float)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack stores


def save(path: PathLike, params: Any) -> None:
    """Writes `params` to `path` atomically (a temporary file, then `os.replace`).

    Leaves are arrays (NumPy or JAX, numeric or bool; PRNG key arrays too), Python
    bool/int/float or None; containers are dicts (str or int keys), tuples (NamedTuples
    are stored as tuples) and lists. Anything else is a TypeError naming its path, raised
    before the file is touched.

    Args:
        path: the file to write (a str or an os.PathLike; another type is a TypeError), in a
            directory that exists (else a FileNotFoundError naming `path`); an existing file
            is replaced whole.
        params: the tree to save.

    Examples:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "p.ckpt")
        >>> save(path, {"w": np.zeros((2, 3), np.float32), "layers": (1, None)})
        >>> load(path)["layers"]
        (1, None)
    """
    path = _path(path, "save")
    payload = msgpack.packb({"tree": _encode(params, "params")}, use_bin_type=True)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload))
    write_atomic(path, header + payload)


def load(path: PathLike, like: Any = None) -> Any:
    """Reads the tree that `save` wrote to `path`.

    Without `like`, dicts, tuples, lists and None come back as saved, arrays as NumPy
    arrays of their saved dtype. With `like` (a tree of arrays, `jax.ShapeDtypeStruct`s or
    scalars, e.g. freshly initialised params), the file's tree must match it in structure,
    shapes and dtypes; the first difference is a ValueError naming its path, expected vs
    got. The result then takes `like`'s container types (NamedTuples included) and is a
    JAX array wherever `like` holds one. A foreign, truncated or corrupt file is a
    ValueError naming the file.

    Args:
        path: the file `save` wrote (a str or an os.PathLike; another type is a TypeError).
        like: a tree the saved one must match, whose container types (and JAX arrays) the
            result takes; None returns the tree as saved.

    Returns:
        The saved tree.

    Examples:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "p.ckpt")
        >>> save(path, {"w": np.zeros(3, np.float32)})
        >>> load(path, like={"w": np.zeros(4, np.float32)})
        Traceback (most recent call last):
        ...
        ValueError: ...: params['w']: expected float32 (4,), got float32 (3,)
    """
    path = _path(path, "load")
    with open(path, "rb") as f:
        blob = f.read()
    content = _read_payload(blob, path)
    try:
        tree = _decode(content["tree"], path)
    except RecursionError:  # msgpack unpacks deeper trees than Python's stack can rebuild
        raise ValueError(f"{path}: corrupt checkpoint payload: a tree nested too deeply to rebuild") from None
    if like is None:
        return tree
    try:
        return restore(tree, like)
    except ValueError as err:
        raise ValueError(f"{path}: checkpoint does not match `like`: {err}") from None


def restore(tree: Any, like: Any, where: str = "params") -> Any:
    """`tree`, as `load` returns it without `like`, checked against `like` and put in its
    containers as `load(path, like)` does: a ValueError at the first difference, naming its
    path from `where`. For a file whose parts are checked apart (`jlstm.train.TrainState`).

    >>> import numpy as np
    >>> restore((np.zeros(2, np.float32),), [np.ones(2, np.float32)], "state")
    Traceback (most recent call last):
    ...
    ValueError: state: expected a list of 1, got a tuple of 1
    """
    return _restore_like(tree, like, where)


def _path(path: Any, what: str) -> str:
    """A file path given as a str or an os.PathLike of one (not an int, which `open` takes for a
    file descriptor, nor bytes)."""
    fspath = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(fspath, str):
        raise TypeError(f"{what} path: expected a str or an os.PathLike, got {path!r} ({type(path).__name__})")
    return fspath


def write_atomic(path: str, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, fsyncs it and renames it over `path`:
    a crash or an error leaves the old file whole and no temporary file behind.

    Args:
        path: the file to write; its directory must exist (else a FileNotFoundError naming
            `path` and the directory; any other error creating the file names `path` too).
        data: the file's whole content.
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:  # named after the target, not the temporary file
        reason = err.strerror if os.path.isdir(directory) else f"no directory {directory} to write into"
        raise type(err)(err.errno, reason, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_payload(blob: bytes, path: str) -> Mapping[str, Any]:
    if len(blob) < _HEADER.size or not blob.startswith(MAGIC):
        raise ValueError(f"{path}: not a jlstm checkpoint (expected the header {MAGIC!r}, got {blob[: len(MAGIC)]!r})")
    _, version, length, crc = _HEADER.unpack_from(blob)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version}; this jlstm reads up to {FORMAT_VERSION}")
    payload = blob[_HEADER.size :]
    if len(payload) != length:
        raise ValueError(f"{path}: truncated or padded checkpoint: expected {length} payload bytes, got {len(payload)}")
    if zlib.crc32(payload) != crc:
        raise ValueError(f"{path}: corrupt checkpoint (CRC-32 mismatch)")
    try:
        content = msgpack.unpackb(payload, raw=False)
    except msgpack.StackError:  # raised without a message
        raise ValueError(f"{path}: corrupt checkpoint payload: nested deeper than msgpack unpacks") from None
    except Exception as err:  # msgpack raises several types for malformed input
        raise ValueError(f"{path}: corrupt checkpoint payload: {str(err) or type(err).__name__}") from None
    if not isinstance(content, dict) or "tree" not in content:
        raise ValueError(f"{path}: corrupt checkpoint payload: no tree")
    return content


def _is_key_array(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode_array(x: Any, where: str) -> dict[str, Any]:
    a = np.asarray(x)
    if not (jnp.issubdtype(a.dtype, jnp.number) or a.dtype == np.bool_):
        raise TypeError(f"{where}: expected a numeric or bool array, got dtype {a.dtype}")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"type": "array", "dtype": a.dtype.name, "shape": list(a.shape), "data": np.ascontiguousarray(a).tobytes()}


def _encode(tree: Any, where: str) -> Any:
    if tree is None:
        return {"type": "none"}
    if isinstance(tree, int) and not isinstance(tree, bool) and not _INT_RANGE[0] <= tree <= _INT_RANGE[1]:
        raise ValueError(f"{where}: expected an int in [-2**63, 2**64 - 1] (msgpack's), got {tree}")
    if isinstance(tree, _SCALARS):
        return {"type": "scalar", "value": tree}
    if _is_key_array(tree):
        data = _encode_array(jax.random.key_data(tree), where)
        return {"type": "key", "impl": str(jax.random.key_impl(tree)), "data": data}
    if isinstance(tree, (jax.Array, np.ndarray, np.generic)):
        return _encode_array(tree, where)
    if isinstance(tree, Mapping):
        keys = list(tree)
        for key in keys:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"{where}: expected str or int dict keys, got {key!r}")
        values = [_encode(tree[k], f"{where}[{k!r}]") for k in keys]
        return {"type": "dict", "keys": keys, "values": values}
    if isinstance(tree, (tuple, list)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {"type": kind, "values": [_encode(v, f"{where}[{i}]") for i, v in enumerate(tree)]}
    raise TypeError(
        f"{where}: expected an array, a Python scalar, None, a dict, tuple or list, got {type(tree).__name__}"
    )


def _decode_array(node: Mapping[str, Any]) -> np.ndarray:
    dtype = jnp.dtype(node["dtype"])
    if not (jnp.issubdtype(dtype, jnp.number) or dtype == np.bool_):
        raise ValueError(f"unsupported dtype {node['dtype']!r}")
    shape = tuple(int(d) for d in node["shape"])
    if dtype.byteorder == "=" and dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<")
    data = node["data"]
    if len(data) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{len(data)} bytes for a {dtype.name} array of shape {shape}")
    return np.frombuffer(data, dtype).reshape(shape).copy()


def _decode(node: Any, path: str) -> Any:
    try:
        kind = node["type"]
        if kind == "none":
            return None
        if kind == "scalar":
            return node["value"]
        if kind == "array":
            return _decode_array(node)
        if kind == "key":
            return jax.random.wrap_key_data(jnp.asarray(_decode_array(node["data"])), impl=node["impl"])
        if kind == "dict":
            return dict(zip(node["keys"], (_decode(v, path) for v in node["values"]), strict=True))
        if kind in ("tuple", "list"):
            values = [_decode(v, path) for v in node["values"]]
            return tuple(values) if kind == "tuple" else values
        raise ValueError(f"unknown node type {kind!r}")
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt checkpoint tree: {err!r}") from None


def _describe(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, _SCALARS):
        return type(x).__name__
    if isinstance(x, Mapping):
        return f"a dict with keys {sorted(map(str, x))}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{x.dtype.name if _is_key_array(x) else jnp.dtype(x.dtype).name} {tuple(x.shape)}"
    return type(x).__name__


def _restore_like(tree: Any, like: Any, where: str) -> Any:
    """`tree` in `like`'s containers; a ValueError at the first difference."""
    mismatch = ValueError(f"{where}: expected {_describe(like)}, got {_describe(tree)}")
    if like is None or isinstance(like, _SCALARS):
        if type(tree) is not type(like):
            raise mismatch
        return tree
    if isinstance(like, Mapping):
        if not isinstance(tree, Mapping) or set(tree) != set(like):
            raise mismatch
        items = [(k, _restore_like(tree[k], v, f"{where}[{k!r}]")) for k, v in like.items()]
        mapping_type: Callable[..., Mapping[Any, Any]] = type(like)
        return dict(items) if mapping_type is dict else mapping_type(items)
    if isinstance(like, (tuple, list)):
        same_kind = isinstance(tree, list) if isinstance(like, list) else isinstance(tree, tuple)
        if not same_kind or len(tree) != len(like):
            raise mismatch
        values = [_restore_like(t, w, f"{where}[{i}]") for i, (t, w) in enumerate(zip(tree, like))]
        if hasattr(like, "_fields"):  # a NamedTuple, stored as a plain tuple
            return type(like)(*values)
        return type(like)(values)
    if not hasattr(like, "shape") or not hasattr(like, "dtype"):
        raise TypeError(f"{where}: `like` holds a {type(like).__name__}, expected arrays or shapes")
    if not hasattr(tree, "shape") or tree.shape != tuple(like.shape) or tree.dtype != like.dtype:
        raise mismatch
    if isinstance(like, jax.Array) and not _is_key_array(tree):
        return jnp.asarray(tree)
    return tree
