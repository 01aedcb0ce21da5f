"""`jlstm train`: outputs that open (checkpoint, PNGs, metrics), and bad arguments that
exit non-zero with a message and write nothing."""

import json

import numpy as np
import pytest
from helpers import reference_optimizer
from matplotlib.image import imread

import jlstm
from jlstm import datasets, plots, train
from jlstm.cli import main

DATA = {"digits": datasets.digits, "co2": lambda seed: datasets.co2(), "ragged-digits": datasets.ragged_digits}


def check_png(path, min_width=300, min_height=200):
    image = imread(path)
    height, width, channels = image.shape
    assert width >= min_width and height >= min_height and channels in (3, 4), image.shape
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
    return image


def rows(x):
    return {example.tobytes() for example in np.asarray(x)}


@pytest.mark.parametrize(
    "task, argv, pngs, final",
    [
        (
            "digits",
            ["--epochs", "1", "--units", "8"],
            ["learning_curves.png", "confusion_matrix.png"],
            "digits: test accuracy ",
        ),
        (
            "co2",
            ["--epochs", "2", "--units", "8", "--batch-size", "64"],
            ["learning_curves.png", "forecast.png"],
            "co2: test MAE ",
        ),
        (
            "ragged-digits",
            ["--epochs", "1", "--units", "4", "--batch-size", "128"],
            ["learning_curves.png", "confusion_matrix.png"],
            "ragged-digits: test accuracy with mask ",
        ),
    ],
)
def test_train_writes_checkpoint_metrics_and_plots(tmp_path, capsys, monkeypatch, task, argv, pngs, final):
    fits, real_fit = [], train.fit

    def recording_fit(layer, params, optimizer, train_data, validation_data, **kwargs):
        fits.append((train_data, validation_data))
        return real_fit(layer, params, reference_optimizer(optimizer), train_data, validation_data, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    out = tmp_path / "run" / task
    assert main(["train", task, *argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1].startswith(final)
    assert "epoch 1/" in captured.err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.ckpt", "metrics.json", *pngs])
    for name in pngs:
        check_png(out / name)
    report = json.loads((out / "metrics.json").read_text())
    assert report["task"] == task and report["config"]["units"] == int(argv[3])
    # Per-epoch histories with validation ("val_") curves, and one test result: numbers, not curves.
    assert sorted(report) == ["config", "histories", "seconds", "task", "test"]
    assert report["test"] and all(isinstance(v, float) for v in report["test"].values())
    for history in report["histories"].values():
        assert "val_loss" in history and all(len(v) == int(argv[1]) for v in history.values())
    # fit trained on the train split and validated on the validation split; no test row reached it.
    data = DATA[task](seed=0)
    assert len(fits) == len(report["histories"])
    test_rows = rows(data.test.x)
    for train_data, validation_data in fits:
        np.testing.assert_array_equal(train_data[0], data.train.x)
        np.testing.assert_array_equal(validation_data[0], data.validation.x)
        assert test_rows.isdisjoint(rows(train_data[0])) and test_rows.isdisjoint(rows(validation_data[0]))
    params = jlstm.load(out / "model.ckpt")
    assert jlstm.count_params(params) > 0


def test_plots_open_with_plausible_sizes(tmp_path):
    history = {
        "loss": [1.0, 0.6, 0.4],
        "accuracy": [0.5, 0.7, 0.9],
        "val_loss": [1.1, 0.8, 0.7],
        "val_accuracy": [0.4, 0.6, 0.8],
    }
    curves = check_png(plots.learning_curves({"a": history, "b": history}, tmp_path / "c.png"))
    assert curves.shape[1] > curves.shape[0]  # two panels side by side
    check_png(plots.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], tmp_path / "m.png"))
    t = np.arange("2000-01", "2002-01", dtype="datetime64[M]")
    check_png(
        plots.forecast(
            t,
            np.arange(24.0),
            {"model": np.arange(24.0) + 1},
            tmp_path / "f.png",
            context=(t - 24, np.arange(24.0) - 24),
        )
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "f.png", "m.png"]  # no temp files


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "mnist"], "invalid choice: 'mnist'"),
        (["train", "digits", "--epochs", "0"], "argument --epochs: expected a positive int, got 0"),
        (["train", "digits", "--epochs", "-2"], "argument --epochs: expected a positive int, got -2"),
        (["train", "digits", "--epochs", "two"], "argument --epochs: expected a positive int, got 'two'"),
        (["train", "co2", "--lr", "0"], "argument --lr: expected a positive number, got 0.0"),
        (["train", "co2", "--batch-size", "0"], "argument --batch-size: expected a positive int, got 0"),
        (["train", "co2", "--seed", "-1"], "argument --seed: expected an int >= 0, got -1"),
        (["train", "digits", "--out", "{tmp}/a-file/run"], "a-file is not a directory"),
    ],
)
def test_bad_arguments_exit_nonzero_and_write_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "a-file").write_text("not a directory")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code not in (0, None)
    assert message in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
