"""A character-level language model, trained briefly, then decoding one character at a time
with `jlstm.lstm_step`.

The model is `Sequential([LSTM(units, return_sequences=True), Dense(vocabulary)])` on one-hot
characters, trained with `jlstm.train.fit` to predict each next character of a short text
(a per-step loss). Decoding runs the LSTM's step function in a `jax.lax.scan`: the state
carries from one character to the next, so each new character costs one step, not a pass
over the whole prefix. The script checks first that stepping through a prompt gives
`model.apply`'s logits.

    python examples/char_lm.py                          # about a minute on 2 busy cores
    python examples/char_lm.py --epochs 60 --temperature 0.5 --prompt "the "
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jlstm
from jlstm import train

TEXT = (
    "a long short-term memory network reads a sequence one step at a time. at each step it "
    "decides what to forget, what to write and what to show, with three gates and a cell "
    "that carries the memory forward. the gates are small dense layers, and the cell is a sum, "
    "so the gradient flows back through many steps without fading away. "
)


def decode(
    params: Any, prompt: jax.Array, steps: int, temperature: float, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`steps` characters after the one-hot `prompt` (T, V), each drawn from the model's next
    character distribution at `temperature` (0: the likeliest); also the prompt's logits."""
    lstm, dense = params
    vocabulary = dense["kernel"].shape[1]
    units = lstm["recurrent_kernel"].shape[0]

    def step(state, x_t):  # one character through the LSTM and the Dense layer, batch of 1
        state, h = jlstm.lstm_step(lstm, state, x_t[None])
        return state, (h @ dense["kernel"] + dense["bias"])[0]

    zeros = jnp.zeros((1, units))
    state, prompt_logits = jax.lax.scan(step, (zeros, zeros), prompt)

    def generate(carry, key):
        state, logits = carry
        if temperature > 0:
            char = jax.random.categorical(key, logits / temperature)
        else:
            char = jnp.argmax(logits)
        state, logits = step(state, jax.nn.one_hot(char, vocabulary))
        return (state, logits), char

    _, chars = jax.lax.scan(generate, (state, prompt_logits[-1]), jax.random.split(rng, steps))
    return chars, prompt_logits


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Trains the model on `TEXT` and prints a continuation of the prompt.

    Args:
        argv: the command line's arguments; None for `sys.argv[1:]`.

    Returns:
        "loss" by epoch, the "generated" text, and "step_error": the largest difference
        between the stepped and `model.apply`'s logits over the prompt.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--length", type=int, default=32, help="characters per training sequence")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--prompt", default="the gates ")
    parser.add_argument("--generate", type=int, default=120, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 takes the likeliest character")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chars = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(chars)}
    if unknown := sorted(set(args.prompt) - set(chars)):
        parser.error(f"expected --prompt of the text's characters, got {unknown}")
    codes = np.array([index[c] for c in TEXT], np.int32)
    starts = np.arange(len(codes) - args.length - 1)
    seqs = codes[starts[:, None] + np.arange(args.length + 1)]
    x, y = np.eye(len(chars), dtype=np.float32)[seqs[:, :-1]], seqs[:, 1:]  # y: the next characters

    model = jlstm.Sequential([jlstm.LSTM(args.units, return_sequences=True), jlstm.Dense(len(chars))])
    _, params = model.init(jax.random.key(args.seed), (None, args.length, len(chars)))
    params, history = train.fit(
        model,
        params,
        optax.adam(1e-2),
        (x, y),
        loss=train.sparse_categorical_crossentropy,  # per step, averaged over the steps
        epochs=args.epochs,
        batch_size=32,
        rng=jax.random.key(args.seed + 1),
    )
    prompt = jax.nn.one_hot(jnp.array([index[c] for c in args.prompt]), len(chars))
    generated, prompt_logits = jax.jit(decode, static_argnums=(2, 3))(
        params, prompt, args.generate, args.temperature, jax.random.key(args.seed + 2)
    )
    error = float(jnp.abs(prompt_logits - model.apply(params, prompt[None])[0]).max())
    text = "".join(chars[i] for i in np.asarray(generated))
    print(f"loss (nats per character) by epoch: {history['loss'][0]:.3f} ... {history['loss'][-1]:.3f}")
    print(f"lstm_step over the prompt against model.apply: largest logit difference {error:.1e}")
    print(f"{args.prompt!r} -> {text!r}")
    return {"loss": history["loss"], "generated": text, "step_error": error}


if __name__ == "__main__":
    main()
