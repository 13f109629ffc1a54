"""Many files on the command line: ``invrim reconstruct RUN 'data/*.h5' -o out/`` and
``invrim evaluate FOLDER`` hand over to :mod:`invrim.filesets` from here, so that the commands'
own modules only ask :func:`wants_many` / :func:`is_folder` and call :func:`reconstruct` /
:func:`evaluate`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence, Union


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    """``--shard I/N`` (for several inputs)."""
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="with several inputs: take inputs I, I+N, I+2N ... of the sorted list "
                             "(a job array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")


def wants_many(observations: Union[str, Sequence[str]], output: str) -> bool:
    """Whether ``invrim reconstruct`` was given a set of inputs: several files, a glob, a manifest,
    or an output name ending in ``/`` (one file into a folder). One input file with ``-o`` an
    existing folder (no ``/``) is not: that is a mistake reported by ``reconstruct`` itself."""
    from ..filesets import is_many
    items = [observations] if isinstance(observations, (str, os.PathLike)) else list(observations)
    return is_many(items) or str(output).endswith(("/", os.sep))


def reconstruct(args: argparse.Namespace, observations: Union[str, Sequence[str]], **options) -> int:
    """:func:`invrim.filesets.reconstruct_many` for ``invrim reconstruct`` with several inputs."""
    from .. import distributed as dd
    from ..filesets import parse_shard, reconstruct_many
    shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
    outputs = reconstruct_many(args.run, observations, args.output, shard=shard, **options)
    if dd.is_main():
        which = f" (shard {shard[0]}/{shard[1]})" if shard else ""
        print(f"{len(outputs)} reconstruction(s) in {args.output}{which}; manifest: "
              f"{Path(args.output) / 'manifest.json'}")
    return 0


def is_folder(path: str) -> bool:
    """Whether ``invrim evaluate`` was given a folder of reconstructions."""
    return Path(path).is_dir()


def evaluate(args: argparse.Namespace) -> int:
    """:func:`invrim.filesets.evaluate_folder` for ``invrim evaluate FOLDER``."""
    import json

    from ..filesets import evaluate_folder, format_folder
    result = evaluate_folder(args.reconstruction, batch_size=args.batch_size)
    if getattr(args, "json", False):
        for skipped in result["skipped"]:
            print(f"invrim evaluate: note: skipped {skipped['file']}: {skipped['reason']}", file=sys.stderr)
        print(json.dumps(result, indent=2, allow_nan=False, default=str))
    else:
        print(format_folder(result))
    return 0
