"""The optional JAX and PyTorch engines (skipped where they are not installed)."""

import numpy as np
import pytest
from scipy.optimize import rosen_der, rosen_hess

from diffbench import gradient, hessian
from diffbench.harness import measure_one

X = np.array([-1.2, 1.0, 0.5, 2.0])


@pytest.mark.parametrize("engine,variants", [("jax", ["eager", "jit"]), ("torch", ["eager"])])
def test_rosenbrock_against_scipy(library, engine, variants):
    pytest.importorskip("jax" if engine == "jax" else "torch")
    if engine == "torch":
        pytest.importorskip("array_api_compat")
    for variant in variants:
        np.testing.assert_allclose(gradient(library["rosenbrock"], f"{engine}/{variant}")["x"], rosen_der(X),
                                   rtol=1e-13)
        got32 = gradient(library["rosenbrock"], f"{engine}/{variant}", "float32")["x"]
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, rosen_der(X), rtol=1e-5)
    np.testing.assert_allclose(hessian(library["rosenbrock"], engine), rosen_hess(X), rtol=1e-13)


def test_torch_none_and_integer(library):
    pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    assert measure_one(library["unused_input"], "torch", "eager", "float64")["status"] == "none"
    row = measure_one(library["integer_input"], "torch", "eager", "float64")
    assert row["status"] == "none" and "integer" in row["diagnosis"]


def test_missing_engine_is_skipped_with_the_install_hint(monkeypatch, library):
    import builtins

    from diffbench import engines

    real_import = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("No module named 'jax'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jax)
    monkeypatch.setattr(engines, "_instances", {})
    row = measure_one(library["quadratic"], "jax", "jit", "float64")
    assert row["status"] == "skipped"
    assert 'pip install -e ".[jax]"' in row["diagnosis"]


def test_an_engine_that_is_not_installed_gives_skipped_rows_not_a_crash():
    import importlib.util

    if importlib.util.find_spec("jax") is not None:
        pytest.skip("jax is installed here")
    from diffbench import run
    from diffbench.case import make_case
    from diffbench.engines import engine_info

    df = run([make_case(lambda x, xp: x**2, {"x": 3.0}, name="square")], methods=["jax"], dtypes=["float64"],
             order2=False, timing=False)
    # one row per declared variant that applies to a scalar case, each saying what to install (the Jacobian-only
    # variants may be planned or left out for a scalar case; none other)
    info = engine_info("jax")
    assert set(df.variant) >= set(info.variants) - set(info.jacobian_variants)
    assert set(df.variant) <= set(info.variants) and len(df) == len(set(df.variant))
    assert set(df.status) == {"skipped"}
    assert df.diagnosis.str.contains("not installed").all()
