"""Layers as pure `(init, apply)` pairs, in the spirit of `jax.example_libraries.stax`.

>>> import jax, jax.numpy as jnp
>>> import jlstm
>>> layer = jlstm.LSTM(5, return_sequences=True)
>>> out_shape, params = layer.init(jax.random.key(0), (None, 11, 3))
>>> out_shape
(None, 11, 5)
>>> layer.apply(params, jnp.ones((2, 11, 3))).shape
(2, 11, 5)
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks, cudnn
from jlstm.activations import Activation, get_activation
from jlstm.initializers import Initializer, get_initializer
from jlstm.scan import lstm_scan

Shape = tuple[int | None, ...]
OutputShape = Shape | list[Shape]
Params = Any


class InitFn(Protocol):
    """`init(rng, input_shape) -> (output_shape, params)`: `input_shape` may hold None (or
    stax's -1) for the batch and the timesteps; nothing is computed beyond the params."""

    def __call__(self, rng: jax.Array, input_shape: Shape) -> tuple[OutputShape, Params]: ...


class ApplyFn(Protocol):
    """`apply(params, inputs, **keywords) -> outputs`, pure. The keywords every layer takes:
    `mask` (bool (B, T), or None), `training` (dropout acts only when True) and `rng` (the
    PRNG key dropout draws from). Recurrent layers and Sequential also take `lengths`
    (int (B,), instead of a mask); recurrent layers take `initial_state` too."""

    def __call__(
        self,
        params: Params,
        inputs: Any,
        *,
        mask: Any = None,
        training: bool = False,
        rng: jax.Array | None = None,
        **keywords: Any,
    ) -> Any: ...


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """A layer: two pure functions, and what a summary needs to name it.

    Iterating a layer yields `(init, apply)`, so that it is a stax layer too:
    `init, apply = jlstm.LSTM(5)`, or `stax.serial(jlstm.LSTM(8), stax.Dense(2))`.
    `config` (the constructor's arguments) is read-only. Layers compare by identity.
    """

    init: InitFn
    apply: ApplyFn
    type_name: str
    name: str | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sublayers: tuple[Layer, ...] = ()
    # (inputs, mask) -> the mask for the next layer; None: kept while outputs keep the time axis.
    compute_mask: Callable[[jax.Array, jax.Array | None], jax.Array | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))


class LSTMSpec(NamedTuple):
    """The static part of an LSTM, hashable so that the jitted scan caches on it."""

    units: int
    activation: Activation
    recurrent_activation: Activation
    use_bias: bool
    unroll: int | bool
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    remat: bool = False
    use_cudnn: str | bool = "auto"
    cudnn_allow_tf32: bool = False


def LSTM(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    use_bias: bool = True,
    unit_forget_bias: bool = True,
    activation: str | Activation = "tanh",
    recurrent_activation: str | Activation = "sigmoid",
    kernel_initializer: str | Initializer = "glorot_uniform",
    recurrent_initializer: str | Initializer = "orthogonal",
    bias_initializer: str | Initializer = "zeros",
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: int | bool = 1,
    remat: bool = False,
    use_cudnn: str | bool = "auto",
    cudnn_allow_tf32: bool = False,
    name: str | None = None,
) -> Layer:
    """A Keras 3 LSTM layer over (batch, timesteps, features) inputs.

    Params are Keras's tree `{"kernel": (F, 4U), "recurrent_kernel": (U, 4U), "bias": (4U,)}`
    with gates in Keras's order i, f, c, o. `apply` takes `mask` (bool (B, T)) or
    `lengths` (int (B,)), and `initial_state` `(h, c)`; with `return_state` it returns
    `(outputs, h, c)`. `unroll` is `lax.scan`'s unroll factor (True unrolls fully).

    `dropout` and `recurrent_dropout` act only in `apply(..., training=True, rng=key)`,
    with one mask per sequence reused at every step, as Keras 3 draws them (per gate
    when recurrent_dropout is on). `remat=True` trades compute for memory in training:
    the backward pass recomputes chunks of about sqrt(T) steps instead of storing every
    step's gates (a T=10000 step takes about a quarter of the memory: bench/RESULTS.md).

    `use_cudnn` is Keras 3's: on a GPU, "auto" runs cuDNN where the call qualifies and the
    scan elsewhere (same results), True raises where cuDNN cannot run, False always scans;
    cuDNN computes in full float32 unless `cudnn_allow_tf32` (see `jlstm.cudnn`).

    Args:
        units: the size U of the state and the output.
        return_sequences: return every step's output (B, T, U), not only the last (B, U).
        return_state: also return the final `h` and `c`.
        go_backwards: read the time axis backwards (the sequence comes back in that order).
        use_bias: add a bias (4U,) to the gates.
        unit_forget_bias: initialize the forget gate's bias to 1.
        activation: the cell and output activation, a Keras name or a callable.
        recurrent_activation: the gates' activation, a Keras name or a callable.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras names or callables
            `(key, shape, dtype) -> array`.
        dropout: the fraction of the inputs dropped in training.
        recurrent_dropout: the fraction of the state dropped in training.
        unroll: `lax.scan`'s unroll factor; True unrolls fully.
        remat: recompute chunks of steps in the backward pass to save memory.
        use_cudnn: "auto", True or False: whether a GPU call may run through cuDNN.
        cudnn_allow_tf32: let cuDNN compute in TF32.
        name: the layer's name in a summary.

    Returns:
        A `Layer`: `init(rng, input_shape)` and `apply(params, inputs, *, mask=None,
        lengths=None, initial_state=None, training=False, rng=None)`.
    """
    config = dict(locals())
    spec = lstm_spec(config)
    what = f"LSTM {name or ''}".rstrip()
    init_kernel = get_initializer(kernel_initializer, f"{what} kernel_initializer")
    init_recurrent = get_initializer(recurrent_initializer, f"{what} recurrent_initializer")
    init_bias = get_initializer(bias_initializer, f"{what} bias_initializer")
    u = spec.units

    def init(rng: jax.Array, input_shape: Shape) -> tuple[OutputShape, Params]:
        batch, timesteps, features = _checks.sequence_shape(input_shape, what)
        k_kernel, k_recurrent, k_bias = jax.random.split(rng, 3)
        params = {
            "kernel": init_kernel(k_kernel, (features, 4 * u), jnp.float32),
            "recurrent_kernel": init_recurrent(k_recurrent, (u, 4 * u), jnp.float32),
        }
        if spec.use_bias:
            params["bias"] = _lstm_bias(init_bias, k_bias, u, unit_forget_bias)
        out = (batch, timesteps, u) if return_sequences else (batch, u)
        if return_state:
            return [out, (batch, u), (batch, u)], params
        return out, params

    # one dispatch for the whole layer once the inputs are checked
    @functools.partial(jax.jit, static_argnames="routes")
    def compute(params, x, mask, h0, c0, key, routes=("scan",)):
        result = cudnn.run_lstm_directions(
            spec,
            [params],
            x,
            mask,
            h0,
            c0,
            reverse=(go_backwards,),
            return_sequences=return_sequences,
            zero_output_for_mask=False,
            dropout_rng=key,
            route=routes[0],
            what=what,
        )
        out = result.sequences[0] if return_sequences else result.h[0]
        return (out, result.h[0], result.c[0]) if return_state else out

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
        x, mask, (h0, c0) = prepare_lstm_call([(spec, params)], inputs, mask, lengths, initial_state, what)
        key = dropout_rng(spec, training, rng, what)
        routes = cudnn.plan([spec], x, mask, key is not None, what)
        return compute(params, x, mask, h0, c0, key, routes)

    return Layer(init, apply, "LSTM", name, config)


def lstm_spec(config: Mapping[str, Any]) -> LSTMSpec:
    """The checked static spec of an LSTM from its constructor arguments."""
    return LSTMSpec(
        units=_checks.positive_int(config["units"], "LSTM units"),
        activation=get_activation(config["activation"], "LSTM activation"),
        recurrent_activation=get_activation(config["recurrent_activation"], "LSTM recurrent_activation"),
        use_bias=bool(config["use_bias"]),
        unroll=_checks.unroll_factor(config["unroll"]),
        dropout=_checks.rate(config["dropout"], "LSTM dropout"),
        recurrent_dropout=_checks.rate(config["recurrent_dropout"], "LSTM recurrent_dropout"),
        remat=bool(config["remat"]),
        use_cudnn=cudnn.check_use_cudnn(config.get("use_cudnn", "auto"), "LSTM"),
        cudnn_allow_tf32=_checks.flag(config.get("cudnn_allow_tf32", False), "LSTM cudnn_allow_tf32"),
    )


def dropout_rng(spec: LSTMSpec, training: bool, rng: jax.Array | None, what: str) -> jax.Array | None:
    """The key to draw dropout masks with, or None when no dropout applies to this call."""
    if not training or not (spec.dropout or spec.recurrent_dropout):
        return None
    if rng is None:
        raise ValueError(f"{what}: expected rng=<PRNG key> with training=True (dropout is on), got None")
    return _checks.prng_key(rng, what)


def dropout_masks(
    spec: LSTMSpec, rng: jax.Array, batch: int, features: int, dtype: Any
) -> tuple[jax.Array | None, jax.Array | None]:
    """One direction's scaled dropout masks, as Keras 3 draws them: input (G, B, F) with
    G = 4 per-gate masks when recurrent dropout is on (else 1), and recurrent (4, B, U)."""
    k_input, k_recurrent = jax.random.split(rng)
    gates = 4 if spec.recurrent_dropout else 1
    input_masks = recurrent_masks = None
    if spec.dropout:
        input_masks = _scaled_keep(k_input, spec.dropout, (gates, batch, features), dtype)
    if spec.recurrent_dropout:
        recurrent_masks = _scaled_keep(k_recurrent, spec.recurrent_dropout, (4, batch, spec.units), dtype)
    return input_masks, recurrent_masks


def _scaled_keep(key: jax.Array, rate: float, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def _lstm_bias(init_bias: Initializer, key: jax.Array, units: int, unit_forget_bias: bool) -> jax.Array:
    if not unit_forget_bias:
        return init_bias(key, (4 * units,), jnp.float32)
    k_i, k_co = jax.random.split(key)
    return jnp.concatenate(
        [
            init_bias(k_i, (units,), jnp.float32),
            jnp.ones((units,), jnp.float32),
            init_bias(k_co, (2 * units,), jnp.float32),
        ]
    )


def lstm_param_shapes(spec: LSTMSpec, features: int | None) -> dict[str, Shape]:
    shapes = {"kernel": (features, 4 * spec.units), "recurrent_kernel": (spec.units, 4 * spec.units)}
    if spec.use_bias:
        shapes["bias"] = (4 * spec.units,)
    return shapes


def prepare_lstm_call(
    directions: Sequence[tuple[LSTMSpec, Params]],
    inputs: Any,
    mask: Any,
    lengths: Any,
    initial_state: Any,
    what: str,
) -> tuple[jax.Array, jax.Array | None, tuple[list[jax.Array], list[jax.Array]]]:
    """Checks params, inputs, mask and initial state of an LSTM call with one or more
    directions; returns the inputs, the bool mask and per-direction (h0s, c0s) or Nones."""
    first_spec, first_params = directions[0]
    _checks.param_tree(first_params, lstm_param_shapes(first_spec, None), what)
    features = first_params["kernel"].shape[0]
    for spec, params in directions[1:]:
        _checks.param_tree(params, lstm_param_shapes(spec, features), what)
    x = _checks.sequence_input(inputs, features, first_params["kernel"].dtype, what)
    batch, timesteps, _ = x.shape
    mask = _checks.sequence_mask(mask, lengths, batch, timesteps, what)
    units = [spec.units for spec, _ in directions]
    if initial_state is None:
        return x, mask, (None, None)  # zeros, made inside the jitted scan
    flat = _checks.states(initial_state, 2 * len(units), batch, [u for u in units for _ in (0, 1)], x.dtype, what)
    h0s, c0s = flat[0::2], flat[1::2]
    return x, mask, (h0s, c0s)


def run_lstm_directions(
    spec: LSTMSpec,
    params: Sequence[Params],
    x: jax.Array,
    mask: jax.Array | None,
    h0s: Sequence[jax.Array] | None,
    c0s: Sequence[jax.Array] | None,
    *,
    reverse: tuple[bool, ...],
    return_sequences: bool,
    zero_output_for_mask: bool,
    dropout_rng: jax.Array | None = None,
):
    """Runs the directions' params in one scan (they share `spec`)."""
    input_dropout = recurrent_dropout = None
    if dropout_rng is not None:
        batch, _, features = x.shape
        keys = jax.random.split(dropout_rng, len(params))
        masks = [dropout_masks(spec, key, batch, features, x.dtype) for key in keys]
        input_dropout = tuple(m[0] for m in masks) if spec.dropout else None
        recurrent_dropout = tuple(m[1] for m in masks) if spec.recurrent_dropout else None
    return lstm_scan(
        x,
        tuple(p["kernel"] for p in params),
        tuple(p["recurrent_kernel"] for p in params),
        tuple(p["bias"] for p in params) if spec.use_bias else None,
        None if h0s is None else tuple(zip(h0s, c0s)),
        mask,
        input_dropout,
        recurrent_dropout,
        reverse=reverse,
        activation=spec.activation,
        recurrent_activation=spec.recurrent_activation,
        return_sequences=return_sequences,
        zero_output_for_mask=zero_output_for_mask,
        unroll=spec.unroll,
        remat=spec.remat,
    )


def Dense(
    units: int,
    activation: str | Activation | None = None,
    *,
    use_bias: bool = True,
    kernel_initializer: str | Initializer = "glorot_uniform",
    bias_initializer: str | Initializer = "zeros",
    name: str | None = None,
) -> Layer:
    """A Keras Dense layer on the last axis: `activation(x @ kernel + bias)`.

    A mask passed to `apply` is ignored here; `Sequential` carries it past this layer.
    """
    config = dict(locals())
    units = _checks.positive_int(units, "Dense units")
    what = f"Dense {name or ''}".rstrip()
    act = get_activation(activation, f"{what} activation")
    init_kernel = get_initializer(kernel_initializer, f"{what} kernel_initializer")
    init_bias = get_initializer(bias_initializer, f"{what} bias_initializer")

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        shape = _checks.shape_tuple(input_shape, what)
        if len(shape) < 2:
            raise ValueError(f"{what}: expected input_shape of rank >= 2, got {shape}")
        features = _checks.positive_int(shape[-1], f"{what}: input_shape features in {shape}")
        k_kernel, k_bias = jax.random.split(rng)
        params = {"kernel": init_kernel(k_kernel, (features, units), jnp.float32)}
        if use_bias:
            params["bias"] = init_bias(k_bias, (units,), jnp.float32)
        return shape[:-1] + (units,), params

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask, training, rng
        expected = {"kernel": (None, units)} | ({"bias": (units,)} if use_bias else {})
        _checks.param_tree(params, expected, what)
        features = params["kernel"].shape[0]
        x = _checks.array(inputs, f"{what} inputs")
        if x.ndim < 2 or x.shape[-1] != features:
            raise ValueError(f"{what}: expected inputs of shape (..., {features}), got {tuple(x.shape)}")
        y = x.astype(params["kernel"].dtype) @ params["kernel"]
        if use_bias:
            y = y + params["bias"]
        return act(y)

    return Layer(init, apply, "Dense", name, config)


def Dropout(rate: float, *, name: str | None = None) -> Layer:
    """Keras's Dropout: zeroes a `rate` fraction of inputs and scales the rest by
    1 / (1 - rate), only in `apply(..., training=True, rng=key)`."""
    rate = _checks.rate(rate, "Dropout rate")
    what = f"Dropout {name or ''}".rstrip()

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        del rng
        return _checks.shape_tuple(input_shape, what), {}

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask
        _checks.param_tree(params, {}, what)
        x = _checks.array(inputs, f"{what} inputs")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        if not training or rate == 0.0:
            return x
        if rng is None:
            raise ValueError(f"{what}: expected rng=<PRNG key> with training=True, got None")
        return x * _scaled_keep(_checks.prng_key(rng, what), rate, x.shape, x.dtype)

    return Layer(init, apply, "Dropout", name, {"rate": rate})


def Masking(mask_value: float = 0.0, *, name: str | None = None) -> Layer:
    """Keras's Masking: a timestep whose features all equal `mask_value` is masked for the
    layers after it (inside `Sequential`), and its features are set to 0."""
    what = f"Masking {name or ''}".rstrip()
    if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a number as mask_value, got {mask_value!r}")

    def timestep_mask(inputs: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        del mask  # Keras's Masking replaces any incoming mask
        return jnp.any(jnp.asarray(inputs) != mask_value, axis=-1)

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        del rng
        return _checks.sequence_shape(input_shape, what), {}

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask, training, rng
        _checks.param_tree(params, {}, what)
        x = _checks.array(inputs, f"{what} inputs")
        if x.ndim != 3:
            raise ValueError(
                f"{what}: expected inputs of rank 3 (batch, timesteps, features), got shape {tuple(x.shape)}"
            )
        return jnp.where(timestep_mask(x)[..., None], x, 0).astype(x.dtype)

    return Layer(init, apply, "Masking", name, {"mask_value": mask_value}, compute_mask=timestep_mask)
