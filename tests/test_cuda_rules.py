"""What the real CUDA stack refuses: refused by the product up front (``roofline_kernels.kernel.GEMM_RULES``) and by the
simulated devices at call time (``tests/fakes/cuda_rules.py``, a separate reading of the same sources).

The fakes used to accept whatever the CPU kernels accept (two E5M2 operands, M <= 16 for ``_int_mm``), so a path
CUDA refuses passed every simulated run and would have errored on the first board. Here every GEMM kernel on
every simulated GPU is either refused before it is built, naming the rule and its upstream file, or passes the
fakes' rules when it runs: never a backend error in the middle of a measurement.
"""
import dataclasses
import itertools

import pytest
import torch

from roofline_kernels.kernel import GEMM_RULES
from roofline_kernels.ops import GEMM_KERNELS, UnsupportedKernel, gemm_formats, gemm_refusal, make_gemm
from tests.fakes import cuda_rules
from tests.fakes.install import install_device
from tests.simulation import PROBE_MODULUS, probe_dims

pytest.importorskip("torchao", reason="torchao is not installed (extra 'gpu')")

GPUS = ["h100_sxm", "gb10", "b200", "a100", "rtx4090", "jetson_orin_nano"]


@pytest.fixture
def simulated(monkeypatch, tmp_path):
    def install(key):
        install_device(monkeypatch, key, tmp_path / key)
        return tuple(torch.cuda.get_device_capability())
    return install


# --- defect 1: E5M2 x E5M2 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["h100_sxm", "gb10", "b200", "rtx4090"])
def test_e5m2_times_e5m2_is_refused_with_cudas_rule_before_it_is_built(simulated, key):
    """ScaledBlas.cpp _scaled_mm_out_cuda: TORCH_CHECK_VALUE(... != Float8_e5m2 || ... != Float8_e5m2). The CPU's
    _scaled_mm accepts the pair, so the kernel used to build and then raise ValueError in its first call."""
    simulated(key)
    with pytest.raises(UnsupportedKernel) as e:
        make_gemm(256, 256, 256, precision="fp8_e5m2", device="cpu", target="cuda")
    assert "Multiplication of two Float8_e5m2 matrices is not supported" in e.value.why
    assert "aten/src/ATen/native/cuda/ScaledBlas.cpp _scaled_mm_out_cuda" in e.value.why
    # E5M2 paired with E4M3 is what cuBLASLt takes: it builds and runs
    k = make_gemm(256, 256, 256, weight="fp8_e5m2", act="fp8_e4m3", device="cpu", target="cuda")
    assert k.check() < 0.05


def test_the_cpu_still_runs_e5m2_times_e5m2():
    assert make_gemm(32, 64, 64, precision="fp8_e5m2", device="cpu").check() < 0.05


# --- the fakes refuse what CUDA refuses, raising what CUDA raises -----------------------------------------------

def test_the_fake_refuses_what_cuda_refuses(simulated):
    simulated("h100_sxm")
    one = torch.tensor(1.0)
    e5 = torch.randn(32, 64).to(torch.float8_e5m2)
    with pytest.raises(ValueError, match="Multiplication of two Float8_e5m2 matrices is not supported"):
        torch._scaled_mm(e5, e5.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    e4 = torch.randn(32, 64).to(torch.float8_e4m3fn)
    with pytest.raises(RuntimeError, match="Only multiplication of row-major and column-major"):
        torch._scaled_mm(e4, e4.t().contiguous(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="divisible by 16"):
        torch._scaled_mm(e4[:, :40], e4[:, :40].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    i8 = torch.ones(16, 64, dtype=torch.int8)
    with pytest.raises(RuntimeError, match="self.size\\(0\\) needs to be greater than 16, but got 16"):
        torch._int_mm(i8, i8.t())
    assert torch._int_mm(torch.ones(17, 64, dtype=torch.int8), i8.t()).shape == (17, 16)


def test_an_ampere_gpu_has_no_scaled_mm(simulated):
    simulated("a100")
    e4 = torch.randn(32, 64).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0)
    with pytest.raises(RuntimeError, match="compute capability >= 9.0 or 8.9"):
        torch._scaled_mm(e4, e4.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def test_every_rule_cites_its_upstream_file_and_probe_shapes_keep_every_verdict():
    for rule in cuda_rules.RULES:
        # PyTorch's own checks cite its file; cuBLASLt's, which PyTorch does not check, where they are documented
        assert rule.source.startswith(("aten/src/ATen/native/cuda/", "aten/src/ATen/native/GroupedMMUtils.h",
                                       "cuBLASLt (")), rule
        assert PROBE_MODULUS % rule.modulus == 0, rule  # a probe shape keeps the residue the rule tests
    for rule in GEMM_RULES:
        assert rule.source.startswith(("aten/src/ATen/native/cuda/", "torchao ")), rule
    # the product's shape verdicts are the same at the full shape and at its probe shape
    for m, n, k in itertools.product((1, 16, 17, 512, 2048), (4096, 4104, 11008, 4100), (4096, 14336, 4112, 1152, 4100)):
        pm, pn, pk = probe_dims(m, n, k)
        assert pm <= 32 and pn < 2 * PROBE_MODULUS and pk < 2 * PROBE_MODULUS
        for label, kwargs in GEMM_KERNELS:
            w, a, _ = gemm_formats(**kwargs)
            full, probe = (gemm_refusal(w, a, *dims, (10, 0)) for dims in ((m, n, k), (pm, pn, pk)))
            assert (full is None) == (probe is None), (label, m, n, k)


SHAPES = [(1, 256, 256), (32, 256, 272), (32, 264, 256), (17, 256, 288), (32, 256, 320), (16, 256, 1152)]


@pytest.mark.parametrize("key", GPUS)
def test_every_gemm_kernel_is_refused_up_front_or_runs_within_cudas_rules(simulated, key):
    """The product refuses (naming the rule) everything the fakes' own table would refuse at call time: a simulated
    board never meets a backend error mid-measurement, and neither should the real one."""
    cap = simulated(key)
    seen = {"built": 0, "refused": 0}
    for (m, n, k), (label, kwargs) in itertools.product(SHAPES, GEMM_KERNELS):
        try:
            kernel = make_gemm(m, n, k, device="cpu", target="cuda", **kwargs)
        except UnsupportedKernel as e:
            seen["refused"] += 1
            assert e.why and e.device == "cuda", e
            continue
        seen["built"] += 1
        if kernel.note.startswith("not probed"):
            assert "runs only on CUDA" in kernel.note, kernel.note
            continue
        try:
            kernel.check()
        except AssertionError:  # a wrong result is another test's business; here: no backend refusal
            pass
        except cuda_rules.SimulatedKernelUnavailable:
            pytest.fail(f"{label} at {m}x{n}x{k} on {key}: an FP4 kernel that is not marked 'not probed'")
        except Exception as e:  # noqa: BLE001 - any backend error is the failure this test exists for
            rule = getattr(e, "cuda_rule", None)
            pytest.fail(f"{label} at {m}x{n}x{k} on {key} (sm_{cap[0]}{cap[1]}) was built but CUDA refuses it: "
                        f"{type(e).__name__}: {e} ({rule.source if rule else 'no rule'})")
    assert seen["built"] and seen["refused"]


def test_gemm_rules_are_one_table_for_both_modules():
    """ops.py and torchao_paths.py used to repeat the FP8 rule and the sm_89 gate; both now read GEMM_RULES."""
    from roofline_kernels import torchao_paths as tp
    assert tp.arch_refusal("fp8_e4m3", "fp8_e4m3", (8, 7)) == gemm_refusal("fp8_e4m3", "fp8_e4m3", capability=(8, 7),
                                                                            kinds=("arch",))
    assert tp.shape_refusal("nvfp4", "nvfp4", 256, 272) == gemm_refusal("nvfp4", "nvfp4", None, 256, 272,
                                                                         kinds=("shape",))
    paths = {r.path for r in GEMM_RULES}
    assert paths == {"fp8", "int8", "nvfp4", "mxfp4", "tinygemm"}
    assert all(dataclasses.is_dataclass(r) and r.kind in ("arch", "dtype", "shape") for r in GEMM_RULES)


def test_an_attention_cuda_refuses_is_refused_before_any_tensor_is_made(simulated, monkeypatch):
    """The efficiency sweep tries the attention grid's shapes, 96 of whose 144 group KV heads, which fp32 SDPA on
    CUDA has no fused kernel for: each was refused only after its Q, K and V were drawn (up to 67M floats)."""
    import roofline_kernels.ops as ops
    simulated("h100_sxm")
    monkeypatch.setattr(ops, "_rand", lambda *a, **k: pytest.fail("a tensor was made for a kernel CUDA refuses"))
    with pytest.raises(UnsupportedKernel, match="grouped KV heads"):
        ops.make_attention(4, 32, 4, 1, 8192, 128, "fp32", device="cpu", target="cuda")
    with pytest.raises(UnsupportedKernel, match="chunked prefill"):
        ops.make_attention(1, 32, 32, 16, 64, 64, "bf16", device="cpu", target="cuda")


# --- torch._grouped_mm: the fused MoE kernel where CUDA runs it, the experts' own kernels elsewhere -------------------

@pytest.mark.parametrize("key, fused", [("h100_sxm", True), ("b200", True), ("gb10", False), ("rtx4090", False),
                                        ("a100", False)])
def test_a_bf16_grouped_gemm_takes_the_fused_kernel_only_where_cuda_has_one(simulated, key, fused):
    """GroupedBlas.cpp runs torch._grouped_mm's fused CUTLASS kernel for bf16 on sm_90 and sm_100 only; elsewhere it
    falls back to a loop of mm with a host sync, so the experts run as their own kernels there, and the path says why.
    Either way the call passes the fakes' rules (GroupedMMUtils.h, GroupMM.cu)."""
    from roofline_kernels.ops import make_grouped_gemm
    simulated(key)
    kernel = make_grouped_gemm(4, 2, 256, 512, precision="bf16", target="cuda")
    assert kernel.path.startswith("torch._grouped_mm (fused CUTLASS grouped GEMM: 4 experts in one call)") == fused, \
        kernel.path
    assert kernel.launches == (2 if fused else 4)  # prepare_grouped_gemm_data and the GEMM (GroupMM.cu): a CUDA graph
    if not fused:
        assert "not torch._grouped_mm's fused kernel" in kernel.path and "GroupedBlas.cpp" in kernel.path
    assert kernel.check() < 0.05  # it runs, within CUDA's rules, and agrees with its experts' own products


@pytest.mark.parametrize("groups, k, why", [(1024, 512, "fewer than 1024 groups"), (4, 516, "16 bytes")])
def test_a_grouped_gemm_the_fused_kernel_refuses_runs_as_its_experts_kernels(simulated, groups, k, why):
    from roofline_kernels.ops import make_grouped_gemm
    simulated("h100_sxm")
    kernel = make_grouped_gemm(groups, 1, 16, k, precision="bf16", target="cuda")
    assert kernel.path.startswith(f"{groups} x ") and why in kernel.path, kernel.path


@pytest.mark.parametrize("groups, k, says", [(1024, 512, "Can't process more than 1024 groups"),
                                             (4, 516, "strides should be multiple of 16 bytes")])
def test_the_fake_refuses_what_grouped_mm_refuses(simulated, groups, k, says):
    simulated("h100_sxm")
    x = torch.zeros(groups, k, dtype=torch.bfloat16)
    w = torch.zeros(groups, 16, k, dtype=torch.bfloat16).transpose(-2, -1)
    offs = torch.arange(1, groups + 1, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=says):
        torch._grouped_mm(x, w, offs=offs)
    with pytest.raises(RuntimeError, match="Expected mat_a to be Float32, BFloat16 or Float16 matrix"):
        torch._grouped_mm(x.to(torch.int8), w.to(torch.int8), offs=offs)


def test_a_rocm_build_never_takes_cudas_fused_grouped_kernel(simulated, monkeypatch):
    """An MI300 reports capability 9.4, which the sm_90 rule alone would take for Hopper; GroupedBlas.cpp's fast path
    is CUDA's, so a ROCm build runs the experts as their own kernels."""
    from roofline_kernels.kernel import grouped_mm_refusal
    from roofline_kernels.ops import make_grouped_gemm
    simulated("h100_sxm")
    assert grouped_mm_refusal("bf16", "bf16", 4, 512, (9, 4)) is None  # what the capability alone says
    monkeypatch.setattr(torch.version, "hip", "6.2.0", raising=False)
    assert grouped_mm_refusal("bf16", "bf16", 4, 512, (9, 4)).startswith("a ROCm build")
    kernel = make_grouped_gemm(4, 2, 256, 512, precision="bf16", target="cuda")
    assert kernel.path.startswith("4 x ") and "a ROCm build" in kernel.path, kernel.path


def test_grouped_experts_that_would_not_fit_the_boards_memory_are_refused_before_building(simulated, monkeypatch):
    """A grouped kernel on the GPU is built on the host and stored on the device: both must have room, the device's
    from ``torch.cuda.mem_get_info`` (the simulated H100 reports its 80 GB free; here a board with 2 GiB left)."""
    from roofline_kernels.ops import GROUPED_BUILD_BYTES, GROUPED_MEMORY_FRACTION, check_grouped_room
    simulated("h100_sxm")
    assert torch.cuda.mem_get_info()[0] > 10**10  # the fake board reports its memory free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 80 * 10**9))
    one = GROUPED_BUILD_BYTES * (4096 * 4096 + 4096 + 4096)
    fits = int(GROUPED_MEMORY_FRACTION * 2 * 2**30 // one)
    assert fits >= 2
    check_grouped_room(fits, 1, 4096, 4096, "cuda")  # room on the board (and on any host with 2 GiB available)
    with pytest.raises(ValueError, match=rf"groups={fits + 1}: .* allowed here: groups <= {fits}$"):
        check_grouped_room(fits + 1, 1, 4096, 4096, "cuda")  # the board's memory refuses it, whatever the host has



# --- rules a read of ScaledBlas.cpp (0174dfab), GroupedMMUtils.h and cuBLASLt's layouts added (stop 41 audit) ------

def _e4(m=32, k=64):
    return torch.randn(m, k).to(torch.float8_e4m3fn)


@pytest.mark.parametrize("key, refused", [("h100_sxm", "Only multiplication of row-major"),
                                          ("rtx4090", "CUBLAS_STATUS_NOT_SUPPORTED"),
                                          ("gb10", "CUBLAS_STATUS_NOT_SUPPORTED"), ("b200", None)])
def test_fp8_layouts_are_held_to_what_each_arch_takes(simulated, key, refused):
    """_scaled_gemm checks TN itself on sm_90 only, for F.scaled_mm as for torch._scaled_mm (both reach it);
    cuBLASLt refuses a non-TN FP8 layout on sm_89 and sm_12x and takes it on Blackwell's sm_10x."""
    import torch.nn.functional as F
    one = torch.tensor(1.0)
    a, b_row = _e4(), _e4(64, 32)  # b row-major: an NN layout
    simulated(key)
    calls = [lambda: torch._scaled_mm(a, b_row, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)]
    if hasattr(F, "scaled_mm"):
        calls.append(lambda: F.scaled_mm(a, b_row, one, F.ScalingType.TensorWise, one, F.ScalingType.TensorWise))
    for call in calls:
        if refused:
            with pytest.raises(RuntimeError, match=refused):
                call()
        else:
            assert call().shape == (32, 32)
    # the TN layout the product builds runs everywhere that has FP8
    assert torch._scaled_mm(a, _e4().t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16).shape == (32, 32)


def test_scaled_mm_bias_rules(simulated):
    simulated("h100_sxm")
    one = torch.tensor(1.0)
    a, b = _e4(), _e4().t()
    for bias, out, says in ((torch.zeros(32, dtype=torch.bfloat16), torch.float32, "Bias is not supported when "
                             "out_dtype is set to Float32"),
                            (torch.zeros(32), torch.bfloat16, "Bias must be BFloat16 or Half"),
                            (torch.zeros(32, dtype=torch.float16), torch.bfloat16, "Bias must be BFloat16 to compute"),
                            (torch.zeros(32, dtype=torch.bfloat16), torch.float16, "Bias must be Float16 to compute")):
        with pytest.raises(RuntimeError, match=says):
            torch._scaled_mm(a, b, scale_a=one, scale_b=one, bias=bias, out_dtype=out)
    assert torch._scaled_mm(a, b, scale_a=one, scale_b=one, bias=torch.zeros(32, dtype=torch.bfloat16),
                            out_dtype=torch.bfloat16).shape == (32, 32)


def test_scaled_mm_v2_raises_what_v2_raises(simulated):
    import torch.nn.functional as F
    if not hasattr(F, "scaled_mm"):
        pytest.skip("this torch has no F.scaled_mm")
    simulated("h100_sxm")
    one = torch.tensor(1.0)
    bf = torch.randn(32, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="Expected mat_a to be Float8 or Float4_x2 matrix"):  # TORCH_CHECK_VALUE
        F.scaled_mm(bf, bf.t(), one, F.ScalingType.TensorWise, one, F.ScalingType.TensorWise)
    with pytest.raises(ValueError, match="Bias must be BFloat16 or Half"):
        F.scaled_mm(_e4(), _e4().t(), one, F.ScalingType.TensorWise, one, F.ScalingType.TensorWise,
                    bias=torch.zeros(32))
    with pytest.raises(RuntimeError, match="Invalid scaling configuration"):  # v1 refuses in get_joint_scaling
        torch._scaled_mm(bf, bf.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def test_only_the_mx_recipe_is_held_to_b200s_fp4_arch(simulated):
    """_check_mxfp4_support is _scaled_mxfp4_mxfp4's (e8m0 block scales); NVFP4 (e4m3 block scales) has no arch check
    of PyTorch's: on a GB10 it passes every rule (and the CPU then has no FP4 kernel)."""
    import torch.nn.functional as F
    if not hasattr(F, "scaled_mm") or not hasattr(torch, "float8_e8m0fnu"):
        pytest.skip("this torch has no F.scaled_mm or e8m0")
    simulated("gb10")
    a = torch.zeros(128, 32, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    b = torch.zeros(128, 32, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).t()
    mx = torch.ones(128 * 4, dtype=torch.float8_e8m0fnu)
    nv = torch.ones(128 * 4, dtype=torch.float8_e4m3fn)
    with pytest.raises(NotImplementedError, match="MXFP4 scaling only supported in CUDA for B200/B300"):
        F.scaled_mm(a, b, mx, F.ScalingType.BlockWise1x32, mx, F.ScalingType.BlockWise1x32)
    with pytest.raises(cuda_rules.SimulatedKernelUnavailable):
        F.scaled_mm(a, b, nv, F.ScalingType.BlockWise1x16, nv, F.ScalingType.BlockWise1x16)


def test_grouped_mm_refuses_an_operand_off_16_byte_alignment(simulated):
    simulated("h100_sxm")
    w = torch.randn(2, 64, 32, dtype=torch.bfloat16).transpose(-2, -1)
    base = torch.randn(64 * 40 + 8, dtype=torch.bfloat16)
    off = base[1:1 + 64 * 40].view(40, 64)  # 2 bytes past an aligned start
    offs = torch.tensor([20, 40], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="expected data_ptr to be aligned to 16 bytes"):
        torch._grouped_mm(off, w.transpose(-2, -1).transpose(-2, -1), offs=offs)


@pytest.mark.parametrize("key", GPUS)
def test_the_early_refusal_on_a_board_is_its_builders(simulated, key):
    """``refuse_unbuildable`` (what a single ``measure`` on a real board asks before its calibration) refuses on CUDA
    what ``make_gemm`` refuses there, in its words, and passes what it builds (a tensorless check of CUDA's rules, at
    the capability of the board present): every GEMM kernel at every shape of the table above."""
    from roofline_kernels.ops import refuse_unbuildable
    simulated(key)
    outcomes = set()
    for (m, n, k), (label, kwargs) in itertools.product(SHAPES, GEMM_KERNELS):
        try:
            make_gemm(m, n, k, device="cpu", target="cuda", **kwargs)
            built = "builds"
        except UnsupportedKernel as e:
            built = str(e)
        try:
            refuse_unbuildable("gemm", {"m": m, "n": n, "k": k}, kwargs, "cuda")
            early = "builds"
        except UnsupportedKernel as e:
            early = str(e)
        assert early == built, (label, (m, n, k))
        outcomes.add(early == "builds")
    assert outcomes == {True, False}  # some refused early, some pass: the check is exercised both ways
