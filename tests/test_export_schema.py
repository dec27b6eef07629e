"""The suite's export (measurements.json) against the JSON Schema the project ships (issue 20).

Real exports are checked where they are made: the simulated boards' dry runs (tests/test_simulate.py) and
the host CPU's mutation slices, healthy and planted (tests/test_mutations.py). Here: the schema is a valid
Draft 2020-12 schema, it refuses what a reader could not use, and ``roofline report`` says so in one line.
"""
import copy
import io

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema missing: pip install -e '.[test]'")

from roofline.reports import export  # noqa: E402
from roofline.__main__ import main  # noqa: E402
from tests.test_report import record, write_run  # noqa: E402


def doc(*records, **top):
    return {"schema_version": 1, "session_end": "2026-12-04T10:00:00+00:00", "SIMULATED": None,
            "machine": {"torch": "2.13.0"}, "records": list(records), "calibration": None, **top}


def test_the_shipped_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(export.schema())
    assert export.SCHEMA_PATH.name == f"measurements.v{export.SCHEMA_VERSION}.schema.json"


def test_a_conforming_export_and_an_unmeasured_failure_pass():
    assert export.problems(doc(record("fp16"), {"id": "t::case", "outcome": "failed"})) == []
    old = doc(record("fp16"))
    del old["schema_version"]  # archived before the field existed: version 1
    assert export.problems(old) == []


@pytest.mark.parametrize("breaking, needle", [
    (lambda r: r.pop("verdict"), "'verdict' is a dependency of 'median_s'"),
    (lambda r: r.pop("hardware"), "'hardware' is a dependency of 'median_s'"),
    (lambda r: r.update(median_s="1 ms"), "$.records[0].median_s"),
    (lambda r: r.update(median_s=0.0), "$.records[0].median_s"),
    (lambda r: r.update(mode="warm"), "$.records[0].mode"),
    (lambda r: r.update(outcome="ok"), "$.records[0].outcome"),
    (lambda r: r.update(verdict={"passed": True}), "'checks' is a required property"),
    (lambda r: r.pop("id"), "'id' is a required property"),
])
def test_a_record_a_reader_could_not_use_is_refused(breaking, needle):
    r = record("fp16")
    breaking(r)
    found = export.problems(doc(r))
    assert found and any(needle in p for p in found), found


def test_a_newer_version_is_refused_by_name():
    assert "schema_version 2" in export.problems(doc(record("fp16"), schema_version=2))[0]


def test_roofline_report_refuses_a_broken_export_in_one_line(tmp_path, capsys):
    good = write_run(tmp_path / "a", [record("fp16")])
    bad = [copy.deepcopy(record("fp16"))]
    bad[0].pop("mode")
    broken = write_run(tmp_path / "b", bad)
    out = io.StringIO()
    assert main(["report", str(good), str(good)], out=out) == 0
    assert main(["report", str(good), str(broken)], out=io.StringIO()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the export schema" in err[0] and "'mode'" in err[0]
