"""What the converters share: paths into params trees, the params a layer makes, leaf layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.tree_util import PyTreeDef

from jlstm.layers import Layer, Params
from jlstm.summary import abstract_init

Path = tuple[Any, ...]


@contextlib.contextmanager
def _default_promotion() -> Iterator[None]:
    """JAX's default rank and dtype promotion for the other library's code (Keras building its
    layers, Flax's math): it is not written for strict promotion, and a user who sets strict
    promotion globally must still be able to convert. jlstm's own math stays outside."""
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        yield


def _get(tree: Any, path: Path) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _replace(tree: Any, path: Path, value: Any) -> Any:
    """`tree` with `value` at `path`, copying the tuples and dicts on the way."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, tuple):
        return tree[:head] + (_replace(tree[head], rest, value),) + tree[head + 1 :]
    return {**tree, head: _replace(tree.get(head, {}), rest, value)}


def _abstract_params(layer: Layer, features: int) -> Params:
    """The params tree `layer.init` makes, as shapes (nothing is allocated)."""
    return abstract_init(layer, (None, None, features))[1]


def _check_params(layer: Layer, params: Params, features: int, what: str) -> None:
    """Params must have the tree and shapes `layer.init` makes (nothing is allocated)."""
    want = _abstract_params(layer, features)
    # jax.tree_util's public name: mypy cannot compare jaxlib's PyTreeDef, which has no stubs
    want_def: PyTreeDef
    got_def: PyTreeDef
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(params)
    if want_def != got_def:
        raise ValueError(f"{what}: expected params with the tree {want_def}, got {got_def}")
    for (path, w), (_, g) in zip(want_leaves, got_leaves):
        if tuple(w.shape) != tuple(np.shape(g)):
            raise ValueError(
                f"{what}: expected params{jax.tree_util.keystr(path)} of shape {tuple(w.shape)}, "
                f"got {tuple(np.shape(g))}"
            )


def _input_features(params: Params, what: str) -> int:
    """The input features: the first input kernel's rows (Masking and Dropout keep them)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if getattr(path[-1], "key", None) == "kernel":
            return int(np.shape(leaf)[0])
    raise ValueError(f"{what}: expected params with a 'kernel' to read the input features from")


def _name_of(fn: Any, table: dict[str, Any], what: str) -> str | None:
    """The registry name of an activation or initializer given by name or as a callable."""
    if fn is None or isinstance(fn, str):
        return fn
    for name, candidate in table.items():
        if candidate is fn:
            return name
    raise TypeError(f"{what}: expected one of {sorted(table)} by name, got the callable {fn!r}")


def _given(**keywords: Any) -> dict[str, Any]:
    """The keywords that are not None: what a wrapper passes on to a layer's `apply`, which
    takes only its own (a Dense takes no `lengths`)."""
    return {name: value for name, value in keywords.items() if value is not None}


def _leaf_layers(layer: Layer) -> list[Layer]:
    """A Sequential's layers with nested Sequentials spliced in; any other layer alone."""
    if layer.type_name != "Sequential":
        return [layer]
    return [leaf for sub in layer.sublayers for leaf in _leaf_layers(sub)]


def _leaf_params(layer: Layer, params: Params) -> list[Params]:
    if layer.type_name != "Sequential":
        return [params]
    return [leaf for sub, p in zip(layer.sublayers, params) for leaf in _leaf_params(sub, p)]
