"""``invrim reconstruct RUN OBS -o OUT``: batch reconstruction of a data file."""
from __future__ import annotations

import argparse

from ..config import PRECISIONS
from . import many
from .arguments import positive_int, weights_choice

EPILOG = """examples:
  invrim reconstruct run/ test.h5 -o recon.h5
  invrim reconstruct run/ test.h5 -o recon.h5 --batch-size 64 --trajectory --weights last
  invrim reconstruct run/ obs.h5 -o recon.h5 --uncertainty        # after 'invrim calibrate run/ cal.h5'
  invrim reconstruct run0/ obs.h5 -o recon.h5 --ensemble run1/ run2/   # mean and spread of three RIMs
  invrim reconstruct run/ 'data/*.h5' -o out/                     # one out/<name>.h5 per input, resumable
  invrim reconstruct run/ files.txt -o out/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT

Every output holds data_fit per sample (reduced chi-square of F(x_hat) against y for Gaussian noise,
the Poisson deviance per value for Poisson noise). --uncertainty adds x_uncertainty (the half-width of
the calibrated per-pixel interval x_hat +- x_uncertainty) and ood (1 where data_fit lies outside the
calibration set's range); see docs/uncertainty.md.

Killed or interrupted? Run the same command again: it finishes the job from RECON.h5.partial, and
once RECON.h5 is complete the same command is a no-op (exit 0). A complete output is never
overwritten without --overwrite; a second command writing the same output stops with one line.
Several inputs: out/manifest.json records each finished file, so a rerun skips them and resumes the
one cut short; --shard I/N splits the inputs so that no two jobs write the same output (under torchrun
the ranks of one job share each of its files). 'invrim evaluate out/' summarises the folder.
As an application, this command keeps glibc's heap between batches (invrim.heap.keep_heap;
INVRIM_KEEP_HEAP=0 turns it off)."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reconstruct", help="reconstruct an observation file with a trained RIM (resumable)",
        description="Stream the observations of a data file through the RIM trained in RUN and write x_hat "
                    "(and optionally the trajectory) with provenance to a new file. Crash-safe and resumable.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder made by 'invrim train'")
    p.add_argument("observations", metavar="OBS", nargs="+",
                   help="data file with observations y (x optional); or several files, a quoted glob such as "
                        "'data/*.h5', or a manifest (.txt/.lst: one path per line), with -o a folder")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="reconstruction file to write (a folder for several inputs: one OUT/<name>.h5 each)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="samples per batch (default 16)")
    p.add_argument("--trajectory", action="store_true", help="also store every step x_1..x_T")
    p.add_argument("--weights", "--checkpoint", dest="weights", type=weights_choice, default="best",
                   help="which weights of RUN: best (default), last, or an epoch number (--checkpoint: older name)")
    p.add_argument("--device", default=None, help="cpu, cuda … (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-check-values", action="store_true", help="skip the NaN/Inf scan of the input")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="precision of the backbone for this job (default: the run's own, saved with it)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the backbone through torch.compile for this job (compiled at the first batch, "
                        "eager where that fails; pays with bf16 on CPUs with AMX, docs/speed.md); default: the "
                        "run's own setting")
    p.add_argument("--uncertainty", action="store_true",
                   help="write calibrated per-pixel intervals (x_uncertainty) and the out-of-distribution flag "
                        "(ood); needs 'invrim calibrate RUN CAL.h5' first")
    p.add_argument("--ensemble", nargs="+", metavar="RUN2", default=None,
                   help="further run folders of the same problem: x_hat is the members' mean, x_spread their "
                        "standard deviation (with --uncertainty: default the calibration's members)")
    many.add_shard_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import UsageError
    from ..reconstruct import reconstruct
    options = dict(batch_size=args.batch_size, trajectory=args.trajectory, weights=args.weights,
                   overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                   check_values=not args.no_check_values, precision=args.precision, uncertainty=args.uncertainty,
                   ensemble=args.ensemble, compile=args.compile)
    observations = args.observations[0] if len(args.observations) == 1 else args.observations
    if many.wants_many(observations, args.output):
        return many.reconstruct(args, observations, **options)
    if args.shard:
        raise UsageError("--shard splits several inputs between jobs; give a glob, several files or a manifest")
    existed = Path(args.output).is_file() and not args.overwrite
    path = reconstruct(args.run, observations, args.output, **options)
    from .. import distributed as dd
    if dd.is_main():
        # without --overwrite an existing output is only ever returned when it is complete already
        print(f"{path} is complete already (same input, weights and options): nothing to do" if existed
              else f"wrote {path}")
    return 0
