"""The scan driver: one jitted `lax.scan` over time for one or more LSTM directions.

Directions are stacked on a leading axis `D`, so a Bidirectional layer runs both of its
directions in one loop with one batched `h @ recurrent_kernel` per step. The input
projection `x @ kernel + bias` for every timestep is a single matmul before the loop.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.activations import Activation
from jlstm.cell import lstm_gates


class ScanResult(NamedTuple):
    """What `lstm_scan` returns: per-direction sequences (or None) and final states."""

    sequences: jax.Array | None  # (D, B, T, U), each in its own processing order
    h: jax.Array  # (D, B, U)
    c: jax.Array  # (D, B, U)


def _time_major_inputs(x: jax.Array, reverse: tuple[bool, ...]) -> jax.Array:
    # (B, T, F) -> (D, T, B, F): transposing x is cheaper than transposing x @ kernel (4U wide).
    xt = jnp.swapaxes(x, 0, 1)
    return jnp.stack([jnp.flip(xt, 0) if r else xt for r in reverse])


def _project(
    x_dirs: jax.Array, kernels: jax.Array, biases: jax.Array | None, input_dropout: jax.Array | None
) -> jax.Array:
    d, t, b, f = x_dirs.shape
    if input_dropout is not None and input_dropout.shape[1] == 4:
        # Keras's per-gate input masks (with recurrent dropout): gate g sees x * mask[g].
        x_gates = x_dirs[:, None] * input_dropout[:, :, None]  # (D, 4, T, B, F)
        z = jnp.einsum("dgtbf,dfgu->dtbgu", x_gates, kernels.reshape(d, f, 4, -1))
        z = z.reshape(d, t * b, -1)
    else:
        if input_dropout is not None:
            x_dirs = x_dirs * input_dropout[:, :1]
        z = jnp.matmul(x_dirs.reshape(d, t * b, f), kernels)
    if biases is not None:
        z = z + biases[:, None, :]
    return z.reshape(d, t, b, -1)


def _recurrent_projection(
    h: jax.Array, recurrent_kernels: jax.Array, recurrent_dropout: jax.Array | None
) -> jax.Array:
    if recurrent_dropout is None:
        return jnp.matmul(h, recurrent_kernels)
    # Keras's per-gate recurrent masks: gate g sees h * mask[g].
    d, u, _ = recurrent_kernels.shape
    z = jnp.einsum("dgbu,dugv->dbgv", h[:, None] * recurrent_dropout, recurrent_kernels.reshape(d, u, 4, u))
    return z.reshape(d, h.shape[1], 4 * u)


@functools.partial(
    jax.jit,
    static_argnames=(
        "reverse",
        "activation",
        "recurrent_activation",
        "return_sequences",
        "zero_output_for_mask",
        "unroll",
        "remat",
    ),
)
def lstm_scan(
    x: jax.Array,
    kernels: jax.Array,
    recurrent_kernels: jax.Array,
    biases: jax.Array | None,
    h0: jax.Array,
    c0: jax.Array,
    mask: jax.Array | None,
    input_dropout: jax.Array | None = None,
    recurrent_dropout: jax.Array | None = None,
    *,
    reverse: tuple[bool, ...],
    activation: Activation,
    recurrent_activation: Activation,
    return_sequences: bool,
    zero_output_for_mask: bool,
    unroll: int | bool,
    remat: bool = False,
) -> ScanResult:
    """Runs D LSTM directions over `x` (B, T, F) in one scan, with Keras 3 semantics.

    kernels (D, F, 4U), recurrent_kernels (D, U, 4U), biases (D, 4U) or None, h0 and c0
    (D, B, U), mask (B, T) bool or None. Direction d reads time backwards when
    `reverse[d]`, and returns its sequence in that processing order (Keras's
    go_backwards). At a masked step the state is kept and the output is the previous h,
    or zeros with `zero_output_for_mask`. Dropout masks, already scaled, are
    input_dropout (D, G, B, F) with G = 1 or 4 gates, and recurrent_dropout (D, 4, B, U).
    With `remat` the backward pass recomputes each step's gates instead of storing them.
    """
    z_x = jnp.swapaxes(_project(_time_major_inputs(x, reverse), kernels, biases, input_dropout), 0, 1)

    def gates(z_t: jax.Array, h: jax.Array, c: jax.Array):
        z = z_t + _recurrent_projection(h, recurrent_kernels, recurrent_dropout)
        return lstm_gates(z, c, activation, recurrent_activation)

    if mask is None:

        def step(carry, z_t):
            h, c = gates(z_t, *carry)
            return (h, c), (h if return_sequences else None)

        xs = z_x
    else:

        def step(carry, inputs):
            z_t, keep = inputs
            h_prev, c_prev = carry
            h, c = gates(z_t, h_prev, c_prev)
            h = jnp.where(keep, h, h_prev)
            c = jnp.where(keep, c, c_prev)
            if not return_sequences:
                return (h, c), None
            return (h, c), (jnp.where(keep, h, 0) if zero_output_for_mask else h)

        xs = (z_x, _time_major_inputs(mask[..., None], reverse).swapaxes(0, 1))

    if remat:
        step = jax.checkpoint(step)
    (h, c), hs = lax.scan(step, (h0, c0), xs, unroll=unroll)
    sequences = jnp.moveaxis(hs, 0, 2) if return_sequences else None  # (T, D, B, U) -> (D, B, T, U)
    return ScanResult(sequences, h, c)
