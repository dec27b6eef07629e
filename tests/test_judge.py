"""The judge's rules, with fake measurements: every branch, including the re-measure ones."""
import pytest

from roofline.judge import (BaselineBook, Evidence, Observation, correctness, efficiency, judge_measurement, physics,
                            ratio, stored_bytes)


def obs(median_us, roof_us, p20_us=None, contention=()):
    return Observation(median_us * 1e-6, (p20_us or median_us) * 1e-6, roof_us * 1e-6, tuple(contention))


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


def test_a_roof_without_measured_noise_is_reported_not_enforced():
    c = physics(obs(50, 100), None, "calibrated fp32 peak")
    assert not c.enforced and not c.ok and "reported" in c.reason


def test_a_drifting_roof_is_remeasured_and_the_case_held_to_the_better_one():
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


def test_efficiency_uses_the_floor_then_the_baseline_then_records():
    o = obs(300, 100)  # 33%
    assert not efficiency(o, Evidence(floor=0.5, floor_source="[b10.floor.memory]")).ok
    assert efficiency(o, Evidence(baseline=0.6, baseline_source="first run", regression_band=0.5)).ok  # bar 30%
    assert not efficiency(o, Evidence(baseline=0.9, baseline_source="first run", regression_band=0.5)).ok  # bar 45%
    c = efficiency(o, Evidence())
    assert c.ok and not c.enforced and "records the baseline" in c.reason


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


def test_baseline_book_records_once():
    book = BaselineBook()
    book.record("a", 0.5, "t0", {"device": "x"})
    book.record("a", 0.9, "t1", {"device": "x"})
    assert book.get("a") == 0.5 and book.recorded == ["a"] and book.get("b") is None
