"""pytest.ini registers one marker per hardware family of the registry (plus gpu and slow)."""
import configparser
from pathlib import Path

from roofline.hardware_data import HARDWARE_DATA

ROOT = Path(__file__).resolve().parents[1]


def registered_markers():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    return {line.split(":")[0].split("(")[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()}


def test_every_family_has_a_marker_and_every_marker_a_meaning():
    markers = registered_markers()
    families = {d["family"] for d in HARDWARE_DATA}
    assert families <= markers
    assert markers - families == {"gpu", "slow", "measure", "mutation"}
    assert {"cpu", "b10", "jetson", "h100", "h200", "a100", "b200"} <= markers


def test_strict_markers_are_on():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    assert "--strict-markers" in ini["pytest"]["addopts"]
