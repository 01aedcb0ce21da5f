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

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jlstm import _checks
from jlstm.activations import Activation, get_activation

State = tuple[jax.Array, jax.Array]


def gate_activations(
    z: jax.Array,
    units: int,
    activation: Activation,
    recurrent_activation: Activation,
    axis: int = -1,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The activated gates (i, f, c candidate, o) from the pre-activations `z`, whose
    `axis` (the last, or -2 in the scan's column layout) holds the 4U gate columns."""
    # One recurrent_activation over all 4U columns, then slices: on XLA CPU this fuses into
    # one loop and runs 3x faster than activating each gate's slice (the c block is unused).
    gates = recurrent_activation(z)
    u = units
    block = lambda a, k: lax.slice_in_dim(a, k * u, (k + 1) * u, axis=axis)  # noqa: E731
    return block(gates, 0), block(gates, 1), activation(block(z, 2)), block(gates, 3)


def cell_update(
    gates: tuple[jax.Array, ...], c: jax.Array, activation: Activation
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(h, c, activation(c)) from the activated gates and the previous cell state."""
    i, f, g, o = gates
    c = f * c + i * g
    activated_c = activation(c)
    return o * activated_c, c, activated_c


def lstm_gates(
    z: jax.Array,
    c: jax.Array,
    activation: Activation = jnp.tanh,
    recurrent_activation: Activation = jax.nn.sigmoid,
    axis: int = -1,
) -> State:
    """From the gate pre-activations `z` (4U along `axis`) and the cell state `c`, the new `(h, c)`."""
    gates = gate_activations(z, c.shape[axis], activation, recurrent_activation, axis)
    h, c, _ = cell_update(gates, c, activation)
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
    h, c = _checks.step_state(params, state, x_t, "lstm_step")
    z = x_t @ params["kernel"] + h @ params["recurrent_kernel"]
    if "bias" in params:
        z = z + params["bias"]
    h, c = lstm_gates(z, c, get_activation(activation), get_activation(recurrent_activation))
    return (h, c), h
