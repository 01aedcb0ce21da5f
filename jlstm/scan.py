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


def _project(x_dirs: jax.Array, kernels: jax.Array, biases: jax.Array | None) -> jax.Array:
    d, t, b, f = x_dirs.shape
    z = jnp.matmul(x_dirs.reshape(d, t * b, f), kernels)
    if biases is not None:
        z = z + biases[:, None, :]
    return z.reshape(d, t, b, -1)


@functools.partial(
    jax.jit,
    static_argnames=(
        "reverse",
        "activation",
        "recurrent_activation",
        "return_sequences",
        "zero_output_for_mask",
        "unroll",
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
    *,
    reverse: tuple[bool, ...],
    activation: Activation,
    recurrent_activation: Activation,
    return_sequences: bool,
    zero_output_for_mask: bool,
    unroll: int | bool,
) -> ScanResult:
    """Runs D LSTM directions over `x` (B, T, F) in one scan, with Keras 3 semantics.

    kernels (D, F, 4U), recurrent_kernels (D, U, 4U), biases (D, 4U) or None, h0 and c0
    (D, B, U), mask (B, T) bool or None. Direction d reads time backwards when
    `reverse[d]`, and returns its sequence in that processing order (Keras's
    go_backwards). At a masked step the state is kept and the output is the previous h,
    or zeros with `zero_output_for_mask`.
    """
    z_x = jnp.swapaxes(_project(_time_major_inputs(x, reverse), kernels, biases), 0, 1)

    def gates(z_t: jax.Array, h: jax.Array, c: jax.Array):
        z = z_t + jnp.matmul(h, recurrent_kernels)
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

    (h, c), hs = lax.scan(step, (h0, c0), xs, unroll=unroll)
    sequences = jnp.moveaxis(hs, 0, 2) if return_sequences else None  # (T, D, B, U) -> (D, B, T, U)
    return ScanResult(sequences, h, c)
