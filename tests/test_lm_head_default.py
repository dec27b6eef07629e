"""The theory's default LM-head format is what roofline_quantize/ really does to a model.

``roofline_quantize.apply.apply_quantization`` quantizes every ``nn.Linear`` it is not told to skip, the LM head
included, and never the ``nn.Embedding``. ``roofline.models`` therefore prices the LM head in the weight
format by default (``LM_HEAD_FOLLOWS_WEIGHTS``) and the embedding table in the residual format. If
roofline_quantize/ starts skipping the LM head (as GPTQ/AWQ pipelines do), this test fails until the default
follows. The CPU's packed INT4 layer needs no torchao kernel: one small model, quantized once.
"""
import pytest

torch = pytest.importorskip("torch")

from roofline_kernels.device import DeviceInfo, read_cpu_info  # noqa: E402
from roofline_quantize.apply import apply_quantization  # noqa: E402
from roofline_quantize.model import TinyConfig, build_tiny  # noqa: E402
from roofline.memory import weight_bytes  # noqa: E402
from roofline.models import step_formats  # noqa: E402

TINY = TinyConfig(dim=256, n_layers=2, n_heads=8, n_kv_heads=2, intermediate=512, vocab=1024, max_seq=64)


def test_the_default_lm_head_format_is_what_apply_quantization_stores():
    cpu = DeviceInfo("cpu", "cpu", "test CPU", "test", read_cpu_info("/nonexistent"))
    rep = apply_quantization(build_tiny(TINY), "int4", cpu)
    assert "output" in rep.quantized  # TinyLlama's LM head
    cfg = TINY.to_roofline()
    planned = weight_bytes(cfg, step_formats(cfg, weight=rep.weight_format, act="bf16"))  # lm_head: default
    assert sum(planned.values()) == pytest.approx(rep.predicted_bytes_after, rel=1e-12)
