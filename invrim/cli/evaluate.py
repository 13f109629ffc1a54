"""``invrim evaluate OUT.h5``: PSNR / SSIM / NMSE of a reconstruction against the ground truth."""
from __future__ import annotations

import argparse
import sys
from .arguments import positive_int

EPILOG = """examples:
  invrim evaluate recon.h5                       # truth and observations from the reconstructed file
  invrim evaluate recon.h5 --truth clean.h5      # the ground truth x lives in another data file
  invrim evaluate recon.h5 --observations moved/test.h5 --json --per-sample > metrics.json
  invrim evaluate recon.h5 --plot calibration.png   # a file written with --uncertainty: its calibration
  invrim evaluate out/                           # a folder: every file's medians and the overall ones

Rows: the RIM (x_hat), the forward model's pseudo-inverse or adjoint of y (the classical baseline)
and, when y is a real image of x's shape (denoising, deblurring), the observation itself. Complex
images stored as (real, imag) channels are compared as magnitude images. --json writes strict JSON
(null where a value is not finite). Below the table: the data consistency of every sample (reduced
chi-square or Poisson deviance of F(x_hat) against y, with the number flagged as possibly out of
distribution) and, for a file written with --uncertainty, the coverage of its intervals."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="PSNR / SSIM / NMSE of a reconstruction, its baseline and the observation",
        description="Compare the reconstructions of an 'invrim reconstruct' output file with the ground truth, "
                    "next to the classical baseline (pseudo-inverse / adjoint) and the observation.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reconstruction", metavar="OUT",
                   help="reconstruction file made by 'invrim reconstruct', or a folder of them (a summary)")
    p.add_argument("--truth", metavar="FILE",
                   help="data file holding the ground truth x (default: the observation file)")
    p.add_argument("--observations", metavar="FILE",
                   help="the observation file (default: the input_file recorded in OUT)")
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
    p.add_argument("--per-sample", action="store_true", help="also list every sample's metrics")
    p.add_argument("--plot", metavar="FIG", help="with a file written with --uncertainty: write the calibration "
                   "figure (coverage against nominal, width against error, data fit per sample)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="samples evaluated at a time (default 64)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from . import UsageError, many
    from ..evaluation import evaluate, format_table, to_json
    if many.is_folder(args.reconstruction):
        if args.plot or args.truth or args.observations or args.per_sample:
            raise UsageError(f"{args.reconstruction} is a folder: --plot, --truth, --observations and --per-sample "
                             "apply to one reconstruction file")
        return many.evaluate(args)
    result = evaluate(args.reconstruction, truth=args.truth, observations=args.observations,
                      batch_size=args.batch_size)
    if args.json:
        for note in result["notes"]:
            print(f"invrim evaluate: note: {note}", file=sys.stderr)
        print(to_json(result, per_sample=args.per_sample))
    else:
        print(format_table(result, per_sample=args.per_sample))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from ..viz import plot_calibration
        plot_calibration(result, output=args.plot)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
