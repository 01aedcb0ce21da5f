"""`python -m bench.revisions`: jlstm against another revision of itself, each in subprocesses of its own."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import revisions

ROOT = Path(__file__).resolve().parents[1]
IN_GIT_CHECKOUT = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True)
needs_git = pytest.mark.skipif(IN_GIT_CHECKOUT.returncode != 0, reason="needs the git checkout it runs in")


@pytest.mark.slow
@needs_git
def test_quick_run_against_head_agrees_and_reports_both(tmp_path):
    out = tmp_path / "revisions.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.revisions", "--quick", "--directions", "bi", "--base", "HEAD", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("shape"))
    for column in ("shape (B,T,F,U)", "dir", "pass", "base ms", "head ms", "head/base", "max |head - base|"):
        assert column in header

    results = json.loads(out.read_text())
    head_commit = IN_GIT_CHECKOUT.stdout.decode().strip()
    base, head = results["revisions"]["base"], results["revisions"]["head"]
    assert base["commit"] == head_commit and head["commit"].startswith(head_commit)
    assert head["jlstm_file"] == str(ROOT / "jlstm" / "__init__.py")
    assert not Path(base["jlstm_file"]).is_relative_to(ROOT)  # the archived copy, in a temporary directory
    assert base["commit"] in done.stdout and results["machine"]["cpu"] in done.stdout

    rows = results["rows"]
    assert {(r["shape"], r["direction"], r["pass"]) for r in rows} == {("seed", "bi", p) for p in ("forward", "train")}
    for r in rows:
        assert r["base_ms"] > 0 and r["head_ms"] > 0 and r["ratio"] == pytest.approx(r["head_ms"] / r["base_ms"])
        assert len(r["base_rounds_ms"]) == len(r["head_rounds_ms"]) == revisions.QUICK_ROUNDS
    assert [(c["shape"], c["direction"]) for c in results["agreement"]] == [("seed", "bi")]
    assert all(c["ok"] and c["max_abs_diff"] <= revisions.TOLERANCE for c in results["agreement"])


@needs_git
def test_materialize_extracts_the_refs_jlstm(tmp_path):
    base = revisions.materialize("base", "HEAD", tmp_path)
    assert base.commit == IN_GIT_CHECKOUT.stdout.decode().strip()
    assert (base.root / "jlstm" / "__init__.py").is_file() and base.root != ROOT
    assert revisions.materialize("head", revisions.WORKTREE, tmp_path).root == ROOT
    with pytest.raises(SystemExit, match="git rev-parse"):
        revisions.materialize("base", "no-such-ref-anywhere", tmp_path)


def test_a_worker_that_imports_another_jlstm_fails_saying_so(tmp_path):
    with pytest.raises(SystemExit, match="imported jlstm from .*, not "):
        revisions.import_jlstm(tmp_path)


def fake_worker(order):
    def run_worker(revision, spec, tmp, round_):
        order.append(revision.label)
        return {"timings": []}

    return run_worker


@pytest.mark.parametrize("agree", [True, False])
def test_rounds_take_turns_and_stop_at_a_disagreement(monkeypatch, tmp_path, agree):
    order = []
    monkeypatch.setattr(revisions, "run_worker", fake_worker(order))
    monkeypatch.setattr(revisions, "agreement", lambda spec, base, head: [{"ok": agree}])
    pair = [revisions.Revision(label, label, "0" * 40, tmp_path, tmp_path) for label in ("base", "head")]
    runs, checks = revisions.run_rounds(revisions.parse_args(["--base", "x", "--rounds", "3"]), pair, tmp_path)
    assert order == (["base", "head", "head", "base", "base", "head"] if agree else ["base", "head"])
    assert checks == [{"ok": agree}] and len(runs["base"]) == len(runs["head"]) == (3 if agree else 1)


def test_notes_name_disagreements_and_forms_the_tuners_chose_differently(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    entries = {"cpu|AMD|jax 0.10|forward|float32 D=1 B=64 T=100 F=128 U=256": "rows-fused"}
    (cache / "scan_forms.json").write_text(json.dumps({"format": "f", "version": 1, "entries": entries}))
    forms = revisions.tuned_forms(revisions.Revision("head", "worktree", "0", tmp_path, cache))
    assert forms == {"forward|float32 D=1 B=64 T=100 F=128 U=256": "rows-fused"}
    results = {"agreement": [{"shape": "seed", "direction": "bi", "max_abs_diff": 0.5, "ok": False}]}
    lines = revisions.notes({**results, "forms": {"base": {}, "head": forms}})
    assert "seed bi: the forward outputs differ by 5.00e-01" in lines[0]
    assert lines[1].endswith("float32 D=1 B=64 T=100 F=128 U=256: base -, head rows-fused")
