"""Argument checks that run before JAX sees anything, so bad input fails at the call
with a ValueError/TypeError naming what was expected and what came."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

Shape = tuple[int | None, ...]


# The largest size (units, features, timesteps, batch) a layer takes: jnp indexes with int32,
# so larger sizes overflow inside JAX (an OverflowError from an int32 cast).
MAX_SIZE = 2**31 - 1
MAX_SIZE_TEXT = f"2**31 - 1 = {MAX_SIZE}"


def positive_int(value: Any, what: str) -> int:
    """A size: an int in [1, MAX_SIZE]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}: expected a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{what}: expected a positive int, got {value}")
    if value > MAX_SIZE:
        raise ValueError(f"{what}: expected a positive int up to {MAX_SIZE_TEXT}, got {value}")
    return int(value)


def one_of(value: Any, choices: Sequence[Any], what: str) -> Any:
    if value not in choices:
        raise ValueError(f"{what}: expected one of {list(choices)}, got {value!r}")
    return value


def named(value: Any, registry: Mapping[str, Any], what: str, callable_form: str) -> Any:
    """A callable as is, or the registry's entry for a name; else a ValueError listing the names."""
    if callable(value):
        return value
    if isinstance(value, str) and value in registry:
        return registry[value]
    raise ValueError(f"{what}: expected one of {sorted(registry)} or a callable {callable_form}, got {value!r}")


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: expected True or False, got {value!r}")
    return bool(value)


def training(value: Any, what: str) -> bool:
    """`apply`'s `training`: a Python bool, as it picks the program (static under jax.jit)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: expected training=True or False (under jax.jit, a static argument), got {value!r}")
    return bool(value)


def layer_name(name: Any, type_name: str) -> str:
    """What errors call a layer: its type and its `name` (None or a str), e.g. "LSTM encoder"."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{type_name} name: expected a str or None, got {name!r}")
    return f"{type_name} {name or ''}".rstrip()


def mask_value(value: Any, what: str) -> int | float:
    """Masking's `mask_value`: a real number that equals itself (NaN would mask nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a number as mask_value, got {value!r}")
    if value != value:  # NaN; np.isnan fails on ints beyond int64
        raise ValueError(f"{what}: expected a mask_value other than NaN (NaN equals nothing: no step would be masked)")
    return float(value) if isinstance(value, (float, np.floating)) else int(value)


def initialized(value: Any, shape: tuple[int, ...], dtype: Any, what: str, *, kind: str = "initializer") -> jax.Array:
    """A custom initializer's (or constraint's, ...: `kind`) output: an array of the `shape`
    and `dtype` it was asked for."""
    want = f"{jnp.dtype(dtype)} {tuple(shape)}"
    got = f"{value.dtype} {tuple(value.shape)}" if hasattr(value, "shape") and hasattr(value, "dtype") else None
    if got != want:
        raise ValueError(f"{what}: expected the {kind} to return a {want} array, got {got or type(value).__name__}")
    return value


def use_cudnn(value: Any, what: str) -> str | bool:
    """`use_cudnn` as Keras 3 takes it: "auto", True or False (not 1 or 0)."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"{what} use_cudnn: expected 'auto', True or False, got {value!r}")
    return value


def rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what}: expected a float in [0, 1), got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what}: expected a float in [0, 1), got {value}")
    return float(value)


def items(value: Any, kind: type, what: str, expected: str) -> tuple[Any, ...]:
    """A non-empty list (tuple, generator, any iterable but a str or a dict) of `kind`s, as a tuple."""
    if isinstance(value, kind):
        raise TypeError(f"{what}: expected {expected}, got a single {_kind_name(value)} (put it in a list)")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{what}: expected {expected}, got {type(value).__name__}")
    value = tuple(value)
    if not value:
        raise TypeError(f"{what}: expected {expected}, got an empty list")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise TypeError(f"{what}: expected {expected}, got {type(item).__name__} at [{i}]")
    return value


def _kind_name(value: Any) -> str:
    return getattr(value, "type_name", type(value).__name__)


def unroll_factor(unroll: Any) -> int | bool:
    if isinstance(unroll, bool):
        return unroll
    return positive_int(unroll, "unroll")


def shape_tuple(input_shape: Any, what: str) -> Shape:
    """Any shape as a tuple of sizes and Nones (stax's -1 kept as given)."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{what}: expected an input_shape tuple, got {input_shape!r}") from None
    if not all(d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in shape):
        raise TypeError(f"{what}: expected an input_shape of ints and Nones, got {input_shape!r}")
    for axis, dim in enumerate(shape):
        if dim is not None and dim != -1:
            positive_int(dim, f"{what}: input_shape[{axis}] in {shape}")
    return shape


def sequence_shape(input_shape: Any, what: str) -> tuple[int | None, int | None, int]:
    """A `(batch, timesteps, features)` shape: batch and timesteps may be None (or -1)."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{what}: expected input_shape (batch, timesteps, features), got {input_shape!r}") from None
    if len(shape) != 3:
        raise ValueError(f"{what}: expected input_shape of rank 3 (batch, timesteps, features), got {shape}")
    # None, or stax's -1, for a size known only at the call.
    shape = tuple(None if (d == -1 and not isinstance(d, bool)) else d for d in shape)
    batch = None if shape[0] is None else positive_int(shape[0], f"{what}: input_shape batch")
    timesteps = None if shape[1] is None else positive_int(shape[1], f"{what}: input_shape timesteps")
    return batch, timesteps, positive_int(shape[2], f"{what}: input_shape features in {shape}")


def numeric(value: Any, what: str) -> np.ndarray | jax.Array:
    """Anything array-like (a torch tensor too) as a NumPy or JAX array of a real numeric or
    bool dtype; tracers pass through. NumPy arrays stay on the host, where a value check
    sees int64 values before JAX would wrap them to int32."""
    if not isinstance(getattr(value, "dtype", None), np.dtype):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{what}: expected an array, got {type(value).__name__}: {err}") from None
    if jnp.issubdtype(value.dtype, jnp.complexfloating) or not (
        jnp.issubdtype(value.dtype, jnp.number) or value.dtype == jnp.bool_
    ):
        raise TypeError(f"{what}: expected a real numeric array, got dtype {value.dtype}")
    return value


def array(value: Any, what: str) -> jax.Array:
    """`numeric(value)` as a JAX array."""
    return jnp.asarray(numeric(value, what))


def concrete(value: np.ndarray | jax.Array) -> np.ndarray | None:
    """The values on the host, or None when they are traced (known only when the program runs)."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def values_within(values: np.ndarray | jax.Array, low: int, high: int, expected: str, name: str, what: str) -> None:
    """Checks low <= values <= high: now when the values are concrete (a ValueError naming the
    bad entries); when traced, only under `jax.experimental.checkify` (a `debug_check`, which
    a plain jit drops, as it cannot raise from inside the program)."""
    host = concrete(values)
    if host is None:
        ok = jnp.all((values >= low) & (values <= high))
        checkify.debug_check(ok, f"{what}: expected {expected}, got {{values}}", values=values)
        return
    bad = np.argwhere((host < low) | (host > high))
    if bad.size:
        shown = ", ".join(f"{name}[{', '.join(map(str, i))}] = {host[tuple(i)]}" for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(f"{what}: expected {expected}, got {shown}{more}")


def sequence_input(x: Any, features: int, dtype: Any, what: str) -> jax.Array:
    """Inputs of shape (batch, timesteps >= 1, features), cast to the call's compute `dtype`
    (Keras casts inputs to the layer's compute dtype)."""
    x = numeric(x, f"{what} inputs")
    if x.ndim != 3:
        raise ValueError(
            f"{what}: expected inputs of rank 3 (batch, timesteps, features={features}), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != features:
        raise ValueError(
            f"{what}: expected inputs with {features} features (as the params were built), got shape {tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{what}: expected at least one timestep, got shape {tuple(x.shape)}")
    return jnp.asarray(x, dtype)  # from NumPy's int64 directly, not through JAX's int32


def sequence_mask(mask: Any, lengths: Any, batch: int, timesteps: int, what: str) -> jax.Array | None:
    """A bool (batch, timesteps) mask from `mask` or from `lengths` (post-padding)."""
    if mask is not None and lengths is not None:
        raise ValueError(f"{what}: expected mask or lengths, got both")
    if lengths is not None:
        lengths = numeric(lengths, f"{what} lengths")
        if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ValueError(f"{what}: expected lengths as int ({batch},), got {lengths.dtype} {tuple(lengths.shape)}")
        values_within(lengths, 0, timesteps, f"lengths in [0, {timesteps}] (the timesteps)", "lengths", what)
        return jnp.arange(timesteps)[None, :] < jnp.asarray(lengths, jnp.int32)[:, None]
    if mask is None:
        return None
    mask = numeric(mask, f"{what} mask")
    if mask.shape != (batch, timesteps):
        raise ValueError(
            f"{what}: expected mask of shape (batch, timesteps) = ({batch}, {timesteps}), got {tuple(mask.shape)}"
        )
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise TypeError(f"{what}: expected a bool or int mask, got dtype {mask.dtype}")
    if mask.dtype != jnp.bool_:
        values_within(mask, 0, 1, "a bool mask, or an int mask of 0s and 1s", "mask", what)
    return jnp.asarray(mask).astype(bool)


def states(initial_state: Any, count: int, batch: int, units: Sequence[int], dtype: Any, what: str) -> list[jax.Array]:
    """`count` state arrays of shapes (batch, units[i]), cast to `dtype`."""
    if not isinstance(initial_state, (list, tuple)) or len(initial_state) != count:
        got = (
            f"{type(initial_state).__name__} of {len(initial_state)}"
            if isinstance(initial_state, (list, tuple))
            else type(initial_state).__name__
        )
        raise ValueError(f"{what}: expected initial_state as {count} arrays, got {got}")
    out = []
    for i, (s, u) in enumerate(zip(initial_state, units)):
        s = numeric(s, f"{what} initial_state[{i}]")
        if s.shape != (batch, u):
            raise ValueError(f"{what}: expected initial_state[{i}] of shape ({batch}, {u}), got {tuple(s.shape)}")
        out.append(jnp.asarray(s, dtype))
    return out


def param_keys(params: Any, keys: Iterable[str], what: str) -> None:
    """Checks `params` is a dict with exactly `keys`."""
    keys = sorted(keys)
    if not isinstance(params, Mapping):
        raise TypeError(f"{what}: expected params as a dict with keys {keys}, got {type(params).__name__}")
    if set(params) != set(keys):
        raise ValueError(f"{what}: expected params with keys {keys}, got {sorted(params, key=str)}")


def param_tree(params: Any, expected: Mapping[str, tuple[int | None, ...]], what: str) -> np.dtype | None:
    """Checks a dict of arrays has exactly the expected keys and shapes (None: any size), all
    of one real floating dtype, which it returns (None for no params)."""
    param_keys(params, expected, what)
    for key, shape in expected.items():
        leaf = params[key]
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise TypeError(f"{what}: expected params[{key!r}] as an array, got {type(leaf).__name__}")
        got = tuple(leaf.shape)
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got)):
            want = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{what}: expected params[{key!r}] of shape {want}, got {got}")
        if not (isinstance(leaf.dtype, np.dtype) and jnp.issubdtype(leaf.dtype, jnp.floating)):
            raise TypeError(f"{what}: expected params[{key!r}] of a real floating dtype, got {leaf.dtype}")
    if not expected:
        return None
    first, *rest = expected
    for key in rest:
        if params[key].dtype != params[first].dtype:
            raise TypeError(
                f"{what}: expected params of one float dtype, got params[{first!r}] {params[first].dtype} "
                f"and params[{key!r}] {params[key].dtype}"
            )
    return params[first].dtype


def prng_key(rng: Any, what: str) -> jax.Array:
    """A single JAX PRNG key: a typed key of shape (), or a raw uint32 key (jax.random.PRNGKey)."""
    raw_shape = _raw_key_shape(jax.config.values["jax_default_prng_impl"])
    if isinstance(rng, jax.Array) and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        if rng.shape == ():
            return rng
    elif getattr(rng, "dtype", None) == np.uint32 and getattr(rng, "shape", None) == raw_shape:
        return rng
    got = f"{rng.dtype} {tuple(rng.shape)}" if hasattr(rng, "dtype") and hasattr(rng, "shape") else type(rng).__name__
    raise TypeError(
        f"{what}: expected rng as a single PRNG key (jax.random.key(seed) of shape (), or a raw uint32 {raw_shape} "
        f"jax.random.PRNGKey(seed)), got {got}"
    )


@functools.cache
def _raw_key_shape(impl: str) -> tuple[int, ...]:
    """The shape of a raw key of the default PRNG implementation `impl` ((2,) for threefry)."""
    return tuple(jax.eval_shape(jax.random.PRNGKey, 0).shape)
