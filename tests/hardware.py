"""The selector marker and its skip condition in one helper (vLLM's `tests/utils.py` style)."""
import pytest

from roofline.hardware import get_hardware, hardware_families


def family_of(key_or_family: str) -> str:
    return key_or_family if key_or_family in hardware_families() else get_hardware(key_or_family).family


def on_hardware(key_or_family: str):
    """Marks for a case that measures on this hardware: the family's selector marker (`pytest -m b10`)
    plus `measure(family)`, which the root conftest turns into a skip with a reason elsewhere."""
    family = family_of(key_or_family)
    return [getattr(pytest.mark, family), pytest.mark.measure(family)]
