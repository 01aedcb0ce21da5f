"""The shipped data sets: shapes, splits, masks, and the CO2 windows and baseline."""

import numpy as np
import pytest

from jlstm import datasets


def rows(x):
    """The examples of `x` as a set of bytes (the digits' 1797 images are all distinct)."""
    return {example.tobytes() for example in np.asarray(x)}


def test_digits_rows_as_timesteps_stratified_and_seeded():
    from sklearn.datasets import load_digits

    data = datasets.digits(seed=3)
    assert data.train.x.shape == (1150, 8, 8) and data.validation.x.shape == (287, 8, 8)
    assert data.test.x.shape == (360, 8, 8)
    assert data.train.mask is None and data.num_classes == 10
    assert data.train.x.min() == 0 and data.train.x.max() == 1
    # Row r of an example is row r of its image.
    images = load_digits().images / 16.0
    assert any(np.array_equal(data.test.x[0], image) for image in images)
    assert np.bincount(data.test.y).min() >= 35  # stratified: 10% of 360 each, give or take
    assert np.bincount(data.validation.y).min() >= 28  # and 10% of 287
    again, other = datasets.digits(seed=3), datasets.digits(seed=4)
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(again, name).x, getattr(data, name).x)
        assert not np.array_equal(getattr(other, name).y, getattr(data, name).y)


@pytest.mark.parametrize("load", [datasets.digits, datasets.ragged_digits])
def test_validation_rows_are_neither_trained_on_nor_tested(load):
    data = load(seed=1)
    train, validation, test = rows(data.train.x), rows(data.validation.x), rows(data.test.x)
    assert validation.isdisjoint(train) and validation.isdisjoint(test) and train.isdisjoint(test)
    assert len(train) + len(validation) + len(test) == 1797  # every image in exactly one split


def test_validation_split_is_seeded_disjoint_and_keeps_order_and_mask():
    n = 50
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1)  # x is the row's number
    y, mask = np.arange(n) % 5, np.arange(n)[:, None] % 2 == 0
    train, val = datasets.validation_split(datasets.Split(x, y, mask), 0.3, seed=7, stratify=True)
    ids_train, ids_val = train.x.ravel().astype(int), val.x.ravel().astype(int)
    assert len(ids_val) == 15 and np.bincount(val.y).tolist() == [3] * 5  # 30% of each class
    assert set(ids_val).isdisjoint(ids_train) and sorted([*ids_train, *ids_val]) == list(range(n))
    assert np.all(np.diff(ids_train) > 0) and np.all(np.diff(ids_val) > 0)
    np.testing.assert_array_equal(val.y, y[ids_val])
    np.testing.assert_array_equal(val.mask, mask[ids_val])
    again, _ = datasets.validation_split(datasets.Split(x, y, mask), 0.3, seed=7, stratify=True)
    other, _ = datasets.validation_split(datasets.Split(x, y, mask), 0.3, seed=8, stratify=True)
    np.testing.assert_array_equal(again.x, train.x)
    assert not np.array_equal(other.x, train.x)
    _, plain = datasets.validation_split(datasets.Split(x, y), 0.3, seed=7)
    assert len(plain.x) == 15 and plain.mask is None


def test_ragged_digits_cut_trailing_rows_under_the_mask():
    full, data = datasets.digits(seed=0), datasets.ragged_digits(seed=0, min_rows=3)
    for cut, whole in ((data.train, full.train), (data.validation, full.validation), (data.test, full.test)):
        lengths = cut.mask.sum(1)
        assert lengths.min() == 3 and lengths.max() == 8
        # A prefix of rows is kept as it was, the rest is zeros.
        np.testing.assert_array_equal(cut.mask, np.arange(8)[None, :] < lengths[:, None])
        np.testing.assert_array_equal(cut.x[cut.mask], whole.x[cut.mask])
        assert (cut.x[~cut.mask] == 0).all()
        np.testing.assert_array_equal(cut.y, whole.y)


def test_co2_windows_targets_and_seasonal_naive():
    dates, series = datasets.monthly_co2()
    data = datasets.co2(window=24, horizon=6, test_months=60)
    assert data.train.x.shape[1:] == (24, 1) and data.test.y.shape[1] == 6
    assert len(data.test.y) == 60 - 6 + 1
    # Test targets are exactly the held-out tail; training targets end before the 60
    # validation months (the default) before it.
    assert data.test_dates[0, 0] == dates[len(series) - 60] and data.test_dates[-1, -1] == dates[-1]
    assert len(data.train.y) == len(series) - 60 - 60 - 24 - 6 + 1
    np.testing.assert_allclose(data.to_units(data.test.y, data.test_level), data.test_truth, atol=1e-4)
    # Seasonal naive: the value 12 months before each target.
    first = len(series) - 60
    np.testing.assert_allclose(data.test_baseline[0], series[first - 12 : first - 6])
    np.testing.assert_allclose(data.test_truth[0], series[first : first + 6])
    assert np.all(data.test.x[:, -1, 0] == 0)  # windows are scaled around their last value


def test_co2_validation_window_lies_between_training_and_test_targets():
    dates, series = datasets.monthly_co2()
    window, horizon = 24, 6
    data = datasets.co2(window=window, horizon=horizon, test_months=60, validation_months=30)
    tail_start, start = data.tail_start, data.validation_start
    assert start == len(series) - 60 - 30 and tail_start == len(series) - 60
    assert len(data.validation.y) == 30 - horizon + 1
    assert len(data.train.y) == start - window - horizon + 1

    def targets(split, first_target):
        # Window j of a split predicts series[first_target + j : ... + horizon], scaled around
        # the month before its targets.
        months = first_target + np.arange(len(split.y))[:, None] + np.arange(horizon)
        level = series[months[:, 0] - 1]
        np.testing.assert_allclose(data.to_units(split.y, level), series[months], atol=1e-4)
        return months

    train, validation = targets(data.train, window), targets(data.validation, start)
    # In time order, never shuffled; no target month in two splits; validation just before the test.
    assert train.max() < start == validation.min() and validation.max() == tail_start - 1
    assert dates[validation.max()] < data.test_dates.min()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: datasets.digits(test_size=1.5), ValueError, r"test_size: expected a fraction in \(0, 1\), got 1.5"),
        (lambda: datasets.ragged_digits(min_rows=9), ValueError, "expected at most 8 rows, got 9"),
        (lambda: datasets.co2(window=6, horizon=12), ValueError, "expected horizon <= season <= window, got 12, 12, 6"),
        (lambda: datasets.co2(test_months=500), ValueError, "co2 test_months: expected between 12 and 478"),
        (lambda: datasets.co2(window=0), ValueError, "co2 window: expected a positive int, got 0"),
        (
            lambda: datasets.co2(validation_months=6),
            ValueError,
            "co2 validation_months: expected between 12 and 358 for window 36, horizon 12 and test_months 120, got 6",
        ),
        (lambda: datasets.co2(test_months=450), ValueError, "co2 validation_months: expected between 12 and 28"),
        (
            lambda: datasets.digits(validation_size=0),
            ValueError,
            r"digits validation_size: expected a fraction in \(0, 1\), got 0",
        ),
        (
            lambda: datasets.validation_split(datasets.Split(np.zeros((2, 1, 1)), np.arange(2)), 0.2),
            ValueError,
            "validation_split: expected enough rows for a non-empty train and validation part at fraction 0.2, "
            r"got 2 rows \(0 to validation\)",
        ),
        (
            lambda: datasets.validation_split(
                datasets.Split(np.zeros((4, 1, 1)), np.zeros((4, 2))), 0.5, stratify=True
            ),
            ValueError,
            r"validation_split stratify: expected labels of shape \(rows,\), got shape \(4, 2\)",
        ),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
