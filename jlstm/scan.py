"""The scan driver: one jitted `lax.scan` over time for one or more LSTM directions.

Directions share the loop: a Bidirectional layer runs both of its directions in one scan,
with one batched matmul per step. How that matmul is laid out, its form, is chosen per
machine and shape by `jlstm.tuning`: states as rows (B, U) or columns (U, B), one dot of
`[x_t, h]` or two, the input projection hoisted out of the loop or not, the weight's
orientation. Every form gives the same results up to float rounding.

The backward pass is a custom VJP. For tanh/sigmoid the forward loop saves the activated
gates and tanh(c), and the backward loop differentiates them by hand (other activations save
the pre-activations and go through `jax.vjp`); every weight gradient and the input gradient
is then one GEMM over all timesteps. The backward loop has its own tuned form.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jlstm import tuning
from jlstm.activations import Activation
from jlstm.cell import cell_update, gate_activations, lstm_gates


class ScanResult(NamedTuple):
    """What `lstm_scan` returns: per-direction sequences (or None) and final states."""

    sequences: jax.Array | None  # (D, B, T, U), each in its own processing order
    h: jax.Array  # (D, B, U)
    c: jax.Array  # (D, B, U)


class _Weights(NamedTuple):
    """The directions' weights, stacked: kernel (D, F, 4U), recurrent_kernel (D, U, 4U),
    bias (D, 4U) or None."""

    kernel: jax.Array
    recurrent_kernel: jax.Array
    bias: jax.Array | None


class _Statics(NamedTuple):
    """What the recurrence needs besides arrays: hashable, so it is a static argument."""

    activation: Activation
    recurrent_activation: Activation
    zero_output_for_mask: bool
    unroll: int | bool
    form: str = "rows-fused"  # the forward loop's form, one of tuning.FORWARD_FORMS

    @property
    def closed_form(self) -> bool:
        """tanh and sigmoid: the VJP saves activated gates and differentiates them by hand."""
        return self.activation is jnp.tanh and self.recurrent_activation is jax.nn.sigmoid


# Layouts. Arrays enter and leave the recurrence as rows (..., B, N); a column form works
# on (..., N, B), where the gates are the second-to-last axis.


def _is_cols(form: str) -> bool:
    return form.startswith("cols")


def _relayout(a: jax.Array | None, cols: bool) -> jax.Array | None:
    """Rows to columns or back (the same swap), for a column form; as is for a row form."""
    return jnp.swapaxes(a, -1, -2) if cols and a is not None else a


def _oriented(w: jax.Array, form: str) -> jax.Array:
    """A weight (D, K, N) as the form's dot reads it: as is, or (D, N, K)."""
    return w if form in ("rows-fused", "rows-split") else jnp.swapaxes(w, 1, 2)


def _dot(w: jax.Array, a: jax.Array, form: str) -> jax.Array:
    """The form's product of a weight from `_oriented` with a (D, B, K), or (D, K, B) for columns."""
    if _is_cols(form):
        return jnp.matmul(w, a)
    if form.endswith("-t"):
        return jnp.einsum("dnk,dbk->dbn", w, a)
    return jnp.matmul(a, w)


def _gate_projection(a: jax.Array, kernels: jax.Array, masks: jax.Array | None) -> jax.Array:
    """a (D, B, N) @ kernels (D, N, 4U); with Keras's per-gate dropout masks (D, 4, B, N),
    gate g sees a * masks[:, g]."""
    if masks is None:
        return jnp.matmul(a, kernels)
    d, n, four_u = kernels.shape
    z = jnp.einsum("dgbn,dngu->dbgu", a[:, None] * masks, kernels.reshape(d, n, 4, four_u // 4))
    return z.reshape(d, a.shape[1], four_u)


def _keep(keep: jax.Array | None, new: jax.Array, old: jax.Array) -> jax.Array:
    return new if keep is None else jnp.where(keep, new, old)


def _scan_states(xs, weights: _Weights, h0, c0, keep, input_dropout, recurrent_dropout, statics: _Statics, emit: str):
    """The forward loop over xs (T, D, B, F), from states (D, B, U), with keep (T, D, B, 1)
    or None. Emits per step nothing, h, or for the VJP (h, c, saved), where saved is
    (activated gates, tanh(c)) for tanh/sigmoid and (pre-activations, None) otherwise.
    Returns the final (h, c) and the emitted sequences, as rows, except the VJP's
    residuals, which stay in the form's layout.
    """
    per_gate = input_dropout is not None or recurrent_dropout is not None  # lstm_scan made the form rows-split
    form = statics.form
    cols = _is_cols(form)
    axis = -2 if cols else -1
    units = weights.recurrent_kernel.shape[1]
    kernel, recurrent = _oriented(weights.kernel, form), _oriented(weights.recurrent_kernel, form)
    bias = None if weights.bias is None else _relayout(weights.bias[:, None, :], cols)
    dot = form.split("-")[1]  # fused, split or hoisted
    if dot == "fused":
        stacked = _oriented(jnp.concatenate([weights.kernel, weights.recurrent_kernel], axis=1), form)
    if dot == "hoisted":  # every step's input projection, bias included, as one GEMM
        proj = jnp.einsum("tdbf,dfn->tdbn", xs, weights.kernel)
        inputs = _relayout(proj if bias is None else proj + _relayout(bias, cols), cols)
        bias = None
    else:
        inputs = _relayout(xs, cols)

    def step(carry, step_inputs):
        a_t, keep_t = step_inputs
        h_prev, c_prev = carry
        if per_gate:
            z = _gate_projection(a_t, weights.kernel, input_dropout) + _gate_projection(
                h_prev, weights.recurrent_kernel, recurrent_dropout
            )
        elif dot == "fused":
            z = _dot(stacked, jnp.concatenate([a_t, h_prev], axis=axis), form)
        elif dot == "split":
            z = _dot(kernel, a_t, form) + _dot(recurrent, h_prev, form)
        else:
            z = a_t + _dot(recurrent, h_prev, form)
        if bias is not None:
            z = z + bias
        gates = gate_activations(z, units, statics.activation, statics.recurrent_activation, axis)
        h, c, activated_c = cell_update(gates, c_prev, statics.activation)
        h, c = _keep(keep_t, h, h_prev), _keep(keep_t, c, c_prev)
        if emit != "residuals":
            return (h, c), (h if emit == "h" else None)
        saved = (jnp.concatenate(gates, axis), activated_c) if statics.closed_form else (z, None)
        return (h, c), (h, c, saved)

    carry = (_relayout(h0, cols), _relayout(c0, cols))
    (h, c), ys = lax.scan(step, carry, (inputs, _relayout(keep, cols)), unroll=statics.unroll)
    if emit == "residuals":
        return (h, c), ys
    return (_relayout(h, cols), _relayout(c, cols)), _relayout(ys, cols)


def _result(hs, h, c, keep, statics: _Statics, return_sequences: bool):
    """(sequence or None, h, c). A masked step's state is the previous one, which is
    Keras's output there, unless it outputs zeros."""
    if not return_sequences:
        return None, h, c
    if keep is not None and statics.zero_output_for_mask:
        hs = jnp.where(keep, hs, 0)
    return hs, h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _recurrence(xs, weights: _Weights, h0, c0, keep, statics: _Statics, return_sequences: bool):
    """(sequence (T, D, B, U) or None, h, c) of the LSTM over xs (T, D, B, F).

    Its VJP reuses what the forward loop saved of each step's gates, and computes every
    weight gradient and the input gradient as one GEMM over all timesteps after the
    backward loop.
    """
    emit = "h" if return_sequences else "none"
    (h, c), hs = _scan_states(xs, weights, h0, c0, keep, None, None, statics, emit)
    return _result(hs, h, c, keep, statics, return_sequences)


def _recurrence_fwd(xs, weights, h0, c0, keep, statics, return_sequences):
    (h, c), (hs, cs, saved) = _scan_states(xs, weights, h0, c0, keep, None, None, statics, "residuals")
    cols = _is_cols(statics.form)
    hs = _relayout(hs, cols)  # as rows: the output, and the previous states the gradient GEMMs read
    out = _result(hs, _relayout(h, cols), _relayout(c, cols), keep, statics, return_sequences)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    c_prev = jnp.concatenate([_relayout(c0, cols)[None], cs[:-1]])  # the backward loop's, in this layout
    return out, (xs, weights, keep, h_prev, c_prev, saved)


def _recurrence_bwd(statics, return_sequences, residuals, cotangents):
    xs, weights, keep, h_prev, c_prev, saved = residuals
    t, d, b, f = xs.shape
    units = weights.recurrent_kernel.shape[1]
    signature = tuning.Signature(d, b, t, f, units, jnp.dtype(xs.dtype).name)
    form = _backward_form(signature)
    cols = form == "cols"
    if cols != _is_cols(statics.form):  # the backward loop's layout differs from the forward's
        c_prev, saved = jax.tree.map(lambda a: jnp.swapaxes(a, -1, -2), (c_prev, saved))
    d_seq, d_h, d_c = (_relayout(a, cols) for a in cotangents)
    (d_h0, d_c0), d_z = _backward_loop(
        weights.recurrent_kernel, _relayout(keep, cols), c_prev, saved, d_seq, d_h, d_c, statics, form
    )
    d_xs, d_weights = _gradients(xs, weights, h_prev, _relayout(d_z, cols))
    return d_xs, d_weights, _relayout(d_h0, cols), _relayout(d_c0, cols), None


def _gradients(xs, weights: _Weights, h_prev, d_z):
    """The input and weight gradients from every step's gate cotangents d_z (T, D, B, 4U),
    each one (T*B)-long GEMM per direction rather than a small matmul per step (measured:
    a batched einsum over the directions ran 1.2-1.9x slower)."""
    t, d, b, f = xs.shape
    flat = lambda a: a.reshape(t * b, a.shape[-1])  # noqa: E731
    per_direction = lambda fn: jnp.stack([fn(i) for i in range(d)])  # noqa: E731
    d_weights = _Weights(
        per_direction(lambda i: flat(xs[:, i]).T @ flat(d_z[:, i])),
        per_direction(lambda i: flat(h_prev[:, i]).T @ flat(d_z[:, i])),
        None if weights.bias is None else d_z.sum((0, 2)),
    )
    d_xs = per_direction(lambda i: (flat(d_z[:, i]) @ weights.kernel[i].T).reshape(t, b, f))
    return jnp.moveaxis(d_xs, 0, 1), d_weights


def _backward_loop(recurrent_kernels, keep, c_prev, saved, d_seq, d_h, d_c, statics: _Statics, form: str):
    """The reverse scan in the layout of `form` (one of tuning.BACKWARD_FORMS): the carry's
    cotangents before the first step, and each step's gate pre-activation cotangents."""
    cols = form == "cols"
    axis = -2 if cols else -1
    gates = functools.partial(
        lstm_gates, activation=statics.activation, recurrent_activation=statics.recurrent_activation, axis=axis
    )
    if d_seq is None:
        d_seq = jnp.zeros_like(c_prev)
    zero_masked_output = keep is not None and statics.zero_output_for_mask
    recurrent_t = jnp.swapaxes(recurrent_kernels, 1, 2)

    def through_recurrent_kernel(d_z):
        if form == "rows":
            return jnp.matmul(d_z, recurrent_t)
        if form == "rows-t":
            return jnp.einsum("dbn,dun->dbu", d_z, recurrent_kernels)
        return jnp.matmul(recurrent_kernels, d_z)

    def gates_vjp(saved_t, c_before, d_h_new, d_c_new):
        if not statics.closed_form:
            _, vjp = jax.vjp(gates, saved_t[0], c_before)
            return vjp((d_h_new, d_c_new))
        # h = o * tanh(c), c = f * c_before + i * g, with sigmoid i, f, o and tanh g.
        acts, tanh_c = saved_t
        i, f, g, o = jnp.split(acts, 4, axis=axis)
        d_c_total = d_c_new + d_h_new * o * (1 - tanh_c * tanh_c)
        d_z = jnp.concatenate(
            [
                d_c_total * g * i * (1 - i),
                d_c_total * c_before * f * (1 - f),
                d_c_total * i * (1 - g * g),
                d_h_new * tanh_c * o * (1 - o),
            ],
            axis=axis,
        )
        return d_z, d_c_total * f

    def step(carry, inputs):
        d_h, d_c = carry
        d_out, saved_t, c_before, keep_t = inputs
        d_h_new = d_h + d_out
        d_h_pass = d_h if zero_masked_output else d_h_new
        d_c_new = d_c
        if keep_t is not None:
            d_h_new, d_h_pass = jnp.where(keep_t, d_h_new, 0), jnp.where(keep_t, 0, d_h_pass)
            d_c_new, d_c_pass = jnp.where(keep_t, d_c, 0), jnp.where(keep_t, 0, d_c)
        d_z, d_c_before = gates_vjp(saved_t, c_before, d_h_new, d_c_new)
        d_h_before = through_recurrent_kernel(d_z)
        if keep_t is not None:
            d_h_before, d_c_before = d_h_before + d_h_pass, d_c_before + d_c_pass
        return (d_h_before, d_c_before), d_z

    return lax.scan(step, (d_h, d_c), (d_seq, saved, c_prev, keep), reverse=True, unroll=statics.unroll)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# The tuner's candidates: each form on dummy data of the signature's shapes, over
# tuning.tuning_steps(signature) steps (the per-step cost is what the forms change).

_TUNE_STATICS = _Statics(jnp.tanh, jax.nn.sigmoid, False, 1)


def _forward_form(signature: tuning.Signature) -> str:
    return tuning.choose("forward", signature, functools.partial(_forward_candidate, signature=signature))


def _backward_form(signature: tuning.Signature) -> str:
    return tuning.choose("backward", signature, functools.partial(_backward_candidate, signature=signature))


def _dummy_weights(signature: tuning.Signature) -> _Weights:
    d, _, _, f, u, dtype = signature
    return _Weights(
        tuning.dummy((d, f, 4 * u), dtype, f**-0.5),
        tuning.dummy((d, u, 4 * u), dtype, u**-0.5, 1),
        tuning.dummy((d, 4 * u), dtype, 0.1, 2),
    )


def _forward_candidate(form: str, signature: tuning.Signature) -> tuning.Candidate:
    d, b, t, f, u, dtype = signature
    statics = _TUNE_STATICS._replace(form=form)

    def forward(xs, weights, h0):
        return _scan_states(xs, weights, h0, h0, None, None, None, statics, "h")[1]

    xs = tuning.dummy((tuning.tuning_steps(signature), d, b, f), dtype)
    return tuning.Candidate(forward, (xs, _dummy_weights(signature), tuning.dummy((d, b, u), dtype, 0.0)))


def _backward_candidate(form: str, signature: tuning.Signature) -> tuning.Candidate:
    d, b, t, f, u, dtype = signature
    cols = form == "cols"
    t = tuning.tuning_steps(signature)
    states = (t, d, u, b) if cols else (t, d, b, u)
    gates = (t, d, 4 * u, b) if cols else (t, d, b, 4 * u)

    def backward(xs, weights, acts, tanh_c, c_prev, d_seq):
        zeros = jnp.zeros(states[1:], dtype)
        _, d_z = _backward_loop(
            weights.recurrent_kernel, None, c_prev, (acts, tanh_c), d_seq, zeros, zeros, _TUNE_STATICS, form
        )
        return _gradients(xs, weights, _relayout(c_prev, cols), _relayout(d_z, cols))

    acts = (tuning.dummy(gates, dtype) > 0).astype(dtype) * 0.5
    args = (
        tuning.dummy((t, d, b, f), dtype),
        _dummy_weights(signature),
        acts,
        tuning.dummy(states, dtype, 0.5, 1),
        tuning.dummy(states, dtype, 1.0, 2),
        tuning.dummy(states, dtype, 1.0, 3),
    )
    return tuning.Candidate(backward, args)


def _run(xs, keep, weights, input_dropout, recurrent_dropout, h0, c0, statics, return_sequences):
    """The recurrence over time-major inputs (T, D, B, F), with dropout if given."""
    if input_dropout is not None and input_dropout.shape[1] == 1:
        # One input mask per sequence: applied once to the inputs, outside the loop.
        xs = xs * input_dropout[:, 0]
        input_dropout = None
    if input_dropout is None and recurrent_dropout is None:
        return _recurrence(xs, weights, h0, c0, keep, statics, return_sequences)
    emit = "h" if return_sequences else "none"
    (h, c), hs = _scan_states(xs, weights, h0, c0, keep, input_dropout, recurrent_dropout, statics, emit)
    return _result(hs, h, c, keep, statics, return_sequences)


def _run_in_chunks(xs, keep, weights, input_dropout, recurrent_dropout, h0, c0, statics, return_sequences):
    """`_run` over chunks of about sqrt(T) steps, each recomputed in the backward pass:
    training memory grows with T * (F + U) instead of T * 14U."""
    t = xs.shape[0]
    size = max(1, math.isqrt(t))
    chunks = -(-t // size)
    pad = chunks * size - t
    if pad:  # padded steps are masked: the state passes through them unchanged
        real = jnp.ones(xs.shape[:3] + (1,), bool) if keep is None else keep
        keep = jnp.concatenate([real, jnp.zeros((pad,) + real.shape[1:], bool)])
        xs = jnp.pad(xs, ((0, pad), (0, 0), (0, 0), (0, 0)))
    split = lambda a: None if a is None else a.reshape((chunks, size) + a.shape[1:])  # noqa: E731

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def chunk(carry, inputs):
        x_chunk, keep_chunk = inputs
        hs, h, c = _run(
            x_chunk, keep_chunk, weights, input_dropout, recurrent_dropout, *carry, statics, return_sequences
        )
        return (h, c), hs

    (h, c), hs = lax.scan(chunk, (h0, c0), (split(xs), split(keep)))
    if return_sequences:
        hs = hs.reshape((chunks * size,) + hs.shape[2:])[:t]
    return hs, h, c


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

    The loop's form is chosen here, outside any trace, from the shapes (`jlstm.tuning`).
    """
    batch, timesteps, features = x.shape
    per_gate = recurrent_dropout is not None
    signature = tuning.Signature(
        len(reverse), batch, timesteps, features, recurrent_kernels[0].shape[0], jnp.dtype(x.dtype).name
    )
    form = "rows-split" if per_gate else _forward_form(signature)
    statics = _Statics(activation, recurrent_activation, zero_output_for_mask, unroll, form)
    arrays = (x, kernels, recurrent_kernels, biases, initial_states, mask, input_dropout, recurrent_dropout)
    return _lstm_scan(*arrays, reverse=reverse, statics=statics, return_sequences=return_sequences, remat=remat)


@functools.partial(jax.jit, static_argnames=("reverse", "statics", "return_sequences", "remat"))
def _lstm_scan(
    x,
    kernels,
    recurrent_kernels,
    biases,
    initial_states,
    mask,
    input_dropout,
    recurrent_dropout,
    *,
    reverse,
    statics,
    return_sequences,
    remat,
) -> ScanResult:
    stack = lambda arrays: None if arrays is None else jnp.stack(arrays).astype(x.dtype)  # noqa: E731
    batch, units = x.shape[0], recurrent_kernels[0].shape[0]
    if initial_states is None:
        h0 = c0 = jnp.zeros((len(reverse), batch, units), x.dtype)
    else:
        h0, c0 = (stack([state[i] for state in initial_states]) for i in (0, 1))
    xs = jnp.stack([_time_major(x, r) for r in reverse], 1)
    keep = None if mask is None else jnp.stack([_time_major(mask, r) for r in reverse], 1)[..., None]
    weights = _Weights(stack(kernels), stack(recurrent_kernels), stack(biases))
    run = _run_in_chunks if remat else _run
    hs, h, c = run(xs, keep, weights, stack(input_dropout), stack(recurrent_dropout), h0, c0, statics, return_sequences)
    sequences = jnp.moveaxis(hs, 0, 2) if return_sequences else None  # (T, D, B, U) -> (D, B, T, U)
    return ScanResult(sequences, h, c)


def _time_major(a: jax.Array, reverse: bool) -> jax.Array:
    # (B, T, ...) -> (T, B, ...), so that the scan slices one contiguous timestep per step.
    a = jnp.swapaxes(a, 0, 1)
    return jnp.flip(a, 0) if reverse else a
