"""A seeded fuzz of the public API: bad calls must fail at the call, clearly.

Each case mutates one argument of a valid call (wrong ranks, shapes, dtypes, pytree
structures, key types, out-of-range sizes, rates and lengths, None, Python scalars, lists)
and is graded as the issue grades it:

- "ok": a valid variant (a list for an array, an int where a float goes, ...) returned
  what the canonical call returns;
- "clear": a ValueError/TypeError raised in jlstm's own code, its message saying what
  was "expected";
- "silent": a result returned where an error was due (the bad input was cast, clamped or
  broadcast);
- "unclear": any other exception, one raised inside jax or numpy, or an error from a
  valid variant;
- "wrong": a valid variant that returned something else than the canonical call.

The test fails on any silent, unclear or wrong case and prints them. Sizes are tiny and
each layer is built once, so that the valid variants compile once per signature.
"""

from __future__ import annotations

import collections
import math
import os
import random
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jlstm
from jlstm import _checks

SEED = 1729
B, T, F, U = 2, 3, 2, 3
KEY = jax.random.key(0)
PACKAGE = os.path.dirname(jlstm.__file__) + os.sep
BAD = ("silent", "unclear", "wrong")


class Case(NamedTuple):
    name: str
    call: Callable[[], Any]
    # None: an error is due; else the call must return what `expect()` returns.
    expect: Callable[[], Any] | None = None


def grade(case: Case) -> tuple[str, str]:
    """The case's grade and, for a bad one, what happened."""
    try:
        out = case.call()
    except (ValueError, TypeError) as err:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        where = f"{type(err).__name__} at {frame.filename}:{frame.lineno}: {str(err)[:200]}"
        if case.expect is None and frame.filename.startswith(PACKAGE) and "expected" in str(err):
            return "clear", where
        return "unclear", where
    except Exception as err:  # noqa: BLE001 -- grading every exception is the point
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return "unclear", f"{type(err).__name__} at {frame.filename}:{frame.lineno}: {str(err)[:200]}"
    if case.expect is None:
        return "silent", f"returned {_describe(out)}"
    if not _same(out, case.expect()):
        return "wrong", f"returned {_describe(out)}, expected {_describe(case.expect())}"
    return "ok", ""


def _describe(x: Any) -> str:
    leaves = jax.tree_util.tree_leaves(x, is_leaf=lambda v: isinstance(v, jlstm.Layer))
    return ", ".join(f"{getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}".strip() for v in leaves)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, jlstm.Layer) and isinstance(b, jlstm.Layer):
        return _same(a.init(KEY, (None, T, F)), b.init(KEY, (None, T, F)))
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    return all(_same_leaf(x, y) for x, y in zip(leaves_a, leaves_b))


def _same_leaf(x: Any, y: Any) -> bool:
    if not (hasattr(x, "dtype") and hasattr(y, "dtype")):
        return x == y
    return np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y, True)


# ---------------------------------------------------------------------------------------
# Mutations of one argument: (label, value) pairs, all bad, and valid variants.


def bad_arrays(
    r: random.Random, shape: tuple[int, ...], sized: tuple[int, ...] | None = None
) -> Iterator[tuple[str, Any]]:
    """Bad values for a float array slot of `shape`, whose `sized` axes (default: all) must match."""
    wrong_axis = r.choice(sized if sized is not None else range(len(shape)))
    wrong = tuple(d + r.randint(1, 3) if i == wrong_axis else d for i, d in enumerate(shape))
    yield "None", None
    yield "python float", 1.5
    yield "str", "abc"
    yield "dict", {"x": np.zeros(shape, np.float32)}
    yield f"rank {len(shape) - 1}", np.zeros(shape[1:], np.float32)
    yield f"rank {len(shape) + 1}", np.zeros((r.randint(1, 3),) + shape, np.float32)
    yield f"shape {wrong}", np.zeros(wrong, np.float32)
    yield "complex", np.zeros(shape, np.complex64)
    yield "object", np.full(shape, None, object)
    yield "strings", np.full(shape, "a")
    yield "ragged list", [[0.0] * (k + 1) for k in range(shape[0])]
    yield "PRNG key", KEY


def valid_arrays(value: np.ndarray) -> Iterator[tuple[str, Any, Any]]:
    """Valid variants of a float array: (label, variant, the float array it stands for)."""
    yield "nested list", value.tolist(), value
    ones = np.ones(value.shape)
    yield "int", ones.astype(np.int32), ones.astype(np.float32)
    yield "bool", ones.astype(bool), ones.astype(np.float32)


def bad_leaves(r: random.Random, leaf: np.ndarray) -> Iterator[tuple[str, Any]]:
    """Bad values for one param leaf."""
    yield "None", None
    yield "python float", 0.5
    yield "list", np.asarray(leaf).tolist()
    yield "int32", np.asarray(leaf).astype(np.int32)
    yield "bool", np.asarray(leaf).astype(bool)
    yield "complex64", np.asarray(leaf).astype(np.complex64)
    yield "float16 among float32", np.asarray(leaf).astype(np.float16)
    yield "object", np.asarray(leaf).astype(object)
    yield "strings", np.full(leaf.shape, "w")
    yield "PRNG keys", jax.random.split(KEY, leaf.shape[0])
    if leaf.ndim != 2 or leaf.shape[0] != leaf.shape[1]:
        yield "transposed", np.asarray(leaf).T if leaf.ndim == 2 else np.asarray(leaf)[None]
    yield f"extra rows {r.randint(1, 3)}", np.zeros((leaf.shape[0] + r.randint(1, 3),) + leaf.shape[1:], np.float32)


def bad_param_trees(r: random.Random, params: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Bad param trees for a layer whose params are the dict `params`."""
    yield "None", None
    yield "list of the dict", [params]
    yield "tuple of leaves", tuple(params.values())
    yield "empty dict", {}
    missing = r.choice(sorted(params))
    yield f"without {missing!r}", {k: v for k, v in params.items() if k != missing}
    yield "an extra key", {**params, "gamma": np.zeros(U, np.float32)}
    for key in sorted(params):
        for label, leaf in bad_leaves(r, params[key]):
            yield f"[{key!r}] {label}", {**params, key: leaf}


def bad_keys(r: random.Random) -> Iterator[tuple[str, Any]]:
    yield "None", None
    yield "int", r.randint(0, 99)
    yield "float", 0.5
    yield "str", "key"
    yield "float32 (2,)", np.zeros(2, np.float32)
    yield "uint32 (3,)", np.zeros(3, np.uint32)
    yield "uint32 (2, 2)", np.zeros((2, 2), np.uint32)
    yield "a batch of 2 keys", jax.random.split(KEY, 2)
    yield "list of 2 ints", [0, 0]


BAD_SIZES = [0, -1, 2.5, math.nan, math.inf, "3", None, True, [3], np.float32(3), 2**31, 99999999999]
BAD_FLAGS = [1, 0, "yes", None, np.float32(1), [True]]
BAD_RATES = [-0.1, 1.0, 1.5, math.nan, math.inf, -math.inf, "0.5", None, True, 0.5j, [0.5], np.array([0.5])]
BAD_NAMES = [5, 1.5, b"name", ["name"], True]
# dtype= and param_dtype=: not a policy name, not a float dtype (None is valid: no policy).
BAD_DTYPES = ["float33", "mixed_float32", "int8", np.complex64, 3, True, [jnp.float32], b"float32"]


def _wrong_shape_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.zeros((1,), dtype)


def _int_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.zeros(shape, jnp.int32)


def _zeros_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.zeros(shape, dtype)


# ---------------------------------------------------------------------------------------
# The cases, per part of the API.

RECURRENT = {"LSTM": jlstm.LSTM, "GRU": jlstm.GRU, "SimpleRNN": jlstm.SimpleRNN}


def constructor_cases(r: random.Random) -> Iterator[Case]:
    for kind, make in RECURRENT.items():
        slots: dict[str, list[Any]] = {
            "units": BAD_SIZES,
            "return_sequences": BAD_FLAGS,
            "return_state": BAD_FLAGS,
            "go_backwards": BAD_FLAGS,
            "use_bias": BAD_FLAGS,
            "remat": BAD_FLAGS,
            "dropout": BAD_RATES,
            "recurrent_dropout": BAD_RATES,
            "unroll": [0, -2, 1.5, "2", None, math.nan, 2**31, [2]],
            "activation": ["tanhh", 5, 1.5, ["tanh"], b"tanh"],
            "kernel_initializer": ["glorot", 5, None, _wrong_shape_init, _int_init],
            "recurrent_initializer": [_wrong_shape_init],
            "bias_initializer": [_int_init],
            "zero_output_for_mask": BAD_FLAGS,
            "dtype": BAD_DTYPES,
            "param_dtype": BAD_DTYPES + ["mixed_bfloat16"],
            "name": BAD_NAMES,
        }
        if kind != "SimpleRNN":
            slots["recurrent_activation"] = ["tanhh", 7]
            slots["use_cudnn"] = [1, 0, "yes", None, "Auto"]
        if kind == "LSTM":
            slots["unit_forget_bias"] = BAD_FLAGS
            slots["cudnn_allow_tf32"] = BAD_FLAGS
        if kind == "GRU":
            slots["reset_after"] = BAD_FLAGS
        for slot, values in slots.items():
            for value in values:
                kwargs = {"units": U, slot: value}
                # An initializer's output is seen at init.
                yield Case(f"{kind}({slot}={value!r})", lambda m=make, k=kwargs: m(**k).init(KEY, (None, T, F)))
        valid = {
            "units": np.int64(U),
            "use_bias": np.bool_(True),
            "dropout": np.float32(0.25),
            "unroll": np.int32(2),
            "activation": None,
            "kernel_initializer": _zeros_init,
            "name": "custom",
        }
        for slot, value in valid.items():
            yield Case(
                f"{kind}({slot}={value!r}) [valid]",
                lambda m=make, s=slot, v=value: m(**{"units": U, s: v}).init(KEY, (None, T, F)),
                lambda m=make, s=slot: m(
                    U, kernel_initializer=_zeros_init if s == "kernel_initializer" else "glorot_uniform"
                ).init(KEY, (None, T, F)),
            )
    for value in BAD_SIZES:
        yield Case(f"Dense({value!r})", lambda v=value: jlstm.Dense(v))
    dense_slots = {"activation": ["soft_max", 3], "use_bias": BAD_FLAGS, "dtype": BAD_DTYPES, "name": BAD_NAMES}
    for slot, values in dense_slots.items():
        for value in values:
            yield Case(f"Dense(2, {slot}={value!r})", lambda k={slot: value}: jlstm.Dense(2, **k))
    yield Case(
        "Dense(kernel_initializer=wrong shape)",
        lambda: jlstm.Dense(2, kernel_initializer=_wrong_shape_init).init(KEY, (None, F)),
    )
    for value in BAD_RATES:
        yield Case(f"Dropout({value!r})", lambda v=value: jlstm.Dropout(v))
    for value in [math.nan, "a", None, True, [0.0], 0j, np.zeros(2)]:
        yield Case(f"Masking({value!r})", lambda v=value: jlstm.Masking(v))
    yield Case(
        "Masking(inf) [valid]",
        lambda: jlstm.Masking(math.inf).apply({}, np.ones((B, T, F))),
        lambda: jnp.ones((B, T, F)),
    )
    for name in BAD_NAMES:
        yield Case(f"Dropout(name={name!r})", lambda n=name: jlstm.Dropout(0.5, name=n))
        yield Case(f"Masking(name={name!r})", lambda n=name: jlstm.Masking(name=n))
        yield Case(f"Bidirectional(name={name!r})", lambda n=name: jlstm.Bidirectional(jlstm.LSTM(U), name=n))
        yield Case(f"Sequential(name={name!r})", lambda n=name: jlstm.Sequential([jlstm.LSTM(U)], name=n))
    lstm = jlstm.LSTM(U)
    for label, value in {
        "Dense": jlstm.Dense(2),
        "None": None,
        "str": "LSTM",
        "(init, apply)": tuple(lstm),
        "Bidirectional": jlstm.Bidirectional(lstm),
        "LSTM class": jlstm.LSTM,
    }.items():
        yield Case(f"Bidirectional({label})", lambda v=value: jlstm.Bidirectional(v))
        if value is None:
            continue  # the default backward layer
        yield Case(
            f"Bidirectional(backward_layer={label})", lambda v=value: jlstm.Bidirectional(lstm, backward_layer=v)
        )
    for mode in ["max", 5, "none", True, ["sum"]]:
        yield Case(f"Bidirectional(merge_mode={mode!r})", lambda m=mode: jlstm.Bidirectional(lstm, merge_mode=m))
    yield Case(
        "Bidirectional(backward_layer forwards)", lambda: jlstm.Bidirectional(lstm, backward_layer=jlstm.LSTM(U))
    )
    for label, value in {
        "None": None,
        "a single layer": lstm,
        "str": "LSTM",
        "[]": [],
        "[None]": [None],
        "[LSTM, 5]": [lstm, 5],
        "5": 5,
        "{name: layer}": {"lstm": lstm},
        "[(init, apply)]": [tuple(lstm)],
    }.items():
        yield Case(f"Sequential({label})", lambda v=value: jlstm.Sequential(v))
    yield Case(
        "Sequential(generator) [valid]",
        lambda: jlstm.Sequential(layer for layer in [lstm]).init(KEY, (None, T, F)),
        lambda: jlstm.Sequential([lstm]).init(KEY, (None, T, F)),
    )
    multi = jlstm.Sequential([jlstm.LSTM(U, return_state=True), jlstm.Dense(2)])
    yield Case("Sequential: several outputs before the last layer", lambda: multi.init(KEY, (None, T, F)))


def layers() -> dict[str, tuple[jlstm.Layer, Any]]:
    """Every layer kind, built once, with its params on (None, T, F) inputs."""
    out = {}
    for kind, make in RECURRENT.items():
        out[kind] = make(U, return_sequences=True, return_state=True)
        out[f"Bidirectional({kind})"] = jlstm.Bidirectional(make(U, return_sequences=True))
    out["Sequential"] = jlstm.Sequential(
        [jlstm.Masking(), jlstm.LSTM(U, return_sequences=True), jlstm.Dropout(0.5), jlstm.Dense(2)]
    )
    out["Dense"] = jlstm.Dense(2)
    out["Dropout"] = jlstm.Dropout(0.5)
    out["Masking"] = jlstm.Masking()
    return {kind: (layer, layer.init(KEY, (None, T, F))[1]) for kind, layer in out.items()}


def bad_input_shapes(r: random.Random, kind: str = "LSTM") -> Iterator[tuple[str, Any]]:
    """Bad input shapes for a layer of `kind` (Dense takes any rank >= 2, Dropout any)."""
    yield "None", None
    yield "int", 5
    yield "str", "abc"
    if kind != "Dropout":
        yield "rank 1", (F,)
    if kind not in ("Dense", "Dropout"):
        yield "rank 2", (None, F)
        yield "rank 4", (None, T, T, F)
    if kind != "Dropout":
        yield "features None", (None, T, None)
    yield "features 0", (None, T, 0)
    yield "features 2.0", (None, T, 2.0)
    yield "features '2'", (None, T, "2")
    yield "features 2**31", (None, T, 2**31)
    yield "batch True", (True, T, F)
    negative = -r.randint(2, 9)
    yield f"timesteps {negative}", (None, negative, F)
    yield "timesteps 99999999999", (None, 99999999999, F)
    yield "batch 2.5", (2.5, T, F)


def init_cases(r: random.Random, built: dict[str, tuple[jlstm.Layer, Any]]) -> Iterator[Case]:
    for kind, (layer, _) in built.items():
        for label, rng in bad_keys(r):
            yield Case(f"{kind}.init(rng={label})", lambda lay=layer, k=rng: lay.init(k, (None, T, F)))
        for label, shape in bad_input_shapes(r, kind):
            yield Case(f"{kind}.init(input_shape={label})", lambda lay=layer, s=shape: lay.init(KEY, s))
        for label, shape in {
            "list": [None, T, F],
            "stax -1 batch": (-1, T, F),
            "numpy dims": (None, np.int64(T), np.int32(F)),
        }.items():
            yield Case(
                f"{kind}.init(input_shape={label}) [valid]",
                lambda lay=layer, s=shape: lay.init(KEY, s)[1],
                lambda lay=layer: lay.init(KEY, (None, T, F))[1],
            )
        yield Case(
            f"{kind}.init(rng=raw PRNGKey) [valid]",
            lambda lay=layer: lay.init(jax.random.PRNGKey(0), (None, T, F)),
            lambda lay=layer: lay.init(KEY, (None, T, F)),
        )


def apply_cases(r: random.Random, built: dict[str, tuple[jlstm.Layer, Any]]) -> Iterator[Case]:
    x = np.asarray(jax.random.normal(jax.random.key(1), (B, T, F)))
    for kind, (layer, params) in built.items():
        apply = layer.apply
        yield from _params_cases(r, kind, apply, params, x)
        for label, value in bad_arrays(r, (B, T, F), sized=(2,)):
            if _any_goes(kind, label):
                continue
            yield Case(f"{kind}.apply(inputs={label})", lambda a=apply, p=params, v=value: a(p, v))
            if _numeric_array(value):  # traced, the checks must come first too
                yield Case(f"jit({kind}.apply)(inputs={label})", lambda a=apply, p=params, v=value: jax.jit(a)(p, v))
        for label, value, stands_for in valid_arrays(x):
            # Masking keeps the inputs' dtype, as Keras's does; the others cast to float.
            dtype = jnp.asarray(value).dtype if kind == "Masking" else None
            yield Case(
                f"{kind}.apply(inputs={label}) [valid]",
                lambda a=apply, p=params, v=value: a(p, v),
                lambda a=apply, p=params, v=stands_for, d=dtype: a(p, v) if d is None else a(p, v).astype(d),
            )
        for label, value in [("1", 1), ("'yes'", "yes"), ("None", None), ("[True]", [True]), ("0.0", 0.0)]:
            yield Case(f"{kind}.apply(training={label})", lambda a=apply, p=params, v=value: a(p, x, training=v))
        yield Case(
            f"{kind}.apply(training=np.bool_(False)) [valid]",
            lambda a=apply, p=params: a(p, x, training=np.bool_(False)),
            lambda a=apply, p=params: a(p, x),
        )
        if kind in ("Dense", "Dropout", "Masking"):
            continue
        yield from _mask_cases(r, kind, apply, params, x)
        if kind != "Sequential":
            yield from _state_cases(r, kind, layer, params, x)
    yield from _rng_cases(r, x)


def _any_goes(kind: str, label: str) -> bool:
    """Whether `kind` takes inputs that `label` made bad for a recurrent layer: Dense takes
    any rank >= 2, Dropout any array; neither they nor Masking have a features size to match."""
    free = {
        "Dense": ("rank 2", "rank 4"),
        "Dropout": ("rank 2", "rank 4", "python float", "shape"),
        "Masking": ("shape",),
    }
    return any(label.startswith(prefix) for prefix in free.get(kind, ()))


def _params_cases(r, kind, apply, params, x) -> Iterator[Case]:
    if kind == "Sequential":
        yield Case("Sequential.apply(params=dict)", lambda: apply(params[1], x))
        yield Case("Sequential.apply(params=None)", lambda: apply(None, x))
        yield Case("Sequential.apply(params=3 of 4)", lambda: apply(params[:3], x))
        swapped = (params[0], params[3], params[2], params[1])
        yield Case("Sequential.apply(params=swapped)", lambda: apply(swapped, x))
        for label, tree in bad_param_trees(r, params[1]):
            yield Case(f"Sequential.apply(params[1]{label})", lambda t=tree: apply((params[0], t, *params[2:]), x))
        return
    if kind.startswith("Bidirectional"):
        yield Case(f"{kind}.apply(params=forward only)", lambda: apply(params["forward"], x))
        yield Case(f"{kind}.apply(params=None)", lambda: apply(None, x))
        yield Case(f"{kind}.apply(params=a pair)", lambda: apply((params["forward"], params["backward"]), x))
        for label, tree in bad_param_trees(r, params["backward"]):
            yield Case(f"{kind}.apply(params['backward']{label})", lambda t=tree: apply({**params, "backward": t}, x))
        return
    if not params:  # Dropout, Masking
        for label, tree in [("None", None), ("a key", {"kernel": np.zeros((F, 2), np.float32)}), ("list", [])]:
            yield Case(f"{kind}.apply(params={label})", lambda t=tree: apply(t, x))
        return
    for label, tree in bad_param_trees(r, params):
        yield Case(f"{kind}.apply(params{label})", lambda t=tree: apply(t, x))
    numpy_params = {k: np.asarray(v) for k, v in params.items()}
    yield Case(f"{kind}.apply(numpy params) [valid]", lambda: apply(numpy_params, x), lambda: apply(params, x))
    # Under jax.jit the checks see tracers: those of array trees must still come first.
    for label, tree in bad_param_trees(r, params):
        if isinstance(tree, dict) and tree and all(_numeric_array(v) for v in tree.values()):
            yield Case(f"jit({kind}.apply)(params{label})", lambda t=tree: jax.jit(apply)(t, x))


def _numeric_array(v: Any) -> bool:
    return isinstance(v, (np.ndarray, jax.Array)) and isinstance(v.dtype, np.dtype) and v.dtype.kind in "fciub"


def _mask_cases(r, kind, apply, params, x) -> Iterator[Case]:
    ones = np.ones((B, T), bool)
    bad_masks = {
        "shape (B, T + 1)": np.ones((B, T + 1), bool),
        "shape (T, B)": np.ones((T, B), bool),
        "rank 3": np.ones((B, T, 1), bool),
        "float": ones.astype(np.float32),
        "complex": ones.astype(np.complex64),
        "strings": np.full((B, T), "t"),
        "python True": True,
        "ints 0 and 2": np.where(ones, 2, 0),
    }
    for label, mask in bad_masks.items():
        yield Case(f"{kind}.apply(mask={label})", lambda m=mask: apply(params, x, mask=m))
    lengths = np.array([T, 1])
    mask = np.arange(T)[None, :] < lengths[:, None]
    bad_lengths = {
        "negative": np.array([-1, T]),
        f"> T={T}": np.array([T + 1, 1]),
        "huge int64": np.array([2**32 + 1, 1]),
        "float": lengths.astype(np.float32),
        "bool": np.array([True, True]),
        "shape (B + 1,)": np.array([1, 1, 1]),
        "shape (B, 1)": lengths[:, None],
        "python int": T,
        "None entries": [T, None],
        "a list of 3": [T, 1, 1],
        "NaN": np.array([np.nan, 1.0]),
        "with a mask": None,
    }
    for label, value in bad_lengths.items():
        extra = {"mask": mask} if label == "with a mask" else {}
        value = lengths if label == "with a mask" else value
        yield Case(f"{kind}.apply(lengths={label})", lambda v=value, e=extra: apply(params, x, lengths=v, **e))
    for label, value in {"list": [T, 1], "uint8": lengths.astype(np.uint8), "int64": lengths.astype(np.int64)}.items():
        yield Case(
            f"{kind}.apply(lengths={label}) [valid]",
            lambda v=value: apply(params, x, lengths=v),
            lambda: apply(params, x, mask=mask),
        )
    yield Case(
        f"{kind}.apply(mask=ints 0/1) [valid]",
        lambda: apply(params, x, mask=mask.astype(np.int32)),
        lambda: apply(params, x, mask=mask),
    )


def _state_cases(r, kind, layer, params, x) -> Iterator[Case]:
    cell_kind = kind.removeprefix("Bidirectional(").rstrip(")")
    n = (2 if cell_kind == "LSTM" else 1) * (2 if kind.startswith("Bidirectional") else 1)
    state = [np.asarray(jax.random.normal(jax.random.key(2 + i), (B, U))) for i in range(n)]
    apply = layer.apply
    for label, value in bad_arrays(r, (B, U)):
        yield Case(
            f"{kind}.apply(initial_state[0]={label})", lambda v=value: apply(params, x, initial_state=[v, *state[1:]])
        )
    yield Case(
        f"{kind}.apply(initial_state={n + 1} arrays)", lambda: apply(params, x, initial_state=state + [state[0]])
    )
    yield Case(f"{kind}.apply(initial_state=a dict)", lambda: apply(params, x, initial_state={"h": state[0]}))
    if n > 1:
        yield Case(f"{kind}.apply(initial_state={n - 1} arrays)", lambda: apply(params, x, initial_state=state[:-1]))
        yield Case(f"{kind}.apply(initial_state=stacked)", lambda: apply(params, x, initial_state=np.stack(state)))
    yield Case(
        f"{kind}.apply(initial_state=a tuple of lists) [valid]",
        lambda: apply(params, x, initial_state=tuple(s.tolist() for s in state)),
        lambda: apply(params, x, initial_state=state),
    )


def _rng_cases(r: random.Random, x: np.ndarray) -> Iterator[Case]:
    dropping = {
        "LSTM": jlstm.LSTM(U, dropout=0.5),
        "GRU": jlstm.GRU(U, recurrent_dropout=0.5),
        "Bidirectional": jlstm.Bidirectional(jlstm.SimpleRNN(U, dropout=0.5)),
        "Sequential": jlstm.Sequential([jlstm.LSTM(U, return_sequences=True), jlstm.Dropout(0.5)]),
        "Dropout": jlstm.Dropout(0.5),
    }
    for kind, layer in dropping.items():
        _, params = layer.init(KEY, (None, T, F))
        for label, rng in bad_keys(r):
            yield Case(
                f"{kind}.apply(training=True, rng={label})",
                lambda a=layer.apply, p=params, k=rng: a(p, x, training=True, rng=k),
            )


def step_cases(r: random.Random) -> Iterator[Case]:
    steps = {
        "lstm_step": (jlstm.LSTM, jlstm.lstm_step, 2),
        "gru_step": (jlstm.GRU, jlstm.gru_step, 1),
        "simple_rnn_step": (jlstm.SimpleRNN, jlstm.simple_rnn_step, 1),
    }
    x_t = np.ones((B, F), np.float32)
    for name, (make, step, n) in steps.items():
        _, params = make(U).init(KEY, (None, T, F))
        state = tuple(np.zeros((B, U), np.float32) for _ in range(n))

        def call(p=params, s=state, x=x_t, step=step, n=n, **kw):
            return step(p, s if n == 2 else s[0], x, **kw)

        for label, tree in bad_param_trees(r, params):
            if label.startswith("without 'bias'"):
                continue  # a step takes params without a bias
            yield Case(f"{name}(params{label})", lambda t=tree, c=call: c(p=t))
        for label, value in bad_arrays(r, (B, F)):
            yield Case(f"{name}(x_t={label})", lambda v=value, c=call: c(x=v))
        for label, value in bad_arrays(r, (B, U)):
            yield Case(f"{name}(state[0]={label})", lambda v=value, c=call, s=state: c(s=(v, *s[1:])))
        for label, value, stands_for in valid_arrays(x_t):
            yield Case(
                f"{name}(x_t={label}) [valid]", lambda v=value, c=call: c(x=v), lambda v=stands_for, c=call: c(x=v)
            )
        if n == 2:
            yield Case(f"{name}(state=3 arrays)", lambda c=call, s=state: c(s=s + s[:1]))
            yield Case(f"{name}(state=h only)", lambda c=call, s=state: c(s=s[0]))
        yield Case(f"{name}(activation='tanhh')", lambda c=call: c(activation="tanhh"))
        yield Case(f"{name}(activation=5)", lambda c=call: c(activation=5))
    yield Case("gru_step(reset_after=1)", lambda: jlstm.gru_step(*_gru_args(), reset_after=1))


def _gru_args():
    _, params = jlstm.GRU(U).init(KEY, (None, T, F))
    return params, np.zeros((B, U), np.float32), np.ones((B, F), np.float32)


def count_and_summary_cases(r: random.Random, built: dict[str, tuple[jlstm.Layer, Any]]) -> Iterator[Case]:
    layer, params = built["LSTM"]
    for label, tree in {
        "str": "abc",
        "a str leaf": {"kernel": "w"},
        "a list of ints": [1, 2],
        "an object leaf": {"kernel": object()},
        "python float": 1.5,
    }.items():
        yield Case(f"count_params({label})", lambda t=tree: jlstm.count_params(t))
    yield Case("count_params(layer)", lambda: jlstm.count_params(layer))
    yield Case("count_params(params, input_shape)", lambda: jlstm.count_params(params, (None, T, F)))
    for label, shape in bad_input_shapes(r):
        yield Case(f"count_params(layer, {label})", lambda s=shape: jlstm.count_params(layer, s))
        yield Case(f"summary(layer, {label})", lambda s=shape: jlstm.summary(layer, s))
    yield Case(
        "count_params(ShapeDtypeStructs) [valid]",
        lambda: jlstm.count_params(jax.eval_shape(lambda: params)),
        lambda: jlstm.count_params(params),
    )
    for label, value in {
        "None": None,
        "str": "LSTM",
        "(init, apply)": tuple(layer),
        "5": 5,
        "LSTM class": jlstm.LSTM,
    }.items():
        yield Case(f"summary({label})", lambda v=value: jlstm.summary(v, (None, T, F)))
        yield Case(f"count_params({label}, input_shape)", lambda v=value: jlstm.count_params(v, (None, T, F)))
    for label, namer in {"5": 5, "str": "namer", "Namer class": jlstm.Namer, "dict": {}}.items():
        yield Case(f"summary(namer={label})", lambda n=namer: jlstm.summary(layer, (None, T, F), namer=n))


def checkpoint_cases(r: random.Random, tmp: str, built: dict[str, tuple[jlstm.Layer, Any]]) -> Iterator[Case]:
    _, params = built["LSTM"]
    path = os.path.join(tmp, "good.ckpt")
    jlstm.save(path, params)
    target = os.path.join(tmp, "bad.ckpt")
    bad_trees = {
        "an object": {"w": object()},
        "an object array": {"w": np.array([None, 1], object)},
        "a str": {"w": "text"},
        "bytes": {"w": b"xyz"},
        "a set": {"w": {1, 2}},
        "a tuple key": {(1, 2): np.zeros(2)},
        "a float key": {1.5: np.zeros(2)},
        "an int beyond 64 bits": {"w": 2**70},
        "an int below -2**63": {"w": -(2**63) - 1},
        "a str array": {"w": np.array(["a", "b"])},
        "a datetime array": {"w": np.array(["2024-01-01"], "datetime64[D]")},
        "a function": {"w": len},
    }
    for label, tree in bad_trees.items():
        yield Case(f"save(path, {label})", lambda t=tree: jlstm.save(target, t))
    for label, p in {"None": None, "int": 3, "list": [target], "float": 1.5}.items():
        yield Case(f"save(path={label})", lambda p=p: jlstm.save(p, params))
        yield Case(f"load(path={label})", lambda p=p: jlstm.load(p))
    likes = {
        "a missing key": {k: v for k, v in params.items() if k != "bias"},
        "an extra key": {**params, "gamma": np.zeros(3, np.float32)},
        "a wrong shape": {**params, "bias": np.zeros(5, np.float32)},
        "a wrong dtype": {**params, "bias": np.zeros(4 * U, np.float16)},
        "a list": [params],
        "a tuple": tuple(params.values()),
        "a str leaf": {**params, "bias": "b"},
        "an object leaf": {**params, "bias": object()},
        "a float": 1.5,
        "a str": "like",
        "None leaf": {**params, "bias": None},
    }
    for label, like in likes.items():
        yield Case(f"load(like={label})", lambda w=like: jlstm.load(path, like=w))
    yield Case(
        "load(like=ShapeDtypeStructs) [valid]",
        lambda: jlstm.load(path, like=jax.eval_shape(lambda: params)),
        lambda: {k: np.asarray(v) for k, v in params.items()},
    )
    trees = {
        "complex": {"z": np.ones(3, np.complex64)},
        "int": {"i": 2**63 - 1},
        "nested": {"a": (1.5, None, [np.ones(2, bool)])},
    }
    for label, tree in trees.items():
        yield Case(f"save/load({label}) [valid]", lambda t=tree: _roundtrip(target, t), lambda t=tree: t)


def _roundtrip(path: str, tree: Any) -> Any:
    jlstm.save(path, tree)
    return jlstm.load(path)


def all_cases(tmp: str) -> list[Case]:
    r = random.Random(SEED)
    built = layers()
    cases = [
        *constructor_cases(r),
        *init_cases(r, built),
        *apply_cases(r, built),
        *step_cases(r),
        *count_and_summary_cases(r, built),
        *checkpoint_cases(r, tmp, built),
    ]
    names = collections.Counter(c.name for c in cases)
    assert not [n for n, k in names.items() if k > 1], [n for n, k in names.items() if k > 1]
    return cases


def run_fuzz(tmp: str) -> tuple[collections.Counter, list[str]]:
    totals: collections.Counter = collections.Counter()
    offending = []
    for case in all_cases(tmp):
        mark, what = grade(case)
        totals[mark] += 1
        if mark in BAD:
            offending.append(f"{mark:8} {case.name}: {what}")
    return totals, offending


def test_fuzz_bad_calls_fail_clearly(tmp_path):
    totals, offending = run_fuzz(str(tmp_path))
    print(f"\nfuzz: {sum(totals.values())} cases, " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    assert not offending, f"{len(offending)} of {sum(totals.values())} cases:\n" + "\n".join(offending)


def test_the_fuzz_has_teeth(monkeypatch):
    """With a check broken, its cases grade silent."""
    monkeypatch.setattr(_checks, "rate", lambda value, what: float(value))
    graded = [
        grade(c) for c in constructor_cases(random.Random(SEED)) if "dropout=" in c.name and "[valid]" not in c.name
    ]
    assert graded and "silent" in {mark for mark, _ in graded}
