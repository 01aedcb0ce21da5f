"""Argument checks that run before JAX sees anything, so bad input fails at the call
with a ValueError/TypeError naming what was expected and what came."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Shape = tuple[int | None, ...]


def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}: expected a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{what}: expected a positive int, got {value}")
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


def unroll_factor(unroll: Any) -> int | bool:
    if isinstance(unroll, bool):
        return unroll
    return positive_int(unroll, "unroll")


def shape_tuple(input_shape: Any, what: str) -> Shape:
    """Any shape as a tuple of ints and Nones."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{what}: expected an input_shape tuple, got {input_shape!r}") from None
    if not all(d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in shape):
        raise TypeError(f"{what}: expected an input_shape of ints and Nones, got {input_shape!r}")
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


def array(value: Any, what: str) -> jax.Array:
    """Anything array-like (a torch tensor too) as a JAX array of a real numeric or bool
    dtype; tracers pass through."""
    if not isinstance(getattr(value, "dtype", None), np.dtype):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{what}: expected an array, got {type(value).__name__}: {err}") from None
    if jnp.issubdtype(value.dtype, jnp.complexfloating) or not (
        jnp.issubdtype(value.dtype, jnp.number) or value.dtype == jnp.bool_
    ):
        raise TypeError(f"{what}: expected a real numeric array, got dtype {value.dtype}")
    return jnp.asarray(value)


def sequence_input(x: Any, features: int, dtype: Any, what: str) -> jax.Array:
    """Inputs of shape (batch, timesteps >= 1, features), cast to the params' `dtype`
    (Keras casts inputs to the layer's dtype)."""
    x = array(x, f"{what} inputs")
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
    return x.astype(dtype)


def sequence_mask(mask: Any, lengths: Any, batch: int, timesteps: int, what: str) -> jax.Array | None:
    """A bool (batch, timesteps) mask from `mask` or from `lengths` (post-padding)."""
    if mask is not None and lengths is not None:
        raise ValueError(f"{what}: pass mask or lengths, not both")
    if lengths is not None:
        lengths = array(lengths, f"{what} lengths")
        if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ValueError(f"{what}: expected lengths as int ({batch},), got {lengths.dtype} {tuple(lengths.shape)}")
        return jnp.arange(timesteps)[None, :] < lengths[:, None]
    if mask is None:
        return None
    mask = array(mask, f"{what} mask")
    if mask.shape != (batch, timesteps):
        raise ValueError(
            f"{what}: expected mask of shape (batch, timesteps) = ({batch}, {timesteps}), got {tuple(mask.shape)}"
        )
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise TypeError(f"{what}: expected a bool or int mask, got dtype {mask.dtype}")
    return mask.astype(bool)


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
        s = array(s, f"{what} initial_state[{i}]")
        if s.shape != (batch, u):
            raise ValueError(f"{what}: expected initial_state[{i}] of shape ({batch}, {u}), got {tuple(s.shape)}")
        out.append(s.astype(dtype))
    return out


def param_tree(params: Any, expected: Mapping[str, tuple[int | None, ...]], what: str) -> None:
    """Checks a dict of arrays has exactly the expected keys and shapes (None: any size)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{what}: expected params as a dict with keys {sorted(expected)}, got {type(params).__name__}")
    if set(params) != set(expected):
        raise ValueError(f"{what}: expected params with keys {sorted(expected)}, got {sorted(params)}")
    for key, shape in expected.items():
        got = tuple(getattr(params[key], "shape", ()))
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got)):
            want = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{what}: expected params[{key!r}] of shape {want}, got {got}")


def prng_key(rng: Any, what: str) -> jax.Array:
    """A JAX PRNG key: a typed key or a raw uint32 (2,) key."""
    dtype = getattr(rng, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and getattr(rng, "shape", None) == (2,)
    if not (typed or raw):
        got = f"{dtype} {getattr(rng, 'shape', '')}" if dtype is not None else type(rng).__name__
        raise TypeError(f"{what}: expected rng as a PRNG key (jax.random.key), got {got}")
    return rng
