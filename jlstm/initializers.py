"""Weight initializers by Keras name, drawn with `jax.nn.initializers`.

Each matches the distribution Keras 3 draws from (same bounds, same scaling); the
random streams differ, so the numbers themselves do.

>>> import jax
>>> from jlstm.initializers import get_initializer
>>> get_initializer("glorot_uniform")(jax.random.key(0), (3, 20)).shape
(3, 20)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from jlstm import _checks

Initializer = Callable[..., jax.Array]

INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": jinit.glorot_uniform(),
    "glorot_normal": jinit.glorot_normal(),
    "he_uniform": jinit.he_uniform(),
    "he_normal": jinit.he_normal(),
    "lecun_uniform": jinit.lecun_uniform(),
    "lecun_normal": jinit.lecun_normal(),
    "orthogonal": jinit.orthogonal(),
    "zeros": jinit.zeros,
    "ones": jinit.ones,
    # Keras 3's defaults for the plain random initializers.
    "random_normal": jinit.normal(stddev=0.05),
    "truncated_normal": jinit.truncated_normal(stddev=0.05),
    "random_uniform": jinit.uniform(scale=0.1),
}


def _shift_uniform(init: Initializer) -> Initializer:
    # jax's uniform draws [0, scale); Keras's RandomUniform draws [-0.05, 0.05).
    def shifted(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return init(key, shape, dtype) - jnp.asarray(0.05, dtype)

    return shifted


INITIALIZERS["random_uniform"] = _shift_uniform(INITIALIZERS["random_uniform"])


def get_initializer(initializer: str | Initializer, what: str = "initializer") -> Initializer:
    """Returns the initializer `(key, shape, dtype=float32) -> array` for a Keras name or
    callable; `what` names the argument in the error for an unknown name, or for a callable
    that returns another shape or dtype than asked.

    Args:
        initializer: a Keras name (a key of `INITIALIZERS`) or a callable `(key, shape, dtype) -> array`.
        what: the argument's name in the errors.

    Returns:
        The initializer.
    """
    init = _checks.named(initializer, INITIALIZERS, what, "(key, shape, dtype) -> array")
    if isinstance(initializer, str):
        return init

    def checked(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return _checks.initialized(init(key, shape, dtype), shape, dtype, what)

    return checked
