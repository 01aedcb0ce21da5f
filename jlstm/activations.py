"""Activation functions by Keras name.

>>> from jlstm.activations import get_activation
>>> float(get_activation("hard_sigmoid")(0.0))
0.5
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jlstm import _checks

Activation = Callable[[jax.Array], jax.Array]


def _linear(x: jax.Array) -> jax.Array:
    return x


def _gelu(x: jax.Array) -> jax.Array:
    # Keras 3's gelu defaults to the exact (erf) form, JAX's to the tanh approximation.
    return jax.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": _gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "hard_silu": jax.nn.hard_silu,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "exponential": jnp.exp,
    "linear": _linear,
}


def get_activation(activation: str | Activation | None, what: str = "activation") -> Activation:
    """Returns the activation named by Keras's name, a callable as is, or linear for None;
    `what` names the argument in the error for an unknown name.

    Args:
        activation: a Keras name (a key of `ACTIVATIONS`), a callable `x -> y`, or None.
        what: the argument's name in the ValueError for an unknown name.

    Returns:
        The activation, a function of one array.
    """
    if activation is None:
        return _linear
    return _checks.named(activation, ACTIVATIONS, what, "x -> y")
