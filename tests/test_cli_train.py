"""`jlstm train`: outputs that open (checkpoint, PNGs, metrics), and bad arguments that
exit non-zero with a message and write nothing."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import interrupt_at
from matplotlib.image import imread

import jlstm
from jlstm import datasets, plots, train
from jlstm.cli import main
from jlstm.tasks import TASKS, state_path

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
            ["learning_curves.png", "padding.png", "confusion_matrix.png"],
            "ragged-digits: test accuracy with mask ",
        ),
    ],
)
def test_train_writes_checkpoint_metrics_and_plots(tmp_path, capsys, monkeypatch, task, argv, pngs, final):
    fits, real_fit = [], train.fit

    def recording_fit(layer, params, optimizer, train_data, validation_data, **kwargs):
        fits.append((train_data, validation_data))
        return real_fit(layer, params, optimizer, train_data, validation_data, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    out = tmp_path / "run" / task
    assert main(["train", task, *argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1].startswith(final)
    # stderr is no terminal here: a line per epoch, not a redrawn bar
    assert re.search(r"^epoch 1/\d+: .*\bloss \d+\.\d{4}", captured.err, flags=re.MULTILINE), captured.err
    assert "it/s" not in captured.err
    states = [state_path(out, run) for run in TASKS[task].runs]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.ckpt", "metrics.json", *pngs, *(p.name for p in states)]
    )
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
    for run, path in zip(TASKS[task].runs, states):  # the training states, to resume from
        state = train.load_state(path)
        assert state.epoch == int(argv[1]) and state.history == report["histories"][run]


def test_plots_open_with_plausible_sizes(tmp_path):
    history = {
        "loss": [1.0, 0.6, 0.4],
        "accuracy": [0.5, 0.7, 0.9],
        "val_loss": [1.1, 0.8, 0.7],
        "val_accuracy": [0.4, 0.6, 0.8],
    }
    stopped = {**history, "stopped": "epoch 4/5, step 2/9: the loss was nan; fit returned the params of epoch 3"}
    curves = check_png(plots.learning_curves({"a": history, "b": stopped}, tmp_path / "c.png"))
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
        (["train", "digits", "--resume"], "--resume: no {tmp}/run/train_state_digits.ckpt to continue from"),
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
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def last_line(text):
    """The last line as a terminal shows it (progress bars redraw with carriage returns)."""
    return text.strip().splitlines()[-1].split("\r")[-1]


def test_a_diverging_run_exits_1_with_one_line_and_no_model(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "co2", "--epochs", "2", "--units", "4", "--batch-size", "64", "--lr", "1e30", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # --quiet: no per-epoch lines, only the one error line
    assert last_line(err).startswith("jlstm train: fit stopped at epoch 1/2, step ")
    assert "the loss was inf" in last_line(err) or "the loss was nan" in last_line(err)
    assert not (out / "model.ckpt").exists() and not (out / "metrics.json").exists()


def ragged(out, *more, units=4):
    return [
        "train",
        "ragged-digits",
        "--epochs",
        "2",
        "--units",
        str(units),
        "--batch-size",
        "256",
        "--out",
        str(out),
        *more,
    ]


def test_an_interrupted_run_exits_130_and_resumes_to_the_same_result(tmp_path, capsys, monkeypatch):
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(ragged(whole)) == 0
    capsys.readouterr()
    with monkeypatch.context() as patch:
        interrupt_at(patch, "epoch 2/2", times=2)  # in the second run (unmasked), after its first epoch
        assert main(ragged(out)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    state = state_path(out, "unmasked")
    assert last_line(err) == (
        f"jlstm train: interrupted; {state} holds epoch 1/2: the same command with --resume continues"
    )
    assert sorted(p.name for p in out.iterdir()) == ["train_state_masked.ckpt", "train_state_unmasked.ckpt"]
    assert [train.load_state(state_path(out, run)).epoch for run in ("masked", "unmasked")] == [2, 1]
    # Another model's options: refused, and the state stays as it was.
    saved = state.read_bytes()
    assert main(ragged(out, "--resume", units=8)) == 2
    err = capsys.readouterr().err
    assert last_line(err).startswith("jlstm train: --resume: ") and "not a checkpoint of this model" in err
    assert state.read_bytes() == saved and not (out / "model.ckpt").exists()
    assert main(ragged(out, "--resume")) == 0
    assert (out / "model.ckpt").read_bytes() == (whole / "model.ckpt").read_bytes()
    for run in ("masked", "unmasked"):
        assert state_path(out, run).read_bytes() == state_path(whole, run).read_bytes()
    reports = [json.loads((d / "metrics.json").read_text()) for d in (whole, out)]
    assert reports[0]["test"] == reports[1]["test"] and reports[0]["histories"] == reports[1]["histories"]


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_the_last_finished_epoch(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    argv = ["train", "digits", "--epochs", "1000", "--units", "2", "--batch-size", "512", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen([sys.executable, "-m", "jlstm", *argv], env=env, stderr=subprocess.PIPE, text=True)
    state = state_path(out, "digits")
    deadline = time.monotonic() + 240
    while not state.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    saved = train.load_state(state)
    assert 1 <= saved.epoch < 1000 and all(len(v) == saved.epoch for v in saved.history.values())
    assert last_line(err) == (
        f"jlstm train: interrupted; {state} holds epoch {saved.epoch}/1000: the same command with --resume continues"
    )
    assert sorted(p.name for p in out.iterdir()) == ["train_state_digits.ckpt"]
