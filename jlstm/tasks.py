"""The tasks behind `jlstm train`: a data set, a model, a training recipe, the test
metrics and the plots, each a pure function of a `Config`.

Each task trains on its data set's train split with the validation split as `fit`'s
held-out data (the "val_" history), then evaluates the test split once, after training.

>>> cfg = Config(epochs=1, batch_size=64, lr=1e-2, units=8, seed=0)
>>> result = TASKS["digits"].run(cfg)
>>> sorted(result.test), sorted(result.histories["digits"])
(['accuracy', 'loss'], ['accuracy', 'loss', 'val_accuracy', 'val_loss'])
>>> sorted(result.plots)
['confusion_matrix.png', 'learning_curves.png']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import jax
import numpy as np
import optax

from jlstm import datasets, train
from jlstm.combinators import Bidirectional, Sequential
from jlstm.layers import LSTM, Dense, Layer, Params


def _plots():
    # matplotlib takes half a second to import; only load it when a plot is drawn.
    from jlstm import plots

    return plots


class Config(NamedTuple):
    """A run's settings. With `state_dir`, each of a task's `fit` runs saves its `TrainState`
    there after every epoch (`state_path`); with `resume` too, a run continues from its file
    where there is one."""

    epochs: int
    batch_size: int
    lr: float
    units: int
    seed: int
    progress: bool = False
    state_dir: str | None = None
    resume: bool = False


class Result(NamedTuple):
    """A trained model, its metrics on the test split (evaluated once, after training), the
    line that reports them, the histories of its runs ("val_" keys: the validation split),
    and the plots to draw: file name -> function writing that path."""

    params: Params
    test: dict[str, float]
    summary: str
    histories: dict[str, train.History]
    plots: dict[str, Callable[[Path], Path]]


class Task(NamedTuple):
    run: Callable[[Config], Result]
    defaults: Config
    help: str
    runs: tuple[str, ...]  # its fit runs, in order: the names of its histories and state files


def state_path(directory: str | Path, run: str) -> Path:
    """Where a task's `fit` run `run` keeps its `TrainState` under `directory`."""
    return Path(directory) / f"train_state_{run}.ckpt"


def optimizer(cfg: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam on a warm-up + cosine schedule peaking at `cfg.lr`, gradients clipped to norm 1."""
    total = cfg.epochs * steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(total // 20, 1), total)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def _fit(
    model: Layer, cfg: Config, run: str, train_split: tuple, validation_split: tuple, **kwargs: Any
) -> tuple[Params, train.History]:
    _, params = model.init(jax.random.key(cfg.seed), (None, *train_split[0].shape[1:]))
    steps = math.ceil(len(train_split[0]) / cfg.batch_size)
    state = None if cfg.state_dir is None else state_path(cfg.state_dir, run)
    return train.fit(
        model,
        params,
        optimizer(cfg, steps),
        train_split,
        validation_split,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        rng=jax.random.key(cfg.seed + 1),
        progress=cfg.progress,
        checkpoint_to=state,
        resume_from=state if cfg.resume and state is not None and state.exists() else None,
        **kwargs,
    )


class Objective(TypedDict):
    """The loss and metrics that `train.fit` and `train.evaluate` take as keywords."""

    loss: train.Loss
    metrics: train.Metrics


CLASSIFY: Objective = {"loss": train.sparse_categorical_crossentropy, "metrics": {"accuracy": train.accuracy}}


def _classifier(cfg: Config) -> Layer:
    return Sequential([Bidirectional(LSTM(cfg.units)), Dense(10)])


Plots = dict[str, Callable[[Path], Path]]
# The classifiers' curves: the loss as it is, the accuracy in percent.
CLASSIFY_PERCENT = {"accuracy": 100.0}
CLASSIFY_LABELS = {"loss": "cross-entropy (nats, log scale)", "accuracy": "accuracy (%)"}
DIGIT_AXES = ("predicted digit", "true digit")


def _right(y: np.ndarray, predicted: np.ndarray) -> str:
    right, total = int((predicted == y).sum()), len(y)
    return f"{right / total:.2%} ({right}/{total})"


def _digits_plots(cfg: Config, history: train.History, data: datasets.Classification, predicted: np.ndarray) -> Plots:
    """digits' plots: its learning curves (accuracy in %) and the test split's confusion matrix."""
    return {
        "learning_curves.png": lambda p: _plots().learning_curves(
            {"": _plots().scaled(history, CLASSIFY_PERCENT)},
            p,
            title=f"digits: Bidirectional(LSTM({cfg.units})) -> Dense(10), per epoch",
            labels=CLASSIFY_LABELS,
        ),
        "confusion_matrix.png": lambda p: _plots().confusion_matrix(
            data.test.y,
            predicted,
            p,
            title=f"digits test split: accuracy {_right(data.test.y, predicted)}; images per cell",
            axis_labels=DIGIT_AXES,
        ),
    }


def run_digits(cfg: Config) -> Result:
    """Bidirectional(LSTM) -> Dense on scikit-learn's digits read row by row."""
    data = datasets.digits(cfg.seed)
    model = _classifier(cfg)
    params, history = _fit(model, cfg, "digits", data.train[:2], data.validation[:2], **CLASSIFY)
    test = train.evaluate(model, params, data.test[:2], **CLASSIFY)
    predicted = train.predict(model, params, data.test.x).argmax(-1)
    right, total = int((predicted == data.test.y).sum()), len(data.test.y)
    return Result(
        params,
        test,
        f"digits: test accuracy {test['accuracy']:.4f} ({right}/{total})",
        {"digits": history},
        _digits_plots(cfg, history, data, predicted),
    )


def _pad_rows(split: datasets.Split, timesteps: int) -> datasets.Split:
    extra = timesteps - split.x.shape[1]
    x = np.pad(split.x, ((0, 0), (0, extra), (0, 0)))
    mask = None if split.mask is None else np.pad(split.mask, ((0, 0), (0, extra)))
    return datasets.Split(x, split.y, mask)


def _with_mask(split: datasets.Split) -> tuple[Any, ...]:
    return tuple(split)


def _without_mask(split: datasets.Split) -> tuple[Any, ...]:
    return split[:2]


PADDED_TO = 16  # ragged-digits' longer padding of the test set, as a batch from a longer bucket has it


def run_ragged_digits(cfg: Config, *, padded_to: int = PADDED_TO) -> Result:
    """The digits with random trailing rows cut: one model trained with the mask, one
    on the same zero-padded data without it. Both are also tested on the test set padded
    to `padded_to` rows, as a batch from a longer bucket would be."""
    data = datasets.ragged_digits(cfg.seed)
    longer = _pad_rows(data.test, padded_to)
    model = _classifier(cfg)
    runs, test = {}, {}
    for name, masked in (("masked", True), ("unmasked", False)):
        if cfg.progress:
            print(f"{name}:")
        arrays = _with_mask if masked else _without_mask
        params, history = _fit(model, cfg, name, arrays(data.train), arrays(data.validation), **CLASSIFY)
        runs[name] = (params, history)
        for label, split in (("", data.test), ("padded_", longer)):
            test[f"{name}_{label}accuracy"] = train.evaluate(model, params, arrays(split), **CLASSIFY)["accuracy"]
    m = test
    summary = (
        f"ragged-digits: test accuracy with mask {m['masked_accuracy']:.4f}, "
        f"without {m['unmasked_accuracy']:.4f}; padded to {padded_to} rows: "
        f"with mask {m['masked_padded_accuracy']:.4f}, "
        f"without {m['unmasked_padded_accuracy']:.4f}"
    )
    histories = {name: h for name, (_, h) in runs.items()}
    params = runs["masked"][0]
    predicted = train.predict(model, params, data.test.x, data.test.mask).argmax(-1)
    return Result(params, test, summary, histories, _ragged_plots(cfg, histories, data, predicted, test, padded_to))


def _ragged_plots(
    cfg: Config,
    histories: dict[str, train.History],
    data: datasets.Classification,
    predicted: np.ndarray,
    test: dict[str, float],
    padded_to: int,
) -> Plots:
    """ragged-digits' plots: both runs' learning curves, the finding (each run's test accuracy
    as trained and padded to `padded_to` rows, as grouped bars) and the masked run's
    confusion matrix."""
    assert data.test.mask is not None  # ragged_digits' splits have masks
    lengths = data.test.mask.sum(axis=1)
    as_trained = f"test set as trained\n({lengths.min()}-{lengths.max()} rows, padded to {data.test.x.shape[1]})"
    bars = {
        group: {
            f"{run} mask": 100 * test[f"{name}_{key}accuracy"]
            for run, name in (("with", "masked"), ("without", "unmasked"))
        }
        for group, key in ((as_trained, ""), (f"the same test set\npadded to {padded_to} rows", "padded_"))
    }
    return {
        "learning_curves.png": lambda p: _plots().learning_curves(
            {name: _plots().scaled(h, CLASSIFY_PERCENT) for name, h in histories.items()},
            p,
            title=f"ragged digits: Bidirectional(LSTM({cfg.units})) -> Dense(10), with and without the mask",
            labels=CLASSIFY_LABELS,
        ),
        "padding.png": lambda p: _plots().grouped_bars(
            bars,
            p,
            title="ragged digits: the mask against a padding the model never saw",
            ylabel="test accuracy (%)",
        ),
        "confusion_matrix.png": lambda p: _plots().confusion_matrix(
            data.test.y,
            predicted,
            p,
            title=f"ragged digits test split, masked: accuracy {_right(data.test.y, predicted)}; images per cell",
            axis_labels=DIGIT_AXES,
        ),
    }


def _month(date: np.datetime64) -> str:
    return str(date.astype("datetime64[M]"))


def run_co2(cfg: Config) -> Result:
    """LSTM -> Dense(12): the next 12 months of Mauna Loa CO2 from the last 36, validated
    on the 5 years before the last 10 and tested on the held-out last 10 years against the
    seasonal-naive forecast (last year repeated)."""
    data = datasets.co2()
    horizon = data.train.y.shape[1]
    model = Sequential([LSTM(cfg.units), Dense(horizon)])
    params, history = _fit(
        model,
        cfg,
        "co2",
        data.train[:2],
        data.validation[:2],
        loss=train.mean_squared_error,
        metrics={"mae": train.mean_absolute_error},
    )
    predicted = data.to_units(train.predict(model, params, data.test.x), data.test_level)
    truth, baseline = data.test_truth, data.test_baseline
    test = {
        "mae_ppm": float(np.abs(predicted - truth).mean()),
        "baseline_mae_ppm": float(np.abs(baseline - truth).mean()),
        "rmse_ppm": float(np.sqrt(np.square(predicted - truth).mean())),
        "baseline_rmse_ppm": float(np.sqrt(np.square(baseline - truth).mean())),
    }
    m = test
    summary = (
        f"co2: test MAE {m['mae_ppm']:.3f} ppm vs seasonal naive {m['baseline_mae_ppm']:.3f} ppm "
        f"(RMSE {m['rmse_ppm']:.3f} vs {m['baseline_rmse_ppm']:.3f}), 1-12 months ahead "
        f"over {_month(data.test_dates[0, 0])}..{_month(data.test_dates[-1, -1])}"
    )
    return Result(params, test, summary, {"co2": history}, _co2_plots(cfg, history, data, predicted, test))


def _co2_plots(
    cfg: Config, history: train.History, data: datasets.Forecast, predicted: np.ndarray, test: dict[str, float]
) -> Plots:
    """co2's plots: the learning curves in ppm (the model's errors are in scaled units, times
    `data.scale` in ppm) and the test period's forecasts against the truth."""
    truth, baseline = data.test_truth, data.test_baseline
    # Forecasts from every horizon-th origin tile the held-out tail end to end.
    tiles = np.arange(0, len(truth), truth.shape[1])
    flat = lambda a: a[tiles].reshape(-1)  # noqa: E731
    context = slice(data.tail_start - 4 * truth.shape[1], data.tail_start)
    validation = f"{_month(data.dates[data.validation_start])}..{_month(data.dates[data.tail_start - 1])}"
    return {
        "learning_curves.png": lambda p: _plots().learning_curves(
            {"": _plots().scaled(history, {"loss": data.scale**2, "mae": data.scale})},
            p,
            title=f"co2: LSTM({cfg.units}) -> Dense({truth.shape[1]}), errors in ppm (validation {validation})",
            labels={"loss": "MSE (ppm², log scale)", "mae": "MAE (ppm)"},
        ),
        "forecast.png": lambda p: _plots().forecast(
            flat(data.test_dates),
            flat(truth),
            {
                f"LSTM (MAE {test['mae_ppm']:.2f} ppm)": flat(predicted),
                f"seasonal naive (MAE {test['baseline_mae_ppm']:.2f} ppm)": flat(baseline),
            },
            p,
            context=(data.dates[context], data.series[context]),
            ylabel="CO2 (ppm)",
            title="Mauna Loa CO2, test period: consecutive 12-month forecasts",
        ),
    }


TASKS: Mapping[str, Task] = {
    "digits": Task(
        run_digits,
        Config(epochs=60, batch_size=32, lr=1e-2, units=128, seed=0),
        "scikit-learn digits, rows as timesteps (accuracy)",
        ("digits",),
    ),
    "ragged-digits": Task(
        run_ragged_digits,
        Config(epochs=30, batch_size=32, lr=1e-2, units=128, seed=0),
        "digits with trailing rows cut, with vs without the mask",
        ("masked", "unmasked"),
    ),
    "co2": Task(
        run_co2,
        Config(epochs=200, batch_size=32, lr=1e-2, units=64, seed=0),
        "Mauna Loa CO2 12-month forecast vs seasonal naive (MAE, ppm)",
        ("co2",),
    ),
}
