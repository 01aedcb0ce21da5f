"""Stateful streaming: a recurrent layer's state carried from one call to the next, as a Keras
layer built with `stateful=True` carries it, with the state an explicit value instead of a
variable inside the layer.

`init_state(layer, params, batch_size)` makes the zero state, `apply(layer, params, state,
x_chunk)` runs one chunk from `state` and returns the outputs and the state to pass with the
next chunk, and `reset(state, rows)` zeroes the state of some rows (Keras's `reset_state()`
zeroes all of them). The layer is an `LSTM`, `GRU` or `SimpleRNN`, a `Bidirectional` over one,
or a `Sequential` holding them; it need not have `return_state=True`. A layer from
`jlstm.interop` works alike, its state in this layout (per layer `(h, c)`), not torch's.

>>> import jax, jax.numpy as jnp
>>> import jlstm
>>> from jlstm import stateful
>>> layer = jlstm.LSTM(5, return_sequences=True)
>>> _, params = layer.init(jax.random.key(0), (None, None, 3))
>>> state = stateful.init_state(layer, params, batch_size=2)     # (h, c): zeros (2, 5)
>>> x = jnp.ones((2, 8, 3))
>>> y1, state = stateful.apply(layer, params, state, x[:, :4])
>>> y2, state = stateful.apply(layer, params, state, x[:, 4:])
>>> bool(jnp.allclose(jnp.concatenate([y1, y2], axis=1), layer.apply(params, x), atol=1e-6))
True
>>> h, c = stateful.reset(state, jnp.array([False, True]))      # row 1 starts afresh
>>> h.shape, float(jnp.abs(h[1]).max()), bool(jnp.any(h[0] != 0))
((2, 5), 0.0, True)
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks, precision
from jlstm.combinators import Bidirectional, layer_keys, next_mask
from jlstm.layers import RECURRENT, Layer, Params

# A state: per recurrent layer a tuple of (batch, units) arrays, (h, c) for an LSTM, (h,) for a
# GRU or SimpleRNN, both directions' in a row for a Bidirectional; a Sequential's is a tuple with
# one entry per layer, () for a layer without state.
State = Any

_SUPPORTED = "a recurrent layer (LSTM, GRU, SimpleRNN), a Bidirectional over one, or a Sequential holding one"
# Each recurrent layer rebuilt with return_state=True (see `_with_states`), for as long as it lives.
_RETURNING_STATES: weakref.WeakKeyDictionary[Layer, Layer] = weakref.WeakKeyDictionary()


def init_state(layer: Layer, params: Params, batch_size: int) -> State:
    """The zero state of `layer` for a batch of `batch_size` rows, the one a Keras
    `stateful=True` layer starts from (and returns to on `reset_state()`).

    Args:
        layer: an `LSTM`, `GRU` or `SimpleRNN`, a `Bidirectional` over one, or a `Sequential`
            holding them.
        params: the layer's params: the states take each recurrent layer's compute dtype
            (its params' dtype, without a dtype policy).
        batch_size: the rows every chunk will have.

    Returns:
        `(h, c)` for an LSTM, `(h,)` for a GRU or SimpleRNN, each `(batch_size, units)` zeros;
        both directions' in a row for a Bidirectional (`(h_fwd, c_fwd, h_bwd, c_bwd)`); for a
        Sequential a tuple with one entry per layer, `()` for a layer without state.
    """
    what = f"stateful.init_state: {_name(layer)}"
    _supported(layer, what)
    batch = _checks.positive_int(batch_size, f"{what} batch_size")
    return _zeros(layer, params, batch, what)


def apply(
    layer: Layer,
    params: Params,
    state: State,
    inputs: Any,
    *,
    mask: Any = None,
    lengths: Any = None,
    training: bool = False,
    rng: jax.Array | None = None,
) -> tuple[Any, State]:
    """Runs one chunk of a stream from `state`: the outputs, and the state after the chunk.

    Successive calls, each given the state the previous one returned, compute what a Keras
    `stateful=True` layer computes over the same chunks (for a one-way layer returning
    sequences, the outputs of the whole sequence in one call). The state after a chunk is
    each row's at its last unmasked step (a row masked throughout keeps its state), as in
    Keras; a chunk's leading masked steps output the carried `h`, as Keras's scan does (its
    `unroll=True` loop outputs zeros there). A Bidirectional's backward direction reads each
    chunk backwards from the state it had after the previous chunk, as Keras's stateful
    Bidirectional does. Pure and jit-friendly:
    `jax.jit(stateful.apply, static_argnums=0)` compiles once per shapes, and so do the
    layers' own jitted calls without it (pass `training` as static too under your jit).

    Args:
        layer: an `LSTM`, `GRU` or `SimpleRNN`, a `Bidirectional` over one, or a `Sequential`
            holding them; with or without `return_state`.
        params: the layer's params.
        state: the state from `init_state`, the last call, or `reset`.
        inputs: the chunk, `(batch, timesteps, features)`, batch as the state's.
        mask: bool `(batch, timesteps)`: the chunk's steps to compute; or None.
        lengths: int `(batch,)`: the valid steps of each row (instead of `mask`); or None.
        training: whether dropout acts (a Python bool).
        rng: the PRNG key dropout draws from, with `training=True`.

    Returns:
        `(outputs, state)`: the layer's outputs for the chunk (without states, even with
        `return_state=True`; a pair for a Bidirectional with `merge_mode=None`), and the
        state to pass with the next chunk, structured as `init_state`'s.
    """
    what = f"stateful.apply: {_name(layer)}"
    _supported(layer, what)
    _checks.training(training, what)
    x = _checks.numeric(inputs, f"{what} inputs")
    if x.ndim != 3:
        raise ValueError(f"{what}: expected inputs of rank 3 (batch, timesteps, features), got shape {tuple(x.shape)}")
    batch = _state_batch(layer, state, what)
    if x.shape[0] != batch:
        raise ValueError(
            f"{what}: expected inputs of batch size {batch} (the state's, as init_state made it), "
            f"got {x.shape[0]} in shape {tuple(x.shape)}"
        )
    return _run(layer, params, state, x, mask, lengths, training, rng, what)


def reset(state: State, rows: Any = None) -> State:
    """The state with some rows zeroed: those rows start afresh at the next chunk, the others
    carry on. Keras's `layer.reset_state()` is `reset(state)`, all rows.

    Args:
        state: a state, as `init_state` or `apply` returned it.
        rows: bool `(batch,)`, True for the rows to zero; None for all rows.

    Returns:
        The state, structured as `state`, with the chosen rows' arrays zero.

    >>> import jax.numpy as jnp
    >>> state = (jnp.ones((3, 2)), jnp.ones((3, 2)))
    >>> h, c = reset(state, jnp.array([True, False, True]))
    >>> h.tolist()
    [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """
    what = "stateful.reset"
    leaves = jax.tree.leaves(state)
    if not leaves:
        raise ValueError(f"{what}: expected a state of (batch, units) arrays (from stateful.init_state), got {state!r}")
    batch = _batch_of([_checks.numeric(s, f"{what} state") for s in leaves], what)
    if rows is None:
        return jax.tree.map(jnp.zeros_like, state)
    rows = _checks.numeric(rows, f"{what} rows")
    if rows.dtype != jnp.bool_:
        raise TypeError(f"{what}: expected rows as a bool ({batch},) array, got dtype {rows.dtype}")
    if rows.shape != (batch,):
        raise ValueError(f"{what}: expected rows of shape ({batch},) (the state's batch), got {tuple(rows.shape)}")
    chosen = jnp.asarray(rows)[:, None]
    return jax.tree.map(lambda s: jnp.where(chosen, jnp.zeros_like(s), s), state)


def _name(layer: Any) -> str:
    if not isinstance(layer, Layer):
        return type(layer).__name__
    return _checks.layer_name(layer.name, layer.type_name)


def _carries(layer: Layer) -> bool:
    """Whether the layer itself carries a state (a recurrent layer or a Bidirectional)."""
    return layer.type_name in RECURRENT or layer.type_name == "Bidirectional"


def _holds_state(layer: Layer) -> bool:
    if layer.type_name == "Sequential":
        return any(_holds_state(sub) for sub in layer.sublayers)
    return _carries(layer)


def _supported(layer: Any, what: str) -> None:
    if not isinstance(layer, Layer):
        raise TypeError(f"{what}: expected a jlstm layer, {_SUPPORTED}, got {type(layer).__name__}")
    if not _holds_state(layer):
        kinds = [sub.type_name for sub in layer.sublayers] if layer.type_name == "Sequential" else None
        got = f"a Sequential of {', '.join(kinds)}" if kinds else layer.type_name
        raise TypeError(f"{what}: expected {_SUPPORTED}, got {got}")


def _units(layer: Layer) -> tuple[int, ...]:
    """The units of each array in the state of a recurrent layer or a Bidirectional, in order."""
    if layer.type_name == "Bidirectional":
        forward, backward = layer.config["layer"], layer.config["backward_layer"]
        return _units(forward) + _units(forward if backward is None else backward)
    return (layer.spec.units,) * layer.spec.cell.state_size


def _stack(layer: Layer, params: Params, what: str) -> Sequence[Params]:
    """A Sequential's params, checked as Sequential's apply checks them."""
    count = len(layer.sublayers)
    if not isinstance(params, (tuple, list)) or len(params) != count:
        got = (
            f"{type(params).__name__} of {len(params)}" if isinstance(params, (tuple, list)) else type(params).__name__
        )
        raise ValueError(f"{what}: expected params as a tuple of {count}, got {got}")
    return params


def _zeros(layer: Layer, params: Params, batch: int, what: str) -> State:
    if layer.type_name == "Sequential":
        return tuple(_zeros(sub, p, batch, what) for sub, p in zip(layer.sublayers, _stack(layer, params, what)))
    if not _carries(layer):
        return ()
    leaves = jax.tree.leaves(params)
    if not leaves or not all(_is_float(p) for p in leaves):
        got = sorted({str(getattr(p, "dtype", type(p).__name__)) for p in leaves}) or type(params).__name__
        raise TypeError(f"{what}: expected {_name(layer)}'s params as arrays of a float dtype, got {got}")
    # the dtype the layer's states come back in: its compute dtype (its params' without a policy)
    policy = layer.dtype_policy
    dtype = leaves[0].dtype if policy is None else precision.compute_dtype(policy, leaves[0].dtype, what)
    return tuple(jnp.zeros((batch, u), dtype) for u in _units(layer))


def _is_float(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return isinstance(dtype, np.dtype) and jnp.issubdtype(dtype, jnp.floating)


def _entries(state: Any, count: int, where: str, expected: str, what: str) -> Sequence[Any]:
    if not isinstance(state, (tuple, list)) or len(state) != count:
        got = f"{type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
        raise ValueError(
            f"{what}: expected {where} as a tuple of {count} ({expected}, as init_state makes it), got {got}"
        )
    return state


def _state_arrays(layer: Layer, state: Any, where: str, what: str) -> list[Any]:
    """The state's arrays, its structure and each array's units checked against the layer's."""
    if layer.type_name == "Sequential":
        entries = _entries(state, len(layer.sublayers), where, "an entry per layer", what)
        return [
            a
            for i, (sub, s) in enumerate(zip(layer.sublayers, entries))
            for a in _state_arrays(sub, s, f"{where}[{i}]", what)
        ]
    if not _carries(layer):
        _entries(state, 0, where, f"{_name(layer)} has no state", what)
        return []
    units = _units(layer)
    entries = _entries(state, len(units), where, f"{len(units)} arrays (batch, units) of {_name(layer)}", what)
    arrays = []
    for i, (s, u) in enumerate(zip(entries, units)):
        s = _checks.numeric(s, f"{what} {where}[{i}]")
        if s.ndim != 2 or s.shape[1] != u:
            raise ValueError(f"{what}: expected {where}[{i}] of shape (batch, {u}), got {tuple(s.shape)}")
        arrays.append(s)
    return arrays


def _state_batch(layer: Layer, state: Any, what: str) -> int:
    return _batch_of(_state_arrays(layer, state, "state", what), what)


def _batch_of(arrays: Sequence[Any], what: str) -> int:
    """The batch every state array shares."""
    shapes = [tuple(a.shape) for a in arrays]
    if any(len(s) != 2 for s in shapes) or len({s[0] for s in shapes}) != 1:
        raise ValueError(f"{what}: expected state arrays (batch, units) of one batch size, got shapes {shapes}")
    return shapes[0][0]


def _with_states(layer: Layer) -> Layer:
    """The recurrent layer or Bidirectional rebuilt with return_state=True (itself if it has it)."""
    if layer.type_name == "Bidirectional":
        forward, backward = layer.config["layer"], layer.config["backward_layer"]
        if forward.config["return_state"]:
            return layer
    elif layer.config["return_state"]:
        return layer
    if layer not in _RETURNING_STATES:
        if layer.type_name == "Bidirectional":
            rebuilt = Bidirectional(
                _with_states(forward),
                layer.config["merge_mode"],
                None if backward is None else _with_states(backward),
                name=layer.name,
            )
        else:
            rebuilt = RECURRENT[layer.type_name](**{**layer.config, "return_state": True})
        _RETURNING_STATES[layer] = rebuilt
    return _RETURNING_STATES[layer]


def _run(
    layer: Layer,
    params: Params,
    state: State,
    x: Any,
    mask: Any,
    lengths: Any,
    training: bool,
    rng: jax.Array | None,
    what: str,
) -> tuple[Any, State]:
    if layer.type_name == "Sequential":
        return _run_sequential(layer, params, state, x, mask, lengths, training, rng, what)
    out = _with_states(layer).apply(
        params, x, mask=mask, lengths=lengths, initial_state=tuple(state), training=training, rng=rng
    )
    count = len(state)
    outputs = out[: len(out) - count]
    return (outputs[0] if len(outputs) == 1 else tuple(outputs)), tuple(out[len(out) - count :])


def _run_sequential(
    layer: Layer,
    params: Params,
    state: State,
    x: Any,
    mask: Any,
    lengths: Any,
    training: bool,
    rng: jax.Array | None,
    what: str,
) -> tuple[Any, State]:
    """A Sequential's layers one after another, as its own apply runs them (the mask flowing
    while outputs keep the time axis, the same dropout keys), each carrying its state."""
    layers, stack = layer.sublayers, _stack(layer, params, what)
    mask = _checks.sequence_mask(mask, lengths, x.shape[0], x.shape[1], what)
    new_state = []
    for sub, p, s, key in zip(layers, stack, state, layer_keys(rng, len(layers), what)):
        x_in = x
        if _holds_state(sub):
            x, s = _run(sub, p, s, x, mask, None, training, key, what)
        else:
            x = sub.apply(p, x, mask=mask, training=training, rng=key)
        new_state.append(tuple(s))
        mask = next_mask(sub, x_in, x, mask)
    return x, tuple(new_state)
