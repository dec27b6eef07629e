"""Fakes of the hardware-facing world, shared by unit tests and the simulated-device dry run.

- ``devices``: one ``FakeDevice`` per registry entry of kind gpu or jetson (``SIMULATED``).
- ``cuda``: ``install_fake_cuda(mp, devices)`` patches ``torch.cuda`` to report them (nothing allocates).
- ``nvml``: ``make_fake_pynvml(gpus, ...)``, a module mirroring nvidia-ml-py 13's API.
- ``jetson``: ``make_jetson_tree(root, key, ...)`` and ``install_fake_nvpmodel(bin_dir, name, id)``.
- ``host``: a fake host CPU tree (``/proc/cpuinfo``, cache sysfs) and small file helpers.
- ``install``: ``install_device(mp, key, root, ...)`` does all of the above for one simulated device.
"""
