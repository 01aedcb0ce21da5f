"""Recurrent cells: the per-step math the scan runs, and the single-step API.

A `Cell` says what the scan needs of a recurrent cell: how many gate blocks its kernels
hold, how many state arrays it carries, and the function from one step's projections to
the new state (with, for tanh/sigmoid, a closed-form VJP). The scan (`jlstm.scan`) knows
nothing else of the cell, so LSTM, GRU and SimpleRNN share it: its loop layouts, its
tuned forms, its custom VJP with every weight gradient as one GEMM over all timesteps.

Params are Keras's: `kernel` (F, G*U), `recurrent_kernel` (U, G*U) and `bias`, with the
gate blocks in Keras's order: LSTM i, f, c, o (G=4); GRU z, r, h (G=3), whose bias is
(2, 3U) (input and recurrent rows) with `reset_after` and (3U,) without; SimpleRNN G=1.

>>> import jax.numpy as jnp
>>> from jlstm.cell import lstm_step
>>> params = {"kernel": jnp.zeros((3, 20)), "recurrent_kernel": jnp.zeros((5, 20)),
...           "bias": jnp.zeros(20)}
>>> (h, c), y = lstm_step(params, (jnp.zeros((2, 5)), jnp.zeros((2, 5))), jnp.ones((2, 3)))
>>> h.shape
(2, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, overload

import jax
import jax.numpy as jnp
from jax import lax

from jlstm import _checks
from jlstm.activations import Activation, get_activation

State = tuple[jax.Array, ...]
# A step's projections: z = x_t @ kernel + h @ recurrent_kernel (+ bias) for a summed
# cell, else the pair (x_t @ kernel + input bias, h @ recurrent_kernel + recurrent bias).
Projections = Any
# `recurrent(a, lo, hi)`: a @ recurrent_kernel's gate blocks lo..hi, in the scan's layout.
Recurrent = Callable[[jax.Array, int, int], jax.Array]
# What `activate` returns: the new state, and what the closed-form VJP reads of the step.
Activated = tuple[State, Any]
# What `backward` returns: the projections' cotangents, and the previous state's (None: zeros).
Cotangents = tuple[Projections, tuple[jax.Array | None, ...]]


class Weights(NamedTuple):
    """A cell's weights as arrays: kernel (..., F, G*U), recurrent_kernel (..., U, G*U), the
    input bias (..., G*U) or None, and the recurrent bias (..., G*U) of a cell that keeps it
    apart (GRU's reset_after), else None. The scan stacks directions on a leading axis."""

    kernel: jax.Array
    recurrent_kernel: jax.Array
    bias: jax.Array | None = None
    recurrent_bias: jax.Array | None = None


class Cell(NamedTuple):
    """A recurrent cell as the scan runs it; hashable, so that jit caches on it.

    Each step projects the input and the previous output h through the kernels, then
    `activate(cell, projections, state, recurrent, axis) -> (state, saved)` makes the new
    state; `axis` holds the gate columns (-1 for rows (B, N), -2 for columns (N, B)).
    `backward(cell, saved, state_before, d_state, axis) -> (d_projections, d_state_before)`
    is activate's closed-form VJP given what it saved (None entries of d_state_before are
    zeros), or None, and then the scan saves the projections and calls `jax.vjp`.
    """

    name: str  # "lstm", "gru", "simple_rnn"
    gates: int  # G: gate blocks of U columns in each kernel
    state_size: int  # how many (B, U) arrays the state holds; the first is h, the output
    summed: bool  # activate reads only z = x_proj + h_proj: one dot of [x_t, h] may compute it
    split_bias: bool  # the bias is (2, G*U): an input row and a recurrent row (GRU's reset_after)
    activate: Callable[..., Activated]
    backward: Callable[..., Cotangents] | None
    activation: Activation
    recurrent_activation: Activation
    # How many gate blocks the scan's recurrent dot covers: all G, except for a cell that
    # multiplies part of h by a gate before its own dot (GRU without reset_after), which
    # `activate` makes through `recurrent`; such a cell runs under JAX's autodiff.
    recurrent_blocks: int = 0

    @property
    def scanned_blocks(self) -> int:
        return self.recurrent_blocks or self.gates

    @property
    def fast_vjp(self) -> bool:
        """Whether the scan's custom VJP applies: every recurrent product is h @ recurrent_kernel."""
        return self.scanned_blocks == self.gates


def _blocks(a: jax.Array, units: int, lo: int, hi: int, axis: int) -> jax.Array:
    return lax.slice_in_dim(a, lo * units, hi * units, axis=axis)


def _is_tanh_sigmoid(activation: Activation, recurrent_activation: Activation | None = None) -> bool:
    return activation is jnp.tanh and recurrent_activation in (None, jax.nn.sigmoid)


# ---------------------------------------------------------------------------------------
# LSTM: i, f, c, o; state (h, c).


def _gate_activations(
    z: jax.Array, units: int, activation: Activation, recurrent_activation: Activation, axis: int = -1
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The activated LSTM gates (i, f, c candidate, o) from the pre-activations `z`, whose
    `axis` holds the 4U gate columns."""
    # One recurrent_activation over all 4U columns, then slices: on XLA CPU this fuses into
    # one loop and runs 3x faster than activating each gate's slice (the c block is unused).
    gates = recurrent_activation(z)
    i, f, _, o = (_blocks(gates, units, k, k + 1, axis) for k in range(4))
    return i, f, activation(_blocks(z, units, 2, 3, axis)), o


def _lstm_activate(cell: Cell, z: jax.Array, state: State, recurrent: Recurrent | None, axis: int) -> Activated:
    _, c = state
    i, f, g, o = _gate_activations(z, c.shape[axis], cell.activation, cell.recurrent_activation, axis)
    c = f * c + i * g
    tanh_c = cell.activation(c)
    return (o * tanh_c, c), (jnp.concatenate([i, f, g, o], axis), tanh_c)


def _lstm_backward(
    cell: Cell, saved: tuple[jax.Array, jax.Array], state: State, d_state: State, axis: int
) -> Cotangents:
    # h = o * tanh(c), c = f * c_before + i * g, with sigmoid i, f, o and tanh g.
    d_h, d_c = d_state
    acts, tanh_c = saved
    i, f, g, o = jnp.split(acts, 4, axis=axis)
    d_c_total = d_c + d_h * o * (1 - tanh_c * tanh_c)
    d_z = jnp.concatenate(
        [
            d_c_total * g * i * (1 - i),
            d_c_total * state[1] * f * (1 - f),
            d_c_total * i * (1 - g * g),
            d_h * tanh_c * o * (1 - o),
        ],
        axis=axis,
    )
    return d_z, (None, d_c_total * f)


def lstm_cell(activation: Activation = jnp.tanh, recurrent_activation: Activation = jax.nn.sigmoid) -> Cell:
    """Keras's LSTM cell: gates i, f, c, o; state (h, c)."""
    closed = _lstm_backward if _is_tanh_sigmoid(activation, recurrent_activation) else None
    return Cell("lstm", 4, 2, True, False, _lstm_activate, closed, activation, recurrent_activation)


def lstm_gates(
    z: jax.Array,
    c: jax.Array,
    activation: Activation = jnp.tanh,
    recurrent_activation: Activation = jax.nn.sigmoid,
    axis: int = -1,
) -> tuple[jax.Array, jax.Array]:
    """From the gate pre-activations `z` (4U along `axis`) and the cell state `c`, the new `(h, c)`.

    Args:
        z: the pre-activations `x_t @ kernel + h @ recurrent_kernel + bias`, gates i, f, c, o
            of U columns each along `axis`.
        c: the previous cell state, U along `axis`.
        activation: the cell and output activation.
        recurrent_activation: the gates' activation.
        axis: the axis of the gate columns: -1 for rows (batch, 4U), -2 for columns (4U, batch).

    Returns:
        The new `(h, c)`, each shaped as `c`.
    """
    cell = lstm_cell(activation, recurrent_activation)
    h, c = _lstm_activate(cell, z, (c, c), None, axis)[0]
    return h, c


# ---------------------------------------------------------------------------------------
# GRU: z (update), r (reset), h (candidate); state (h,).


def _gru_activate(
    cell: Cell, projections: tuple[jax.Array, jax.Array], state: State, recurrent: Recurrent | None, axis: int
) -> Activated:
    (h,) = state
    u = h.shape[axis]
    x_proj, h_proj = projections
    zr = cell.recurrent_activation(_blocks(x_proj, u, 0, 2, axis) + _blocks(h_proj, u, 0, 2, axis))
    z, r = _blocks(zr, u, 0, 1, axis), _blocks(zr, u, 1, 2, axis)
    if cell.fast_vjp:  # reset_after: the reset gate scales the candidate's recurrent projection
        recurrent_h = _blocks(h_proj, u, 2, 3, axis)
        candidate = cell.activation(_blocks(x_proj, u, 2, 3, axis) + r * recurrent_h)
        saved = (zr, candidate, recurrent_h)
    else:  # the reset gate scales h before its dot
        assert recurrent is not None
        candidate = cell.activation(_blocks(x_proj, u, 2, 3, axis) + recurrent(r * h, 2, 3))
        saved = None
    return (z * h + (1 - z) * candidate,), saved


def _gru_backward(
    cell: Cell, saved: tuple[jax.Array, jax.Array, jax.Array], state: State, d_state: State, axis: int
) -> Cotangents:
    # h' = z * h + (1 - z) * n, n = tanh(x_n + r * rh), z, r sigmoid of x + h projections.
    (d_h,) = d_state
    zr, n, recurrent_h = saved
    z, r = jnp.split(zr, 2, axis=axis)
    d_z = d_h * (state[0] - n) * z * (1 - z)
    d_n = d_h * (1 - z) * (1 - n * n)
    d_r = d_n * recurrent_h * r * (1 - r)
    d_x_proj = jnp.concatenate([d_z, d_r, d_n], axis)
    d_h_proj = jnp.concatenate([d_z, d_r, d_n * r], axis)
    return (d_x_proj, d_h_proj), (d_h * z,)


def gru_cell(
    activation: Activation = jnp.tanh, recurrent_activation: Activation = jax.nn.sigmoid, reset_after: bool = True
) -> Cell:
    """Keras's GRU cell: gates z, r, h; state (h,). With `reset_after` (Keras 3's default
    and cuDNN's form) the reset gate multiplies the candidate's recurrent projection, which
    has a bias row of its own; without, it multiplies h before the candidate's dot."""
    closed = _gru_backward if reset_after and _is_tanh_sigmoid(activation, recurrent_activation) else None
    blocks = 0 if reset_after else 2  # without reset_after, activate makes the candidate's dot
    return Cell("gru", 3, 1, False, reset_after, _gru_activate, closed, activation, recurrent_activation, blocks)


# ---------------------------------------------------------------------------------------
# SimpleRNN: h' = activation(z); state (h,).


def _simple_rnn_activate(cell: Cell, z: jax.Array, state: State, recurrent: Recurrent | None, axis: int) -> Activated:
    h = cell.activation(z)
    return (h,), h


def _simple_rnn_backward(cell: Cell, h: jax.Array, state: State, d_state: State, axis: int) -> Cotangents:
    (d_h,) = d_state
    return d_h * (1 - h * h), (None,)


def simple_rnn_cell(activation: Activation = jnp.tanh) -> Cell:
    """Keras's SimpleRNN cell: h' = activation(x_t @ kernel + h @ recurrent_kernel + bias)."""
    closed = _simple_rnn_backward if _is_tanh_sigmoid(activation) else None
    return Cell("simple_rnn", 1, 1, True, False, _simple_rnn_activate, closed, activation, activation)


# ---------------------------------------------------------------------------------------
# Params in Keras's layout, and one step.


@overload
def param_shapes(cell: Cell, features: int, units: int, use_bias: bool) -> dict[str, tuple[int, ...]]: ...
@overload
def param_shapes(cell: Cell, features: int | None, units: int, use_bias: bool) -> dict[str, tuple[int | None, ...]]: ...
def param_shapes(
    cell: Cell, features: int | None, units: int, use_bias: bool
) -> dict[str, tuple[int, ...]] | dict[str, tuple[int | None, ...]]:
    """The Keras param tree's shapes for a cell of `units` on `features` inputs (None: any)."""
    width = cell.gates * units
    shapes: dict[str, tuple[int | None, ...]] = {"kernel": (features, width), "recurrent_kernel": (units, width)}
    if use_bias:
        shapes["bias"] = (2, width) if cell.split_bias else (width,)
    return shapes


def weights(cell: Cell, params: Mapping[str, Any]) -> Weights:
    """The scan's `Weights` from a Keras param tree."""
    bias = params.get("bias")
    if bias is not None and cell.split_bias:
        return Weights(params["kernel"], params["recurrent_kernel"], bias[0], bias[1])
    return Weights(params["kernel"], params["recurrent_kernel"], bias)


def _add(a: jax.Array, bias: jax.Array | None) -> jax.Array:
    return a if bias is None else a + jnp.broadcast_to(bias, a.shape)


def step(cell: Cell, w: Weights, state: State, x_t: jax.Array) -> State:
    """One step of `cell` on rows: the new state from the state and the input x_t (B, F).
    The scan runs the same `activate`; this form is for custom loops and decoding."""
    u = w.recurrent_kernel.shape[0]
    blocks = cell.scanned_blocks

    def recurrent(a: jax.Array, lo: int, hi: int) -> jax.Array:
        return a @ w.recurrent_kernel[:, lo * u : hi * u]

    x_proj = _add(x_t @ w.kernel, w.bias)
    h_proj = _add(recurrent(state[0], 0, blocks), w.recurrent_bias)
    projections = x_proj + h_proj if cell.summed else (x_proj, h_proj)
    return cell.activate(cell, projections, state, recurrent, -1)[0]


def _checked_step(cell: Cell, params: Any, state: Any, x_t: Any, what: str) -> tuple[State, jax.Array]:
    """One checked step: params in the cell's Keras layout, `cell.state_size` states, x_t (B, F)."""
    any_sizes: dict[str, tuple[int | None, ...]] = {"kernel": (None, None), "recurrent_kernel": (None, None)}
    _checks.param_tree(params, any_sizes | _bias_key(params), what)
    features, units = params["kernel"].shape[0], params["recurrent_kernel"].shape[0]
    _checks.param_tree(params, param_shapes(cell, features, units, "bias" in params), what)
    x_t = _checks.numeric(x_t, f"{what} x_t")
    if x_t.ndim != 2 or x_t.shape[1] != features:
        raise ValueError(f"{what}: expected x_t of shape (batch, {features}), got {tuple(x_t.shape)}")
    dtype = params["kernel"].dtype
    state = tuple(_checks.states(state, cell.state_size, x_t.shape[0], [units] * cell.state_size, dtype, what))
    new = step(cell, weights(cell, params), state, jnp.asarray(x_t, dtype))
    return new, new[0]


def _bias_key(params: Any) -> dict[str, tuple[int | None, ...]]:
    if not (isinstance(params, Mapping) and "bias" in params):
        return {}
    return {"bias": (None,) * len(getattr(params["bias"], "shape", ()))}


def lstm_step(
    params: Mapping[str, Any],
    state: tuple[jax.Array, jax.Array],
    x_t: jax.Array,
    *,
    activation: str | Activation = "tanh",
    recurrent_activation: str | Activation = "sigmoid",
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """One LSTM timestep: `((h, c), h)` from the previous `(h, c)` and the input `x_t` (batch, F).

    The same math the scan runs, for custom loops and autoregressive decoding.

    Args:
        params: an LSTM's params `{"kernel": (F, 4U), "recurrent_kernel": (U, 4U), "bias": (4U,)}`
            (bias optional).
        state: `(h, c)`, each (batch, U).
        x_t: the step's input (batch, F).
        activation: the cell and output activation, as the layer's: a Keras name or a callable.
        recurrent_activation: the gates' activation, as the layer's: a Keras name or a callable.

    Returns:
        `((h, c), h)`: the new state, and the step's output (the new `h`).
    """
    cell = lstm_cell(
        get_activation(activation, "lstm_step activation"),
        get_activation(recurrent_activation, "lstm_step recurrent_activation"),
    )
    (h, c), y = _checked_step(cell, params, state, x_t, "lstm_step")
    return (h, c), y


def gru_step(
    params: Mapping[str, Any],
    h: jax.Array,
    x_t: jax.Array,
    *,
    reset_after: bool = True,
    activation: str | Activation = "tanh",
    recurrent_activation: str | Activation = "sigmoid",
) -> tuple[jax.Array, jax.Array]:
    """One GRU timestep: `(h, h)` from the previous `h` (batch, U) and the input `x_t` (batch, F).

    Args:
        params: a GRU's params `{"kernel": (F, 3U), "recurrent_kernel": (U, 3U), "bias": (2, 3U)}`,
            bias (3U,) without `reset_after`, or none.
        h: the previous state (batch, U).
        x_t: the step's input (batch, F).
        reset_after: as the layer's: the reset gate applied after the recurrent projection.
        activation: the candidate's activation, as the layer's.
        recurrent_activation: the gates' activation, as the layer's.

    Returns:
        `(h, h)`: the new state, and the step's output (the same array).
    """
    cell = gru_cell(
        get_activation(activation, "gru_step activation"),
        get_activation(recurrent_activation, "gru_step recurrent_activation"),
        _checks.flag(reset_after, "gru_step reset_after"),
    )
    (h,), y = _checked_step(cell, params, (h,), x_t, "gru_step")
    return h, y


def simple_rnn_step(
    params: Mapping[str, Any], h: jax.Array, x_t: jax.Array, *, activation: str | Activation = "tanh"
) -> tuple[jax.Array, jax.Array]:
    """One SimpleRNN timestep: `(h, h)` from the previous `h` (batch, U) and `x_t` (batch, F).

    Args:
        params: a SimpleRNN's params `{"kernel": (F, U), "recurrent_kernel": (U, U), "bias": (U,)}`.
        h: the previous state (batch, U).
        x_t: the step's input (batch, F).
        activation: as the layer's.

    Returns:
        `(h, h)`: the new state, and the step's output (the same array).
    """
    cell = simple_rnn_cell(get_activation(activation, "simple_rnn_step activation"))
    (h,), y = _checked_step(cell, params, (h,), x_t, "simple_rnn_step")
    return h, y
