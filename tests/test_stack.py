"""The declared support range (pyproject.toml, README, roofline_kernels.stack), `python -m roofline doctor`,
and an unsupported stack told, not crashed: an exception planted at torchao's import turns into skips that
name the installed versions and the range that works."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from roofline.__main__ import main
from roofline_kernels import stack

REPO = Path(__file__).resolve().parents[1]


def pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement(reqs, name):
    found = [r for r in reqs if re.match(rf"{re.escape(name)}\s*[<>=!~]", r)]
    assert len(found) == 1, (name, reqs)
    return found[0][len(name):].strip()


def test_pyproject_declares_the_range_the_code_checks():
    p = pyproject()
    assert p["tool"]["roofline"]["support"] == stack.SUPPORTED
    extras = p["project"]["optional-dependencies"]
    assert requirement(extras["gpu"], "torchao") == stack.SUPPORTED["torchao"]
    assert requirement(extras["gpu"], "nvidia-ml-py") == stack.SUPPORTED["nvidia-ml-py"]
    assert requirement(extras["hf"], "transformers") == stack.SUPPORTED["transformers"]
    assert requirement(p["project"]["dependencies"], "numpy") == stack.SUPPORTED["numpy"]
    assert p["project"]["requires-python"] == stack.SUPPORTED["python"]
    assert set(stack.WHY) == set(stack.SUPPORTED)


def test_readme_states_the_range():
    readme = (REPO / "README.md").read_text()
    for dist, spec in stack.SUPPORTED.items():
        assert re.search(rf"^\| `{re.escape(dist)}` \| `{re.escape(spec)}` \|", readme, re.M), (dist, spec)


def test_tox_tests_both_ends_of_the_torchao_range():
    tox = (REPO / "tox.ini").read_text()
    oldest = tox[tox.index("[testenv:corner-oldest]"):tox.index("[testenv:corner-newest]")]
    floor = stack.SUPPORTED["torchao"].removeprefix(">=")
    assert re.search(rf"torchao=={re.escape(floor)}(\.0)?\b", oldest)
    assert re.search(rf"transformers=={re.escape(stack.SUPPORTED['transformers'].removeprefix('>='))}", oldest)
    newest = tox[tox.index("[testenv:corner-newest]"):]
    assert "--upgrade" in newest and "torchao" in newest and "transformers" in newest


@pytest.mark.parametrize("version, spec, ok", [
    ("2.13.0+cpu", ">=2.11", True), ("2.11", ">=2.11", True), ("2.10.0", ">=2.11", False),
    ("2.5.0a0+872d972e41.nv24.08", ">=2.11", False),  # a JetPack 6 torch wheel
    ("0.18.0", ">=0.18", True), ("0.17.0", ">=0.18", False), ("0.18.1", ">=0.18,<0.19", True),
    ("0.19.0", ">=0.18,<0.19", False), ("12.535.77", ">=12.535.77", True), ("11.525.150", ">=12.535.77", False),
])
def test_versions_against_a_range(version, spec, ok):
    assert stack.in_range(version, spec) is ok


def test_an_arch_list_says_which_boards_a_cuda_build_runs_on():
    archs = ["sm_80", "sm_87", "sm_90", "sm_100", "sm_120"]
    assert stack._runs_arch(archs, "sm_121") is True   # sm_120 cubins run on sm_121 (GB10)
    assert stack._runs_arch(archs, "sm_89") is True    # sm_87 cubins run on the later minor
    assert stack._runs_arch(["sm_80", "sm_90"], "sm_121") is False
    assert stack._runs_arch(["sm_90", "compute_90"], "sm_121") is True  # PTX is JIT-compiled forward
    assert stack._runs_arch([], "sm_90") is None


def doctor(*argv):
    out = io.StringIO()
    return main(["doctor", *argv], out=out), out.getvalue()


def test_doctor_prints_the_stack_and_each_board_familys_paths():
    rc, text = doctor("--json")
    d = json.loads(text)
    assert rc == (0 if d["ok"] else 1)
    assert set(d["packages"]) == set(stack.DISTS) and d["packages"]["torch"]["version"] == stack.installed("torch")
    from roofline.hardware import hardware_families
    assert set(d["boards"]) == set(hardware_families())
    assert all(b["why"] and b["stack"] for b in d["boards"].values())
    assert d["boards"]["cpu"]["usable"] is (d["packages"]["torch"]["in_range"] is not False)
    rc, text = doctor()
    assert text.startswith("stack: python ") and "board family" in text and "verdict:" in text
    assert "b10" in text and "NVIDIA's JetPack torch wheel" in text and "CUDA 13" in text


def test_doctor_tells_an_unsupported_stack_and_exits_1(monkeypatch):
    real = stack.installed
    monkeypatch.setattr(stack, "installed", lambda d: "0.17.0" if d == "torchao" else real(d))
    rc, text = doctor()
    assert rc == 1 and re.search(r"^torchao +0\.17\.0 +>=0\.18 +OUTSIDE the supported range", text, re.M), text
    assert "OUTSIDE the supported range" in text and "NOT supported: torchao" in text


def run_suite(*args, env=None):
    """pytest in a fresh interpreter with torchao broken at import (tests/fakes/broken_torchao.py)."""
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.fakes.broken_torchao", "-p", "no:cacheprovider",
           "-o", "addopts=--strict-markers", "-q", "-rs", *args]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "ROOFLINE_CACHE_DIR": env["cache"], **env.get("extra", {})})
    return r.returncode, r.stdout + r.stderr


def assert_told_not_crashed(rc, out):
    summary = out.strip().splitlines()[-1]
    assert rc == 0 and "error" not in summary and "failed" not in summary, out[-4000:]
    told = [line for line in out.splitlines() if line.startswith("SKIPPED") and "torchao is not importable" in line]
    assert told, out[-4000:]
    versions = f"installed torch {stack.installed('torch')}, torchao {stack.installed('torchao') or 'not installed'}"
    for line in told:
        assert versions in line and f"supported: torch {stack.SUPPORTED['torch']}, torchao " \
                                     f"{stack.SUPPORTED['torchao']}" in line, line


def test_torchao_broken_at_import_turns_the_simulated_board_suite_into_named_skips(tmp_path):
    rc, out = run_suite("-m", "b10", "--simulate", "gb10", "tests/validation", "tests/test_torchao_paths.py",
                        env={"cache": str(tmp_path)})
    assert_told_not_crashed(rc, out)
    assert "AttributeError: module 'torch' has no attribute 'float4_e2m1fn_x2'" in out


def test_torchao_broken_at_import_turns_the_quantize_cases_into_named_skips(tmp_path):
    rc, out = run_suite("tests/test_quantize.py", "-k", "fp8_weight_only_needs or int8_weight_only_layers or "
                        "leaves_alone or apply_quantizes or missing_torchao or cache_matches",
                        env={"cache": str(tmp_path)})
    assert_told_not_crashed(rc, out)
    # transformers 5 imports torchao's quantizer when torchao is installed: the HF path is told too
    if stack.installed("transformers"):
        assert re.search(r"SKIPPED .*transformers is not importable with this stack", out), out[-4000:]


def test_only_mx_formats_broken_as_under_a_torch_older_than_2_8(tmp_path):
    """The real failure: torchao 0.18's mx_formats reads torch.float4_e2m1fn_x2 at import."""
    rc, out = run_suite("tests/test_torchao_paths.py", "tests/test_quantize.py", "-k",
                        "not test_quantize or fp8_weight_only_needs or missing_torchao",
                        env={"cache": str(tmp_path), "extra": {
        "ROOFLINE_BREAK_TORCHAO": "torchao.prototype.mx_formats"}})
    assert_told_not_crashed(rc, out)


def test_doctor_reports_a_torch_that_does_not_import_instead_of_dying_of_it():
    """The case doctor exists for: before the fix (issue 20's doctor.py imported torchao_paths, hence torch, at
    module level) this was a ModuleNotFoundError traceback."""
    code = ("import io, json, sys; sys.modules['torch'] = None; from roofline.__main__ import main; out = io.StringIO(); "
            "rc = main(['doctor', '--json'], out=out); d = json.loads(out.getvalue()); "
            "print(json.dumps([rc, d['ok'], d['packages']['torch']['error'], d['boards']['cpu']['usable']]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rc, ok, error, cpu_usable = json.loads(res.stdout.strip().splitlines()[-1])
    assert (rc, ok, cpu_usable) == (1, False, False) and "torch" in error


def test_a_dependency_compiled_on_import_with_an_invalid_escape_still_imports_under_pytest():
    """pytest.ini turns warnings into errors, and a dependency compiled on import (wheels installed with --no-compile,
    as an offline GPU host installs torchao; or PYTHONDONTWRITEBYTECODE) warns of each invalid escape sequence in its
    source: torchao 0.18's quant_api.py has one, and the error made torchao "not importable", every torchao path
    skipped. That warning, and only it, is ignored: compiling such a source here must not raise."""
    import warnings
    compile('"""fully qualified names such as a\\.b"""\n', "dependency.py", "exec")
    with pytest.raises(DeprecationWarning):  # any other warning is still an error
        warnings.warn("something else", DeprecationWarning)
