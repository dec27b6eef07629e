"""The selector marker and its skip condition in one helper (vLLM's `tests/utils.py` style)."""
import pytest

from roofline import get_hardware


def on_hardware(key_or_family: str):
    """Marks for a case that measures on this hardware: the family's selector marker (`pytest -m b10`)
    plus `measure(family)`, which the root conftest turns into a skip with a reason elsewhere."""
    family = get_hardware(key_or_family).family if key_or_family != "cpu" else "cpu"
    return [getattr(pytest.mark, family), pytest.mark.measure(family)]
