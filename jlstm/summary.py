"""Counting params and printing a Keras-style summary table.

>>> import jlstm
>>> jlstm.count_params(jlstm.LSTM(5), (None, 11, 3))
180
>>> print(jlstm.summary(jlstm.LSTM(5), (None, 11, 3)).splitlines()[4].rstrip())
lstm_1 (LSTM)                (None, 5)                 180
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import jax

from jlstm import _checks
from jlstm.layers import Layer, OutputShape, Shape

LINE_LENGTH = 65
COLUMNS = (29, 55, 65)  # Keras's print_summary positions (.45, .85, 1.0) of 65 characters


def count_params(tree_or_layer: Any, input_shape: Shape | None = None) -> int:
    """The number of scalars in a param tree, or in the params a layer would build.

    With a layer and an input shape it counts abstractly through `jax.eval_shape`,
    so nothing is allocated however large the model.

    Args:
        tree_or_layer: a param tree of arrays (or `jax.ShapeDtypeStruct`s), or a `Layer`.
        input_shape: with a layer, the input shape to build its params for; else None.

    Returns:
        The total number of scalars.
    """
    if isinstance(tree_or_layer, Layer):
        if input_shape is None:
            raise TypeError("count_params: expected an input_shape with a layer, got None")
        _, tree = abstract_init(tree_or_layer, input_shape)
    else:
        if input_shape is not None:
            raise TypeError(
                f"count_params: expected a jlstm Layer with an input_shape, got {type(tree_or_layer).__name__} "
                "(a param tree takes no input_shape)"
            )
        tree = tree_or_layer
    leaves = jax.tree_util.tree_leaves(tree)
    for leaf in leaves:
        if not hasattr(leaf, "shape"):
            raise TypeError(f"count_params: expected array leaves, got {type(leaf).__name__}")
    return sum(math.prod(leaf.shape) for leaf in leaves)


def abstract_init(layer: Layer, input_shape: Shape) -> tuple[OutputShape, Any]:
    """`layer.init` run through `jax.eval_shape`: the output shape and a tree of ShapeDtypeStructs.

    Args:
        layer: the layer whose `init` to trace.
        input_shape: the input shape, as `init` takes it.

    Returns:
        `(output_shape, params)`, the params as a tree of `jax.ShapeDtypeStruct`s.
    """
    out: list[OutputShape] = []

    def params_only(rng: jax.Array) -> Any:
        shape, params = layer.init(rng, input_shape)
        out.append(shape)
        return params

    params = jax.eval_shape(params_only, jax.random.key(0))
    return out[0], params


class Namer:
    """Keras-style default names (`lstm_1`, `input_1`, ...), counted per layer type.

    Share one Namer between summaries to keep counting across models, as Keras does
    within a session (the seed's `lstm_3` follows a Bidirectional's `lstm_2`).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def next(self, type_name: str) -> str:
        """The next default name for a layer of `type_name`.

        Args:
            type_name: the layer's type ("LSTM", "InputLayer", ...).

        Returns:
            The type's snake-case name with its next count, e.g. "lstm_2".
        """
        prefix = "input" if type_name == "InputLayer" else _snake_case(type_name)
        self._counts[prefix] += 1
        return f"{prefix}_{self._counts[prefix]}"

    def name_tree(self, layer: Layer) -> dict[int, str]:
        """Names for a layer and everything inside it, inner layers first (construction order).

        Args:
            layer: the layer to name, with its sublayers.

        Returns:
            The names by `id()` of each layer: its own name where it has one, else the next default.
        """
        names: dict[int, str] = {}

        def visit(node: Layer) -> None:
            for sub in node.sublayers:
                visit(sub)
            names[id(node)] = node.name or self.next(node.type_name)

        visit(layer)
        return names


def _snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _row(*fields: Any) -> str:
    line = ""
    for field, end in zip(fields, COLUMNS):
        # Keras keeps a space between columns by overwriting a truncated field's last char.
        line = (line[:-1] + " " if line else "") + str(field)
        line = line[:end]
        line += " " * (end - len(line))
    return line


def summary(layer: Layer, input_shape: Shape, *, namer: Namer | None = None) -> str:
    """The Keras summary table of `layer` on inputs of `input_shape`, as a string.

    An InputLayer row comes first; a Sequential lists its layers. Totals count every
    param as trainable (jlstm has no frozen params).

    Args:
        layer: the layer or model to describe.
        input_shape: its input shape (batch, timesteps, features); batch and timesteps may be None.
        namer: the default names' counter to continue, shared between summaries as in a Keras
            session; None starts a new one.

    Returns:
        The table, as Keras's `model.summary()` prints it.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"summary: expected a jlstm Layer, got {type(layer).__name__}")
    if namer is not None and not isinstance(namer, Namer):
        raise TypeError(f"summary: expected namer as a jlstm.Namer or None, got {type(namer).__name__}")
    input_shape = _checks.sequence_shape(input_shape, "summary")
    namer = Namer() if namer is None else namer
    input_name = namer.next("InputLayer")
    names = namer.name_tree(layer)
    rows = [_row(f"{input_name} (InputLayer)", input_shape, 0)]
    total = 0
    shape: OutputShape = input_shape
    for sub in layer.sublayers if layer.type_name == "Sequential" else (layer,):
        if isinstance(shape, list):  # as Sequential.init: only the last layer may return several outputs
            raise ValueError(f"summary: {sub.type_name} follows a layer that returns several outputs {shape}")
        shape, params = abstract_init(sub, shape)
        n = count_params(params)
        total += n
        rows.append(_row(f"{names[id(sub)]} ({sub.type_name})", shape, n))
    rule = "_" * LINE_LENGTH
    return "\n".join(
        [
            rule,
            _row("Layer (type)", "Output Shape", "Param #"),
            f"\n{rule}\n".join(rows),
            f"Total params: {total:,}",
            f"Trainable params: {total:,}",
            "Non-trainable params: 0",
            rule,
        ]
    )
