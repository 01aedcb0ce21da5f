"""Flax NNX: the class behind `jlstm.interop.NNXLayer`. Flax is imported on first use.

(`from_flax` reads NNX's recurrent modules as well as linen's: `_flax.py`.)
"""

from __future__ import annotations

from typing import Any

import jax

from jlstm import _checks, checkpoint
from jlstm.interop._common import _given
from jlstm.layers import Layer, Params, Shape


def _nnx_layer_class() -> type:
    from flax import nnx

    def is_variable(node: Any) -> bool:
        return isinstance(node, nnx.Variable)

    class NNXLayer(nnx.Module):
        """Any jlstm layer as a Flax NNX Module, its params `nnx.Param`s in the layer's own tree.

        `NNXLayer(layer, input_shape, *, rngs)` initialises the layer's params for
        `input_shape` ((batch, timesteps, features) for a recurrent layer; None for a size
        known only at the call) with a key from `rngs.params()`. The params live under the
        attribute `jlstm`, in the tree `layer.init` makes (a Sequential's tuple is indexed
        0, 1, ... in `nnx.state`), each leaf an `nnx.Param`: `nnx.Optimizer(model, tx,
        wrt=nnx.Param)`, `nnx.value_and_grad` and `nnx.jit` train them as any NNX
        module's, and `jlstm.count_params(nnx.state(module, nnx.Param))` is the layer's
        count. `module.params` is the plain jlstm tree (arrays, for `layer.apply` or
        `jlstm.save`) and `module.set_params(tree)` writes one back into the `nnx.Param`s.

        Dropout follows `nnx.Dropout`: it acts while `deterministic` is False (the
        default; `module.eval()` sets it True and `module.train()` False, or pass
        `deterministic=` to the call), drawing its keys from the `rng_collection` stream
        ("dropout") of the `rngs` given here, or of the call's `rngs=`. One positional
        argument, so it goes in `nnx.Sequential`.

        Args:
            layer: the jlstm layer.
            input_shape: the input shape to build the params for, as `layer.init` takes it.
            rngs: the `nnx.Rngs` whose "params" stream makes the params and whose
                `rng_collection` stream dropout draws from.
            deterministic: False for dropout at each call (nnx.Dropout's default), True
                for none, None to require `deterministic=` at the call.
            rng_collection: the stream dropout draws from.

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jlstm
        >>> model = nnx.Sequential(NNXLayer(jlstm.LSTM(4), (None, 7, 3), rngs=nnx.Rngs(0)),
        ...                        nnx.Linear(4, 1, rngs=nnx.Rngs(1)))
        >>> model(jnp.ones((2, 7, 3))).shape
        (2, 1)
        >>> jlstm.count_params(nnx.state(model.layers[0], nnx.Param))
        128
        """

        def __init__(
            self,
            layer: Layer,
            input_shape: Shape,
            *,
            rngs: nnx.Rngs,
            deterministic: bool | None = False,
            rng_collection: str = "dropout",
        ) -> None:
            if not isinstance(layer, Layer):
                raise TypeError(f"NNXLayer: expected a jlstm layer, got {type(layer).__name__}")
            if not isinstance(rngs, nnx.Rngs):
                raise TypeError(f"NNXLayer: expected rngs as an nnx.Rngs, got {type(rngs).__name__}")
            if deterministic is not None:
                _checks.flag(deterministic, "NNXLayer deterministic")
            if not isinstance(rng_collection, str):
                raise TypeError(f"NNXLayer: expected rng_collection as a str, got {type(rng_collection).__name__}")
            self.layer = layer
            self.deterministic = deterministic
            self.rng_collection = rng_collection
            self.rngs = rngs[rng_collection].fork()
            _, params = layer.init(rngs.params(), input_shape)
            self.jlstm = nnx.data(jax.tree_util.tree_map(nnx.Param, params))

        @property
        def params(self) -> Params:
            """The layer's params as a plain jlstm tree of arrays (the `nnx.Param`s' values)."""
            return jax.tree_util.tree_map(lambda v: v.get_value(), self.jlstm, is_leaf=is_variable)

        def set_params(self, params: Params) -> None:
            """Writes `params` into the `nnx.Param`s, e.g. `jlstm.load(path, like=module.params)`.

            Args:
                params: a tree like `module.params`: the same containers, shapes and dtypes
                    (else a ValueError naming the first difference).
            """
            params = checkpoint.restore(params, self.params, "NNXLayer params")
            jax.tree_util.tree_map(lambda v, p: v.set_value(p), self.jlstm, params, is_leaf=is_variable)

        def __call__(
            self,
            x: Any,
            *,
            mask: Any = None,
            lengths: Any = None,
            initial_state: Any = None,
            deterministic: bool | None = None,
            rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
            **kwargs: Any,
        ) -> Any:
            """The layer's `apply` on `x` with the module's params.

            Args:
                x: the inputs, as the layer's `apply` takes them.
                mask: a bool (batch, timesteps) mask, or None.
                lengths: int (batch,) lengths, or None (recurrent layers and Sequential).
                initial_state: the initial states, or None (recurrent layers).
                deterministic: True for no dropout, False for dropout; None takes the
                    module's `deterministic`.
                rngs: where dropout's key comes from instead of the module's stream: an
                    `nnx.Rngs` (its `rng_collection` stream), an `nnx.RngStream` or a key.
                **kwargs: more keywords for the layer's `apply` (`return_state` for a
                    `from_torch` layer).

            Returns:
                The layer's outputs.
            """
            if deterministic is None:
                deterministic = self.deterministic
            if deterministic is None:
                raise ValueError(
                    "NNXLayer: expected deterministic=True or False at the call (the module's is None), got None"
                )
            training = not _checks.flag(deterministic, "NNXLayer deterministic")
            rng = self._key(rngs) if training else None
            keywords = _given(mask=mask, lengths=lengths, initial_state=initial_state)
            return self.layer.apply(self.params, x, training=training, rng=rng, **keywords, **kwargs)

        def _key(self, rngs: Any) -> jax.Array:
            if rngs is None:
                return self.rngs()
            if isinstance(rngs, nnx.Rngs):
                return rngs[self.rng_collection]()
            if isinstance(rngs, nnx.RngStream):
                return rngs()
            return _checks.prng_key(rngs, "NNXLayer rngs")

        def set_view(self, deterministic: bool | None = None) -> None:
            """What `nnx.view(model, deterministic=...)` sets, as for `nnx.Dropout`.

            Args:
                deterministic: if True, no dropout; None leaves it as it is.
            """
            if deterministic is not None:
                self.deterministic = _checks.flag(deterministic, "NNXLayer deterministic")

    NNXLayer.__module__ = "jlstm.interop"  # where it is found, as jlstm.interop.NNXLayer
    return NNXLayer
