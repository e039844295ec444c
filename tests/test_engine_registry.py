"""Adding an engine is one module plus one registry line: a toy engine, registered that way, is planned,
measured, judged and reported like the built-in ones, from what it declares alone."""

import math
import sys
import textwrap

import pytest

import diffbench
from diffbench import engines, metrics
from diffbench.harness import make_config, plan

TOY = textwrap.dedent('''
    """A toy engine: the complex step, exact up to rounding for real-analytic functions."""
    import numpy as np

    from diffbench.engines import EngineInfo, Prepared, Skip, flatten, unflatten
    from diffbench.engines.finite import function_of


    class ToyEngine:
        name = "toy"
        info = EngineInfo(variants=("cs", "off"), default_variant="cs", order2_variants=("cs",),
                          scaling_variants=("cs",), max_hessian_inputs=1)

        def variants(self):
            return self.info.variants

        def devices(self):
            return ["CPU"]

        def prepare(self, case, variant, dtype, device):
            f = function_of(case, "complex128")
            x = flatten(case.inputs, list(case.inputs))
            h = 1e-30

            def gradient():
                g = np.array([np.imag(f(x + 1j * h * np.eye(x.size)[i])) / h for i in range(x.size)])
                if variant == "off":
                    g = g * (1 + 1e-6)  # a deliberately wrong gradient
                return unflatten(g.astype(dtype), case.inputs)

            return Prepared(gradient=gradient, timed=gradient)

        def hessian(self, case, variant, dtype):
            raise Skip("the toy engine forms no Hessians")
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_engine.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engines.REGISTRY, "toy", "toy_engine:ToyEngine")  # the one registry line
    yield "toy"
    engines._instances.pop("toy", None)
    sys.modules.pop("toy_engine", None)


@diffbench.case(inputs={"x": [0.7, -1.3]})
def product_of_sines(x, xp):
    return xp.sin(x[0]) * xp.cos(x[1])


def test_a_registered_engine_is_declared_not_hard_coded(toy):
    info = engines.engine_info(toy)
    assert metrics.is_exact(toy, "cs") and metrics.is_exact(toy, "off")
    assert metrics.tolerance(toy, "cs", "float64") == pytest.approx(1e3 * 2.0**-52)
    assert toy not in engines.default_methods()  # default=False: a plain run leaves it out
    assert info.default_variant == "cs"
    units = plan(product_of_sines, make_config([toy], ["float64"], None), {toy: ["CPU"]})
    assert (toy, "cs", "float64", "CPU", 2) in units  # its declared second-order variant


def test_a_registered_engine_is_measured_and_judged(toy):
    df = diffbench.run([product_of_sines], methods=[toy], dtypes=["float64"], timing=False)
    by_variant = {(r.variant, r.order): r for r in df.itertuples()}
    # d/dx0 = cos(0.7)cos(-1.3), d/dx1 = -sin(0.7)sin(-1.3): the complex step is exact to rounding
    assert by_variant[("cs", 1)].status == "ok"
    # a relative error of 1e-6 is 4500 eps: beyond an exact method's 1000 eps
    assert by_variant[("off", 1)].status == "inaccurate"
    assert by_variant[("off", 1)].rel_error == pytest.approx(1e-6, rel=1e-3)
    assert by_variant[("cs", 2)].status == "skipped"
    assert "exceed the toy Hessian budget of 1 inputs" in by_variant[("cs", 2)].diagnosis  # its declaration
    truth = [math.cos(0.7) * math.cos(-1.3), -math.sin(0.7) * math.sin(-1.3)]
    got = diffbench.gradient(product_of_sines, method=toy)["x"]
    assert got == pytest.approx(truth, rel=1e-15)


def test_engine_options_are_declared_validated_and_reset():
    pytest.importorskip("jax")
    from scipy.optimize import rosen_der

    @diffbench.case(inputs={"x": [-1.2, 1.0, 0.5]})
    def rosen3(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    assert engines.engine_info("finite").options["evaluation"] == ("numpy", "jax.vmap")
    with pytest.raises(ValueError, match="takes numpy, jax.vmap"):
        diffbench.run([rosen3], methods=["finite"], engine_options={"finite": {"evaluation": "gpu"}})
    with pytest.raises(ValueError, match="no option"):
        diffbench.run([rosen3], methods=["finite"], engine_options={"finite": {"speed": "fast"}})
    batched = diffbench.run([rosen3], methods=["finite"], dtypes=["float64"], variants={"finite": ["central"]},
                            order2=False, timing=False, engine_options={"finite": {"evaluation": "jax.vmap"}})
    row = batched[batched.method == "finite"].iloc[0]
    assert row.evaluation == "jax.vmap" and row.status == "ok"
    # the option does not outlive the run that chose it
    again = diffbench.run([rosen3], methods=["finite"], dtypes=["float64"], variants={"finite": ["central"]},
                          order2=False, timing=False)
    assert again[again.method == "finite"].iloc[0].evaluation == "numpy"
    got = diffbench.gradient(rosen3, "finite/central")["x"]
    assert got == pytest.approx(rosen_der([-1.2, 1.0, 0.5]), rel=1e-7)
