"""The judge's rules, with fake measurements: every branch, including the re-measure ones."""
import pytest

from roofline import judge
from roofline.judge import (Evidence, Observation, calibrated_roof, correctness, efficiency, judge_measurement,
                            physics, ratio, regression, stored_bytes)
from roofline.regress import Run, reference


def obs(median_us, roof_us, p20_us=None, contention=(), expected_us=None, scores=()):
    return Observation(median_us * 1e-6, (p20_us or median_us) * 1e-6, roof_us * 1e-6, tuple(contention),
                       expected_us * 1e-6 if expected_us else None, tuple(scores))


def measurements(*observations):
    it = iter(observations)
    calls = []

    def measure():
        calls.append(1)
        return next(it)
    return measure, calls


@pytest.mark.parametrize("median, p20, roof_noise, ok", [
    (100, 100, 0.0, True),     # at the roof
    (99, 99, 0.0, True),       # within resolution
    (90, 90, 0.0, False),      # 10% under a datasheet roof: a bug
    (90, 85, 0.05, True),      # the timer's spread (5.6%) + the roof's (5%) + 2% cover it
    (80, 78, 0.05, False),     # 20% is beyond the measured noise
])
def test_physics_allows_exactly_the_measured_noise(median, p20, roof_noise, ok):
    c = physics(obs(median, 100, p20), roof_noise, "datasheet roof")
    assert c.enforced and c.ok is ok, c.reason


def test_a_wide_spread_of_calls_is_no_licence_to_beat_a_ceiling():
    # a median at 143% of a datasheet roof, a fifth of its calls 2.9x past it: a host's noise only slows calls, so
    # the spread allowed it nothing of the kind; the timer's jitter moves a median by its standard error, at most 10%
    from roofline.judge import MAX_TIMER_BEAT
    wide = Observation(0.7e-3, 0.35e-3, 1e-3, count=10)
    c = physics(wide, 0.0, "datasheet roof")
    assert c.enforced and not c.ok and "over 10 calls" in c.reason, c.reason
    assert not physics(Observation(0.7e-3, 0.35e-3, 1e-3), 0.0, "datasheet roof").ok  # count unknown: capped too
    assert wide.timer_beat == MAX_TIMER_BEAT
    # the standard error shrinks with the calls behind the median, down to MIN_TIMER_BEAT: a 20% spread over 10
    # calls allows 10% (the cap), over 1000 calls 5% (the floor; its standard error alone would be 1.9%)
    from roofline.judge import MIN_TIMER_BEAT
    assert Observation(100e-6, 80e-6, 100e-6, count=10).timer_beat == MAX_TIMER_BEAT
    assert Observation(100e-6, 80e-6, 100e-6, count=1000).timer_beat == MIN_TIMER_BEAT
    assert Observation(100e-6, 80e-6, 100e-6, count=50).timer_beat == pytest.approx(
        2 * 1.2533 * 0.2 / 0.8416 / 50 ** 0.5)
    # a spread under the floor allows itself, as before: 4.2% over 100 calls, a 4% beat of a DRAM ceiling passes
    assert physics(Observation(0.96, 0.92, 1.0, count=100), 0.0, "CPU ceiling").ok
    assert not physics(Observation(0.90, 0.80, 1.0, count=1000), 0.0, "CPU ceiling").ok  # 10% past: 5% + 2% allowed


def test_a_roof_without_measured_noise_is_reported_not_enforced():
    c = physics(obs(50, 100), None, "calibrated fp32 peak")
    assert not c.enforced and not c.ok and "reported" in c.reason


def test_an_understated_ceiling_is_remeasured_and_the_case_held_to_the_raised_one():
    measure, _ = measurements(obs(80, 100))
    v, o = judge_measurement(measure, error=0.0, roof_noise=0.0, roof_now=lambda: 1.3)
    assert v.passed and "re-measured now" in v.notes[0] and o.predicted_s == pytest.approx(100e-6 / 1.3)
    measure, _ = measurements(obs(80, 100))
    v, _ = judge_measurement(measure, error=0.0, roof_now=lambda: 1.0)  # the roof did not move: a real excess
    assert not v.passed and v.failures[0].name == "physics"


def test_contention_under_the_bar_measures_once_more():
    measure, calls = measurements(obs(500, 100, contention=["busy CPU: 80%"]), obs(150, 100))
    v, o = judge_measurement(measure, error=0.0, evidence=Evidence(floor=0.5, floor_source="[x]"))
    assert len(calls) == 2 and v.passed and "contention" in v.notes[0] and o.median_s == 150e-6
    measure, calls = measurements(obs(500, 100))  # slow without contention: judged as it is
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(floor=0.5, floor_source="[x]"))
    assert len(calls) == 1 and [c.name for c in v.failures] == ["efficiency"]


def test_efficiency_is_held_to_a_sourced_floor_and_reported_without_one():
    o = obs(300, 100)  # 33%
    assert not efficiency(o, Evidence(floor=0.5, floor_source="[b10.floor.memory]")).ok
    assert efficiency(o, Evidence(floor=0.3, floor_source="[b10.floor.memory]")).ok
    c = efficiency(o, Evidence())
    assert c.ok and not c.enforced and "history" in c.reason


def test_beating_a_calibrated_roof_is_reported_with_its_meaning_never_failed():
    """The 172% case: a healthy kernel against a peak calibrated while the host ran slow. The ceiling holds it."""
    measure, _ = measurements(obs(100, 50, expected_us=172))
    v, _ = judge_measurement(measure, error=0.0, roof_noise=0.0)
    assert v.passed, v.message()
    cal = next(c for c in v.checks if c.name == "calibrated roof")
    assert not cal.ok and not cal.enforced and "172.0%" in cal.reason and "recalibrate" in cal.reason
    assert calibrated_roof(obs(100, 50, expected_us=90)).ok
    assert calibrated_roof(obs(100, 50)) is None  # nothing calibrated to compare with


def _history(*medians, spread=0.02, n=20):
    return [Run(m, tuple(m * (1 + spread * ((i % 5) - 2) / 2) for i in range(n))) for m in medians]


def test_regression_is_judged_against_the_history_and_says_what_it_can_detect():
    ref = reference(_history(1.0, 1.02, 0.98))
    slow = obs(200, 100, scores=[2.0 * v for v in ref.samples[:20]])
    c = regression(slow, Evidence(reference=ref))
    assert c.enforced and not c.ok and "2.00x" in c.reason and "smallest detectable" in c.reason
    same = obs(100, 100, scores=ref.samples[:20])
    assert regression(same, Evidence(reference=ref)).ok
    first = regression(same, Evidence())
    assert first.ok and not first.enforced and "starts it" in first.reason


def test_contention_under_the_history_measures_once_more():
    ref = reference(_history(1.0, 1.0, 1.0))
    measure, calls = measurements(obs(300, 100, contention=["busy CPU: 80%"], scores=[3.0] * 20),
                                  obs(100, 100, scores=ref.samples[:20]))
    v, o = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref))
    assert len(calls) == 2 and v.passed and "contention" in v.notes[0]


def test_a_wrong_result_fails_whatever_its_speed():
    measure, _ = measurements(obs(100, 100))
    v, _ = judge_measurement(measure, error=None, error_note="relative error 0.3 exceeds rtol=0.01")
    assert [c.name for c in v.failures] == ["correctness"] and "0.3" in v.message()
    assert correctness(0.001).ok
    c = correctness(None, "not probed: the packing needs CUDA", checked=False)
    assert c.ok and not c.enforced and c.reason.startswith("not checked")  # said, never claimed as a pass


@pytest.mark.parametrize("stored, charged, ok", [(4.25, 4.25, True), (16.0, 4.25, False), (8.0, 4.0, False),
                                                 (8.04, 8.0, True)])
def test_stored_bytes_must_match_what_the_byte_model_charges(stored, charged, ok):
    assert stored_bytes(stored, charged, "int4").ok is ok


def test_ratio_enforced_only_where_the_family_reaches_its_roofs():
    assert not ratio(1.1, 2.0, 1.35, 1.35, True).ok
    c = ratio(1.1, 2.0, 1.35, 1.35, False, "cpu paths are not expected at their roofs")
    assert not c.ok and not c.enforced and "reported only" in c.reason


def test_a_regression_must_reproduce_in_measurements_seconds_apart():
    ref = reference(_history(1.0, 1.0, 1.0))
    slow = obs(280, 100, scores=[2.8 * v for v in ref.samples[:20]])
    fine = obs(100, 100, scores=ref.samples[:20])
    waited = []
    measure, calls = measurements(slow, fine)  # a passing host disturbance: the first look again clears it
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref), pause=waited.append)
    assert len(calls) == 2 and v.passed and "reproduce" in v.notes[0] and waited == [0.0]
    # a slow spell that outlasts the immediate look (an int8 GEMV at 2x its history twice in a row on a shared VM):
    # the look after the first pause clears it
    waited.clear()
    measure, calls = measurements(slow, slow, fine)
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref), pause=waited.append)
    assert len(calls) == 3 and v.passed and waited == [0.0, judge.REPRODUCE_PAUSES_S[0]]
    waited.clear()
    looks = len(judge.REPRODUCE_PAUSES_S) + 1
    measure, calls = measurements(*[slow] * (1 + looks))  # a real slowdown stays in every look
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref), pause=waited.append)
    assert len(calls) == 1 + looks and [c.name for c in v.failures] == ["regression"]
    assert waited == [0.0, *judge.REPRODUCE_PAUSES_S] and f"{looks} more look(s)" in v.notes[0]


def test_a_regression_seen_under_contention_must_reproduce_too():
    # flagged for contention, a slow first look bought one more look and a verdict: a slow spell outlasting it failed
    # a healthy case that, unflagged, the reproduce loop would have passed
    ref = reference(_history(1.0, 1.0, 1.0))
    busy = obs(200, 100, contention=["busy CPU: 60%"], scores=[2.0 * v for v in ref.samples[:20]])
    slow = obs(200, 100, scores=[2.0 * v for v in ref.samples[:20]])
    fine = obs(100, 100, scores=ref.samples[:20])
    measure, calls = measurements(busy, slow, fine)
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref), pause=lambda s: None)
    assert len(calls) == 3 and v.passed and "contention" in v.notes[0] and "reproduce" in v.notes[1]
    looks = len(judge.REPRODUCE_PAUSES_S) + 1
    measure, calls = measurements(busy, *[slow] * (1 + looks))  # a real slowdown still fails
    v, _ = judge_measurement(measure, error=0.0, evidence=Evidence(reference=ref), pause=lambda s: None)
    assert len(calls) == 2 + looks and [c.name for c in v.failures] == ["regression"]


def test_a_regression_that_pushes_a_case_over_the_budget_fails_as_one():
    """A CPU prefill GEMM with a 0.82 s history made 2.5x slower needs 20.5 s for ten calls, over a 20 s budget: it was
    skipped ("raise --case-budget-s"). Its history judges its single calls (the fastest: a host only slows calls)."""
    from tests.validation.test_roofline_cases import untimed_or_skip
    ref = reference(_history(0.82, 0.80, 0.84))
    why = "one call takes ~2.05 s: 10 samples need ~20.5 s, over the per-case budget of 20 s"
    reg = judge.untimed_regression([2.05, 2.1], ref)
    assert reg.enforced and not reg.ok and "not timed" in reg.reason and "2.50x" in reg.reason
    with pytest.raises(pytest.fail.Exception, match=r"regression: not timed \(over the budget\)"):
        untimed_or_skip(why, [*judge.untimed_checks(0.0), reg])
    # one slow call beside one at its usual speed: a busy moment, not a slower kernel; skipped as before
    assert judge.untimed_regression([2.05, 0.85], ref).ok
    # single calls are weaker evidence than a timed run: 1.26x in every call (a CI's healthy bf16 GEMV) is within
    # the young band they are held to, whatever the history's own (25% here)
    assert ref.band < 0.5 and judge.untimed_regression([1.26 * 0.82] * 5, ref).ok
    with pytest.raises(pytest.skip.Exception, match="over the per-case budget"):
        untimed_or_skip(why, [*judge.untimed_checks(0.0), judge.untimed_regression([2.05, 0.85], ref)])
    assert judge.untimed_regression([2.05], None) is None  # no history: nothing to judge it by


def test_a_case_too_slow_to_time_still_fails_a_wrong_result_or_a_mis_stored_weight():
    """The suite's budget refusal (BudgetExceeded) skips a case; the checks no timing enters still hold there."""
    from tests.validation.test_roofline_cases import untimed_or_skip
    slow = "one call takes ~3.1 s: 10 samples need ~31 s, over the per-case budget of 20 s"
    with pytest.raises(pytest.fail.Exception, match=r"correctness: max relative error 0.25 over 0.01 \(not timed"):
        untimed_or_skip(slow, judge.untimed_checks(None, "max relative error 0.25 over 0.01"))
    with pytest.raises(pytest.fail.Exception, match="stored bytes: int4 weights store 16 bits/element"):
        untimed_or_skip(slow, judge.untimed_checks(0.0, stored_bits=16.0, charged_bits=4.25, fmt="int4"))
    with pytest.raises(pytest.skip.Exception, match="over the per-case budget.*untimed checks passed: correctness, "
                                                    "stored bytes"):
        untimed_or_skip(slow, judge.untimed_checks(1e-3, stored_bits=4.25, charged_bits=4.25, fmt="int4"))
    # a simulated kernel that could not run: not checked, said, and not a failure
    with pytest.raises(pytest.skip.Exception) as skipped:
        untimed_or_skip(slow, judge.untimed_checks(None, "not probed", error_checked=False))
    assert "passed" not in str(skipped.value)  # not checked is not passed


def test_a_first_run_under_contention_does_not_claim_to_start_the_history():
    # acceptable() keeps it out, so "this run starts it" was false on a host always flagged busy
    from roofline.regress import acceptable
    busy = obs(100, 100, contention=["busy CPU: 60%"], scores=[1e-4] * 10)
    c = regression(busy, Evidence())
    assert "does not start it" in c.reason and "busy CPU" in c.reason
    assert not acceptable(None, True, True)[0]
    assert "this run starts it" in regression(obs(100, 100, scores=[1e-4] * 10), Evidence()).reason
