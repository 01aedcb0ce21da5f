"""Keras 3: `from_keras` and `to_keras`. Keras is imported on first use."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jlstm.activations import ACTIVATIONS
from jlstm.combinators import Bidirectional, Sequential
from jlstm.constraints import CONSTRAINTS, get_constraint
from jlstm.initializers import INITIALIZERS
from jlstm.interop._common import (
    Path,
    _check_params,
    _default_promotion,
    _get,
    _input_features,
    _leaf_layers,
    _leaf_params,
    _name_of,
    _replace,
)
from jlstm.layers import RECURRENT, Dense, Dropout, Layer, Masking, Params
from jlstm.precision import POLICY_NAMES
from jlstm.regularizers import REGULARIZERS, get_regularizer


def _import_keras() -> Any:
    # jlstm runs on JAX, so Keras does too unless the caller chose another backend.
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return keras


class _KerasRecurrent(NamedTuple):
    """What a recurrent layer's Keras arguments hold beyond those all three share."""

    same: tuple[str, ...]  # carried as they are
    activations: tuple[str, ...]
    use_cudnn: bool  # Keras's layer has use_cudnn (an attribute: get_config leaves it out)


_RECURRENT_SAME = (
    "units",
    "return_sequences",
    "return_state",
    "go_backwards",
    "use_bias",
    "dropout",
    "recurrent_dropout",
    "name",
)
_GATED = ("activation", "recurrent_activation")
_KERAS_RECURRENT = {
    "LSTM": _KerasRecurrent(("unit_forget_bias",), _GATED, True),
    "GRU": _KerasRecurrent(("reset_after",), _GATED, True),
    "SimpleRNN": _KerasRecurrent((), ("activation",), False),
}
# Each recurrent layer's initializers, with jlstm's default for one it has no name for.
_RECURRENT_INITIALIZERS = {
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
}
# The params whose regularizer and constraint a layer takes, as its arguments' prefixes.
_RECURRENT_RULES = ("kernel", "recurrent", "bias")
_DENSE_RULES = ("kernel", "bias")


class _KerasRules(NamedTuple):
    """Keras's regularizers or constraints, and jlstm's classes of the same names and fields."""

    module: str  # keras.<module>, as a layer's get_config names it
    classes: dict[str, Callable[..., Any]]  # jlstm's classes by class name
    get: Callable[..., Any]  # jlstm's get_regularizer or get_constraint


_KERAS_RULES = {
    "regularizer": _KerasRules("regularizers", {c.__name__: c for c in REGULARIZERS.values()}, get_regularizer),
    "constraint": _KerasRules("constraints", {c.__name__: c for c in CONSTRAINTS.values()}, get_constraint),
}
_KERAS_TYPES = ("InputLayer", *_KERAS_RECURRENT, "Bidirectional", "Dense", "Dropout", "Masking")
# The weights of a layer that has some, in Keras's get_weights order (then the bias, if any).
_KERAS_WEIGHTS = {name: ("kernel", "recurrent_kernel") for name in RECURRENT} | {"Dense": ("kernel",)}


def from_keras(model_or_layer: Any) -> tuple[Layer, Params]:
    """A built Keras 3 model or layer as `(layer, params)`, with equal outputs.

    Supported: a model (Sequential or functional) that is a chain of InputLayer, LSTM,
    GRU (either reset_after), SimpleRNN, Bidirectional over one of those three (custom
    backward_layer included), Dense, Dropout and Masking layers, which comes back as a
    `jlstm.Sequential` (a Masking layer's mask flows to the layers after it, as in
    Keras); a single layer comes back as that jlstm layer. Each layer's config maps to
    jlstm's arguments: `zero_output_for_mask` (a Bidirectional sets its layers' own, in
    Keras as in jlstm), the dtype policy (`layer.dtype_policy.name` as `dtype=`; the
    params keep their dtype, float32 under "mixed_bfloat16", bfloat16 under "bfloat16"),
    the regularizers (Keras's L1, L2, L1L2 and OrthogonalRegularizer as
    `jlstm.regularizers`' classes with the same factors) and constraints (MaxNorm,
    NonNeg, UnitNorm and MinMaxNorm as `jlstm.constraints`' with the same arguments).
    Initializers carry over by name where jlstm has one (they matter only for
    re-initialising). Dropout and Masking keep their inputs' dtype whatever their
    policy; a Bidirectional must have float32's or its layers' (Keras casts its outputs
    to it, jlstm leaves them in its layers' compute dtype). An `activity_regularizer` is
    not carried over (jlstm puts it in the loss: `jlstm.regularizers`). Anything else (a
    generic `keras.layers.RNN`, a custom subclass, `stateful=True`, an activation,
    regularizer or constraint jlstm has no class for, a quantized dtype policy) is a
    TypeError/ValueError naming it.

    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported
    >>> import keras
    >>> model = keras.Sequential([keras.Input((7, 3)), keras.layers.LSTM(5), keras.layers.Dense(1)])
    >>> layer, params = from_keras(model)
    >>> layer.type_name, [sub.type_name for sub in layer.sublayers]
    ('Sequential', ['LSTM', 'Dense'])
    """
    keras = _import_keras()
    if isinstance(model_or_layer, keras.Model):
        pairs = _keras_model_pairs(model_or_layer, keras)
        layers, params = zip(*pairs)
        return Sequential(layers, name=model_or_layer.name), tuple(params)
    if isinstance(model_or_layer, keras.layers.Layer):
        if type(model_or_layer) is keras.layers.InputLayer:
            raise TypeError("from_keras: an InputLayer alone has no jlstm equivalent")
        return _from_keras_layer(model_or_layer, keras)
    raise TypeError(f"from_keras: expected a Keras 3 model or layer, got {type(model_or_layer).__name__}")


def _keras_model_pairs(model: Any, keras: Any) -> list[tuple[Layer, Params]]:
    what = f"from_keras: model '{model.name}'"
    functional = type(model).__name__ == "Functional"
    if not functional and not isinstance(model, keras.Sequential):
        raise TypeError(f"{what}: expected a Sequential or functional model, got a {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{what}: expected a built model (give it an Input or call it once)")
    layers = [kl for kl in model.layers if type(kl) is not keras.layers.InputLayer]
    if not layers:
        raise ValueError(f"{what}: expected at least one layer besides the InputLayer")
    if functional:
        _check_keras_chain(model, layers, what)
    pairs = []
    for kl in layers:
        if isinstance(kl, keras.Model):
            pairs += _keras_model_pairs(kl, keras)
        else:
            pairs.append(_from_keras_layer(kl, keras))
    return pairs


def _check_keras_chain(model: Any, layers: list[Any], what: str) -> None:
    """A functional model must be a chain: each layer called once, on the previous output."""
    tensors = list(model.inputs)
    for kl in layers:
        nodes = kl._inbound_nodes
        args: tuple[Any, ...] = nodes[0].arguments.args if len(nodes) == 1 else ()
        if len(tensors) != 1 or len(args) != 1 or args[0] is not tensors[0]:
            raise ValueError(
                f"{what}: expected a chain of layers, each called once on the previous "
                f"layer's only output; layer '{kl.name}' is not"
            )
        tensors = nodes[0].outputs
    if [id(t) for t in tensors] != [id(t) for t in model.outputs]:
        raise ValueError(f"{what}: expected the last layer's outputs as the model's outputs")


def _keras_config(kl: Any, what: str) -> dict[str, Any]:
    try:
        return kl.get_config()
    except Exception as err:  # Keras raises several types for what it cannot serialise
        raise TypeError(f"{what}: cannot read its config ({type(err).__name__}: {err})") from None


def _keras_object_name(value: Any) -> Any:
    """What an error calls a serialised custom object: a function's name (in "config"),
    else its class's; anything else as it is."""
    if not isinstance(value, dict):
        return value
    name = value.get("config")
    return name if isinstance(name, str) else value.get("class_name", "<lambda>")


def _keras_activation(value: Any, what: str) -> str:
    if isinstance(value, str) and value in ACTIVATIONS:
        return value
    raise ValueError(
        f"{what}: expected an activation in {sorted(ACTIVATIONS)}, got the custom or unsupported "
        f"{_keras_object_name(value)!r}"
    )


def _keras_rule(value: Any, kind: str, what: str) -> Any:
    """A Keras regularizer or constraint as its layer's get_config serialises it (None
    for none) as jlstm's object of the same class and arguments."""
    if value is None:
        return None
    rules = _KERAS_RULES[kind]
    if isinstance(value, dict) and value.get("module") == f"keras.{rules.module}":
        cls = rules.classes.get(value.get("class_name", ""))
        if cls is not None:
            return cls(**{key: _keras_number(arg) for key, arg in (value.get("config") or {}).items()})
    raise ValueError(
        f"{what}: expected None or one of Keras's {sorted(rules.classes)}, got the custom or unsupported "
        f"{_keras_object_name(value)!r}"
    )


def _keras_number(value: Any) -> Any:
    """A float of a Keras config as the shortest decimal of its float32 where it is one: Keras
    keeps L1's, L2's and OrthogonalRegularizer's factors as float32 (L2(0.01)'s config says
    0.009999999776482582), and the decimal (0.01) is the same float32 again."""
    if isinstance(value, float) and float(np.float32(value)) == value:
        return float(str(np.float32(value)))
    return value


def _keras_rules(cfg: dict[str, Any], prefixes: tuple[str, ...], what: str) -> dict[str, Any]:
    """The `<prefix>_regularizer` and `<prefix>_constraint` arguments of a Keras config."""
    keys = [(f"{prefix}_{kind}", kind) for prefix in prefixes for kind in _KERAS_RULES]
    return {key: _keras_rule(cfg[key], kind, f"{what} {key}") for key, kind in keys}


def _keras_dtype(kl: Any, what: str) -> dict[str, Any]:
    """A Keras layer's dtype policy as jlstm's `dtype=` argument: none for float32 (the
    default), else the policy's name."""
    policy = kl.dtype_policy
    if getattr(policy, "quantization_mode", None) is not None:
        raise ValueError(f"{what}: expected a float dtype policy, got the quantized {policy.name!r}")
    return {} if policy.name == "float32" else {"dtype": policy.name}


def _keras_initializer(value: Any, default: str) -> str:
    name = value.get("class_name", "") if isinstance(value, dict) else str(value)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return snake if snake in INITIALIZERS else default


def _recurrent_kwargs(kl: Any, what: str, *, in_bidirectional: bool = False) -> dict[str, Any]:
    """A Keras LSTM's, GRU's or SimpleRNN's arguments as its jlstm layer's."""
    kind = _KERAS_RECURRENT[type(kl).__name__]
    cfg = _keras_config(kl, what)
    if cfg.get("stateful"):
        raise ValueError(f"{what}: stateful=True is not supported (pass initial_state instead)")
    kwargs = {key: cfg[key] for key in _RECURRENT_SAME + kind.same}
    kwargs |= {key: _keras_activation(cfg[key], f"{what} {key}") for key in kind.activations}
    kwargs |= {key: _keras_initializer(cfg[key], default) for key, default in _RECURRENT_INITIALIZERS.items()}
    kwargs |= _keras_rules(cfg, _RECURRENT_RULES, what) | _keras_dtype(kl, what)
    kwargs["unroll"] = True if cfg["unroll"] else 1
    if not in_bidirectional:  # Keras's Bidirectional sets it to return_sequences, as jlstm's does
        kwargs["zero_output_for_mask"] = cfg["zero_output_for_mask"]
    if kind.use_cudnn:
        kwargs["use_cudnn"] = getattr(kl, "use_cudnn", "auto")
    return kwargs


def _jlstm_from_keras(kl: Any, keras: Any, what: str) -> Layer:
    kind = type(kl).__name__
    if kind in _KERAS_RECURRENT:
        return RECURRENT[kind](**_recurrent_kwargs(kl, what))
    if kind == "Bidirectional":
        recurrent = {getattr(keras.layers, name) for name in _KERAS_RECURRENT}
        for role, sub in (("forward_layer", kl.forward_layer), ("backward_layer", kl.backward_layer)):
            if type(sub) not in recurrent:
                raise TypeError(f"{what}: expected an LSTM, GRU or SimpleRNN as {role}, got {type(sub).__name__}")
        fwd = _recurrent_kwargs(kl.forward_layer, f"{what} forward", in_bidirectional=True)
        bwd = _recurrent_kwargs(kl.backward_layer, f"{what} backward", in_bidirectional=True)
        fwd["name"] = fwd["name"].removeprefix("forward_")
        copy = {**fwd, "go_backwards": not fwd["go_backwards"], "name": bwd["name"]}
        _check_bidirectional_policy(kl, what)
        fwd_type, bwd_type = type(kl.forward_layer).__name__, type(kl.backward_layer).__name__
        backward = None if fwd_type == bwd_type and bwd == copy else RECURRENT[bwd_type](**bwd)
        return Bidirectional(RECURRENT[fwd_type](**fwd), kl.merge_mode, backward, name=kl.name)
    cfg = _keras_config(kl, what)
    if kind == "Dense":
        return Dense(
            cfg["units"],
            _keras_activation(cfg["activation"], f"{what} activation"),
            use_bias=cfg["use_bias"],
            kernel_initializer=_keras_initializer(cfg["kernel_initializer"], "glorot_uniform"),
            bias_initializer=_keras_initializer(cfg["bias_initializer"], "zeros"),
            name=cfg["name"],
            **_keras_rules(cfg, _DENSE_RULES, what),
            **_keras_dtype(kl, what),
        )
    if kind == "Dropout":
        if cfg.get("noise_shape") is not None:
            raise ValueError(f"{what}: noise_shape={cfg['noise_shape']} is not supported (expected None)")
        return Dropout(cfg["rate"], name=cfg["name"])
    return Masking(cfg["mask_value"], name=cfg["name"])


def _check_bidirectional_policy(kl: Any, what: str) -> None:
    """Keras casts a Bidirectional's outputs to its own policy: float32 (values as jlstm's,
    which stay in the layers' compute dtype) or its layers' (the same outputs)."""
    wrapper, inner = kl.dtype_policy.name, kl.forward_layer.dtype_policy.name
    if wrapper not in ("float32", inner):
        raise ValueError(f"{what}: expected the float32 dtype policy or its layers' {inner!r}, got {wrapper!r}")


def _from_keras_layer(kl: Any, keras: Any) -> tuple[Layer, Params]:
    kind = type(kl).__name__
    what = f"from_keras: {kind} '{kl.name}'"
    if kind not in _KERAS_TYPES or type(kl) is not getattr(keras.layers, kind):
        raise TypeError(f"{what}: unsupported layer; expected one of {list(_KERAS_TYPES)}")
    if not kl.built:
        raise ValueError(f"{what}: expected a built layer (build it or call it once)")
    layer = _jlstm_from_keras(kl, keras, what)
    params: Params = {}
    with _default_promotion():
        weights = kl.get_weights()
    paths = _keras_weight_paths(layer)
    if len(weights) != len(paths):
        raise ValueError(f"{what}: expected {len(paths)} weights, got {len(weights)}")
    for path, w in zip(paths, weights):
        params = _replace(params, path, jnp.asarray(w))
    return layer, params


def _keras_weight_paths(layer: Layer) -> list[Path]:
    """Where each of Keras's `get_weights()` arrays lives in jlstm's params, in order."""
    if layer.type_name == "Bidirectional":
        fwd, bwd = layer.config["layer"], layer.config["backward_layer"] or layer.config["layer"]
        return [("forward",) + p for p in _keras_weight_paths(fwd)] + [
            ("backward",) + p for p in _keras_weight_paths(bwd)
        ]
    names = _KERAS_WEIGHTS.get(layer.type_name, ())
    bias = ("bias",) if names and layer.config["use_bias"] else ()
    return [(name,) for name in names + bias]


def to_keras(layer: Layer, params: Params, *, timesteps: int | None = None) -> Any:
    """The Keras 3 equivalent of a jlstm layer, built and holding `params`.

    A `Sequential` becomes a `keras.Sequential` with an `Input((timesteps, features))`;
    any other layer a built Keras layer. Activations and initializers must be given by
    name (a callable has no Keras name: TypeError). `unroll` maps to Keras's bool
    (True stays True; a scan unroll factor becomes False: same outputs), an LSTM's or
    GRU's `use_cudnn` to Keras's own, a GRU's `reset_after` and `zero_output_for_mask`
    as they are, and `remat` and `cudnn_allow_tf32` have no Keras counterpart. The dtype
    policy goes by its Keras name (`layer.dtype_policy.name`, float32 for a layer without
    one; a Bidirectional's to the wrapper too, so that Keras's outputs come in the same
    dtype; a pair Keras has no name for is a ValueError) and the params keep its
    variable dtype. Regularizers and constraints become Keras's of the same class and
    arguments (given by name or as `jlstm.regularizers`' and `jlstm.constraints`'
    objects; another callable is a TypeError).

    >>> import jax, jlstm
    >>> layer = jlstm.LSTM(5, return_sequences=True)
    >>> _, params = layer.init(jax.random.key(0), (None, 7, 3))
    >>> to_keras(layer, params).count_params()
    180
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"to_keras: expected a jlstm layer, got {type(layer).__name__}")
    keras = _import_keras()
    what = f"to_keras: {layer.type_name}"
    features = _input_features(params, what)
    _check_params(layer, params, features, what)
    leaves = list(zip(_leaf_layers(layer), _leaf_params(layer, params)))
    with _default_promotion():  # Keras builds its layers (its initializers run)
        klayers = [_to_keras_layer(sub, keras) for sub, _ in leaves]
        if layer.type_name == "Sequential":
            model = keras.Sequential([keras.Input((timesteps, features))] + klayers, name=layer.name)
        else:
            model = klayers[0]
            model.build((None, timesteps, features))
        for klayer, (sub, p) in zip(klayers, leaves):
            dtype = np.float32 if sub.dtype_policy is None else sub.dtype_policy.variable_dtype
            klayer.set_weights([np.asarray(_get(p, path), dtype) for path in _keras_weight_paths(sub)])
    return model


def _to_keras_rule(value: Any, kind: str, keras: Any, what: str) -> Any:
    """A jlstm regularizer or constraint (by name or object; None for none) as Keras's."""
    rules = _KERAS_RULES[kind]
    found = rules.get(value, what)
    if found is None:
        return None
    if type(found) not in rules.classes.values():
        raise TypeError(
            f"{what}: expected one of {sorted(rules.classes)} (jlstm.{rules.module}) or its name, "
            f"got the callable {found!r}"
        )
    return getattr(getattr(keras, rules.module), type(found).__name__)(**dataclasses.asdict(found))


def _to_keras_rules(layer: Layer, prefixes: tuple[str, ...], keras: Any, what: str) -> dict[str, Any]:
    """A jlstm layer's `<prefix>_regularizer` and `<prefix>_constraint` as Keras's arguments."""
    keys = [(f"{prefix}_{kind}", kind) for prefix in prefixes for kind in _KERAS_RULES]
    return {key: _to_keras_rule(layer.config[key], kind, keras, f"{what} {key}") for key, kind in keys}


def _keras_policy(layer: Layer, what: str) -> str:
    """The Keras name of a layer's dtype policy (float32 for a layer without one)."""
    policy = layer.dtype_policy
    if policy is None or policy.compute_dtype is None:
        return "float32"
    if policy.variable_dtype != policy.compute_dtype and policy.name not in POLICY_NAMES:
        raise ValueError(f"{what}: expected a dtype policy Keras has a name for, got {policy.name!r}")
    return policy.name


def _keras_recurrent(layer: Layer, keras: Any) -> Any:
    """The Keras LSTM, GRU or SimpleRNN of a jlstm one."""
    kind = _KERAS_RECURRENT[layer.type_name]
    cfg, what = layer.config, f"to_keras: {layer.type_name} {layer.name or ''}".rstrip()
    names = {key: _name_of(cfg[key], ACTIVATIONS, f"{what} {key}") for key in kind.activations}
    names |= {key: _name_of(cfg[key], INITIALIZERS, f"{what} {key}") for key in _RECURRENT_INITIALIZERS}
    cudnn = {"use_cudnn": cfg["use_cudnn"]} if kind.use_cudnn else {}
    same = {key: cfg[key] for key in _RECURRENT_SAME + kind.same}
    return getattr(keras.layers, layer.type_name)(
        **same,
        **names,
        **_to_keras_rules(layer, _RECURRENT_RULES, keras, what),
        unroll=cfg["unroll"] is True,
        zero_output_for_mask=cfg["zero_output_for_mask"],
        dtype=_keras_policy(layer, what),
        **cudnn,
    )


def _to_keras_layer(layer: Layer, keras: Any) -> Any:
    cfg, what = layer.config, f"to_keras: {layer.type_name} {layer.name or ''}".rstrip()
    if layer.type_name in _KERAS_RECURRENT:
        return _keras_recurrent(layer, keras)
    if layer.type_name == "Bidirectional":
        backward = cfg["backward_layer"]
        return keras.layers.Bidirectional(
            _keras_recurrent(cfg["layer"], keras),
            merge_mode=cfg["merge_mode"],
            name=layer.name,
            backward_layer=None if backward is None else _keras_recurrent(backward, keras),
            dtype=_keras_policy(layer, what),
        )
    if layer.type_name == "Dense":
        return keras.layers.Dense(
            cfg["units"],
            _name_of(cfg["activation"], ACTIVATIONS, f"{what} activation"),
            use_bias=cfg["use_bias"],
            name=layer.name,
            dtype=_keras_policy(layer, what),
            **{
                key: _name_of(cfg[key], INITIALIZERS, f"{what} {key}")
                for key in ("kernel_initializer", "bias_initializer")
            },
            **_to_keras_rules(layer, _DENSE_RULES, keras, what),
        )
    if layer.type_name == "Dropout":
        return keras.layers.Dropout(cfg["rate"], name=layer.name)
    if layer.type_name == "Masking":
        return keras.layers.Masking(cfg["mask_value"], name=layer.name)
    raise TypeError(f"{what}: no Keras equivalent for a {layer.type_name} layer")
