"""Smoke test of the side-by-side benchmark: `python -m bench --quick` runs and reports jlstm."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from jlstm import tuning

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_bench_reports_jlstm_and_positive_ratios(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--directions", "bi", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().startswith("# jlstm beside its peers")
    assert results["machine"]["cpu"] and isinstance(results["machine"]["cpu_flags"], list)

    rows = results["rows"]
    assert [r["peer"] for r in rows if r["peer"] == "jlstm"] == ["jlstm"]
    for row in rows:
        for key in ("forward_ms", "train_ms", "forward_ratio", "train_ratio", "forward_gflops", "train_gflops"):
            assert isinstance(row[key], float) and row[key] > 0, (row["peer"], key, row[key])

    # A peer that did not run is there as a skip note, printed too; nothing failed.
    ran = {r["peer"] for r in rows}
    skipped = {n["where"] for n in results["notes"] if n["kind"] == "skip"}
    assert ran | skipped >= {"jlstm", "torch", "flax", "keras", "equinox", "torch-bf16"}
    assert "jlstm-bf16" in ran  # the mixed_bfloat16 row, its ratio to float32 jlstm's as the others'
    assert {r["peer"]: r["forward_gflops"] for r in rows}["jlstm-bf16"] > 0
    assert not [n for n in results["notes"] if n["kind"] == "error"], results["notes"]
    for note in results["notes"]:
        assert note["note"] in done.stdout

    assert results["roofline"]["jax_gflops"] > 0
    assert all(check["ok"] for check in results["agreement"])
    assert results["compile_scaling"] and results["remat_memory"]
    long = results["long_remat"]  # scaled down under --quick; its target judged, whatever it says
    assert long["timesteps"] == [1_000, 10_000] and [r["call"] for r in long["rows"]] == ["forward", "train"]
    assert all(r["time_ratio"] > 0 and r["memory_ratio"] > 0 for r in long["rows"])
    assert "T=10,000 remat: per-step memory within 2x of T=1,000" in done.stdout

    # The forms: what the tuner chose (or the static rule, at this tiny shape), and each form's time.
    (forms,) = results["forms"]
    assert forms["forward"] is None and forms["forward_static"] == "rows-fused" and not forms["tuned"]
    swept = {(r["call"], r["form"]) for r in results["form_sweep"]}
    assert {form for call, form in swept if call == "forward"} == set(tuning.FORWARD_FORMS)
    assert {form for call, form in swept if call == "train"} == set(tuning.BACKWARD_FORMS)
    assert "The speed targets, judged on this run" in done.stdout


def test_results_keep_one_section_per_cpu_model():
    first = report.merge_section("", "## CPU A\nold A\n", "CPU A")
    assert first.startswith(report.HEADER) and "old A" in first
    both = report.merge_section(first + "\n## GPU\nno GPU figures\n", "## CPU B\nB\n", "CPU B")
    assert both.index("CPU B") < both.index("CPU A") and "no GPU figures" in both  # newest first, rest kept
    again = report.merge_section(both, "## CPU A\nnew A\n", "CPU A")
    assert "new A" in again and "old A" not in again and "\nB\n" in again and "no GPU figures" in again
