"""Planted defects, one per kind of check the suite makes (``pytest -p tests.mutations --mutation NAME``).

A validation suite is worth what it catches: tests/test_mutations.py runs a slice of the suite under
each of these and asserts that the cases guarding against it fail (and that with none, all pass).

- bytes_2x:      the byte model under-counts INT8 by 2x (4 bits charged per element)
- bytes_over_2x: the byte model over-counts INT8 by 2x (16 bits charged per element)
- int4_unpacked: INT4 weights kept unpacked in 16-bit behind the int4 label
- slow_3x:       every kernel takes three times as long
- slow_FxPREC:   one precision's kernels take F times as long (``slow_2x_int8``, ``slow_1.5x_bf16``; ``_all``: every one)
- wrong_values:  every kernel returns values 25% off
- hot_as_cold:   cold measurements reuse one set of operands (hot caches) while labelled cold
"""
from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

MUTATIONS = ("bytes_2x", "bytes_over_2x", "int4_unpacked", "slow_3x", "slow_FxPREC", "wrong_values", "hot_as_cold")
SLOW_ONE = re.compile(r"slow_(\d+(?:\.\d+)?)x_(\w+)$")


def mutation_name(text: str) -> str:
    m = SLOW_ONE.match(text)
    if text in MUTATIONS and text != "slow_FxPREC" or (m and float(m.group(1)) > 1):
        return text
    raise argparse.ArgumentTypeError(f"unknown mutation {text!r}; allowed: {', '.join(MUTATIONS)} "
                                     "(slow_FxPREC: a factor > 1 and a precision label, e.g. slow_2x_int8)")


def pytest_addoption(parser):
    parser.getgroup("roofline").addoption("--mutation", type=mutation_name, default=None,
                                          help="plant one defect (the suite must catch it): " + ", ".join(MUTATIONS))


def pytest_configure(config):
    name = config.getoption("--mutation")
    if not name:
        return
    mp = pytest.MonkeyPatch()
    config._roofline_mutation = mp
    m = SLOW_ONE.match(name)
    if m:
        _plant_slow(mp, float(m.group(1)), None if m.group(2) == "all" else m.group(2))
    else:
        globals()[f"_plant_{name}"](mp)


def pytest_unconfigure(config):
    mp = getattr(config, "_roofline_mutation", None)
    if mp is not None:
        mp.undo()


def _wrap_builders(mp, change):
    """Apply ``change(kernel, args, kwargs)`` to every kernel the suite builds."""
    from roofline_kernels import ops
    import tests.validation.test_roofline_cases as cases
    for name in ("make_gemm", "make_attention"):
        orig = getattr(ops, name)

        def wrapped(*a, _orig=orig, **k):
            return change(_orig(*a, **k), _orig, a, k)
        for mod in (ops, cases):
            mp.setattr(mod, name, wrapped)


def _plant_bytes_2x(mp):
    from roofline import formats
    mp.setitem(formats.FORMATS, "int8", dataclasses.replace(formats.FORMATS["int8"], bits_per_element=4))


def _plant_bytes_over_2x(mp):
    from roofline import formats
    mp.setitem(formats.FORMATS, "int8", dataclasses.replace(formats.FORMATS["int8"], bits_per_element=16))


def _plant_int4_unpacked(mp):
    def change(kernel, orig, a, k):
        if kernel.cost.weight_format != "int4_tinygemm":
            return kernel
        plain = orig(*a, **{**k, "weight": "bf16", "act": "bf16"})  # the same weights, never packed
        return dataclasses.replace(kernel, call=plain.call, inputs=plain.inputs, operands=plain.operands,
                                   reference=plain.reference)
    _wrap_builders(mp, change)


def _plant_slow_3x(mp):
    _plant_slow(mp, 3.0, None)


def _plant_slow(mp, factor: float, precision: str | None):
    """``factor`` times the call's own duration, exactly, for one precision's kernels (label as in the case
    ids: int8, int8_bf16, bf16...) or all. (Calling it three times is not 3x: measured cold, the second and
    third calls find the operands the first one just read in cache: 1.6x seen for an int8 GEMV.)"""
    import time

    def change(kernel, orig, a, k):
        if precision is not None and kernel.precision.replace("/", "_") != precision:
            return kernel
        call = kernel.call

        def slow(inputs):
            t0 = time.perf_counter()
            out = call(inputs)
            end = t0 + factor * (time.perf_counter() - t0)
            while time.perf_counter() < end:
                pass
            return out
        return dataclasses.replace(kernel, call=slow)
    _wrap_builders(mp, change)


def _plant_wrong_values(mp):
    def change(kernel, orig, a, k):
        call = kernel.call
        return dataclasses.replace(kernel, call=lambda i: call(i) * 1.25)
    _wrap_builders(mp, change)


def _plant_hot_as_cold(mp):
    from roofline_kernels.ops import Kernel

    def rotation(self, min_total_bytes, max_total_bytes):
        copies = max(2, -(-min_total_bytes // max(1, self.input_bytes)))
        return [self.fn] * copies, self.input_bytes * copies  # claims the span, reuses one set
    mp.setattr(Kernel, "rotation", rotation)
