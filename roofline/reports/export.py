"""The suite's export, ``reports/<env>/measurements.json``: its version and its shipped JSON Schema.

``tests/validation/report.py`` writes it at a session's end; ``roofline report`` (``roofline.reports.compare``) reads
archived ones. ``roofline/reports/schemas/measurements.v1.schema.json`` says what a reader may rely on: a record
that was measured carries its whole context (device, mode, spread, the prediction it is held against).
An export written before ``schema_version`` existed is version 1. A reader refuses a newer version by
name, and an export that breaks the schema with the first place it breaks it (that check needs the
``jsonschema`` package, in the ``test`` extra; without it only the version is checked).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / f"measurements.v{SCHEMA_VERSION}.schema.json"


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def problems(doc) -> list[str] | None:
    """Each way ``doc`` breaks the schema (``[]`` when it conforms), or None where the ``jsonschema`` package (the
    ``test`` extra) is not installed to check it."""
    if isinstance(doc, dict) and doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        return [f"schema_version {doc.get('schema_version')!r}: written by another roofline; this one reads version "
                f"{SCHEMA_VERSION}"]
    try:
        import jsonschema
    except ImportError:
        return None
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    return [f"{e.json_path}: {e.message}" for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]


def check(doc, where: str) -> None:
    """ValueError naming ``where`` and the first problem, if ``doc`` breaks the schema (see ``problems``)."""
    found = problems(doc)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ValueError(f"{where} does not match the export schema ({SCHEMA_PATH.name}): {found[0]}{more}")
