"""Smoke test of the side-by-side benchmark: `python -m bench --quick` runs and reports jlstm."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_jlstm_and_positive_ratios(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--directions", "bi", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().startswith("# jlstm beside its peers")

    rows = results["rows"]
    assert [r["peer"] for r in rows if r["peer"] == "jlstm"] == ["jlstm"]
    for row in rows:
        for key in ("forward_ms", "train_ms", "forward_ratio", "train_ratio", "forward_gflops", "train_gflops"):
            assert isinstance(row[key], float) and row[key] > 0, (row["peer"], key, row[key])

    # A peer that did not run is there as a skip note, printed too; nothing failed.
    ran = {r["peer"] for r in rows}
    skipped = {n["where"] for n in results["notes"] if n["kind"] == "skip"}
    assert ran | skipped >= {"jlstm", "torch", "flax", "keras", "equinox"}
    assert not [n for n in results["notes"] if n["kind"] == "error"], results["notes"]
    for note in results["notes"]:
        assert note["note"] in done.stdout

    assert results["roofline"]["jax_gflops"] > 0
    assert all(check["ok"] for check in results["agreement"])
    assert results["compile_scaling"] and results["remat_memory"]
