"""The scan driver: one jitted `lax.scan` over time for one or more directions of a cell.

`rnn_scan` runs any `jlstm.cell.Cell` (LSTM, GRU, SimpleRNN); it knows of the cell only
its gate count, its state arity and its step function. Directions share the loop: a
Bidirectional layer runs both of its directions in one scan, with one batched matmul per
step. How that matmul is laid out, its form, is chosen per machine and shape by
`jlstm.tuning`: states as rows (B, U) or columns (U, B), one dot of `[x_t, h]` or two, the
input projection hoisted out of the loop or not, the weight's orientation. Every form
gives the same results up to float rounding.

The backward pass is a custom VJP. The forward loop saves what the cell's closed-form VJP
needs (for the LSTM with tanh/sigmoid: the activated gates and tanh(c)), or else the
step's projections, which the backward loop differentiates with `jax.vjp`; every weight
gradient and the input gradient is then one GEMM over all timesteps. The backward loop
has its own tuned form. A cell whose recurrent product reads a gated state (GRU without
reset_after) and the per-gate dropout of training run the same loop under JAX's autodiff.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
from jax import lax

from jlstm import tuning
from jlstm.cell import Cell, Cotangents, Projections, State, Weights, gru_cell, lstm_cell, simple_rnn_cell

T = TypeVar("T")


class Direction(NamedTuple):
    """One direction of a scan: its weights, whether it reads time backwards, its initial
    state (`cell.state_size` arrays (B, U), or None for zeros) and its dropout masks."""

    weights: Weights
    reverse: bool = False
    initial_state: tuple[jax.Array, ...] | None = None
    dropout: DropoutMasks | None = None


class DropoutMasks(NamedTuple):
    """A direction's scaled dropout masks, drawn once per sequence: on the inputs (M, B, F)
    and on the state (M, B, U), either None; M is 1 (one mask for every gate) or G (Keras's
    per-gate masks, which its LSTM and GRU draw when recurrent dropout is on)."""

    inputs: jax.Array | None = None
    recurrent: jax.Array | None = None


class ScanResult(NamedTuple):
    """What `rnn_scan` returns: per-direction sequences (or None) and final states."""

    sequences: jax.Array | None  # (D, B, T, U), each in its own processing order
    states: tuple[jax.Array, ...]  # cell.state_size arrays (D, B, U); the first is h

    @property
    def h(self) -> jax.Array:
        return self.states[0]


class _Statics(NamedTuple):
    """What the recurrence needs besides arrays: hashable, so it is a static argument."""

    cell: Cell
    zero_output_for_mask: bool
    unroll: int | bool
    form: str = "rows-fused"  # the forward loop's form, one of tuning.FORWARD_FORMS


# Layouts. Arrays enter and leave the recurrence as rows (..., B, N); a column form works
# on (..., N, B), where the gates are the second-to-last axis.


def _is_cols(form: str) -> bool:
    return form.startswith("cols")


def _relayout(a: Any, cols: bool) -> Any:
    """Rows to columns or back (the same swap) for a column form, as is for a row form; over
    a tuple or None too."""
    return jax.tree.map(lambda leaf: jnp.swapaxes(leaf, -1, -2), a) if cols else a


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


def _masked_projection(a: jax.Array, kernels: jax.Array, masks: jax.Array) -> jax.Array:
    """a (D, B, N) @ kernels (D, N, G'U) with dropout masks (D, M, B, N): one mask for every
    gate (M = 1), or gate g seeing a * masks[:, g]."""
    if masks.shape[1] == 1:
        return jnp.matmul(a * masks[:, 0], kernels)
    d, n, width = kernels.shape
    gates = masks.shape[1]
    z = jnp.einsum("dgbn,dngu->dbgu", a[:, None] * masks, kernels.reshape(d, n, gates, width // gates))
    return z.reshape(d, a.shape[1], width)


def _cast(weights: Weights, dtype: Any) -> Weights:
    """The weights in `dtype` (a no-op where they are in it already)."""
    cast: Weights = jax.tree.map(lambda w: w.astype(dtype), weights)  # None biases stay None
    return cast


def _keep(keep: jax.Array | None, new: jax.Array, old: jax.Array) -> jax.Array:
    return new if keep is None else jnp.where(keep, new, old)


def _add(a: jax.Array, bias: jax.Array | None) -> jax.Array:
    return a if bias is None else a + bias


def _scan_states(
    xs: jax.Array,
    weights: Weights,
    state0: State,
    keep: jax.Array | None,
    dropout: DropoutMasks | None,
    statics: _Statics,
    emit: str,
) -> tuple[Any, Any]:
    """The forward loop over xs (T, D, B, F), from the states (D, B, U), with keep
    (T, D, B, 1) or None. Emits per step nothing, h, or for the VJP (states, saved), where
    saved is what the cell's closed-form VJP reads, or the step's projections. Returns the
    final states and the emitted sequences, as rows, except the VJP's residuals, which stay
    in the form's layout.
    """
    cell, form = statics.cell, statics.form
    weights = _cast(weights, xs.dtype)  # the params' dtype to the compute dtype (a mixed policy)
    cols = _is_cols(form)
    axis = -2 if cols else -1
    units = weights.recurrent_kernel.shape[1]
    blocks = cell.scanned_blocks
    # Dropout masks reach the loop only where they act per gate or on the state, and there
    # rnn_scan made the form rows-split, whose weights the masked products read as they are.
    rec_masks = None if dropout is None else dropout.recurrent
    kernel = _oriented(weights.kernel, form)
    recurrent_kernel = _oriented(weights.recurrent_kernel, form)
    bias, recurrent_bias = (_relayout(None if b is None else b[:, None, :], cols) for b in weights[2:])
    dot = form.split("-")[1]  # fused, split or hoisted
    if dot == "fused":  # only a summed cell, with one bias, takes it
        stacked = _oriented(jnp.concatenate([weights.kernel, weights.recurrent_kernel], axis=1), form)
    if dot == "hoisted":  # every step's input projection, bias included, as one GEMM
        proj = jnp.einsum("tdbf,dfn->tdbn", xs, weights.kernel)
        inputs = _relayout(proj if weights.bias is None else proj + weights.bias[None, :, None, :], cols)
        bias = None
    else:
        inputs = _relayout(xs, cols)

    def recurrent(a, lo, hi):
        """a @ the recurrent kernel's gate blocks lo..hi, with the state's dropout masks."""
        w = recurrent_kernel
        if (lo, hi) != (0, cell.gates):
            w = lax.slice_in_dim(w, lo * units, hi * units, axis=2 if form in ("rows-fused", "rows-split") else 1)
        if rec_masks is None:
            return _dot(w, a, form)
        return _masked_projection(a, w, rec_masks if rec_masks.shape[1] == 1 else rec_masks[:, lo:hi])

    def projections(a_t, h_prev):
        if dot == "fused":
            return _add(_dot(stacked, jnp.concatenate([a_t, h_prev], axis=axis), form), bias)
        if dropout is not None and dropout.inputs is not None:
            x_proj = _masked_projection(a_t, kernel, dropout.inputs)
        else:
            x_proj = a_t if dot == "hoisted" else _dot(kernel, a_t, form)
        h_proj = _add(recurrent(h_prev, 0, blocks), recurrent_bias)
        return _add(x_proj + h_proj, bias) if cell.summed else (_add(x_proj, bias), h_proj)

    def step(carry, step_inputs):
        a_t, keep_t = step_inputs
        z = projections(a_t, carry[0])
        state, saved = cell.activate(cell, z, carry, recurrent, axis)
        state = tuple(_keep(keep_t, new, old) for new, old in zip(state, carry))
        if emit != "residuals":
            return state, (state[0] if emit == "h" else None)
        return state, (state, saved if cell.backward is not None else z)

    carry = _relayout(tuple(state0), cols)
    state, ys = lax.scan(step, carry, (inputs, _relayout(keep, cols)), unroll=statics.unroll)
    if emit == "residuals":
        return state, ys
    return _relayout(state, cols), _relayout(ys, cols)


def _result(
    hs: jax.Array | None, state: State, keep: jax.Array | None, statics: _Statics, return_sequences: bool
) -> tuple[jax.Array | None, State]:
    """(sequence or None, states). A masked step's state is the previous one, which is
    Keras's output there, unless it outputs zeros."""
    if not return_sequences or hs is None:
        return None, state
    if keep is not None and statics.zero_output_for_mask:
        hs = jnp.where(keep, hs, 0)
    return hs, state


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _recurrence(
    xs: jax.Array, weights: Weights, state0: State, keep: jax.Array | None, statics: _Statics, return_sequences: bool
) -> tuple[jax.Array | None, State]:
    """(sequence (T, D, B, U) or None, states) of the cell over xs (T, D, B, F).

    Its VJP reuses what the forward loop saved of each step, and computes every weight
    gradient and the input gradient as one GEMM over all timesteps after the backward loop.
    """
    emit = "h" if return_sequences else "none"
    state, hs = _scan_states(xs, weights, state0, keep, None, statics, emit)
    return _result(hs, state, keep, statics, return_sequences)


def _recurrence_fwd(xs, weights, state0, keep, statics, return_sequences):
    state, (seqs, saved) = _scan_states(xs, weights, state0, keep, None, statics, "residuals")
    cols = _is_cols(statics.form)
    hs = _relayout(seqs[0], cols)  # as rows: the output, and the previous states the gradient GEMMs read
    out = _result(hs, _relayout(state, cols), keep, statics, return_sequences)
    h_prev = jnp.concatenate([state0[0][None], hs[:-1]])
    # The states before each step, in the loop's layout, for the backward loop.
    before = tuple(jnp.concatenate([_relayout(s0, cols)[None], s[:-1]]) for s0, s in zip(state0, seqs))
    return out, (xs, weights, keep, h_prev, before, saved)


def _recurrence_bwd(statics, return_sequences, residuals, cotangents):
    xs, weights, keep, h_prev, before, saved = residuals
    cell = statics.cell
    form = _backward_form(_signature(xs, weights, cell))
    cols = form == "cols"
    if cols != _is_cols(statics.form):  # the backward loop's layout differs from the forward's
        before, saved = jax.tree.map(lambda a: jnp.swapaxes(a, -1, -2), (before, saved))
    d_seq, d_state = cotangents
    d_state0, d_proj = _backward_loop(
        weights.recurrent_kernel.astype(xs.dtype),
        _relayout(keep, cols),
        before,
        saved,
        _relayout(d_seq, cols),
        _relayout(tuple(d_state), cols),
        statics,
        form,
    )
    d_xs, d_weights = _gradients(xs, weights, h_prev, _relayout(d_proj, cols), cell.summed)
    return d_xs, d_weights, _relayout(d_state0, cols), None


def _gradients(
    xs: jax.Array, weights: Weights, h_prev: jax.Array, d_proj: Projections, summed: bool
) -> tuple[jax.Array, Weights]:
    """The input and weight gradients from every step's projection cotangents (T, D, B, GU),
    one for a summed cell or (input, recurrent) for another, each one (T*B)-long GEMM per
    direction rather than a small matmul per step (measured: a batched einsum over the
    directions ran 1.2-1.9x slower). The weight gradients accumulate in, and come back in,
    the weights' dtype (float32 under a mixed policy, whose loops ran in 16 bits); the
    input gradient in the inputs' dtype."""
    t, d, b, f = xs.shape
    d_x, d_h = (d_proj, d_proj) if summed else d_proj
    into = weights.kernel.dtype
    flat = lambda a: a.reshape(t * b, a.shape[-1])  # noqa: E731
    per_direction = lambda fn: jnp.stack([fn(i) for i in range(d)])  # noqa: E731
    gemm = lambda a, g: jnp.matmul(flat(a).T, flat(g), preferred_element_type=into)  # noqa: E731
    d_weights = Weights(
        per_direction(lambda i: gemm(xs[:, i], d_x[:, i])),
        per_direction(lambda i: gemm(h_prev[:, i], d_h[:, i])),
        None if weights.bias is None else d_x.sum((0, 2), dtype=into),
        None if weights.recurrent_bias is None else d_h.sum((0, 2), dtype=into),
    )
    kernel = weights.kernel.astype(xs.dtype)
    d_xs = per_direction(lambda i: (flat(d_x[:, i]) @ kernel[i].T).reshape(t, b, f))
    return jnp.moveaxis(d_xs, 0, 1), d_weights


def _vjp_backward(cell: Cell, projections: Projections, before: State, d_state: State, axis: int) -> Cotangents:
    """`cell.backward` for a cell without a closed form: JAX differentiates its activate."""
    _, vjp = jax.vjp(lambda p, s: cell.activate(cell, p, s, None, axis)[0], projections, before)
    return vjp(d_state)


def _backward_loop(
    recurrent_kernels: jax.Array,
    keep: jax.Array | None,
    before: State,
    saved: Any,
    d_seq: jax.Array | None,
    d_state: State,
    statics: _Statics,
    form: str,
) -> tuple[State, Any]:
    """The reverse scan in the layout of `form` (one of tuning.BACKWARD_FORMS): the states'
    cotangents before the first step, and each step's projection cotangents."""
    cell = statics.cell
    cols = form == "cols"
    axis = -2 if cols else -1
    backward = cell.backward or _vjp_backward
    if d_seq is None:
        d_seq = jnp.zeros_like(before[0])
    zero_masked_output = keep is not None and statics.zero_output_for_mask
    recurrent_t = jnp.swapaxes(recurrent_kernels, 1, 2)

    def through_recurrent_kernel(d_h_proj):
        if form == "rows":
            return jnp.matmul(d_h_proj, recurrent_t)
        if form == "rows-t":
            return jnp.einsum("dbn,dun->dbu", d_h_proj, recurrent_kernels)
        return jnp.matmul(recurrent_kernels, d_h_proj)

    def step(carry, inputs):
        d_out, saved_t, before_t, keep_t = inputs
        d_h = carry[0] + d_out
        d_h_pass = carry[0] if zero_masked_output else d_h
        d_new = (d_h,) + carry[1:]
        if keep_t is not None:  # a masked step passes the cotangents on unchanged
            d_pass = (jnp.where(keep_t, 0, d_h_pass),) + tuple(jnp.where(keep_t, 0, d) for d in carry[1:])
            d_new = tuple(jnp.where(keep_t, d, 0) for d in d_new)
        d_proj, d_before = backward(cell, saved_t, before_t, d_new, axis)
        d_h_before = through_recurrent_kernel(d_proj if cell.summed else d_proj[1])
        d_rest = tuple(jnp.zeros_like(s) if d is None else d for d, s in zip(d_before[1:], before_t[1:]))
        d_before = (_add(d_h_before, d_before[0]),) + d_rest
        if keep_t is not None:
            d_before = tuple(a + b for a, b in zip(d_before, d_pass))
        return d_before, d_proj

    return lax.scan(step, d_state, (d_seq, saved, before, keep), reverse=True, unroll=statics.unroll)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# The tuner's candidates: each form on dummy data of the signature's shapes, over
# tuning.tuning_steps(signature) steps (the per-step cost is what the forms change).


def _tune_cell(signature: tuning.Signature) -> Cell:
    """The cell a signature times, by its gate count (the forms' cost is the matmul's)."""
    return {4: lstm_cell(), 3: gru_cell(), 1: simple_rnn_cell()}[signature.gates]


def _signature(xs: jax.Array, weights: Weights, cell: Cell) -> tuning.Signature:
    t, d, b, f = xs.shape
    return tuning.Signature(d, b, t, f, weights.recurrent_kernel.shape[1], jnp.dtype(xs.dtype).name, cell.gates)


def _allowed(form: str, cell: Cell) -> str:
    """The form, or its two-dot twin for a cell that reads its projections apart (GRU)."""
    if cell.summed or "fused" not in form:
        return form
    return form.split("-")[0] + "-split"


def _forward_form(signature: tuning.Signature, cell: Cell) -> str:
    forms = tuple(f for f in tuning.CANDIDATES["forward"] if _allowed(f, cell) == f)
    candidate = functools.partial(_forward_candidate, signature=signature)
    return _allowed(tuning.choose("forward", signature, candidate, forms), cell)


def _backward_form(signature: tuning.Signature) -> str:
    return tuning.choose("backward", signature, functools.partial(_backward_candidate, signature=signature))


def _dummy_weights(signature: tuning.Signature, cell: Cell) -> Weights:
    d, _, _, f, u, dtype, g = signature
    return Weights(
        tuning.dummy((d, f, g * u), dtype, f**-0.5),
        tuning.dummy((d, u, g * u), dtype, u**-0.5, 1),
        tuning.dummy((d, g * u), dtype, 0.1, 2),
        tuning.dummy((d, g * u), dtype, 0.1, 3) if cell.split_bias else None,
    )


def _forward_candidate(form: str, signature: tuning.Signature) -> tuning.Candidate:
    d, b, _, f, u, dtype, _ = signature
    statics = _Statics(_tune_cell(signature), False, 1, form)

    def forward(xs, weights, state0):
        return _scan_states(xs, weights, state0, None, None, statics, "h")[1]

    xs = tuning.dummy((tuning.tuning_steps(signature), d, b, f), dtype)
    state0 = (tuning.dummy((d, b, u), dtype, 0.0),) * statics.cell.state_size
    return tuning.Candidate(forward, (xs, _dummy_weights(signature, statics.cell), state0))


def _backward_candidate(form: str, signature: tuning.Signature) -> tuning.Candidate:
    cols = form == "cols"
    cell, xs, weights, before, saved, d_seq = _backward_dummies(signature)
    statics = _Statics(cell, False, 1, form)

    def backward(xs, weights, before, saved, d_seq):
        zeros = tuple(jnp.zeros_like(s[0]) for s in before)
        _, d_proj = _backward_loop(weights.recurrent_kernel, None, before, saved, d_seq, zeros, statics, form)
        return _gradients(xs, weights, _relayout(before[0], cols), _relayout(d_proj, cols), cell.summed)

    return tuning.Candidate(backward, (xs, weights, *_relayout((before, saved, d_seq), cols)))


@functools.cache
def _backward_dummies(signature: tuning.Signature) -> tuple[Cell, jax.Array, Weights, State, Any, jax.Array]:
    """The backward candidates' arguments: a dummy forward's residuals, as rows."""
    d, b, _, f, u, dtype, _ = signature
    cell = _tune_cell(signature)
    t = tuning.tuning_steps(signature)
    weights = _dummy_weights(signature, cell)
    xs = tuning.dummy((t, d, b, f), dtype)
    state0 = (tuning.dummy((d, b, u), dtype, 0.5, 1),) * cell.state_size
    statics = _Statics(cell, False, 1, "rows-split")
    _, (seqs, saved) = _scan_states(xs, weights, state0, None, None, statics, "residuals")
    before = tuple(jnp.concatenate([s0[None], s[:-1]]) for s0, s in zip(state0, seqs))
    return cell, xs, weights, before, saved, seqs[0]


# The loop with dropout, in chunks (remat), and over the stacked directions.


def _run(xs, keep, weights, dropout, state0, statics, return_sequences):
    """The recurrence over time-major inputs (T, D, B, F), with dropout masks if given."""
    if dropout is not None and dropout.inputs is not None and dropout.inputs.shape[1] == 1:
        # One input mask per sequence: applied once to the inputs, outside the loop.
        xs = xs * dropout.inputs[None, :, 0]
        dropout = dropout._replace(inputs=None)
    if dropout is not None and dropout.recurrent is None and dropout.inputs is None:
        dropout = None
    if dropout is None and statics.cell.fast_vjp:
        return _recurrence(xs, weights, state0, keep, statics, return_sequences)
    emit = "h" if return_sequences else "none"
    state, hs = _scan_states(xs, weights, state0, keep, dropout, statics, emit)
    return _result(hs, state, keep, statics, return_sequences)


def _run_in_chunks(xs, keep, weights, dropout, state0, statics, return_sequences):
    """`_run` over chunks of about sqrt(T) steps, each recomputed in the backward pass:
    training memory grows with T * (F + U) instead of T times what a step saves."""
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
        hs, state = _run(x_chunk, keep_chunk, weights, dropout, carry, statics, return_sequences)
        return state, hs

    state, hs = lax.scan(chunk, tuple(state0), (split(xs), split(keep)))
    if return_sequences:
        hs = hs.reshape((chunks * size,) + hs.shape[2:])[:t]
    return hs, state


def rnn_scan(
    cell: Cell,
    x: jax.Array,
    directions: Sequence[Direction],
    mask: jax.Array | None = None,
    *,
    return_sequences: bool,
    zero_output_for_mask: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
) -> ScanResult:
    """Runs the `directions` of `cell` over `x` (B, T, F) in one scan, with Keras 3 semantics.

    Per direction: its weights (`jlstm.cell.Weights`, the kernels (F, GU) and (U, GU)),
    whether it reads time backwards (and returns its sequence in that processing order,
    Keras's go_backwards), its initial state and its dropout masks, already scaled; mask
    (B, T) bool or None. At a masked step the state is kept and the output is the previous
    h, or zeros with `zero_output_for_mask`. With `remat` the backward pass recomputes
    chunks of about sqrt(T) steps instead of storing every step's residuals.

    The loop computes in x's dtype; weights of another (float32 under a mixed policy) are
    cast to it inside, and their gradients accumulate and come back in their own dtype.
    The loop's form is chosen here, outside any trace, from the shapes (`jlstm.tuning`).
    """
    batch, timesteps, features = x.shape
    dtype = jnp.dtype(x.dtype).name
    units = directions[0].weights.recurrent_kernel.shape[0]
    signature = tuning.Signature(len(directions), batch, timesteps, features, units, dtype, cell.gates)
    gated = any(d.dropout is not None and _per_gate(d.dropout) for d in directions)
    form = "rows-split" if gated or not cell.fast_vjp else _forward_form(signature, cell)
    statics = _Statics(cell, zero_output_for_mask, unroll, form)
    reverse = tuple(bool(d.reverse) for d in directions)
    arrays = [(d.weights, d.initial_state, d.dropout) for d in directions]
    return _stacked_scan(
        x, arrays, mask, reverse=reverse, statics=statics, return_sequences=return_sequences, remat=remat
    )


def _per_gate(dropout: DropoutMasks) -> bool:
    """Whether the masks act inside the loop (recurrent, or per gate on the inputs)."""
    return dropout.recurrent is not None or (dropout.inputs is not None and dropout.inputs.shape[0] > 1)


@functools.partial(jax.jit, static_argnames=("reverse", "statics", "return_sequences", "remat"))
def _stacked_scan(
    x: jax.Array,
    directions: Sequence[tuple[Weights, State | None, DropoutMasks | None]],
    mask: jax.Array | None,
    *,
    reverse: tuple[bool, ...],
    statics: _Statics,
    return_sequences: bool,
    remat: bool,
) -> ScanResult:
    """The scan over every direction's (weights, initial state, dropout masks), stacked."""
    cell = statics.cell

    weights, states, dropouts = zip(*directions)
    # The weights stay in the params' dtype up to the loop, which computes in x's: the custom
    # VJP then accumulates their gradients in the params' dtype (float32 under a mixed policy).
    params_dtype = weights[0].kernel.dtype

    def stack(arrays: Sequence[jax.Array], dtype: Any = x.dtype) -> jax.Array:
        return jnp.stack(arrays).astype(dtype)

    def stack_or_none(arrays: Sequence[jax.Array | None], dtype: Any = x.dtype) -> jax.Array | None:
        present = _all_or_none(arrays)
        return None if present is None else stack(present, dtype)

    batch, units = x.shape[0], weights[0].recurrent_kernel.shape[0]
    given_states = _all_or_none(states)
    if given_states is None:
        state0 = (jnp.zeros((len(reverse), batch, units), x.dtype),) * cell.state_size
    else:
        state0 = tuple(stack([s[i] for s in given_states]) for i in range(cell.state_size))
    xs = jnp.stack([_time_major(x, r) for r in reverse], 1)
    keep = None if mask is None else jnp.stack([_time_major(mask, r) for r in reverse], 1)[..., None]
    if keep is not None:
        # A masked step's input is read (its result is dropped): zeros there keep whatever
        # it held (NaN, inf) out of every gradient.
        xs = jnp.where(keep, xs, 0)
    stacked = Weights(
        stack([w.kernel for w in weights], params_dtype),
        stack([w.recurrent_kernel for w in weights], params_dtype),
        stack_or_none([w.bias for w in weights], params_dtype),
        stack_or_none([w.recurrent_bias for w in weights], params_dtype),
    )
    masks = _all_or_none(dropouts)
    dropout = None
    if masks is not None:
        dropout = DropoutMasks(stack_or_none([m.inputs for m in masks]), stack_or_none([m.recurrent for m in masks]))
    run = _run_in_chunks if remat else _run
    hs, state = run(xs, keep, stacked, dropout, state0, statics, return_sequences)
    sequences = jnp.moveaxis(hs, 0, 2) if return_sequences else None  # (T, D, B, U) -> (D, B, T, U)
    return ScanResult(sequences, tuple(state))


def _all_or_none(items: Sequence[T | None]) -> list[T] | None:
    """Every direction's item, or None where none has one (the directions share a spec)."""
    present = [item for item in items if item is not None]
    assert len(present) in (0, len(items)), "the directions of one scan disagree"
    return present or None


def _time_major(a: jax.Array, reverse: bool) -> jax.Array:
    # (B, T, ...) -> (T, B, ...), so that the scan slices one contiguous timestep per step.
    a = jnp.swapaxes(a, 0, 1)
    return jnp.flip(a, 0) if reverse else a
