"""Keras 3's weight constraints: projections that training applies to a param after each
optimizer update.

A constraint is any function `(array) -> array` of the same shape and dtype. A layer takes
them as `kernel_constraint=`, `recurrent_constraint=` and `bias_constraint=` (a constraint
below, a callable, or a Keras name: "max_norm", "non_neg", "unit_norm", "min_max_norm", or
their class names "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm"; a name takes its
defaults). `jlstm.apply_constraints(layer, params)` projects every param of a model, and
`jlstm.train`'s step applies it after each update, as Keras's optimizer does. The lowercase
names (`max_norm`, ...) are the classes, as in Keras.

>>> import jax.numpy as jnp
>>> from jlstm import constraints
>>> constraints.NonNeg()(jnp.array([-1.0, 2.0]))
Array([0., 2.], dtype=float32)
>>> constraints.get_constraint("max_norm")
MaxNorm(max_value=2.0, axis=0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks, _weights

if TYPE_CHECKING:  # layers.py imports this module
    from jlstm.layers import Layer

Constraint = Callable[[jax.Array], jax.Array]
Axis = int | tuple[int, ...]
# Keras's backend.epsilon(), which its norm constraints add to the norm they divide by.
EPSILON = 1e-7


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{what}: expected a finite number >= 0, got {value}")
    return float(value)


def _axis(axis: Any, what: str) -> Axis:
    """An int, or a list or tuple of ints (as a tuple), as Keras's `axis`."""
    ints = (int, np.integer)
    if isinstance(axis, ints) and not isinstance(axis, bool):
        return int(axis)
    if isinstance(axis, Sequence) and axis and all(isinstance(a, ints) and not isinstance(a, bool) for a in axis):
        return tuple(int(a) for a in axis)
    raise TypeError(f"{what}: expected an int or a list of ints, got {axis!r}")


def _norms(w: jax.Array, axis: Axis, what: str) -> jax.Array:
    """The L2 norms of `w` over `axis`, kept as size-1 axes; an axis out of `w`'s range
    is a ValueError naming it and the shape."""
    axes = (axis,) if isinstance(axis, int) else axis
    if any(not -w.ndim <= a < w.ndim for a in axes):
        raise ValueError(f"{what}: expected axis within the weight's rank {w.ndim}, got axis={axis}, shape {w.shape}")
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axes, keepdims=True))


def _rescaled(w: jax.Array, norms: jax.Array, desired: jax.Array) -> jax.Array:
    return w * (desired / (jnp.asarray(EPSILON, w.dtype) + norms))


@dataclasses.dataclass(frozen=True)
class MaxNorm:
    """Keras's MaxNorm: scales the slices along `axis` whose L2 norm exceeds `max_value`
    down to it, `w * clip(norm, 0, max_value) / (epsilon + norm)`.

    Args:
        max_value: the largest norm, a number >= 0.
        axis: the axis (or axes) the norm runs over: 0 for each unit's incoming weights
            of a (features, units) kernel.

    Examples:
        >>> import jax.numpy as jnp
        >>> [round(v, 4) for v in MaxNorm(1.0)(jnp.array([[3.0], [4.0]])).ravel().tolist()]
        [0.6, 0.8]
    """

    max_value: float = 2.0
    axis: Axis = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_value", _number(self.max_value, "MaxNorm max_value"))
        object.__setattr__(self, "axis", _axis(self.axis, "MaxNorm axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        w = jnp.asarray(w)
        norms = _norms(w, self.axis, "MaxNorm")
        return _rescaled(w, norms, jnp.clip(norms, 0.0, self.max_value))


@dataclasses.dataclass(frozen=True)
class NonNeg:
    """Keras's NonNeg: negative weights become 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> NonNeg()(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """

    def __call__(self, w: jax.Array) -> jax.Array:
        w = jnp.asarray(w)
        return jnp.maximum(w, jnp.zeros((), w.dtype))


@dataclasses.dataclass(frozen=True)
class UnitNorm:
    """Keras's UnitNorm: `w / (epsilon + norm)`, each slice along `axis` to norm 1.

    Args:
        axis: the axis (or axes) the norm runs over.

    Examples:
        >>> import jax.numpy as jnp
        >>> [round(v, 4) for v in UnitNorm()(jnp.array([[3.0], [4.0]])).ravel().tolist()]
        [0.6, 0.8]
    """

    axis: Axis = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", _axis(self.axis, "UnitNorm axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        w = jnp.asarray(w)
        return w / (jnp.asarray(EPSILON, w.dtype) + _norms(w, self.axis, "UnitNorm"))


@dataclasses.dataclass(frozen=True)
class MinMaxNorm:
    """Keras's MinMaxNorm: moves each slice's norm towards [min_value, max_value], to
    `rate * clip(norm, min_value, max_value) + (1 - rate) * norm`.

    Args:
        min_value: the smallest norm, a number >= 0.
        max_value: the largest norm, a number >= min_value.
        rate: how far to move, in [0, 1]: 1.0 enforces the bounds at every step.
        axis: the axis (or axes) the norm runs over.

    Examples:
        >>> import jax.numpy as jnp
        >>> [round(v, 4) for v in MinMaxNorm(2.0, 3.0)(jnp.array([[0.6], [0.8]])).ravel().tolist()]
        [1.2, 1.6]
    """

    min_value: float = 0.0
    max_value: float = 1.0
    rate: float = 1.0
    axis: Axis = 0

    def __post_init__(self) -> None:
        low = _number(self.min_value, "MinMaxNorm min_value")
        high = _number(self.max_value, "MinMaxNorm max_value")
        if high < low:
            raise ValueError(f"MinMaxNorm: expected min_value <= max_value, got {low} and {high}")
        rate = _number(self.rate, "MinMaxNorm rate")
        if rate > 1.0:
            raise ValueError(f"MinMaxNorm rate: expected a number in [0, 1], got {rate}")
        for name, value in (("min_value", low), ("max_value", high), ("rate", rate)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "axis", _axis(self.axis, "MinMaxNorm axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        w = jnp.asarray(w)
        norms = _norms(w, self.axis, "MinMaxNorm")
        desired = self.rate * jnp.clip(norms, self.min_value, self.max_value) + (1.0 - self.rate) * norms
        return _rescaled(w, norms, desired)


# Keras 3's own aliases.
max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm

# The names keras.constraints.get takes.
CONSTRAINTS: dict[str, type] = {
    "max_norm": MaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
    "min_max_norm": MinMaxNorm,
    "MaxNorm": MaxNorm,
    "NonNeg": NonNeg,
    "UnitNorm": UnitNorm,
    "MinMaxNorm": MinMaxNorm,
}


def get_constraint(identifier: str | Constraint | None, what: str = "constraint") -> Constraint | None:
    """A constraint from a Keras name (with its defaults), a callable as it is, or None.

    Args:
        identifier: a name in `CONSTRAINTS` ("max_norm", "non_neg", "unit_norm",
            "min_max_norm" or the class names), a callable `(array) -> array`, or None.
        what: what an error calls the argument.

    Returns:
        The constraint, or None for None.

    Examples:
        >>> get_constraint("unit_norm")
        UnitNorm(axis=0)
    """
    if identifier is None:
        return None
    found = _checks.named(identifier, CONSTRAINTS, what, "(array) -> array")
    return found() if isinstance(found, type) else found


def apply_constraints(layer: Layer, params: Any, *, trainable: Any = None) -> Any:
    """`params` with every constraint of `layer` applied to its param, through `Sequential`
    and `Bidirectional`; params without one are returned as they are. Pure: it works under
    `jax.jit`.

    Args:
        layer: the model, a `jlstm.Layer`.
        params: its params.
        trainable: which params to project, as `train.fit` takes it (None: all; Keras
            projects only trainable weights).

    Returns:
        The params, of the same structure, shapes and dtypes.

    Examples:
        >>> import jax.numpy as jnp, jlstm
        >>> dense = jlstm.Dense(2, kernel_constraint="non_neg")
        >>> params = {"kernel": jnp.array([[-1.0, 2.0]]), "bias": jnp.array([-1.0, 1.0])}
        >>> jlstm.apply_constraints(dense, params)["kernel"]
        Array([[0., 2.]], dtype=float32)
    """
    tree = _weights.rules(layer, params)
    mask = _weights.trainable_mask(params, trainable, "apply_constraints trainable")
    return jax.tree.map(_weights.constrained, params, tree, mask)
