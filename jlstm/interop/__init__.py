"""Weights in and out: Keras 3, PyTorch and Flax LSTMs, GRUs and simple RNNs as jlstm layers, and back.

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

from typing import Any

from jlstm.interop._flax import _flax_layer_class, from_flax
from jlstm.interop._keras import from_keras, to_keras
from jlstm.interop._torch import from_torch, to_torch

# FlaxLayer is made on first access, by __getattr__.
__all__ = ["FlaxLayer", "from_flax", "from_keras", "from_torch", "to_keras", "to_torch"]  # noqa: F822


def __getattr__(name: str) -> Any:
    # FlaxLayer subclasses flax's Module: built on first use so that importing jlstm
    # does not import flax.
    if name == "FlaxLayer":
        globals()["FlaxLayer"] = _flax_layer_class()
        return globals()["FlaxLayer"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
