"""Equinox: `from_equinox`, and the class behind `jlstm.interop.EquinoxLayer`. Equinox is
imported on first use."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jlstm import _checks
from jlstm.interop._common import _abstract_params, _given
from jlstm.interop._torch import _TORCH_KINDS, _from_torch_direction
from jlstm.layers import RECURRENT, Layer, Params, Shape

# Equinox's cells keep torch's layout: weight_ih (G * H, F), weight_hh (G * H, H), gates
# i, f, g, o (LSTM) and r, z, n (GRU), so from_torch's reading of one direction serves.
_NAMES = {"kernel": "weight_ih", "recurrent_kernel": "weight_hh", "bias": "bias_ih", "bias_hh": "bias_hh"}


def from_equinox(cell: Any) -> tuple[Layer, Params]:
    """An `eqx.nn.LSTMCell` or `eqx.nn.GRUCell` as `(layer, params)`, with equal outputs.

    The layer is a jlstm `LSTM` or `GRU(reset_after=True)` with `return_sequences=True` and
    the cell's `use_bias`: its outputs are the `h` of each step of the cell scanned over
    time (`jax.lax.scan`, one example at a time; jlstm runs a batch). `kernel =
    weight_ih.T` and `recurrent_kernel = weight_hh.T`, the gate blocks in Keras's order:
    Equinox's LSTM i, f, g, o is Keras's i, f, c, o; its GRU r, z, n becomes z, r, h. An
    LSTM's bias is the cell's; a GRU's (2, 3U) has the rows `[bias]` (reordered) and `[0,
    0, bias_n]`: Equinox's `bias_n` is the candidate's recurrent bias, inside the reset
    gate's product as in Keras's `reset_after` GRU (2U params more than the cell's, the
    zeros). Equinox's state `(h, c)` (an LSTM) or `h` is jlstm's `initial_state`, with a
    batch axis in front.

    Args:
        cell: the Equinox cell.

    Returns:
        The jlstm layer and its params.

    Raises:
        TypeError: `cell` is not an `eqx.nn.LSTMCell` or `eqx.nn.GRUCell`.

    >>> import jax, equinox as eqx
    >>> layer, params = from_equinox(eqx.nn.GRUCell(3, 5, key=jax.random.key(0)))
    >>> layer.config["reset_after"], params["bias"].shape
    (True, (2, 15))
    """
    import equinox as eqx

    kinds = {eqx.nn.LSTMCell: "LSTM", eqx.nn.GRUCell: "GRU"}
    if type(cell) not in kinds:
        raise TypeError(f"from_equinox: expected an eqx.nn.LSTMCell or eqx.nn.GRUCell, got {type(cell).__name__}")
    type_name = kinds[type(cell)]
    kind = _TORCH_KINDS[type_name]
    layer = RECURRENT[type_name](cell.hidden_size, return_sequences=True, use_bias=cell.use_bias, **dict(kind.flags))
    state = {name: np.asarray(getattr(cell, name)) for name in ("weight_ih", "weight_hh")}
    if cell.use_bias:
        state["bias_ih"] = np.asarray(cell.bias)
        # a GRU's bias_n is n's recurrent bias (torch's bias_hh for n, zeros for r and z)
        zeros = np.zeros_like(state["bias_ih"])
        state["bias_hh"] = (
            zeros if type_name == "LSTM" else np.concatenate([zeros[: 2 * cell.hidden_size], cell.bias_n])
        )
    like = _abstract_params(layer, cell.input_size)
    return layer, _from_torch_direction(state, _NAMES, kind.order, like)


def _equinox_layer_class() -> type:
    import equinox as eqx

    class EquinoxLayer(eqx.Module):
        """Any jlstm layer as an Equinox Module: the layer a static field, its params a field.

        `EquinoxLayer(layer, input_shape, *, key)` initialises the layer's params for
        `input_shape` ((batch, timesteps, features) for a recurrent layer; None for a size
        known only at the call) with `key`. `module.params` is the plain jlstm tree, so
        `eqx.filter_jit`, `eqx.filter_grad` and optax train it as any Equinox module, and
        `jlstm.save(path, module.params)` saves it; `eqx.tree_at(lambda m: m.params,
        module, jlstm.load(path, like=module.params))` puts one back.

        The call takes a batch, `(batch, timesteps, features)`, as jlstm layers do, where
        Equinox's own layers take one example: `x` of rank 2 `(timesteps, features)` is one
        example too (its `mask` (timesteps,), `lengths` a scalar, `initial_state`'s arrays
        (units,): each gets a batch axis of 1 in front, and the outputs lose it), so
        `jax.vmap(module)` runs a batch the Equinox way (with a key per example for
        dropout). Dropout follows `eqx.nn.Dropout`: it acts unless `inference` is True
        (`eqx.nn.inference_mode(model)` sets it, or pass `inference=` to the call), and
        then needs a `key`.

        Args:
            layer: the jlstm layer.
            input_shape: the input shape to build the params for, as `layer.init` takes it.
            key: the PRNG key the params are made with.
            inference: True for no dropout.

        >>> import jax, jax.numpy as jnp, equinox as eqx
        >>> import jlstm
        >>> model = EquinoxLayer(jlstm.LSTM(4), (None, 7, 3), key=jax.random.key(0))
        >>> eqx.filter_jit(model)(jnp.ones((2, 7, 3))).shape, jax.vmap(model)(jnp.ones((2, 7, 3))).shape
        ((2, 4), (2, 4))
        """

        layer: Layer = eqx.field(static=True)
        params: Params
        inference: bool

        def __init__(self, layer: Layer, input_shape: Shape, *, key: jax.Array, inference: bool = False) -> None:
            if not isinstance(layer, Layer):
                raise TypeError(f"EquinoxLayer: expected a jlstm layer, got {type(layer).__name__}")
            self.inference = _checks.flag(inference, "EquinoxLayer inference")
            self.layer = layer
            self.params = layer.init(key, input_shape)[1]

        def __call__(
            self,
            x: Any,
            *,
            mask: Any = None,
            lengths: Any = None,
            initial_state: Any = None,
            key: jax.Array | None = None,
            inference: bool | None = None,
            **kwargs: Any,
        ) -> Any:
            """The layer's `apply` on `x` (a batch, or one example) with the module's params.

            Args:
                x: the inputs: a batch as the layer's `apply` takes it, or one example
                    without the batch axis (rank 2).
                mask: a bool mask ((batch, timesteps), or (timesteps,) for one example), or None.
                lengths: int lengths ((batch,), or a scalar for one example), or None
                    (recurrent layers and Sequential).
                initial_state: the initial states, or None (recurrent layers).
                key: the PRNG key dropout draws from (needed where dropout acts).
                inference: True for no dropout; None takes the module's `inference`.
                **kwargs: more keywords for the layer's `apply`, as they are.

            Returns:
                The layer's outputs (for one example, without the batch axis).
            """
            if inference is None:
                inference = self.inference
            training = not _checks.flag(inference, "EquinoxLayer inference")
            keywords = _given(mask=mask, lengths=lengths, initial_state=initial_state)
            if np.ndim(x) != 2:
                return self.layer.apply(self.params, x, training=training, rng=key, **keywords, **kwargs)
            batched = jax.tree_util.tree_map(lambda a: jax.numpy.asarray(a)[None], (x, keywords))
            out = self.layer.apply(self.params, batched[0], training=training, rng=key, **batched[1], **kwargs)
            return jax.tree_util.tree_map(lambda a: a[0], out)

    EquinoxLayer.__module__ = "jlstm.interop"  # where it is found, as jlstm.interop.EquinoxLayer
    return EquinoxLayer
