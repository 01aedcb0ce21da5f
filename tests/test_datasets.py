"""The shipped data sets: shapes, splits, masks, and the CO2 windows and baseline."""

import numpy as np
import pytest

from jlstm import datasets


def test_digits_rows_as_timesteps_stratified_and_seeded():
    from sklearn.datasets import load_digits

    data = datasets.digits(seed=3)
    assert data.train.x.shape == (1437, 8, 8) and data.test.x.shape == (360, 8, 8)
    assert data.train.mask is None and data.num_classes == 10
    assert data.train.x.min() == 0 and data.train.x.max() == 1
    # Row r of an example is row r of its image.
    images = load_digits().images / 16.0
    assert any(np.array_equal(data.test.x[0], image) for image in images)
    assert np.bincount(data.test.y).min() >= 35  # stratified: 10% of 360 each, give or take
    again, other = datasets.digits(seed=3), datasets.digits(seed=4)
    np.testing.assert_array_equal(again.test.x, data.test.x)
    assert not np.array_equal(other.test.y, data.test.y)


def test_ragged_digits_cut_trailing_rows_under_the_mask():
    full, data = datasets.digits(seed=0), datasets.ragged_digits(seed=0, min_rows=3)
    for cut, whole in ((data.train, full.train), (data.test, full.test)):
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
    # Test targets are exactly the held-out tail; training targets end before it.
    assert data.test_dates[0, 0] == dates[len(series) - 60] and data.test_dates[-1, -1] == dates[-1]
    assert len(data.train.y) == len(series) - 60 - 24 - 6 + 1
    np.testing.assert_allclose(data.to_units(data.test.y, data.test_level), data.test_truth, atol=1e-4)
    # Seasonal naive: the value 12 months before each target.
    first = len(series) - 60
    np.testing.assert_allclose(data.test_baseline[0], series[first - 12 : first - 6])
    np.testing.assert_allclose(data.test_truth[0], series[first : first + 6])
    assert np.all(data.test.x[:, -1, 0] == 0)  # windows are scaled around their last value


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: datasets.digits(test_size=1.5), ValueError, r"test_size: expected a fraction in \(0, 1\), got 1.5"),
        (lambda: datasets.ragged_digits(min_rows=9), ValueError, "expected at most 8 rows, got 9"),
        (lambda: datasets.co2(window=6, horizon=12), ValueError, "expected horizon <= season <= window, got 12, 12, 6"),
        (lambda: datasets.co2(test_months=500), ValueError, "co2 test_months: expected between 12 and 478"),
        (lambda: datasets.co2(window=0), ValueError, "co2 window: expected a positive int, got 0"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
