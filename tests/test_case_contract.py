"""The case contract and the messages for bad cases (each names the case and the fix)."""

import numpy as np
import pytest
from conftest import DATA

from diffbench import CaseError, case, gradient, load_cases, uniform


def problem(inputs, fn=None):
    def f(x, xp):
        return x

    return case(inputs=inputs)(fn or f).problem


def test_inputs_become_float_arrays_of_their_shape():
    @case(inputs={"x": 3, "W": [[1, 2], [3, 4]], "v": np.arange(3.0)}, tags=["t"])
    def f(x, W, v, xp):
        return x

    assert f.name == "f" and f.tags == ("t",)
    assert f.inputs["x"].shape == () and f.inputs["x"].dtype == np.float64
    assert f.inputs["W"].shape == (2, 2) and f.inputs["v"].shape == (3,)
    assert f.integer_inputs == frozenset()  # Python ints are just numbers


@pytest.mark.parametrize("value,words", [
    ("three", "string"), ([[1.0, 2.0], [3.0]], "ragged"), ([], "empty"), ([1.0, float("nan")], "NaN or inf"),
    (float("inf"), "NaN or inf"), (True, "boolean"), (1 + 2j, "complex"), ({"a": 1}, "rectangular array"),
])
def test_bad_inputs_are_named(value, words):
    text = problem({"x": value})
    assert text is not None and words in text and "'x'" in text and "case 'f'" in text


def test_integer_array_is_marked():
    @case(inputs={"n": np.array(3)})
    def f(n, xp):
        return n * n

    assert f.problem is None and f.integer_inputs == {"n"}


def test_signature_problems():
    def no_xp(x):
        return x

    def other_keyword(x, xp, *, scale):
        return x

    def two(x, y, xp):
        return x

    assert "keyword argument 'xp'" in case(inputs={"x": 1.0})(no_xp).problem
    assert "'scale'" in case(inputs={"x": 1.0})(other_keyword).problem
    assert "no value for parameter(s) ['y']" in case(inputs={"x": 1.0})(two).problem
    assert "not parameters" in case(inputs={"x": 1.0, "y": 2.0, "z": 3.0})(two).problem
    assert "order" in case(inputs={"y": 1.0, "x": 2.0})(two).problem


def test_problem_raises_when_used_directly():
    bad = case(inputs={"x": "a"})(lambda x, xp: x)
    with pytest.raises(CaseError, match="string"):
        gradient(bad)


def test_uniform_is_seeded():
    np.testing.assert_array_equal(uniform(4, seed=3), uniform(4, seed=3))
    assert not np.array_equal(uniform(4, seed=3), uniform(4, seed=4))


def test_file_problems_become_named_cases():
    found = {c.name: c for c in load_cases(DATA / "badfiles")}
    assert "No module named 'a_module_that_does_not_exist'" in found["import_error"].problem
    assert "no cases found" in found["no_cases"].problem
    twins = [c for c in load_cases(DATA / "badfiles") if c.name == "twin"]
    assert twins[0].problem is None and "same name" in twins[1].problem


def test_syntax_error_names_file_and_line():
    found = {c.name: c for c in load_cases(DATA / "broken" / "syntax_error.py")}
    assert "syntax_error.py:4: syntax error" in found["syntax_error"].problem


def test_expected_status_matching():
    @case(inputs={"x": 1.0}, expect={"tape": "none", "tape-float32": "nan", "order2": "skipped"})
    def f(x, xp):
        return x

    assert f.expected_status("tape", "eager", "float64") == "none"
    assert f.expected_status("tape", "xla", "float32") == "nan"
    assert f.expected_status("symbolic", "numpy", "float32") == "ok"
    assert f.expected_status("finite", "central", "float64", order=2) == "skipped"


def test_unknown_expected_status_is_a_problem():
    assert "unknown status" in case(inputs={"x": 1.0}, expect={"tape": "broken"})(lambda x, xp: x).problem


def test_library_has_at_least_40_cases_in_families(library):
    assert len(library) >= 40
    assert all(c.problem is None for c in library.values())
    families = {c.source_file.split("/")[-1] for c in library.values()}
    assert {"seeds.py", "classic.py", "ml.py", "hard.py", "nondiff.py", "pitfalls.py"} <= families
    assert sum("seed" in c.tags for c in library.values()) >= 10
    assert all(c.tags for c in library.values())


def test_source_hash_changes_with_inputs(library):
    one = library["rosenbrock"]
    assert one.source_hash == one.with_inputs(one.inputs).source_hash
    assert one.source_hash != one.with_inputs({"x": [0.0, 1.0, 2.0, 3.0]}).source_hash


# -- every @case argument is checked at definition; a bad one is the case's problem, named with the fix --------
@pytest.mark.parametrize("arguments,words", [
    ({"tags": [1, None]}, "tags must be non-empty strings; [1, None]"),
    ({"tags": "vector"}, "tags must be a list of strings, e.g. tags=['vector']"),
    ({"tags": 3}, "tags must be a list of strings, got 3"),
    ({"tags": ["ok", ""]}, "['']"),
    ({"expect": ["tape"]}, "expect= must be a dict"),
    ({"expect": {"tape": 3}}, "expect= must map text to text"),
    ({"expect": {1: "ok"}}, "expect= must map text to text"),
    ({"expect": {"tape": "nan|broken"}}, "unknown status(es) ['broken']"),
    ({"sizes": 5}, "sizes= must be a function of the problem size n"),
    ({"name": ""}, "name= must be a non-empty string"),
    ({"name": 12}, "name= must be a non-empty string, got 12"),
    ({"inputs": {1: 2.0}}, "inputs= has key(s) [1] that are not strings"),
    ({"inputs": [1.0]}, "inputs must be a non-empty dict"),
])
def test_each_bad_case_argument_is_named(arguments, words):
    arguments = {"inputs": {"x": 1.0}, **arguments}

    def f(x, xp):
        return x

    made = case(**arguments)(f)
    assert made.problem is not None and words in made.problem, made.problem
    # what selection and rows read stays well typed, so the other cases still run
    assert isinstance(made.name, str) and all(isinstance(t, str) for t in made.tags)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in made.expect.items())


def test_a_bare_decorator_and_a_non_function_native_are_named():
    @case
    def bare(x, xp):
        return x

    assert bare.name == "bare" and "@case(inputs=" in bare.problem

    @case(inputs={"x": 1.0})
    def fine(x, xp):
        return x

    fine.tensorflow(3)
    assert "must decorate a function" in fine.problem


def test_a_bad_argument_leaves_the_other_cases_selectable(tmp_path):
    from diffbench.case import select

    path = tmp_path / "cases.py"
    path.write_text("from diffbench import case\n\n@case(inputs={'x': 1.0}, tags=[1, None])\ndef bad(x, xp):\n"
                    "    return x\n\n@case(inputs={'x': 1.0}, tags=['good'])\ndef fine(x, xp):\n    return x * x\n")
    cases = load_cases(path)
    assert [c.name for c in select(cases, "good")] == ["fine"]
    assert [c.name for c in select(cases, "bad")] == ["bad"] and "tags" in cases[0].problem
