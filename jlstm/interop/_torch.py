"""PyTorch: `from_torch` and `to_torch`, between `torch.nn.LSTM`, `nn.GRU`, `nn.RNN` and jlstm.
torch is imported on first use."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks
from jlstm.activations import get_activation
from jlstm.combinators import Bidirectional, Sequential, layer_keys
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
from jlstm.layers import RECURRENT, Dropout, Layer, Params, as_apply_fn


class _TorchKind(NamedTuple):
    """How a jlstm recurrent layer type stands for a torch.nn module."""

    module: str  # the torch.nn class
    order: tuple[int, ...]  # torch's gate blocks in Keras's order
    activations: Mapping[str, tuple[str, ...]]  # per activation argument, the names torch's math has
    flags: tuple[tuple[str, bool], ...] = ()  # the other arguments torch's math fixes


_TORCH_KINDS: dict[str, _TorchKind] = {
    # torch's i, f, g, o is Keras's i, f, c, o
    "LSTM": _TorchKind("LSTM", (0, 1, 2, 3), {"activation": ("tanh",), "recurrent_activation": ("sigmoid",)}),
    # torch's r, z, n; its n is Keras's reset_after candidate, with bias_hh as the recurrent bias row
    "GRU": _TorchKind(
        "GRU", (1, 0, 2), {"activation": ("tanh",), "recurrent_activation": ("sigmoid",)}, (("reset_after", True),)
    ),
    # nn.RNN's nonlinearity is the activation
    "SimpleRNN": _TorchKind("RNN", (0,), {"activation": ("tanh", "relu")}),
}


class _TorchConfig(NamedTuple):
    """The torch.nn module a jlstm layer stands for: its jlstm type and the module's arguments."""

    type_name: str  # "LSTM", "GRU" or "SimpleRNN"
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    dropout: float
    bidirectional: bool
    activation: str = "tanh"  # nn.RNN's nonlinearity


def _torch_module(torch: Any, config: _TorchConfig) -> Any:
    """The `batch_first` torch module `config` describes, with torch's initial weights."""
    kind = _TORCH_KINDS[config.type_name]
    args = config._asdict()
    del args["type_name"]
    nonlinearity = args.pop("activation")
    if kind.module == "RNN":
        args["nonlinearity"] = nonlinearity
    return getattr(torch.nn, kind.module)(**args, batch_first=True)


def _module_config(module: Any, torch: Any) -> _TorchConfig:
    types = {getattr(torch.nn, kind.module): type_name for type_name, kind in _TORCH_KINDS.items()}
    if type(module) not in types:
        raise TypeError(f"from_torch: expected a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    if module.proj_size:
        raise ValueError(f"from_torch: proj_size={module.proj_size} is not supported (expected 0)")
    return _TorchConfig(
        types[type(module)],
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bias,
        float(module.dropout),
        module.bidirectional,
        getattr(module, "nonlinearity", "tanh"),
    )


def _torch_names(k: int, suffix: str) -> dict[str, str]:
    """jlstm's param name -> torch's for layer k, one direction ('' or '_reverse')."""
    return {
        "kernel": f"weight_ih_l{k}{suffix}",
        "recurrent_kernel": f"weight_hh_l{k}{suffix}",
        "bias": f"bias_ih_l{k}{suffix}",
        "bias_hh": f"bias_hh_l{k}{suffix}",
    }


def _reorder(a: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """`a`'s gate blocks along its first axis, taken in `order`."""
    blocks = np.split(a, len(order))
    return np.concatenate([blocks[i] for i in order])


def _from_torch_direction(
    state: Mapping[str, np.ndarray], names: Mapping[str, str], order: Sequence[int], like: Mapping[str, Any]
) -> dict[str, jax.Array]:
    """One direction's params, shaped `like`, from torch's: weights transposed, gates in Keras's
    order, and torch's two biases as the two rows of a split bias (GRU) or summed into one."""
    params = {key: _reorder(state[names[key]], order).T for key in ("kernel", "recurrent_kernel")}
    if "bias" in like:
        b_ih, b_hh = (_reorder(state[names[key]], order) for key in ("bias", "bias_hh"))
        params["bias"] = np.stack([b_ih, b_hh]) if len(like["bias"].shape) == 2 else b_ih + b_hh
    return {key: jnp.asarray(value) for key, value in params.items()}


def _to_torch_direction(
    params: Mapping[str, Any], names: Mapping[str, str], order: Sequence[int]
) -> dict[str, np.ndarray]:
    """One direction's torch arrays from its params (the inverse of `_from_torch_direction`,
    `order` inverted): one bias goes to bias_ih, with zeros in bias_hh."""
    as_array = lambda a: np.array(a, np.float32)  # noqa: E731
    state = {names[key]: _reorder(as_array(params[key]).T, order) for key in ("kernel", "recurrent_kernel")}
    if "bias" in params:
        bias = as_array(params["bias"])
        b_ih, b_hh = bias if bias.ndim == 2 else (bias, np.zeros_like(bias))
        state[names["bias"]], state[names["bias_hh"]] = _reorder(b_ih, order), _reorder(b_hh, order)
    return state


def _torch_stack(cfg: _TorchConfig, *, return_state: bool = False) -> Layer:
    def recurrent() -> Layer:
        make = RECURRENT[cfg.type_name]
        return make(
            cfg.hidden_size,
            return_sequences=True,
            return_state=return_state,
            use_bias=cfg.bias,
            activation=cfg.activation,
        )

    layers = []
    for k in range(cfg.num_layers):
        if k and cfg.dropout:
            layers.append(Dropout(cfg.dropout))
        layers.append(Bidirectional(recurrent()) if cfg.bidirectional else recurrent())
    return layers[0] if len(layers) == 1 else Sequential(layers)


def _with_torch_states(layer: Layer, cfg: _TorchConfig) -> Layer:
    """`layer` (`_torch_stack(cfg)`) whose `apply` also takes `initial_state` and `return_state`
    in torch's layout: per state (h, and c for an LSTM) one (num_layers * num_directions, B, U)
    array, entry `k * num_directions + d` layer k's direction d (0 forward, 1 backward)."""
    stateful = _leaf_layers(_torch_stack(cfg, return_state=True))  # the same layers, returning states
    count = len(stateful)
    directions = 2 if cfg.bidirectional else 1
    rows = cfg.num_layers * directions
    names = ("h0", "c0") if cfg.type_name == "LSTM" else ("h0",)
    what = f"{_checks.layer_name(layer.name, layer.type_name)} (from nn.{_TORCH_KINDS[cfg.type_name].module})"
    expected = "the pair (h0, c0)" if len(names) == 2 else "h0 or (h0,)"

    def torch_states(initial_state: Any, batch: int) -> list[jax.Array]:
        """The states torch's module takes, checked: `names`' arrays, each (rows, batch, U)."""
        if len(names) == 1 and not isinstance(initial_state, (list, tuple)):
            initial_state = (initial_state,)
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != len(names):
            got = type(initial_state).__name__
            got += f" of {len(initial_state)}" if isinstance(initial_state, (list, tuple)) else ""
            raise ValueError(f"{what}: expected initial_state as {expected}, in torch's layout, got {got}")
        shape = (rows, batch, cfg.hidden_size)
        states = []
        for name, s in zip(names, initial_state):
            s = _checks.numeric(s, f"{what} initial_state {name}")
            if s.shape != shape:
                raise ValueError(
                    f"{what}: expected initial_state {name} of shape (num_layers * num_directions, batch, "
                    f"hidden_size) = {shape}, got {tuple(s.shape)}"
                )
            states.append(jnp.asarray(s))
        return states

    def apply(
        params: Params,
        inputs: Any,
        *,
        mask: Any = None,
        lengths: Any = None,
        initial_state: Any = None,
        return_state: bool = False,
        training: bool = False,
        rng: jax.Array | None = None,
    ) -> Any:
        if not _checks.flag(return_state, f"{what} return_state") and initial_state is None:
            return layer.apply(params, inputs, mask=mask, lengths=lengths, training=training, rng=rng)
        x = _checks.numeric(inputs, f"{what} inputs")
        if x.ndim != 3:
            raise ValueError(f"{what}: expected inputs of rank 3 (batch, timesteps, features), got {tuple(x.shape)}")
        states = None if initial_state is None else torch_states(initial_state, x.shape[0])
        stack = [params] if count == 1 else params
        if not isinstance(stack, (tuple, list)) or len(stack) != count:
            raise ValueError(f"{what}: expected params as a tuple of {count}, got {type(params).__name__}")
        keys = layer_keys(rng, count, what)  # as the plain call's Sequential (only Dropout layers draw)
        finals: list[list[jax.Array]] = []  # per torch layer, its directions' final states in a row
        for sub, p, key in zip(stateful, stack, keys):
            if sub.type_name == "Dropout":
                x = sub.apply(p, x, training=training, rng=key)
                continue
            k = len(finals)
            start = None if states is None else [s[k * directions + d] for d in range(directions) for s in states]
            x, *final = sub.apply(p, x, mask=mask, lengths=lengths, initial_state=start, training=training, rng=key)
            finals.append(final)
        if not return_state:
            return x
        # direction d's j-th state is final[d * len(names) + j]: torch's rows are layer-major
        out = [
            jnp.stack([final[d * len(names) + j] for final in finals for d in range(directions)])
            for j in range(len(names))
        ]
        return x, (tuple(out) if len(names) == 2 else out[0])

    return dataclasses.replace(layer, apply=as_apply_fn(apply))


# A direction of a recurrent layer: its type name, its config, and the go_backwards torch runs it with.
_Direction = tuple[str, Mapping[str, Any], bool]


def _torch_directions(i: int, sub: Layer, what: str) -> list[_Direction]:
    if sub.type_name == "Bidirectional":
        if sub.config["merge_mode"] != "concat":
            raise ValueError(f"{what}: layer {i}: expected merge_mode='concat', got {sub.config['merge_mode']!r}")
        fwd, bwd = sub.config["layer"], sub.config["backward_layer"]
        bwd_cfg = {**fwd.config, "go_backwards": True} if bwd is None else bwd.config
        return [(fwd.type_name, fwd.config, False), ((bwd or fwd).type_name, bwd_cfg, True)]
    if sub.type_name not in _TORCH_KINDS:
        raise TypeError(
            f"{what}: layer {i}: torch's nn.LSTM, nn.GRU and nn.RNN have no {sub.type_name}; "
            f"expected {', '.join(_TORCH_KINDS)} or Bidirectional"
        )
    return [(sub.type_name, sub.config, False)]


def _torch_slots(layer: Layer, params: Params, what: str) -> tuple[_TorchConfig, list[tuple[int, str, Path]]]:
    """The torch module a jlstm layer stands for, and per direction (k, suffix, path), with
    path into the list of leaf params (`_leaf_params`).

    The one description of the layout that both `from_torch` and `to_torch` use.
    """
    leaves = _leaf_layers(layer)
    kinds = [sub.type_name for sub in leaves]
    rates = {sub.config["rate"] for sub in leaves if sub.type_name == "Dropout"}
    # torch drops out between every two layers or none: L, D, L, D, L or L, L, L.
    recurrent_kinds = kinds[0::2] if rates else kinds
    alternating = len(kinds) % 2 == 1 and set(kinds[1::2]) == {"Dropout"}
    if "Dropout" in recurrent_kinds or len(rates) > 1 or (rates and not alternating):
        raise ValueError(
            f"{what}: expected recurrent or Bidirectional layers, with Dropout layers of one rate "
            f"between every two of them or none, got {kinds}"
        )
    recurrent = [(i, sub) for i, sub in enumerate(leaves) if sub.type_name != "Dropout"]
    specs = [_torch_directions(i, sub, what) for i, sub in recurrent]
    directions = [d for spec in specs for d in spec]
    types = [type_name for type_name, _, _ in directions]
    if len(set(types)) > 1:
        raise ValueError(f"{what}: expected recurrent layers of one type (torch's module has one), got {types}")
    first = directions[0][1]
    for direction in directions:
        _check_torch_direction(*direction, first, what)
    if len({len(spec) for spec in specs}) > 1:
        raise ValueError(f"{what}: expected all layers Bidirectional or none")
    type_name = types[0]
    activation = _activation_name(first["activation"], _TORCH_KINDS[type_name].activations["activation"])
    assert activation is not None  # one of torch's: _check_torch_direction checked it
    config = _TorchConfig(
        type_name=type_name,
        input_size=_input_features(params, what),
        hidden_size=first["units"],
        num_layers=len(specs),
        bias=bool(first["use_bias"]),
        dropout=rates.pop() if rates else 0.0,
        bidirectional=len(specs[0]) == 2,
        activation=activation,
    )
    slots: list[tuple[int, str, Path]] = []
    for k, (i, _) in enumerate(recurrent):
        if config.bidirectional:
            slots += [(k, "", (i, "forward")), (k, "_reverse", (i, "backward"))]
        else:
            slots.append((k, "", (i,)))
    return config, slots


def _activation_name(value: Any, names: Sequence[str]) -> str | None:
    """The name among `names` of the activation `value` (a name or a callable), or None."""
    fn = get_activation(value)
    return next((name for name in names if get_activation(name) is fn), None)


def _check_torch_direction(
    type_name: str, cfg: Mapping[str, Any], go_backwards: bool, first: Mapping[str, Any], what: str
) -> None:
    kind = _TORCH_KINDS[type_name]
    checks = [
        (key, _activation_name(cfg[key], names) is not None, " or ".join(map(repr, names)))
        for key, names in kind.activations.items()
    ]
    checks += [(key, cfg[key] == want, repr(want)) for key, want in kind.flags]
    checks += [
        ("go_backwards", bool(cfg["go_backwards"]) == go_backwards, repr(go_backwards)),
        ("dropout", cfg["dropout"] == 0, "0.0"),
        ("recurrent_dropout", cfg["recurrent_dropout"] == 0, "0.0"),
        ("units", cfg["units"] == first["units"], repr(first["units"])),
        ("use_bias", cfg["use_bias"] == first["use_bias"], repr(first["use_bias"])),
        # torch's module has one nonlinearity for all its layers
        (
            "activation",
            get_activation(cfg["activation"]) is get_activation(first["activation"]),
            repr(first["activation"]),
        ),
    ]
    for key, ok, want in checks:
        if not ok:
            raise ValueError(f"{what}: nn.{kind.module} needs {type_name} {key}={want}, got {cfg[key]!r}")


def from_torch(module: Any) -> tuple[Layer, Params]:
    """A `torch.nn.LSTM`, `nn.GRU` or `nn.RNN` as `(layer, params)`: `layer.apply(params, x)`
    equals `module(x)[0]`.

    Any num_layers, bidirectional, bias on or off. One layer comes back as an
    `LSTM`, `GRU` or `SimpleRNN(hidden_size, return_sequences=True)` (in a `Bidirectional`
    when bidirectional); several as a `Sequential` of them, with `Dropout(module.dropout)`
    layers between (active only in training, as in torch). Per direction, `kernel =
    weight_ih.T` and `recurrent_kernel = weight_hh.T` with the gate blocks in Keras's order:
    torch's LSTM i, f, g, o is Keras's i, f, c, o; its GRU r, z, n becomes z, r, h.

    torch keeps two biases per direction. An LSTM's and an RNN's act only as their sum, so
    `bias = bias_ih + bias_hh`, and `jlstm.count_params` counts G * hidden_size fewer per
    direction and layer than torch does (Keras's convention: 180 for torch's 200 for an LSTM
    with 3 inputs and 5 units). torch's GRU is Keras's `reset_after=True` GRU, whose bias
    (2, 3U) keeps both, `[bias_ih, bias_hh]`: the counts agree. nn.RNN's nonlinearity
    ("tanh" or "relu") is the SimpleRNN's activation.

    The jlstm layer always takes batch-major inputs (batch, time, features): for a module
    with `batch_first=False`, pass it `x.transpose(0, 1)`. proj_size > 0 is a ValueError.

    States go in and out as torch has them: the layer's `apply` also takes
    `initial_state=(h0, c0)` for an LSTM, `h0` for a GRU or RNN, and `return_state=True`
    (static under `jax.jit`) returns `(outputs, (h_n, c_n))`, or `(outputs, h_n)`, as
    `module(x, hx)` does. Each state is (num_layers * num_directions, batch, hidden_size),
    row `layer * num_directions + direction` (direction 1 the backward one), for a one-layer
    module too: (1, batch, hidden_size), not a jlstm LSTM's (batch, hidden_size). A call
    without either is the layer's own, as above. A wrong arity or shape is a ValueError
    naming the shape torch's layout needs.

    >>> import numpy as np, torch
    >>> layer, params = from_torch(torch.nn.LSTM(3, 5, bidirectional=True))
    >>> layer.type_name, sorted(params)
    ('Bidirectional', ['backward', 'forward'])
    >>> layer, params = from_torch(torch.nn.GRU(3, 5))
    >>> layer.config["reset_after"], params["bias"].shape
    (True, (2, 15))
    >>> module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    >>> layer, params = from_torch(module)
    >>> x, h0, c0 = torch.randn(2, 7, 3), torch.randn(4, 2, 5), torch.randn(4, 2, 5)
    >>> y, (h_n, c_n) = layer.apply(params, x, initial_state=(h0, c0), return_state=True)
    >>> with torch.no_grad():
    ...     y_torch, (h_torch, c_torch) = module(x, (h0, c0))
    >>> h_n.shape, bool(np.allclose(h_n, h_torch, atol=1e-5) and np.allclose(c_n, c_torch, atol=1e-5))
    ((4, 2, 5), True)
    """
    import torch

    config = _module_config(module, torch)
    layer = _torch_stack(config)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    order = _TORCH_KINDS[config.type_name].order
    leaves = tuple(_leaf_params(layer, _abstract_params(layer, config.input_size)))
    for k, suffix, path in _torch_slots(layer, leaves[0], "from_torch")[1]:
        leaves = _replace(
            leaves, path, _from_torch_direction(state, _torch_names(k, suffix), order, _get(leaves, path))
        )
    return _with_torch_states(layer, config), (leaves if layer.type_name == "Sequential" else leaves[0])


def to_torch(layer: Layer, params: Params) -> Any:
    """The `torch.nn.LSTM`, `nn.GRU` or `nn.RNN(batch_first=True)` a jlstm layer stands for,
    holding `params`.

    The inverse of `from_torch`: an LSTM, GRU or SimpleRNN, or a Bidirectional of one
    (merge_mode="concat"), or a Sequential of them (Dropout of one rate allowed between):
    one layer type, units and use_bias throughout, no per-step dropout, and what torch's
    math has: tanh and sigmoid for an LSTM or a GRU, `reset_after=True` for a GRU (torch has
    no other form), tanh or relu (the same in every layer) for a SimpleRNN. Anything else is
    a ValueError/TypeError naming it. A GRU's two bias rows become `bias_ih` and `bias_hh`;
    an LSTM's or SimpleRNN's one bias goes to `bias_ih`, with zeros in `bias_hh`. With
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
    module = _torch_module(torch, config)
    leaves = _leaf_params(layer, params)
    order = np.argsort(_TORCH_KINDS[config.type_name].order).tolist()  # Keras's gate blocks in torch's order
    state: dict[str, np.ndarray] = {}
    for k, suffix, path in slots:
        state |= _to_torch_direction(_get(leaves, path), _torch_names(k, suffix), order)
    module.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    return module
