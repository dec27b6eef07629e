"""The theory's command line: ``build_parser`` and ``main``, with the theory's commands registered.

- ``options``: what every layer's commands share (hardware, precision and shape options, argument types,
  the operator a command's flags describe). The layers above (``roofline_kernels.cli``,
  ``roofline_quantize.cli``) import it, never this package's commands.
- ``theory`` (formats, hardware, predict, recommend, sweep), ``report`` (archived runs side by side) and
  ``energy`` (energy, schedule): the theory's commands.

``roofline.__main__`` (the thin entry point behind ``python -m roofline`` and the ``roofline`` script) passes
the layers above as ``layers``; this package never imports them. Every command takes ``--json``. Bad input
prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import energy, report, theory
from .options import EXIT_BROKEN_PIPE, EXIT_USAGE, UsageError, _Parser

THEORY_COMMANDS = (theory, report, energy)  # in the order `roofline --help` lists them


def build_parser(layers=()) -> argparse.ArgumentParser:
    """The parser with the theory's commands, then each of ``layers``' (modules with ``add_commands``)."""
    parser = _Parser(prog="roofline", description="roofline: predict, measure and validate ML kernels "
                     "against their roofline")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for layer in (*THEORY_COMMANDS, *layers):
        layer.add_commands(sub)
    return parser


def main(argv=None, out=None, layers=()) -> int:
    """Run one command; 0 on success, 2 on bad input (one line on stderr)."""
    out = out or sys.stdout
    parser = build_parser(layers)
    try:
        args = parser.parse_args(argv)
        rc = args.func(args, out)
        if getattr(args, "json", False):
            out.write("\n")
        if isinstance(rc, int):
            return rc
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # bad values and unsupported paths: each names the value and what is allowed
        print(f"roofline: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours. Point stdout at devnull so the
        # interpreter's final flush does not raise again, and exit as a killed-by-SIGPIPE writer would.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a path the user gave that cannot be written or read (a directory, no permission)
        name = e.filename2 or e.filename  # an atomic write's rename names the target second, its temp file first
        print(f"roofline: error: {e.strerror or e}: {name!r}" if name else f"roofline: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0
