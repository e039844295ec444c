"""The Jacobian scaling study (``diffbench scale --jacobian``): slopes fitted from synthetic timings, the study's
plumbing with a toy engine whose Jacobian is checked against a hand-derived one, the size limit, the CLI."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import diffbench
from diffbench import engines, scale
from diffbench.cli import main
from diffbench.report import md

TOY = textwrap.dedent('''
    """A toy engine: the Jacobian by the complex step, one column per input, every output at once."""
    import numpy as np

    from diffbench.engines import EngineInfo, Prepared, Skip, flatten
    from diffbench.namespaces import numpy_namespace


    class ToyEngine:
        name = "toy"
        info = EngineInfo(variants=("cs",), default_variant="cs", scaling_variants=("cs",))

        def variants(self):
            return self.info.variants

        def devices(self):
            return ["CPU"]

        def prepare(self, case, variant, dtype, device):
            (name, x), = case.inputs.items()
            xp = numpy_namespace("float64")
            h = 1e-30

            def jacobian():
                columns = [np.imag(case.func(x + 1j * h * np.eye(x.size)[i], xp=np)) / h for i in range(x.size)]
                return {name: np.stack(columns, axis=-1).astype(dtype)}

            return Prepared(gradient=jacobian, timed=jacobian, prepare_s=0.0)

        def hessian(self, case, variant, dtype):
            raise Skip("no Hessians")
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_jacobian_engine.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engines.REGISTRY, "toy", "toy_jacobian_engine:ToyEngine")
    yield "toy"
    engines._instances.pop("toy", None)
    sys.modules.pop("toy_jacobian_engine", None)


def _sine_inputs(n):
    return {"x": diffbench.uniform(n, -2.0, 2.0, seed=n)}


@diffbench.case(inputs=_sine_inputs(3), sizes=_sine_inputs)
def sine_map(x, xp):
    """sin(x) elementwise: J = diag(cos x)."""
    return xp.sin(x)


@diffbench.case(inputs=_sine_inputs(3), sizes=_sine_inputs)
def sine_sum(x, xp):
    return xp.sum(xp.sin(x))


def _synthetic(case, method, variant, exponent, sizes=(10, 100, 1000, 10_000), floor=None):
    """Rows whose time is exactly 1e-4·(n/10)^exponent (and ``floor`` seconds where that is smaller: overhead)."""
    rows = []
    for n in sizes:
        seconds = 1e-4 * (n / 10) ** exponent
        rows.append(dict(case=case, n=n, method=method, variant=variant, dtype="float64", device="CPU", status="ok",
                         time_median_s=max(seconds, floor or 0.0), outputs=n, n_inputs=n))
    return rows


def test_slopes_per_case_from_synthetic_power_laws():
    df = pd.DataFrame(_synthetic("diagonal", "tape", "function", 2.0) + _synthetic("diagonal", "finite", "central", 1.0)
                      + _synthetic("wide", "tape", "function", 1.0)
                      # overhead of 0.05 s until n·... leaves the floor: times 0.05, 0.05, 0.1, 1.0 -> fitted from 1000
                      + _synthetic("wide", "tape", "forward", 2.0, floor=0.05))
    table = scale.jacobian_slopes(df).set_index(["case", "method", "variant"])
    assert table.loc[("diagonal", "tape", "function"), "slope"] == pytest.approx(2.0)
    assert table.loc[("diagonal", "finite", "central"), "slope"] == pytest.approx(1.0)
    assert table.loc[("wide", "tape", "function"), "slope"] == pytest.approx(1.0)
    forward = table.loc[("wide", "tape", "forward")]
    assert forward["slope"] == pytest.approx(2.0)        # 1e-4·100² = 1 s at n = 1000 and 100 s at 10⁴
    assert forward["floor"] == "10, 100"                  # 0.05 s of overhead: not growth
    # the same variant in two cases gets two slopes, not one fit over both
    assert len(table) == 4


def test_a_slow_small_size_between_floor_sizes_is_left_out_of_the_fit():
    # a loaded machine: 1 ms of overhead at n = 10 and 100, but 5 ms at n = 30 (a stall); growth n² from
    # n = 100: 1e-3·(n/100)² = 9 ms at 300 and 0.1 s at 1000. Only the run 300, 1000 is past 3 × 1 ms
    # throughout, and log(0.1 / 0.009) / log(1000 / 300) = 2 exactly.
    times = {10: 1e-3, 30: 5e-3, 100: 1e-3, 300: 9e-3, 1000: 0.1}
    df = pd.DataFrame([dict(case="diagonal", n=n, method="tape", variant="function", dtype="float64", device="CPU",
                            status="ok", time_median_s=t, outputs=n, n_inputs=n) for n, t in times.items()])
    row = scale.jacobian_slopes(df).iloc[0]
    assert row["slope"] == pytest.approx(2.0)
    assert row["sizes"] == "300, 1000" and row["floor"] == "10, 30, 100"


def test_study_with_a_toy_engine_measures_the_hand_jacobian(toy, monkeypatch):
    # the cross-check is the hand-derived Jacobian diag(cos x), flattened as the study flattens a result
    monkeypatch.setattr(scale, "_cross_check", lambda sized: np.diag(np.cos(sized.inputs["x"])).ravel())
    df = scale.jacobian_study([sine_map], [4, 16, 64], ["toy"], budget_s=60, max_entries=64 * 64)
    assert list(df.columns) == scale.JACOBIAN_SCALE_COLUMNS
    assert list(df["n"]) == [4, 16, 64] and set(df["status"]) == {"ok"}
    assert list(df["outputs"]) == [4, 16, 64] and list(df["n_inputs"]) == [4, 16, 64]
    assert (df["rel_error"] < 1e-14).all()               # the complex step is exact to rounding
    assert (df["time_median_s"] > 0).all()


def test_study_skips_sizes_over_the_entry_limit(toy, monkeypatch):
    monkeypatch.setattr(scale, "_cross_check", lambda sized: None)
    df = scale.jacobian_study([sine_map], [4, 16, 64], ["toy"], budget_s=60, max_entries=16 * 16)
    by_n = df.set_index("n")
    assert list(by_n["status"]) == ["ok", "ok", "skipped"]
    assert (by_n.loc[64, "outputs"], by_n.loc[64, "n_inputs"]) == (64, 64)
    assert pd.isna(by_n.loc[64, "time_median_s"])


def test_study_refuses_a_scalar_case():
    with pytest.raises(ValueError):
        scale.jacobian_study([sine_sum], [4], ["toy"])


def test_report_shows_shapes_slopes_and_skips():
    df = pd.DataFrame(_synthetic("diagonal", "tape", "function", 2.0, sizes=(10, 100, 1000)))
    df = pd.concat([df, pd.DataFrame([dict(case="diagonal", n=10_000, method="tape", variant="function",
                                           dtype="float64", device="CPU", status="skipped", diagnosis="too big",
                                           outputs=10_000, n_inputs=10_000)])], ignore_index=True)
    text = scale.render_jacobians(df, scale.jacobian_slopes(df), [])
    assert "## diagonal" in text and "10000 × 10000" in text
    assert re.search(r"\|\s*1000 \|\s*1000 × 1000\s*\|\s*1 s\s*\|", text)      # 1e-4·(1000/10)² s
    assert re.search(r"\|\s*2\.00 \| 100, 1000\s*\|", text)   # the slope, fitted past the smallest size's floor
    assert "tape/function from n = 10000: `skipped`" in text


def test_default_jacobian_cases_exist_with_sizes_and_vector_outputs():
    from diffbench.case import load_cases
    from diffbench.engines import output_size
    from diffbench.selection import cases_path

    library = {c.name: c for c in load_cases(cases_path(None))}
    for name in scale.JACOBIAN_CASES:
        one = library[name]
        assert one.sizes is not None
        small = one.at_size(10)
        assert output_size(small) > 1
    # the shapes the report's text promises: a diagonal map m = N = n, a 4-unit layer with N = 5n + 4
    assert (output_size(library["elementwise_large"].at_size(10)), library["elementwise_large"].at_size(10).size) \
        == (10, 10)
    assert (output_size(library["dense_tanh"].at_size(10)), library["dense_tanh"].at_size(10).size) == (4, 54)


def test_cli_refuses_a_scalar_case_and_a_missing_case(capsys):
    assert main(["scale", "rosenbrock", "--jacobian", "--sizes", "10"]) == 1
    assert "gradient, not a Jacobian" in capsys.readouterr().err
    assert main(["scale"]) == 1


@pytest.mark.slow
def test_cli_writes_the_jacobian_study(tmp_path):
    out = tmp_path / "jac"
    assert main(["scale", "--jacobian", "--sizes", "3,6", "--methods", "finite", "--budget", "60",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out / "scale.csv")
    assert list(df.columns) == scale.JACOBIAN_SCALE_COLUMNS
    shapes = {(r.case, r.n): (r.outputs, r.n_inputs) for r in df.itertuples()}
    # elementwise: m = N = n; dense layer of 4 units: m = 4, N = 4n (W) + 4 (b) + n (x)
    assert shapes == {("elementwise_large", 3): (3, 3), ("elementwise_large", 6): (6, 6),
                      ("dense_tanh", 3): (4, 19), ("dense_tanh", 6): (4, 34)}
    assert set(df["variant"]) == {"central"}
    text = (out / "report.md").read_text()
    assert f"## {md('elementwise_large')}" in text and f"## {md('dense_tanh')}" in text and "4 × 34" in text


def _hand_jacobian(sized):
    """The hand-derived Jacobian of the two default cases at one size, flattened as the study flattens a result
    (per input in parameter order, each block raveled output-major: ``engines.flatten`` of {input: (m, *shape)}).

    elementwise_large, out = x·tanh(x): ∂outₖ/∂xᵢ = δₖᵢ (tanh xᵢ + xᵢ(1 − tanh² xᵢ)).
    dense_tanh, y = tanh(Wx + b), dₖ = 1 − yₖ²: ∂yₖ/∂W[j, l] = δₖⱼ dₖ x[l], ∂yₖ/∂b[j] = δₖⱼ dₖ,
    ∂yₖ/∂x[l] = dₖ W[k, l]."""
    x = sized.inputs["x"]
    if sized.name == "elementwise_large":
        t = np.tanh(x)
        return np.diag(t + x * (1 - t**2)).ravel()
    W, b = sized.inputs["W"], sized.inputs["b"]
    d = 1 - np.tanh(W @ x + b) ** 2
    eye = np.eye(len(b))
    return np.concatenate([(eye[:, :, None] * d[:, None, None] * x[None, None, :]).ravel(),
                           (eye * d[:, None]).ravel(), (d[:, None] * W).ravel()])


@pytest.mark.slow
def test_study_with_the_real_engines_at_tiny_sizes(monkeypatch):
    from diffbench.case import load_cases
    from diffbench.selection import cases_path

    # every method's Jacobian is compared with the hand-derived one, not with another engine's
    monkeypatch.setattr(scale, "_cross_check", _hand_jacobian)
    # run's cap on forward mode (one tangent per input at once) does not bind a Jacobian study, which bounds its
    # sizes itself: with the cap at 6 inputs, forward mode still forms the Jacobians of 8, 24 and 44 inputs
    from diffbench.engines import tape

    monkeypatch.setattr(tape, "MAX_FORWARD_INPUTS", 6)
    library = load_cases(cases_path(None))
    cases = [scale.sized_case(library, name) for name in scale.JACOBIAN_CASES]
    df = scale.jacobian_study(cases, [4, 8], ["tape", "finite", "symbolic"], budget_s=600)
    assert list(df.columns) == scale.JACOBIAN_SCALE_COLUMNS
    # one row per case, size and variant the study names (tape eager/function/forward, central, SymPy, SymEngine)
    labels = [("tape", "eager"), ("tape", "function"), ("tape", "forward"), ("finite", "central"),
              ("symbolic", "numpy"), ("symbolic", "symengine")]
    assert len(df) == 2 * 2 * len(labels)
    for (name, n), part in df.groupby(["case", "n"]):
        assert sorted(zip(part["method"], part["variant"])) == sorted(labels), (name, n)
    # shapes m × N: the elementwise map n × n; the 4-unit layer 4 × (4n + 4 + n)
    shapes = {(r.case, r.n): (r.outputs, r.n_inputs) for r in df.drop_duplicates(["case", "n"]).itertuples()}
    assert shapes == {("elementwise_large", 4): (4, 4), ("elementwise_large", 8): (8, 8),
                      ("dense_tanh", 4): (4, 24), ("dense_tanh", 8): (4, 44)}
    assert set(df["status"]) == {"ok"}, df[df["status"] != "ok"][["case", "n", "method", "variant", "diagnosis"]]
    assert (df["time_median_s"] > 0).all() and (df["prepare_s"] >= 0).all()
    exact = df[df["method"] != "finite"]
    # automatic and symbolic Jacobians agree with the hand-derived one to rounding (a few ulps of entries ≤ 2)
    assert (exact["rel_error"] < 1e-13).all(), exact[["case", "n", "method", "variant", "rel_error"]]
    # central differences: truncation h²·f'''/6 plus rounding eps/h, about 1e-10 at h ≈ eps^(1/3); far below 1e-6
    central = df[df["method"] == "finite"]
    assert (central["rel_error"] < 1e-6).all() and (central["rel_error"] > 0).all()
    assert tape.MAX_FORWARD_INPUTS == 6                   # and run's cap is as it was after the study
    slopes = scale.jacobian_slopes(df)
    assert set(slopes["case"]) == set(scale.JACOBIAN_CASES)
