"""``.ci/device-check``: the first real GPU run, prepared as one call of scarce device time. A flag the CLI or the
suite no longer takes would spend that call on a usage error, so each command it runs is checked here against
the parsers as they stand (nothing is run: the script itself was tried on a CPU, docs/measurements.md)."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "device-check"


VALUES = {"OUT": "/tmp/device-check-out", "MARKER": "cpu"}  # the script's shell variables, as a CPU would set them


def _commands(tool: str) -> list[list[str]]:
    """The argv after ``python3 -m TOOL`` of each such command in the script (continued lines joined; its shell
    variables given ``VALUES``)."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        m = re.search(rf"python3 -m {tool} (.*)$", line)
        if m and not line.lstrip().startswith("#"):
            out.append([re.sub(r"\$\{?(\w+)\}?", lambda v: VALUES[v.group(1)], tok) for tok in shlex.split(m.group(1))])
    return out


def test_the_script_parses_as_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.parametrize("argv", _commands("roofline"), ids=lambda a: " ".join(a[:2]))
def test_each_roofline_command_it_runs_is_one_the_cli_takes(argv):
    from roofline.__main__ import layers
    from roofline.cli import build_parser
    args = build_parser(layers()).parse_args(argv)  # a flag it no longer takes: SystemExit 2 here
    assert args.command == argv[0]


def test_the_pytest_options_it_passes_are_ones_the_suite_takes(tmp_path):
    (argv,) = _commands("pytest")
    assert "-m" in argv
    argv = [a.replace(VALUES["OUT"], str(tmp_path)) for a in argv]
    # pytest's own parse of the options alone (the marker and paths replaced): usage errors exit 4
    proc = subprocess.run([sys.executable, "-m", "pytest", *argv, "--collect-only", "-q", "-k", "nothing_matches_this"],
                          cwd=SCRIPT.parents[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 5), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(_commands("roofline")) >= 4


def _identity_snippet() -> str:
    """The Python the script's identity step runs (``python3 -c "..."``)."""
    m = re.search(r'step identity \d+ python3 -c "\n(.*?)\n"\n', SCRIPT.read_text(), re.S)
    assert m, "the identity step is not a python3 -c block"
    return m.group(1)


def test_the_identity_step_runs_on_a_simulated_mig_slice(tmp_path, monkeypatch, capsys):
    """The step exists to show, on the first real board, what nvml.py assumed: torch's bare UUID against NVML's, the
    handle matched, MIG mode. Run here on a simulated H100 MIG 1g.10gb (fake CUDA and NVML), it prints each part."""
    import json
    from tests.fakes.devices import SIMULATED
    from tests.fakes.install import install_device
    slice_ = SIMULATED["h100_sxm"].replace(cuda_name="NVIDIA H100 80GB HBM3 MIG 1g.10gb", sm_count=16,
                                           memory_bytes=int(9.75 * 2**30))
    install_device(monkeypatch, "h100_sxm", tmp_path, device=slice_)
    exec(compile(_identity_snippet(), ".ci/device-check identity", "exec"), {})
    parts = {}
    for line in capsys.readouterr().out.splitlines():
        parts.update(json.loads(line))
    assert parts["torch"]["name"].endswith("MIG 1g.10gb") and "-" in parts["torch"]["uuid"]
    assert parts["detected"]["uuid"] == "MIG-" + parts["torch"]["uuid"] and parts["nvmlInit"] is None
    assert parts["target"]["matched_by"] == f"UUID {parts['detected']['uuid']}" and parts["target"]["mig"]
    assert parts["nvmlDeviceGetUUID"] == parts["detected"]["uuid"] and parts["nvmlDeviceIsMigDeviceHandle"] == 1
    assert parts["snapshot"]["nvml"]["mig"]
