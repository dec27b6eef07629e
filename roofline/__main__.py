"""``python -m roofline`` and the ``roofline`` script: the thin entry point that composes each layer's commands.

The theory's commands come from ``roofline.cli``; ``roofline_kernels.cli`` (measure, calibrate, selftest, doctor) and
``roofline_quantize.cli`` (quantize) register theirs. This is the one module under ``roofline/`` that names
the layers above it, and it imports only their command modules, which import torch lazily inside
each command: ``python -m roofline predict ...`` never loads torch.
"""
from __future__ import annotations

import sys

from .cli import main as _main


def layers():
    """The command modules of the layers above the theory, in the order their commands are listed."""
    import roofline_kernels.cli
    import roofline_quantize.cli
    return (roofline_kernels.cli, roofline_quantize.cli)


def main(argv=None, out=None) -> int:
    return _main(argv, out, layers=layers())


if __name__ == "__main__":
    sys.exit(main())
