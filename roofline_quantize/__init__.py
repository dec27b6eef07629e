"""Quantization: torchao configs per device, apply with a report, recommend -> quantize -> measure.

Byte predictions come from ``roofline.formats``; timing from ``roofline_kernels.timer``.
"""
