"""jlstm: a functional LSTM library for JAX, exact where Keras is the reference.

Layers are `(init, apply)` pairs of pure functions; params are plain dicts with Keras's
names and shapes.

>>> import jax, jax.numpy as jnp
>>> import jlstm
>>> layer = jlstm.Bidirectional(jlstm.LSTM(5, return_sequences=True))
>>> out_shape, params = layer.init(jax.random.key(0), (None, 11, 3))
>>> out_shape, jlstm.count_params(params)
((None, 11, 10), 360)
>>> jax.jit(layer.apply)(params, jnp.ones((4, 11, 3))).shape
(4, 11, 10)
"""

from jlstm import constraints, cudnn, interop, regularizers, stateful
from jlstm.activations import get_activation
from jlstm.cell import gru_step, lstm_gates, lstm_step, simple_rnn_step
from jlstm.checkpoint import load, save
from jlstm.combinators import Bidirectional, Sequential
from jlstm.constraints import apply_constraints
from jlstm.initializers import get_initializer
from jlstm.layers import GRU, LSTM, ApplyFn, Dense, Dropout, InitFn, Layer, Masking, SimpleRNN
from jlstm.precision import DTypePolicy, dtype_policy
from jlstm.regularizers import regularization_loss
from jlstm.summary import Namer, count_params, summary
from jlstm.tuning import config

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "ApplyFn",
    "Bidirectional",
    "DTypePolicy",
    "Dense",
    "Dropout",
    "InitFn",
    "Layer",
    "Masking",
    "Namer",
    "Sequential",
    "SimpleRNN",
    "apply_constraints",
    "config",
    "constraints",
    "count_params",
    "cudnn",
    "dtype_policy",
    "get_activation",
    "get_initializer",
    "gru_step",
    "interop",
    "load",
    "lstm_gates",
    "lstm_step",
    "regularization_loss",
    "regularizers",
    "save",
    "simple_rnn_step",
    "stateful",
    "summary",
]
