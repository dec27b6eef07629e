"""One call that makes this process look like a simulated device: fake CUDA, NVML and, for a Jetson, its
files under ``root`` and ``nvpmodel`` on PATH. Everything goes through ``mp`` (a pytest.MonkeyPatch), so
``mp.undo()`` (or the end of the test) restores the real world."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

from roofline.hardware import bare_metal_mig

from .cuda import install_fake_cuda
from .cuda_rules import install_cuda_rules
from .devices import SIMULATED, FakeDevice
from .jetson import install_fake_sudo, install_switchable_nvpmodel, make_jetson_tree, path_with
from .nvml import make_fake_pynvml


def install_device(mp, key: str, root: Path, *, docker: bool = False, mode: str | None = None, cuda: bool = True,
                   nvpmodel: bool = True, sudo: bool = True, device: FakeDevice | None = None, **nvml_options):
    """Simulate registry entry ``key`` (or ``device``); returns the fake pynvml module.

    docker: the device tree is masked (a container); mode: the Jetson's current power mode (default: the
    board's default); cuda=False: torch without CUDA (a CPU wheel on a Jetson); nvpmodel=False: no
    ``nvpmodel`` on PATH; sudo=False: ``sudo -n`` refuses (no passwordless sudo); nvml_options go to
    ``make_fake_pynvml``. A MIG slice (``device`` named "... MIG 1g.10gb") is an instance of ``key``'s board."""
    dev = device or SIMULATED[key]
    bare_metal_slice = bare_metal_mig(dev.cuda_name)
    if bare_metal_slice and not dev.uuid.upper().startswith("MIG-"):  # the instance's own UUID, never its board's
        dev = dev.replace(uuid=f"MIG-{uuid.uuid5(uuid.NAMESPACE_OID, dev.uuid + dev.cuda_name)}")
    if cuda:
        install_fake_cuda(mp, [dev])
        install_cuda_rules(mp, dev.capability)  # what CUDA refuses, refused here (tests/fakes/cuda_rules.py)
    if bare_metal_slice:
        # CUDA sees the slice; NVML, its board in MIG mode with the slice an instance of it (a guest's MIG-backed vGPU
        # is the guest's one NVML device)
        fake = make_fake_pynvml([SIMULATED[key]], mig={0: [dev]}, **nvml_options)
    else:
        fake = make_fake_pynvml([dev], **nvml_options)
    mp.setitem(sys.modules, "pynvml", fake)
    if dev.is_jetson:
        make_jetson_tree(root, dev.key, mode=mode, docker=docker)
        if nvpmodel:
            # nvpmodel answers -q and switches with -m ID (rewriting the tree); sudo -n lets it run
            install_switchable_nvpmodel(Path(root) / "bin", root, dev.key, mode or dev.nvpmodel_mode[0])
            install_fake_sudo(Path(root) / "bin", allow=sudo)
            mp.setenv("PATH", path_with(Path(root) / "bin"))
        else:
            mp.setenv("PATH", "/nonexistent")  # no nvpmodel anywhere, as in a bare container
    return fake
