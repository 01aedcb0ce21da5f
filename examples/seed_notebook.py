"""The seed notebook in jlstm: its four Keras models, their summaries and a prediction.

The seed notebook is the Keras 2 notebook "LSTM in Keras" that jlstm started from: an LSTM and
a Bidirectional(LSTM), many-to-one (`return_sequences=False`) and many-to-many (`True`), on
inputs of 11 timesteps of 3 features with 5 units, each shown by `Model(x, a).summary()`
(180 and 360 params). jlstm prints the same four tables, line for line, and then runs each
model on a batch of random inputs.

    python examples/seed_notebook.py                  # the notebook's tables (Keras 2's)
    python examples/seed_notebook.py --style keras3   # as Keras 3 prints them
    python examples/seed_notebook.py --timesteps 20 --units 8
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax

import jlstm


def models(units: int) -> list[tuple[str, jlstm.Layer]]:
    """The notebook's four models, in its order, with its headings."""
    return [
        ("Many-to-one, standard LSTM", jlstm.LSTM(units)),
        ("Many-to-one, Bidirectional LSTM", jlstm.Bidirectional(jlstm.LSTM(units))),
        ("Many-to-many, standard LSTM", jlstm.LSTM(units, return_sequences=True)),
        ("Many-to-many, Bidirectional LSTM", jlstm.Bidirectional(jlstm.LSTM(units, return_sequences=True))),
    ]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Prints the four summaries, then each model's output on a random batch.

    Args:
        argv: the command line's arguments; None for `sys.argv[1:]`.

    Returns:
        Each model's param count and output shape, by heading.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timesteps", type=int, default=11)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--units", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2, help="rows of the random batch to predict")
    parser.add_argument("--style", choices=("keras2", "keras3"), default="keras2")
    args = parser.parse_args(argv)
    shape = (None, args.timesteps, args.features)
    namer = jlstm.Namer(args.style)  # one session: lstm_3 follows the Bidirectional's lstm_2, as in the notebook
    built = []
    for i, (heading, model) in enumerate(models(args.units)):
        print(("\n" if i else "") + heading)
        print(jlstm.summary(model, shape, namer=namer, style=args.style))
        built.append((heading, model, model.init(jax.random.key(i), shape)[1]))
    x = jax.random.normal(jax.random.key(42), (args.batch, args.timesteps, args.features))
    print(f"\nPredictions on a random batch of {args.batch}:")
    results = {}
    for heading, model, params in built:
        y = model.apply(params, x)
        start = ", ".join(f"{v:.4f}" for v in y.reshape(args.batch, -1)[0, :3].tolist())
        print(f"{heading}: output {y.shape}, first row starts {start}")
        results[heading] = {"params": jlstm.count_params(params), "output_shape": y.shape}
    return results


if __name__ == "__main__":
    main()
