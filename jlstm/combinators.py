"""Layers made of layers: `Bidirectional` and `Sequential`.

>>> import jax, jax.numpy as jnp
>>> import jlstm
>>> model = jlstm.Sequential([jlstm.Bidirectional(jlstm.LSTM(5)), jlstm.Dense(2)])
>>> shape, params = model.init(jax.random.key(0), (None, 11, 3))
>>> shape, jlstm.count_params(params)
((None, 2), 382)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jlstm import _checks, _recurrent, _weights, cudnn, precision, tuning
from jlstm._recurrent import RecurrentSpec, States
from jlstm.layers import RECURRENT, Layer, OutputShape, Params, Shape, _constructor, as_apply_fn
from jlstm.scan import ScanResult

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _merge(y: jax.Array, y_rev: jax.Array, merge_mode: str | None) -> Any:
    if merge_mode == "concat":
        return jnp.concatenate([y, y_rev], axis=-1)
    if merge_mode == "sum":
        return y + y_rev
    if merge_mode == "mul":
        return y * y_rev
    if merge_mode == "ave":
        return (y + y_rev) / 2
    return (y, y_rev)


def _merged_shape(shape: Shape, backward_shape: Shape, merge_mode: str | None) -> OutputShape:
    if merge_mode == "concat":
        units, backward_units = shape[-1], backward_shape[-1]
        assert units is not None and backward_units is not None  # a recurrent output's last axis is its units
        return shape[:-1] + (units + backward_units,)
    if merge_mode is None:
        return [shape, backward_shape]
    return shape


@_constructor
def Bidirectional(
    layer: Layer,
    merge_mode: str | None = "concat",
    backward_layer: Layer | None = None,
    *,
    name: str | None = None,
) -> Layer:
    """Runs `layer` forwards and a copy of it backwards in time, then merges them (Keras 3).

    The backward copy reads the time axis reversed; with `return_sequences` its sequence
    is reversed back before the merge. merge_mode is "concat", "sum", "mul", "ave" or None
    (a pair). Params are `{"forward": ..., "backward": ...}`. `apply` takes `mask` or
    `lengths`, and `initial_state` as both directions' states in a row, `(h_fwd, c_fwd,
    h_bwd, c_bwd)` for LSTMs and `(h_fwd, h_bwd)` for GRUs and SimpleRNNs; at a
    masked position a returned sequence holds zeros, as Keras 3 sets its layers'
    `zero_output_for_mask` to `return_sequences` (the layers' own is ignored here too).
    Both directions run in one scan.

    The dtype policy is the layer's (`layer.dtype_policy`; a `backward_layer` must have the
    same): outputs come in its compute dtype. Keras casts a Bidirectional's outputs to the
    wrapper's own policy (float32 unless it is given `dtype=` or a global policy is set);
    cast them yourself where that is wanted.

    Args:
        layer: the recurrent layer to run forwards (an `LSTM`, `GRU` or `SimpleRNN`).
        merge_mode: "concat", "sum", "mul", "ave", or None for the pair of outputs.
        backward_layer: the layer to run backwards (with `go_backwards=True`); by default a
            copy of `layer` reading backwards.
        name: the layer's name in a summary.

    Returns:
        A `Layer` with params `{"forward": ..., "backward": ...}`.
    """
    for role, candidate in (("layer", layer), ("backward_layer", backward_layer)):
        if role == "backward_layer" and candidate is None:
            continue  # a copy of `layer` reading backwards
        if not isinstance(candidate, Layer) or candidate.type_name not in RECURRENT:
            got = candidate.type_name if isinstance(candidate, Layer) else type(candidate).__name__
            kinds = ", ".join(RECURRENT)
            raise TypeError(f"Bidirectional {role}: expected a jlstm recurrent layer ({kinds}), got {got}")
    _checks.one_of(merge_mode, MERGE_MODES, "Bidirectional merge_mode")
    fwd_cfg = dict(layer.config)
    rebuild = RECURRENT[layer.type_name]
    named = lambda prefix: f"{prefix}_{layer.name}" if layer.name else None  # noqa: E731
    forward = rebuild(**{**fwd_cfg, "name": named("forward")})
    if backward_layer is None:
        backward = rebuild(**{**fwd_cfg, "go_backwards": True, "name": named("backward")})
    else:
        backward = backward_layer
    bwd_cfg = backward.config
    if fwd_cfg["go_backwards"] == bwd_cfg["go_backwards"]:
        raise ValueError(
            "Bidirectional: expected forward and backward layers with different go_backwards, "
            f"got {fwd_cfg['go_backwards']} for both"
        )
    if forward.spec.policy != backward.spec.policy:
        raise ValueError(
            "Bidirectional: expected both layers with one dtype policy, "
            f"got {precision.describe(forward.spec.policy)} (forward) and "
            f"{precision.describe(backward.spec.policy)} (backward)"
        )
    for key in ("return_sequences", "return_state"):
        if fwd_cfg[key] != bwd_cfg[key]:
            raise ValueError(
                f"Bidirectional: expected the same {key} in both layers, "
                f"got {fwd_cfg[key]} (forward) and {bwd_cfg[key]} (backward)"
            )
    if merge_mode in ("sum", "mul", "ave") and fwd_cfg["units"] != bwd_cfg["units"]:
        raise ValueError(
            f"Bidirectional: merge_mode {merge_mode!r} expects both layers with the same units, "
            f"got {fwd_cfg['units']} (forward) and {bwd_cfg['units']} (backward)"
        )
    return_sequences, return_state = fwd_cfg["return_sequences"], fwd_cfg["return_state"]
    specs = (forward.spec, backward.spec)
    reverse = (bool(fwd_cfg["go_backwards"]), bool(bwd_cfg["go_backwards"]))
    what = _checks.layer_name(name, "Bidirectional")

    def init(rng: jax.Array, input_shape: Shape) -> tuple[OutputShape, Params]:
        k_fwd, k_bwd = jax.random.split(_checks.prng_key(rng, f"{what} init"))
        fwd_shape, fwd_params = forward.init(k_fwd, input_shape)
        bwd_shape, bwd_params = backward.init(k_bwd, input_shape)
        params = {"forward": fwd_params, "backward": bwd_params}
        (fwd_out, *fwd_states), (bwd_out, *bwd_states) = _shapes(fwd_shape), _shapes(bwd_shape)
        out = _merged_shape(fwd_out, bwd_out, merge_mode)
        if not return_state:
            return out, params
        outs = out if isinstance(out, list) else [out]
        return outs + fwd_states + bwd_states, params

    def apply(
        params: Params,
        inputs: Any,
        *,
        mask: Any = None,
        lengths: Any = None,
        initial_state: Any = None,
        training: bool = False,
        rng: jax.Array | None = None,
    ) -> Any:
        _checks.param_keys(params, ("forward", "backward"), what)
        directions = [(specs[0], params["forward"]), (specs[1], params["backward"])]
        x, mask, states = _recurrent.prepare_call(directions, inputs, mask, lengths, initial_state, what)
        keys = [_recurrent.dropout_rng(spec, training, rng, what) for spec in specs]
        key = keys[1] if keys[0] is None else keys[0]
        routes = cudnn.plan(specs, x, mask, key is not None, what)
        statics = _BidirectionalStatics(
            specs, reverse, merge_mode, return_sequences, return_state, routes, what, tuning.settings_key()
        )
        return _bidirectional_compute(params, x, mask, states, key, statics)

    def weight_rules(params: Params) -> Params:
        _checks.param_keys(params, ("forward", "backward"), what)
        return {role: _weights.rules(sub, params[role]) for role, sub in (("forward", forward), ("backward", backward))}

    config = {"layer": layer, "merge_mode": merge_mode, "backward_layer": backward_layer}
    # The layers the caller built (not the internal copies), as Keras counts their names.
    sublayers = (layer,) if backward_layer is None else (layer, backward_layer)
    return Layer(init, as_apply_fn(apply), "Bidirectional", name, config, sublayers, weight_rules=weight_rules)


class _BidirectionalStatics(NamedTuple):
    """What a Bidirectional call compiles for, the jit's static key."""

    specs: tuple[RecurrentSpec, RecurrentSpec]
    reverse: tuple[bool, bool]
    merge_mode: str | None
    return_sequences: bool
    return_state: bool
    routes: tuple[str, ...]
    what: str
    settings: tuple[Any, ...]  # tuning.settings_key(): the forms the scan's trace takes


# Jitted at module level, keyed by the statics, so that two Bidirectionals alike share one
# compile (as _recurrent_compute in layers.py).
@functools.partial(jax.jit, static_argnums=5)
def _bidirectional_compute(
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    states: States,
    key: jax.Array | None,
    statics: _BidirectionalStatics,
) -> Any:
    (y, fwd_states), (y_rev, bwd_states) = _directions(params, x, mask, states, key, statics)
    if statics.return_sequences:
        y_rev = jnp.flip(y_rev, axis=1)
    output = _merge(y, y_rev, statics.merge_mode)
    if not statics.return_state:
        return output
    final = fwd_states + bwd_states
    return (output + final) if statics.merge_mode is None else (output,) + final


def _directions(
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    states: States,
    key: jax.Array | None,
    statics: _BidirectionalStatics,
) -> list[tuple[jax.Array, tuple[jax.Array, ...]]]:
    """Per direction (output, states): in one scan (or one cuDNN call) when the two share a spec."""
    specs, reverse, routes = statics.specs, statics.reverse, statics.routes
    run = functools.partial(
        cudnn.run_directions,
        x=x,
        mask=mask,
        return_sequences=statics.return_sequences,
        zero_output_for_mask=statics.return_sequences,
        what=statics.what,
    )
    if specs[0] == specs[1]:
        result = run(
            specs[0],
            [params["forward"], params["backward"]],
            states=states,
            reverse=reverse,
            dropout_rng=key,
            route=routes[0],
        )
        return [_direction(result, d) for d in (0, 1)]
    return [
        _direction(
            run(
                spec,
                [params[role]],
                states=None if states is None else [states[d]],
                reverse=(reverse[d],),
                dropout_rng=None if key is None else jax.random.fold_in(key, d),
                route=routes[d],
            ),
            0,
        )
        for d, (spec, role) in enumerate(zip(specs, ("forward", "backward")))
    ]


def layer_keys(rng: jax.Array | None, count: int, what: str) -> list[jax.Array | None]:
    """The key each of `count` stacked layers draws its dropout from, as `Sequential` splits
    `rng` (None for every layer without one)."""
    return [None] * count if rng is None else list(jax.random.split(_checks.prng_key(rng, what), count))


def next_mask(layer: Layer, inputs: Any, outputs: Any, mask: jax.Array | None) -> jax.Array | None:
    """The mask a Sequential passes on after `layer` (read `inputs`, gave `outputs`): the
    layer's `compute_mask`'s, else the same mask while the outputs keep the time axis."""
    if layer.compute_mask is not None:
        return layer.compute_mask(inputs, mask)
    return mask if hasattr(outputs, "ndim") and outputs.ndim == 3 else None


def _shapes(shape: OutputShape) -> list[Shape]:
    """A recurrent layer's output shape, then its states' with return_state."""
    return shape if isinstance(shape, list) else [shape]


def _direction(result: ScanResult, d: int) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Direction d's output (its sequence, or its final h without return_sequences) and final states."""
    output = result.h[d] if result.sequences is None else result.sequences[d]
    return output, tuple(state[d] for state in result.states)


@_constructor
def Sequential(layers: Sequence[Layer], *, name: str | None = None) -> Layer:
    """Layers applied one after another; params are a tuple with one entry per layer.

    A mask (or `lengths`) given to `apply` flows through the layers while their outputs
    keep the time axis, as in Keras.

    Args:
        layers: the jlstm layers, first to last (a list, a tuple or any iterable of them); only
            the last may return several outputs.
        name: the model's name in a summary.

    Returns:
        A `Layer` whose params are a tuple, one entry per layer.
    """
    layers = _checks.items(layers, Layer, "Sequential", "a non-empty list of jlstm layers")
    what = _checks.layer_name(name, "Sequential")

    def check_params(params: Params) -> None:
        if not isinstance(params, (tuple, list)) or len(params) != len(layers):
            got = (
                f"{type(params).__name__} of {len(params)}"
                if isinstance(params, (tuple, list))
                else type(params).__name__
            )
            raise ValueError(f"{what}: expected params as a tuple of {len(layers)}, got {got}")

    def init(rng: jax.Array, input_shape: Shape) -> tuple[OutputShape, Params]:
        keys = jax.random.split(_checks.prng_key(rng, f"{what} init"), len(layers))
        shape: OutputShape = _checks.sequence_shape(input_shape, what)
        params = []
        for i, (layer, key) in enumerate(zip(layers, keys)):
            if isinstance(shape, list):
                raise ValueError(
                    f"{what}: expected only the last layer to return several outputs, got layer {i - 1} "
                    f"({layers[i - 1].type_name}) returning {shape}"
                )
            shape, layer_params = layer.init(key, shape)
            params.append(layer_params)
        return shape, tuple(params)

    def apply(
        params: Params,
        inputs: Any,
        *,
        mask: Any = None,
        lengths: Any = None,
        training: bool = False,
        rng: jax.Array | None = None,
    ) -> Any:
        _checks.training(training, what)
        check_params(params)
        x = _checks.array(inputs, f"{what} inputs")
        if x.ndim != 3:
            raise ValueError(
                f"{what}: expected inputs of rank 3 (batch, timesteps, features), got shape {tuple(x.shape)}"
            )
        mask = _checks.sequence_mask(mask, lengths, x.shape[0], x.shape[1], what)
        keys = layer_keys(rng, len(layers), what)
        for layer, layer_params, key in zip(layers, params, keys):
            x_in = x
            x = layer.apply(layer_params, x, mask=mask, training=training, rng=key)
            mask = next_mask(layer, x_in, x, mask)
        return x

    def weight_rules(params: Params) -> Params:
        check_params(params)
        rules = [_weights.rules(layer, layer_params) for layer, layer_params in zip(layers, params)]
        return rules if isinstance(params, list) else tuple(rules)

    config = {"layers": layers}
    return Layer(init, as_apply_fn(apply), "Sequential", name, config, sublayers=layers, weight_rules=weight_rules)
