"""Bounded Hypothesis strategies shared by the property tests."""
from hypothesis import strategies as st

from roofline import FORMATS, REGISTRY, compute_path
from roofline.predict import UnsupportedPathError

# Dimensions up to 2**20 keep products far from float64's exact-integer limit while covering
# everything from a single token to long contexts.
dims = st.integers(min_value=1, max_value=2**20)
small_dims = st.integers(min_value=1, max_value=2**12)
# Every legal dimension (roofline.operators.MAX_DIM): products of four of these overflow int64.
large_dims = st.integers(min_value=1, max_value=2**31 - 1)
format_names = st.sampled_from(sorted(FORMATS))
# Entries with datasheet peaks and bandwidth (the bare host CPU entry needs a calibration).
hardware_keys = st.sampled_from(sorted(k for k, hw in REGISTRY.items() if hw.peaks and hw.bandwidth))


def runnable(hw_key, weight, act) -> bool:
    try:
        compute_path(hw_key, weight, act)
        return True
    except UnsupportedPathError:
        return False


@st.composite
def runnable_pair(draw):
    """(hardware, weight format, activation format) that has a math path on that hardware."""
    hw = draw(hardware_keys)
    weight = draw(format_names)
    act = draw(st.sampled_from(sorted(a for a in FORMATS if runnable(hw, weight, a))) if any(
        runnable(hw, weight, a) for a in FORMATS) else st.just("fp16"))
    if not runnable(hw, weight, act):
        weight, act = "fp16", "fp16"
    return hw, weight, act
