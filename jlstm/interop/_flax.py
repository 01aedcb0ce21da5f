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


def from_flax(module: Any, params: Params) -> tuple[Layer, Params]:
    """A Flax linen LSTM, GRU or simple RNN and its params as `(layer, params)`, with equal outputs.

    `module` is a cell, an `nn.RNN` of one (`reverse=True` becomes go_backwards;
    keep_order=True with reverse is not supported), or an `nn.Bidirectional` of two with
    the default concatenating merge and a cell each (one cell shared by both directions is
    a ValueError saying how to convert it: as two cells holding the same params). `params`
    is the module's params, or its variables `{"params": ...}`. A cell comes back as a
    jlstm layer with `return_sequences=True`, the cell's activation_fn as activation and
    gate_fn as recurrent_activation, as `nn.RNN(cell)` runs it:

    - `nn.LSTMCell` or `nn.OptimizedLSTMCell` (Dense params ii, if, ig, io without bias
      and hi, hf, hg, ho with bias): an `LSTM`, bias the hidden side's.
    - `nn.GRUCell` (ir, iz, in with bias, hr, hz without, hn with): a `GRU` with
      `reset_after=True` (Flax's n is its candidate), bias (2, 3U) with the rows
      `[iz, ir, in]` and `[0, 0, hn]`; Flax has no recurrent bias for z and r (it would
      add to the input ones), so the jlstm layer counts 2U params more.
    - `nn.SimpleCell` (i with bias, h without): a `SimpleRNN`; `residual=True` is not
      supported.

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
    (`keep_order=True` would flip them back, `jnp.flip(y, 1)`; an `nn.Bidirectional` runs
    its backward RNN so, and the jlstm `Bidirectional` as well: there, the outputs agree at
    the real steps as they are.)

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
        rnns: tuple[Any, Any] = (module.forward_rnn, module.backward_rnn)  # Flax types them as a protocol
        for rnn in rnns:
            if type(rnn) is not nn.RNN:
                raise TypeError(f"from_flax: expected an nn.RNN in the Bidirectional, got {type(rnn).__name__}")
        if rnns[0].cell is rnns[1].cell:  # one RNN or one cell in both: one params
            raise ValueError(
                "from_flax: Bidirectional: expected a cell per direction (jlstm keeps params per direction), "
                "got one cell shared by the forward and backward RNNs; the same model with a cell each: "
                "from_flax(nn.Bidirectional(nn.RNN(cell), nn.RNN(cell.clone())), "
                "{'forward_rnn': p, 'backward_rnn': p}) with the shared p = params['forward_rnn']"
            )
        _expect_keys(params, ("forward_rnn", "backward_rnn"), "from_flax: Bidirectional")
        fwd, p_fwd = _from_flax_rnn(rnns[0], params["forward_rnn"], nn, reverse=False)
        bwd, p_bwd = _from_flax_rnn(rnns[1], params["backward_rnn"], nn, reverse=True)
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
    _expect_keys(params, ("cell",), "from_flax: RNN")
    return _from_flax_cell(rnn.cell, params["cell"], nn, go_backwards=reverse, unroll=rnn.unroll)


def _from_flax_cell(cell: Any, params: Any, nn: Any, **kwargs: Any) -> tuple[Layer, Params]:
    kind = type(cell).__name__
    if kind not in _FLAX_CELLS or type(cell) is not getattr(nn, kind):
        expected = ", ".join(_FLAX_CELLS)
        raise TypeError(f"from_flax: expected an {expected}, RNN or Bidirectional, got {kind}")
    flax_cell, what = _FLAX_CELLS[kind], f"from_flax: {kind}"
    if getattr(cell, "residual", False):
        raise ValueError(f"{what}: residual=True is not supported (expected False)")
    names = [f"{side}{gate}" for side in "ih" for gate in flax_cell.gates]
    _expect_keys(params, names, what)
    for name in names:
        _expect_keys(params[name], ("kernel", "bias") if name in flax_cell.biased else ("kernel",), f"{what} {name}")
    layer = RECURRENT[flax_cell.type_name](
        cell.features,
        return_sequences=True,
        **{arg: getattr(cell, attribute) for arg, attribute in flax_cell.activations.items()},
        kernel_initializer=cell.kernel_init,
        recurrent_initializer=cell.recurrent_kernel_init,
        bias_initializer=cell.bias_init,
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
