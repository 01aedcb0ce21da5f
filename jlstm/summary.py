"""Counting params and printing a Keras-style summary table.

>>> import jlstm
>>> jlstm.count_params(jlstm.LSTM(5), (None, 11, 3))
180
>>> print(jlstm.summary(jlstm.LSTM(5), (None, 11, 3)).splitlines()[4].rstrip())
lstm_1 (LSTM)                (None, 5)                 180
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax

from jlstm import _checks
from jlstm.layers import Layer, OutputShape, Shape


def count_params(tree_or_layer: Any, input_shape: Shape | None = None, *, batch_dims: int = 0) -> int:
    """The number of scalars in a param tree, or in the params a layer would build.

    With a layer and an input shape it counts abstractly through `jax.eval_shape`,
    so nothing is allocated however large the model.

    An ensemble's params, `jax.vmap(lambda key: layer.init(key, input_shape)[1])(keys)` (the
    params only: vmapped whole, `init`'s output shape would come back with its ints as
    arrays of the ensemble's size), lead with the ensemble's axis; `batch_dims=1` counts
    one member, where the whole tree counts them all:

    >>> import numpy as np, jlstm
    >>> member = {"kernel": np.zeros((3, 20)), "recurrent_kernel": np.zeros((5, 20)), "bias": np.zeros(20)}
    >>> ensemble = {name: np.stack([leaf] * 4) for name, leaf in member.items()}  # as vmap stacks them
    >>> jlstm.count_params(ensemble), jlstm.count_params(ensemble, batch_dims=1)
    (720, 180)

    Args:
        tree_or_layer: a param tree of arrays (or `jax.ShapeDtypeStruct`s), or a `Layer`.
        input_shape: with a layer, the input shape to build its params for; else None.
        batch_dims: how many leading axes of every leaf index members of a batch of param
            sets (all leaves share them), left out of the count; 0 with a layer.

    Returns:
        The total number of scalars, per member with `batch_dims`.
    """
    if isinstance(batch_dims, bool) or not isinstance(batch_dims, int) or batch_dims < 0:
        raise TypeError(f"count_params: expected batch_dims as an int >= 0, got {batch_dims!r}")
    if isinstance(tree_or_layer, Layer):
        if input_shape is None:
            raise TypeError("count_params: expected an input_shape with a layer, got None")
        if batch_dims:
            raise ValueError(
                f"count_params: expected batch_dims=0 with a layer (its params have no batch axes), got {batch_dims}"
            )
        _, tree = abstract_init(tree_or_layer, input_shape)
    else:
        if input_shape is not None:
            raise TypeError(
                f"count_params: expected a jlstm Layer with an input_shape, got {type(tree_or_layer).__name__} "
                "(a param tree takes no input_shape)"
            )
        tree = tree_or_layer
    leaves = _array_leaves(tree, batch_dims)
    return sum(math.prod(leaf.shape[batch_dims:]) for leaf in leaves)


def _array_leaves(tree: Any, batch_dims: int) -> list[Any]:
    """The tree's leaves, checked to be arrays whose first `batch_dims` axes agree."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    batch: tuple[int, ...] | None = None
    for path, leaf in leaves:
        if not hasattr(leaf, "shape"):
            raise TypeError(f"count_params: expected array leaves, got {type(leaf).__name__}")
        where = jax.tree_util.keystr(path) or "the root"
        if len(leaf.shape) < batch_dims:
            raise ValueError(
                f"count_params: expected leaves of rank >= batch_dims={batch_dims}, got shape {leaf.shape} at {where}"
            )
        if batch is None:
            batch = leaf.shape[:batch_dims]
        elif leaf.shape[:batch_dims] != batch:
            raise ValueError(
                f"count_params: expected every leaf to lead with the batch axes {batch} (batch_dims={batch_dims}), "
                f"got shape {leaf.shape} at {where}"
            )
    return [leaf for _, leaf in leaves]


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


STYLES = ("keras2", "keras3")
# Each style's table width and its columns' right edges as fractions of it: Keras 2's
# print_summary (the seed notebook's tables) and Keras 3's.
_LINE_LENGTHS = {"keras2": 65, "keras3": 88}
_POSITIONS = {"keras2": (0.45, 0.85, 1.0), "keras3": (0.45, 0.80, 1.0)}
MIN_LINE_LENGTH = 20  # Keras 3 refuses a column under 4 characters


class Namer:
    """Keras-style default names, counted per layer type.

    Keras 2's are `lstm_1`, `lstm_2`, `input_1` (the seed notebook's), Keras 3's `lstm`,
    `lstm_1`, `input_layer`. Share one Namer between summaries to keep counting across
    models, as Keras does within a session (the seed's `lstm_3` follows a Bidirectional's
    `lstm_2`).

    Args:
        style: "keras2" or "keras3", the naming of `summary`'s style of the same name.
    """

    def __init__(self, style: str = "keras2") -> None:
        self.style = _checks.one_of(style, STYLES, "Namer style")
        self._counts: Counter[str] = Counter()

    def next(self, type_name: str) -> str:
        """The next default name for a layer of `type_name`.

        Args:
            type_name: the layer's type ("LSTM", "InputLayer", ...).

        Returns:
            The type's snake-case name with its count: "lstm_2" for the second LSTM in
            Keras 2's style, "lstm_1" in Keras 3's (whose first is "lstm").
        """
        if type_name == "InputLayer":
            prefix = "input" if self.style == "keras2" else "input_layer"
        else:
            prefix = _snake_case(type_name)
        self._counts[prefix] += 1
        count = self._counts[prefix] - (self.style == "keras3")
        return f"{prefix}_{count}" if count else prefix

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


class _Row(NamedTuple):
    name: str
    shape: str
    params: int


def _rows(layer: Layer, input_shape: Shape, names: dict[int, str]) -> tuple[list[_Row], int]:
    """A row per layer (a Sequential's layers, else the layer) and the params' total bytes."""
    rows, nbytes = [], 0
    shape: OutputShape = input_shape
    for sub in layer.sublayers if layer.type_name == "Sequential" else (layer,):
        if isinstance(shape, list):  # as Sequential.init: only the last layer may return several outputs
            raise ValueError(f"summary: {sub.type_name} follows a layer that returns several outputs {shape}")
        shape, params = abstract_init(sub, shape)
        leaves = jax.tree_util.tree_leaves(params)
        nbytes += sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in leaves)
        rows.append(_Row(f"{names[id(sub)]} ({sub.type_name})", str(shape), count_params(params)))
    return rows, nbytes


def _column_widths(style: str, line_length: int) -> list[int]:
    edges = [int(p * line_length) for p in _POSITIONS[style]]
    return [end - start for start, end in zip([0, *edges], edges)]


def _keras2_row(fields: Sequence[Any], line_length: int) -> str:
    line = ""
    for field, end in zip(fields, itertools.accumulate(_column_widths("keras2", line_length))):
        # Keras keeps a space between columns by overwriting a truncated field's last char.
        line = (line[:-1] + " " if line else "") + str(field)
        line = line[:end]
        line += " " * (end - len(line))
    return line


def _keras2(rows: list[_Row], total: int, line_length: int) -> str:
    rule = "_" * line_length
    return "\n".join(
        [
            rule,
            _keras2_row(("Layer (type)", "Output Shape", "Param #"), line_length),
            f"\n{rule}\n".join(_keras2_row(row, line_length) for row in rows),
            f"Total params: {total:,}",
            f"Trainable params: {total:,}",
            "Non-trainable params: 0",
            rule,
        ]
    )


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of `width` as rich wraps a table cell: at spaces, a longer word on a
    line of its own, cut to `width` with an ellipsis."""
    lines, line = [], ""
    for word in re.findall(r"\s*\S+\s*", text):
        if len(line) + len(word.rstrip()) <= width:
            line += word
            continue
        if line:
            lines.append(line)
        line = word
    lines.append(line)
    return [part if len(part.rstrip()) <= width else part[: width - 1] + "…" for part in lines]


def _keras3_lines(fields: Sequence[str], widths: Sequence[int], side: str, header: bool = False) -> list[str]:
    """A table row's lines: each field wrapped to its column, the params right-aligned."""
    wrapped = [_wrap(field, width) for field, width in zip(fields, widths)]
    height = max(map(len, wrapped))
    lines = []
    for i in range(height):
        cells = []
        for column, (cell, width) in enumerate(zip(wrapped, widths)):
            at = i - (height - len(cell)) if header else i  # rich bottom-aligns the header, tops the rest
            text = cell[at].rstrip() if 0 <= at < len(cell) else ""
            cells.append(text.rjust(width) if column == 2 else text.ljust(width))
        lines.append(side + side.join(f" {cell} " for cell in cells) + side)
    return lines


def _readable_bytes(n: float) -> str:
    """Keras 3's size of a model's weights: "720.00 B", "1.41 KB", in steps of 1024."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"


def _keras3(model_name: str, rows: list[_Row], total: int, nbytes: int, line_length: int) -> str:
    # rich gives each column its width plus a space either side in a table of line_length less
    # its 4 borders, 10 characters too many, which its ratio_reduce takes as 3, 4 and 3.
    widths = [width - cut for width, cut in zip(_column_widths("keras3", line_length), (3, 4, 3))]

    def rule(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (width + 2) for width in widths) + right

    lines = [f'Model: "{model_name}"', rule("┏", "━", "┳", "┓")]
    lines += _keras3_lines(("Layer (type)", "Output Shape", "Param #"), widths, "┃", header=True)
    lines.append(rule("┡", "━", "╇", "┩"))
    for i, row in enumerate(rows):
        if i:
            lines.append(rule("├", "─", "┼", "┤"))
        lines += _keras3_lines((row.name, row.shape, f"{row.params:,}"), widths, "│")
    size = _readable_bytes(nbytes)
    return "\n".join(
        [
            *lines,
            rule("└", "─", "┴", "┘"),
            f" Total params: {total:,} ({size})",
            f" Trainable params: {total:,} ({size})",
            " Non-trainable params: 0 (0.00 B)",
        ]
    )


def summary(
    layer: Layer,
    input_shape: Shape,
    *,
    namer: Namer | None = None,
    style: str = "keras2",
    line_length: int | None = None,
) -> str:
    """The Keras summary table of `layer` on inputs of `input_shape`, as a string.

    Totals count every param as trainable (jlstm has no frozen params). Two styles:

    - "keras2" (the default): Keras 2's table, the seed notebook's (the Keras 2 notebook of
      four LSTM summaries that jlstm reproduces line for line, `bidirectional_1 (Bidirection`
      cut at its 29-character column included), names counted from 1 (`lstm_1`), an
      InputLayer row first and a Sequential's layers after it.
    - "keras3": Keras 3's `model.summary()` as it prints off a terminal (box-drawn, sizes
      in bytes, names counted from 0: `lstm`, `lstm_1`), of `keras.Model(inputs, layer(inputs))`
      for a layer (an InputLayer row first, model "functional") and of `keras.Sequential` for
      a Sequential (no InputLayer row, model "sequential").

    >>> import jlstm
    >>> print(jlstm.summary(jlstm.LSTM(5), (None, 11, 3), style="keras3", line_length=40))
    Model: "functional"
    ┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓
    ┃                 ┃ Output     ┃ Param ┃
    ┃ Layer (type)    ┃ Shape      ┃     # ┃
    ┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩
    │ input_layer     │ (None, 11, │     0 │
    │ (InputLayer)    │ 3)         │       │
    ├─────────────────┼────────────┼───────┤
    │ lstm (LSTM)     │ (None, 5)  │   180 │
    └─────────────────┴────────────┴───────┘
     Total params: 180 (720.00 B)
     Trainable params: 180 (720.00 B)
     Non-trainable params: 0 (0.00 B)

    Args:
        layer: the layer or model to describe.
        input_shape: its input shape (batch, timesteps, features); batch and timesteps may be None.
        namer: the default names' counter to continue, shared between summaries as in a Keras
            session (of the same style); None starts a new one.
        style: "keras2" or "keras3", as above.
        line_length: the table's width, at least 20; None for the style's default, Keras's own:
            65 for "keras2", 88 for "keras3" (what Keras 3 prints on a terminal of 92 columns
            or more).

    Returns:
        The table, as that Keras's `model.summary()` prints it.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"summary: expected a jlstm Layer, got {type(layer).__name__}")
    style = _checks.one_of(style, STYLES, "summary style")
    if namer is not None and not isinstance(namer, Namer):
        raise TypeError(f"summary: expected namer as a jlstm.Namer or None, got {type(namer).__name__}")
    if namer is not None and namer.style != style:
        raise ValueError(f"summary: expected a Namer of style {style!r} (the table's), got one of {namer.style!r}")
    line_length = (
        _LINE_LENGTHS[style] if line_length is None else _checks.positive_int(line_length, "summary line_length")
    )
    if line_length < MIN_LINE_LENGTH:
        raise ValueError(f"summary: expected line_length >= {MIN_LINE_LENGTH}, got {line_length}")
    input_shape = _checks.sequence_shape(input_shape, "summary")
    namer = Namer(style) if namer is None else namer
    sequential = layer.type_name == "Sequential"
    input_name = namer.next("InputLayer")
    names = namer.name_tree(layer)
    rows, nbytes = _rows(layer, input_shape, names)
    total = sum(row.params for row in rows)
    if style == "keras2":
        return _keras2([_Row(f"{input_name} (InputLayer)", str(input_shape), 0), *rows], total, line_length)
    model_name = namer.next("Functional")  # a Keras 3 Sequential builds a functional model inside, so it counts too
    if sequential:
        return _keras3(names[id(layer)], rows, total, nbytes, line_length)
    return _keras3(
        model_name, [_Row(f"{input_name} (InputLayer)", str(input_shape), 0), *rows], total, nbytes, line_length
    )
