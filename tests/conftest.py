import os
import tempfile

# Keras 3 runs on JAX here (no TensorFlow); set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "jax")
# The scan's forms are tuned per shape at first use (about a second each): the suite's many
# small shapes take the static rule instead, and tests/test_tuning.py turns tuning on where
# it tests it. Nothing is written to the user's cache directory.
os.environ["JLSTM_TUNE"] = "0"
os.environ["JLSTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="jlstm-test-cache-")
# The tests' programs are tiny: XLA takes far longer to optimize them than to run them, so the
# suite (and the subprocesses it starts, through the environment) asks it for little
# optimization, which takes about a third off the suite. The programs compute the same
# values; bench/ times the optimized builds users get.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# Strict promotion for jlstm's own code: every test here runs with JAX's
# jax_numpy_rank_promotion="raise" and jax_numpy_dtype_promotion="strict", so that jlstm never
# leans on implicit broadcasting across ranks ((B, N) + (N,)) or implicit dtype promotion
# (float32 * bool). The libraries the tests compare with or train through (Keras, Flax, stax,
# jax.experimental.rnn's reference LSTM) are not written for that: their calls run inside
# helpers.reference(), which restores JAX's defaults for that block (jlstm's train step does the
# same around optax's update itself, and to_keras around Keras's layer building, as users with
# strict promotion need it too). The reverse, defaults with jlstm's calls wrapped, would wrap
# far more calls. The setting is global
# (threads, such as the tuner's compile pool, see it) but made per test and undone after, so
# that the docstring examples under jlstm/ (some call Keras or Flax) run as a user runs them,
# with JAX's defaults.
STRICT_PROMOTION = {"jax_numpy_rank_promotion": "raise", "jax_numpy_dtype_promotion": "strict"}


@pytest.fixture(autouse=True)
def strict_promotion():
    before = {name: jax.config.values[name] for name in STRICT_PROMOTION}
    for name, value in STRICT_PROMOTION.items():
        jax.config.update(name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


@pytest.fixture
def rng():
    return jax.random.key(0)
