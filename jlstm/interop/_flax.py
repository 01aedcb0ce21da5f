"""Flax linen: `from_flax`, and the class behind `jlstm.interop.FlaxLayer`. Flax is imported on first use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.combinators import Bidirectional
from jlstm.layers import RECURRENT, Layer, Params


class _FlaxCell(NamedTuple):
    """How a Flax linen cell's per-gate Dense params ("i" + gate on the input, "h" + gate on
    the state) make a jlstm layer's."""

    type_name: str  # the jlstm layer
    gates: tuple[str, ...]  # Flax's gate names, in Keras's order
    biased: tuple[str, ...]  # the Dense params with a bias
    fixed: Mapping[str, Any]  # the jlstm arguments Flax's math fixes
    activations: Mapping[str, str]  # jlstm's activation argument -> the cell's attribute


_GATE_FNS = {"activation": "activation_fn", "recurrent_activation": "gate_fn"}
_LSTM_CELL = _FlaxCell("LSTM", ("i", "f", "g", "o"), ("hi", "hf", "hg", "ho"), {"unit_forget_bias": False}, _GATE_FNS)
_FLAX_CELLS = {
    "LSTMCell": _LSTM_CELL,
    "OptimizedLSTMCell": _LSTM_CELL,
    # Keras's z, r, h; the candidate's recurrent bias (hn's) sits inside r * (...): reset_after.
    "GRUCell": _FlaxCell("GRU", ("z", "r", "n"), ("iz", "ir", "in", "hn"), {"reset_after": True}, _GATE_FNS),
    "SimpleCell": _FlaxCell("SimpleRNN", ("",), ("i",), {}, {"activation": "activation_fn"}),
}


class _Flavor(NamedTuple):
    """Flax linen or Flax NNX, as `from_flax` reads a module of it."""

    nn: Any  # flax.linen or flax.nnx: the module classes
    name: str  # "nn" or "nnx", as messages spell the classes
    cells: Mapping[str, _FlaxCell]
    concatenate: Any  # Bidirectional's default merge_fn


# NNX's cells: linen's Dense names; its GRUCell has an input bias for r, z and n and no recurrent one.
_NNX_CELLS = {
    **_FLAX_CELLS,
    "GRUCell": _FlaxCell("GRU", ("z", "r", "n"), ("iz", "ir", "in"), {"reset_after": True}, _GATE_FNS),
}
# NNX's cells with one Linear per side, the gate blocks side by side in this order.
_NNX_FUSED = {"OptimizedLSTMCell": ("i", "f", "g", "o"), "GRUCell": ("r", "z", "n"), "SimpleCell": ("",)}


def from_flax(module: Any, params: Params | None = None) -> tuple[Layer, Params]:
    """A Flax linen or NNX LSTM, GRU or simple RNN and its params as `(layer, params)`, with equal outputs.

    `module` is a cell, an `RNN` of one (`reverse=True` becomes go_backwards;
    keep_order=True with reverse is not supported), or a `Bidirectional` of two with
    the default concatenating merge and a cell each, from `flax.linen` or `flax.nnx`.
    A linen module comes with `params`, its params or its variables `{"params": ...}`;
    a linen `nn.Bidirectional` sharing one cell between its directions is a ValueError
    saying how to convert it (as two cells holding the same params). An NNX module holds
    its params, so `params` is left out; one NNX cell in both directions becomes two
    copies of its params. A cell comes back as a jlstm layer with
    `return_sequences=True`, the cell's activation_fn as activation and gate_fn as
    recurrent_activation, as `RNN(cell)` runs it:

    - `LSTMCell` or `OptimizedLSTMCell` (linen's Dense params ii, if, ig, io without bias
      and hi, hf, hg, ho with bias; NNX's `OptimizedLSTMCell` has them side by side in
      `dense_i` and `dense_h`): an `LSTM`, bias the hidden side's.
    - linen's `nn.GRUCell` (ir, iz, in with bias, hr, hz without, hn with): a `GRU` with
      `reset_after=True` (Flax's n is its candidate), bias (2, 3U) with the rows
      `[iz, ir, in]` and `[0, 0, hn]`; Flax has no recurrent bias for z and r (it would
      add to the input ones), so the jlstm layer counts 2U params more. NNX's
      `nnx.GRUCell` has no recurrent bias at all (`dense_i` with bias, `dense_h`
      without): the rows `[iz, ir, in]` and zeros, 3U params more.
    - `SimpleCell` (i with bias, h without): a `SimpleRNN`; `residual=True` is not
      supported.

    A linen cell's initializers become the layer's; NNX's cells do not keep theirs, so
    the layer from one has jlstm's defaults (they act only if it is initialised again).

    The jlstm layer takes batch-major inputs: with `time_major=True`, transpose. Flax's
    LSTM carry is `(c, h)`; jlstm's `initial_state` and returned state are `(h, c)`. A
    GRU's and a simple cell's carry is `h`, as jlstm's.

    Flax's `seq_lengths` is jlstm's `lengths`: the outputs agree at each sequence's real
    steps (Flax computes on through the padding, jlstm holds the state there), and so do
    the final states. With `reverse=True`, Flax flips each sequence's real steps in place
    (reversed, then its padding), while jlstm, as Keras, flips the whole padded axis
    (padding first), so that its reversed outputs come `T - lengths` steps later; this puts
    them where Flax has them, at every real step:
    `jnp.take_along_axis(y, ((jnp.arange(T)[None] - lengths[:, None]) % T)[..., None], axis=1)`.
    (`keep_order=True` would flip them back, `jnp.flip(y, 1)`; a `Bidirectional` runs
    its backward RNN so, and the jlstm `Bidirectional` as well: there, the outputs agree at
    the real steps as they are.)

    Args:
        module: the linen or NNX module.
        params: a linen module's params or variables; None (the default) for an NNX module.

    Returns:
        The jlstm layer and its params.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> rnn = nn.RNN(nn.OptimizedLSTMCell(5))
    >>> variables = rnn.init(jax.random.key(0), jnp.ones((2, 7, 3)))
    >>> layer, params = from_flax(rnn, variables)
    >>> bool(jnp.allclose(layer.apply(params, jnp.ones((2, 7, 3))),
    ...                   rnn.apply(variables, jnp.ones((2, 7, 3))), atol=1e-5))
    True
    >>> from flax import nnx
    >>> layer, params = from_flax(nnx.RNN(nnx.GRUCell(3, 5, rngs=nnx.Rngs(0))))  # NNX: no params
    >>> layer.config["reset_after"], params["bias"].shape
    (True, (2, 15))
    """
    flavor = _flavor(module)
    if flavor.name == "nnx":
        if params is not None:
            raise ValueError(
                f"from_flax: expected no params for the NNX module {type(module).__name__} (it holds its own), "
                f"got {type(params).__name__}"
            )
        params = _nnx_params(module, flavor.nn)
    elif params is None:
        raise TypeError(
            f"from_flax: expected the params (or variables) of the linen module {type(module).__name__}, got None"
        )
    nn = flavor.nn
    if isinstance(params, Mapping) and set(params) == {"params"}:
        params = params["params"]
    if type(module) is nn.Bidirectional:
        if module.merge_fn is not flavor.concatenate:
            raise ValueError(
                f"from_flax: Bidirectional: expected the default concatenating merge_fn, got {module.merge_fn!r}"
            )
        rnns: tuple[Any, Any] = (module.forward_rnn, module.backward_rnn)  # Flax types them as a protocol
        for rnn in rnns:
            if type(rnn) is not nn.RNN:
                raise TypeError(
                    f"from_flax: expected an {flavor.name}.RNN in the Bidirectional, got {type(rnn).__name__}"
                )
        if flavor.name == "nn" and rnns[0].cell is rnns[1].cell:  # one RNN or one cell in both: one params
            raise ValueError(
                "from_flax: Bidirectional: expected a cell per direction (jlstm keeps params per direction), "
                "got one cell shared by the forward and backward RNNs; the same model with a cell each: "
                "from_flax(nn.Bidirectional(nn.RNN(cell), nn.RNN(cell.clone())), "
                "{'forward_rnn': p, 'backward_rnn': p}) with the shared p = params['forward_rnn']"
            )
        _expect_keys(params, ("forward_rnn", "backward_rnn"), "from_flax: Bidirectional")
        fwd, p_fwd = _from_flax_rnn(rnns[0], params["forward_rnn"], flavor, reverse=False)
        bwd, p_bwd = _from_flax_rnn(rnns[1], params["backward_rnn"], flavor, reverse=True)
        return Bidirectional(fwd, "concat", bwd), {"forward": p_fwd, "backward": p_bwd}
    if type(module) is nn.RNN:
        if module.reverse and module.keep_order:
            raise ValueError("from_flax: RNN: reverse=True with keep_order=True is not supported")
        return _from_flax_rnn(module, params, flavor, reverse=module.reverse)
    return _from_flax_cell(module, params, flavor)


def _flavor(module: Any) -> _Flavor:
    """Flax NNX for an `nnx.Module`, else linen."""
    from flax import nnx

    if isinstance(module, nnx.Module):
        from flax.nnx.nn.recurrent import _concatenate as nnx_concatenate

        return _Flavor(nnx, "nnx", _NNX_CELLS, nnx_concatenate)
    import flax.linen as nn
    from flax.linen.recurrent import _concatenate

    return _Flavor(nn, "nn", _FLAX_CELLS, _concatenate)


def _nnx_params(module: Any, nnx: Any) -> Any:
    """An NNX module's params in the tree linen keeps for the same module: a cell's Dense
    params by linen's names, `{"cell": ...}` for an RNN, `{"forward_rnn": ..., "backward_rnn":
    ...}` for a Bidirectional; `{}` for anything else (from_flax then names its type)."""
    kind = type(module).__name__
    if type(module) is nnx.Bidirectional:
        return {name: _nnx_params(getattr(module, name), nnx) for name in ("forward_rnn", "backward_rnn")}
    if type(module) is nnx.RNN:
        return {"cell": _nnx_params(module.cell, nnx)}
    if type(module) is nnx.LSTMCell:  # a Linear per gate; "if" is a keyword, so NNX names it if_
        names = [f"{side}{gate}" for side in "ih" for gate in _LSTM_CELL.gates]
        return {name: _linear_params(getattr(module, "if_" if name == "if" else name)) for name in names}
    if kind in _NNX_FUSED and type(module) is getattr(nnx, kind):
        gates = _NNX_FUSED[kind]
        return _gate_blocks(module.dense_i, "i", gates) | _gate_blocks(module.dense_h, "h", gates)
    return {}


def _gate_blocks(linear: Any, side: str, gates: Sequence[str]) -> dict[str, dict[str, jax.Array]]:
    """A fused `nnx.Linear`'s params as linen's Dense per gate: `side + gate` -> its blocks."""
    blocks = {key: jnp.split(value, len(gates), axis=-1) for key, value in _linear_params(linear).items()}
    return {f"{side}{gate}": {key: b[j] for key, b in blocks.items()} for j, gate in enumerate(gates)}


def _linear_params(linear: Any) -> dict[str, jax.Array]:
    """An `nnx.Linear`'s kernel, and its bias where it has one, as arrays."""
    params = {"kernel": linear.kernel.get_value()}
    if linear.bias is not None:
        params["bias"] = linear.bias.get_value()
    return params


def _expect_keys(params: Any, keys: Sequence[str], what: str) -> None:
    if not hasattr(params, "keys") or set(params) != set(keys):
        got = sorted(params) if hasattr(params, "keys") else type(params).__name__
        raise ValueError(f"{what}: expected params with keys {sorted(keys)}, got {got}")


def _from_flax_rnn(rnn: Any, params: Any, flavor: _Flavor, *, reverse: bool) -> tuple[Layer, Params]:
    _expect_keys(params, ("cell",), "from_flax: RNN")
    return _from_flax_cell(rnn.cell, params["cell"], flavor, go_backwards=reverse, unroll=rnn.unroll)


def _cell_arguments(cell: Any, flavor: _Flavor) -> dict[str, Any]:
    """The cell's units, and a linen cell's initializers; NNX's cells keep none (the layer
    takes jlstm's defaults)."""
    if flavor.name == "nnx":
        return {"units": cell.hidden_features}
    return {
        "units": cell.features,
        "kernel_initializer": cell.kernel_init,
        "recurrent_initializer": cell.recurrent_kernel_init,
        "bias_initializer": cell.bias_init,
    }


def _from_flax_cell(cell: Any, params: Any, flavor: _Flavor, **kwargs: Any) -> tuple[Layer, Params]:
    kind = type(cell).__name__
    if kind not in flavor.cells or type(cell) is not getattr(flavor.nn, kind):
        expected = ", ".join(flavor.cells)
        raise TypeError(f"from_flax: expected an {expected}, RNN or Bidirectional, got {kind}")
    flax_cell, what = flavor.cells[kind], f"from_flax: {kind}"
    if getattr(cell, "residual", False):
        raise ValueError(f"{what}: residual=True is not supported (expected False)")
    names = [f"{side}{gate}" for side in "ih" for gate in flax_cell.gates]
    _expect_keys(params, names, what)
    for name in names:
        _expect_keys(params[name], ("kernel", "bias") if name in flax_cell.biased else ("kernel",), f"{what} {name}")
    layer = RECURRENT[flax_cell.type_name](
        return_sequences=True,
        **{arg: getattr(cell, attribute) for arg, attribute in flax_cell.activations.items()},
        **_cell_arguments(cell, flavor),
        **flax_cell.fixed,
        **kwargs,
    )

    def gathered(side: str, key: str) -> jax.Array:
        """One side's `key` params of every gate in Keras's order, zeros for a bias it lacks."""
        dense = [params[f"{side}{gate}"] for gate in flax_cell.gates]
        zeros = lambda d: jnp.zeros_like(jnp.asarray(d["kernel"])[0])  # noqa: E731
        return jnp.concatenate([jnp.asarray(d[key]) if key in d else zeros(d) for d in dense], axis=-1)

    bias = gathered("i", "bias"), gathered("h", "bias")
    return layer, {
        "kernel": gathered("i", "kernel"),
        "recurrent_kernel": gathered("h", "kernel"),
        "bias": jnp.stack(bias) if layer.spec.cell.split_bias else bias[0] + bias[1],
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

    FlaxLayer.__module__ = "jlstm.interop"  # where it is found, as jlstm.interop.FlaxLayer
    return FlaxLayer
