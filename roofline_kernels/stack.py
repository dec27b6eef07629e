"""The software stack under the measurement layer: what is installed, what the project supports, what works.

``SUPPORTED`` is the declared support range; ``pyproject.toml`` states the same (its extras and its
``[tool.roofline.support]`` table), and ``tests/test_stack.py`` keeps the three equal. A lower bound is
the oldest release the suite passes with (or, for torch, torchao's own floor: see ``WHY``); an upper
bound is set only where a known break exists (none today).

Nothing here raises for a broken stack: an import that fails with *any* exception (an ImportError, or
the AttributeError torchao 0.18 raises under a torch older than 2.8, which lacks
``torch.float4_e2m1fn_x2``: torchao/prototype/mx_formats/constants.py:21, read at import) becomes a
sentence naming the installed versions and the range that works. ``torchao_paths`` refuses its paths
with it, the suite skips with it, and ``python -m roofline doctor`` prints it.

Versions are read from the installed metadata, never by importing: this module imports torch, torchao
or transformers only in the functions that say so.
"""
from __future__ import annotations

import platform
import re
from importlib import metadata

from roofline.hardware import capability_of  # the one reading of a registry arch (doctor reads it from here too)

# distribution -> PEP 440 specifier (">=" and "<" only). Keep equal to pyproject.toml.
SUPPORTED = {
    "python": ">=3.10",
    "torch": ">=2.11",
    "torchao": ">=0.18",
    "transformers": ">=4.56",
    "nvidia-ml-py": ">=12.535.77",
    "numpy": ">=1.24",
}

WHY = {
    "python": "JetPack 6 ships Python 3.10, for which NVIDIA builds its Jetson torch wheel",
    "torch": "torchao 0.18 loads its C++ kernels only on torch >= 2.11 (torchao/__init__.py min_torch_version) and "
             "its mx_formats need torch.float4_e2m1fn_x2 (torch >= 2.8) at import; the suite is tested on 2.13",
    "torchao": "torchao 0.17 builds W8A8 on its deprecated PlainLayout and stores int8 weight-only tensors with "
               "more bytes than roofline.formats counts (tests/test_quantize.py fails on 16 cases); 0.16 lacks "
               "the NVFP4 config's fields the paths set",
    "transformers": "roofline_quantize.hf loads with from_pretrained(dtype=...), which transformers takes from 4.56 "
                    "(older releases ignore it and load in fp32)",
    "nvidia-ml-py": "nvmlDeviceGetCurrentClocksEventReasons (the throttle check) is in 12.535.77 and later, not in 11.x",
    "numpy": "the theory's vectorised sweep",
}

# what this project imports from each package: an import check imports these
TORCHAO_MODULES = ("torchao.quantization", "torchao.prototype.mx_formats",
                   "torchao.quantization.quantize_.common.kernel_preference",
                   "torchao.quantization.quantize_.workflows.int8.int8_tensor",
                   "torchao.quantization.transform_module", "torchao.core.config", "torchao.utils")
# PreTrainedModel loads modeling_utils, which imports torchao's quantizer when torchao is installed
TRANSFORMERS_NAMES = ("AutoModelForCausalLM", "AutoTokenizer", "DynamicCache", "PreTrainedModel")

# what each board family runs: README "Which stack each board runs"
BOARD_STACKS = {
    "cpu": "any torch build (CPU wheel: pip install torch==2.13.0)",
    "b10": "GB10 (DGX OS, aarch64, sm_121): PyTorch's CUDA 13 wheel",
    "jetson": "Jetson Orin (JetPack 6, aarch64, Python 3.10, sm_87): NVIDIA's JetPack torch wheel",
}
SERVER_STACK = "a GPU server or workstation: PyTorch's CUDA wheel for the platform (CUDA 12.8+ or 13)"
AARCH64_FAMILIES = ("b10", "jetson")


def version_tuple(text: str) -> tuple[int, ...]:
    """"2.13.0+cpu" -> (2, 13, 0); "2.5.0a0+872d972e41.nv24.08" -> (2, 5, 0); pre-release tags are ignored."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def _cmp(a: tuple, b: tuple) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies ``spec``: comma-separated ``>=X`` / ``<X`` / ``==X`` clauses."""
    v = version_tuple(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.fullmatch(r"(>=|<=|==|<|>)\s*(\S+)", clause)
        if not m:
            raise ValueError(f"unsupported specifier clause {clause!r} in {spec!r}")
        c = _cmp(v, version_tuple(m.group(2)))
        if not {">=": c >= 0, "<=": c <= 0, "==": c == 0, "<": c < 0, ">": c > 0}[m.group(1)]:
            return False
    return True


def installed(dist: str) -> str | None:
    """The installed version of a distribution (python: the interpreter's), from metadata; None if absent."""
    if dist == "python":
        return platform.python_version()
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def range_text(*dists: str) -> str:
    return ", ".join(f"{d} {SUPPORTED[d]}" for d in dists)


def out_of_range(dist: str) -> str | None:
    """Why the installed ``dist`` is outside the supported range, or None (in range, or not installed)."""
    v = installed(dist)
    if v is None or in_range(v, SUPPORTED[dist]):
        return None
    return f"{dist} {v} is outside the supported range {dist} {SUPPORTED[dist]} ({WHY[dist]})"


def versions_text(*dists: str) -> str:
    return ", ".join(f"{d} {installed(d) or 'not installed'}" for d in dists)


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def import_failure(package: str, e: BaseException) -> str:
    """A failed import of torchao or transformers in words: the error, the installed versions, the range."""
    dists = ("torch", package) if package == "torchao" else ("torch", "torchao", package)
    dists = tuple(d for d in dists if d == package or d == "torch" or installed(d) is not None)
    ranges = [d for d in dists if installed(d) is not None and out_of_range(d)]
    return (f"{package} is not importable with this stack ({_first_line(e)}): installed {versions_text(*dists)}; "
            f"supported: {range_text(*dists)}"
            + (f" ({'; '.join(out_of_range(d) for d in ranges)})" if ranges else "")
            + "; `python -m roofline doctor` shows the whole stack")


def _try_imports(package: str, modules=(), names=()) -> str | None:
    import importlib
    try:
        mod = importlib.import_module(package)
        for m in modules:
            importlib.import_module(m)
        for n in names:
            getattr(mod, n)
    except Exception as e:  # any exception: an old torch makes torchao raise AttributeError, not ImportError
        return import_failure(package, e)
    return None


def torchao_problem() -> str | None:
    """None when torchao and every torchao module this project uses import here; else why not (imports torchao)."""
    return _try_imports("torchao", TORCHAO_MODULES)


def transformers_problem() -> str | None:
    """None when transformers and the names roofline_quantize.hf uses import here; else why not."""
    return _try_imports("transformers", names=TRANSFORMERS_NAMES)


def nvml_problem() -> str | None:
    """None when pynvml imports and has the calls telemetry uses (the library and driver are not asked)."""
    try:
        import pynvml
        for n in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTotalEnergyConsumption",
                  "nvmlDeviceGetHandleByUUID"):
            getattr(pynvml, n)
    except Exception as e:
        return (f"pynvml is not usable ({_first_line(e)}): installed {versions_text('nvidia-ml-py')}; "
                f"supported: {range_text('nvidia-ml-py')}")
    return None


def hf_kernels_problem() -> str | None:
    """Hugging Face's ``kernels`` (transformers' MXFP4/NVFP4 loaders need it): None when it imports as itself."""
    if installed("kernels") is None:
        return None
    try:
        import kernels
        kernels.CUDAProperties  # what transformers imports from it
        files = metadata.distribution("kernels").locate_file("kernels")
        if not str(getattr(kernels, "__file__", "")).startswith(str(files)):
            return f"`import kernels` found {kernels.__file__}, not Hugging Face's package in {files}"
    except Exception as e:
        return f"Hugging Face's kernels {installed('kernels')} does not import: {_first_line(e)}"
    return None


# --- torch and the boards -----------------------------------------------------------------------------

def torch_build() -> dict:
    """torch's version, CUDA version (None: a CPU build) and compiled GPU architectures (imports torch)."""
    try:
        import torch
    except Exception as e:
        return {"version": installed("torch"), "cuda": None, "archs": [], "error": _first_line(e)}
    archs = []
    flags = getattr(torch._C, "_cuda_getArchFlags", None)
    if torch.version.cuda and flags is not None:
        try:
            archs = sorted(set((flags() or "").split()))
        except Exception:
            archs = []
    return {"version": torch.__version__, "cuda": torch.version.cuda, "archs": archs, "error": None}


def _runs_arch(archs: list[str], target: str) -> bool | None:
    """Whether a build compiled for ``archs`` (sm_90, compute_120...) runs on ``target`` (sm_121); None: unknown."""
    cap = capability_of(target)
    if cap is None or not archs:
        return None
    major, minor = cap
    for a in archs:
        k = re.fullmatch(r"(sm|compute)_(\d+)(\d)a?", a)
        if not k:
            continue
        amaj, amin = int(k.group(2)), int(k.group(3))
        if k.group(1) == "sm" and amaj == major and amin <= minor:  # cubins run on later minors of a major
            return True
        if k.group(1) == "compute" and (amaj, amin) <= (major, minor):  # PTX is JIT-compiled forward
            return True
    return False


def board_paths(build: dict | None = None, torchao_why: str | None = "unchecked", torchao_paths_for=None) -> dict:
    """family -> {"usable": bool, "why": str, "stack": str, "torchao_paths": [...]}: whether this stack can
    measure on that board family, and which torchao paths run there (``torchao_why`` from torchao_problem();
    "unchecked" leaves torchao out; ``torchao_paths_for(arch)`` lists them: ``roofline_kernels.doctor``'s)."""
    from roofline import get_hardware
    from roofline.hardware import hardware_families
    if torchao_why != "unchecked" and torchao_paths_for is None:
        raise ValueError("board_paths: torchao checked, but no torchao_paths_for to list its paths with")
    build = build or torch_build()
    machine = platform.machine().lower()
    out = {}
    bad_torch = out_of_range("torch") if build["version"] else None
    for family, keys in hardware_families().items():
        hw = get_hardware(keys[0])
        stack = BOARD_STACKS.get(family, SERVER_STACK)
        if build["error"] or not build["version"]:
            usable, why = False, f"torch does not import ({build['error'] or 'not installed'})"
        elif bad_torch:
            usable, why = False, bad_torch
        elif family == "cpu":
            usable, why = True, f"torch {build['version']} runs on the host CPU"
        elif not build["cuda"]:
            usable, why = False, (f"torch {build['version']} is a CPU build (no CUDA); dry run here: "
                                  f"pytest -m {family} --simulate {keys[0]}")
        elif family in AARCH64_FAMILIES and machine not in ("aarch64", "arm64"):
            usable, why = False, f"{hw.name} is an aarch64 board; this is {machine}"
        else:
            runs = _runs_arch(build["archs"], hw.arch)
            if runs is False:
                usable, why = False, (f"torch {build['version']} (CUDA {build['cuda']}) has no kernels for "
                                      f"{hw.arch} (built for {' '.join(build['archs'])})")
            else:
                usable, why = True, (f"torch {build['version']} (CUDA {build['cuda']})"
                                     + (f" has {hw.arch} kernels" if runs else ""))
        entry = {"usable": usable, "why": why, "stack": stack, "arch": hw.arch}
        if torchao_why != "unchecked":
            entry["torchao_paths"] = [] if torchao_why or torchao_paths_for is None else torchao_paths_for(hw.arch)
            entry["torchao"] = torchao_why or "imports"
        out[family] = entry
    return out


# --- the report -----------------------------------------------------------------------------------------

DISTS = ("python", "torch", "torchao", "transformers", "kernels", "nvidia-ml-py", "numpy")


def stack_line(build: dict | None = None) -> str:
    """One line: every package's version, torch's CUDA, and what is outside the supported range."""
    parts = []
    for d in DISTS:
        v = installed(d)
        if d == "torch" and v and build is not None:
            v += f" (CUDA {build['cuda']})" if build.get("cuda") else " (CPU build)"
        if d == "kernels":
            d = "HF kernels"
        parts.append(f"{d} {v or '-'}")
    bad = [d for d in SUPPORTED if out_of_range(d)]
    tail = ("OUTSIDE the supported range: " + ", ".join(f"{d} {installed(d)} (supported {SUPPORTED[d]})" for d in bad)
            if bad else "in the supported range")
    return f"stack: {', '.join(parts)}; {tail}"


def header_lines(simulated: bool = False) -> list[str]:
    """pytest's header: the stack line and which board families this stack can measure on (no torchao import).
    ``simulated``: torch.cuda is faked in this process, so torch's CUDA is not read."""
    if simulated:
        return [stack_line(), "board paths: a simulated device (torch.cuda faked); `python -m roofline doctor` "
                "tells what this stack can run"]
    build = torch_build()
    boards = board_paths(build)
    usable = [f for f, b in boards.items() if b["usable"]]
    not_usable = {}
    for f, b in boards.items():
        if not b["usable"]:
            not_usable.setdefault(b["why"].split("; dry run")[0].split(" (built for")[0], []).append(f)
    tail = "; ".join(f"not {', '.join(fs)}: {why}" for why, fs in not_usable.items())
    return [stack_line(build),
            f"board paths with this stack: {', '.join(usable) or 'none'}" + (f"; {tail}" if tail else "")
            + " (python -m roofline doctor)"]
