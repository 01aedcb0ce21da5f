"""PNG plots of a training run, drawn with matplotlib's Agg canvas (no pyplot state, no
display needed). Each function writes its file atomically and returns its path.

>>> import os, tempfile
>>> path = learning_curves({"run": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}},
...                        os.path.join(tempfile.mkdtemp(), "curves.png"))
>>> path.name, path.stat().st_size > 1000
('curves.png', True)
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jlstm.checkpoint import write_atomic

PathLike = str | os.PathLike
History = Mapping[str, Sequence[float] | str]


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Figure, path: PathLike) -> Path:
    # Drawn in memory, then written atomically: no half-written PNG, ever.
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    write_atomic(os.fspath(path), png.getvalue())
    return Path(path)


def scaled(history: History, factors: Mapping[str, float]) -> dict[str, Any]:
    """`history` with each metric in `factors` and its "val_" twin multiplied by its factor,
    e.g. a loss in scaled units back in the data's (a "stopped" note stays as it is).

    >>> scaled({"mae": [0.5, 0.25], "val_mae": [1.0], "loss": [2.0]}, {"mae": 4.0})
    {'mae': [2.0, 1.0], 'val_mae': [4.0], 'loss': [2.0]}

    Args:
        history: a `jlstm.train.fit` history.
        factors: the factor of each metric, by its name without "val_".

    Returns:
        A new history.
    """
    return {
        key: values if isinstance(values, str) else [v * factors.get(key.removeprefix("val_"), 1.0) for v in values]
        for key, values in history.items()
    }


def learning_curves(
    histories: Mapping[str, History],
    path: PathLike,
    *,
    title: str = "",
    labels: Mapping[str, str] | None = None,
) -> Path:
    """One panel per metric ("loss", "accuracy", ...), a line per run for training and a
    dashed one for its "val_" twin (the validation split), against the epoch; the loss on a
    log scale.

    >>> import os, tempfile
    >>> h = {"loss": [1.0, 0.5], "accuracy": [50.0, 80.0], "val_loss": [1.1, 0.7]}
    >>> learning_curves({"": h}, os.path.join(tempfile.mkdtemp(), "c.png"),
    ...                 labels={"loss": "cross-entropy (nats)", "accuracy": "accuracy (%)"}).suffix
    '.png'

    Args:
        histories: a run's label -> its `jlstm.train.fit` history (a "stopped" note is no curve).
        path: the PNG to write.
        title: the figure's title.
        labels: a metric's name -> its panel's title and y axis label, with the units
            ("MAE (ppm)"); the name itself for a metric not in it.

    Returns:
        `path`, written.
    """
    if not histories:
        raise ValueError("learning_curves: expected at least one history, got none")
    labels = labels or {}
    curves = [k for h in histories.values() for k, v in h.items() if not isinstance(v, str)]  # not "stopped"
    names = list(dict.fromkeys(k for k in curves if not k.startswith("val_")))
    fig, axes = _figure(4.5 * len(names), 3.6, len(names))
    for ax, name in zip(axes, names):
        for i, (label, history) in enumerate(histories.items()):
            color = f"C{i}"
            for key, style, split in ((name, "-", "train"), (f"val_{name}", "--", "validation")):
                if key in history:
                    epochs = np.arange(1, len(history[key]) + 1)
                    ax.plot(epochs, history[key], style, color=color, label=f"{label} {split}".strip())
        ax.set(xlabel="epoch", ylabel=labels.get(name, name), title=labels.get(name, name))
        if name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def grouped_bars(
    values: Mapping[str, Mapping[str, float]], path: PathLike, *, title: str = "", ylabel: str = ""
) -> Path:
    """A group of bars per key of `values`, a bar per series in it (a color each, the same
    series in every group), each bar's value written above it.

    >>> import os, tempfile
    >>> bars = {"as trained": {"masked": 93.9, "unmasked": 92.8}, "padded": {"masked": 93.9, "unmasked": 41.1}}
    >>> grouped_bars(bars, os.path.join(tempfile.mkdtemp(), "bars.png"), ylabel="accuracy (%)").suffix
    '.png'

    Args:
        values: a group's label -> a series' label -> its value.
        path: the PNG to write.
        title: the figure's title.
        ylabel: the y axis label, with the units.

    Returns:
        `path`, written.
    """
    series = list(dict.fromkeys(name for group in values.values() for name in group))
    if not series:
        raise ValueError("grouped_bars: expected at least one value, got none")
    fig, (ax,) = _figure(1.6 + 1.2 * len(values) * len(series), 4.0)
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        at = [g for g, group in enumerate(values.values()) if name in group]
        heights = [group[name] for group in values.values() if name in group]
        bars = ax.bar(np.array(at) + (i - (len(series) - 1) / 2) * width, heights, width, label=name, color=f"C{i}")
        ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks(range(len(values)), list(values))
    ax.set(title=title, ylabel=ylabel)
    ax.margins(y=0.12)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower left")
    return _save(fig, path)


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    path: PathLike,
    *,
    title: str = "",
    labels: Sequence[Any] | None = None,
    axis_labels: tuple[str, str] = ("predicted label", "true label"),
) -> Path:
    """The confusion matrix of integer labels (a cell counts the examples), drawn by
    scikit-learn's display.

    >>> import os, tempfile
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], os.path.join(tempfile.mkdtemp(), "cm.png")).suffix
    '.png'

    Args:
        y_true: the true labels.
        y_pred: the predicted labels.
        path: the PNG to write.
        title: the figure's title.
        labels: the labels to show, in order; None for those that occur.
        axis_labels: the x (predicted) and y (true) axis labels.

    Returns:
        `path`, written.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, (ax,) = _figure(5.5, 5.0)
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=labels, ax=ax, colorbar=False)
    ax.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    return _save(fig, path)


def forecast(
    dates: Any,
    truth: Any,
    predictions: Mapping[str, Any],
    path: PathLike,
    *,
    context: tuple[Any, Any] | None = None,
    title: str = "",
    ylabel: str = "",
) -> Path:
    """The truth against one or more forecasts over `dates`; `context` (dates, values)
    draws the series before them in grey.

    >>> import os, tempfile, numpy as np
    >>> t = np.arange(10)
    >>> forecast(t, t * 1.0, {"model": t + 0.5}, os.path.join(tempfile.mkdtemp(), "f.png")).suffix
    '.png'

    Args:
        dates: the x values of the truth and the forecasts.
        truth: the true values.
        predictions: a forecast's label -> its values.
        path: the PNG to write.
        context: (dates, values) of the series before, drawn in grey; None for none.
        title: the figure's title.
        ylabel: the y axis label, with the units.

    Returns:
        `path`, written.
    """
    fig, (ax,) = _figure(9.0, 4.0)
    if context is not None:
        ax.plot(*context, color="0.6", lw=1, label="history")
    ax.plot(dates, truth, color="black", lw=1.5, label="truth")
    for i, (label, values) in enumerate(predictions.items()):
        ax.plot(dates, values, color=f"C{i}", lw=1.2, label=label)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
