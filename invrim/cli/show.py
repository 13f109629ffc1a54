"""``invrim show``: a figure of one reconstructed sample, of one sample of a data file, or of a run's
loss curves."""
from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import positive_int

EPILOG = """examples:
  invrim show recon.h5 --index 3 -o sample3.png     # observation, baseline, RIM, truth, residuals, error per step
  invrim show recon.h5 --index -1 --truth clean.h5 -o last.pdf
  invrim show run/ -o loss.png                       # training / validation loss per epoch, best epoch marked
  invrim show train.h5 --index 5                     # a data sample: observation, baseline, truth

A folder is read as a run made by 'invrim train'; a file as a reconstruction made by 'invrim reconstruct'
or as a data file made by 'invrim simulate' (before training: is the noise right, what does the baseline
give). The format follows the suffix of -o (.png, .pdf, .svg ...); without -o the figure is written to
FILE_sampleI.png (or RUN_loss.png) in the current folder."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "show", help="figure of a reconstructed sample, a data sample, or a run's loss curves",
        description="Draw one sample of a reconstruction file (observation, pseudo-inverse baseline, RIM "
                    "reconstruction, truth, residuals and the error along the RIM trajectory, with PSNR/SSIM), "
                    "one sample of a data file (observation, baseline, truth), or the training and validation "
                    "loss of a run folder.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="FILE|RUN", help="reconstruction file, data file, or run folder")
    p.add_argument("--index", type=int, default=None, help="sample to show (default 0; negative counts from the end)")
    p.add_argument("-o", "--output", metavar="FIG", help="figure file to write (.png, .pdf, .svg ...)")
    p.add_argument("--truth", metavar="FILE", help="data file holding the ground truth x")
    p.add_argument("--observations", metavar="FILE", help="the observation file (default: the one recorded in OUT)")
    p.add_argument("--dpi", type=positive_int, default=150, help="resolution of raster formats (default 150)")
    p.add_argument("--no-check-values", action="store_true",
                   help="with a data file: skip the NaN/Inf scan of the whole file (one read pass)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")

    from . import UsageError
    from ..data.schema import DataError
    from ..viz import plot_data_sample, plot_reconstruction, plot_training

    path = Path(args.path)
    if path.is_dir():
        if args.index is not None or args.truth or args.observations:
            raise UsageError(f"{path} is a run folder: --index, --truth and --observations apply to "
                             "reconstruction files")
        out = Path(args.output) if args.output else Path(f"{path.resolve().name}_loss.png")
        plot_training(path, output=out, dpi=args.dpi)
    else:
        index = 0 if args.index is None else args.index
        out = Path(args.output) if args.output else Path(f"{path.stem}_sample{index}.png")
        try:
            if _is_data_file(path):
                if args.truth or args.observations:
                    raise UsageError(f"{path} is a data file: --truth and --observations apply to reconstruction files")
                plot_data_sample(path, index, output=out, dpi=args.dpi, check_values=not args.no_check_values)
            else:
                plot_reconstruction(path, index, truth=args.truth, observations=args.observations, output=out,
                                    dpi=args.dpi)
        except DataError as e:
            if str(e).startswith("sample index"):               # the library's words for --index
                raise UsageError("--index" + str(e)[len("sample index"):]) from None
            raise
    print(f"wrote {out}")
    return 0


def _is_data_file(path: Path) -> bool:
    """Whether ``path`` says it is an invrim data file (anything else is read as a reconstruction,
    which gives the one-line error for files that are neither)."""
    from ..data.schema import FORMAT, DataError, decode_attrs
    from ..data.validation import open_h5
    try:
        with open_h5(path) as f:
            return decode_attrs(dict(f.attrs)).get("invrim_format") == FORMAT
    except DataError:
        return False
