"""One function per library: for inputs `x` (B, T, F) it returns a `Contender`, or raises `SkipPeer`.

Every contender computes the same thing: an LSTM of `units` over `x` returning the whole
sequence (concatenated directions when bidirectional), and a training step that is the value
and gradient w.r.t. the params of the mean square of that sequence. jlstm is called through
its public API only (`jlstm.LSTM`, `jlstm.Bidirectional`, `init`, `apply`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jlstm
from jlstm import tuning


class SkipPeer(Exception):
    """A peer that cannot run here; the message says why."""


class Contender(NamedTuple):
    """Blocking, argument-free calls of one library on one shape."""

    forward: Callable[[], Any]
    train: Callable[[], Any]
    jitted: bool  # whether the first call compiles (JAX), so first minus steady is compile time


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def require(module: str) -> Any:
    """Imports `module`, or raises SkipPeer saying it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise SkipPeer(f"{module} is not installed ({error})") from error


def mean_square(y: Any) -> Any:
    """The training loss: mean of the squared outputs."""
    return (y * y).mean()


def jax_contender(apply: Callable[[Any, jax.Array], jax.Array], params: Any, x: np.ndarray) -> Contender:
    """Forward and value-and-grad, both jitted, of a pure `apply(params, x)`."""
    inputs = jnp.asarray(x)
    forward = jax.jit(apply)
    train = jax.jit(jax.value_and_grad(lambda p, x: mean_square(apply(p, x))))
    return Contender(
        forward=lambda: jax.block_until_ready(forward(params, inputs)),
        train=lambda: jax.block_until_ready(train(params, inputs)),
        jitted=True,
    )


def jlstm_layer(units: int, bidirectional: bool, **options: Any) -> jlstm.Layer:
    """jlstm's LSTM (or Bidirectional LSTM, concatenated) returning sequences."""
    layer = jlstm.LSTM(units, return_sequences=True, **options)
    return jlstm.Bidirectional(layer) if bidirectional else layer


def jlstm_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """jlstm through its public `init`/`apply`."""
    layer = jlstm_layer(units, bidirectional)
    _, params = layer.init(jax.random.key(0), x.shape)
    return jax_contender(layer.apply, params, x)


def jlstm_bf16_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """jlstm under Keras's "mixed_bfloat16" policy: float32 params and inputs, the scan in
    bfloat16, float32 gradients."""
    layer = jlstm_layer(units, bidirectional, dtype="mixed_bfloat16")
    _, params = layer.init(jax.random.key(0), x.shape)
    return jax_contender(layer.apply, params, x)


def jlstm_static_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """jlstm with the tuner's static rule instead of the tuned forms: what tuning buys on
    this machine. A layer of its own, compiled here while the forms are forced (forms are
    fixed when a function is traced)."""
    layer = jlstm_layer(units, bidirectional)
    _, params = layer.init(jax.random.key(0), x.shape)
    contender = jax_contender(layer.apply, params, x)
    with forms(*static_forms(signature(x.shape, units, bidirectional))):
        contender.forward()
        contender.train()
    return contender._replace(jitted=False)


def signature(shape: tuple[int, int, int], units: int, bidirectional: bool) -> tuning.Signature:
    """The tuner's signature of jlstm's scan for inputs of `shape`."""
    return tuning.Signature(2 if bidirectional else 1, *shape, units, "float32")


def static_forms(sig: tuning.Signature) -> tuple[str, str]:
    """The static rule's (forward, backward) forms for this signature."""
    return tuning.default_form("forward", sig), tuning.default_form("backward", sig)


@contextlib.contextmanager
def forms(forward: str | None, backward: str | None) -> Iterator[None]:
    """jlstm.config with these forms forced while the block traces, then as it was."""
    saved = {"forward_form": jlstm.config.forward_form, "backward_form": jlstm.config.backward_form}
    jlstm.config.update(forward_form=forward, backward_form=backward)
    try:
        yield
    finally:
        jlstm.config.update(**saved)


def torch_peer(x: np.ndarray, units: int, bidirectional: bool, dtype: str = "float32") -> Contender:
    """`torch.nn.LSTM` on CPU with one thread per core; forward under `no_grad`; its params
    and inputs in `dtype`."""
    torch = require("torch")
    torch.set_num_threads(cpu_count())
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(x.shape[-1], units, batch_first=True, bidirectional=bidirectional).to(getattr(torch, dtype))
    inputs = torch.from_numpy(x).to(getattr(torch, dtype))
    params = list(lstm.parameters())

    def forward() -> Any:
        with torch.no_grad():
            return lstm(inputs)[0]

    def train() -> Any:
        loss = mean_square(lstm(inputs)[0])
        return loss, torch.autograd.grad(loss, params)

    return Contender(forward, train, jitted=False)


def torch_bf16_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """`torch.nn.LSTM` in bfloat16 (params and inputs; torch's CPU LSTM has no mixed form)."""
    return torch_peer(x, units, bidirectional, "bfloat16")


def flax_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """Flax linen `nn.RNN(nn.OptimizedLSTMCell)`, in `nn.Bidirectional` (concat) when bidirectional."""
    nn = require("flax.linen")
    rnn = lambda: nn.RNN(nn.OptimizedLSTMCell(units))  # noqa: E731
    model = nn.Bidirectional(rnn(), rnn()) if bidirectional else rnn()
    params = model.init(jax.random.key(0), jnp.asarray(x))
    return jax_contender(model.apply, params, x)


def keras_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """Keras 3's LSTM on the JAX backend through `stateless_call`, jitted."""
    os.environ.setdefault("KERAS_BACKEND", "jax")  # only has effect before keras's first import
    keras = require("keras")
    if keras.backend.backend() != "jax":
        raise SkipPeer(f"keras runs on the {keras.backend.backend()} backend, not jax")
    lstm = keras.layers.LSTM(units, return_sequences=True)
    layer = keras.layers.Bidirectional(lstm) if bidirectional else lstm
    layer.build(x.shape)
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def apply(trainable: list[jax.Array], inputs: jax.Array) -> jax.Array:
        return layer.stateless_call(trainable, non_trainable, inputs)[0]

    return jax_contender(apply, [v.value for v in layer.trainable_variables], x)


def equinox_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """Equinox `nn.LSTMCell` in a `lax.scan` over time, vmapped over the batch (its documented pattern)."""
    eqx = require("equinox")
    keys = jax.random.split(jax.random.key(0), 2 if bidirectional else 1)
    cells = [eqx.nn.LSTMCell(x.shape[-1], units, key=key) for key in keys]
    params, static = eqx.partition(cells, eqx.is_array)

    def apply(params: Any, inputs: jax.Array) -> jax.Array:
        cells = eqx.combine(params, static)
        outputs = [_equinox_sequence(cells[0], inputs)]
        if bidirectional:
            outputs.append(jnp.flip(_equinox_sequence(cells[1], jnp.flip(inputs, 1)), 1))
        return jnp.concatenate(outputs, axis=-1)

    return jax_contender(apply, params, x)


def _equinox_sequence(cell: Any, inputs: jax.Array) -> jax.Array:
    def one_sequence(sequence: jax.Array) -> jax.Array:
        def step(state, x_t):
            h, c = cell(x_t, state)
            return (h, c), h

        zeros = jnp.zeros(cell.hidden_size, sequence.dtype)
        return lax.scan(step, (zeros, zeros), sequence)[1]

    return jax.vmap(one_sequence)(inputs)


PEERS: dict[str, Callable[[np.ndarray, int, bool], Contender]] = {
    "jlstm": jlstm_peer,
    "torch": torch_peer,
    "flax": flax_peer,
    "keras": keras_peer,
    "equinox": equinox_peer,
    "jlstm-static": jlstm_static_peer,
    "jlstm-bf16": jlstm_bf16_peer,
    "torch-bf16": torch_bf16_peer,
}

LABELS = {
    "jlstm": "jlstm LSTM / Bidirectional",
    "torch": "torch.nn.LSTM (CPU)",
    "flax": "flax nn.RNN(OptimizedLSTMCell) / nn.Bidirectional",
    "keras": "keras.layers.LSTM, JAX backend, stateless_call under jit",
    "equinox": "equinox nn.LSTMCell in lax.scan, vmapped",
    "jlstm-static": "jlstm with the static rule's forms instead of the tuned ones",
    "jlstm-bf16": "jlstm LSTM(dtype='mixed_bfloat16'): float32 params, bfloat16 compute",
    "torch-bf16": "torch.nn.LSTM (CPU) in bfloat16, params and inputs",
}
