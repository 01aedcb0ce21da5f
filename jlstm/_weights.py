"""What training does to each param beside its gradient step: its regularizer and its
constraint (a `WeightRule` per leaf, from the layers), and whether it trains at all (the
`trainable` mask). Private plumbing for `jlstm.regularizers`, `jlstm.constraints` and
`jlstm.train`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks

Params = Any
# `trainable` as fit and make_step take it: None (all), a bool, a pytree prefix of bools over
# the params, or a callable (path, leaf) -> bool.
Trainable = Any


@dataclasses.dataclass(frozen=True)
class WeightRule:
    """One param's regularizer (`(array) -> scalar`) and constraint (`(array) -> array`),
    either None, and the name errors give them ("LSTM kernel")."""

    regularizer: Callable[[jax.Array], jax.Array] | None = None
    constraint: Callable[[jax.Array], jax.Array] | None = None
    name: str = ""


NO_RULE = WeightRule()


def rules(layer: Any, params: Params) -> Params:
    """The `WeightRule` of each of `params`' leaves, as a tree of the params' structure: the
    layer's own (`Layer.weight_rules`), or none where the layer declares none."""
    if layer.weight_rules is not None:
        return layer.weight_rules(params)
    return jax.tree.map(lambda _: NO_RULE, params)


def trainable_mask(params: Params, trainable: Trainable, what: str) -> Params:
    """`trainable` as a tree of bools of the params' structure (True: the leaf trains).

    None trains everything; a bool applies to every leaf; a callable is called as
    `(path, leaf) -> bool` on each leaf (`path` a `jax.tree_util` key path); any other value
    is a prefix of the params' tree (lists and tuples alike) with bools at its leaves."""
    if trainable is None:
        return jax.tree.map(lambda _: True, params)
    if callable(trainable):
        return jax.tree_util.tree_map_with_path(lambda path, leaf: _called(trainable, path, leaf, what), params)
    return _prefix(trainable, params, "trainable", what)


def _called(trainable: Callable[..., Any], path: Any, leaf: Any, what: str) -> bool:
    keep = trainable(path, leaf)
    if not isinstance(keep, (bool, np.bool_)):
        raise TypeError(
            f"{what}: expected the callable to return True or False, got {keep!r} at {jax.tree_util.keystr(path)}"
        )
    return bool(keep)


def _prefix(mask: Any, params: Params, where: str, what: str) -> Params:
    if isinstance(mask, (bool, np.bool_)):
        return jax.tree.map(lambda _: bool(mask), params)
    if isinstance(params, Mapping):
        if not (isinstance(mask, Mapping) and set(mask) == set(params)):
            expected = f"a dict with keys {sorted(params, key=str)} (as the params)"
            raise ValueError(f"{what}: expected a bool or {expected} at {where}, got {_described(mask)}")
        return {k: _prefix(mask[k], v, f"{where}[{k!r}]", what) for k, v in params.items()}
    if isinstance(params, (tuple, list)):
        if not (isinstance(mask, (tuple, list)) and len(mask) == len(params)):
            expected = f"a list or tuple of {len(params)} (as the params)"
            raise ValueError(f"{what}: expected a bool or {expected} at {where}, got {_described(mask)}")
        entries = [_prefix(m, p, f"{where}[{i}]", what) for i, (m, p) in enumerate(zip(mask, params))]
        return list(entries) if isinstance(params, list) else tuple(entries)
    raise ValueError(f"{what}: expected a bool at {where} (a param), got {_described(mask)}")


def _described(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(value, key=str)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{value!r} ({type(value).__name__})"


def leaves_with_rules(layer: Any, params: Params, trainable: Trainable, what: str) -> list[tuple[Any, WeightRule]]:
    """(leaf, rule) for each trainable leaf of `params`, in the tree's order."""
    tree = rules(layer, params)
    mask = trainable_mask(params, trainable, what)
    flat = zip(jax.tree.leaves(params), jax.tree.leaves(tree), jax.tree.leaves(mask))
    return [(leaf, rule) for leaf, rule, keep in flat if keep]


def penalty_or_none(layer: Any, params: Any, trainable: Any, what: str) -> jax.Array | None:
    """`regularization_loss`, or None where no trainable param has a regularizer (so that a
    loss without one is left bit for bit as it was)."""
    terms = [
        _penalty(rule, leaf)
        for leaf, rule in leaves_with_rules(layer, params, trainable, what)
        if rule.regularizer is not None
    ]
    if not terms:
        return None
    dtype = functools.reduce(jnp.promote_types, [t.dtype for t in terms], jnp.dtype(jnp.float32))
    return functools.reduce(jnp.add, [t.astype(dtype) for t in terms])


def _penalty(rule: WeightRule, leaf: jax.Array) -> jax.Array:
    assert rule.regularizer is not None
    value = _checks.array(rule.regularizer(leaf), f"{rule.name}_regularizer's penalty")
    if value.shape != ():
        raise ValueError(f"{rule.name}_regularizer: expected a scalar penalty, got shape {tuple(value.shape)}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"{rule.name}_regularizer: expected a float penalty, got dtype {value.dtype}")
    return value


def constrained(leaf: Any, rule: WeightRule, keep: bool) -> Any:
    """`leaf` projected by its rule's constraint where it has one and trains, checked."""
    if not keep or rule.constraint is None:
        return leaf
    out = _checks.array(rule.constraint(leaf), f"{rule.name}_constraint's output")
    return _checks.initialized(out, tuple(leaf.shape), leaf.dtype, f"{rule.name}_constraint", kind="constraint")
