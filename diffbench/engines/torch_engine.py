"""Automatic differentiation with PyTorch autograd; the array-API torch namespace as xp.

Optional: ``pip install -e ".[torch]"`` (torch and array-api-compat). On a GPU the
timed call ends with ``torch.cuda.synchronize()``. An input the output does not depend
on gets ``None`` from autograd (``allow_unused=True``), reported as status ``none``.

Vector outputs (a case returning an array of shape S, see ``engines.output_shape``): ``gradient()``
returns the Jacobian, per input of shape I an array of shape S + I: ``eager`` takes
``torch.func.jacrev`` (reverse mode, the m backward passes vectorised by ``vmap``), and the variant
``jacfwd`` (vector outputs only, ``EngineInfo.jacobian_variants``) ``torch.func.jacfwd``. Where
``torch.func`` cannot transform the function (an operation without a batching rule, ``.item()``),
``eager`` falls back to ``torch.autograd.functional.jacobian`` (one backward pass per output
component) and says so in its note. Integer inputs are held fixed and raise NoGradient; an input no
output depends on gets torch's zero block (``torch.func`` does not say None). Hessians of vector
outputs are not formed (Skip).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import products
from ..products import PRODUCT_VARIANTS
from ..case import Case
from . import EngineInfo, NoGradient, Prepared, Skip, check_output, check_scalar, output_shape, split


def _torch() -> Any:
    import array_api_compat.torch  # noqa: F401 - the namespace the case is written against
    import torch

    return torch


class TorchEngine:
    """``torch.autograd.grad`` of the case written against the array-API torch namespace."""

    name = "torch"
    info = EngineInfo(variants=("eager", "jacfwd", "jvp", "vjp"), default_variant="eager", order2_variants=("eager",),
                      scaling_variants=("eager",), max_hessian_inputs=400, extra="torch", gpu=True,
                      jacobian_variants=("jacfwd", "jvp", "vjp"))

    def __init__(self) -> None:
        _torch()  # ImportError here reports the engine as not installed

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        torch = _torch()
        if not torch.cuda.is_available():
            return ["CPU"]
        return ["CPU", *dict.fromkeys(f"GPU:{torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))]

    def _setup(self, case: Case, dtype: str, device: str) -> tuple[Any, Any, list[Any], Any]:
        torch = _torch()
        import array_api_compat.torch as xtorch

        from ..namespaces import array_api_namespace

        if device == "CPU":
            target = torch.device("cpu")
        else:
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
                if torch.cuda.is_available() else []
            if device.removeprefix("GPU:") not in names:
                raise Skip(f"PyTorch sees no device {device!r} here")
            target = torch.device("cuda", names.index(device.removeprefix("GPU:")))
        torch_dtype = getattr(torch, dtype)
        xp = array_api_namespace(xtorch, "PyTorch (array_api_compat.torch)", torch_dtype)
        args = []
        for name, value in case.inputs.items():
            if name in case.integer_inputs:
                args.append(torch.tensor(value.astype(np.int64), device=target))
            else:
                args.append(torch.tensor(value, dtype=torch_dtype, device=target, requires_grad=True))
        sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)
        return torch, xp, args, sync

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        if variant in PRODUCT_VARIANTS:  # J·v and uᵀ·J without the matrix: one module for every method
            return products.prepare(self.name, case, variant, dtype, device)
        if variant not in self.variants():
            raise ValueError(f"unknown torch variant {variant!r}; known: {self.variants()}")
        vector = bool(output_shape(case))
        if variant in self.info.jacobian_variants and not vector:
            raise Skip(f"the {variant} variant computes Jacobians of vector outputs; this case returns a scalar "
                       "(its gradient is measured by the other variants)")
        torch, xp, args, sync = self._setup(case, dtype, device)
        if vector:
            return _jacobian(case, variant, torch, xp, args, sync)
        names = list(case.inputs)
        func = case.func
        differentiable = [a for a in args if a.requires_grad]

        def step() -> Any:
            y = func(*args, xp=xp)
            if not differentiable:
                return ()
            return torch.autograd.grad(y.reshape(()), differentiable, allow_unused=True)

        check_scalar(case, func(*args, xp=xp), "PyTorch namespace")
        start = time.perf_counter()
        first = step()
        sync()
        prepare_s = time.perf_counter() - start

        def gradient() -> dict[str, np.ndarray]:
            by_name = dict(zip([n for n, a in zip(names, args) if a.requires_grad], first))
            missing = [n for n in names if by_name.get(n) is None]
            partial = {n: (None if by_name.get(n) is None else by_name[n].detach().cpu().numpy()) for n in names}
            integer = [n for n in missing if n in case.integer_inputs]
            if integer:
                raise NoGradient(f"PyTorch has no gradient for {', '.join(integer)}: integer tensors cannot require "
                                 "gradients; give the input as a float, e.g. 3.0", missing, partial)
            if missing:
                raise NoGradient(f"PyTorch autograd returned None for {', '.join(missing)}: the output does not depend "
                                 "on it", missing, partial)
            return {n: v.reshape(case.inputs[n].shape) for n, v in partial.items()}  # type: ignore[union-attr]

        def timed() -> Any:
            out = step()
            sync()
            return out

        def f_timed() -> Any:
            with torch.no_grad():
                out = func(*args, xp=xp)
            sync()
            return out

        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        if output_shape(case):
            raise Skip(f"Hessian of a vector output (shape {output_shape(case)}) is not formed: second-order rows "
                       "are for scalar cases")
        torch, xp, args, _ = self._setup(case, dtype, "CPU")
        if case.integer_inputs:
            raise Skip("torch Hessians need every input to be a float")
        shapes = [tuple(a.shape) for a in args]

        def flat_f(v: Any) -> Any:
            return case.func(*split(v, shapes), xp=xp).reshape(())

        point = torch.cat([a.detach().reshape(-1) for a in args])
        return torch.autograd.functional.hessian(flat_f, point).detach().cpu().numpy()


def _jacobian(case: Case, variant: str, torch: Any, xp: Any, args: list[Any], sync: Any) -> Prepared:
    """The Jacobian of a vector case: ``torch.func.jacrev`` (``eager``; ``torch.autograd.functional.jacobian``
    where torch.func cannot transform the function) or ``torch.func.jacfwd`` (``jacfwd``)."""
    names = list(case.inputs)
    shape = output_shape(case)
    func = case.func
    floats = [k for k, a in enumerate(args) if a.requires_grad]
    primals = tuple(args[k].detach() for k in floats)

    def of_floats(*values: Any) -> Any:
        full = list(args)
        for k, v in zip(floats, values):
            full[k] = v
        return func(*full, xp=xp)

    check_output(case, func(*args, xp=xp), "PyTorch namespace")
    info: dict[str, Any] = {}

    make = torch.func.jacfwd if variant == "jacfwd" else torch.func.jacrev
    jacobian = make(of_floats, argnums=tuple(range(len(floats))))

    def transformed() -> Any:
        return jacobian(*primals) if floats else ()

    def looped() -> Any:
        found = torch.autograd.functional.jacobian(of_floats, primals)
        return found if isinstance(found, tuple) else (found,)

    compute = transformed
    start = time.perf_counter()
    try:
        first = compute()
    except (RuntimeError, NotImplementedError) as exc:
        if variant != "eager":
            raise
        # torch.func cannot transform an operation of the function: one backward pass per output component
        compute = looped
        first = compute()
        info["note"] = (f"torch.func.jacrev cannot transform the function ({str(exc).splitlines()[0][:200]}); "
                        "torch.autograd.functional.jacobian took one backward pass per output component")
    sync()
    prepare_s = time.perf_counter() - start

    def gradient() -> dict[str, np.ndarray]:
        values = {names[k]: block.detach().cpu().numpy().reshape(shape + case.inputs[names[k]].shape)
                  for k, block in zip(floats, first)}
        integer = [n for n in names if n in case.integer_inputs]
        if integer:
            raise NoGradient(f"PyTorch has no gradient for {', '.join(integer)}: integer tensors cannot require "
                             "gradients; give the input as a float, e.g. 3.0", integer, values)
        return values

    def timed() -> Any:
        out = compute()
        sync()
        return out

    def f_timed() -> Any:
        with torch.no_grad():
            out = func(*args, xp=xp)
        sync()
        return out

    return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info)
