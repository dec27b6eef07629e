"""A pytest plugin (``-p tests.fakes.broken_torchao``) that breaks torchao at import, as an unsupported stack does.

torchao 0.18 under a torch older than 2.8 (NVIDIA's JetPack 6 wheels) raises
``AttributeError: module 'torch' has no attribute 'float4_e2m1fn_x2'`` when ``torchao.prototype.mx_formats``
is imported (its constants.py:21 reads the dtype at import). ``ROOFLINE_BREAK_TORCHAO`` picks what
raises it: ``torchao`` (default: any torchao module) or a module name (that module and its children).
The installed torchao's metadata is untouched, so the skip reasons still name its version.
"""
import importlib.abc
import importlib.machinery
import os
import sys

TARGET = os.environ.get("ROOFLINE_BREAK_TORCHAO", "torchao")
MESSAGE = "module 'torch' has no attribute 'float4_e2m1fn_x2'"


class _Raise(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise AttributeError(MESSAGE)


class _BreakTorchao(importlib.abc.MetaPathFinder):
    """Finds the target as usual (``importlib.util.find_spec`` still sees it installed); running it raises."""

    def find_spec(self, name, path=None, target=None):
        if name == TARGET or name.startswith(TARGET + "."):
            return importlib.machinery.ModuleSpec(name, _Raise(), is_package=True)
        return None


for _name in [m for m in sys.modules if m == TARGET or m.startswith(TARGET + ".")]:
    del sys.modules[_name]
sys.meta_path.insert(0, _BreakTorchao())
