"""Flax linen: `from_flax`, and the class behind `jlstm.interop.FlaxLayer`. Flax is imported on first use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jlstm.combinators import Bidirectional
from jlstm.layers import LSTM, Layer, Params

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

    FlaxLayer.__module__ = "jlstm.interop"  # where it is found, as jlstm.interop.FlaxLayer
    return FlaxLayer
