"""Fixtures shared by the test modules."""
import pytest

from roofline import hardware


@pytest.fixture
def isolated_registry(monkeypatch):
    """Custom hardware registered by a test disappears after it."""
    monkeypatch.setattr(hardware, "REGISTRY", dict(hardware.REGISTRY))
    monkeypatch.setattr(hardware, "_ALIASES", dict(hardware._ALIASES))
