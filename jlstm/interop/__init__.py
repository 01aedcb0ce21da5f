"""Weights in and out: Keras 3, PyTorch, Flax (linen and NNX) and Equinox LSTMs, GRUs and
simple RNNs as jlstm layers, and back; jlstm layers inside Flax and Equinox models.

Each `from_*` returns `(layer, params)`: a jlstm layer with the same configuration and
the other library's weights in jlstm's (Keras's) layout, so `layer.apply(params, x)`
gives the same outputs. Keras, PyTorch, Flax and Equinox are imported only when used.

>>> import torch
>>> import jlstm
>>> module = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
>>> layer, params = jlstm.interop.from_torch(module)
>>> [sub.type_name for sub in layer.sublayers], jlstm.count_params(params)
(['LSTM', 'LSTM'], 400)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jlstm.interop._equinox import _equinox_layer_class, from_equinox
from jlstm.interop._flax import _flax_layer_class, from_flax
from jlstm.interop._keras import from_keras, to_keras
from jlstm.interop._nnx import _nnx_layer_class
from jlstm.interop._torch import from_torch, to_torch

# FlaxLayer, NNXLayer and EquinoxLayer are made on first access, by __getattr__.
__all__ = [  # noqa: F822
    "EquinoxLayer",
    "FlaxLayer",
    "NNXLayer",
    "from_equinox",
    "from_flax",
    "from_keras",
    "from_torch",
    "to_keras",
    "to_torch",
]

# Each subclasses its library's Module: built on first use, so that importing jlstm imports
# neither Flax nor Equinox.
_LAZY_CLASSES: dict[str, Callable[[], type]] = {
    "FlaxLayer": _flax_layer_class,
    "NNXLayer": _nnx_layer_class,
    "EquinoxLayer": _equinox_layer_class,
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_CLASSES:
        globals()[name] = _LAZY_CLASSES[name]()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
