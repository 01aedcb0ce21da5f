"""What every recurrent layer (LSTM, GRU, SimpleRNN, and Bidirectional over them) shares:
its static spec, the checks of a call, its dropout masks, and the run of its directions
through the scan. Private plumbing: the layers in `jlstm.layers` are the API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jlstm import _checks, precision
from jlstm.activations import Activation
from jlstm.cell import Cell, param_shapes, weights
from jlstm.scan import Direction, DropoutMasks, ScanResult, rnn_scan

Params = Any
States = list[tuple[jax.Array, ...]] | None  # per direction, cell.state_size arrays (B, U)


class RecurrentSpec(NamedTuple):
    """The static part of a recurrent layer, hashable so that the jitted scan caches on it."""

    cell: Cell
    units: int
    use_bias: bool
    unroll: int | bool
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    remat: bool = False
    use_cudnn: str | bool = "auto"
    cudnn_allow_tf32: bool = False
    # Keras's LSTM and GRU draw one mask per gate when recurrent dropout is on; SimpleRNN one.
    per_gate_dropout: bool = True
    policy: precision.DTypePolicy = precision.dtype_policy()

    @property
    def activation(self) -> Activation:
        return self.cell.activation

    @property
    def recurrent_activation(self) -> Activation:
        return self.cell.recurrent_activation


def spec(cell: Cell, config: Mapping[str, Any], what: str, *, per_gate_dropout: bool = True) -> RecurrentSpec:
    """The checked spec of a recurrent layer from its cell and constructor arguments."""
    return RecurrentSpec(
        cell=cell,
        units=_checks.positive_int(config["units"], f"{what} units"),
        use_bias=_checks.flag(config["use_bias"], f"{what} use_bias"),
        unroll=_checks.unroll_factor(config["unroll"]),
        dropout=_checks.rate(config["dropout"], f"{what} dropout"),
        recurrent_dropout=_checks.rate(config["recurrent_dropout"], f"{what} recurrent_dropout"),
        remat=_checks.flag(config["remat"], f"{what} remat"),
        use_cudnn=_checks.use_cudnn(config.get("use_cudnn", "auto"), what),
        cudnn_allow_tf32=_checks.flag(config.get("cudnn_allow_tf32", False), f"{what} cudnn_allow_tf32"),
        per_gate_dropout=per_gate_dropout,
        policy=precision.dtype_policy(config.get("dtype"), config.get("param_dtype"), what),
    )


def prepare_call(
    directions: Sequence[tuple[RecurrentSpec, Params]],
    inputs: Any,
    mask: Any,
    lengths: Any,
    initial_state: Any,
    what: str,
) -> tuple[jax.Array, jax.Array | None, States]:
    """Checks the params, inputs, mask and initial state of a call with one or more
    directions (they share a dtype policy); returns the inputs and states cast to the
    compute dtype, the bool mask and each direction's initial state (or None for zeros).
    A single-state layer takes its state as `h` or `(h,)`, as Keras does."""
    first_spec, first_params = directions[0]
    dtype = _checks.param_tree(first_params, _shapes(first_spec, None), what)
    features = first_params["kernel"].shape[0]
    for direction_spec, params in directions[1:]:
        other = _checks.param_tree(params, _shapes(direction_spec, features), what)
        if other != dtype:  # both directions read the inputs cast to one dtype
            raise TypeError(
                f"{what}: expected both directions' params of one dtype, got {dtype} (forward) and {other} (backward)"
            )
    compute = precision.compute_dtype(first_spec.policy, dtype, what)
    x = _checks.sequence_input(inputs, features, compute, what)
    batch, timesteps, _ = x.shape
    mask = _checks.sequence_mask(mask, lengths, batch, timesteps, what)
    if initial_state is None:
        return x, mask, None  # zeros, made inside the jitted scan
    sizes = [s.cell.state_size for s, _ in directions]
    if sum(sizes) == 1 and not isinstance(initial_state, (list, tuple)):
        initial_state = [initial_state]
    units = [s.units for s, _ in directions for _ in range(s.cell.state_size)]
    flat = _checks.states(initial_state, sum(sizes), batch, units, x.dtype, what)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return x, mask, [tuple(flat[start : start + size]) for start, size in zip(starts, sizes)]


def _shapes(s: RecurrentSpec, features: int | None) -> dict[str, tuple[int | None, ...]]:
    return param_shapes(s.cell, features, s.units, s.use_bias)


def dropout_rng(s: RecurrentSpec, training: bool, rng: jax.Array | None, what: str) -> jax.Array | None:
    """The key to draw dropout masks with, or None when no dropout applies to this call."""
    if not _checks.training(training, what) or not (s.dropout or s.recurrent_dropout):
        return None
    if rng is None:
        raise ValueError(f"{what}: expected rng=<PRNG key> with training=True (dropout is on), got None")
    return _checks.prng_key(rng, what)


def dropout_masks(s: RecurrentSpec, rng: jax.Array, batch: int, features: int, dtype: Any) -> DropoutMasks:
    """One direction's scaled dropout masks, as Keras 3 draws them: on the inputs (M, B, F)
    and on the state (M, B, U), with M the gate count where recurrent dropout is on and the
    layer draws per gate (LSTM, GRU), else 1."""
    k_input, k_recurrent = jax.random.split(rng)
    count = s.cell.gates if s.recurrent_dropout and s.per_gate_dropout else 1
    inputs = recurrent = None
    if s.dropout:
        inputs = scaled_keep(k_input, s.dropout, (count, batch, features), dtype)
    if s.recurrent_dropout:
        recurrent = scaled_keep(k_recurrent, s.recurrent_dropout, (count, batch, s.units), dtype)
    return DropoutMasks(inputs, recurrent)


def scaled_keep(key: jax.Array, rate: float, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """A dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def run_directions(
    s: RecurrentSpec,
    params: Sequence[Params],
    x: jax.Array,
    mask: jax.Array | None,
    states: States,
    *,
    reverse: tuple[bool, ...],
    return_sequences: bool,
    zero_output_for_mask: bool,
    dropout_rng: jax.Array | None = None,
) -> ScanResult:
    """Runs the directions' params (they share the spec `s`) in one scan."""
    batch, _, features = x.shape
    keys = [None] * len(params) if dropout_rng is None else list(jax.random.split(dropout_rng, len(params)))
    directions = [
        Direction(
            weights(s.cell, p),
            r,
            None if states is None else states[i],
            None if key is None else dropout_masks(s, key, batch, features, x.dtype),
        )
        for i, (p, r, key) in enumerate(zip(params, reverse, keys))
    ]
    return rnn_scan(
        s.cell,
        x,
        directions,
        mask,
        return_sequences=return_sequences,
        zero_output_for_mask=zero_output_for_mask,
        unroll=s.unroll,
        remat=s.remat,
    )
