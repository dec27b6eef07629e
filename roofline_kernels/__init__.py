"""Measurement: device detection, a do_bench-grade timer, per-precision kernels, calibration, telemetry.

Byte and FLOP counts come from ``roofline`` (one formula in one place); this package only measures.
"""
