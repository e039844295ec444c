"""The gate fails closed: isolated measurement, nothing-to-compare, malformed baselines, slowdowns, staleness.

Exit codes of ``check`` (README): 0 match, 1 regression or a row that could not be measured,
2 baseline unusable or nothing to compare, 3 significant slowdown.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from diffbench import case

#: the exit codes of check as the README documents them
EXIT_OK, EXIT_REGRESSION, EXIT_BASELINE, EXIT_SLOWER = 0, 1, 2, 3
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
PROBES = ROOT / "tests" / "data" / "gate" / "probes.py"
#: one float64 row per method keeps each check to a couple of worker start-ups, without TensorFlow
SELECT = ["--methods", "symbolic,finite", "--variants", "symbolic=numpy", "--variants", "finite=central",
          "--dtypes", "float64"]


def diffbench(*args, probe="", timeout=300):
    env = dict(ENV, DIFFBENCH_PROBE=probe)
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def check(baseline, *extra, probe=""):
    return diffbench("check", "--cases", PROBES, "--baseline", baseline, *SELECT, *extra, probe=probe)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", path, *SELECT)
    assert out.returncode == 0, out.stderr
    return path


def edited(baseline, tmp_path, edit, name="edited.json"):
    data = json.loads(baseline.read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_an_unchanged_case_matches(baseline):
    out = check(baseline)
    assert out.returncode == EXIT_OK, out.stdout + out.stderr
    assert "2 rows compared" in out.stdout  # symbolic/numpy and finite/central, float64


# --------------------------------------------------------------------------- isolation
@pytest.mark.slow
@pytest.mark.parametrize("probe", ["sys_exit", "os_exit", "native_hang"])
def test_a_case_that_exits_or_hangs_never_passes(baseline, probe):
    # the finite-difference row ends the worker (exit code 0) or hangs with the alarm blocked;
    # --timeout 1 plus the runner's grace period stops it from outside
    out = check(baseline, "--timeout", "1", probe=probe)
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "could not be measured" in out.stdout and "finite/central float64" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("how", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_a_case_file_that_exits_at_import_fails_the_gate(baseline, tmp_path, how):
    # the parent lists the cases by importing the files; a file that ends the process there would
    # otherwise end check with exit 0 having compared nothing
    exiting = tmp_path / "exiting.py"
    exiting.write_text(how + PROBES.read_text())
    out = diffbench("check", "--cases", exiting, "--baseline", baseline, *SELECT)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_snapshot_survives_a_case_that_exits_everywhere(tmp_path):
    path = tmp_path / "baseline.json"
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", path, *SELECT, "--timeout", "5",
                    probe="os_exit_always")
    assert out.returncode == EXIT_OK and "could not be measured" in out.stderr, out.stderr
    entry = json.loads(path.read_text())["cases"]["cubic"]
    assert entry["reference"] is None and "died" in entry["reference_problem"]
    assert {r["status"] for r in entry["rows"]} == {"error"}
    # the same failure in the baseline does not make it a pass
    out = check(path, "--timeout", "5", probe="os_exit_always")
    assert out.returncode == EXIT_REGRESSION and "could not be measured" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- nothing to compare
def _drop_finite(data):
    data["cases"]["cubic"]["rows"] = [r for r in data["cases"]["cubic"]["rows"] if r["method"] != "finite"]


def _no_gradient(data):
    next(r for r in data["cases"]["cubic"]["rows"] if r["method"] == "symbolic")["gradient"] = None


def _no_rows(data):
    data["cases"]["cubic"]["rows"] = []


def _no_timing(data):
    for row in data["cases"]["cubic"]["rows"]:
        row["time_median_s"] = row["time_min_s"] = row["time_samples_s"] = None


@pytest.mark.parametrize("edit, options, named", [
    (None, ["--dtypes", "float32"], "float32"),
    (None, ["--variants", "finite=central,forward"], "finite/forward float64"),
    (_drop_finite, [], "finite/central float64"),
    (_no_rows, [], "cubic"),
    (_no_gradient, [], "symbolic/numpy float64"),
    (_no_timing, ["--fail-slower", "median:20%"], "--fail-slower"),
], ids=["dtype", "variant", "method", "no-rows", "null-gradient", "no-timings"])
def test_comparing_nothing_is_not_a_pass(baseline, tmp_path, edit, options, named):
    path = edited(baseline, tmp_path, edit) if edit else baseline
    out = check(path, *options)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    line = next((x for x in out.stdout.splitlines() if "nothing to compare for" in x), "")
    assert named in line, out.stdout


# --------------------------------------------------------------------------- malformed baselines
def _row0(data):
    return data["cases"]["cubic"]["rows"][0]


@pytest.mark.parametrize("edit, raw, field", [
    (lambda d: _row0(d).update(rel_error="BIG"), ('"BIG"', "9" * 5000), "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d)["gradient"]["x"].__setitem__(1, "0.5"), None, "cases.cubic.rows[0].gradient.x[1]"),
    (lambda d: _row0(d).pop("method"), None, "cases.cubic.rows[0]: 'method' is a required property"),
    (lambda d: _row0(d).update(rel_error=float("nan")), None, "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d)["time_samples_s"].__setitem__(0, float("inf")), None, "cases.cubic.rows[0].time_samples_s[0]"),
    (lambda d: _row0(d).update(rel_error="HUGE"), ('"HUGE"', "1e999"), "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d).update(status="great"), None, "cases.cubic.rows[0].status"),
    (lambda d: d["cases"]["cubic"]["inputs"]["x"].update(shape="3"), None, "cases.cubic.inputs.x.shape"),
    (lambda d: d["cases"]["cubic"].update(rows={"a": 1}), None, "cases.cubic.rows"),
    (lambda d: d.update(cases=[]), None, "field cases"),
    (lambda d: d["cases"]["cubic"]["rows"].append(dict(_row0(d))), None, "cases.cubic.rows[2]"),
], ids=["5000-digits", "string-number", "no-method", "NaN", "Infinity", "1e999", "status", "shape-type",
        "rows-type", "cases-type", "repeated-row"])
def test_a_malformed_baseline_names_the_field(baseline, tmp_path, edit, raw, field):
    path = edited(baseline, tmp_path, edit)
    if raw:
        path.write_text(path.read_text().replace(*raw))
    out = check(path)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    assert field in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_an_unknown_schema_version_is_refused(baseline, tmp_path):
    path = edited(baseline, tmp_path, lambda d: d.update(schema_version=1))
    out = check(path)
    assert out.returncode == EXIT_BASELINE and "schema_version 1" in out.stderr and "snapshot" in out.stderr


def test_bad_options_are_exit_2_not_a_regression(baseline):
    assert diffbench("check", "--cases", PROBES, "--baseline", baseline, "--timeout", "nan").returncode == 2
    assert diffbench("check", "--cases", PROBES, "--baseline", baseline, "-k", "nosuchcase").returncode == 2
    assert check(baseline, "--fail-slower", "mean:20%").returncode == 2


def test_an_unwritable_baseline_or_summary_is_said_before_a_traceback(baseline, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", blocker / "baseline.json", *SELECT)
    assert out.returncode == 2 and "not a folder" in out.stderr and "Traceback" not in out.stderr
    out = check(baseline, "--summary", blocker / "summary.md")
    assert out.returncode == 2 and "--summary" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- slowdowns: the statistics by hand
def test_a_session_compares_the_fastest_samples():
    from diffbench.slowdown import quantile, session_ratio

    # sorted [1, 2, 3, 4, 5]: q = 0 is x_(1) = 1; q = 0.5 is x_(floor(0.5·4) + 1) = x_(3) = 3
    assert quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0) == 1.0
    assert quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    # fastest gradient sample 2.0 over fastest twin sample 0.5
    assert session_ratio([3.0, 2.0, 2.5], [0.5, 0.8, 0.6]) == 4.0


def _session(ratio, twin=0.1, rounds=5):
    """Samples whose fastest gradient sample is ``ratio`` times the fastest twin sample (with the twin's 0.1 s,
    a ratio of 10 is a gradient of 1 s, the size of the run samples below)."""
    return [ratio * twin * (1 + 0.1 * i) for i in range(rounds)], [twin * (1 + 0.05 * i) for i in range(rounds)]


BASE_SESSIONS = [_session(10.0), _session(11.0), _session(12.0)]


@pytest.mark.parametrize("now, kind, estimate", [
    # the baseline's sessions have ratios 10, 11, 12: the reference is the slowest, 12, and the
    # baseline's own spread is 12/10 = 1.2; with the limit 1.2 a session is slower above
    # 12 · 1.2 · 1.2 = 17.28, within at or below 12 · 1.2 = 14.4, unclear between
    (18.0, "slower", 1.5), (17.0, "unclear", 17 / 12), (14.4, "within", 1.2), (9.0, "within", 0.75),
])
def test_a_session_votes_against_the_baselines_slowest_session_and_its_spread(now, kind, estimate):
    from diffbench.slowdown import SlowerCheck

    vote = SlowerCheck.parse("median:20%").vote(BASE_SESSIONS, _session(now))
    assert vote.kind == kind
    assert vote.estimate == pytest.approx(estimate) and vote.noise == pytest.approx(1.2)


@pytest.mark.parametrize("kinds, outcome", [
    (["within"], "within"),                       # the first session within: done
    (["unclear"], None), (["slower"], None), (["slower", "slower"], None),  # another session is needed
    (["unclear", "within", "within"], "within"),  # two of three within
    (["slower", "slower", "slower"], "slower"),   # every session slower
    (["slower", "unclear", "slower"], "undecided"), (["unclear", "unclear", "within"], "undecided"),
])
def test_the_verdict_needs_every_session_to_call_a_slowdown(kinds, outcome):
    from diffbench.slowdown import SlowerCheck, Vote

    verdict = SlowerCheck.parse("median:20%").verdict([Vote(k, 1.0, 1.0, 1e-3) for k in kinds])
    assert (verdict.outcome if verdict else None) == outcome


# --------------------------------------------------------------------------- slowdowns: compare()
def _timed(samples, gradient=1.0, sessions=None):
    return {"method": "tape", "variant": "eager", "dtype": "float64", "status": "ok", "rel_error": 0.0,
            "gradient": {"x": [gradient]}, "time_samples_s": samples,
            "twin_sessions": None if sessions is None else [{"gradient_s": g, "twin_s": t} for g, t in sessions]}


class _Remeasure:
    """A stand-in for the worker that times rows against the twin: hands out the given sessions in turn."""

    def __init__(self, *sessions):
        self.sessions, self.calls = list(sessions), []

    def __call__(self, keys, rounds):
        self.calls.append(list(keys))
        session = self.sessions[min(len(self.calls), len(self.sessions)) - 1]
        return {k: session for k in keys}


def _compare_cases(pairs, spec="median:20%", remeasure=None, calibration=(None, None), sessions=BASE_SESSIONS,
                   gradient=1.0, twin="numpy-exp-sum-2000+python-sum-300"):
    """compare() over one timed row per case: pairs of (before, after) run samples."""
    from diffbench.slowdown import SlowerCheck
    from diffbench.testing import compare

    base = {"environment": {"calibration_s": calibration[0], "twin": twin},
            "cases": {f"c{i}": {"definition_hash": "h", "source_hash": "s", "rows": [_timed(b, sessions=sessions)]}
                      for i, (b, _) in enumerate(pairs)}}
    now = {f"c{i}": {"definition_hash": "h", "source_hash": "s", "inputs": {"x": {"shape": []}},
                     "rows": [_timed(a, gradient)]} for i, (_, a) in enumerate(pairs)}
    return compare(base, now, SlowerCheck.parse(spec), calibration=calibration[1], remeasure=remeasure)


BEFORE = [1.00, 1.02, 0.98, 1.01, 0.99]
SLOWER_RUN = [1.50, 1.52, 1.48, 1.51, 1.49]


def test_the_twin_is_named_as_the_code_names_it():
    from diffbench.slowdown import TWIN

    assert TWIN == "numpy-exp-sum-2000+python-sum-300"


def test_a_slowdown_in_the_run_alone_is_measured_again_and_passes():
    # the run says +50 %, the re-measurement against the twin says ×11/12: noise of the run, not the code
    remeasure = _Remeasure(_session(11.0))
    code, lines = _compare_cases([(BEFORE, BEFORE)] * 3 + [(BEFORE, SLOWER_RUN)], remeasure=remeasure)
    assert code == EXIT_OK, lines
    assert remeasure.calls == [[("c3", "tape", "eager", "float64")]]  # only the flagged row, once
    assert "1 flagged" in lines[0]


def test_a_slowdown_every_session_confirms_fails_with_its_own_code_and_heading():
    # ×2 the baseline's slowest session in all three sessions: 2 > 1.2 · 1.2
    remeasure = _Remeasure(_session(24.0))
    code, lines = _compare_cases([(BEFORE, BEFORE)] * 3 + [(BEFORE, SLOWER_RUN)], remeasure=remeasure)
    text = "\n".join(lines)
    assert code == EXIT_SLOWER, text
    assert len(remeasure.calls) == 3
    assert "slowdowns" in text and "gradient regressions" not in text and "×2.00 (slower)" in text


def test_a_machine_too_noisy_to_tell_is_exit_2_with_the_reason():
    # the sessions disagree (slower, unclear, slower): no verdict either way
    remeasure = _Remeasure(_session(24.0), _session(16.0), _session(24.0))
    code, lines = _compare_cases([(BEFORE, SLOWER_RUN)], remeasure=remeasure, calibration=(0.01, 0.01))
    text = "\n".join(lines)
    assert code == EXIT_BASELINE, text
    assert "too noisy to tell" in text and "cannot tell whether it is slower than ×1.20" in text


def test_a_row_that_cannot_be_re_measured_is_not_a_pass():
    code, lines = _compare_cases([(BEFORE, SLOWER_RUN)], calibration=(0.01, 0.01),
                                 remeasure=lambda keys, rounds: {k: "RuntimeError: boom" for k in keys})
    assert code == EXIT_BASELINE and "could not be re-measured" in "\n".join(lines) and "boom" in "\n".join(lines)


def test_a_baseline_without_twin_sessions_cannot_confirm_a_flagged_row():
    # a version-2 baseline (no sessions) or one timed against another twin: re-run snapshot, exit 2
    for kwargs in ({"sessions": None}, {"twin": "another-twin"}):
        remeasure = _Remeasure(_session(24.0))
        code, lines = _compare_cases([(BEFORE, SLOWER_RUN)], remeasure=remeasure, calibration=(0.01, 0.01),
                                     **kwargs)
        assert code == EXIT_BASELINE and "re-run snapshot" in "\n".join(lines) and not remeasure.calls


def test_a_row_the_run_does_not_flag_is_not_measured_again():
    remeasure = _Remeasure(_session(24.0))
    # +10 %: below the 20 % threshold, so not even a candidate
    assert _compare_cases([(BEFORE, [t * 1.1 for t in BEFORE])], remeasure=remeasure,
                          calibration=(0.01, 0.01))[0] == EXIT_OK
    assert not remeasure.calls


def test_a_machine_that_got_slower_everywhere_is_measured_again_and_passes():
    # every row 40 % slower alike, and the calibration workload too: flagged all the same (a load burst
    # during one estimate must never hide a slowdown), and the twin finds them unchanged
    remeasure = _Remeasure(_session(11.0))
    slower = [t * 1.4 for t in BEFORE]
    assert _compare_cases([(BEFORE, slower)] * 4, remeasure=remeasure, calibration=(0.010, 0.014))[0] == EXIT_OK
    assert len(remeasure.calls[0]) == 4


def test_a_machine_that_seems_slower_never_hides_a_slowdown():
    # every row 40 % slower and the calibration workload 40 % slower too; the twin says ×2: slower
    remeasure = _Remeasure(_session(24.0))
    slower = [t * 1.4 for t in BEFORE]
    code, _ = _compare_cases([(BEFORE, slower)] * 4, remeasure=remeasure, calibration=(0.010, 0.014))
    assert code == EXIT_SLOWER and len(remeasure.calls[0]) == 4


def test_a_baseline_run_inflated_by_load_cannot_hide_a_slowdown():
    # the snapshot's run ran five times slower than the code (load): the run's medians 5.0 -> 1.5 look
    # faster, but 1.5 s is more than 1.2 × the baseline's fastest CPU time, median(1.0, 1.1, 1.2) = 1.1 s
    remeasure = _Remeasure(_session(24.0))
    code, lines = _compare_cases([([5.0] * 5, [1.5] * 5)], remeasure=remeasure, calibration=(0.01, 0.01))
    assert code == EXIT_SLOWER and "baseline's fastest CPU time 1.1 s" in "\n".join(lines)


def test_min_flags_on_minimums():
    # nine of ten samples slower and the median +50 %, but the fastest run is within 1 % of the baseline's
    after = [0.985, 1.45, 1.46, 1.47, 1.48, 1.49, 1.50, 1.51, 1.52, 1.53]
    remeasure = _Remeasure(_session(24.0))
    assert _compare_cases([(BEFORE, after)], "min:20%", remeasure, (0.01, 0.01))[0] == EXIT_OK
    assert not remeasure.calls
    assert _compare_cases([(BEFORE, after)], "median:20%", remeasure, (0.01, 0.01))[0] == EXIT_SLOWER


def test_a_wrong_gradient_outranks_a_slowdown():
    code, lines = _compare_cases([(BEFORE, SLOWER_RUN)], remeasure=_Remeasure(_session(24.0)),
                                 calibration=(0.01, 0.01), gradient=2.0)
    assert code == EXIT_REGRESSION and any("slowdowns" in line for line in lines)


@pytest.mark.parametrize("x, y", [([2.0, 3, 4, 5, 6], [1.0, 1.1, 1.2, 1.3, 1.4]),
                                  ([1.0, 2, 3, 4, 5, 6], [3.5, 4.5, 0.5, 7.0]),
                                  ([1.0, 1, 2, 2, 3], [1.0, 2, 2, 2, 0])])
def test_mann_whitney_agrees_with_scipy(x, y):
    from diffbench.slowdown import mann_whitney_greater

    scipy_stats = pytest.importorskip("scipy.stats")
    ties = len(set(x + y)) < len(x + y)
    want = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic" if ties else "exact").pvalue
    assert mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- slowdowns: end to end
def test_the_baseline_keeps_every_timing_sample_and_the_twin_sessions(baseline):
    from diffbench.slowdown import PAIRED_ROUNDS, SESSIONS

    data = json.loads(baseline.read_text())
    rows = data["cases"]["cubic"]["rows"]
    assert all(len(r["time_samples_s"]) >= 5 and min(r["time_samples_s"]) == r["time_min_s"] for r in rows)
    for row in rows:
        assert len(row["twin_sessions"]) == SESSIONS
        assert all(len(s["gradient_s"]) == len(s["twin_s"]) == PAIRED_ROUNDS for s in row["twin_sessions"])
    load = data["environment"]["load"]
    assert load["cpu_count"] == os.cpu_count() and len(load["loadavg"]) == 3 and load["clock_resolution_s"] > 0


def test_a_version_2_baseline_still_checks_gradients(baseline, tmp_path):
    def older(data):
        data["schema_version"] = 2
        for row in data["cases"]["cubic"]["rows"]:
            del row["twin_sessions"]
    out = check(edited(baseline, tmp_path, older))
    assert out.returncode == EXIT_OK, out.stdout + out.stderr


SLOW_CASE = """
import os
from diffbench import case

@case(inputs={"x": [0.5, -1.0, 2.0, 0.25]})
def work(x, xp):
    value = xp.sum(xp.exp(x) * x**2)
    # DIFFBENCH_TEST_SLOWER=1: the same value, computed 20 times over (a real slowdown, same gradient)
    for _ in range(19 if os.environ.get("DIFFBENCH_TEST_SLOWER") == "1" else 0):
        value = (value + xp.sum(xp.exp(x) * x**2)) / 2
    return value
"""


@pytest.mark.slow
def test_unchanged_code_passes_and_a_real_slowdown_is_caught(tmp_path):
    cases = tmp_path / "slow_case.py"
    cases.write_text(SLOW_CASE)
    path = tmp_path / "baseline.json"
    select = ["--cases", cases, "--baseline", path, "--methods", "finite", "--variants", "finite=central,forward",
              "--dtypes", "float64"]
    assert diffbench("snapshot", *select).returncode == 0
    unchanged = diffbench("check", *select, "--fail-slower", "median:20%")
    # on a machine too loaded to tell, check may refuse (2, saying so), but it never calls unchanged code slower
    assert unchanged.returncode == EXIT_OK or (unchanged.returncode == EXIT_BASELINE
                                               and "too noisy to tell" in unchanged.stdout), unchanged.stdout
    env = dict(ENV, DIFFBENCH_TEST_SLOWER="1")
    slowed = subprocess.run([sys.executable, "-m", "diffbench", "check", *map(str, select), "--fail-slower",
                             "median:20%"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert slowed.returncode == EXIT_SLOWER, slowed.stdout + slowed.stderr
    assert "**work** finite/" in slowed.stdout and "(slower)" in slowed.stdout


# --------------------------------------------------------------------------- what is under test vs what is true
def _cubic_with_native(native_body):
    @case(inputs={"x": [0.5, -1.0, 2.0]}, expect={"finite": "ok"})
    def cubic(x, xp):
        return xp.sum(x**3)

    cubic.native = native_body
    return cubic


def _native_right(x):
    return x**3


def _native_wrong(x):
    return x**3 + x**2


def test_the_definition_hash_leaves_out_the_native_code():
    right, wrong = _cubic_with_native(_native_right), _cubic_with_native(_native_wrong)
    assert right.definition_hash == wrong.definition_hash
    assert right.source_hash != wrong.source_hash
    other = _cubic_with_native(_native_right)
    other.expect = {"tape": "inaccurate"}
    assert other.definition_hash != right.definition_hash


NATIVE_CASE = '''
from diffbench import case

@case(inputs={"x": [0.5, -1.0, 2.0]})
def cubic_sum(x, xp):
    return xp.sum(x ** 3)

@cubic_sum.tensorflow
def _(x):
    import tensorflow as tf
    return tf.reduce_sum(NATIVE)
'''


@pytest.mark.slow
def test_a_change_in_the_native_code_is_a_regression_with_worst_elements(tmp_path):
    cases, path = tmp_path / "native.py", tmp_path / "baseline.json"
    options = ["--cases", cases, "--baseline", path, "--methods", "tape", "--variants", "tape=eager",
               "--dtypes", "float64", "--timeout", "60"]
    cases.write_text(NATIVE_CASE.replace("NATIVE", "x ** 3"))
    assert diffbench("snapshot", *options).returncode == 0
    # d/dx of x³ + x²/4 is 3x² + x/2: at x = (0.5, −1, 2) that is (1, 2.5, 13) where 3x² is (0.75, 3, 12)
    cases.write_text(NATIVE_CASE.replace("NATIVE", "x ** 3 + 0.25 * x ** 2"))
    out = diffbench("check", *options)
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "status `ok` -> `inaccurate`" in out.stdout
    assert "[2] expected 12, got 13" in out.stdout and "relative error" in out.stdout


def test_a_change_in_the_xp_function_is_stale(tmp_path):
    cases, path = tmp_path / "plain.py", tmp_path / "baseline.json"
    source = 'from diffbench import case\n\n@case(inputs={"x": [0.5, 2.0]})\ndef f(x, xp):\n    return xp.sum(BODY)\n'
    options = ["--cases", cases, "--baseline", path, "--methods", "symbolic", "--variants", "symbolic=numpy",
               "--dtypes", "float64"]
    cases.write_text(source.replace("BODY", "x ** 3"))
    assert diffbench("snapshot", *options).returncode == 0
    cases.write_text(source.replace("BODY", "x ** 3 + x"))
    out = diffbench("check", *options)
    assert out.returncode == EXIT_BASELINE and "changed since the baseline" in out.stdout


HANGING_NATIVE_CASE = '''
import os
from diffbench import case

@case(inputs={"x": [0.5, -1.0]})
def looped(x, xp):
    return xp.sum(x ** 2)

@looped.tensorflow
def _(x):
    import tensorflow as tf
    if os.environ.get("DIFFBENCH_PROBE") == "tf_hang":
        @tf.function
        def forever(v):
            return tf.while_loop(lambda i: tf.constant(True), lambda i: i + 1, [tf.constant(0)])
        forever(x)
    return tf.reduce_sum(x ** 2)
'''


@pytest.mark.slow
def test_a_native_tensorflow_hang_is_stopped_and_fails(tmp_path):
    # a tf.while_loop inside tf.function never returns to Python, so only the parent can stop it
    cases = tmp_path / "hang.py"
    cases.write_text(HANGING_NATIVE_CASE)
    options = ["--cases", cases, "--baseline", tmp_path / "baseline.json", "--methods", "tape", "--variants",
               "tape=eager", "--dtypes", "float64", "--timeout", "5"]
    assert diffbench("snapshot", *options).returncode == 0
    out = diffbench("check", *options, probe="tf_hang")
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "could not be measured (`timeout`" in out.stdout


def test_a_case_file_that_cannot_load_gives_a_readable_baseline_and_fails_check(tmp_path):
    options = ["--cases", ROOT / "tests" / "data" / "badfiles" / "import_error.py", "--baseline",
               tmp_path / "baseline.json", *SELECT]
    assert diffbench("snapshot", *options).returncode == EXIT_OK
    out = diffbench("check", *options)
    assert out.returncode == EXIT_REGRESSION and "could not be measured" in out.stdout, out.stdout + out.stderr
