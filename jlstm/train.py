"""Training, small and functional: a jitted step from a layer, a loss and an optax
optimizer, and `fit`, which loops it over shuffled epochs and returns a history.

Everything is pure: state goes in and out as arguments, shuffling and dropout draw from
the `rng` you pass, and the same seed gives the same params bit for bit on one machine.
With more than one device, batches are sharded over a `jax.sharding.Mesh` and params
replicated; the code you write is the same.

>>> import jax, numpy as np, optax
>>> import jlstm
>>> from jlstm import train
>>> model = jlstm.Sequential([jlstm.LSTM(4), jlstm.Dense(3)])
>>> _, params = model.init(jax.random.key(0), (None, 5, 2))
>>> x = np.random.default_rng(0).normal(size=(40, 5, 2)).astype(np.float32)
>>> y = (x[:, -1, 0] > 0).astype(np.int32)
>>> params, history = train.fit(model, params, optax.adam(1e-2), (x, y),
...                             loss=train.sparse_categorical_crossentropy,
...                             metrics={"accuracy": train.accuracy},
...                             epochs=3, batch_size=16, rng=jax.random.key(1))
>>> sorted(history), len(history["loss"])
(['accuracy', 'loss'], 3)
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jlstm import _checks, _weights
from jlstm._weights import penalty_or_none
from jlstm.checkpoint import load, restore, save
from jlstm.constraints import apply_constraints
from jlstm.layers import Layer, Params
from jlstm.summary import abstract_init

# (outputs, targets) -> per-example values (batch,) or per-step values (batch, timesteps).
Loss = Callable[[jax.Array, jax.Array], jax.Array]
Metrics = Mapping[str, Loss]
# (x, y), (x, y, mask) or (x, y, lengths): mask bool (batch, timesteps), lengths int (batch,), or None
Data = Sequence[Any]
# Which params train: None (all), a bool, a pytree prefix of bools over the params (lists and
# tuples alike: [False, True] for a Sequential of two layers), or (path, leaf) -> bool.
Trainable = Any
# Metric name -> per-epoch means; and "stopped" -> why, where fit stopped at a non-finite loss.
History = dict[str, list[float] | str]
PathLike = str | os.PathLike
# eval_step(params, x, y, mask=None, weight=None) -> the batch's weighted means
EvalStep = Callable[..., dict[str, jax.Array]]
BATCH_AXIS = "batch"
STOPPED = "stopped"


class DivergenceWarning(RuntimeWarning):
    """`fit` met a non-finite training loss or params and stopped; its history says where."""


class ResumeError(ValueError):
    """`fit`'s `resume_from` is not a checkpoint that this run can continue from."""


class TrainState(NamedTuple):
    """Where a `fit` run stands after an epoch: what `checkpoint_to` saves (with `jlstm.save`,
    after every epoch) and `resume_from` continues from. The rest of the run (data, loss,
    optimizer, batch size, epochs) is `fit`'s arguments: resume with the same ones."""

    params: Params
    opt_state: optax.OptState
    epoch: int  # epochs finished
    rng: jax.Array  # the key the next epoch splits
    history: History


def class_label_loss(loss: Loss) -> Loss:
    """`loss`, declared as one of integer class labels indexing the outputs' last axis, as
    `sparse_categorical_crossentropy` is: `fit` and `evaluate` then check the labels' dtype,
    shape and range against the model before running it.

    >>> import jax.numpy as jnp
    >>> hinge = class_label_loss(lambda logits, labels: jnp.maximum(0, 1 - logits[..., 0] * labels))
    >>> hinge.class_labels
    True
    """

    @functools.wraps(loss)
    def declared(outputs: jax.Array, labels: jax.Array) -> jax.Array:
        return loss(outputs, labels)

    declared.class_labels = True  # type: ignore[attr-defined]  # the mark `_is_class_label_loss` reads
    return declared


@class_label_loss
def sparse_categorical_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of integer `labels` under `logits` on the last axis.

    Args:
        logits: unnormalized log-probabilities (..., classes).
        labels: the integer classes (...).

    Returns:
        The cross-entropy per example (...).

    Examples:
        >>> import jax.numpy as jnp
        >>> sparse_categorical_crossentropy(jnp.zeros((2, 4)), jnp.array([0, 3])).round(4)
        Array([1.3863, 1.3863], dtype=float32)
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the argmax of `logits` on the last axis is the label, else 0.0.

    Args:
        logits: scores (..., classes).
        labels: the integer classes (...).

    Returns:
        1.0 where the prediction is right, else 0.0: float32 (...).

    Examples:
        >>> import jax.numpy as jnp
        >>> accuracy(jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([1, 1]))
        Array([1., 0.], dtype=float32)
    """
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error averaged over the last axis, as in Keras.

    Args:
        predictions: the model's outputs (..., features).
        targets: the targets, shaped as `predictions`.

    Returns:
        The mean over the last axis (...).

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_squared_error(jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2)))
        Array([5.], dtype=float32)
    """
    return jnp.mean(jnp.square(predictions - targets), axis=-1)


def mean_absolute_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Absolute error averaged over the last axis.

    Args:
        predictions: the model's outputs (..., features).
        targets: the targets, shaped as `predictions`.

    Returns:
        The mean over the last axis (...).

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_absolute_error(jnp.array([[1.0, -3.0]]), jnp.zeros((1, 2)))
        Array([2.], dtype=float32)
    """
    return jnp.mean(jnp.abs(predictions - targets), axis=-1)


def _per_example(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    # A per-step loss (batch, timesteps) averages over the unmasked steps only.
    if mask is not None and values.shape == mask.shape:
        weights = mask.astype(values.dtype)
        return jnp.sum(values * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
    return values.reshape(values.shape[0], -1).mean(axis=1)


def _weighted_means(
    outputs: jax.Array,
    y: jax.Array,
    mask: jax.Array | None,
    weight: jax.Array | None,
    fns: Metrics,
) -> dict[str, jax.Array]:
    if weight is None:
        weight = jnp.ones(outputs.shape[0], outputs.dtype)
    total = jnp.sum(weight)
    return {name: jnp.sum(weight * _per_example(fn(outputs, y), mask)) / total for name, fn in fns.items()}


def _batch_means(
    layer: Layer,
    fns: Metrics,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None,
    weight: jax.Array | None,
    rng: jax.Array | None = None,
    dropout: bool = False,
) -> dict[str, jax.Array]:
    if dropout:
        outputs = layer.apply(params, x, mask=mask, training=True, rng=rng)
    else:
        outputs = layer.apply(params, x, mask=mask)
    return _weighted_means(outputs, y, mask, weight, fns)


def make_step(
    layer: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    metrics: Metrics | None = None,
    dropout: bool = False,
    trainable: Trainable = None,
) -> Callable[..., tuple[Params, optax.OptState, dict[str, jax.Array]]]:
    """A jitted train step `step(params, opt_state, x, y, mask=None, weight=None, rng=None)
    -> (params, opt_state, metrics)`.

    `loss` maps `(outputs, y)` to per-example values, or per-step values that are
    averaged over `mask`; the batch loss is their mean weighted by `weight` (batch,)
    (zero for padding rows), plus the layers' regularizer penalties
    (`jlstm.regularization_loss`), as Keras adds them. `metrics` are more such functions,
    reported as batch means next to "loss". With `dropout`, the layer runs with
    `training=True, rng=rng`. Clip gradients in the optimizer:
    `optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))`. After the optimizer's
    update the layers' constraints project their params (`jlstm.apply_constraints`), as
    Keras's optimizer does.

    `trainable` freezes params: those it marks False keep their values bit for bit, add no
    penalty and take no constraint, and the optimizer holds no state for them (see
    `freeze`): start from `opt_state = train.freeze(optimizer, trainable).init(params)`.

    Args:
        layer: the model, a `Layer`.
        loss: `(outputs, y) -> values`, per example (batch,) or per step (batch, timesteps).
        optimizer: an optax gradient transformation.
        metrics: more such functions by name, reported next to "loss"; None for none.
        dropout: run the layer in training mode (`training=True, rng=rng`).
        trainable: which params train: None (all), a bool, a pytree prefix of bools over
            the params (`[False, True]` for a Sequential of two layers; lists and tuples
            alike), or a callable `(path, leaf) -> bool` (`path` a `jax.tree_util` key path).

    Returns:
        `step(params, opt_state, x, y, mask=None, weight=None, rng=None) -> (params,
        opt_state, metrics)`, jitted; `metrics` maps "loss" and each metric to its batch mean.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> import jlstm
        >>> model = jlstm.Sequential([jlstm.LSTM(3), jlstm.Dense(1)])
        >>> _, params = model.init(jax.random.key(0), (None, 4, 2))
        >>> opt = optax.sgd(0.1)
        >>> step = make_step(model, mean_squared_error, opt)
        >>> params, opt_state, m = step(params, opt.init(params), jnp.ones((8, 4, 2)), jnp.ones((8, 1)))
        >>> sorted(m)
        ['loss']
    """
    fns = {"loss": loss, **(metrics or {})}
    what = "train step trainable"
    if trainable is not None:
        optimizer = _frozen(optimizer, trainable, what)

    def objective(params, x, y, mask, weight, rng):
        params = _stop_frozen_gradients(params, trainable, what)
        means = _batch_means(layer, fns, params, x, y, mask, weight, rng, dropout)
        penalty = penalty_or_none(layer, params, trainable, what)
        if penalty is not None:
            means = {**means, "loss": means["loss"] + penalty.astype(means["loss"].dtype)}
        return means["loss"], means

    @jax.jit
    def step(params, opt_state, x, y, mask=None, weight=None, rng=None):
        grads, means = jax.grad(objective, has_aux=True)(params, x, y, mask, weight, rng)
        # optax is not written for strict promotion (adam raises a float to its int32 step
        # count), so its update runs under JAX's defaults whatever promotion the caller set.
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        # Keras's order: the update, then the constraints of the trainable params.
        new = apply_constraints(layer, optax.apply_updates(params, updates), trainable=trainable)
        if trainable is not None:  # frozen params as they came, bit for bit (not p + 0.0)
            mask = _weights.trainable_mask(params, trainable, what)
            new = jax.tree.map(lambda keep, p, old: p if keep else old, mask, new, params)
        return new, opt_state, means

    expected_states: dict[Any, Any] = {}

    def checked_step(params, opt_state, x, y, mask=None, weight=None, rng=None):
        if dropout and rng is None:
            raise ValueError("train step: expected an rng key with dropout=True, got None")
        if trainable is not None:
            _check_frozen_state(optimizer, params, opt_state, expected_states)
        return step(params, opt_state, x, y, mask, weight, rng)

    return checked_step


def freeze(optimizer: optax.GradientTransformation, trainable: Trainable) -> optax.GradientTransformation:
    """`optimizer` over the trainable params only: the frozen ones get zero updates and no
    optimizer state (`optax.multi_transform` with `optax.set_to_zero()` for them). Its
    `init(params)` gives the opt_state that `make_step(..., trainable=)` takes.

    Args:
        optimizer: an optax gradient transformation.
        trainable: which params train, as `make_step` takes it.

    Returns:
        The optax gradient transformation.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
        >>> state = freeze(optax.adam(1e-3), {"kernel": False, "bias": True}).init(params)
        >>> [leaf.shape for leaf in jax.tree.leaves(state)]  # adam's count, then mu and nu of the bias
        [(), (2,), (2,)]
    """
    return _frozen(optimizer, trainable, "freeze trainable")


_TRAINABLE, _FROZEN = "trainable", "frozen"


def _frozen(optimizer: optax.GradientTransformation, trainable: Trainable, what: str) -> optax.GradientTransformation:
    def labels(params: Params) -> Params:
        mask = _weights.trainable_mask(params, trainable, what)
        return jax.tree.map(lambda keep: _TRAINABLE if keep else _FROZEN, mask)

    return optax.multi_transform({_TRAINABLE: optimizer, _FROZEN: optax.set_to_zero()}, labels)


def _stop_frozen_gradients(params: Params, trainable: Trainable, what: str) -> Params:
    if trainable is None:
        return params
    mask = _weights.trainable_mask(params, trainable, what)
    return jax.tree.map(lambda keep, p: p if keep else jax.lax.stop_gradient(p), mask, params)


def _check_frozen_state(
    optimizer: optax.GradientTransformation, params: Params, opt_state: Any, expected: dict[Any, Any]
) -> None:
    """Checks `opt_state` has the structure of `optimizer.init(params)` (the frozen optimizer's),
    read once per params structure: a plain optimizer's state fails inside optax otherwise."""
    treedef = jax.tree.structure(params)
    if treedef not in expected:
        expected[treedef] = jax.tree.structure(jax.eval_shape(optimizer.init, params))
    if jax.tree.structure(opt_state) != expected[treedef]:
        raise ValueError(
            "train step: expected opt_state = train.freeze(optimizer, trainable).init(params) with trainable=, "
            "got a state of another structure (optimizer.init(params)'s holds state for the frozen params too)"
        )


def make_eval_step(layer: Layer, loss: Loss, *, metrics: Metrics | None = None) -> EvalStep:
    """A jitted `eval_step(params, x, y, mask=None, weight=None) -> metrics`: the same
    weighted batch means as `make_step`'s, with the layer in inference mode.

    Args:
        layer: the model, a `Layer`.
        loss: `(outputs, y) -> values`, per example or per step, as for `make_step`.
        metrics: more such functions by name; None for none.

    Returns:
        `eval_step(params, x, y, mask=None, weight=None) -> metrics`, jitted.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jlstm
        >>> model = jlstm.Sequential([jlstm.LSTM(3), jlstm.Dense(1)])
        >>> _, params = model.init(jax.random.key(0), (None, 4, 2))
        >>> eval_step = make_eval_step(model, mean_squared_error)
        >>> float(eval_step(params, jnp.ones((8, 4, 2)), jnp.ones((8, 1)))["loss"]) > 0
        True
    """
    fns = {"loss": loss, **(metrics or {})}

    @jax.jit
    def eval_step(params, x, y, mask=None, weight=None):
        return _batch_means(layer, fns, params, x, y, mask, weight)

    return eval_step


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ("batch") over `devices` (default: all of them, every host's).

    Args:
        devices: the devices to shard batches over; None for `jax.devices()`.

    Returns:
        A `jax.sharding.Mesh` with the one axis "batch".

    Examples:
        >>> data_mesh().axis_names
        ('batch',)
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: expected at least one device, got none")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def _check_inputs(x: Any, mask: Any, what: str, lengths: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """x, and the bool mask from `mask` or `lengths` (a 1-D `mask` is lengths)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{what}: expected x of rank 3 (batch > 0, timesteps, features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{what}: expected numeric x, got dtype {x.dtype}")
    if mask is not None and lengths is not None:
        raise ValueError(f"{what}: expected mask or lengths, got both")
    if mask is not None and np.ndim(mask) == 1:
        mask, lengths = None, mask
    if lengths is not None:  # checked (int, (batch,), in [0, timesteps]) and made a mask, here
        return x, np.asarray(_checks.sequence_mask(None, lengths, x.shape[0], x.shape[1], what))
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"{what}: expected mask of shape {x.shape[:2]}, got {mask.shape}")
        if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{what}: expected a bool mask (or 0/1), got values {_listed(np.unique(mask))}")
        mask = mask.astype(bool)
    return x, mask


def _listed(values: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown if len(values) <= most else f"{shown}, ... ({len(values)} values)"


def _check_data(data: Data, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        got = f"{type(data).__name__} of {len(data)}" if isinstance(data, (tuple, list)) else type(data).__name__
        raise TypeError(f"{what}: expected (x, y), (x, y, mask) or (x, y, lengths), got {got}")
    x, y, mask = (*data, None)[:3]
    x, mask = _check_inputs(x, mask, what)
    y = np.asarray(y)
    if y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{what}: expected y with {x.shape[0]} rows (as x), got shape {y.shape}")
    return x, y, mask


def _check_class_labels(layer: Layer, x: np.ndarray, y: np.ndarray, what: str) -> None:
    """Integer labels, one per output row, indexing the model's outputs' last axis."""
    out_shape, _ = abstract_init(layer, (None, *x.shape[1:]))
    if not isinstance(out_shape, tuple) or not out_shape or not isinstance(out_shape[-1], int):
        return  # several outputs, or no fixed class axis: nothing to check against
    width, expected = out_shape[-1], (len(y), *out_shape[1:-1])
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{what}: expected integer class labels, got dtype {y.dtype}")
    if y.shape != expected:
        raise ValueError(
            f"{what}: expected class labels of shape {expected} (the outputs' {(len(y), *out_shape[1:])} "
            f"less the class axis), got {y.shape}"
        )
    bad = np.unique(y[(y < 0) | (y >= width)])
    if bad.size:
        raise ValueError(
            f"{what}: expected class labels in [0, {width}) (the model's output width), got {_listed(bad)}"
        )


def _checked(layer: Layer, loss: Loss, data: Data, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    data = _check_data(data, what)
    if getattr(loss, "class_labels", False) is True:
        _check_class_labels(layer, data[0], data[1], what)
    return data


def _padded_batches(
    arrays: tuple[np.ndarray | None, ...],
    batch_size: int,
    rows: int,
    order: np.ndarray,
) -> Iterator[tuple[int, tuple[np.ndarray | None, ...]]]:
    """(count, (*arrays, weight)): `batch_size` examples in `order`, padded to `rows` rows
    of weight 0, so that one compiled step serves every batch, a mesh divides them, and
    the batches hold the same examples whatever the number of devices."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        pad = rows - len(idx)
        take = np.concatenate([idx, np.zeros(pad, idx.dtype)])
        weight = np.concatenate([np.ones(len(idx), np.float32), np.zeros(pad, np.float32)])
        yield len(idx), tuple(None if a is None else a[take] for a in arrays) + (weight,)


def _shard(arrays: tuple[np.ndarray | None, ...], mesh: Mesh) -> tuple[jax.Array | None, ...]:
    # Every process holds the whole batch; each device takes its slice of it. This works
    # the same on one host and on several (after jax.distributed.initialize()).
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    return tuple(None if a is None else _shard_array(a, sharding) for a in arrays)


def _shard_array(a: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def _replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def _to_host(array: jax.Array) -> np.ndarray:
    # NumPy reads only this process's devices: an array sharded over several processes' is
    # gathered whole to each of them first.
    return np.asarray(array) if array.is_fully_addressable else multihost_utils.process_allgather(array, tiled=True)


def _padded_size(batch_size: int, mesh: Mesh) -> int:
    return math.ceil(batch_size / mesh.size) * mesh.size


def evaluate(
    layer: Layer,
    params: Params,
    data: Data,
    *,
    loss: Loss,
    metrics: Metrics | None = None,
    batch_size: int = 256,
    mesh: Mesh | None = None,
    trainable: Trainable = None,
) -> dict[str, float]:
    """Mean loss and metrics of `params` over all of `data` ((x, y), (x, y, mask) or
    (x, y, lengths)). The loss includes the layers' regularizer penalties, as Keras's
    `evaluate` does (those of the trainable params).

    Args:
        layer: the model, a `Layer`.
        params: its params.
        data: `(x, y)`, `(x, y, mask)` or `(x, y, lengths)`, examples on the first axis:
            mask bool (examples, timesteps), lengths int (examples,) in [0, timesteps].
        loss: `(outputs, y) -> values`, per example or per step, as for `make_step`.
        metrics: more such functions by name; None for none.
        batch_size: examples per batch (the last batch is padded, at weight 0).
        mesh: the mesh to shard batches over; None for `data_mesh()`.
        trainable: the params whose penalties count, as `make_step` takes it (None: all).

    Returns:
        "loss" and each metric by name, each its mean over every example.

    Examples:
        >>> import jax, numpy as np
        >>> import jlstm
        >>> model = jlstm.Sequential([jlstm.LSTM(3), jlstm.Dense(2)])
        >>> _, params = model.init(jax.random.key(0), (None, 4, 2))
        >>> data = (np.ones((5, 4, 2), np.float32), np.array([0, 1, 0, 1, 1]))
        >>> sorted(evaluate(model, params, data, loss=sparse_categorical_crossentropy))
        ['loss']
    """
    data = _checked(layer, loss, data, "evaluate data")
    metrics_items = tuple(sorted((metrics or {}).items()))
    means = _evaluate(_eval_step(layer, loss, metrics_items), params, data, batch_size, mesh)
    return _with_penalty(means, penalty_or_none(layer, params, trainable, "evaluate trainable"))


def _with_penalty(means: dict[str, float], penalty: jax.Array | None) -> dict[str, float]:
    """The means, the penalty added to the loss (once: it is the same for every batch)."""
    return means if penalty is None else {**means, "loss": means["loss"] + float(penalty)}


# The jitted functions evaluate and predict call, by layer (a layer hashes by identity, its
# apply need not hash): a second call with the same layer reuses them instead of tracing
# again (the last 32 layers are kept).
@functools.lru_cache(maxsize=32)
def _eval_step(layer: Layer, loss: Loss, metrics_items: tuple[tuple[str, Loss], ...]) -> EvalStep:
    return make_eval_step(layer, loss, metrics=dict(metrics_items))


@functools.lru_cache(maxsize=32)
def _predict_step(layer: Layer) -> Callable[..., Any]:
    return jax.jit(lambda params, x, mask: layer.apply(params, x, mask=mask))


def _evaluate(
    eval_step: EvalStep,
    params: Params,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    batch_size: int,
    mesh: Mesh | None,
) -> dict[str, float]:
    batch_size = _checks.positive_int(batch_size, "evaluate batch_size")
    mesh = data_mesh() if mesh is None else mesh
    params = _replicate(params, mesh)
    batch_size = min(batch_size, len(data[0]))
    sums: dict[str, jax.Array] = {}
    batches = _padded_batches(data, batch_size, _padded_size(batch_size, mesh), np.arange(len(data[0])))
    for count, batch in batches:
        means = eval_step(params, *_shard(batch, mesh))
        sums = {k: sums.get(k, 0.0) + v * count for k, v in means.items()}
    return {k: float(v) / len(data[0]) for k, v in sums.items()}


def predict(
    layer: Layer,
    params: Params,
    x: Any,
    mask: Any = None,
    *,
    lengths: Any = None,
    batch_size: int = 256,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """The layer's outputs for all of `x` (inference mode), in batches, as a numpy array.

    Args:
        layer: the model, a `Layer`.
        params: its params.
        x: the inputs (examples, timesteps, features).
        mask: a bool (examples, timesteps) mask for the layer (or int (examples,)
            lengths, as in data tuples), or None.
        lengths: int (examples,) lengths in [0, timesteps] instead of a mask, or None.
        batch_size: examples per batch.
        mesh: the mesh to shard batches over; None for `data_mesh()`.

    Returns:
        The outputs for every example, in order, as one numpy array.

    Examples:
        >>> import jax, numpy as np
        >>> import jlstm
        >>> model = jlstm.Sequential([jlstm.LSTM(3), jlstm.Dense(2)])
        >>> _, params = model.init(jax.random.key(0), (None, 4, 2))
        >>> predict(model, params, np.ones((5, 4, 2), np.float32)).shape
        (5, 2)
    """
    x, mask = _check_inputs(x, mask, "predict", lengths)
    batch_size = min(_checks.positive_int(batch_size, "predict batch_size"), len(x))
    mesh = data_mesh() if mesh is None else mesh
    apply = _predict_step(layer)
    params = _replicate(params, mesh)
    batches = _padded_batches((x, mask), batch_size, _padded_size(batch_size, mesh), np.arange(len(x)))
    return np.concatenate([_to_host(apply(params, *_shard(batch[:2], mesh)))[:count] for count, batch in batches])


def load_state(path: PathLike) -> TrainState:
    """The `TrainState` that `fit(..., checkpoint_to=path)` saved, arrays as NumPy; a
    ResumeError naming the file where it holds none (missing, corrupt, another kind).

    >>> import os, tempfile, jax, numpy as np, optax
    >>> import jlstm
    >>> model = jlstm.Sequential([jlstm.LSTM(3), jlstm.Dense(1)])
    >>> _, params = model.init(jax.random.key(0), (None, 4, 1))
    >>> x = np.ones((8, 4, 1), np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "state.ckpt")
    >>> _, h = fit(model, params, optax.sgd(0.1), (x, x[:, 0]), loss=mean_squared_error,
    ...            epochs=2, batch_size=4, rng=jax.random.key(0), checkpoint_to=path)
    >>> load_state(path).epoch, load_state(path).history == h
    (2, True)
    """
    path = os.fspath(path)
    try:
        tree = load(path)
    except OSError as err:
        raise ResumeError(f"{path}: {err.strerror or err}") from None
    except ValueError as err:
        raise ResumeError(str(err)) from None
    if not isinstance(tree, tuple) or len(tree) != len(TrainState._fields):
        raise ResumeError(f"{path}: a jlstm checkpoint, but not a fit TrainState {TrainState._fields}")
    state = TrainState(*tree)
    if not _is_history(state.history, state.epoch):
        raise ResumeError(f"{path}: a jlstm checkpoint, but not a fit TrainState: no epoch count and history to match")
    return state


def _is_history(history: Any, epoch: Any) -> bool:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(history, dict):
        return False
    return all(
        isinstance(k, str) and isinstance(v, list) and len(v) == epoch and all(isinstance(e, float) for e in v)
        for k, v in history.items()
    )


def _history_keys(metrics: Metrics | None, validation: bool) -> list[str]:
    names = ["loss", *(metrics or {})]
    return names + [f"val_{k}" for k in names] if validation else names


def _resumed(path: PathLike, fresh: TrainState, epochs: int, keys: list[str]) -> TrainState:
    """The saved state, checked against this run's fresh one (its params and optimizer state
    give the structure, shapes and dtypes), as this run's arrays."""
    saved, path = load_state(path), os.fspath(path)
    try:
        arrays = {
            name: restore(getattr(saved, name), getattr(fresh, name), name) for name in ("params", "opt_state", "rng")
        }
    except (TypeError, ValueError) as err:
        raise ResumeError(f"{path}: not a checkpoint of this model, optimizer and rng: {err}") from None
    if saved.epoch > epochs:
        raise ResumeError(f"{path}: saved after epoch {saved.epoch}, past epochs={epochs}")
    if saved.epoch and sorted(saved.history) != sorted(keys):
        raise ResumeError(
            f"{path}: its history holds {sorted(saved.history)}, this run's would hold {sorted(keys)} "
            "(other metrics or validation_data)"
        )
    return saved._replace(**arrays)


def _check_fits(eval_step: Callable[..., Any], params: Params, data: tuple, rows: int, what: str) -> None:
    """Traces the eval step on `data`'s batches' shapes (nothing runs), so that data the model
    or loss cannot take fail before training rather than after its first epoch."""
    specs = [
        None if a is None else jax.ShapeDtypeStruct((rows, *a.shape[1:]), jax.dtypes.canonicalize_dtype(a.dtype))
        for a in data
    ]
    try:
        jax.eval_shape(eval_step, params, *specs, jax.ShapeDtypeStruct((rows,), jnp.float32))
    except (TypeError, ValueError) as err:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in zip(("x", "y", "mask"), data) if a is not None)
        raise ValueError(f"{what}: the model and loss cannot take {shapes}: {err}") from None


class _Run(NamedTuple):
    """What each epoch of a `fit` uses."""

    step: Callable[..., Any]
    eval_step: Callable[..., Any]
    train: tuple
    validation: tuple | None
    batch_size: int
    rows: int
    mesh: Mesh
    dropout: bool
    epochs: int
    progress: bool
    penalty: Callable[[Params], jax.Array] | None  # the validation loss's regularizer penalty


def _all_finite(tree: Any) -> jax.Array:
    return functools.reduce(jnp.logical_and, (jnp.isfinite(a).all() for a in jax.tree.leaves(tree)), jnp.bool_(True))


_params_finite = jax.jit(_all_finite)


def _epoch(
    run: _Run, params: Params, opt_state: optax.OptState, epoch: int, shuffle_key: jax.Array, dropout_key: jax.Array
) -> tuple[Params, optax.OptState, dict[str, float], str | None]:
    """One epoch: its params, opt_state and logs, and why its training went non-finite, or None."""
    n = len(run.train[0])
    order = np.asarray(jax.random.permutation(shuffle_key, n))
    sums: dict[str, jax.Array] = {}
    losses: list[jax.Array] = []
    desc = f"epoch {epoch + 1}/{run.epochs}"
    live = run.progress and sys.stderr.isatty()  # a bar redrawn in a log file floods it
    with tqdm(total=math.ceil(n / run.batch_size), desc=desc, disable=not live, dynamic_ncols=True) as bar:
        for i, (count, batch) in enumerate(_padded_batches(run.train, run.batch_size, run.rows, order)):
            key = jax.random.fold_in(dropout_key, i) if run.dropout else None
            params, opt_state, means = run.step(params, opt_state, *_shard(batch, run.mesh), rng=key)
            sums = {k: sums.get(k, 0.0) + v * count for k, v in means.items()}
            losses.append(means["loss"])
            bar.update()
        logs = {k: float(v) / n for k, v in sums.items()}
        stopped = _divergence(np.array(jax.device_get(losses)), params, desc)
        if stopped is None and run.validation is not None:
            val = _evaluate(run.eval_step, params, run.validation, run.batch_size, run.mesh)
            val = _with_penalty(val, None if run.penalty is None else run.penalty(_local_replica(params)))
            logs |= {f"val_{k}": v for k, v in val.items()}
        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
    if run.progress and not live:
        print(f"{desc}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()), file=sys.stderr, flush=True)
    return params, opt_state, logs, stopped


def _divergence(losses: np.ndarray, params: Params, where: str) -> str | None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        return f"{where}, step {bad[0] + 1}/{len(losses)}: the loss was {losses[bad[0]]}"
    if not bool(_params_finite(params)):
        return f"{where}: the params came out non-finite"
    return None


def _penalty_fn(layer: Layer, params: Params, trainable: Trainable) -> Callable[[Params], jax.Array] | None:
    """The jitted regularizer penalty of `layer`'s params, or None where it has none."""

    def penalty(p: Params) -> jax.Array | None:
        return penalty_or_none(layer, p, trainable, "fit trainable")

    return None if jax.eval_shape(penalty, params) is None else jax.jit(penalty)


def _local_replica(tree: Any) -> Any:
    # This host's copy of replicated arrays: NumPy cannot read an array spanning several hosts.
    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def fit(
    layer: Layer,
    params: Params,
    optimizer: optax.GradientTransformation,
    train_data: Data,
    validation_data: Data | None = None,
    *,
    loss: Loss,
    metrics: Metrics | None = None,
    epochs: int,
    batch_size: int,
    rng: jax.Array,
    dropout: bool = False,
    trainable: Trainable = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = False,
    checkpoint_to: PathLike | None = None,
    resume_from: PathLike | None = None,
) -> tuple[Params, History]:
    """Trains `params` for `epochs` over shuffled batches of `train_data`; returns the
    trained params and a history of per-epoch means ("loss", each metric, and "val_"
    ones for `validation_data`).

    Data are `(x, y)`, `(x, y, mask)` or `(x, y, lengths)` arrays with examples on the first
    axis: a third array of shape (examples,) is int lengths (each in [0, timesteps]), one of
    shape (examples, timesteps) a mask, and either reaches the layer as its mask. The loss
    includes the layers' regularizer penalties and the constraints project the params after
    every step (`make_step`); `trainable` freezes params as `make_step` does. `rng` drives
    the shuffling (and dropout, with `dropout=True`); nothing else is random. Batches are
    sharded over `devices` (default: all), params replicated. `progress` shows a tqdm bar
    per epoch on a terminal, and one line per epoch where stderr is not one (a log file).

    Checked before training: both data sets' shapes, dtypes and masks, the validation data
    against the model and loss (traced, not run), and, for a class-label loss
    (`sparse_categorical_crossentropy`, or one declared with `class_label_loss`), the labels'
    dtype, shape and range against the model's output width.

    Divergence: at each epoch's end, where fit reads the metrics anyway (no extra host sync
    per step), it checks the epoch's per-step losses and its params. Where one is non-finite
    it stops, issues a `DivergenceWarning` (an error under `warnings.simplefilter("error",
    DivergenceWarning)`) and returns the params of the last finished epoch, the ones
    `checkpoint_to` holds, with the finished epochs' history and `history["stopped"]`, which
    says where and why ("epoch 3/10, step 5/12: the loss was nan; ...").

    `checkpoint_to` saves a `TrainState` (params, optimizer state, epoch, rng, history) there
    after every epoch, atomically; `resume_from` continues from one, so that an interrupted
    run resumed with the same arguments ends with the uninterrupted run's params, bit for
    bit. A file that is not such a state of this model and optimizer is a `ResumeError`,
    raised before anything is written.

    Args:
        layer: the model, a `Layer`.
        params: its initial params.
        optimizer: an optax gradient transformation.
        train_data: `(x, y)`, `(x, y, mask)` or `(x, y, lengths)`, examples on the first axis.
        validation_data: data of the same form, evaluated after each epoch; None for none.
        loss: `(outputs, y) -> values`, per example or per step, as for `make_step`.
        metrics: more such functions by name, reported next to "loss"; None for none.
        epochs: how many passes over `train_data`.
        batch_size: examples per step (the last batch of an epoch is padded, at weight 0).
        rng: the PRNG key for the shuffling (and the dropout).
        dropout: run the layer in training mode, drawing dropout masks from `rng`.
        trainable: which params train, as `make_step` takes it (None: all); the frozen ones
            come back bit for bit, add no penalty, and hold no optimizer state.
        devices: the devices to shard batches over; None for all of them.
        progress: show a tqdm progress bar per epoch (one line per epoch off a terminal).
        checkpoint_to: a path to save a `TrainState` at after every epoch; None for none.
        resume_from: a `TrainState` file (from `checkpoint_to`) to continue from; None to start.

    Returns:
        `(params, history)`: the trained params, and per-epoch means by name ("loss", each
        metric, and their "val_" twins with `validation_data`), with "stopped" where fit
        stopped at a non-finite value.

    Examples:
        >>> import jax, numpy as np, optax
        >>> import jlstm
        >>> model = jlstm.Sequential([jlstm.LSTM(4), jlstm.Dense(1)])
        >>> _, params = model.init(jax.random.key(0), (None, 6, 1))
        >>> x = np.linspace(0, 1, 60, dtype=np.float32).reshape(10, 6, 1)
        >>> _, h = fit(model, params, optax.adam(1e-2), (x, x[:, -1]), (x, x[:, -1]),
        ...            loss=mean_squared_error, epochs=20, batch_size=5, rng=jax.random.key(0))
        >>> h["loss"][-1] < h["loss"][0], sorted(h)
        (True, ['loss', 'val_loss'])
    """
    train = _checked(layer, loss, train_data, "fit train_data")
    validation = None if validation_data is None else _checked(layer, loss, validation_data, "fit validation_data")
    epochs = _checks.positive_int(epochs, "fit epochs")
    batch_size = min(_checks.positive_int(batch_size, "fit batch_size"), len(train[0]))
    if not isinstance(rng, jax.Array):
        raise TypeError(f"fit rng: expected a jax.random key, got {type(rng).__name__}")
    if checkpoint_to is not None and not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint_to))):
        raise ValueError(f"fit checkpoint_to: no directory {os.path.dirname(os.path.abspath(checkpoint_to))}")
    if trainable is not None:
        _weights.trainable_mask(params, trainable, "fit trainable")  # a bad mask fails here
    mesh = data_mesh(devices)
    eval_step = _eval_step(layer, loss, tuple(sorted((metrics or {}).items())))  # evaluate's, compiled once
    if validation is not None:
        rows = _padded_size(min(batch_size, len(validation[0])), mesh)
        _check_fits(eval_step, params, validation, rows, "fit validation_data")
    opt_init = (optimizer if trainable is None else freeze(optimizer, trainable)).init
    state = TrainState(params, opt_init(params), 0, rng, {})
    if resume_from is not None:
        state = _resumed(resume_from, state, epochs, _history_keys(metrics, validation is not None))
    step = make_step(layer, loss, optimizer, metrics=metrics, dropout=dropout, trainable=trainable)
    run = _Run(
        step,
        eval_step,
        train,
        validation,
        batch_size,
        _padded_size(batch_size, mesh),
        mesh,
        dropout,
        epochs,
        progress,
        _penalty_fn(layer, params, trainable),
    )
    params, opt_state = _replicate(state.params, mesh), _replicate(state.opt_state, mesh)
    rng, stopped_at = state.rng, None
    curves = {k: list(v) for k, v in state.history.items() if isinstance(v, list)}
    for epoch in range(state.epoch, epochs):
        rng, shuffle_key, dropout_key = jax.random.split(rng, 3)
        *trained, logs, stopped = _epoch(run, params, opt_state, epoch, shuffle_key, dropout_key)
        if stopped is not None:
            kept = f"the params of epoch {epoch}" if epoch else "the params it was given"
            stopped_at = f"{stopped}; fit returned {kept}"
            warnings.warn(f"fit stopped at {stopped_at}", DivergenceWarning, stacklevel=2)
            break
        params, opt_state = trained
        for k, v in logs.items():
            curves.setdefault(k, []).append(v)
        if checkpoint_to is not None:
            local_params, local_opt_state = _local_replica((params, opt_state))
            save(checkpoint_to, TrainState(local_params, local_opt_state, epoch + 1, rng, dict(curves)))
    history: History = dict(curves)
    if stopped_at is not None:
        history[STOPPED] = stopped_at
    return params, history
