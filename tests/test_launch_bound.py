"""Paths that launch several kernels per call are timed from a CUDA graph, not per call with events.

torchao's tensor subclasses dispatch a dozen aten ops per call (NVFP4's activation quantization, tinygemm's cast, pad,
mm, slice), each with its host dispatch. Timed per call with an event pair, a microsecond GEMV on an H100 or GB10
measures the host issuing those launches, not the kernels. The launches are counted on the CPU with a dispatch
mode (``kernel.count_launches``), and ``measure_kernel`` replays such a kernel from a CUDA graph (one host launch per
call); where capture fails it is timed eagerly and its record says LAUNCH-BOUND.
"""
import dataclasses

import pytest

from roofline import gemv, get_hardware
from roofline_kernels.device import detect
from roofline_kernels.measure import measure_kernel
from roofline_kernels.ops import Kernel, count_launches, make_gemm
from tests.fakes.cuda import install_fake_cuda_events


def _gpu_info():
    return dataclasses.replace(detect(), kind="cuda", hardware_key="h100_sxm", name="fake H100")


def _kernel(call, launches):
    return Kernel("gemv", "bf16", "cuda", lambda i: call(), {}, lambda: None, gemv(4096, 4096, precision="bf16"),
                  "a torchao-like subclass path", launches=launches)


def test_a_multi_launch_path_is_timed_from_a_cuda_graph_not_from_its_host_dispatch(monkeypatch):
    stream = install_fake_cuda_events(monkeypatch)
    # 15 launches of 2 us on the device, each costing the host 20 us of dispatch: per call with events, ~300 us
    k = _kernel(stream.kernel(2e-6, launches=15, host_s=20e-6), launches=15)
    m = measure_kernel(k, _gpu_info(), get_hardware("h100_sxm"), "hot", "datasheet", warmup_ms=2, rep_ms=5,
                       with_telemetry=False)
    assert m.timing.cuda_graph and m.timing.median_s < 100e-6  # the kernels' 30 us, not the host's 300
    eager = measure_kernel(dataclasses.replace(k, launches=1), _gpu_info(), get_hardware("h100_sxm"), "hot",
                           "datasheet", warmup_ms=2, rep_ms=5, with_telemetry=False)
    assert not eager.timing.cuda_graph and eager.timing.median_s > 250e-6  # what events around the call measure


def test_a_path_graphs_cannot_capture_is_timed_eagerly_and_says_launch_bound(monkeypatch):
    stream = install_fake_cuda_events(monkeypatch)
    run = stream.kernel(2e-6, launches=4)

    def call():
        if stream.capturing is not None:
            raise RuntimeError("operation not permitted when stream is capturing")
        run()
    m = measure_kernel(_kernel(call, launches=4), _gpu_info(), get_hardware("h100_sxm"), "hot", "datasheet",
                       warmup_ms=1, rep_ms=2, with_telemetry=False)
    assert not m.timing.cuda_graph and "LAUNCH-BOUND: 4 launches per call" in m.cold_note


def test_launches_are_counted_on_the_cpu(monkeypatch, tmp_path):
    from tests.fakes.install import install_device
    assert count_launches(make_gemm(1, 256, 256, precision="bf16").fn) == 1
    install_device(monkeypatch, "gb10", tmp_path)
    nvfp4 = make_gemm(1, 256, 256, precision="nvfp4", device="cpu", target="cuda")
    assert nvfp4.launches >= 10  # the activation's NVFP4 quantization, op by op, then the GEMM
    assert make_gemm(1, 256, 256, precision="bf16", device="cpu", target="cuda").launches == 1
