"""The `jlstm` command line: `jlstm summary` and friends."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from jlstm.combinators import MERGE_MODES, Bidirectional
from jlstm.layers import LSTM, Layer
from jlstm.summary import Namer, summary

SEED_SHAPE = (None, 11, 3)
SEED_UNITS = 5


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
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
    custom = (args.timesteps, args.features, args.units, args.merge_mode)
    if args.bidirectional or args.return_sequences or any(v is not None for v in custom):
        merge_mode = None if args.merge_mode == "none" else (args.merge_mode or "concat")
        layer = maybe_bidirectional(
            LSTM(args.units or SEED_UNITS, return_sequences=args.return_sequences),
            args.bidirectional, merge_mode,
        )
        shape = (None, args.timesteps or SEED_SHAPE[1], args.features or SEED_SHAPE[2])
        print(summary(layer, shape))
        return 0
    namer = Namer()
    print("\n\n".join(summary(model, SEED_SHAPE, namer=namer) for model in _seed_models()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jlstm", description="A functional LSTM library for JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "summary",
        help="print Keras-style summary tables",
        description="With no options, the seed notebook's four tables (LSTM and "
        "Bidirectional(LSTM), many-to-one and many-to-many); with options, one table.",
    )
    p.add_argument("--timesteps", type=_positive_int, help="timesteps (default 11)")
    p.add_argument("--features", type=_positive_int, help="features (default 3)")
    p.add_argument("--units", type=_positive_int, help="LSTM units (default 5)")
    p.add_argument("--bidirectional", action="store_true", help="wrap the LSTM in Bidirectional")
    p.add_argument("--return-sequences", action="store_true", help="many-to-many")
    p.add_argument(
        "--merge-mode",
        choices=[m or "none" for m in MERGE_MODES],
        help="Bidirectional merge mode (default concat)",
    )
    p.set_defaults(run=_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
