"""The tasks' plots say their units and show their findings: what each figure holds (titles,
axis labels, the plotted values), read from the matplotlib figures they would write."""

import numpy as np
import pytest

from jlstm import datasets, plots, tasks


@pytest.fixture
def drawn(monkeypatch):
    """file name -> the figure a plot would write there (not rendered: `jlstm train`'s tests
    in test_cli_train.py open the PNGs each task writes)."""
    figures = {}

    def save(fig, path):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", save)
    return figures


def draw(task_plots, tmp_path):
    for name, plot in task_plots.items():
        assert plot(tmp_path / name) == tmp_path / name


def curves(fig):
    """{panel's y label: {line's label: its y values}} of a learning-curves figure."""
    return {ax.get_ylabel(): {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()} for ax in fig.axes}


HISTORY = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.75], "val_loss": [1.2, 0.6], "val_accuracy": [0.25, 0.5]}


def test_co2_learning_curves_are_in_ppm(drawn, tmp_path):
    data = datasets.co2()
    history = {"loss": [0.5, 0.25], "mae": [0.5, 0.25], "val_loss": [1.0, 0.5], "val_mae": [1.0, 0.75]}
    test = {"mae_ppm": 0.5, "baseline_mae_ppm": 1.5}
    draw(tasks._co2_plots(tasks.TASKS["co2"].defaults, history, data, data.test_truth + 0.5, test), tmp_path)
    fig = drawn["learning_curves.png"]
    s = data.scale
    assert curves(fig) == {
        "MSE (ppm², log scale)": {"train": [0.5 * s**2, 0.25 * s**2], "validation": [s**2, 0.5 * s**2]},
        "MAE (ppm)": {"train": [0.5 * s, 0.25 * s], "validation": [s, 0.75 * s]},
    }
    assert "errors in ppm" in fig._suptitle.get_text() and "validation 1987-01..1991-12" in fig._suptitle.get_text()
    (ax,) = drawn["forecast.png"].axes
    assert ax.get_ylabel() == "CO2 (ppm)" and "LSTM (MAE 0.50 ppm)" in [t.get_text() for t in ax.get_legend().texts]


def test_ragged_digits_plot_shows_the_mask_against_padding(drawn, tmp_path):
    data = datasets.ragged_digits(0)
    test = {
        "masked_accuracy": 0.9389,
        "unmasked_accuracy": 0.9278,
        "masked_padded_accuracy": 0.9389,
        "unmasked_padded_accuracy": 0.4111,
    }
    cfg = tasks.TASKS["ragged-digits"].defaults
    histories = {"masked": HISTORY, "unmasked": HISTORY}
    draw(tasks._ragged_plots(cfg, histories, data, data.test.y, test, 16), tmp_path)
    (ax,) = drawn["padding.png"].axes
    assert ax.get_ylabel() == "test accuracy (%)"
    groups = [t.get_text() for t in ax.get_xticklabels()]
    assert groups == ["test set as trained\n(4-8 rows, padded to 8)", "the same test set\npadded to 16 rows"]
    bars = {c.get_label(): [round(b.get_height(), 2) for b in c] for c in ax.containers}
    assert bars == {"with mask": [93.89, 93.89], "without mask": [92.78, 41.11]}
    lines = curves(drawn["learning_curves.png"])
    assert lines["accuracy (%)"]["masked validation"] == [25.0, 50.0]
    assert sorted(lines["accuracy (%)"]) == [
        "masked train",
        "masked validation",
        "unmasked train",
        "unmasked validation",
    ]
    (cm,) = drawn["confusion_matrix.png"].axes
    assert (cm.get_xlabel(), cm.get_ylabel()) == ("predicted digit", "true digit")
    assert "accuracy 100.00% (360/360)" in cm.get_title()


def test_digits_plots_say_their_units(drawn, tmp_path):
    data = datasets.digits(0)
    predicted = np.where(np.arange(len(data.test.y)) < 9, (data.test.y + 1) % 10, data.test.y)
    draw(tasks._digits_plots(tasks.TASKS["digits"].defaults, HISTORY, data, predicted), tmp_path)
    fig = drawn["learning_curves.png"]
    assert fig._suptitle.get_text() == "digits: Bidirectional(LSTM(128)) -> Dense(10), per epoch"
    assert curves(fig) == {
        "cross-entropy (nats, log scale)": {"train": [1.0, 0.5], "validation": [1.2, 0.6]},
        "accuracy (%)": {"train": [50.0, 75.0], "validation": [25.0, 50.0]},
    }
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    (cm,) = drawn["confusion_matrix.png"].axes
    assert cm.get_title() == "digits test split: accuracy 97.50% (351/360); images per cell"
    assert (cm.get_xlabel(), cm.get_ylabel()) == ("predicted digit", "true digit")


def test_grouped_bars_needs_values(tmp_path):
    with pytest.raises(ValueError, match="grouped_bars: expected at least one value, got none"):
        plots.grouped_bars({"a": {}}, tmp_path / "bars.png")
