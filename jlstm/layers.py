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
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import jax
import jax.numpy as jnp

from jlstm import _checks, _recurrent, _weights, cudnn, precision, tuning
from jlstm.activations import Activation, get_activation
from jlstm.cell import Cell, gru_cell, lstm_cell, param_shapes, simple_rnn_cell
from jlstm.constraints import Constraint, get_constraint
from jlstm.initializers import Initializer, get_initializer
from jlstm.regularizers import Regularizer, get_regularizer

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
    (int (B,), instead of a mask); recurrent layers take `initial_state` too.

    `lengths` must lie in [0, T]; concrete ones out of range are a ValueError at the call.
    Traced ones (under `jax.jit`) cannot be read there: out of range, they act as clamped
    to [0, T]. To have traced lengths checked, run the call under
    `jax.experimental.checkify.checkify(f, errors=checkify.user_checks)` (or `all_checks`):
    its error then names the lengths. An int mask must hold 0s and 1s, checked alike."""

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


def as_apply_fn(apply: Callable[..., Any]) -> ApplyFn:
    """A layer's apply function as an `ApplyFn`. The protocol lets callers pass the keywords
    that only some layers take (`lengths`, `initial_state`); each function takes its own and
    raises a TypeError on any other, which a structural type cannot say."""
    return cast(ApplyFn, apply)


_F = TypeVar("_F", bound=Callable[..., "Layer"])
# Each layer constructor's defaults by type name, for Layer's repr (filled by `_constructor`).
_DEFAULTS: dict[str, dict[str, Any]] = {}


def _constructor(fn: _F) -> _F:
    """Records a layer constructor's defaults, so that a layer's repr shows only what differs."""
    params = inspect.signature(fn).parameters.values()
    _DEFAULTS[fn.__name__] = {p.name: p.default for p in params if p.default is not p.empty}
    return fn


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and any(isinstance(v, Layer) for v in value):
        return "[" + ", ".join(map(repr, value)) + "]"
    if callable(value) and hasattr(value, "__name__"):  # an activation or initializer function
        return value.__name__
    return repr(value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Layer:
    """A layer: two pure functions, and what a summary needs to name it.

    Iterating a layer yields `(init, apply)`, so that it is a stax layer too:
    `init, apply = jlstm.LSTM(5)`, or `stax.serial(jlstm.LSTM(8), stax.Dense(2))`.
    `config` (the constructor's arguments) is read-only. Layers compare by identity.

    Args:
        init: `init(rng, input_shape) -> (output_shape, params)` (`InitFn`).
        apply: `apply(params, inputs, **keywords) -> outputs` (`ApplyFn`).
        type_name: the type a summary shows ("LSTM", "Dense", ...); Keras's default names
            (`lstm_1`) derive from it.
        name: the layer's name in a summary, or None for a default one.
        config: the constructor's arguments.
        sublayers: the layers inside this one, for a summary to name.
        compute_mask: `(inputs, mask) -> mask` for the layer after this one in a
            `Sequential`, or None: the mask is kept while outputs keep the time axis.
        spec: a recurrent layer's static spec, for `Bidirectional`; else None.
        weight_rules: `params -> tree` of the params' structure holding each param's
            regularizer and constraint (for `jlstm.regularization_loss` and
            `jlstm.apply_constraints`), or None: the layer has none.
    """

    init: InitFn
    apply: ApplyFn
    type_name: str
    name: str | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sublayers: tuple[Layer, ...] = ()
    # (inputs, mask) -> the mask for the next layer; None: kept while outputs keep the time axis.
    compute_mask: Callable[[jax.Array, jax.Array | None], jax.Array | None] | None = None
    # A recurrent layer's static spec (its cell, units, ...), for Bidirectional; else None.
    spec: Any = None
    # params -> each param's _weights.WeightRule (regularizer, constraint), in the params'
    # structure; None: the layer has none.
    weight_rules: Callable[[Params], Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))

    @property
    def dtype_policy(self) -> precision.DTypePolicy | None:
        """The layer's `jlstm.precision.DTypePolicy` (a Bidirectional's is its layer's); None
        for a layer without one (Sequential, Dropout, Masking)."""
        if "dtype" in self.config:
            return precision.dtype_policy(self.config["dtype"], self.config.get("param_dtype"))
        inner = self.config.get("layer")
        return inner.dtype_policy if isinstance(inner, Layer) else None

    def __repr__(self) -> str:
        """Keras-like and short: the constructor's arguments that differ from its defaults,
        `LSTM(units=5, return_sequences=True)`."""
        defaults = _DEFAULTS.get(self.type_name, {})
        shown = {k: v for k, v in self.config.items() if k not in defaults or not _same(v, defaults[k])}
        return f"{self.type_name}(" + ", ".join(f"{k}={_short(v)}" for k, v in shown.items()) + ")"


def _same(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


@_constructor
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
    kernel_regularizer: str | Regularizer | None = None,
    recurrent_regularizer: str | Regularizer | None = None,
    bias_regularizer: str | Regularizer | None = None,
    kernel_constraint: str | Constraint | None = None,
    recurrent_constraint: str | Constraint | None = None,
    bias_constraint: str | Constraint | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: int | bool = 1,
    remat: bool = False,
    use_cudnn: str | bool = "auto",
    cudnn_allow_tf32: bool = False,
    zero_output_for_mask: bool = False,
    dtype: Any = None,
    param_dtype: Any = None,
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
        kernel_initializer: the kernel's initializer, a Keras name or a callable
            `(key, shape, dtype) -> array`.
        recurrent_initializer: the recurrent kernel's initializer, as `kernel_initializer`.
        bias_initializer: the bias's initializer, as `kernel_initializer`.
        kernel_regularizer: the kernel's penalty in training, a Keras name ("l1", "l2",
            "l1l2") or a callable `(array) -> scalar` (`jlstm.regularizers`), or None.
        recurrent_regularizer: the recurrent kernel's, as `kernel_regularizer`.
        bias_regularizer: the bias's, as `kernel_regularizer`.
        kernel_constraint: the kernel's projection after each training update, a Keras
            name ("max_norm", "non_neg", ...) or a callable `(array) -> array`
            (`jlstm.constraints`), or None.
        recurrent_constraint: the recurrent kernel's, as `kernel_constraint`.
        bias_constraint: the bias's, as `kernel_constraint`.
        dropout: the fraction of the inputs dropped in training.
        recurrent_dropout: the fraction of the state dropped in training.
        unroll: `lax.scan`'s unroll factor; True unrolls fully.
        remat: recompute chunks of steps in the backward pass to save memory.
        use_cudnn: "auto", True or False: whether a GPU call may run through cuDNN.
        cudnn_allow_tf32: let cuDNN compute in TF32.
        zero_output_for_mask: Keras's: at a masked step the output is zeros, not the
            previous output (the states still carry over it); without `return_sequences`
            the output is zeros where the last step read is masked, as Keras returns it.
        dtype: a Keras dtype policy name ("float32", "bfloat16", "float16",
            "mixed_bfloat16", "mixed_float16") or a float dtype; see `jlstm.precision`.
            None: float32 params, computing in the params' dtype.
        param_dtype: the params' dtype, Flax's way (`dtype` is then the compute dtype).
        name: the layer's name in a summary.

    Returns:
        A `Layer`: `init(rng, input_shape)` and `apply(params, inputs, *, mask=None,
        lengths=None, initial_state=None, training=False, rng=None)`.
    """
    config = dict(locals())
    what = _what("LSTM", name)
    _checks.flag(unit_forget_bias, f"{what} unit_forget_bias")
    cell = lstm_cell(
        get_activation(activation, f"{what} activation"),
        get_activation(recurrent_activation, f"{what} recurrent_activation"),
    )
    return _recurrent_layer("LSTM", cell, config)


def _what(type_name: str, name: str | None) -> str:
    return _checks.layer_name(name, type_name)


def _recurrent_layer(type_name: str, cell: Cell, config: dict[str, Any], *, per_gate_dropout: bool = True) -> Layer:
    """A recurrent layer of `cell` from its Keras constructor arguments `config`: what LSTM,
    GRU and SimpleRNN share (params, output shapes, the call, dropout, cuDNN routing)."""
    what = _what(type_name, config["name"])
    spec = _recurrent.spec(cell, config, what, per_gate_dropout=per_gate_dropout)
    init_kernel = get_initializer(config["kernel_initializer"], f"{what} kernel_initializer")
    init_recurrent = get_initializer(config["recurrent_initializer"], f"{what} recurrent_initializer")
    init_bias = get_initializer(config["bias_initializer"], f"{what} bias_initializer")
    return_sequences = _checks.flag(config["return_sequences"], f"{what} return_sequences")
    return_state = _checks.flag(config["return_state"], f"{what} return_state")
    go_backwards = _checks.flag(config["go_backwards"], f"{what} go_backwards")
    zero_output_for_mask = _checks.flag(config["zero_output_for_mask"], f"{what} zero_output_for_mask")
    u = spec.units
    drawn = precision.draw_dtype(spec.policy)

    def init(rng: jax.Array, input_shape: Shape) -> tuple[OutputShape, Params]:
        rng = _checks.prng_key(rng, f"{what} init")
        batch, timesteps, features = _checks.sequence_shape(input_shape, what)
        shapes = param_shapes(cell, features, u, spec.use_bias)
        k_kernel, k_recurrent, k_bias = jax.random.split(rng, 3)
        params = {
            "kernel": init_kernel(k_kernel, shapes["kernel"], drawn),
            "recurrent_kernel": init_recurrent(k_recurrent, shapes["recurrent_kernel"], drawn),
        }
        if spec.use_bias:
            params["bias"] = _bias(init_bias, k_bias, shapes["bias"], config.get("unit_forget_bias", False), u, drawn)
        params = _as_variables(params, spec.policy)
        out: Shape = (batch, timesteps, u) if return_sequences else (batch, u)
        if return_state:
            states: list[Shape] = [(batch, u)] * cell.state_size
            return [out, *states], params
        return out, params

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
        x, mask, states = _recurrent.prepare_call([(spec, params)], inputs, mask, lengths, initial_state, what)
        key = _recurrent.dropout_rng(spec, training, rng, what)
        routes = cudnn.plan([spec], x, mask, key is not None, what)
        statics = _RecurrentStatics(
            spec,
            go_backwards,
            return_sequences,
            return_state,
            zero_output_for_mask,
            routes,
            what,
            tuning.settings_key(),
        )
        return _recurrent_compute(params, x, mask, states, key, statics)

    names = ("kernel", "recurrent_kernel", "bias") if spec.use_bias else ("kernel", "recurrent_kernel")
    rules = _weight_rules(config, names, what)
    return Layer(init, as_apply_fn(apply), type_name, config["name"], config, spec=spec, weight_rules=rules)


# A param's name -> the prefix of its constructor arguments (Keras's `recurrent_regularizer`
# is the recurrent kernel's).
_RULE_PREFIX = {"kernel": "kernel", "recurrent_kernel": "recurrent", "bias": "bias"}


def _weight_rules(config: Mapping[str, Any], names: tuple[str, ...], what: str) -> Callable[[Params], Any]:
    """The layer's `weight_rules`: its params `names`' regularizers and constraints, from its
    constructor arguments `<prefix>_regularizer` and `<prefix>_constraint` (checked here)."""
    rules = {}
    for param in names:
        arg = f"{what} {_RULE_PREFIX[param]}"
        regularizer = get_regularizer(config[f"{_RULE_PREFIX[param]}_regularizer"], f"{arg}_regularizer")
        constraint = get_constraint(config[f"{_RULE_PREFIX[param]}_constraint"], f"{arg}_constraint")
        rules[param] = _weights.WeightRule(regularizer, constraint, arg)

    def weight_rules(params: Params) -> Any:
        _checks.param_keys(params, names, what)
        return {key: rules[key] for key in params}

    return weight_rules


class _RecurrentStatics(NamedTuple):
    """What a recurrent layer's call compiles for, the jit's static key."""

    spec: _recurrent.RecurrentSpec
    go_backwards: bool
    return_sequences: bool
    return_state: bool
    zero_output_for_mask: bool
    routes: tuple[str, ...]
    what: str
    settings: tuple[Any, ...]  # tuning.settings_key(): the forms the scan's trace takes


# One dispatch for the whole call once its inputs are checked, jitted at module level with the
# layer's static description as the key: two layers alike share one compile (a function jitted
# inside each layer recompiled for every new layer object, even an identical one).
@functools.partial(jax.jit, static_argnums=5)
def _recurrent_compute(
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    states: _recurrent.States,
    key: jax.Array | None,
    statics: _RecurrentStatics,
) -> Any:
    result = cudnn.run_directions(
        statics.spec,
        [params],
        x,
        mask,
        states,
        reverse=(statics.go_backwards,),
        return_sequences=statics.return_sequences,
        zero_output_for_mask=statics.zero_output_for_mask,
        dropout_rng=key,
        route=statics.routes[0],
        what=statics.what,
    )
    out = _last_output(result.h[0], mask, statics) if result.sequences is None else result.sequences[0]
    return (out, *(s[0] for s in result.states)) if statics.return_state else out


def _last_output(h: jax.Array, mask: jax.Array | None, statics: _RecurrentStatics) -> jax.Array:
    """The output without return_sequences: the final h, or, with zero_output_for_mask, zeros
    in the rows whose last step read is masked (Keras 3 returns its zeroed sequence's last step)."""
    if mask is None or not statics.zero_output_for_mask:
        return h
    last = mask[:, 0] if statics.go_backwards else mask[:, -1]
    return jnp.where(last[:, None], h, jnp.zeros_like(h))


def _as_variables(params: dict[str, jax.Array], policy: precision.DTypePolicy) -> dict[str, jax.Array]:
    """Drawn params cast to the policy's variable dtype."""
    return {k: v.astype(policy.variable_dtype) for k, v in params.items()}


def _bias(
    init_bias: Initializer,
    key: jax.Array,
    shape: tuple[int, ...],
    unit_forget_bias: bool,
    units: int,
    dtype: Any,
) -> jax.Array:
    if not unit_forget_bias:
        return init_bias(key, shape, dtype)
    # Keras's LSTM: the forget gate's block (the second) starts at 1.
    k_i, k_co = jax.random.split(key)
    return jnp.concatenate(
        [init_bias(k_i, (units,), dtype), jnp.ones((units,), dtype), init_bias(k_co, (2 * units,), dtype)]
    )


@_constructor
def GRU(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    use_bias: bool = True,
    reset_after: bool = True,
    activation: str | Activation = "tanh",
    recurrent_activation: str | Activation = "sigmoid",
    kernel_initializer: str | Initializer = "glorot_uniform",
    recurrent_initializer: str | Initializer = "orthogonal",
    bias_initializer: str | Initializer = "zeros",
    kernel_regularizer: str | Regularizer | None = None,
    recurrent_regularizer: str | Regularizer | None = None,
    bias_regularizer: str | Regularizer | None = None,
    kernel_constraint: str | Constraint | None = None,
    recurrent_constraint: str | Constraint | None = None,
    bias_constraint: str | Constraint | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: int | bool = 1,
    remat: bool = False,
    use_cudnn: str | bool = "auto",
    zero_output_for_mask: bool = False,
    dtype: Any = None,
    param_dtype: Any = None,
    name: str | None = None,
) -> Layer:
    """A Keras 3 GRU layer over (batch, timesteps, features) inputs.

    Params are Keras's tree `{"kernel": (F, 3U), "recurrent_kernel": (U, 3U), "bias": (2, 3U)}`
    with gates in Keras's order z (update), r (reset), h (candidate). With `reset_after`
    (Keras 3's default, and cuDNN's and PyTorch's form) the bias's two rows are the input
    and the recurrent bias, and the reset gate multiplies the candidate's recurrent
    projection; without it the bias is (3U,) and the reset gate multiplies h before that
    projection. `apply` takes `mask` (bool (B, T)) or `lengths` (int (B,)), and
    `initial_state` as `h` or `(h,)`; with `return_state` it returns `(outputs, h)`.

    Args:
        units: the size U of the state and the output.
        return_sequences: return every step's output (B, T, U), not only the last (B, U).
        return_state: also return the final `h`.
        go_backwards: read the time axis backwards (the sequence comes back in that order).
        use_bias: add biases to the gates.
        reset_after: apply the reset gate after the recurrent projection (True, Keras 3's
            default) or before it (False, the original GRU).
        activation: the candidate's activation, a Keras name or a callable.
        recurrent_activation: the update and reset gates' activation.
        kernel_initializer: the kernel's initializer, a Keras name or a callable
            `(key, shape, dtype) -> array`.
        recurrent_initializer: the recurrent kernel's initializer, as `kernel_initializer`.
        bias_initializer: the bias's initializer, as `kernel_initializer`.
        kernel_regularizer: the kernel's penalty in training, a Keras name ("l1", "l2",
            "l1l2") or a callable `(array) -> scalar` (`jlstm.regularizers`), or None.
        recurrent_regularizer: the recurrent kernel's, as `kernel_regularizer`.
        bias_regularizer: the bias's, as `kernel_regularizer`.
        kernel_constraint: the kernel's projection after each training update, a Keras
            name ("max_norm", "non_neg", ...) or a callable `(array) -> array`
            (`jlstm.constraints`), or None.
        recurrent_constraint: the recurrent kernel's, as `kernel_constraint`.
        bias_constraint: the bias's, as `kernel_constraint`.
        dropout: the fraction of the inputs dropped in training.
        recurrent_dropout: the fraction of the state dropped in training.
        unroll: `lax.scan`'s unroll factor; True unrolls fully.
        remat: recompute chunks of steps in the backward pass to save memory.
        use_cudnn: Keras 3's argument: "auto" and False run the scan (jax.experimental.rnn
            has no cuDNN GRU); True raises, saying so.
        zero_output_for_mask: Keras's: at a masked step the output is zeros, not the
            previous output (the states still carry over it); without `return_sequences`
            the output is zeros where the last step read is masked, as Keras returns it.
        dtype: a Keras dtype policy name ("float32", "bfloat16", "float16",
            "mixed_bfloat16", "mixed_float16") or a float dtype; see `jlstm.precision`.
            None: float32 params, computing in the params' dtype.
        param_dtype: the params' dtype, Flax's way (`dtype` is then the compute dtype).
        name: the layer's name in a summary.

    Returns:
        A `Layer`: `init(rng, input_shape)` and `apply(params, inputs, *, mask=None,
        lengths=None, initial_state=None, training=False, rng=None)`.
    """
    config = dict(locals())
    what = _what("GRU", name)
    cell = gru_cell(
        get_activation(activation, f"{what} activation"),
        get_activation(recurrent_activation, f"{what} recurrent_activation"),
        _checks.flag(reset_after, f"{what} reset_after"),
    )
    return _recurrent_layer("GRU", cell, config)


@_constructor
def SimpleRNN(
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    use_bias: bool = True,
    activation: str | Activation = "tanh",
    kernel_initializer: str | Initializer = "glorot_uniform",
    recurrent_initializer: str | Initializer = "orthogonal",
    bias_initializer: str | Initializer = "zeros",
    kernel_regularizer: str | Regularizer | None = None,
    recurrent_regularizer: str | Regularizer | None = None,
    bias_regularizer: str | Regularizer | None = None,
    kernel_constraint: str | Constraint | None = None,
    recurrent_constraint: str | Constraint | None = None,
    bias_constraint: str | Constraint | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: int | bool = 1,
    remat: bool = False,
    zero_output_for_mask: bool = False,
    dtype: Any = None,
    param_dtype: Any = None,
    name: str | None = None,
) -> Layer:
    """A Keras 3 SimpleRNN layer: `h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)`.

    Params are Keras's tree `{"kernel": (F, U), "recurrent_kernel": (U, U), "bias": (U,)}`.
    `apply` takes `mask` (bool (B, T)) or `lengths` (int (B,)), and `initial_state` as `h`
    or `(h,)`; with `return_state` it returns `(outputs, h)`.

    Args:
        units: the size U of the state and the output.
        return_sequences: return every step's output (B, T, U), not only the last (B, U).
        return_state: also return the final `h`.
        go_backwards: read the time axis backwards (the sequence comes back in that order).
        use_bias: add a bias (U,).
        activation: a Keras name or a callable.
        kernel_initializer: the kernel's initializer, a Keras name or a callable
            `(key, shape, dtype) -> array`.
        recurrent_initializer: the recurrent kernel's initializer, as `kernel_initializer`.
        bias_initializer: the bias's initializer, as `kernel_initializer`.
        kernel_regularizer: the kernel's penalty in training, a Keras name ("l1", "l2",
            "l1l2") or a callable `(array) -> scalar` (`jlstm.regularizers`), or None.
        recurrent_regularizer: the recurrent kernel's, as `kernel_regularizer`.
        bias_regularizer: the bias's, as `kernel_regularizer`.
        kernel_constraint: the kernel's projection after each training update, a Keras
            name ("max_norm", "non_neg", ...) or a callable `(array) -> array`
            (`jlstm.constraints`), or None.
        recurrent_constraint: the recurrent kernel's, as `kernel_constraint`.
        bias_constraint: the bias's, as `kernel_constraint`.
        dropout: the fraction of the inputs dropped in training.
        recurrent_dropout: the fraction of the state dropped in training.
        unroll: `lax.scan`'s unroll factor; True unrolls fully.
        remat: recompute chunks of steps in the backward pass to save memory.
        zero_output_for_mask: Keras's: at a masked step the output is zeros, not the
            previous output (the states still carry over it); without `return_sequences`
            the output is zeros where the last step read is masked, as Keras returns it.
        dtype: a Keras dtype policy name ("float32", "bfloat16", "float16",
            "mixed_bfloat16", "mixed_float16") or a float dtype; see `jlstm.precision`.
            None: float32 params, computing in the params' dtype.
        param_dtype: the params' dtype, Flax's way (`dtype` is then the compute dtype).
        name: the layer's name in a summary.

    Returns:
        A `Layer`: `init(rng, input_shape)` and `apply(params, inputs, *, mask=None,
        lengths=None, initial_state=None, training=False, rng=None)`.
    """
    config = dict(locals())
    cell = simple_rnn_cell(get_activation(activation, f"{_what('SimpleRNN', name)} activation"))
    return _recurrent_layer("SimpleRNN", cell, config, per_gate_dropout=False)


# The recurrent layers by type name: what Bidirectional wraps, and rebuilds reading backwards.
RECURRENT: dict[str, Callable[..., Layer]] = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}


@_constructor
def Dense(
    units: int,
    activation: str | Activation | None = None,
    *,
    use_bias: bool = True,
    dtype: Any = None,
    param_dtype: Any = None,
    kernel_initializer: str | Initializer = "glorot_uniform",
    bias_initializer: str | Initializer = "zeros",
    kernel_regularizer: str | Regularizer | None = None,
    bias_regularizer: str | Regularizer | None = None,
    kernel_constraint: str | Constraint | None = None,
    bias_constraint: str | Constraint | None = None,
    name: str | None = None,
) -> Layer:
    """A Keras Dense layer on the last axis: `activation(x @ kernel + bias)`.

    A mask passed to `apply` is ignored here; `Sequential` carries it past this layer.

    Args:
        units: the size of the output's last axis.
        activation: a Keras name, a callable, or None for linear.
        use_bias: add a bias (units,).
        dtype: a Keras dtype policy name or a float dtype, as the recurrent layers take it
            (`jlstm.precision`); None: float32 params, computing in the params' dtype.
        param_dtype: the params' dtype, Flax's way (`dtype` is then the compute dtype).
        kernel_initializer: the kernel's initializer, a Keras name or a callable
            `(key, shape, dtype) -> array`.
        bias_initializer: the bias's initializer, as `kernel_initializer`.
        kernel_regularizer: the kernel's penalty in training, a Keras name ("l1", "l2",
            "l1l2") or a callable `(array) -> scalar` (`jlstm.regularizers`), or None.
        bias_regularizer: the bias's, as `kernel_regularizer`.
        kernel_constraint: the kernel's projection after each training update, a Keras
            name ("max_norm", "non_neg", ...) or a callable `(array) -> array`
            (`jlstm.constraints`), or None.
        bias_constraint: the bias's, as `kernel_constraint`.
        name: the layer's name in a summary.

    Returns:
        A `Layer` with params `{"kernel": (features, units), "bias": (units,)}`:
        `apply(params, inputs, *, mask=None, training=False, rng=None)` on inputs (..., features).
    """
    config = dict(locals())
    units = _checks.positive_int(units, "Dense units")
    what = _what("Dense", name)
    use_bias = _checks.flag(use_bias, f"{what} use_bias")
    act = get_activation(activation, f"{what} activation")
    init_kernel = get_initializer(kernel_initializer, f"{what} kernel_initializer")
    init_bias = get_initializer(bias_initializer, f"{what} bias_initializer")
    policy = precision.dtype_policy(dtype, param_dtype, what)
    drawn = precision.draw_dtype(policy)

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        rng = _checks.prng_key(rng, f"{what} init")
        shape = _checks.shape_tuple(input_shape, what)
        if len(shape) < 2:
            raise ValueError(f"{what}: expected input_shape of rank >= 2, got {shape}")
        features = _checks.positive_int(shape[-1], f"{what}: input_shape features in {shape}")
        k_kernel, k_bias = jax.random.split(rng)
        params = {"kernel": init_kernel(k_kernel, (features, units), drawn)}
        if use_bias:
            params["bias"] = init_bias(k_bias, (units,), drawn)
        return shape[:-1] + (units,), _as_variables(params, policy)

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask, rng
        _checks.training(training, what)
        expected = {"kernel": (None, units)} | ({"bias": (units,)} if use_bias else {})
        compute = precision.compute_dtype(policy, _checks.param_tree(params, expected, what), what)
        features = params["kernel"].shape[0]
        x = _checks.numeric(inputs, f"{what} inputs")
        if x.ndim < 2 or x.shape[-1] != features:
            raise ValueError(f"{what}: expected inputs of shape (..., {features}), got {tuple(x.shape)}")
        y = jnp.asarray(x, compute) @ params["kernel"].astype(compute)
        if use_bias:
            y = y + jnp.broadcast_to(params["bias"].astype(compute), y.shape)
        return act(y)

    rules = _weight_rules(config, ("kernel", "bias") if use_bias else ("kernel",), what)
    return Layer(init, as_apply_fn(apply), "Dense", name, config, weight_rules=rules)


@_constructor
def Dropout(rate: float, *, name: str | None = None) -> Layer:
    """Keras's Dropout: zeroes a `rate` fraction of inputs and scales the rest by
    1 / (1 - rate), only in `apply(..., training=True, rng=key)`.

    Args:
        rate: the fraction of the inputs to drop, in [0, 1).
        name: the layer's name in a summary.

    Returns:
        A `Layer` without params (`{}`): `apply(params, inputs, *, mask=None, training=False,
        rng=None)` returns the inputs (as floats) unless `training`, when `rng` is required.
    """
    rate = _checks.rate(rate, "Dropout rate")
    what = _what("Dropout", name)

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        _checks.prng_key(rng, f"{what} init")  # unused, but every init takes a key
        return _checks.shape_tuple(input_shape, what), {}

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask
        training = _checks.training(training, what)
        _checks.param_tree(params, {}, what)
        x = _checks.array(inputs, f"{what} inputs")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        if not training or rate == 0.0:
            return x
        if rng is None:
            raise ValueError(f"{what}: expected rng=<PRNG key> with training=True, got None")
        return x * _recurrent.scaled_keep(_checks.prng_key(rng, what), rate, x.shape, x.dtype)

    return Layer(init, as_apply_fn(apply), "Dropout", name, {"rate": rate})


@_constructor
def Masking(mask_value: float = 0.0, *, name: str | None = None) -> Layer:
    """Keras's Masking: a timestep whose features all equal `mask_value` is masked for the
    layers after it (inside `Sequential`), and its features are set to 0.

    Args:
        mask_value: the feature value that marks a padded timestep.
        name: the layer's name in a summary.

    Returns:
        A `Layer` without params (`{}`) over inputs (batch, timesteps, features), whose
        `compute_mask` gives the mask for the layers after it.
    """
    what = _what("Masking", name)
    mask_value = _checks.mask_value(mask_value, what)

    def timestep_mask(inputs: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        del mask  # Keras's Masking replaces any incoming mask
        x = jnp.asarray(inputs)
        # JAX's standard promotion spelled out, so that strict promotion takes it: an int or
        # bool x meets the float mask_value in the default float
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.result_type(float)
        return jnp.any(x.astype(dtype) != jnp.asarray(mask_value, dtype), axis=-1)

    def init(rng: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        _checks.prng_key(rng, f"{what} init")  # unused, but every init takes a key
        return _checks.sequence_shape(input_shape, what), {}

    def apply(
        params: Params, inputs: Any, *, mask: Any = None, training: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        del mask, rng
        _checks.training(training, what)
        _checks.param_tree(params, {}, what)
        x = _checks.array(inputs, f"{what} inputs")
        if x.ndim != 3:
            raise ValueError(
                f"{what}: expected inputs of rank 3 (batch, timesteps, features), got shape {tuple(x.shape)}"
            )
        return jnp.where(timestep_mask(x)[..., None], x, jnp.zeros_like(x))

    return Layer(init, as_apply_fn(apply), "Masking", name, {"mask_value": mask_value}, compute_mask=timestep_mask)
