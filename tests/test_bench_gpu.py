"""`python -m bench.gpu` off a GPU: its help, a clean skip, and (with --allow-cpu) its report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench_gpu(*args):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the skip off a GPU")
def test_help_and_skip_off_gpu(tmp_path):
    done = bench_gpu("--help")
    assert done.returncode == 0 and "deepbench-train" in done.stdout
    done = bench_gpu("--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "skipped: jax.default_backend() is 'cpu', not 'gpu'" in done.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the CPU notes")
def test_allow_cpu_reports_what_ran(tmp_path):
    done = bench_gpu(
        "--allow-cpu",
        "--shapes",
        "seed",
        "--directions",
        "uni",
        "--peers",
        "jlstm-scan,jlstm-cudnn,torch-cudnn",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert [r["peer"] for r in results["rows"]] == ["jlstm-scan"]
    assert results["rows"][0]["forward_ms"] > 0 and results["rows"][0]["train_x_cudnn"] is None
    notes = {n["where"]: n["note"] for n in results["notes"]}
    assert "expected a GPU backend, got cpu" in notes["seed uni jlstm-cudnn"]
    assert notes["seed uni torch-cudnn"].startswith("skipped")  # no CUDA device, or no torch
    assert (tmp_path / "gpu.md").read_text().startswith("# jlstm on cpu")
