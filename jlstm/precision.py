"""Dtype policies: which dtype a layer keeps its params in and which it computes in.

A layer's `dtype=` takes Keras 3's policy names or a float dtype, as `keras.DTypePolicy`
reads them: "float32", "bfloat16", "float16" (params and compute in that dtype), or
"mixed_bfloat16" and "mixed_float16" (float32 params, low-precision compute). `param_dtype=`
spells the params' dtype Flax's way: with both given, `dtype` is the compute dtype and
`param_dtype` the params', so `dtype="bfloat16", param_dtype="float32"` is
"mixed_bfloat16". A mixed name with a `param_dtype` other than float32 contradicts itself
(a ValueError).

Without either, a layer makes float32 params and computes in the dtype of the params it is
called with (as before there were policies). With one, `init` makes params of the policy's
variable dtype, `apply` expects them in it (a TypeError names what came), casts the inputs,
states and params to the compute dtype and returns outputs and states in it; gradients
come in the params' dtype (float32 under a mixed policy).

>>> import jlstm
>>> jlstm.dtype_policy("mixed_bfloat16")
DTypePolicy(name='mixed_bfloat16', variable_dtype=dtype('float32'), compute_dtype=dtype(bfloat16))
>>> jlstm.dtype_policy("bfloat16", param_dtype="float32").name
'mixed_bfloat16'
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

POLICY_NAMES = ("float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16")
"""Keras 3's policy names that `dtype=` takes (as does any other float dtype, such as float64)."""
_MIXED = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
_ACCEPTED = f"one of {list(POLICY_NAMES)} or a float dtype (jnp.bfloat16, 'float64', ...)"


class DTypePolicy(NamedTuple):
    """A layer's dtype policy, as Keras 3's `DTypePolicy` names it.

    Attributes:
        name: Keras's name for it ("float32", "mixed_bfloat16", ...), or
            "params P, compute C" for a pair Keras has no name for.
        variable_dtype: the params' dtype: what `init` makes and `apply` expects.
        compute_dtype: the dtype the call computes and returns in; None for a layer given
            neither `dtype` nor `param_dtype`, which computes in its params' dtype.
    """

    name: str
    variable_dtype: np.dtype
    compute_dtype: np.dtype | None


def _float_dtype(value: Any, what: str) -> np.dtype:
    """A real floating dtype from a dtype, a scalar type (jnp.bfloat16) or its name."""
    if not isinstance(value, (str, np.dtype, type)):  # NumPy reads more (bytes, lists) than a dtype
        raise TypeError(f"{what}: expected {_ACCEPTED}, got {value!r}")
    try:
        dtype = jnp.dtype(value)
    except (TypeError, ValueError):
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"{what}: expected {_ACCEPTED}, got {value!r}") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{what}: expected {_ACCEPTED}, got the non-float dtype {dtype}")
    return dtype


def _named(variable: np.dtype, compute: np.dtype) -> DTypePolicy:
    if variable == compute:
        return DTypePolicy(variable.name, variable, compute)
    mixed = [name for name, low in _MIXED.items() if variable == jnp.float32 and compute.name == low]
    name = mixed[0] if mixed else f"params {variable.name}, compute {compute.name}"
    return DTypePolicy(name, variable, compute)


def dtype_policy(dtype: Any = None, param_dtype: Any = None, what: str = "dtype_policy") -> DTypePolicy:
    """The policy a layer's `dtype=` and `param_dtype=` arguments name.

    Args:
        dtype: a Keras policy name (`POLICY_NAMES`), a float dtype (params and compute in
            it; the compute dtype alone when `param_dtype` is given), or None.
        param_dtype: the params' dtype, Flax's spelling, or None: a mixed `dtype`'s float32,
            else `dtype` itself.
        what: the argument's owner in the errors ("LSTM dtype").

    Returns:
        The `DTypePolicy`; with neither argument, float32 params and a `compute_dtype` of
        None (the call computes in its params' dtype).
    """
    params = None if param_dtype is None else _param_dtype(param_dtype, what)
    if dtype is None:
        if params is None:
            return DTypePolicy("float32", jnp.dtype(jnp.float32), None)
        return _named(params, params)
    if isinstance(dtype, str) and dtype in _MIXED:
        if params is not None and params != jnp.float32:
            raise ValueError(
                f"{what}: dtype={dtype!r} keeps float32 params, but param_dtype={params.name!r} asks for "
                f"{params.name} ones (use dtype={_MIXED[dtype]!r}, param_dtype={params.name!r} for that)"
            )
        return _named(jnp.dtype(jnp.float32), jnp.dtype(_MIXED[dtype]))
    compute = _float_dtype(dtype, f"{what} dtype")
    return _named(compute if params is None else params, compute)


def _param_dtype(value: Any, what: str) -> np.dtype:
    if isinstance(value, str) and value in _MIXED:
        raise ValueError(
            f"{what} param_dtype: expected a float dtype, got the policy name {value!r} (pass it as dtype=)"
        )
    return _float_dtype(value, f"{what} param_dtype")


def compute_dtype(policy: DTypePolicy, params_dtype: Any, what: str) -> np.dtype:
    """The dtype a call computes in, given the dtype of the params it came with: the
    policy's, once the params are checked to be of its variable dtype; the params' own
    for a layer without a policy."""
    params_dtype = jnp.dtype(params_dtype)
    if policy.compute_dtype is None:
        return params_dtype
    if params_dtype != policy.variable_dtype:
        raise TypeError(
            f"{what}: expected params of {policy.variable_dtype} (the dtype policy {describe(policy)}), "
            f"got {params_dtype}"
        )
    return policy.compute_dtype


def describe(policy: DTypePolicy) -> str:
    """The policy as errors name it: its name, quoted, or what a layer without one does."""
    if policy.compute_dtype is None:
        return "no policy (dtype=None: computing in the params' dtype)"
    return repr(policy.name)


def draw_dtype(policy: DTypePolicy) -> np.dtype:
    """The dtype `init` draws params in before casting them to the variable dtype: float32
    for a 16-bit one (JAX's orthogonal initializer, a QR, has no 16-bit kernels), else it."""
    variable = policy.variable_dtype
    return jnp.dtype(jnp.float32) if variable.itemsize < 4 else variable
