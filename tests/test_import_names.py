"""No import name of this project belongs to another package (issue 18: the ``kernels`` clash).

transformers 5 depends on Hugging Face's ``kernels`` and imports it (``from kernels import ...``) for its
MXFP4/NVFP4 loaders. When this project's measurement layer was a top-level ``kernels``, a process run from
the repository root imported ours instead (transformers failed), and from anywhere else the editable
finder grafted our submodules onto theirs. The layers are now ``roofline_kernels`` and ``roofline_quantize``.

Each check runs in a fresh interpreter, from the repository root and from another directory, and the
last test shows the checks fail on the old layout.
"""
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWN_DISTRIBUTION = "roofline-suite"
LAYERS = ("roofline", "roofline_kernels", "roofline_quantize")

PROBE = r'''
import importlib, importlib.util, json, os, sys
from importlib import metadata
repo, layers, with_transformers = os.path.realpath(sys.argv[1]), sys.argv[2].split(","), sys.argv[3] == "1"

def under(path, root):
    return path is not None and os.path.realpath(path).startswith(root + os.sep)

out = {"cwd": os.getcwd(), "layers": {}}
spec = importlib.util.find_spec(layers[0])
if spec is None or not (under(spec.origin, repo) or "site-packages" in spec.origin.split(os.sep)):
    # not installed, or installed editable from another checkout: this repo's files at an installed
    # package's place (after site-packages, before the editable finder)
    sys.path.append(repo)

def same_files(files, layer):
    """Every module file of the layer is this repo's, or an installed copy of it byte for byte (one tree)."""
    for f in files:
        if under(f, repo):
            continue
        top = os.path.dirname(os.path.realpath(importlib.import_module(layer).__file__))
        mine = os.path.join(repo, layer, os.path.relpath(f, top))
        if not under(f, top) or not os.path.isfile(mine) or open(f, "rb").read() != open(mine, "rb").read():
            return False
    return True
for layer in layers:
    try:
        importlib.import_module(layer)
        importlib.import_module(layer + ".cli")
        files = sorted({os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
                        if (n == layer or n.startswith(layer + ".")) and getattr(m, "__file__", None)})
        out["layers"][layer] = {"files": files, "from_repo": bool(files) and same_files(files, layer)}
    except Exception as e:
        out["layers"][layer] = {"error": f"{type(e).__name__}: {e}", "from_repo": False}
try:
    dist = metadata.distribution("kernels")
except metadata.PackageNotFoundError:
    out["hf_kernels"] = None
else:
    hf_root = os.path.realpath(str(dist.locate_file("kernels")))
    try:
        import kernels
        files = sorted({os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
                        if (n == "kernels" or n.startswith("kernels.")) and getattr(m, "__file__", None)})
        out["hf_kernels"] = {"version": dist.version, "root": hf_root, "files": files,
                             "untouched": bool(files) and all(under(f, hf_root) for f in files)}
    except Exception as e:
        out["hf_kernels"] = {"version": dist.version, "error": f"{type(e).__name__}: {e}", "untouched": False}
    if with_transformers and importlib.util.find_spec("transformers") is not None:
        try:  # `from kernels import CUDAProperties, ...`: what failed from the root under the old layout
            importlib.import_module("transformers.integrations.hub_kernels")
            out["transformers"] = "ok"
        except Exception as e:
            out["transformers"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
'''


def probe(repo: Path, layers, cwd: Path, with_transformers: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(repo), ",".join(layers), "1" if with_transformers else "0"],
                       cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def importable_names(root: Path) -> set[str]:
    """What a process whose sys.path starts at ``root`` imports from it: packages (a dir with __init__.py)
    and modules. A dir without __init__.py would only be a namespace portion, which never shadows."""
    return ({p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
            | {p.stem for p in root.glob("*.py")})


def clashes(root: Path) -> dict[str, list[str]]:
    """Names importable from ``root`` that an installed distribution other than this project provides."""
    provided = metadata.packages_distributions()
    return {name: dists for name in sorted(importable_names(root))
            if (dists := [d for d in provided.get(name, []) if d != OWN_DISTRIBUTION])}


def hf_kernels_installed():
    try:
        return metadata.version("kernels")
    except metadata.PackageNotFoundError:
        pytest.skip("Hugging Face's `kernels` (a dependency of transformers 5) is not installed: nothing to clash "
                    "with here (pip install kernels, or transformers>=5)")


def check_side_by_side(repo: Path, layers, elsewhere: Path, with_transformers: bool = True) -> list[str]:
    """What is wrong when this project's ``layers`` and Hugging Face's kernels (and transformers, which
    imports it) share one process started from the repository root, then from another directory."""
    wrong = []
    for where, cwd in (("the repository root", repo), ("another directory", elsewhere)):
        got = probe(repo, layers, cwd, with_transformers)
        for layer, g in got["layers"].items():
            if not g["from_repo"]:
                wrong.append(f"from {where}, {layer} did not load this repository's files: "
                             f"{g.get('error') or g.get('files')}")
        hf = got.get("hf_kernels")
        if hf and not hf["untouched"]:
            wrong.append(f"from {where}, Hugging Face's kernels was not itself: {hf.get('error') or hf['files']}")
        if got.get("transformers", "ok") != "ok":
            wrong.append(f"from {where}, transformers failed: {got['transformers']}")
    return wrong


def test_the_project_installs_only_roofline_names():
    """`kernels` and `quantize` are PyPI names; every package this project installs carries its prefix."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(pattern.split(".")[0] in LAYERS for pattern in include), include
    assert {n for n in importable_names(REPO) if n not in ("tests", "conftest")} == set(LAYERS)


def test_no_name_importable_from_the_root_is_another_distributions():
    """A future clash is caught here: whatever is installed, no distribution provides a name that the
    repository root puts first on sys.path (importlib.metadata.packages_distributions())."""
    assert clashes(REPO) == {}


def test_hugging_face_kernels_and_this_project_side_by_side(tmp_path):
    hf_kernels_installed()
    assert check_side_by_side(REPO, ("roofline_kernels", "roofline_quantize"), tmp_path) == []


def test_the_checks_fail_on_the_old_layout(tmp_path):
    """The pre-rename layout (a top-level `kernels` package in the checkout) trips every check above."""
    hf_kernels_installed()
    old = tmp_path / "old_checkout"
    (old / "kernels").mkdir(parents=True)
    (old / "kernels" / "__init__.py").write_text('"""the measurement layer, under its old name"""\n')
    (old / "kernels" / "cli.py").write_text("def add_commands(sub):\n    pass\n")
    assert "kernels" in clashes(old)
    wrong = check_side_by_side(old, ("kernels",), tmp_path, with_transformers=False)
    assert any("from the repository root, Hugging Face's kernels was not itself" in w for w in wrong), wrong
    assert any("from another directory, kernels did not load this repository's files" in w for w in wrong), wrong
