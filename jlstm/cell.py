"""The LSTM cell math, shared by the scan and the single-step API.

Gates are laid out as Keras lays them out: i, f, c (candidate), o, each `units` wide,
in the last axis of `kernel` (F, 4U), `recurrent_kernel` (U, 4U) and `bias` (4U,).

>>> import jax.numpy as jnp
>>> from jlstm.cell import lstm_step
>>> params = {"kernel": jnp.zeros((3, 20)), "recurrent_kernel": jnp.zeros((5, 20)),
...           "bias": jnp.zeros(20)}
>>> (h, c), y = lstm_step(params, (jnp.zeros((2, 5)), jnp.zeros((2, 5))), jnp.ones((2, 3)))
>>> h.shape
(2, 5)
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jlstm.activations import Activation, get_activation

State = tuple[jax.Array, jax.Array]


def lstm_gates(
    z: jax.Array,
    c: jax.Array,
    activation: Activation = jnp.tanh,
    recurrent_activation: Activation = jax.nn.sigmoid,
) -> State:
    """From the gate pre-activations `z` (..., 4U) and the cell state `c`, the new `(h, c)`."""
    u = c.shape[-1]
    # One recurrent_activation over all 4U columns, then slices: on XLA CPU this fuses into
    # one loop and runs 3x faster than activating each gate's slice (the c block is unused).
    gates = recurrent_activation(z)
    i, f, o = gates[..., :u], gates[..., u : 2 * u], gates[..., 3 * u :]
    c = f * c + i * activation(z[..., 2 * u : 3 * u])
    h = o * activation(c)
    return h, c


def lstm_step(
    params: Mapping[str, Any],
    state: State,
    x_t: jax.Array,
    *,
    activation: str | Activation = "tanh",
    recurrent_activation: str | Activation = "sigmoid",
) -> tuple[State, jax.Array]:
    """One timestep: `((h, c), h)` from the previous `(h, c)` and the input `x_t` (batch, F).

    The same math the scan runs, for custom loops and autoregressive decoding.
    """
    h, c = state
    z = x_t @ params["kernel"] + h @ params["recurrent_kernel"]
    if "bias" in params:
        z = z + params["bias"]
    h, c = lstm_gates(z, c, get_activation(activation), get_activation(recurrent_activation))
    return (h, c), h
