"""Real data sets that installed packages ship: nothing is downloaded at run time.

- `digits`: scikit-learn's 8x8 handwritten digits read row by row: 8 timesteps of 8
  features, 10 classes.
- `ragged_digits`: the same with random trailing rows cut, zero-padded, with a mask.
- `co2`: statsmodels' Mauna Loa CO2 (weekly, 1958-2001) as monthly means; windows of
  past months predict the next months, with a seasonal-naive baseline on a held-out tail.

Each comes as train, validation and test splits: train for fitting, validation for the
learning curves and any choice made while training, test held out to be evaluated once.

>>> data = digits(seed=0)
>>> data.train.x.shape[1:], data.validation.x.shape[1:], data.test.x.shape[1:], data.num_classes
((8, 8), (8, 8), (8, 8), 10)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jlstm import _checks


class Split(NamedTuple):
    """Arrays with examples on the first axis; `mask` is bool (batch, timesteps) or None."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None


class Classification(NamedTuple):
    """A classification data set's three splits, and how many classes its labels count."""

    train: Split
    validation: Split
    test: Split
    num_classes: int


class Forecast(NamedTuple):
    """Windows of a series scaled around their last value: `x` (batch, window, 1) holds
    `(past - level) / scale` and `y` (batch, horizon) holds `(future - level) / scale`.
    `to_units(y, level)` maps a prediction back to the series' units.

    The test windows' targets all lie in the held-out tail of the series, from month
    `tail_start` on; the validation windows' targets in the months `validation_start` to
    `tail_start`, just before it; the training windows' targets end before `validation_start`.
    `test_level`, `test_truth` and `test_baseline` (seasonal naive) are in the series' units
    and `test_dates` are the dates of the targets, all (test batch, horizon).
    """

    train: Split
    validation: Split
    test: Split
    scale: float
    test_level: np.ndarray
    test_truth: np.ndarray
    test_baseline: np.ndarray
    test_dates: np.ndarray
    series: np.ndarray
    dates: np.ndarray
    tail_start: int
    validation_start: int

    def to_units(self, y: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Scaled values back in the series' units: `level + scale * y`.

        Args:
            y: predictions or targets (batch, horizon) in the scaled units.
            level: each window's level (batch,), e.g. `test_level`.

        Returns:
            (batch, horizon) in the series' units.
        """
        return np.asarray(level)[:, None] + self.scale * np.asarray(y)


def _check_fraction(value: float, what: str) -> float:
    if not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{what}: expected a fraction in (0, 1), got {value!r}")
    return float(value)


def _take(split: Split, rows: np.ndarray) -> Split:
    return Split(split.x[rows], split.y[rows], None if split.mask is None else split.mask[rows])


def validation_split(split: Split, fraction: float, seed: int = 0, *, stratify: bool = False) -> tuple[Split, Split]:
    """(train, validation): `fraction` of the rows of `split`, drawn with `seed`, set aside
    for validation; each part keeps the rows' original order. With `stratify`, `fraction`
    of each class (the integer labels `y`) is drawn, rounded per class.

    Args:
        split: the rows to divide.
        fraction: the part to set aside, in (0, 1).
        seed: the seed of the draw.
        stratify: draw `fraction` of each class of the integer labels `split.y` (rows,).

    Returns:
        `(train, validation)`, two `Split`s.

    Examples:
        >>> x, y = np.arange(10.0).reshape(10, 1, 1), np.arange(10) % 2
        >>> train, val = validation_split(Split(x, y), 0.2, seed=0, stratify=True)
        >>> len(train.x), sorted(val.y.tolist()), set(val.x.ravel()).isdisjoint(train.x.ravel())
        (8, [0, 1], True)
    """
    fraction = _check_fraction(fraction, "validation_split fraction")
    labels = np.asarray(split.y)
    if stratify and labels.ndim != 1:
        raise ValueError(f"validation_split stratify: expected labels of shape (rows,), got shape {labels.shape}")
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    r = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([r.permutation(g)[: round(fraction * len(g))] for g in groups]))
    if not 0 < len(rows) < len(labels):
        raise ValueError(
            f"validation_split: expected enough rows for a non-empty train and validation part at "
            f"fraction {fraction}, got {len(labels)} rows ({len(rows)} to validation)"
        )
    return _take(split, np.setdiff1d(np.arange(len(labels)), rows)), _take(split, rows)


def digits(seed: int = 0, test_size: float = 0.2, validation_size: float = 0.2) -> Classification:
    """scikit-learn's handwritten digits as sequences: each 8x8 image read row by row,
    pixels scaled to [0, 1]; a stratified `test_size` split drawn with `seed`, then a
    stratified `validation_size` of the rest (`validation_split`).

    Args:
        seed: the seed of both splits.
        test_size: the fraction held out for the test split, in (0, 1).
        validation_size: the fraction of the rest for the validation split, in (0, 1).

    Returns:
        A `Classification`: x float32 (batch, 8, 8), y int32 (batch,), 10 classes.

    Examples:
        >>> data = digits(seed=0)
        >>> len(data.train.x), len(data.validation.x), len(data.test.x)
        (1150, 287, 360)
        >>> data.train.x.dtype, float(data.train.x.max())
        (dtype('float32'), 1.0)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_size = _check_fraction(test_size, "digits test_size")
    validation_size = _check_fraction(validation_size, "digits validation_size")
    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).astype(np.float32).reshape(-1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels.astype(np.int32), test_size=test_size, random_state=seed, stratify=labels
    )
    train, validation = validation_split(Split(x_train, y_train), validation_size, seed, stratify=True)
    return Classification(train, validation, Split(x_test, y_test), 10)


def ragged_digits(
    seed: int = 0, test_size: float = 0.2, min_rows: int = 4, validation_size: float = 0.2
) -> Classification:
    """`digits` with each image cut to a random number of top rows in [min_rows, 8]; the
    cut rows are zeros and the mask is False there (post-padding).

    Args:
        seed: the seed of the splits and of the cuts.
        test_size: the fraction held out for the test split, in (0, 1).
        min_rows: the fewest rows kept, from 1 to 8.
        validation_size: the fraction of the rest for the validation split, in (0, 1).

    Returns:
        A `Classification` whose splits have a bool (batch, 8) mask.

    Examples:
        >>> data = ragged_digits(seed=0)
        >>> lengths = data.train.mask.sum(axis=1)
        >>> int(lengths.min()), int(lengths.max()), bool((data.train.x[~data.train.mask] == 0).all())
        (4, 8, True)
    """
    min_rows = _checks.positive_int(min_rows, "ragged_digits min_rows")
    if min_rows > 8:
        raise ValueError(f"ragged_digits min_rows: expected at most 8 rows, got {min_rows}")
    full = digits(seed, test_size, validation_size)
    r = np.random.default_rng(seed)

    def cut(split: Split) -> Split:
        lengths = r.integers(min_rows, 9, size=len(split.x))
        mask = np.arange(8)[None, :] < lengths[:, None]
        return Split(np.where(mask[..., None], split.x, 0.0).astype(np.float32), split.y, mask)

    return Classification(cut(full.train), cut(full.validation), cut(full.test), 10)


def monthly_co2() -> tuple[np.ndarray, np.ndarray]:
    """Mauna Loa CO2 in ppm as monthly means (dates, values), months without a reading
    interpolated linearly.

    Returns:
        `(dates, values)`: datetime64 month starts and float64 ppm, one per month.

    Examples:
        >>> dates, values = monthly_co2()
        >>> len(values), str(dates[0])[:7], str(dates[-1])[:7], bool(np.isfinite(values).all())
        (526, '1958-03', '2001-12', True)
    """
    from statsmodels.datasets import co2 as co2_data

    weekly = co2_data.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate(method="time")
    return monthly.index.to_numpy(), monthly.to_numpy(np.float64)


def co2(
    window: int = 36, horizon: int = 12, test_months: int = 120, season: int = 12, validation_months: int = 60
) -> Forecast:
    """Monthly Mauna Loa CO2: `window` past months predict the next `horizon` months.

    The last `test_months` are held out: test windows are those whose targets lie there.
    Validation windows are those whose targets lie in the `validation_months` before them,
    training windows those whose targets end before that; in time order, never shuffled.
    Windows whose targets straddle a boundary belong to no split, so no target month is in
    two. The scale is the training windows'. The seasonal-naive baseline repeats the last
    observed `season` (needs horizon <= season <= window).

    Args:
        window: past months per input.
        horizon: months predicted per window.
        test_months: the held-out tail's length in months.
        season: the period the seasonal-naive baseline repeats.
        validation_months: the months before the tail that the validation targets lie in.

    Returns:
        A `Forecast`.

    Examples:
        >>> data = co2()
        >>> data.train.x.shape, data.validation.y.shape, data.test.y.shape, data.test_baseline.shape
        ((299, 36, 1), (49, 12), (109, 12), (109, 12))
    """
    window = _checks.positive_int(window, "co2 window")
    horizon = _checks.positive_int(horizon, "co2 horizon")
    test_months = _checks.positive_int(test_months, "co2 test_months")
    season = _checks.positive_int(season, "co2 season")
    validation_months = _checks.positive_int(validation_months, "co2 validation_months")
    if not horizon <= season <= window:
        raise ValueError(f"co2: expected horizon <= season <= window, got {horizon}, {season}, {window}")
    dates, series = monthly_co2()
    tail_start = len(series) - test_months
    if test_months < horizon or tail_start < window + horizon:
        raise ValueError(
            f"co2 test_months: expected between {horizon} and {len(series) - window - horizon} "
            f"for window {window} and horizon {horizon}, got {test_months}"
        )
    validation_start = tail_start - validation_months
    if validation_months < horizon or validation_start < window + horizon:
        raise ValueError(
            f"co2 validation_months: expected between {horizon} and {tail_start - window - horizon} "
            f"for window {window}, horizon {horizon} and test_months {test_months}, got {validation_months}"
        )
    # Window i reads series[i : i + window] and predicts the `horizon` months after it.
    starts = np.arange(len(series) - window - horizon + 1)
    past = series[starts[:, None] + np.arange(window)]
    future = series[starts[:, None] + window + np.arange(horizon)]
    level = past[:, -1]
    baseline = past[:, window - season : window - season + horizon]
    target_start = starts + window
    target_end = target_start + horizon
    train = target_end <= validation_start
    validation = (target_start >= validation_start) & (target_end <= tail_start)
    test = target_start >= tail_start
    scale = float(np.std(past[train] - level[train, None]))

    def split(rows: np.ndarray) -> Split:
        x = ((past[rows] - level[rows, None]) / scale)[..., None]
        y = (future[rows] - level[rows, None]) / scale
        return Split(x.astype(np.float32), y.astype(np.float32))

    target_dates = dates[target_start[:, None] + np.arange(horizon)]
    return Forecast(
        split(train),
        split(validation),
        split(test),
        scale,
        level[test],
        future[test],
        baseline[test],
        target_dates[test],
        series,
        dates,
        int(tail_start),
        int(validation_start),
    )
