"""The ``invrim`` command: thin argument parsing over the library."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .. import __version__


class UsageError(Exception):
    """A user mistake: reported as one line on stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported like every other error: one line on stderr, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="invrim",
        description="Recurrent Inference Machines for inverse problems.",
        epilog="Run 'invrim COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"invrim {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, the available components, the precisions this machine runs well and "
                          "whether compile=True can compile here")
    info.set_defaults(handler=_info)
    from . import calibrate, evaluate, import_cmd, plugins, reconstruct, show, simulate, train
    plugins.add_parser(sub)
    simulate.add_parser(sub)
    import_cmd.add_parser(sub)
    train.add_parser(sub)
    reconstruct.add_parser(sub)
    calibrate.add_parser(sub)
    evaluate.add_parser(sub)
    show.add_parser(sub)
    return parser


def _info(args: argparse.Namespace) -> int:
    import torch

    from ..plugins import registry
    print(f"invrim {__version__} (torch {torch.__version__}, python {sys.version.split()[0]})")
    for kind, components in registry().kinds().items():
        print(f"{kind.replace('_', ' ')}: {', '.join(components.names()) or '-'}")
    from ..precision import support
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        told = "; ".join(f"{p} {'yes' if ok else 'slow'} ({why})" for p, (ok, why) in support(device).items())
        print(f"precision on {device}: {told}")
    from ..compilation import cpu_compiler
    compiler = cpu_compiler()
    print("compile on cpu: " + (f"yes (C++ compiler {compiler})" if compiler else
                                "no C++ compiler found (g++/clang++): compile=True runs eagerly on CPU"))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                       # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in ("train", "reconstruct"):  # an application tunes its own process: docs/speed.md
        from ..heap import keep_heap  # (INVRIM_KEEP_HEAP=0 or your MALLOC_*_ variables turn it off)
        keep_heap()
    ok = False
    try:
        code = int(args.handler(args) or 0)
        ok = True
        return code
    except BrokenPipeError:                      # e.g. `invrim evaluate OUT | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (UsageError, ValueError, TypeError, ImportError, OSError) as e:
        if args.verbose:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"invrim {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("invrim: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:          # under torchrun: leave the process group
            from .. import distributed
            distributed.shutdown(wait=ok)
