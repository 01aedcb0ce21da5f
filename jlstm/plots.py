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


def learning_curves(histories: Mapping[str, History], path: PathLike, *, title: str = "") -> Path:
    """One panel per metric ("loss", "accuracy", ...), a line per run for training and a
    dashed one for its "val_" twin (the validation split), against the epoch.

    `histories` maps a run's label to `jlstm.train.fit`'s history (a "stopped" note is no curve).

    >>> import os, tempfile
    >>> h = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7]}
    >>> learning_curves({"": h}, os.path.join(tempfile.mkdtemp(), "c.png")).suffix
    '.png'
    """
    if not histories:
        raise ValueError("learning_curves: expected at least one history, got none")
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
        ax.set(xlabel="epoch", ylabel=name, title=name)
        if name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(
    y_true: Any, y_pred: Any, path: PathLike, *, title: str = "", labels: Sequence[Any] | None = None
) -> Path:
    """The confusion matrix of integer labels, drawn by scikit-learn's display.

    >>> import os, tempfile
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], os.path.join(tempfile.mkdtemp(), "cm.png")).suffix
    '.png'
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, (ax,) = _figure(5.5, 5.0)
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=labels, ax=ax, colorbar=False)
    ax.set_title(title)
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
