import os
import tempfile

# Keras 3 runs on JAX here (no TensorFlow); set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "jax")
# The scan's forms are tuned per shape at first use (about a second each): the suite's many
# small shapes take the static rule instead, and tests/test_tuning.py turns tuning on where
# it tests it. Nothing is written to the user's cache directory.
os.environ["JLSTM_TUNE"] = "0"
os.environ["JLSTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="jlstm-test-cache-")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng():
    return jax.random.key(0)
