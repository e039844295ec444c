"""Automatic differentiation with JAX: ``jax.grad``, eager and ``jax.jit``; ``jax.numpy`` as xp.

Optional: ``pip install -e ".[jax]"``. float64 needs JAX's x64 mode, which this engine
switches on when it loads. Timed calls end with ``block_until_ready`` (JAX dispatches
asynchronously, on a GPU especially).

Vector outputs (a case returning an array of shape S, see ``engines.output_shape``): ``gradient()``
returns the Jacobian, per input of shape I an array of shape S + I: ``eager`` takes ``jax.jacrev``,
``jit`` ``jax.jit(jax.jacrev)``, and the variant ``jacfwd`` (vector outputs only,
``EngineInfo.jacobian_variants``) ``jax.jit(jax.jacfwd)``, forward mode with one tangent per input
element. An input no output depends on gets JAX's zero block. Hessians of vector outputs are not
formed (Skip).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np

from .. import products
from ..products import PRODUCT_VARIANTS
from ..case import Case
from . import EngineInfo, Prepared, Skip, check_output, check_scalar, output_shape, split


def _jax() -> Any:
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _device(jax: Any, device: str) -> Any:
    if device == "CPU":
        return jax.devices("cpu")[0]
    for d in _gpus(jax):
        if f"GPU:{d.device_kind}" == device:
            return d
    raise Skip(f"JAX sees no device {device!r} here")


def _gpus(jax: Any) -> list[Any]:
    try:
        return [d for d in jax.devices() if d.platform == "gpu"]
    except RuntimeError:
        return []


class JaxEngine:
    """``jax.grad`` (reverse mode) of the case written against ``jax.numpy``."""

    name = "jax"
    info = EngineInfo(variants=("eager", "jit", "jacfwd", "jvp", "vjp"), default_variant="eager", order2_variants=("jit",),
                      scaling_variants=("jit",), max_hessian_inputs=400, extra="jax", gpu=True,
                      jacobian_variants=("jacfwd", "jvp", "vjp"))

    def __init__(self) -> None:
        _jax()  # ImportError here reports the engine as not installed

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        jax = _jax()
        return ["CPU", *dict.fromkeys(f"GPU:{d.device_kind}" for d in _gpus(jax))]

    def _setup(self, case: Case, dtype: str, device: str) -> tuple[Any, Any, list[Any], Any]:
        jax = _jax()
        import jax.numpy as jnp

        from ..namespaces import array_api_namespace

        if case.integer_inputs:
            raise Skip(f"jax.grad does not differentiate integer inputs ({', '.join(sorted(case.integer_inputs))})")
        target = _device(jax, device)
        xp = array_api_namespace(jnp, "JAX (jax.numpy)", getattr(jnp, dtype))
        args = [jax.device_put(jnp.asarray(v, dtype=getattr(jnp, dtype)), target) for v in case.inputs.values()]
        func = case.func
        shape = output_shape(case)

        def f(*a: Any) -> Any:
            return jnp.reshape(func(*a, xp=xp), shape)

        if shape:
            check_output(case, func(*args, xp=xp), "JAX namespace")
        else:
            check_scalar(case, func(*args, xp=xp), "JAX namespace")
        return jax, f, args, target

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        if variant in PRODUCT_VARIANTS:  # J·v and uᵀ·J without the matrix: one module for every method
            return products.prepare(self.name, case, variant, dtype, device)
        if variant not in self.variants():
            raise ValueError(f"unknown jax variant {variant!r}; known: {self.variants()}")
        vector = bool(output_shape(case))
        if variant in self.info.jacobian_variants and not vector:
            raise Skip(f"the {variant} variant computes Jacobians of vector outputs; this case returns a scalar "
                       "(its gradient is measured by the other variants)")
        jax, f, args, _ = self._setup(case, dtype, device)
        argnums = tuple(range(len(args)))
        if vector:
            grad = (jax.jacfwd if variant == "jacfwd" else jax.jacrev)(f, argnums=argnums)
        else:
            grad = jax.grad(f, argnums=argnums)
        evaluate = f
        if variant in ("jit", "jacfwd"):
            grad, evaluate = jax.jit(grad), jax.jit(f)
        start = time.perf_counter()
        with _branches_skip(jax, variant):
            first = jax.block_until_ready(grad(*args))
        prepare_s = time.perf_counter() - start
        with _branches_skip(jax, variant):
            jax.block_until_ready(evaluate(*args))

        def gradient() -> dict[str, np.ndarray]:
            return {n: np.asarray(g).reshape(output_shape(case) + case.inputs[n].shape)
                    for n, g in zip(case.inputs, first)}

        return Prepared(gradient=gradient, timed=lambda: jax.block_until_ready(grad(*args)),
                        f_timed=lambda: jax.block_until_ready(evaluate(*args)), prepare_s=prepare_s)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        if output_shape(case):
            raise Skip(f"Hessian of a vector output (shape {output_shape(case)}) is not formed: second-order rows "
                       "are for scalar cases")
        jax, f, args, _ = self._setup(case, dtype, "CPU")
        import jax.numpy as jnp

        shapes = [tuple(a.shape) for a in args]

        def flat_f(v: Any) -> Any:
            return f(*split(v, shapes, jnp.reshape))

        point = jnp.concatenate([jnp.ravel(a) for a in args])
        hess = jax.hessian(flat_f)
        with _branches_skip(jax, variant):
            return np.asarray(jax.jit(hess)(point) if variant == "jit" else hess(point))


def concretization_errors(jax: Any) -> tuple[type, ...]:
    """JAX's errors for a Python branch on a traced value (``TracerBoolConversionError`` is a
    ``ConcretizationTypeError``), those this JAX has."""
    errors = getattr(jax, "errors", None)
    names = ("ConcretizationTypeError", "TracerBoolConversionError", "TracerIntegerConversionError")
    return tuple(t for t in (getattr(errors, n, None) for n in names) if isinstance(t, type))


@contextlib.contextmanager
def _branches_skip(jax: Any, variant: str) -> Iterator[None]:
    """A case that branches on a traced value under ``jit`` is skipped, naming the branch's line."""
    from ..branching import jit_branch_skip

    try:
        yield
    except Exception as exc:  # noqa: BLE001 - anything else is raised again unchanged
        text = jit_branch_skip(exc, concretization_errors(jax), variant)
        if text is None:
            raise
        raise Skip(text) from None


