"""`python -m bench.revisions --base REF`: jlstm against an earlier revision of itself, in the same run.

What a refactor shows "no slowdown" with. The base revision's `jlstm/` (`git archive REF jlstm`
into a temporary directory) and the head's (`--head REF`, or by default the working tree as it
is) each run in Python subprocesses of their own, which import that revision's jlstm and no
other (checked by `jlstm.__file__`), and time the same workloads through the public API both
have: `jlstm.LSTM` and `jlstm.Bidirectional(LSTM)` returning sequences, their jitted forward
and a jitted training step (value and grad of the mean square of the sequence, then an SGD
update), at the bench's shapes on the bench's inputs.

The subprocesses run in rounds, base and head taking turns (AB BA AB ...), so that a machine
growing busier or quieter falls on both alike; each compiles and warms up, then times the
shape's repeats. A time is the median over rounds of each subprocess's median. Both revisions
see the same environment (JLSTM_TUNE, XLA_FLAGS, ...) but for JLSTM_CACHE_DIR, a fresh
directory each, so that neither reads forms the other tuned. The first round also checks that
both give the same forward output on the same inputs and init key (within 1e-5): when they do
not, the run stops there and exits 1, as the times of two different computations say nothing
about a refactor.

    python -m bench.revisions --base main                # the working tree against main
    python -m bench.revisions --base HEAD~5 --head main --shapes mid,large --rounds 6 --out revisions.json
    python -m bench.revisions --base HEAD --quick        # a smoke run: the seed shape, in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bench import DIRECTIONS, QUICK_REPEATS, QUICK_SHAPES, SHAPES, Shape, add_workload_arguments
from bench.report import Table, render_text
from bench.timing import seconds, time_round_robin

ROOT = Path(__file__).resolve().parents[1]  # the checkout this bench runs in: git reads its repository
WORKTREE = "worktree"  # --head's name for the working tree as it is
TOLERANCE = 1e-5  # max |head - base| of the forward outputs
LEARNING_RATE = 0.01  # the training step's SGD update
QUICK_ROUNDS, ROUNDS = 2, 4
SETTINGS = ("JLSTM_", "XLA_FLAGS", "JAX_")  # the environment variables the header names
# -P: no script directory or cwd before PYTHONPATH, so that the revision's jlstm comes first.
WORKER = [sys.executable, "-P", "-c", "import sys; from bench.revisions import worker; sys.exit(worker(sys.argv[1]))"]
STARTED = time.perf_counter()


class Revision(NamedTuple):
    """One side of the comparison: the ref, its commit, and the directory whose `jlstm/` it imports."""

    label: str  # "base" or "head"
    ref: str
    commit: str
    root: Path  # holds the revision's jlstm/
    cache_dir: Path  # its JLSTM_CACHE_DIR, fresh for this run


# The worker: one subprocess, one revision's jlstm.


def worker(spec_path: str) -> int:
    """A subprocess's work: import the revision's jlstm, time each shape and direction, write the times."""
    spec = json.loads(Path(spec_path).read_text())
    jlstm = import_jlstm(Path(spec["root"]))
    outputs = Path(spec["outputs"]) if spec["outputs"] else None
    timings = [
        timing
        for fields in spec["shapes"]
        for direction in spec["directions"]
        for timing in measure(jlstm, Shape(**fields), direction, outputs)
    ]
    found = {"jlstm_file": jlstm.__file__, "jax": jax.__version__, "backend": jax.default_backend()}
    Path(spec["out"]).write_text(json.dumps({**found, "timings": timings}))
    return 0


def import_jlstm(root: Path) -> ModuleType:
    """jlstm, checked to be the copy under `root` (PYTHONPATH puts it first)."""
    import jlstm

    expected = (root / "jlstm" / "__init__.py").resolve()
    if Path(jlstm.__file__).resolve() != expected:
        raise SystemExit(f"bench.revisions: imported jlstm from {jlstm.__file__}, not {expected} (sys.path {sys.path})")
    return jlstm


def measure(jlstm: ModuleType, shape: Shape, direction: str, outputs: Path | None) -> list[dict[str, Any]]:
    """The forward and training-step timings at `shape`; with `outputs`, the forward output saved there."""
    x = np.random.default_rng(0).standard_normal((shape.batch, shape.timesteps, shape.features), dtype=np.float32)
    calls = workload(jlstm, shape.units, DIRECTIONS[direction], x)
    firsts = {name: seconds(call) for name, call in calls.items()}
    timings = time_round_robin(calls, firsts, shape.repeats)
    if outputs:
        np.save(outputs / f"{shape.name}-{direction}.npy", np.asarray(calls["forward"]()))
    return [{**shape.fields(DIRECTIONS[direction]), "pass": name, **t._asdict()} for name, t in timings.items()]


def workload(jlstm: ModuleType, units: int, bidirectional: bool, x: np.ndarray) -> dict[str, Callable[[], Any]]:
    """The blocking forward and training-step calls of jlstm's LSTM on `x`, through the public API
    every revision has (`LSTM`, `Bidirectional`, `init`, `apply`)."""
    layer = jlstm.LSTM(units, return_sequences=True)
    layer = jlstm.Bidirectional(layer) if bidirectional else layer
    _, params = layer.init(jax.random.key(0), x.shape)
    inputs = jnp.asarray(x)
    forward, train = jax.jit(layer.apply), jax.jit(sgd_step(layer.apply))
    return {
        "forward": lambda: jax.block_until_ready(forward(params, inputs)),
        "train": lambda: jax.block_until_ready(train(params, inputs)),
    }


def sgd_step(apply: Callable[[Any, jax.Array], jax.Array]) -> Callable[[Any, jax.Array], tuple[jax.Array, Any]]:
    """A training step of `apply`: the mean square of its output and the params after one SGD update."""

    def loss(params: Any, x: jax.Array) -> jax.Array:
        y = apply(params, x)
        return (y * y).mean()

    def step(params: Any, x: jax.Array) -> tuple[jax.Array, Any]:
        value, grads = jax.value_and_grad(loss)(params, x)
        return value, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    return step


# The parent: materializes the revisions, runs the rounds, compares.


def progress(message: str) -> None:
    """A line on stderr, so that a long run can be followed."""
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def git(*args: str) -> bytes:
    """git's stdout in ROOT's repository; exits with git's message when it fails."""
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
    if done.returncode:
        raise SystemExit(f"bench.revisions: git {' '.join(args)} failed in {ROOT}: {done.stderr.decode().strip()}")
    return done.stdout


def commit_of(ref: str) -> str:
    """The commit `ref` names; for the working tree, HEAD's, marked when jlstm/ differs from it."""
    if ref == WORKTREE:
        dirty = git("status", "--porcelain", "--", "jlstm").strip()
        return git("rev-parse", "HEAD").decode().strip() + (" +dirty jlstm/" if dirty else "")
    return git("rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()


def materialize(label: str, ref: str, tmp: Path) -> Revision:
    """`ref`'s jlstm/ extracted into a directory of its own under `tmp`; the working tree's stays in place."""
    commit = commit_of(ref)
    if ref == WORKTREE:
        return Revision(label, ref, commit, ROOT, tmp / f"{label}-cache")
    root = tmp / label
    root.mkdir()
    extract = subprocess.run(["tar", "-x", "-C", str(root)], input=git("archive", "--format=tar", commit, "jlstm"))
    if extract.returncode or not (root / "jlstm" / "__init__.py").is_file():
        raise SystemExit(f"bench.revisions: no jlstm/__init__.py in {ref} ({commit}), extracted into {root}")
    return Revision(label, ref, commit, root, tmp / f"{label}-cache")


def environment(revision: Revision) -> dict[str, str]:
    """This process's environment for `revision`'s worker, but for PYTHONPATH (the revision's jlstm
    first, then this bench) and JLSTM_CACHE_DIR (the revision's own)."""
    paths = [str(revision.root), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, paths)),
        "JLSTM_CACHE_DIR": str(revision.cache_dir),
    }


def run_worker(revision: Revision, spec: dict[str, Any], tmp: Path, round_: int) -> dict[str, Any]:
    """One subprocess of `revision` measuring `spec`; in the first round it saves its forward outputs."""
    name = f"{revision.label}-{round_}"
    outputs = tmp / f"{revision.label}-outputs" if round_ == 0 else None
    if outputs:
        outputs.mkdir()
    spec = {**spec, "root": str(revision.root), "outputs": outputs and str(outputs), "out": str(tmp / f"{name}.json")}
    (tmp / f"{name}.spec.json").write_text(json.dumps(spec))
    done = subprocess.run([*WORKER, str(tmp / f"{name}.spec.json")], env=environment(revision), stdout=sys.stderr)
    if done.returncode:
        raise SystemExit(f"bench.revisions: the {revision.label} worker ({revision.ref}) exited {done.returncode}")
    return json.loads(Path(spec["out"]).read_text())


def timed_shapes(args: argparse.Namespace) -> list[Shape]:
    """The shapes asked for, each with the repeats it is timed with."""
    default = QUICK_REPEATS if args.quick else None
    return [SHAPES[n]._replace(repeats=args.repeats or default or SHAPES[n].repeats) for n in args.shapes]


def run_rounds(
    args: argparse.Namespace, revisions: Sequence[Revision], tmp: Path
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Each revision's worker results round by round, base and head taking turns (AB BA AB ...), and
    the first round's agreement checks; a disagreement ends the run after that round."""
    spec = {"shapes": [shape._asdict() for shape in timed_shapes(args)], "directions": args.directions}
    runs: dict[str, list[dict[str, Any]]] = {r.label: [] for r in revisions}
    checks: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for revision in revisions if round_ % 2 == 0 else revisions[::-1]:
            progress(f"round {round_ + 1}/{args.rounds}: {revision.label} {revision.ref} ({revision.commit[:12]})")
            runs[revision.label].append(run_worker(revision, spec, tmp, round_))
        if round_ == 0:
            checks = agreement(spec, tmp / "base-outputs", tmp / "head-outputs")
            if not all(check["ok"] for check in checks):
                progress(f"the forward outputs differ by more than {TOLERANCE:g}: no more rounds")
                break
    return runs, checks


def agreement(spec: dict[str, Any], base: Path, head: Path) -> list[dict[str, Any]]:
    """Max |head - base| of the forward output at each shape and direction, within TOLERANCE or not."""
    checks = []
    for shape in spec["shapes"]:
        for direction in spec["directions"]:
            name = f"{shape['name']}-{direction}.npy"
            ours, theirs = np.load(head / name), np.load(base / name)
            diff = float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else float("inf")
            checks.append(
                {"shape": shape["name"], "direction": direction, "max_abs_diff": diff, "ok": diff <= TOLERANCE}
            )
    return checks


def by_measurement(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """One revision's timings, round by round, per (shape, direction, pass)."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        for t in result["timings"]:
            grouped.setdefault((t["shape"], t["direction"], t["pass"]), []).append(t)
    return grouped


def compare(runs: dict[str, list[dict[str, Any]]], checks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per shape, direction and pass: each revision's median over rounds of its medians, head over base,
    the round-to-round spread and the forward outputs' max difference."""
    base, head = by_measurement(runs["base"]), by_measurement(runs["head"])
    diffs = {(c["shape"], c["direction"]): c["max_abs_diff"] for c in checks}
    rows = []
    for key, timings in base.items():
        first = {k: v for k, v in timings[0].items() if k not in ("first_s", "median_s", "min_s")}
        ms = {label: [t["median_s"] * 1e3 for t in ts] for label, ts in (("base", timings), ("head", head[key]))}
        base_ms, head_ms = (statistics.median(ms[label]) for label in ("base", "head"))
        rows.append(
            {
                **first,
                "base_ms": base_ms,
                "head_ms": head_ms,
                "ratio": head_ms / base_ms,
                "spread": max(max(rounds) / min(rounds) - 1 for rounds in ms.values()),
                "base_rounds_ms": ms["base"],
                "head_rounds_ms": ms["head"],
                "max_abs_diff": diffs.get(key[:2]),
            }
        )
    return rows


def tuned_forms(revision: Revision) -> dict[str, str]:
    """The scan forms `revision`'s tuner kept in its cache directory (none if it tuned nothing)."""
    forms: dict[str, str] = {}
    for path in revision.cache_dir.glob("*.json"):
        try:
            payload = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(payload, dict) and isinstance(payload.get("entries"), dict):
            forms |= {key.split("|", 3)[-1]: form for key, form in payload["entries"].items()}  # less the machine
    return forms


def machine() -> dict[str, Any]:
    """The CPU model and core count, as `python -m bench` reports them."""
    # Imported here: they import the working tree's jlstm, which no worker may see.
    from bench.peers import cpu_count
    from jlstm.tuning import cpu_model

    return {"cpu": cpu_model(), "cores": cpu_count()}


def settings() -> dict[str, str]:
    """The environment variables that change what jlstm and JAX do, as both revisions see them."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS) and k != "JLSTM_CACHE_DIR"}


def notes(results: dict[str, Any]) -> list[str]:
    """What the table does not say: disagreements, and forms the two tuners chose differently."""
    lines = [
        f"- {c['shape']} {c['direction']}: the forward outputs differ by {c['max_abs_diff']:.2e} (over {TOLERANCE:g})"
        for c in results["agreement"]
        if not c["ok"]
    ]
    base, head = (results["forms"][label] for label in ("base", "head"))
    for key in sorted(base.keys() | head.keys()):
        if base.get(key) != head.get(key):
            lines.append(f"- tuned forms differ at {key}: base {base.get(key, '-')}, head {head.get(key, '-')}")
    return lines


def table(rows: Sequence[dict[str, Any]]) -> Table:
    """Per shape, direction and pass: both revisions' times, head over base, spread, output difference."""
    headers = ["shape (B,T,F,U)", "dir", "pass", "base ms", "head ms", "head/base", "spread", "max |head - base|"]
    cells = [
        [
            f"{r['shape']} ({r['batch']},{r['timesteps']},{r['features']},{r['units']})",
            r["direction"],
            r["pass"],
            f"{r['base_ms']:,.3f}",
            f"{r['head_ms']:,.3f}",
            f"{r['ratio']:.3f}",
            f"{r['spread']:.0%}",
            "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
        ]
        for r in rows
    ]
    return headers, cells


def text(results: dict[str, Any]) -> str:
    """What `python -m bench.revisions` prints: the revisions, the machine, the table and the notes."""
    m, revisions = results["machine"], results["revisions"]
    env = ", ".join(f"{k}={v}" for k, v in results["settings"].items()) or "none set"
    parts = [
        *(f"{label}: {r['ref']} = {r['commit']}" for label, r in revisions.items()),
        f"on {m['cpu']}, {m['cores']} cores, JAX {m['jax']} ({m['backend']}); JLSTM_*, JAX_*, XLA_FLAGS: {env}",
        f"{results['rounds_run']} round(s) of one subprocess per revision, taking turns (AB BA ...); "
        f"load average (1 min) {m['load_average_1m']:.2f} at the start, {m['load_average_1m_end']:.2f} at the end",
        "",
        render_text(table(results["rows"])),
        "ms: the median over rounds of each subprocess's median; head/base below 1: head faster. spread: the slowest",
        "round over the fastest, minus 1 (the larger revision's); max |head - base|: the forward outputs.",
    ]
    lines = notes(results)
    return "\n".join(parts + (["", "Notes:", *lines] if lines else []))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see `python -m bench.revisions --help`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.revisions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the git ref to compare against (a branch, tag, HEAD~1, ...)")
    parser.add_argument(
        "--head", default=WORKTREE, help=f"the git ref compared, or {WORKTREE!r}: the working tree as it is (default)"
    )
    add_workload_arguments(
        parser, f"a smoke run: shapes {','.join(QUICK_SHAPES)}, {QUICK_REPEATS} repeats, {QUICK_ROUNDS} rounds"
    )
    parser.add_argument("--rounds", type=int, help=f"subprocesses per revision, taking turns (default {ROUNDS})")
    parser.add_argument("--repeats", type=int, help="timed calls per subprocess and measurement (default: per shape)")
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    args.rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    if args.rounds < 1 or (args.repeats is not None and args.repeats < 1):
        parser.error("--rounds and --repeats take a positive number")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both revisions measured in turns, as one JSON-ready dict."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jlstm-revisions-") as tmp:
        revisions = [materialize(label, ref, Path(tmp)) for label, ref in (("base", args.base), ("head", args.head))]
        runs, checks = run_rounds(args, revisions, Path(tmp))
        forms = {r.label: tuned_forms(r) for r in revisions}
    found = runs["head"][0]
    return {
        "machine": {
            **machine(),
            "jax": found["jax"],
            "backend": found["backend"],
            "load_average_1m": load,
            "load_average_1m_end": os.getloadavg()[0],
        },
        "settings": settings(),
        "revisions": {
            r.label: {"ref": r.ref, "commit": r.commit, "jlstm_file": runs[r.label][0]["jlstm_file"]} for r in revisions
        },
        "shapes": {shape.name: shape._asdict() for shape in timed_shapes(args)},
        "rounds_run": len(runs["base"]),
        "rows": compare(runs, checks),
        "agreement": checks,
        "forms": forms,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the comparison and prints it; exits 1 when the two revisions' forward outputs differ."""
    args = parse_args(argv)
    results = run(args)
    print(text(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        progress(f"wrote {args.out}")
    return 0 if all(check["ok"] for check in results["agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
