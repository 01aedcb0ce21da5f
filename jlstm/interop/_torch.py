"""PyTorch: `from_torch` and `to_torch`, between `torch.nn.LSTM` and jlstm. torch is imported on first use."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.activations import get_activation
from jlstm.combinators import Bidirectional, Sequential
from jlstm.interop._common import (
    Path,
    _abstract_params,
    _check_params,
    _get,
    _input_features,
    _leaf_layers,
    _leaf_params,
    _replace,
)
from jlstm.layers import LSTM, Dropout, Layer, Params


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
