"""`roofline selftest`: the figures it reports, from fake slice runs (the real ones take minutes: README)."""
import json

import pytest

from roofline_kernels import selftest as st


def fake_runner(caught: dict, alarms=()):
    """A slice runner: under a planted slowdown F, precision p fails regression iff F >= caught[p]."""
    calls = []

    def run(cases, store, report_dir, mutation=None):
        calls.append((tuple(cases), mutation))
        factor = float(mutation.split("_")[1][:-1]) if mutation else None
        out = {}
        for p in cases:
            failed = (factor is not None and factor >= caught[p]) or (factor is None and p in alarms)
            out[p] = {"outcome": "failed" if failed else "passed",
                      "why": f"gemv on cpu: regression: FAILED: {factor}x" if failed else ""}
        return out, None
    return run, calls


def test_selftest_reports_false_alarms_and_the_smallest_slowdown_caught_every_run(tmp_path):
    (tmp_path / "calibration-cpu-x.json").write_text("{}")
    (tmp_path / "history-cpu-x-m3.json").write_text("{}")  # the user's history: never copied, never touched
    run, calls = fake_runner({"int8": 1.5, "bf16": 2.0}, alarms=("bf16",))
    s = st.selftest(2, (2.0, 1.5), tmp_path, ("int8", "bf16"), runner=run)
    assert calls[0] == (("int8", "bf16"), None)  # the first run starts the histories
    assert [m for _, m in calls[1:]] == [None, "slow_2x_all", "slow_1.5x_all"] * 2
    assert s["precisions"]["int8"]["smallest_caught_every_run"] == 1.5
    assert s["precisions"]["bf16"]["smallest_caught_every_run"] == 2.0
    assert s["precisions"]["bf16"]["slowdowns"]["1.5x"] == {"caught": 0, "runs": 2}
    assert len(s["false_alarms"]) == 2 and s["healthy_cases"] == 4
    lines = st.report_lines(s)
    assert lines[0].startswith("false alarms: 2 of 4") and any(line.startswith("int8") and "1.5x" in line
                                                                 for line in lines)
    assert json.loads((tmp_path / "history-cpu-x-m3.json").read_text()) == {}


@pytest.mark.parametrize("kwargs, msg", [(dict(runs=0), "at least 1"), (dict(factors=(1.0,)), "above 1"),
                                         (dict(precisions=("fp9",)), "unknown precision fp9")])
def test_selftest_refuses_bad_input(tmp_path, kwargs, msg):
    args = dict(runs=1, factors=(2.0,), source_store=tmp_path, precisions=("int8",)) | kwargs
    with pytest.raises(ValueError, match=msg):
        st.selftest(runner=fake_runner({"int8": 2})[0], **args)


def test_the_seeded_store_copies_calibration_and_dram_ceiling_only(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("calibration-cpu-a.json", "dram-ceiling-cpu-b.json", "history-cpu-a-m3.json"):
        (src / name).write_text("{}")
    st.seed_store(dst, src)
    assert sorted(p.name for p in dst.iterdir()) == ["calibration-cpu-a.json", "dram-ceiling-cpu-b.json"]
