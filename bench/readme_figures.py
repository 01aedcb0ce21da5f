"""README's training figures, measured by `jlstm train` and rendered from a committed file.

    python -m bench.readme_figures           # run every command (several minutes), write
                                             # bench/training.json, rewrite the pages' table
    python -m bench.readme_figures --render  # rewrite the pages' table from bench/training.json
    python -m bench.readme_figures --check   # exit 1 if a page's table is not that rendering

Each command of `RUNS` runs as a user runs it, `jlstm train TASK --seed N --quiet` in a fresh
process (so each one compiles, as it would for a user), and its `metrics.json` is kept in
`bench/training.json` with the CPU model (`lscpu`'s model name), the core count, the date and
jlstm's commit. The block between `BEGIN` and `END` in README.md and docs/training.md is
`render(json)`, nothing else: `tests/test_readme_figures.py` fails on a hand edit there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = (README, ROOT / "docs" / "training.md")  # the pages holding the block
RESULTS = ROOT / "bench" / "training.json"
BEGIN = "<!-- training figures: python -m bench.readme_figures writes this block from bench/training.json -->"
END = "<!-- end of training figures -->"
DIGITS_SEEDS = (0, 1, 2, 3, 4)
RUNS: tuple[tuple[str, int], ...] = (
    *(("digits", seed) for seed in DIGITS_SEEDS),
    ("co2", 0),
    ("ragged-digits", 0),
)


def machine() -> dict[str, Any]:
    """Where and when: the CPU model as `lscpu` names it, the cores, the date, jlstm's commit."""
    import jax

    from bench.extras import _git_commit
    from bench.peers import cpu_count
    from jlstm.tuning import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "date": datetime.date.today().isoformat(),
        "jlstm_commit": _git_commit(),
        "jax": jax.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the times
    }


def data_facts(task: str, seed: int) -> dict[str, Any]:
    """What the table says of a task's test split: its size, or the months it covers."""
    from jlstm import datasets

    if task == "co2":
        dates = datasets.co2().test_dates
        return {"test_period": f"{dates.min().astype('datetime64[Y]')}-{dates.max().astype('datetime64[Y]')}"}
    data = datasets.digits(seed) if task == "digits" else datasets.ragged_digits(seed)
    return {"test_examples": len(data.test.y)}


def measure(task: str, seed: int, out: Path, options: Sequence[str] = ()) -> dict[str, Any]:
    """Runs `jlstm train TASK --seed SEED OPTIONS --quiet` in a fresh process writing to `out`.

    Args:
        task: a `jlstm train` task.
        seed: its `--seed`.
        out: the run's `--out` directory.
        options: more `jlstm train` options (none for the README's figures).

    Returns:
        The run's record: its command, and from its `metrics.json` the config, the test results
        and the training time the command printed, with the `data_facts` of its test split.
    """
    argv = ["train", task, *(["--seed", str(seed)] if seed else []), *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "jlstm", *argv, "--quiet", "--out", str(out)]
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "command": " ".join(["jlstm", *argv]),
        "task": task,
        "seed": seed,
        "config": {k: metrics["config"][k] for k in ("epochs", "batch_size", "lr", "units", "seed")},
        "test": metrics["test"],
        "seconds": metrics["seconds"],
        **data_facts(task, seed),
    }


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _run(results: dict[str, Any], task: str, seed: int = 0) -> dict[str, Any]:
    for run in results["runs"]:
        if run["task"] == task and run["seed"] == seed:
            return run
    raise ValueError(f"readme_figures: expected a {task} run with seed {seed} in the results, got none")


def _digits_row(results: dict[str, Any]) -> str:
    run = _run(results, "digits")
    accuracy, n = run["test"]["accuracy"], run["test_examples"]
    seeds = ", ".join(_percent(_run(results, "digits", s)["test"]["accuracy"]) for s in DIGITS_SEEDS)
    return (
        f"| `{run['command']}` | Bidirectional(LSTM({run['config']['units']})) -> Dense(10) on scikit-learn's "
        f"digits, rows as 8 timesteps | test accuracy **{_percent(accuracy)}%** ({round(accuracy * n)}/{n}); "
        f"seeds {DIGITS_SEEDS[0]}-{DIGITS_SEEDS[-1]}: {seeds}% | {run['seconds']:.0f} s |"
    )


def _co2_row(results: dict[str, Any]) -> str:
    run = _run(results, "co2")
    t = run["test"]
    return (
        f"| `{run['command']}` | LSTM({run['config']['units']}) -> Dense(12): next 12 months of Mauna Loa "
        f"CO2 (statsmodels) from the last 36 | MAE **{t['mae_ppm']:.2f} ppm** vs seasonal naive "
        f"{t['baseline_mae_ppm']:.2f} ppm (RMSE {t['rmse_ppm']:.2f} vs {t['baseline_rmse_ppm']:.2f}) on the "
        f"held-out {run['test_period']} | {run['seconds']:.0f} s |"
    )


def _ragged_row(results: dict[str, Any]) -> str:
    from jlstm.tasks import PADDED_TO

    run = _run(results, "ragged-digits")
    t = {k: _percent(v) for k, v in run["test"].items()}
    return (
        f"| `{run['command']}` | the digits with 0-4 trailing rows cut, trained with and without the mask | "
        f"with mask {t['masked_accuracy']}%, without {t['unmasked_accuracy']}%; test padded to {PADDED_TO} "
        f"rows: with mask {t['masked_padded_accuracy']}%, without {t['unmasked_padded_accuracy']}% | "
        f"{run['seconds']:.0f} s |"
    )


def _finding(results: dict[str, Any]) -> str:
    """What the ragged-digits row shows, in the words its figures support."""
    from jlstm.tasks import PADDED_TO

    t = _run(results, "ragged-digits")["test"]
    masked = (
        f"the masked model's accuracy does not change ({_percent(t['masked_accuracy'])}% at both)"
        if t["masked_accuracy"] == t["masked_padded_accuracy"]
        else f"the masked model's goes from {_percent(t['masked_accuracy'])}% to "
        f"{_percent(t['masked_padded_accuracy'])}%"
    )
    return (
        f"Without the mask the LSTM learns to read this data set's zero rows, but only for the padding it saw "
        f"({_percent(t['unmasked_accuracy'])}% on the test set as trained): pad the same test set to {PADDED_TO} "
        f"rows and it falls to {100 * t['unmasked_padded_accuracy']:.0f}%, while {masked}."
    )


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def render(results: dict[str, Any]) -> str:
    """README's block of training figures, markers included, from `bench/training.json`'s content.

    Args:
        results: the file's content: "machine" (cpu, cores, date, ...) and "runs" (`measure`'s records).

    Returns:
        The Markdown block: where and when it was measured, the table, and the ragged-digits finding.
    """
    m = results["machine"]
    return "\n".join(
        [
            BEGIN,
            _paragraph(
                f'Measured on {m["date"]} on a CPU that `lscpu` names "{m["cpu"]}", {m["cores"]} cores (load '
                f"average {m['load_average_1m']:.1f} at the start: the timings are noisy), by `python -m "
                f"bench.readme_figures`: defaults, `--seed 0` unless noted (`jlstm train digits --seed N` for the "
                f"others); the results are on the test split and the training time is the one the command prints."
            ),
            "",
            "| command | model | result | training time |",
            "|---|---|---|---|",
            _digits_row(results),
            _co2_row(results),
            _ragged_row(results),
            "",
            _paragraph(_finding(results)),
            END,
        ]
    )


def readme_block(readme: str) -> str:
    """README's current training-figures block, markers included.

    Args:
        readme: README.md's text.

    Returns:
        The text from `BEGIN` to `END`.
    """
    start, end = readme.find(BEGIN), readme.find(END)
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or end < start:
        raise ValueError(f"readme_figures: expected README to hold {BEGIN!r} once, then {END!r} once")
    return readme[start : end + len(END)]


def rewrite(readme: str, block: str) -> str:
    """`readme` with its training-figures block replaced by `block`.

    Args:
        readme: README.md's text.
        block: the new block, markers included (`render`'s).

    Returns:
        The new text.
    """
    return readme.replace(readme_block(readme), block)


def run_all(runs: Sequence[tuple[str, int]] = RUNS, options: Sequence[str] = ()) -> dict[str, Any]:
    """Every command of `runs`, measured one after the other.

    Args:
        runs: (task, seed) pairs.
        options: more `jlstm train` options for each.

    Returns:
        The content of `bench/training.json`: "machine" and "runs".
    """
    results: dict[str, Any] = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="jlstm-figures-") as tmp:
        for task, seed in runs:
            print(f"readme_figures: jlstm train {task} --seed {seed}", file=sys.stderr, flush=True)
            results["runs"].append(measure(task, seed, Path(tmp) / f"{task}-{seed}", options))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's docstring).

    Args:
        argv: the arguments; None for `sys.argv[1:]`.

    Returns:
        The exit status: 0, or 1 where `--check` finds a page's table stale.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.readme_figures", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--render", action="store_true", help="only rewrite the pages from bench/training.json")
    action.add_argument("--check", action="store_true", help="exit 1 if a page's table is not bench/training.json's")
    args = parser.parse_args(argv)
    if not (args.render or args.check):
        RESULTS.write_text(json.dumps(run_all(), indent=1) + "\n")
    block = render(json.loads(RESULTS.read_text()))
    if args.check:
        stale = [page.name for page in PAGES if readme_block(page.read_text()) != block]
        print(f"training figures: {', '.join(stale) or 'no page'} differ from {RESULTS.name}")
        return int(bool(stale))
    for page in PAGES:
        page.write_text(rewrite(page.read_text(), block))
    pages = ", ".join(str(page.relative_to(ROOT)) for page in PAGES)
    print(f"{pages}: the training figures from {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
