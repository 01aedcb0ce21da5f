"""jlstm beside its peers: forward and training-step time on the same data in one process.

`python -m bench` times jlstm, PyTorch's `torch.nn.LSTM`, Flax's `nn.RNN(OptimizedLSTMCell)`,
Keras 3's LSTM on JAX and Equinox's `LSTMCell` in a scan, each unidirectional and
bidirectional, at the shapes below; see `python -m bench --help`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from typing import NamedTuple


class Shape(NamedTuple):
    """One benchmark size: inputs (batch, timesteps, features) into an LSTM of `units`."""

    name: str
    batch: int
    timesteps: int
    features: int
    units: int
    repeats: int  # timed calls after warm-up, unless --repeats says otherwise

    def fields(self, bidirectional: bool) -> dict[str, str | int]:
        """The fields of a result row that say which shape and direction it was measured at."""
        return {
            "shape": self.name,
            "batch": self.batch,
            "timesteps": self.timesteps,
            "features": self.features,
            "units": self.units,
            "direction": "bi" if bidirectional else "uni",
        }


SHAPES = {
    shape.name: shape
    for shape in (
        Shape("seed", 32, 11, 3, 5, repeats=30),
        Shape("mid", 64, 100, 128, 256, repeats=10),
        Shape("large", 32, 200, 512, 512, repeats=5),
        Shape("long", 16, 1000, 64, 128, repeats=5),
    )
}
QUICK_SHAPES = ("seed",)
QUICK_REPEATS = 3
DIRECTIONS = {"uni": False, "bi": True}  # each direction's name: whether it is bidirectional

# The extra rows: compile time at these lengths (must stay within 2x), and the peak memory
# of a training step at the longer one, with and without rematerialization.
SCALING_TIMESTEPS = (10, 10_000)
# And jlstm with remat=True at a tiny width over a long and a 10x longer sequence (10x shorter
# under --quick): time and memory per step must not grow with the length.
REMAT_TIMESTEPS = (10_000, 100_000)
QUICK_REMAT_TIMESTEPS = (1_000, 10_000)
REMAT_SHAPE = Shape("remat", 2, REMAT_TIMESTEPS[-1], 16, 16, repeats=3)


def lstm_flops(shape: Shape, directions: int, train: bool = False) -> float:
    """Nominal FLOPs of an LSTM call: 2·B·T·(F+U)·4U a direction forward, 3x for a training step."""
    # Imported here, so that `import bench` imports no jlstm: bench.revisions' workers import
    # an older revision's jlstm, which may predate jlstm.tuning.
    from jlstm import tuning

    sig = tuning.Signature(directions, shape.batch, shape.timesteps, shape.features, shape.units, "float32")
    return tuning.flops(sig) * (3 if train else 1)


def name_list(known: Collection[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of `known`."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected names from {','.join(known)}, got {text!r}")
        return names

    return parse


def add_workload_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options that pick what a bench runs: --quick, --shapes and --directions."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--shapes", type=name_list(SHAPES), help=f"comma-separated subset of {','.join(SHAPES)}")
    parser.add_argument(
        "--directions", type=name_list(DIRECTIONS), default=list(DIRECTIONS), help="uni,bi (default both)"
    )
