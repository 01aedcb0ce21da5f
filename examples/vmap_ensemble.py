"""An ensemble of LSTMs with `jax.vmap`: `init` and `apply` vmapped over the members' keys and
params, trained in one jitted, vmapped step; the ensemble's mean beside each member.

`jax.vmap` over `init` batches everything it returns, the output shape's ints too (they come
back as arrays of the ensemble's size): vmap a function that keeps the params only, and take
the output shape from the unbatched layer (`jlstm.count_params(model, shape)` and
`jlstm.summary` work abstractly, allocating nothing). The params' leaves lead with the
ensemble's axis: `jlstm.count_params(params, batch_dims=1)` counts one member.

The task: predict the mean of a sequence's last three steps, from noisy sequences.

    python examples/vmap_ensemble.py                 # about 40 s on 2 busy cores
    python examples/vmap_ensemble.py --members 16 --steps 500
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Trains the ensemble and reports each member's and the ensemble's test error.

    Args:
        argv: the command line's arguments; None for `sys.argv[1:]`.

    Returns:
        "per_member" and "total" param counts, each member's test MSE ("member_mse") and
        the ensemble mean's ("ensemble_mse").
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200, help="training steps (full batch)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(2 * args.samples, args.timesteps, 1)).astype(np.float32)
    y = x[:, -3:, 0].mean(axis=1, keepdims=True) + rng.normal(scale=0.1, size=(2 * args.samples, 1)).astype(np.float32)
    (x_train, x_test), (y_train, y_test) = np.split(x, 2), np.split(y, 2)

    model = jlstm.Sequential([jlstm.LSTM(args.units), jlstm.Dense(1)])
    shape = (None, args.timesteps, 1)
    keys = jax.random.split(jax.random.key(args.seed), args.members)
    params = jax.vmap(lambda key: model.init(key, shape)[1])(keys)  # params only: (members, ...) leaves
    per_member, total = jlstm.count_params(params, batch_dims=1), jlstm.count_params(params)
    assert per_member == jlstm.count_params(model, shape) and total == args.members * per_member
    print(f"{args.members} members of {per_member} params each ({total} in all)")

    optimizer = optax.adam(1e-2)

    def loss(p, x, y):
        return jnp.mean(jnp.square(model.apply(p, x) - y))

    def step(p, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(p, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, value

    # Every member sees the same data; they differ by their initial params.
    train_step = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)))
    opt_state = jax.vmap(optimizer.init)(params)
    for _ in range(args.steps):
        params, opt_state, losses = train_step(params, opt_state, x_train, y_train)
    outputs = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(params, x_test)  # (members, samples, 1)
    member_mse = np.asarray(jnp.mean(jnp.square(outputs - y_test), axis=(1, 2)))
    ensemble_mse = float(jnp.mean(jnp.square(outputs.mean(axis=0) - y_test)))
    print(f"final training loss per member: {', '.join(f'{v:.4f}' for v in np.asarray(losses))}")
    print(f"test MSE per member: {', '.join(f'{v:.4f}' for v in member_mse)}")
    print(f"test MSE of the ensemble's mean: {ensemble_mse:.4f} (the noise alone: 0.0100)")
    return {"per_member": per_member, "total": total, "member_mse": member_mse, "ensemble_mse": ensemble_mse}


if __name__ == "__main__":
    main()
