"""``python -m roofline doctor``: the installed stack against the supported range, and which board families'
paths it can run, torchao's included.

It sits above ``stack`` (the support range, versions and import checks) and ``torchao_paths`` (the paths and
their gates), which both used to reach each other (``stack`` listed the paths, ``torchao_paths`` names
import failures with ``stack``): an import cycle (issue 20). It imports torch, torchao, transformers and
pynvml only inside ``doctor()``.
"""
from __future__ import annotations

import platform
import sys

from . import stack


def torchao_paths_for(arch: str) -> list[str]:
    """The torchao paths (weight/acts) whose gate admits this arch (``sm_90``...). Imported here: torchao_paths
    imports torch, and doctor must report a torch that does not import, not die of it."""
    from .torchao_paths import PATHS
    cap = stack.capability_of(arch)
    return [f"{p.weight}/{'|'.join(p.acts)}" for p in PATHS if p.gate(cap) is None]


def doctor() -> dict:
    """Everything ``python -m roofline doctor`` prints (imports torch, torchao, transformers and pynvml)."""
    build = stack.torch_build()
    problems = {"torchao": stack.torchao_problem() if stack.installed("torchao") else None,
                "transformers": stack.transformers_problem() if stack.installed("transformers") else None,
                "nvidia-ml-py": stack.nvml_problem() if stack.installed("nvidia-ml-py") else None,
                "kernels": stack.hf_kernels_problem()}
    packages = {}
    for d in stack.DISTS:
        v = stack.installed(d)
        spec = stack.SUPPORTED.get(d)
        entry = {"version": v, "supported": spec, "in_range": None if v is None or spec is None else stack.in_range(v, spec)}
        if d == "torch":
            entry.update(cuda=build["cuda"], archs=build["archs"], error=build["error"])
        if d in problems:
            entry["imports"] = v is not None and problems[d] is None
            if problems[d]:
                entry["problem"] = problems[d]
        if d == "kernels":
            entry["note"] = "Hugging Face's package (transformers' MXFP4/NVFP4 loaders); this project's layer is roofline_kernels"
        packages[d] = entry
    broken = [d for d, e in packages.items() if e["in_range"] is False or e.get("problem") or e.get("error")]
    if packages["torch"]["version"] is None:
        broken.append("torch (not installed)")
    return {"python_executable": sys.executable, "machine": platform.machine(), "packages": packages,
            "boards": stack.board_paths(build, problems["torchao"] if stack.installed("torchao") else "torchao is not installed",
                                      torchao_paths_for),
            "supported": dict(stack.SUPPORTED), "ok": not broken, "broken": broken,
            "stack_line": stack.stack_line(build)}


def format_doctor(d: dict) -> str:
    lines = [d["stack_line"], "", "package        installed              supported    status"]
    for name, e in d["packages"].items():
        v = e["version"] or "-"
        if name == "torch" and e["version"]:
            v += f" (CUDA {e['cuda']})" if e["cuda"] else " (CPU)"
        if e["version"] is None:
            status = "not installed"
        elif e.get("error") or e.get("problem"):
            status = "BROKEN: " + (e.get("problem") or e.get("error"))
        elif e["in_range"] is False:
            status = "OUTSIDE the supported range"
        else:
            status = "ok" + (", imports" if e.get("imports") else "")
        if name == "kernels" and e["version"]:
            status += " (Hugging Face's)"
        lines.append(f"{name:<14} {v:<22} {e['supported'] or '':<12} {status}")
    lines += ["", "board family   usable with this stack"]
    for fam, b in d["boards"].items():
        lines.append(f"{fam:<14} {'yes' if b['usable'] else 'no '}  {b['why']}")
        lines.append(f"{'':<14}      runs: {b['stack']}")
        if "torchao" in b:
            lines.append(f"{'':<14}      torchao paths: " + (", ".join(b["torchao_paths"]) or "none")
                         + ("" if b["torchao"] == "imports" else " (torchao does not import: see its line above)"
                            if "is not importable" in b["torchao"] else f" ({b['torchao']})"))
    lines += ["", "supported: " + ", ".join(f"{k} {v}" for k, v in d["supported"].items()) + " (pyproject.toml)",
              "verdict: " + ("the stack is supported" if d["ok"] else "NOT supported: " + ", ".join(d["broken"]))]
    return "\n".join(lines) + "\n"
