"""The `jlstm` command line: `jlstm summary` and friends."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from jlstm import __version__
from jlstm._checks import MAX_SIZE, MAX_SIZE_TEXT
from jlstm.combinators import MERGE_MODES, Bidirectional
from jlstm.layers import LSTM, RECURRENT, Layer
from jlstm.summary import MIN_LINE_LENGTH, STYLES, Namer, summary

if TYPE_CHECKING:  # the train extra's modules load only for `jlstm train`
    from jlstm.tasks import Config, Result, Task

SEED_SHAPE = (None, 11, 3)
SEED_UNITS = 5


def _positive_int(text: str) -> int:
    """A size, bounded as the layers bound theirs."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"expected a positive int up to {MAX_SIZE_TEXT}, got {value}")
    return value


def _line_length(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_LINE_LENGTH:
        raise argparse.ArgumentTypeError(f"expected an int >= {MIN_LINE_LENGTH}, got {value}")
    return value


def _seed_models() -> list[Layer]:
    """The seed notebook's four models, in its order."""
    return [
        maybe_bidirectional(LSTM(SEED_UNITS, return_sequences=rs), bidirectional)
        for rs in (False, True)
        for bidirectional in (False, True)
    ]


def maybe_bidirectional(layer: Layer, bidirectional: bool, merge_mode: str | None = "concat") -> Layer:
    return Bidirectional(layer, merge_mode=merge_mode) if bidirectional else layer


def _summary(args: argparse.Namespace) -> int:
    custom = (args.timesteps, args.features, args.units, args.merge_mode, args.layer)
    table = functools.partial(summary, style=args.style, line_length=args.line_length)
    if args.bidirectional or args.return_sequences or any(v is not None for v in custom):
        merge_mode = None if args.merge_mode == "none" else (args.merge_mode or "concat")
        layer = maybe_bidirectional(
            RECURRENT[args.layer or "LSTM"](args.units or SEED_UNITS, return_sequences=args.return_sequences),
            args.bidirectional,
            merge_mode,
        )
        shape = (None, args.timesteps or SEED_SHAPE[1], args.features or SEED_SHAPE[2])
        print(table(layer, shape))
        return 0
    namer = Namer(args.style)
    print("\n\n".join(table(model, SEED_SHAPE, namer=namer) for model in _seed_models()))
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


MAX_SEED = 2**32 - 1  # NumPy's and scikit-learn's seeds


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value}")
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 up to 2**32 - 1 = {MAX_SEED}, got {value}")
    return value


def _unwritable(out: Path) -> str | None:
    """Why files can't be written under `out` (to be created if missing), or None. Checked
    by writing a probe file, since permission bits don't stop root but a read-only disk does."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"cannot write in {existing}: {err.strerror or err}"
    return None


def _write_outputs(out: Path, result: Result, args: argparse.Namespace, cfg: Config, seconds: float) -> list[Path]:
    from jlstm.checkpoint import save, write_atomic

    out.mkdir(parents=True, exist_ok=True)
    save(out / "model.ckpt", result.params)
    paths = [out / "model.ckpt"] + [draw(out / name) for name, draw in result.plots.items()]
    report = {
        "task": args.task,
        "config": cfg._asdict(),
        "seconds": round(seconds, 1),
        "test": result.test,  # evaluated once, after training
        "histories": result.histories,  # per epoch; "val_" keys are the validation split
    }
    write_atomic(os.fspath(out / "metrics.json"), json.dumps(report, indent=1).encode())
    return paths + [out / "metrics.json"]


def _start(task: Task, out: Path, resume: bool) -> str | None:
    """Why the run cannot start, or None once `out` is ready: a run without --resume starts
    over, so an earlier run's training states go (a resumed run would mix them in)."""
    from jlstm.tasks import state_path

    problem = _unwritable(out)
    if problem:
        return f"--out {out}: {problem}"
    states = [state_path(out, run) for run in task.runs]
    if resume and not states[0].exists():
        return f"--resume: no {states[0]} to continue from"
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for path in states:
            path.unlink(missing_ok=True)
    return None


def _interrupted(task: Task, out: Path, cfg: Config) -> str:
    from jlstm.tasks import state_path
    from jlstm.train import load_state

    saved = [p for p in (state_path(out, run) for run in task.runs) if p.exists()]
    if not saved:
        return "interrupted before an epoch finished; nothing saved"
    epoch = load_state(saved[-1]).epoch
    return f"interrupted; {saved[-1]} holds epoch {epoch}/{cfg.epochs}: the same command with --resume continues"


def _train(args: argparse.Namespace) -> int:
    try:
        from jlstm import train
        from jlstm.tasks import TASKS
    except ImportError as err:
        print(f"jlstm train: needs the train extra, pip install 'jlstm[train]' ({err})", file=sys.stderr)
        return 2
    out = Path(args.out if args.out is not None else os.path.join("runs", args.task))
    task = TASKS[args.task]
    problem = _start(task, out, args.resume)
    if problem:
        print(f"jlstm train: {problem}", file=sys.stderr)
        return 2
    given = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "units", "seed")}
    cfg = task.defaults._replace(
        progress=not args.quiet,
        state_dir=str(out),
        resume=args.resume,
        **{k: v for k, v in given.items() if v is not None},
    )
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", train.DivergenceWarning)  # a run that diverged is a failed run
            result = task.run(cfg)
        seconds = time.perf_counter() - start
        paths = _write_outputs(out, result, args, cfg, seconds)
    except KeyboardInterrupt:
        print(f"jlstm train: {_interrupted(task, out, cfg)}", file=sys.stderr)
        return 130
    except train.DivergenceWarning as err:
        print(f"jlstm train: {err} (a lower --lr may help)", file=sys.stderr)
        return 1
    except train.ResumeError as err:
        print(f"jlstm train: --resume: {err}", file=sys.stderr)
        return 2
    print(f"{result.summary}; trained in {seconds:.1f} s; wrote {', '.join(p.name for p in paths)} to {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2): the message and where help is, not the
    usage block, which hides the message on a narrow terminal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jlstm", description="A functional LSTM library for JAX.")
    parser.add_argument("--version", action="version", version=f"jlstm {__version__}")
    commands = parser.add_subparsers(dest="command")
    p = commands.add_parser(
        "summary",
        help="print Keras-style summary tables",
        description="With no options, the seed notebook's four tables: the Keras 2 notebook "
        "(LSTM and Bidirectional(LSTM), many-to-one and many-to-many, on 11 timesteps of 3 "
        "features, 5 units) whose summaries jlstm reproduces line for line, Keras 2's column "
        "cuts included (its 'bidirectional_1 (Bidirection' is cut at 29 characters). With "
        "layer options, one table. --style keras3 prints Keras 3's table instead. ('Seed' here "
        "is that notebook, not a random seed such as jlstm train's --seed.)",
    )
    p.add_argument("--timesteps", type=_positive_int, help="timesteps (default 11)")
    p.add_argument("--features", type=_positive_int, help="features (default 3)")
    p.add_argument("--layer", choices=list(RECURRENT), help="the recurrent layer (default LSTM)")
    p.add_argument("--units", type=_positive_int, help="the layer's units (default 5)")
    p.add_argument("--bidirectional", action="store_true", help="wrap the layer in Bidirectional")
    p.add_argument("--return-sequences", action="store_true", help="many-to-many")
    p.add_argument(
        "--merge-mode",
        choices=[m or "none" for m in MERGE_MODES],
        help="Bidirectional merge mode (default concat)",
    )
    p.add_argument(
        "--style",
        choices=STYLES,
        default="keras2",
        help="keras2: the seed notebook's Keras 2 table (default); keras3: Keras 3's box-drawn table",
    )
    p.add_argument(
        "--line-length",
        type=_line_length,
        help=f"the table's width, at least {MIN_LINE_LENGTH} (default: Keras's, 65 for keras2, 88 for keras3)",
    )
    p.set_defaults(run=_summary)

    try:
        from jlstm.tasks import TASKS
    except ImportError:  # without the train extra, `jlstm train` says what to install
        TASKS = {}
    p = commands.add_parser(
        "train",
        help="train a model on a real data set; checkpoint and PNG plots to --out",
        description="Trains on a data set that an installed package ships (nothing is "
        "downloaded), prints a progress bar per epoch with the validation split's metrics, "
        "then the test split's, evaluated once after training, and writes model.ckpt, "
        "metrics.json and PNG plots to --out, and the training state after every epoch. "
        "Ctrl-C stops it (exit 130), keeping the last finished epoch's state: the same command with "
        "--resume continues. A diverging run (non-finite loss) exits 1. "
        "Defaults finish in under 2 minutes on 2 CPU cores.",
    )
    p.add_argument(
        "task", choices=list(TASKS) or None, help="; ".join(f"{name}: {t.help}" for name, t in TASKS.items()) or None
    )
    p.add_argument("--epochs", type=_positive_int, help="epochs (default per task)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size (default 32)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default 1e-2)")
    p.add_argument("--units", type=_positive_int, help="LSTM units (default per task)")
    p.add_argument("--seed", type=_non_negative_int, help="seed of split, init and shuffling (default 0)")
    p.add_argument("--out", help="output directory (default runs/TASK)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines, only the result")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its training state (give the same options)",
    )
    p.set_defaults(run=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `jlstm`: the help
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
