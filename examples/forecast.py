"""Forecasting: an LSTM predicts the next `--horizon` months of a synthetic seasonal series
(trend + a yearly cycle + noise) from the last `--window`, against the seasonal-naive
forecast (the same months a year earlier, shifted by the last year's trend).

Each window is scaled around its last value, as `jlstm train co2` does for Mauna Loa's CO2;
the model is `Sequential([LSTM, Dense(horizon)])` trained with `jlstm.train.fit` on the
series' first 80% and tested on windows whose targets lie in the last 20%.

    python examples/forecast.py                 # about 20 s on 2 busy cores
    python examples/forecast.py --months 1200 --epochs 60
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax

import jlstm
from jlstm import train


def series(rng: np.random.Generator, months: int) -> np.ndarray:
    """A monthly series: a slow trend, a yearly cycle and noise."""
    t = np.arange(months)
    return 0.05 * t + 2.0 * np.sin(2 * np.pi * t / 12) + rng.normal(scale=0.3, size=months)


def windows(values: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(past, future) of every window: (n, window) and (n, horizon)."""
    starts = np.arange(len(values) - window - horizon + 1)
    past = values[starts[:, None] + np.arange(window)]
    future = values[starts[:, None] + window + np.arange(horizon)]
    return past, future


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Trains the forecaster and compares it with the seasonal-naive forecast.

    Args:
        argv: the command line's arguments; None for `sys.argv[1:]`.

    Returns:
        The test MAE of the LSTM ("mae") and of the seasonal-naive forecast ("naive_mae").
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--months", type=int, default=600)
    parser.add_argument("--window", type=int, default=24, help="past months the model reads (at least 13)")
    parser.add_argument("--horizon", type=int, default=6, help="months ahead to predict (at most 12)")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.window < 13 or not 1 <= args.horizon <= 12:  # the naive forecast looks a year back
        parser.error(f"expected --window >= 13 and --horizon in [1, 12], got {args.window} and {args.horizon}")
    past, future = windows(series(np.random.default_rng(args.seed), args.months), args.window, args.horizon)
    level = past[:, -1:]  # each window around its last value, in units of the series' spread
    scale = float(np.std(np.diff(past, axis=1)))
    x = ((past - level) / scale)[..., None].astype(np.float32)
    y = ((future - level) / scale).astype(np.float32)
    test = np.arange(len(x)) + args.window >= int(0.8 * args.months)  # targets in the last 20%
    train_rows = np.arange(len(x)) + args.window + args.horizon <= int(0.8 * args.months)

    model = jlstm.Sequential([jlstm.LSTM(args.units), jlstm.Dense(args.horizon)])
    _, params = model.init(jax.random.key(args.seed), (None, args.window, 1))
    params, history = train.fit(
        model,
        params,
        optax.adam(3e-3),
        (x[train_rows], y[train_rows]),
        loss=train.mean_squared_error,
        epochs=args.epochs,
        batch_size=32,
        rng=jax.random.key(args.seed + 1),
    )
    predicted = level[test] + scale * np.asarray(jax.jit(model.apply)(params, x[test]))
    # Seasonal naive: the same months a year earlier, plus the last year's change.
    ahead = np.arange(1, args.horizon + 1)
    naive = past[test][:, ahead - 13] + (past[test][:, -1:] - past[test][:, -13:-12])
    mae = float(np.abs(predicted - future[test]).mean())
    naive_mae = float(np.abs(naive - future[test]).mean())
    print(
        f"training loss (MSE, scaled units): {history['loss'][0]:.4f} at epoch 1, {history['loss'][-1]:.4f} at the end"
    )
    print(
        f"test MAE over {int(test.sum())} windows, 1-{args.horizon} months ahead: "
        f"LSTM {mae:.3f}, seasonal naive {naive_mae:.3f}"
    )
    return {"mae": mae, "naive_mae": naive_mae}


if __name__ == "__main__":
    main()
