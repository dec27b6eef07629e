"""Formats: exact bits per element (shared/reference/hardware.md) and name lookup."""
import math

import pytest

from roofline import FORMATS, get_format, tensor_bytes


@pytest.mark.parametrize("name, bits", [
    ("fp32", 32), ("tf32", 32), ("fp16", 16), ("bf16", 16), ("fp8_e4m3", 8), ("fp8_e5m2", 8), ("int8", 8),
    ("int4", 4), ("mxfp8", 8.25), ("mxfp6", 6.25), ("mxfp4", 4.25),
    ("nvfp4", 4.5),          # not the 4.53 of older write-ups: 4 + 8/16, plus one FP32 per tensor
    ("nf4", 4.5),            # not 4.25: 4 + 32/64
    ("int4_g128", 4.15625),  # FP16 scale + int4 zero per 128
    ("int4_tinygemm", 4.25),  # bf16 scale + bf16 zero per 128
])
def test_bits_per_element_match_the_reference(name, bits):
    assert get_format(name).bits_per_element == bits


def test_nf4_double_quant_is_about_4_127_bits():
    assert math.isclose(get_format("nf4_dq").bits_per_element, 4.127, abs_tol=5e-4)


def test_nvfp4_tensor_carries_one_fp32_scale():
    assert tensor_bytes("nvfp4", 4096 * 4096) == 4096 * 4096 * 4.5 / 8 + 4
    assert tensor_bytes("mxfp4", 4096 * 4096) == 4096 * 4096 * 4.25 / 8


@pytest.mark.parametrize("alias, name", [("Half", "fp16"), ("float16", "fp16"), ("BFLOAT16", "bf16"),
                                         ("e4m3", "fp8_e4m3"), ("float8_e5m2", "fp8_e5m2"), ("FP32", "fp32"),
                                         ("gptq", "int4_g128"), ("nv-fp4", "nvfp4")])
def test_aliases_are_case_insensitive(alias, name):
    assert get_format(alias).name == name


@pytest.mark.parametrize("bad", ["fp9", "", "int3", "float64"])
def test_unknown_format_lists_the_known_names(bad):
    with pytest.raises(ValueError) as e:
        get_format(bad)
    assert repr(bad) in str(e.value)
    for name in FORMATS:
        assert name in str(e.value)


def test_storage_only_formats_have_no_math_of_their_own():
    assert {f.name for f in FORMATS.values() if f.compute_class is None} == \
           {"nf4", "nf4_dq", "int4_g128", "int4_tinygemm", "int32", "q8_0"}


def test_scales_add_under_one_bit_per_element_so_element_bits_are_the_values_bits():
    """The accuracy tie-break (roofline.recommend.accuracy_rank) compares each value's bits, scales left out:
    NVFP4's 4.5 stored bits and weight-only INT4's 4.25 are both 4-bit values."""
    for f in FORMATS.values():
        assert 0 <= f.bits_per_element - f.element_bits < 1, f.name
    assert get_format("nvfp4").element_bits == get_format("int4_tinygemm").element_bits == 4
    assert get_format("q8_0").bits_per_element == 8.5 and get_format("mxfp6").element_bits == 6


def test_only_the_ocp_mx_formats_share_the_e8m0_per_32_scale():
    """The block scale decides which formats may feed one block-scaled MMA (roofline.predict.compute_path)."""
    from roofline.formats import MX_BLOCK_SCALE
    assert {f.name for f in FORMATS.values() if f.block_scale == MX_BLOCK_SCALE} == {"mxfp4", "mxfp6", "mxfp8"}
    assert get_format("nvfp4").block_scale == "e4m3/16" and get_format("fp8_e4m3").block_scale == ""
