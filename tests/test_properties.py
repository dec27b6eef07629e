"""Hypothesis properties of the byte/FLOP math and the roofline."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from roofline import attention, gemm, gemv, get_format, predict, sweep_attention, sweep_gemm
from tests.strategies import dims, format_names, hardware_keys, large_dims, runnable_pair, small_dims


@given(runnable_pair(), dims, dims, dims, st.sampled_from(["m", "n", "k"]), st.integers(1, 2**10))
def test_gemm_bytes_and_time_never_decrease_as_a_dim_grows(pair, m, n, k, which, grow):
    hw, w, a = pair
    before = predict(gemm(m, n, k, weight=w, act=a), hw)
    bigger = {"m": m, "n": n, "k": k}
    bigger[which] += grow
    after = predict(gemm(weight=w, act=a, **bigger), hw)
    assert after.bytes >= before.bytes
    assert after.flops >= before.flops
    assert after.time_s >= before.time_s


@given(hardware_keys, small_dims, st.integers(1, 64), st.sampled_from([1, 2, 4, 8]), small_dims, small_dims,
       st.sampled_from([64, 128]), st.sampled_from(["batch", "heads", "seq_q", "seq_kv", "head_dim"]))
def test_attention_bytes_and_time_never_decrease_as_a_dim_grows(hw, batch, groups, kv_heads, seq_a, seq_b, head_dim,
                                                                which):
    seq_q, seq_kv = min(seq_a, seq_b), max(seq_a, seq_b)
    args = dict(batch=batch, heads=kv_heads * groups, kv_heads=kv_heads, seq_q=seq_q, seq_kv=seq_kv,
                head_dim=head_dim)
    before = predict(attention(**args, precision="fp16"), hw)
    if which == "heads":
        args["heads"] += kv_heads  # stay a multiple of kv_heads
    elif which == "seq_q":
        args["seq_q"] += 1
        args["seq_kv"] += 1  # a longer prompt: one more query and one more key
    else:
        args[which] += 1
    after = predict(attention(**args, precision="fp16"), hw)
    assert after.bytes >= before.bytes and after.flops >= before.flops and after.time_s >= before.time_s


@given(format_names, format_names, dims, dims, dims)
def test_fewer_bits_never_move_more_bytes(f1, f2, m, n, k):
    a, b = get_format(f1), get_format(f2)
    assume(a.bits_per_element < b.bits_per_element)
    # NVFP4's one FP32 scale per tensor is amortised only past a few dozen elements.
    assume(k * n >= 64)
    assert gemm(m, n, k, weight=a, act="fp16").bytes <= gemm(m, n, k, weight=b, act="fp16").bytes


@given(format_names, format_names, dims, dims)
def test_gemv_ai_stays_below_two_over_bytes_per_weight(w, a, n, k):
    cost = gemv(n, k, weight=w, act=a)
    assert cost.ai < 2.0 / get_format(w).bytes_per_element


@given(st.sampled_from(["fp32", "fp16", "bf16", "fp8_e4m3", "int8"]), dims, dims, dims)
def test_gemm_ai_is_symmetric_in_m_and_n_when_all_operands_share_a_format(fmt, m, n, k):
    one = gemm(m, n, k, weight=fmt, act=fmt, out=fmt)
    other = gemm(n, m, k, weight=fmt, act=fmt, out=fmt)
    assert one.flops == other.flops and one.bytes == other.bytes and one.ai == other.ai


@given(runnable_pair(), dims, dims, dims)
def test_bound_agrees_with_ai_versus_critical_ai(pair, m, n, k):
    hw, w, a = pair
    p = predict(gemm(m, n, k, weight=w, act=a), hw)
    assume(abs(p.ai / p.critical_ai - 1) > 1e-9)  # exact ties are a matter of rounding
    assert p.bound == ("compute" if p.ai > p.critical_ai else "memory")
    assert p.time_s == max(p.t_memory_s, p.t_compute_s)
    assert p.attainable_tflops <= p.peak_tflops * (1 + 1e-12)


@given(runnable_pair(), st.lists(st.tuples(dims, dims, dims), min_size=1, max_size=20))
def test_vectorised_and_scalar_paths_agree_exactly(pair, shapes):
    hw, w, a = pair
    arr = np.array(shapes, dtype=np.int64)
    vec = sweep_gemm(arr[:, 0], arr[:, 1], arr[:, 2], hw, weight=w, act=a)
    for i, (m, n, k) in enumerate(shapes):
        p = predict(gemm(m, n, k, weight=w, act=a), hw)
        assert (vec["flops"][i], vec["bytes"][i], vec["time_s"][i], vec["t_memory_s"][i], vec["t_compute_s"][i]) == \
               (p.flops, p.bytes, p.time_s, p.t_memory_s, p.t_compute_s)
        assert vec["bound"][i] == p.bound


@given(hardware_keys, st.lists(st.tuples(small_dims, st.sampled_from([1, 2, 4]), small_dims, small_dims),
                               min_size=1, max_size=10))
def test_vectorised_attention_agrees_with_scalar(hw, rows):
    shapes = [(b, 8 * g, 8, min(s1, s2), max(s1, s2), 128) for b, g, s1, s2 in rows]
    arr = np.array(shapes)
    vec = sweep_attention(*arr.T, hw, precision="fp16")
    for i, s in enumerate(shapes):
        p = predict(attention(*s, precision="fp16"), hw)
        assert (vec["flops"][i], vec["bytes"][i], vec["time_s"][i]) == (p.flops, p.bytes, p.time_s)


@given(runnable_pair(), st.lists(st.tuples(large_dims, large_dims, large_dims), min_size=1, max_size=8))
def test_gemm_at_any_legal_size_matches_exact_integer_bytes(pair, shapes):
    hw, w, a = pair
    arr = np.array(shapes, dtype=np.int64)
    vec = sweep_gemm(arr[:, 0], arr[:, 1], arr[:, 2], hw, weight=w, act=a)
    for i, (m, n, k) in enumerate(shapes):
        p = predict(gemm(m, n, k, weight=w, act=a), hw)
        assert (vec["flops"][i], vec["bytes"][i], vec["time_s"][i]) == (p.flops, p.bytes, p.time_s)
        wf, af, of = get_format(w), get_format(a), get_format(p.out_format)
        exact = sum((wf.bits_per_element * k * n + wf.per_tensor_bits, af.bits_per_element * m * k + af.per_tensor_bits,
                     of.bits_per_element * m * n + of.per_tensor_bits)) / 8  # Python ints: no wrap-around
        assert p.bytes == pytest.approx(exact, rel=1e-12)


@st.composite
def large_attention_shapes(draw):
    kv_heads = draw(large_dims)
    heads = kv_heads * draw(st.integers(1, (2**31 - 1) // kv_heads))
    seq = sorted((draw(large_dims), draw(large_dims)))
    return draw(large_dims), heads, kv_heads, seq[0], seq[1], draw(large_dims)


@given(hardware_keys, st.lists(large_attention_shapes(), min_size=1, max_size=8))
def test_attention_at_any_legal_size_agrees_with_scalar_and_exact_bytes(hw, shapes):
    """Four int64 dimensions multiplied in the vectorised path wrapped around (0 bytes at 2**16 each)."""
    vec = sweep_attention(*np.array(shapes, dtype=np.int64).T, hw, precision="fp16")
    for i, (b, h, hkv, sq, skv, d) in enumerate(shapes):
        p = predict(attention(b, h, hkv, sq, skv, d, precision="fp16"), hw)
        assert (vec["flops"][i], vec["bytes"][i], vec["time_s"][i]) == (p.flops, p.bytes, p.time_s)
        exact_bytes = 2 * (2 * b * h * sq * d + 2 * b * hkv * skv * d)  # fp16 Q, O, K, V in Python ints
        assert p.bytes == pytest.approx(exact_bytes, rel=1e-12)
        exact_pairs = sq * skv - sq * (sq - 1) // 2  # causal: integer, since sq * (sq - 1) is even
        assert p.flops == pytest.approx(4 * b * h * exact_pairs * d, rel=1e-12)
