"""Each script in examples/ runs, in-process at a tiny size, as a user runs it (JAX's default
promotion), and does what its docstring says; README's "## Examples" lists them all."""

import importlib.util
import pathlib

import numpy as np
import pytest
from helpers import reference

import jlstm

ROOT = pathlib.Path(__file__).parents[1]
SEED_TABLES = (ROOT / "tests" / "data" / "seed_summaries.txt").read_text()
TINY = {
    "seed_notebook": ["--batch", "2"],
    "classify_lengths": ["--samples", "48", "--timesteps", "5", "--units", "3", "--epochs", "2", "--batch-size", "16"],
    "forecast": ["--months", "60", "--window", "13", "--horizon", "3", "--units", "3", "--epochs", "2"],
    "char_lm": ["--units", "4", "--length", "6", "--epochs", "1", "--generate", "5", "--prompt", "the "],
    "vmap_ensemble": ["--members", "3", "--units", "4", "--timesteps", "5", "--samples", "16", "--steps", "2"],
}


def run(name, argv, capsys):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with reference():
        result = module.main(argv)
    return module, result, capsys.readouterr().out


def test_every_example_is_tested_documented_and_in_readme():
    names = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
    assert names == sorted(TINY)
    section = (ROOT / "README.md").read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]
    for name in names:
        doc = (ROOT / "examples" / f"{name}.py").read_text().split('"""')[1]
        assert f"python examples/{name}.py" in doc, name  # how to run it
        assert f"python examples/{name}.py" in section, name


def test_seed_notebook_prints_the_seed_tables_and_predicts(capsys):
    module, result, out = run("seed_notebook", TINY["seed_notebook"], capsys)
    headings = [heading for heading, _ in module.models(5)]
    tables, predictions = out.split("\n\nPredictions on a random batch of 2:\n")
    assert [line for line in tables.splitlines() if line not in headings] == SEED_TABLES.splitlines()
    assert tables.splitlines()[0] == headings[0] and len(predictions.splitlines()) == 4
    assert [r["params"] for r in result.values()] == [180, 360, 180, 360]
    assert [r["output_shape"] for r in result.values()] == [(2, 5), (2, 10), (2, 11, 5), (2, 11, 10)]
    _, _, out = run("seed_notebook", ["--style", "keras3", "--batch", "2"], capsys)
    assert out.count("Total params: 180 (720.00 B)") == 2 and out.count("Total params: 360 (1.41 KB)") == 2


def test_classify_lengths_ignores_the_padding(capsys):
    _, result, out = run("classify_lengths", TINY["classify_lengths"], capsys)
    assert 0 <= result["accuracy"] <= 1 and result["padding_ignored"] is True
    assert "same outputs: True" in out


def test_forecast_reports_both_errors(capsys):
    _, result, out = run("forecast", TINY["forecast"], capsys)
    assert np.isfinite(result["mae"]) and result["naive_mae"] > 0
    assert f"LSTM {result['mae']:.3f}, seasonal naive {result['naive_mae']:.3f}" in out


def test_char_lm_steps_as_apply_and_decodes(capsys):
    module, result, out = run("char_lm", TINY["char_lm"], capsys)
    assert result["step_error"] < 1e-5  # lstm_step in a scan gives model.apply's logits
    assert len(result["generated"]) == 5 and set(result["generated"]) <= set(module.TEXT)
    assert len(result["loss"]) == 1 and f"'the ' -> {result['generated']!r}" in out


def test_vmap_ensemble_counts_per_member(capsys):
    _, result, out = run("vmap_ensemble", TINY["vmap_ensemble"], capsys)
    per_member = jlstm.count_params(jlstm.Sequential([jlstm.LSTM(4), jlstm.Dense(1)]), (None, 5, 1))
    assert result["per_member"] == per_member == 4 * ((1 + 4) * 4 + 4) + 5
    assert result["total"] == 3 * per_member and result["member_mse"].shape == (3,)
    assert f"3 members of {per_member} params each ({3 * per_member} in all)" in out


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("forecast", ["--window", "6"], "expected --window >= 13"),
        ("char_lm", ["--prompt", "XYZ"], "expected --prompt of the text's characters"),
    ],
)
def test_bad_options_exit_2_with_a_message(name, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(name, argv, capsys)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
