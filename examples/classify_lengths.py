"""Sequence classification with variable lengths: `lengths` (or a mask) tell the LSTM where
each sequence ends, so whatever fills the padding changes nothing.

Each example is a sequence of 2 to `--timesteps` steps of `--features` random values, padded
to `--timesteps` with garbage (what a reused buffer would hold); its class is the feature
with the largest sum over the real steps. A Bidirectional(LSTM) -> Dense model trains on
`(x, y, mask)` with `jlstm.train.fit`, is tested with `apply(..., lengths=...)`, and gives
the same outputs when the garbage is replaced by other garbage.

    python examples/classify_lengths.py                       # about 30 s on 2 busy cores
    python examples/classify_lengths.py --samples 2000 --epochs 20
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax

import jlstm
from jlstm import train


def make_data(rng: np.random.Generator, samples: int, timesteps: int, features: int) -> tuple[np.ndarray, ...]:
    """(x, y, lengths): sequences padded with garbage, their classes and their lengths."""
    lengths = rng.integers(2, timesteps + 1, size=samples)
    real = np.arange(timesteps)[None, :] < lengths[:, None]
    values = rng.normal(size=(samples, timesteps, features))
    y = np.where(real[..., None], values, 0.0).sum(axis=1).argmax(axis=1)
    garbage = rng.normal(scale=10.0, size=values.shape)
    x = np.where(real[..., None], values, garbage).astype(np.float32)
    return x, y.astype(np.int32), lengths.astype(np.int32)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Trains the classifier and reports its test accuracy.

    Args:
        argv: the command line's arguments; None for `sys.argv[1:]`.

    Returns:
        "accuracy" on the test split, and "padding_ignored": whether new garbage in the
        padding left every output as it was.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1200, help="examples, a quarter of them for the test")
    parser.add_argument("--timesteps", type=int, default=12)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x, y, lengths = make_data(rng, args.samples, args.timesteps, args.features)
    mask = np.arange(args.timesteps)[None, :] < lengths[:, None]  # the same thing as lengths
    n = args.samples * 3 // 4

    model = jlstm.Sequential([jlstm.Bidirectional(jlstm.LSTM(args.units)), jlstm.Dense(args.features)])
    _, params = model.init(jax.random.key(args.seed), (None, args.timesteps, args.features))
    params, history = train.fit(
        model,
        params,
        optax.adam(3e-3),
        (x[:n], y[:n], mask[:n]),  # the mask reaches the layers
        loss=train.sparse_categorical_crossentropy,
        metrics={"accuracy": train.accuracy},
        epochs=args.epochs,
        batch_size=args.batch_size,
        rng=jax.random.key(args.seed + 1),
    )
    apply = jax.jit(model.apply)
    logits = apply(params, x[n:], lengths=lengths[n:])
    accuracy = float((np.asarray(logits).argmax(-1) == y[n:]).mean())
    # Other garbage in the padding: the outputs do not move.
    other = np.where(mask[n:, :, None], x[n:], rng.normal(scale=100.0, size=x[n:].shape)).astype(np.float32)
    ignored = bool(np.array_equal(np.asarray(apply(params, other, lengths=lengths[n:])), np.asarray(logits)))
    print(f"training accuracy by epoch: {', '.join(f'{a:.3f}' for a in history['accuracy'])}")
    print(f"test accuracy {accuracy:.3f} on {args.samples - n} sequences of 2-{args.timesteps} steps")
    print(f"other garbage in the padding, same outputs: {ignored}")
    return {"accuracy": accuracy, "padding_ignored": ignored}


if __name__ == "__main__":
    main()
