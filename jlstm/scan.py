"""The scan driver: one jitted `lax.scan` over time for one or more LSTM directions.

Directions share the loop: a Bidirectional layer runs both of its directions in one scan
with one batched `h @ recurrent_kernel` per step. The input projection `x @ kernel + bias`
for every timestep is one large matmul per direction before the loop, and the backward
pass is a custom VJP that reuses the saved gate pre-activations.
"""

from __future__ import annotations

import functools
import math
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


class _Statics(NamedTuple):
    """What the recurrence needs besides arrays: hashable, so it is a static argument."""

    activation: Activation
    recurrent_activation: Activation
    zero_output_for_mask: bool
    unroll: int | bool


def _time_major(a: jax.Array, reverse: bool) -> jax.Array:
    # (B, T, ...) -> (T, B, ...). Transposing x is cheaper than transposing x @ kernel (4U wide).
    a = jnp.swapaxes(a, 0, 1)
    return jnp.flip(a, 0) if reverse else a


def _project(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, input_dropout: jax.Array | None
) -> jax.Array:
    """x (T, B, F) @ kernel (F, 4U) + bias as one (T*B, F) GEMM; dropout masks are (G, B, F)."""
    t, b, f = x.shape
    if input_dropout is not None and input_dropout.shape[0] == 4:
        # Keras's per-gate input masks (with recurrent dropout): gate g sees x * mask[g].
        z = jnp.einsum("gtbf,fgu->tbgu", x[None] * input_dropout[:, None], kernel.reshape(f, 4, -1))
    else:
        if input_dropout is not None:
            x = x * input_dropout[0]
        z = x.reshape(t * b, f) @ kernel
    z = z.reshape(t, b, -1)
    return z if bias is None else z + bias


def _recurrent_projection(
    h: jax.Array, recurrent_kernels: jax.Array, recurrent_dropout: jax.Array | None
) -> jax.Array:
    if recurrent_dropout is None:
        return jnp.matmul(h, recurrent_kernels)
    # Keras's per-gate recurrent masks: gate g sees h * mask[g].
    d, u, _ = recurrent_kernels.shape
    z = jnp.einsum("dgbu,dugv->dbgv", h[:, None] * recurrent_dropout, recurrent_kernels.reshape(d, u, 4, u))
    return z.reshape(d, h.shape[1], 4 * u)


def _keep(keep: jax.Array | None, new: jax.Array, old: jax.Array) -> jax.Array:
    return new if keep is None else jnp.where(keep, new, old)


def _scan_states(z_x, recurrent_kernels, h0, c0, keep, recurrent_dropout, statics, emit):
    """The forward loop over z_x, a tuple of (T, B, 4U) per direction. Emits per step
    nothing, the states (h, c), or (h, c, z) for the VJP, each (T, D, B, ...)."""

    def step(carry, inputs):
        z_t, keep_t = inputs
        h_prev, c_prev = carry
        z = jnp.stack(z_t) + _recurrent_projection(h_prev, recurrent_kernels, recurrent_dropout)
        h, c = lstm_gates(z, c_prev, statics.activation, statics.recurrent_activation)
        h, c = _keep(keep_t, h, h_prev), _keep(keep_t, c, c_prev)
        return (h, c), {"none": None, "states": (h, c), "residuals": (h, c, z)}[emit]

    return lax.scan(step, (h0, c0), (tuple(z_x), keep), unroll=statics.unroll)


def _outputs(hs: jax.Array, keep: jax.Array | None, statics: _Statics) -> jax.Array:
    # A masked step's state is the previous one, which is Keras's output there, unless zeros.
    if keep is None or not statics.zero_output_for_mask:
        return hs
    return jnp.where(keep, hs, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _recurrence(z_x, recurrent_kernels, h0, c0, keep, statics, return_sequences):
    """(sequence or None, h, c) of the recurrence over z_x, a tuple of (T, B, 4U) per direction.

    Its VJP reuses the saved gate pre-activations and computes the recurrent kernel's
    gradient as one GEMM over all timesteps, instead of one small matmul per step.
    """
    emit = "states" if return_sequences else "none"
    (h, c), states = _scan_states(z_x, recurrent_kernels, h0, c0, keep, None, statics, emit)
    return (_outputs(states[0], keep, statics) if return_sequences else None), h, c


def _recurrence_fwd(z_x, recurrent_kernels, h0, c0, keep, statics, return_sequences):
    (h, c), (hs, cs, zs) = _scan_states(z_x, recurrent_kernels, h0, c0, keep, None, statics, "residuals")
    out = (_outputs(hs, keep, statics) if return_sequences else None), h, c
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    c_prev = jnp.concatenate([c0[None], cs[:-1]])
    return out, (recurrent_kernels, keep, h_prev, c_prev, zs)


def _recurrence_bwd(statics, return_sequences, residuals, cotangents):
    recurrent_kernels, keep, h_prev, c_prev, zs = residuals
    d_seq, d_h, d_c = cotangents
    gates = functools.partial(
        lstm_gates, activation=statics.activation, recurrent_activation=statics.recurrent_activation
    )
    if d_seq is None:
        d_seq = jnp.zeros_like(h_prev)
    zero_masked_output = keep is not None and statics.zero_output_for_mask
    recurrent_kernels_t = jnp.swapaxes(recurrent_kernels, 1, 2)

    def step(carry, inputs):
        d_h, d_c = carry
        d_out, z, c_before, keep_t = inputs
        d_h_new = d_h + d_out
        d_h_pass = d_h if zero_masked_output else d_h_new
        d_c_new = d_c
        if keep_t is not None:
            d_h_new, d_h_pass = jnp.where(keep_t, d_h_new, 0), jnp.where(keep_t, 0, d_h_pass)
            d_c_new, d_c_pass = jnp.where(keep_t, d_c, 0), jnp.where(keep_t, 0, d_c)
        _, gates_vjp = jax.vjp(gates, z, c_before)
        d_z, d_c_before = gates_vjp((d_h_new, d_c_new))
        d_h_before = jnp.matmul(d_z, recurrent_kernels_t)
        if keep_t is not None:
            d_h_before, d_c_before = d_h_before + d_h_pass, d_c_before + d_c_pass
        return (d_h_before, d_c_before), tuple(d_z)

    (d_h0, d_c0), d_zs = lax.scan(
        step, (d_h, d_c), (d_seq, zs, c_prev, keep), reverse=True, unroll=statics.unroll
    )
    t, _, b, u = h_prev.shape
    # sum_t h_{t-1}^T dz_t over all steps at once: one (U, T*B) @ (T*B, 4U) GEMM per direction.
    d_kernels = jnp.stack(
        [h_prev[:, i].reshape(t * b, u).T @ d_z.reshape(t * b, -1) for i, d_z in enumerate(d_zs)]
    )
    return d_zs, d_kernels, d_h0, d_c0, None


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _run(xs, keep, kernels, biases, input_dropout, recurrent_kernels, recurrent_dropout,
         h0, c0, statics, return_sequences):
    """Projects each direction's time-major inputs and runs the recurrence over them."""
    z_x = tuple(
        _project(x, kernels[i], None if biases is None else biases[i],
                 None if input_dropout is None else input_dropout[i])
        for i, x in enumerate(xs)
    )
    if recurrent_dropout is None:
        return _recurrence(z_x, recurrent_kernels, h0, c0, keep, statics, return_sequences)
    emit = "states" if return_sequences else "none"
    (h, c), states = _scan_states(z_x, recurrent_kernels, h0, c0, keep, recurrent_dropout, statics, emit)
    return (_outputs(states[0], keep, statics) if return_sequences else None), h, c


def _run_in_chunks(xs, keep, *weights_and_states, statics, return_sequences):
    """`_run` over chunks of about sqrt(T) steps, each recomputed in the backward pass:
    training memory grows with T * (F + U) instead of T * 14U."""
    t = xs[0].shape[0]
    size = max(1, math.isqrt(t))
    chunks = -(-t // size)
    pad = chunks * size - t
    if pad:  # padded steps are masked: the state passes through them unchanged
        real = jnp.ones((t,) + (len(xs), xs[0].shape[1], 1), bool) if keep is None else keep
        keep = jnp.concatenate([real, jnp.zeros((pad,) + real.shape[1:], bool)])
        xs = tuple(jnp.pad(x, ((0, pad), (0, 0), (0, 0))) for x in xs)
    split = lambda a: None if a is None else a.reshape((chunks, size) + a.shape[1:])  # noqa: E731
    *weights, h0, c0 = weights_and_states

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def chunk(carry, inputs):
        x_chunk, keep_chunk = inputs
        hs, h, c = _run(x_chunk, keep_chunk, *weights, *carry, statics, return_sequences)
        return (h, c), hs

    (h, c), hs = lax.scan(chunk, (h0, c0), (tuple(split(x) for x in xs), split(keep)))
    if return_sequences:
        hs = hs.reshape((chunks * size,) + hs.shape[2:])[:t]
    return hs, h, c


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
    kernels: tuple[jax.Array, ...],
    recurrent_kernels: tuple[jax.Array, ...],
    biases: tuple[jax.Array, ...] | None,
    initial_states: tuple[tuple[jax.Array, jax.Array], ...] | None,
    mask: jax.Array | None,
    input_dropout: tuple[jax.Array, ...] | None = None,
    recurrent_dropout: tuple[jax.Array, ...] | None = None,
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

    Per direction: kernels (F, 4U), recurrent_kernels (U, 4U), biases (4U,) or None,
    initial_states (h0, c0) of (B, U) each or None for zeros; mask (B, T) bool or None.
    Direction d reads time backwards when `reverse[d]`, and returns its sequence in that
    processing order (Keras's go_backwards). At a masked step the state is kept and the
    output is the previous h, or zeros with `zero_output_for_mask`. Dropout masks, already
    scaled, are input_dropout (G, B, F) with G = 1 or 4 gates, and recurrent_dropout
    (4, B, U). With `remat` the backward pass recomputes chunks of about sqrt(T) steps
    instead of storing every step's gates.
    """
    statics = _Statics(activation, recurrent_activation, zero_output_for_mask, unroll)
    stack = lambda arrays: None if arrays is None else jnp.stack(arrays).astype(x.dtype)  # noqa: E731
    batch, units = x.shape[0], recurrent_kernels[0].shape[0]
    if initial_states is None:
        h0 = c0 = jnp.zeros((len(reverse), batch, units), x.dtype)
    else:
        h0, c0 = (stack([state[i] for state in initial_states]) for i in (0, 1))
    xs = tuple(_time_major(x, r) for r in reverse)
    keep = None if mask is None else jnp.stack([_time_major(mask, r) for r in reverse], 1)[..., None]
    args = (stack(kernels), stack(biases), stack(input_dropout), stack(recurrent_kernels),
            stack(recurrent_dropout), h0, c0)
    if remat:
        hs, h, c = _run_in_chunks(xs, keep, *args, statics=statics, return_sequences=return_sequences)
    else:
        hs, h, c = _run(xs, keep, *args, statics, return_sequences)
    sequences = jnp.moveaxis(hs, 0, 2) if return_sequences else None  # (T, D, B, U) -> (D, B, T, U)
    return ScanResult(sequences, h, c)
