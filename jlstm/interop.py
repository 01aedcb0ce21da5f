"""Weights in and out: Keras 3, PyTorch and Flax LSTMs as jlstm layers, and back.

Each `from_*` returns `(layer, params)`: a jlstm layer with the same configuration and
the other library's weights in jlstm's (Keras's) layout, so `layer.apply(params, x)`
gives the same outputs. Keras, PyTorch and Flax are imported only when used.

>>> import torch
>>> import jlstm
>>> module = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
>>> layer, params = jlstm.interop.from_torch(module)
>>> [sub.type_name for sub in layer.sublayers], jlstm.count_params(params)
(['LSTM', 'LSTM'], 400)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.activations import ACTIVATIONS, get_activation
from jlstm.combinators import Bidirectional, Sequential
from jlstm.initializers import INITIALIZERS
from jlstm.layers import LSTM, Dense, Dropout, Layer, Masking, Params
from jlstm.summary import abstract_init

Path = tuple[Any, ...]

# FlaxLayer is made on first access, by __getattr__.
__all__ = ["FlaxLayer", "from_flax", "from_keras", "from_torch", "to_keras", "to_torch"]  # noqa: F822


# ---------------------------------------------------------------------------- shared


def _get(tree: Any, path: Path) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _replace(tree: Any, path: Path, value: Any) -> Any:
    """`tree` with `value` at `path`, copying the tuples and dicts on the way."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, tuple):
        return tree[:head] + (_replace(tree[head], rest, value),) + tree[head + 1 :]
    return {**tree, head: _replace(tree.get(head, {}), rest, value)}


def _abstract_params(layer: Layer, features: int) -> Params:
    """The params tree `layer.init` makes, as shapes (nothing is allocated)."""
    return abstract_init(layer, (None, None, features))[1]


def _check_params(layer: Layer, params: Params, features: int, what: str) -> None:
    """Params must have the tree and shapes `layer.init` makes (nothing is allocated)."""
    want = _abstract_params(layer, features)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(params)
    if want_def != got_def:
        raise ValueError(f"{what}: expected params with the tree {want_def}, got {got_def}")
    for (path, w), (_, g) in zip(want_leaves, got_leaves):
        if tuple(w.shape) != tuple(np.shape(g)):
            raise ValueError(
                f"{what}: expected params{jax.tree_util.keystr(path)} of shape {tuple(w.shape)}, "
                f"got {tuple(np.shape(g))}"
            )


def _input_features(params: Params, what: str) -> int:
    """The input features: the first input kernel's rows (Masking and Dropout keep them)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if getattr(path[-1], "key", None) == "kernel":
            return int(np.shape(leaf)[0])
    raise ValueError(f"{what}: expected params with a 'kernel' to read the input features from")


def _name_of(fn: Any, table: dict[str, Any], what: str) -> str | None:
    """The registry name of an activation or initializer given by name or as a callable."""
    if fn is None or isinstance(fn, str):
        return fn
    for name, candidate in table.items():
        if candidate is fn:
            return name
    raise TypeError(f"{what}: expected one of {sorted(table)} by name, got the callable {fn!r}")


def _leaf_layers(layer: Layer) -> list[Layer]:
    """A Sequential's layers with nested Sequentials spliced in; any other layer alone."""
    if layer.type_name != "Sequential":
        return [layer]
    return [leaf for sub in layer.sublayers for leaf in _leaf_layers(sub)]


def _leaf_params(layer: Layer, params: Params) -> list[Params]:
    if layer.type_name != "Sequential":
        return [params]
    return [leaf for sub, p in zip(layer.sublayers, params) for leaf in _leaf_params(sub, p)]


# ---------------------------------------------------------------------------- Keras


def _import_keras() -> Any:
    # jlstm runs on JAX, so Keras does too unless the caller chose another backend.
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return keras


_KERAS_TYPES = ("InputLayer", "LSTM", "Bidirectional", "Dense", "Dropout", "Masking")


def from_keras(model_or_layer: Any) -> tuple[Layer, Params]:
    """A built Keras 3 model or layer as `(layer, params)`, with equal outputs.

    Supported: a model (Sequential or functional) that is a chain of InputLayer, LSTM,
    Bidirectional(LSTM) (custom backward_layer included), Dense, Dropout and Masking
    layers, which comes back as a `jlstm.Sequential` (a Masking layer's mask flows to
    the layers after it, as in Keras); a single layer comes back as that jlstm layer.
    Each layer's config maps to jlstm's arguments. Anything else (a GRU, a custom
    subclass, `stateful=True`, an activation jlstm has no name for, a dtype policy other
    than float32) is a TypeError/ValueError naming it. Initializers carry over by name
    where jlstm has one (they matter only for re-initialising); regularizers and
    constraints act only in Keras training and are not carried over.

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
        args = nodes[0].arguments.args if len(nodes) == 1 else ()
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


def _keras_activation(value: Any, what: str) -> str:
    if isinstance(value, str) and value in ACTIVATIONS:
        return value
    if isinstance(value, dict):  # a serialised function (its name in "config") or lambda
        name = value.get("config")
        value = name if isinstance(name, str) else value.get("class_name", "<lambda>")
    raise ValueError(
        f"{what}: expected an activation in {sorted(ACTIVATIONS)}, got the custom or unsupported {value!r}"
    )


def _keras_initializer(value: Any, default: str) -> str:
    name = value.get("class_name", "") if isinstance(value, dict) else str(value)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return snake if snake in INITIALIZERS else default


def _lstm_kwargs(kl: Any, what: str, *, in_bidirectional: bool = False) -> dict[str, Any]:
    cfg = _keras_config(kl, what)
    if cfg.get("stateful"):
        raise ValueError(f"{what}: stateful=True is not supported (pass initial_state instead)")
    if cfg.get("zero_output_for_mask") and not in_bidirectional:
        raise ValueError(f"{what}: zero_output_for_mask=True is not supported outside Bidirectional")
    return dict(
        units=cfg["units"],
        return_sequences=cfg["return_sequences"],
        return_state=cfg["return_state"],
        go_backwards=cfg["go_backwards"],
        use_bias=cfg["use_bias"],
        unit_forget_bias=cfg["unit_forget_bias"],
        activation=_keras_activation(cfg["activation"], f"{what} activation"),
        recurrent_activation=_keras_activation(cfg["recurrent_activation"], f"{what} recurrent_activation"),
        kernel_initializer=_keras_initializer(cfg["kernel_initializer"], "glorot_uniform"),
        recurrent_initializer=_keras_initializer(cfg["recurrent_initializer"], "orthogonal"),
        bias_initializer=_keras_initializer(cfg["bias_initializer"], "zeros"),
        dropout=cfg["dropout"],
        recurrent_dropout=cfg["recurrent_dropout"],
        unroll=True if cfg["unroll"] else 1,
        use_cudnn=getattr(kl, "use_cudnn", "auto"),  # an attribute: Keras's get_config leaves it out
        name=cfg["name"],
    )


def _jlstm_from_keras(kl: Any, keras: Any, what: str) -> Layer:
    kind = type(kl).__name__
    if kind == "LSTM":
        return LSTM(**_lstm_kwargs(kl, what))
    if kind == "Bidirectional":
        for role in ("forward_layer", "backward_layer"):
            sub = getattr(kl, role)
            if type(sub) is not keras.layers.LSTM:
                raise TypeError(f"{what}: expected an LSTM as {role}, got {type(sub).__name__}")
        fwd = _lstm_kwargs(kl.forward_layer, f"{what} forward", in_bidirectional=True)
        bwd = _lstm_kwargs(kl.backward_layer, f"{what} backward", in_bidirectional=True)
        fwd["name"] = fwd["name"].removeprefix("forward_")
        copy = {**fwd, "go_backwards": not fwd["go_backwards"], "name": bwd["name"]}
        backward = None if bwd == copy else LSTM(**bwd)
        return Bidirectional(LSTM(**fwd), kl.merge_mode, backward, name=kl.name)
    cfg = _keras_config(kl, what)
    if kind == "Dense":
        return Dense(
            cfg["units"],
            _keras_activation(cfg["activation"], f"{what} activation"),
            use_bias=cfg["use_bias"],
            kernel_initializer=_keras_initializer(cfg["kernel_initializer"], "glorot_uniform"),
            bias_initializer=_keras_initializer(cfg["bias_initializer"], "zeros"),
            name=cfg["name"],
        )
    if kind == "Dropout":
        if cfg.get("noise_shape") is not None:
            raise ValueError(f"{what}: noise_shape={cfg['noise_shape']} is not supported (expected None)")
        return Dropout(cfg["rate"], name=cfg["name"])
    return Masking(cfg["mask_value"], name=cfg["name"])


def _from_keras_layer(kl: Any, keras: Any) -> tuple[Layer, Params]:
    kind = type(kl).__name__
    what = f"from_keras: {kind} '{kl.name}'"
    if kind not in _KERAS_TYPES or type(kl) is not getattr(keras.layers, kind):
        raise TypeError(f"{what}: unsupported layer; expected one of {list(_KERAS_TYPES)}")
    if not kl.built:
        raise ValueError(f"{what}: expected a built layer (build it or call it once)")
    policy = kl.dtype_policy.name
    if policy != "float32":
        raise ValueError(f"{what}: expected the float32 dtype policy, got {policy!r}")
    layer = _jlstm_from_keras(kl, keras, what)
    params: Params = {}
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
    names = {"LSTM": ("kernel", "recurrent_kernel"), "Dense": ("kernel",)}.get(layer.type_name, ())
    bias = ("bias",) if names and layer.config["use_bias"] else ()
    return [(name,) for name in names + bias]


def to_keras(layer: Layer, params: Params, *, timesteps: int | None = None) -> Any:
    """The Keras 3 equivalent of a jlstm layer, built and holding `params`.

    A `Sequential` becomes a `keras.Sequential` with an `Input((timesteps, features))`;
    any other layer a built Keras layer. Activations and initializers must be given by
    name (a callable has no Keras name: TypeError). `unroll` maps to Keras's bool
    (True stays True; a scan unroll factor becomes False: same outputs), `use_cudnn` to
    Keras's own, and `remat` and `cudnn_allow_tf32` have no Keras counterpart.

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
    klayers = [_to_keras_layer(sub, keras) for sub, _ in leaves]
    if layer.type_name == "Sequential":
        model = keras.Sequential([keras.Input((timesteps, features))] + klayers, name=layer.name)
    else:
        model = klayers[0]
        model.build((None, timesteps, features))
    for klayer, (sub, p) in zip(klayers, leaves):
        klayer.set_weights([np.asarray(_get(p, path), np.float32) for path in _keras_weight_paths(sub)])
    return model


def _keras_lstm(layer: Layer, keras: Any) -> Any:
    cfg, what = layer.config, f"to_keras: LSTM {layer.name or ''}".rstrip()
    names = {key: _name_of(cfg[key], ACTIVATIONS, f"{what} {key}") for key in ("activation", "recurrent_activation")}
    names |= {
        key: _name_of(cfg[key], INITIALIZERS, f"{what} {key}")
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer")
    }
    same = (
        "units",
        "return_sequences",
        "return_state",
        "go_backwards",
        "use_bias",
        "unit_forget_bias",
        "dropout",
        "recurrent_dropout",
        "name",
    )
    return keras.layers.LSTM(
        **{k: cfg[k] for k in same}, **names, unroll=cfg["unroll"] is True, use_cudnn=cfg.get("use_cudnn", "auto")
    )


def _to_keras_layer(layer: Layer, keras: Any) -> Any:
    cfg, what = layer.config, f"to_keras: {layer.type_name} {layer.name or ''}".rstrip()
    if layer.type_name == "LSTM":
        return _keras_lstm(layer, keras)
    if layer.type_name == "Bidirectional":
        backward = cfg["backward_layer"]
        return keras.layers.Bidirectional(
            _keras_lstm(cfg["layer"], keras),
            merge_mode=cfg["merge_mode"],
            name=layer.name,
            backward_layer=None if backward is None else _keras_lstm(backward, keras),
        )
    if layer.type_name == "Dense":
        return keras.layers.Dense(
            cfg["units"],
            _name_of(cfg["activation"], ACTIVATIONS, f"{what} activation"),
            use_bias=cfg["use_bias"],
            name=layer.name,
            **{
                key: _name_of(cfg[key], INITIALIZERS, f"{what} {key}")
                for key in ("kernel_initializer", "bias_initializer")
            },
        )
    if layer.type_name == "Dropout":
        return keras.layers.Dropout(cfg["rate"], name=layer.name)
    if layer.type_name == "Masking":
        return keras.layers.Masking(cfg["mask_value"], name=layer.name)
    raise TypeError(f"{what}: no Keras equivalent for a {layer.type_name} layer")


# ---------------------------------------------------------------------------- PyTorch


class _TorchConfig(NamedTuple):
    """The nn.LSTM arguments a jlstm layer stands for."""

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    dropout: float
    bidirectional: bool


def _torch_names(k: int, suffix: str) -> dict[str, str]:
    """jlstm's param name -> nn.LSTM's for layer k, one direction ('' or '_reverse')."""
    return {
        "kernel": f"weight_ih_l{k}{suffix}",
        "recurrent_kernel": f"weight_hh_l{k}{suffix}",
        "bias": f"bias_ih_l{k}{suffix}",
        "bias_hh": f"bias_hh_l{k}{suffix}",
    }


def _torch_stack(cfg: _TorchConfig) -> Layer:
    def lstm() -> Layer:
        return LSTM(cfg.hidden_size, return_sequences=True, use_bias=cfg.bias)

    layers = []
    for k in range(cfg.num_layers):
        if k and cfg.dropout:
            layers.append(Dropout(cfg.dropout))
        layers.append(Bidirectional(lstm()) if cfg.bidirectional else lstm())
    return layers[0] if len(layers) == 1 else Sequential(layers)


def _torch_slots(layer: Layer, params: Params, what: str) -> tuple[_TorchConfig, list[tuple[int, str, Path]]]:
    """The nn.LSTM a jlstm layer stands for, and per direction (k, suffix, path), with
    path into the list of leaf params (`_leaf_params`).

    The one description of the layout that both `from_torch` and `to_torch` use.
    """
    leaves = _leaf_layers(layer)
    kinds = [sub.type_name for sub in leaves]
    rates = {sub.config["rate"] for sub in leaves if sub.type_name == "Dropout"}
    # torch drops out between every two layers or none: L, D, L, D, L or L, L, L.
    lstm_kinds = kinds[0::2] if rates else kinds
    alternating = len(kinds) % 2 == 1 and set(kinds[1::2]) == {"Dropout"}
    if "Dropout" in lstm_kinds or len(rates) > 1 or (rates and not alternating):
        raise ValueError(
            f"{what}: expected LSTM or Bidirectional layers, with Dropout layers of one rate "
            f"between every two of them or none, got {kinds}"
        )
    lstms = [(i, sub) for i, sub in enumerate(leaves) if sub.type_name != "Dropout"]
    specs = []
    for i, sub in lstms:
        if sub.type_name == "Bidirectional":
            if sub.config["merge_mode"] != "concat":
                raise ValueError(f"{what}: layer {i}: expected merge_mode='concat', got {sub.config['merge_mode']!r}")
            fwd, bwd = sub.config["layer"].config, sub.config["backward_layer"]
            bwd = {**fwd, "go_backwards": True} if bwd is None else bwd.config
            specs.append([(fwd, False), (bwd, True)])
        elif sub.type_name == "LSTM":
            specs.append([(sub.config, False)])
        else:
            raise TypeError(f"{what}: layer {i}: nn.LSTM has no {sub.type_name}; expected LSTM or Bidirectional")
    directions = [cfg for spec in specs for cfg, _ in spec]
    for cfg, go_backwards in (d for spec in specs for d in spec):
        _check_torch_lstm(cfg, go_backwards, directions[0], what)
    if len({len(spec) for spec in specs}) > 1:
        raise ValueError(f"{what}: expected all layers Bidirectional or none")
    config = _TorchConfig(
        input_size=_input_features(params, what),
        hidden_size=directions[0]["units"],
        num_layers=len(specs),
        bias=bool(directions[0]["use_bias"]),
        dropout=rates.pop() if rates else 0.0,
        bidirectional=len(specs[0]) == 2,
    )
    slots = []
    for k, (i, _) in enumerate(lstms):
        if config.bidirectional:
            slots += [(k, "", (i, "forward")), (k, "_reverse", (i, "backward"))]
        else:
            slots.append((k, "", (i,)))
    return config, slots


def _check_torch_lstm(cfg: dict[str, Any], go_backwards: bool, first: dict[str, Any], what: str) -> None:
    checks = [
        ("activation", get_activation(cfg["activation"]) is jnp.tanh, "tanh"),
        ("recurrent_activation", get_activation(cfg["recurrent_activation"]) is jax.nn.sigmoid, "sigmoid"),
        ("go_backwards", bool(cfg["go_backwards"]) == go_backwards, go_backwards),
        ("dropout", cfg["dropout"] == 0, 0.0),
        ("recurrent_dropout", cfg["recurrent_dropout"] == 0, 0.0),
        ("units", cfg["units"] == first["units"], first["units"]),
        ("use_bias", cfg["use_bias"] == first["use_bias"], first["use_bias"]),
    ]
    for key, ok, want in checks:
        if not ok:
            raise ValueError(f"{what}: nn.LSTM needs LSTM {key}={want!r}, got {cfg[key]!r}")


def from_torch(module: Any) -> tuple[Layer, Params]:
    """A `torch.nn.LSTM` as `(layer, params)`: `layer.apply(params, x)` equals `module(x)[0]`.

    Any num_layers, bidirectional, bias on or off. One layer comes back as an
    `LSTM(hidden_size, return_sequences=True)` (in a `Bidirectional` when bidirectional);
    several as a `Sequential` of them, with `Dropout(module.dropout)` layers between
    (active only in training, as in torch). Per direction, `kernel = weight_ih.T`,
    `recurrent_kernel = weight_hh.T` and `bias = bias_ih + bias_hh`: torch's gate order
    i, f, g, o is Keras's i, f, c, o. Folding the two biases into one is why
    `jlstm.count_params` counts 4 * hidden_size fewer per direction and layer than torch
    does (Keras's convention: 180 for torch's 200 with 3 inputs and 5 units).

    The jlstm layer always takes batch-major inputs (batch, time, features): for a module
    with `batch_first=False`, pass it `x.transpose(0, 1)`. proj_size > 0 is a ValueError.

    >>> import torch
    >>> layer, params = from_torch(torch.nn.LSTM(3, 5, bidirectional=True))
    >>> layer.type_name, sorted(params)
    ('Bidirectional', ['backward', 'forward'])
    """
    import torch

    if type(module) is not torch.nn.LSTM:
        raise TypeError(f"from_torch: expected a torch.nn.LSTM, got {type(module).__name__}")
    if module.proj_size:
        raise ValueError(f"from_torch: proj_size={module.proj_size} is not supported (expected 0)")
    config = _TorchConfig(
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bias,
        float(module.dropout),
        module.bidirectional,
    )
    layer = _torch_stack(config)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    leaves = tuple(_leaf_params(layer, _abstract_params(layer, config.input_size)))
    for k, suffix, path in _torch_slots(layer, leaves[0], "from_torch")[1]:
        names = _torch_names(k, suffix)
        direction = {key: state[names[key]].T for key in ("kernel", "recurrent_kernel")}
        if config.bias:
            direction["bias"] = state[names["bias"]] + state[names["bias_hh"]]
        leaves = _replace(leaves, path, jax.tree_util.tree_map(jnp.asarray, direction))
    return layer, (leaves if layer.type_name == "Sequential" else leaves[0])


def to_torch(layer: Layer, params: Params) -> Any:
    """The `torch.nn.LSTM(batch_first=True)` a jlstm layer stands for, holding `params`.

    The inverse of `from_torch`: an LSTM or Bidirectional(LSTM, merge_mode="concat"), or a
    Sequential of them (Dropout of one rate allowed between), with tanh/sigmoid, one
    units and use_bias throughout and no per-step dropout; anything else is a
    ValueError/TypeError naming it. `bias_ih` gets the bias and `bias_hh` zeros. With
    return_sequences=True, `module(x)[0]` equals `layer.apply(params, x)` (float32).

    >>> import jax, jlstm
    >>> layer = jlstm.Bidirectional(jlstm.LSTM(5, return_sequences=True))
    >>> _, params = layer.init(jax.random.key(0), (None, 7, 3))
    >>> to_torch(layer, params)
    LSTM(3, 5, batch_first=True, bidirectional=True)
    """
    import torch

    if not isinstance(layer, Layer):
        raise TypeError(f"to_torch: expected a jlstm layer, got {type(layer).__name__}")
    what = f"to_torch: {layer.type_name}"
    config, slots = _torch_slots(layer, params, what)
    _check_params(layer, params, config.input_size, what)
    module = torch.nn.LSTM(**config._asdict(), batch_first=True)
    leaves = _leaf_params(layer, params)
    as_tensor = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731
    state = {}
    for k, suffix, path in slots:
        names, direction = _torch_names(k, suffix), _get(leaves, path)
        state[names["kernel"]] = as_tensor(direction["kernel"]).T
        state[names["recurrent_kernel"]] = as_tensor(direction["recurrent_kernel"]).T
        if config.bias:
            state[names["bias"]] = as_tensor(direction["bias"])
            state[names["bias_hh"]] = torch.zeros_like(state[names["bias"]])
    module.load_state_dict(state)
    return module


# ---------------------------------------------------------------------------- Flax

_FLAX_GATES = ("i", "f", "g", "o")  # Flax's gate names, in Keras's order i, f, c, o


def from_flax(module: Any, params: Params) -> tuple[Layer, Params]:
    """A Flax linen LSTM and its params as `(layer, params)`, with equal outputs.

    `module` is an `nn.LSTMCell` or `nn.OptimizedLSTMCell` (both keep per-gate Dense
    params ii, if, ig, io without bias and hi, hf, hg, ho with bias), an `nn.RNN` of one
    (`reverse=True` becomes go_backwards; keep_order=True with reverse is not
    supported), or an `nn.Bidirectional` of two with the default concatenating merge.
    `params` is the module's params, or its variables `{"params": ...}`. A cell comes
    back as `LSTM(features, return_sequences=True)` with the cell's gate_fn as
    recurrent_activation and activation_fn as activation, as `nn.RNN(cell)` runs it.

    The jlstm layer takes batch-major inputs: with `time_major=True`, transpose. Flax's
    carry is `(c, h)`; jlstm's `initial_state` and returned state are `(h, c)`.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> rnn = nn.RNN(nn.OptimizedLSTMCell(5))
    >>> variables = rnn.init(jax.random.key(0), jnp.ones((2, 7, 3)))
    >>> layer, params = from_flax(rnn, variables)
    >>> bool(jnp.allclose(layer.apply(params, jnp.ones((2, 7, 3))),
    ...                   rnn.apply(variables, jnp.ones((2, 7, 3))), atol=1e-5))
    True
    """
    import flax.linen as nn

    if isinstance(params, Mapping) and set(params) == {"params"}:
        params = params["params"]
    if type(module) is nn.Bidirectional:
        from flax.linen.recurrent import _concatenate

        if module.merge_fn is not _concatenate:
            raise ValueError(
                f"from_flax: Bidirectional: expected the default concatenating merge_fn, got {module.merge_fn!r}"
            )
        _expect_keys(params, ("forward_rnn", "backward_rnn"), "from_flax: Bidirectional")
        fwd, p_fwd = _from_flax_rnn(module.forward_rnn, params["forward_rnn"], nn, reverse=False)
        bwd, p_bwd = _from_flax_rnn(module.backward_rnn, params["backward_rnn"], nn, reverse=True)
        return Bidirectional(fwd, "concat", bwd), {"forward": p_fwd, "backward": p_bwd}
    if type(module) is nn.RNN:
        if module.reverse and module.keep_order:
            raise ValueError("from_flax: RNN: reverse=True with keep_order=True is not supported")
        return _from_flax_rnn(module, params, nn, reverse=module.reverse)
    return _from_flax_cell(module, params, nn)


def _expect_keys(params: Any, keys: Sequence[str], what: str) -> None:
    if not hasattr(params, "keys") or set(params) != set(keys):
        got = sorted(params) if hasattr(params, "keys") else type(params).__name__
        raise ValueError(f"{what}: expected params with keys {sorted(keys)}, got {got}")


def _from_flax_rnn(rnn: Any, params: Any, nn: Any, *, reverse: bool) -> tuple[Layer, Params]:
    if type(rnn) is not nn.RNN:
        raise TypeError(f"from_flax: expected an nn.RNN in the Bidirectional, got {type(rnn).__name__}")
    _expect_keys(params, ("cell",), "from_flax: RNN")
    return _from_flax_cell(rnn.cell, params["cell"], nn, go_backwards=reverse, unroll=rnn.unroll)


def _from_flax_cell(cell: Any, params: Any, nn: Any, **kwargs: Any) -> tuple[Layer, Params]:
    kind = type(cell).__name__
    if type(cell) not in (nn.LSTMCell, nn.OptimizedLSTMCell):
        raise TypeError(f"from_flax: expected an LSTMCell, OptimizedLSTMCell, RNN or Bidirectional, got {kind}")
    what = f"from_flax: {kind}"
    _expect_keys(params, [f"{s}{g}" for s in "ih" for g in _FLAX_GATES], what)
    gather = lambda side, key: jnp.concatenate(  # noqa: E731
        [jnp.asarray(params[f"{side}{g}"][key]) for g in _FLAX_GATES], axis=-1
    )
    layer = LSTM(
        cell.features,
        return_sequences=True,
        activation=cell.activation_fn,
        recurrent_activation=cell.gate_fn,
        kernel_initializer=cell.kernel_init,
        recurrent_initializer=cell.recurrent_kernel_init,
        bias_initializer=cell.bias_init,
        unit_forget_bias=False,
        **kwargs,
    )
    return layer, {
        "kernel": gather("i", "kernel"),
        "recurrent_kernel": gather("h", "kernel"),
        "bias": gather("h", "bias"),
    }


def _flax_layer_class() -> type:
    import flax.linen as nn

    class FlaxLayer(nn.Module):
        """Any jlstm layer as a Flax linen Module, its params under the name "jlstm".

        `__call__(x, *, training=False, **kwargs)` forwards `kwargs` to the layer's `apply`:
        `mask` for any layer, `lengths` for recurrent layers and Sequential, `initial_state`
        for recurrent layers only (`jlstm.ApplyFn`); with `training=True` and a "dropout" rng
        (`rngs={"dropout": key}`) dropout acts.

        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> import jlstm
        >>> class Model(nn.Module):
        ...     @nn.compact
        ...     def __call__(self, x):
        ...         return nn.Dense(1)(FlaxLayer(jlstm.LSTM(4))(x))
        >>> variables = Model().init(jax.random.key(0), jnp.ones((2, 7, 3)))
        >>> Model().apply(variables, jnp.ones((2, 7, 3))).shape
        (2, 1)
        """

        layer: Layer

        @nn.compact
        def __call__(self, x: Any, *, training: bool = False, **kwargs: Any) -> Any:
            shape = (None,) + tuple(np.shape(x))[1:]
            params = self.param("jlstm", lambda key: self.layer.init(key, shape)[1])
            rng = self.make_rng("dropout") if training and self.has_rng("dropout") else None
            return self.layer.apply(params, x, training=training, rng=rng, **kwargs)

    FlaxLayer.__module__ = __name__
    return FlaxLayer


def __getattr__(name: str) -> Any:
    # FlaxLayer subclasses flax's Module: built on first use so that importing jlstm
    # does not import flax.
    if name == "FlaxLayer":
        globals()["FlaxLayer"] = _flax_layer_class()
        return globals()["FlaxLayer"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
