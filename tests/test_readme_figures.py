"""README's training figures are bench/training.json's rendering (a hand edit fails here), and
that file holds runs of the default commands."""

import json

import pytest

from bench import readme_figures
from jlstm.tasks import TASKS


def results():
    return json.loads(readme_figures.RESULTS.read_text())


def test_readme_table_is_the_rendering_of_the_committed_results():
    committed = results()
    assert sorted((run["task"], run["seed"]) for run in committed["runs"]) == sorted(readme_figures.RUNS)
    assert committed["machine"]["cpu"] and committed["machine"]["date"]
    for page in readme_figures.PAGES:  # README.md and docs/training.md
        assert readme_figures.readme_block(page.read_text()) == readme_figures.render(committed), page.name
    assert readme_figures.main(["--check"]) == 0


def test_render_cites_the_figures():
    committed = results()
    block = readme_figures.render(committed)
    ragged = next(run for run in committed["runs"] if run["task"] == "ragged-digits")["test"]
    assert f"without {100 * ragged['unmasked_padded_accuracy']:.2f}%" in block
    assert f"it falls to {100 * ragged['unmasked_padded_accuracy']:.0f}%" in block
    edited = dict(committed, machine={**committed["machine"], "cpu": "Some Other CPU"})
    assert 'a CPU that `lscpu` names "Some Other CPU"' in readme_figures.render(edited)
    stale = readme_figures.README.read_text().replace(
        block, block.replace("| `jlstm train co2`", "| `jlstm train  co2`")
    )
    assert readme_figures.readme_block(stale) != block  # what --check reports


def test_rewrite_replaces_the_block_and_needs_the_markers():
    begin, end = readme_figures.BEGIN, readme_figures.END
    assert readme_figures.rewrite(f"a\n{begin}\nold\n{end}\nb", f"{begin}\nnew\n{end}") == f"a\n{begin}\nnew\n{end}\nb"
    for text in ("no markers", f"{end}\n{begin}", f"{begin}\n{begin}\n{end}"):
        with pytest.raises(ValueError, match="readme_figures: expected README to hold"):
            readme_figures.rewrite(text, "")
    with pytest.raises(ValueError, match="expected a co2 run with seed 0"):
        readme_figures.render({**results(), "runs": [r for r in results()["runs"] if r["task"] != "co2"]})


def test_the_committed_runs_are_the_commands_defaults():
    for run in results()["runs"]:
        defaults = TASKS[run["task"]].defaults._replace(seed=run["seed"])
        assert run["config"] == {k: getattr(defaults, k) for k in run["config"]}, run["command"]
        assert run["command"] == " ".join(
            ["jlstm", "train", run["task"], *(["--seed", str(run["seed"])] if run["seed"] else [])]
        )
