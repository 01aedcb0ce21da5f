"""Keras 3's weight regularizers: penalties that training adds to the loss.

A regularizer is any function `(array) -> scalar`. A layer takes them as
`kernel_regularizer=`, `recurrent_regularizer=` and `bias_regularizer=` (a regularizer
below, a callable, or a Keras name: "l1", "l2", "l1l2", "orthogonal_regularizer", or their
class names "L1", "L2", "L1L2", "OrthogonalRegularizer"; a name takes its defaults, as in
Keras). `jlstm.regularization_loss(layer, params)` sums every penalty of a model, and
`jlstm.train` adds it to the loss it differentiates and reports, as Keras's `fit` and
`evaluate` do. The lowercase names (`l1`, `l2`, `l1_l2`, `orthogonal_regularizer`) are the
classes, as in Keras.

Keras's `activity_regularizer` (a penalty on a layer's outputs, divided by the batch size)
has no layer argument here, as `apply` returns outputs and nothing else: put the same
penalty in the loss, per example, e.g. `loss=lambda out, y: mse(out, y) + 0.01 *
jnp.sum(out**2, axis=-1)` (a batch's mean of it is Keras's penalty over the batch size).

>>> import jax.numpy as jnp
>>> from jlstm import regularizers
>>> float(regularizers.L2(2.0)(jnp.ones((5, 5))))
50.0
>>> regularizers.get_regularizer("l1")
L1(l1=0.01)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks, _weights

if TYPE_CHECKING:  # layers.py imports this module
    from jlstm.layers import Layer

Regularizer = Callable[[jax.Array], jax.Array]


def _factor(value: Any, what: str) -> float:
    """A penalty factor as Keras validates one: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a non-negative float, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what}: expected a non-negative float, got {value}")
    return float(value)


def _scaled(factor: float, penalty: jax.Array) -> jax.Array:
    return jnp.asarray(factor, penalty.dtype) * penalty


@dataclasses.dataclass(frozen=True)
class L1:
    """Keras's L1 penalty, `l1 * sum(abs(x))`.

    Args:
        l1: the factor, a float >= 0 (Keras's default, 0.01).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(L1(0.5)(jnp.array([1.0, -3.0])))
        2.0
    """

    l1: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", _factor(self.l1, "L1 l1"))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return _scaled(self.l1, jnp.sum(jnp.abs(x)))


@dataclasses.dataclass(frozen=True)
class L2:
    """Keras's L2 penalty, `l2 * sum(square(x))` (no 1/2).

    Args:
        l2: the factor, a float >= 0 (Keras's default, 0.01).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(L2(0.5)(jnp.array([1.0, -3.0])))
        5.0
    """

    l2: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2", _factor(self.l2, "L2 l2"))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return _scaled(self.l2, jnp.sum(jnp.square(x)))


@dataclasses.dataclass(frozen=True)
class L1L2:
    """Keras's L1 and L2 penalties together, `l1 * sum(abs(x)) + l2 * sum(square(x))`.

    Keras 3's defaults are 0.0 for both (its docstring's 0.01 is Keras 2's): give the factors.

    Args:
        l1: the L1 factor, a float >= 0.
        l2: the L2 factor, a float >= 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(L1L2(l1=0.5, l2=0.5)(jnp.array([1.0, -3.0])))
        7.0
    """

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", _factor(self.l1, "L1L2 l1"))
        object.__setattr__(self, "l2", _factor(self.l2, "L1L2 l2"))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        penalty = jnp.zeros((), x.dtype)
        if self.l1 != 0.0:
            penalty = penalty + _scaled(self.l1, jnp.sum(jnp.abs(x)))
        if self.l2 != 0.0:
            penalty = penalty + _scaled(self.l2, jnp.sum(jnp.square(x)))
        return penalty


@dataclasses.dataclass(frozen=True)
class OrthogonalRegularizer:
    """Keras's penalty for rows (or columns) of a 2-D weight that are not orthogonal:
    `factor * 0.5 * sum(|off-diagonal of n n^T|) / (size * (size - 1) / 2)`, with `n` the
    L2-normalized rows (`mode="rows"`) or columns (`"columns"`).

    Args:
        factor: the factor, a float >= 0 (Keras's default, 0.01).
        mode: "rows" or "columns".
    """

    factor: float = 0.01
    mode: str = "rows"

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", _factor(self.factor, "OrthogonalRegularizer factor"))
        _checks.one_of(self.mode, ("rows", "columns"), "OrthogonalRegularizer mode")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer: expected a weight of rank 2, got shape {tuple(x.shape)}")
        vectors = x if self.mode == "rows" else x.T
        # Keras's ops.normalize: x * min(rsqrt(sum(x**2)), 1 / epsilon)
        inv_norm = jnp.minimum(jax.lax.rsqrt(jnp.sum(jnp.square(vectors), axis=1, keepdims=True)), 1.0 / 1e-7)
        unit = vectors * inv_norm
        size = unit.shape[0]
        off_diagonal = (unit @ unit.T) * (1.0 - jnp.eye(size, dtype=x.dtype))
        pairs = size * (size - 1.0) / 2.0
        return _scaled(self.factor * 0.5, jnp.sum(jnp.abs(off_diagonal)) / jnp.asarray(pairs, x.dtype))


# Keras 3's own aliases.
l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

# The names keras.regularizers.get takes (Keras 3 has no "l1_l2" name: "l1l2").
REGULARIZERS: dict[str, type] = {
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "orthogonal_regularizer": OrthogonalRegularizer,
    "L1": L1,
    "L2": L2,
    "L1L2": L1L2,
    "OrthogonalRegularizer": OrthogonalRegularizer,
}


def get_regularizer(identifier: str | Regularizer | None, what: str = "regularizer") -> Regularizer | None:
    """A regularizer from a Keras name (with its defaults), a callable as it is, or None.

    Args:
        identifier: a name in `REGULARIZERS` ("l1", "l2", "l1l2", "orthogonal_regularizer"
            or the class names), a callable `(array) -> scalar`, or None.
        what: what an error calls the argument.

    Returns:
        The regularizer, or None for None.

    Examples:
        >>> get_regularizer("l2")
        L2(l2=0.01)
        >>> get_regularizer(None) is None
        True
    """
    if identifier is None:
        return None
    found = _checks.named(identifier, REGULARIZERS, what, "(array) -> scalar")
    return found() if isinstance(found, type) else found


def regularization_loss(layer: Layer, params: Any, *, trainable: Any = None) -> jax.Array:
    """The sum of every penalty of `layer`'s regularizers on `params`, through `Sequential`
    and `Bidirectional` (Keras's `sum(model.losses)` from weight regularizers), as a scalar;
    0.0 where none is set. Pure: it works under `jax.jit` and `jax.grad`.

    Args:
        layer: the model, a `jlstm.Layer`.
        params: its params.
        trainable: which params count, as `train.fit` takes it (None: all; Keras counts
            only trainable weights' penalties).

    Returns:
        The summed penalty, a scalar (float32, or the params' wider float).

    Examples:
        >>> import jax.numpy as jnp, jlstm
        >>> dense = jlstm.Dense(2, kernel_regularizer="l2", bias_regularizer=jlstm.regularizers.L1(0.5))
        >>> params = {"kernel": jnp.ones((3, 2)), "bias": -jnp.ones(2)}
        >>> round(float(jlstm.regularization_loss(dense, params)), 6)  # 0.01 * 6 + 0.5 * 2
        1.06
        >>> round(float(jlstm.regularization_loss(dense, params, trainable={"kernel": True, "bias": False})), 6)
        0.06
    """
    penalty = _weights.penalty_or_none(layer, params, trainable, "regularization_loss trainable")
    return jnp.zeros((), jnp.float32) if penalty is None else penalty
