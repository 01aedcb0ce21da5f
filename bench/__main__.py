"""`python -m bench`: jlstm beside torch, Flax, Keras and Equinox; prints a table, writes JSON and Markdown."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras reads it once, at its first import

import numpy as np  # noqa: E402

from bench import (  # noqa: E402
    DIRECTIONS,
    QUICK_REMAT_TIMESTEPS,
    QUICK_REPEATS,
    QUICK_SHAPES,
    REMAT_SHAPE,
    REMAT_TIMESTEPS,
    SHAPES,
    Shape,
    add_workload_arguments,
    extras,
    lstm_flops,
    name_list,
    report,
)
from bench.peers import PEERS, Contender, SkipPeer  # noqa: E402
from bench.timing import Timing, seconds, time_round_robin  # noqa: E402

STARTED = time.perf_counter()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see `python -m bench --help`."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_workload_arguments(
        parser, f"tiny sizes in seconds (shapes {','.join(QUICK_SHAPES)}, {QUICK_REPEATS} repeats): a smoke run"
    )
    parser.add_argument(
        "--peers",
        type=name_list(PEERS),
        default=list(PEERS),
        help=f"comma-separated subset of {','.join(PEERS)}; jlstm always runs",
    )
    parser.add_argument("--only-jlstm", action="store_true", help="same as --peers jlstm")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: per shape)")
    parser.add_argument(
        "--no-extras",
        dest="extras",
        action="store_false",
        help="skip the torch agreement check, the sweep of jlstm's scan forms, compile scaling and the remat rows",
    )
    parser.add_argument("--out", default=os.path.join("bench", "out"), help="directory for results.json and results.md")
    parser.add_argument(
        "--results",
        help="also keep this run as its CPU model's section of this Markdown file "
        "(e.g. bench/RESULTS.md), beside the other CPU models' last runs",
    )
    args = parser.parse_args(argv)
    args.peers = ["jlstm"] + [p for p in args.peers if p != "jlstm" and not args.only_jlstm]
    args.shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    return args


def progress(message: str) -> None:
    """A line on stderr, so that a long run can be followed."""
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def prepare(peer: str, x: np.ndarray, shape: Shape, bidirectional: bool) -> tuple[Contender, tuple[float, float]]:
    """`peer`'s contender on `x` and the seconds of its first forward and training-step calls."""
    contender = PEERS[peer](x, shape.units, bidirectional)
    return contender, (seconds(contender.forward), seconds(contender.train))


def row(peer: str, shape: Shape, bidirectional: bool, forward: Timing, train: Timing, jitted: bool) -> dict[str, Any]:
    """One table row: `peer`'s forward and training-step timings at `shape`."""
    directions = 2 if bidirectional else 1
    return {
        **shape.fields(bidirectional),
        "peer": peer,
        "repeats": forward.repeats,
        "forward_ms": forward.median_s * 1e3,
        "train_ms": train.median_s * 1e3,
        "forward_min_ms": forward.min_s * 1e3,
        "train_min_ms": train.min_s * 1e3,
        "forward_compile_s": forward.compile_s if jitted else None,
        "train_compile_s": train.compile_s if jitted else None,
        "forward_gflops": lstm_flops(shape, directions) / forward.median_s / 1e9,
        "train_gflops": lstm_flops(shape, directions, train=True) / train.median_s / 1e9,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's time over jlstm's at the same shape and direction: above 1, jlstm is faster."""
    baseline = {(r["shape"], r["direction"]): r for r in rows if r["peer"] == "jlstm"}
    for r in rows:
        ours = baseline.get((r["shape"], r["direction"]))
        for call in ("forward", "train"):
            r[f"{call}_ratio"] = r[f"{call}_ms"] / ours[f"{call}_ms"] if ours else None


def run_group(
    peers: Sequence[str],
    x: np.ndarray,
    shape: Shape,
    direction: str,
    repeats: int,
    results: dict[str, Any],
    skipped: dict[str, str],
) -> None:
    """Every peer at one shape and direction: compiled one by one, then timed round-robin."""
    bidirectional = DIRECTIONS[direction]
    contenders: dict[str, Contender] = {}
    firsts: dict[str, tuple[float, float]] = {}
    for peer in (p for p in peers if p not in skipped):
        where = f"{shape.name} {direction} {peer}"
        progress(f"first calls {where}")
        try:
            contenders[peer], firsts[peer] = prepare(peer, x, shape, bidirectional)
        except SkipPeer as skip:
            skipped[peer] = str(skip)
            results["notes"].append({"kind": "skip", "where": peer, "note": str(skip)})
        except Exception as error:  # a peer that breaks is noted, not hidden; jlstm breaking is fatal
            if peer == "jlstm":
                raise
            results["notes"].append({"kind": "error", "where": where, "note": f"{type(error).__name__}: {error}"})
    progress(f"timing {shape.name} {direction}: {', '.join(contenders)} round-robin, {repeats} repeats")
    forward = time_round_robin(
        {p: c.forward for p, c in contenders.items()}, {p: f[0] for p, f in firsts.items()}, repeats
    )
    train = time_round_robin({p: c.train for p, c in contenders.items()}, {p: f[1] for p, f in firsts.items()}, repeats)
    for peer, contender in contenders.items():
        results["rows"].append(row(peer, shape, bidirectional, forward[peer], train[peer], contender.jitted))
    if "jlstm" in contenders:
        results["forms"].append(extras.tuned_forms(shape, bidirectional))


def run_table(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Every peer at every shape and direction, on the same data, into results' rows and notes."""
    skipped: dict[str, str] = {}
    for shape in (SHAPES[name] for name in args.shapes):
        x = np.random.default_rng(0).standard_normal((shape.batch, shape.timesteps, shape.features), dtype=np.float32)
        repeats = args.repeats or (QUICK_REPEATS if args.quick else shape.repeats)
        for direction in args.directions:
            if args.extras:
                check_agreement(x, shape, direction, results)
            run_group(args.peers, x, shape, direction, repeats, results, skipped)
            if args.extras:
                progress(f"form sweep {shape.name} {direction}")
                results["form_sweep"] += extras.form_sweep(x, shape, DIRECTIONS[direction], min(repeats, 3))
            gc.collect()
    add_ratios(results["rows"])


def check_agreement(x: np.ndarray, shape: Shape, direction: str, results: dict[str, Any]) -> None:
    """jlstm's forward against torch's on the same weights, recorded before timing."""
    try:
        check = extras.torch_agreement(x, shape.units, DIRECTIONS[direction])
    except SkipPeer as skip:
        results["notes"].append({"kind": "skip", "where": f"agreement {shape.name} {direction}", "note": str(skip)})
        return
    results["agreement"].append({"shape": shape.name, "direction": direction, **check})
    progress(f"agreement {shape.name} {direction}: max |jlstm - torch| = {check['max_abs_err']:.2e}")


def run_extras(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Compile time against length, peak memory of a long training step with and without remat,
    and remat=True's time and memory per step at a 10x longer sequence."""
    shape = SHAPES["seed" if args.quick else "long"]
    directions = [DIRECTIONS[d] for d in args.directions]
    progress(f"compile scaling at T={extras.SCALING_TIMESTEPS}")
    calls = ("train",) if args.quick else ("forward", "train")
    results["compile_scaling"] = extras.compile_scaling(shape, directions, calls)
    progress("memory analysis of the long training step")
    results["remat_memory"] = extras.remat_memory(shape, directions, (False, True))
    timesteps = QUICK_REMAT_TIMESTEPS if args.quick else REMAT_TIMESTEPS
    progress(f"remat=True at T={timesteps}")
    results["long_remat"] = extras.long_remat(
        REMAT_SHAPE, timesteps, QUICK_REPEATS if args.quick else REMAT_SHAPE.repeats
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements the arguments ask for, as one JSON-ready dict."""
    results: dict[str, Any] = {
        "machine": extras.machine(),
        "config": {
            "quick": args.quick,
            "shapes": {n: SHAPES[n]._asdict() for n in args.shapes},
            "directions": args.directions,
            "peers": args.peers,
            "repeats": args.repeats,
        },
        "rows": [],
        "forms": [],
        "form_sweep": [],
        "agreement": [],
        "compile_scaling": [],
        "remat_memory": [],
        "long_remat": {},
        "notes": [],
    }
    progress("roofline: f32 matmul")
    results["roofline"] = extras.roofline(512 if args.quick else 2048, 3 if args.quick else 10)
    run_table(args, results)
    if args.extras:
        run_extras(args, results)
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the bench; exits 1 when jlstm disagrees with torch beyond the tolerance."""
    args = parse_args(argv)
    results = run(args)
    print(report.text(results))
    for path in report.write(results, args.out, args.results):
        progress(f"wrote {path}")
    return 0 if all(check["ok"] for check in results["agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
