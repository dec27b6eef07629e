"""Every prediction the theory's CLI prints stays the same while the code beneath it moves (issue 20).

``tests/golden/theory_cli.json`` holds the stdout, exit status and stderr of each command line below, as
the CLI printed them before the architecture step. The theory is pure (no clock, no host, no store), so
the outputs are byte-for-byte repeatable. After an *intended* change to an output, regenerate and review
the diff: ``python -c 'from tests.test_golden_cli import update_golden; update_golden()'``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from roofline.__main__ import main

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "theory_cli.json"
# relative to the repository root, where the commands run: a profile's path is part of the output, and the
# output must not depend on where the checkout lies
HW_FILE = "tests/golden/edge_asic.json"
CAL_FILE = "tests/golden/edge_asic_calibration.json"

COMMANDS = [
    "formats", "formats --json", "hardware", "hardware --json", "hardware gb10", "hardware jetson_orin_nano_super --json",
    "hardware h200",
    "predict gemv", "predict gemv --json", "predict gemm --m 2048 --n 4096 --k 4096 --precision fp8_e4m3 --hardware h100_sxm",
    "predict gemm --m 16 --weight-precision int4_tinygemm --act-precision bf16 --hardware a100 --json",
    "predict gemv --precision nvfp4 --hardware b200", "predict gemv --precision mxfp4 --hardware gb10 --json",
    "predict attention --phase decode --seq-kv 4096 --hardware h200",
    "predict attention --phase prefill --seq-kv 2048 --kv-precision fp8_e4m3 --hardware h100_sxm --json",
    "predict ffn --m 64 --hardware jetson_agx_orin --precision int8",
    "predict layer --model llama3-8b --phase prefill --seq-kv 512 --hardware gb10",
    "predict model --model llama3-8b --hardware jetson_orin_nano_super --precision int4_tinygemm",
    "predict model --model llama3-8b --hardware gb10 --json",
    "predict model --model gpt-oss-20b --hardware gb10",
    "predict model --model gpt-oss-20b --hardware h100_sxm --deployment vllm-mxfp4",
    "predict model --model gpt-oss-20b --hardware gb10 --deployment vllm-mxfp4 --json",
    "predict gemv --hardware-file {hw_file} --hardware edge_asic --precision int8 --calibration {cal_file} --json",
    "predict gemv --hardware jetson_orin_nano_super --power-mode 15W",
    "predict gemm --m 256 --hardware h100_sxm --gpu-clock-mhz 1200 --active-sms 100 --mem-clock-mhz 2000 --json",
    "predict gemm --m 256 --hardware jetson_agx_orin --gpu-clock-mhz 600 --active-sms 12 --mem-clock-mhz 2000 --json",
    "predict gemv --hardware jetson_orin_nano --power-mode bogus",
    "predict gemv --n 0",
    "predict gemv --hardware-file {hw_file} --hardware edge_asic --precision int8",
    "recommend", "recommend --m 1024 --hardware h100_sxm --json", "recommend --model llama3-8b --hardware jetson_orin_nano_super",
    "recommend --model llama3-8b --hardware gb10 --phase prefill --context 2048 --json",
    "sweep", "sweep --format csv --hardware gb10,h100_sxm", "sweep --format json --hardware jetson_agx_orin",
    "energy gemv --hardware jetson_orin_nano_super --power-mode 7W",
    "energy gemv --hardware jetson_orin_nano_super --power-mode 25W --precision int8",
    "energy model --hardware jetson_agx_orin --json",
    "schedule", "schedule --target latency --json", "schedule --hardware jetson_agx_orin --target throughput --batch 1,8",
]


def _run(line: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    argv = line.format(hw_file=HW_FILE, cal_file=CAL_FILE).split()
    here = os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stderr(err):
            rc = main(argv, out=out)
    finally:
        os.chdir(here)
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


@pytest.mark.parametrize("line", COMMANDS)
def test_theory_output_is_unchanged(line, isolated_registry):
    golden = json.loads(GOLDEN.read_text())
    assert line in golden, f"no golden output for {line!r}: regenerate (see the module docstring)"
    assert _run(line) == golden[line]


def test_the_golden_file_covers_every_command_and_nothing_stale():
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(COMMANDS)
    from roofline.cli import build_parser
    theory = set(build_parser()._subparsers._group_actions[0].choices) - {"report"}  # report reads archived runs
    assert theory <= {line.split()[0] for line in COMMANDS}


def test_a_changed_output_is_caught(monkeypatch, isolated_registry):
    """The comparison can fail: a 1% faster bandwidth on gb10 changes a golden prediction."""
    import dataclasses
    from roofline.hardware import REGISTRY
    hw = REGISTRY["gb10"]
    monkeypatch.setitem(REGISTRY, "gb10", dataclasses.replace(hw, bandwidth=dataclasses.replace(
        hw.bandwidth, value=hw.bandwidth.value * 1.01)))
    assert _run("predict gemv") != json.loads(GOLDEN.read_text())["predict gemv"]


def update_golden():
    golden = {}
    for line in COMMANDS:
        golden[line] = _run(line)
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
