"""``invrim calibrate RUN CAL.h5``: conformal calibration of a run's uncertainty (docs/uncertainty.md)."""
from __future__ import annotations

import argparse

from ..config import SCALES, CalibrationConfig, default
from .arguments import positive_int, weights_choice

EPILOG = """examples:
  invrim simulate --forward-model blur --generator ellipses --samples 500 --seed 7 -o cal.h5   # held-out pairs
  invrim calibrate run/ cal.h5                                   # 90 % per-pixel intervals
  invrim calibrate run/ cal.h5 --coverage 0.95 --false-alarm 0.01
  invrim calibrate run0/ cal.h5 --ensemble run1/ run2/           # scale: the spread of three RIMs
  invrim reconstruct run/ obs.h5 -o out.h5 --uncertainty         # x_uncertainty and ood in out.h5
  invrim evaluate out.h5 --plot calibration.png                  # coverage against nominal

The calibration file must hold ground truth x and observations y of the same physics as the run,
drawn like the data you will reconstruct and not used for training (another --seed of 'invrim
simulate'). The result is written to RUN/calibration.json (JSON) and used by 'invrim reconstruct
--uncertainty'. The guarantee is marginal: over pixels and samples drawn like the calibration file,
not for every single image."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="calibrate a run's per-pixel intervals and data-consistency check (conformal)",
        description="Reconstruct held-out simulated pairs with the RIM of RUN and store, in RUN/calibration.json, "
                    "the split-conformal quantiles that turn the RIM's per-pixel scale into intervals with "
                    "guaranteed coverage, and the range of the data fit beyond which a sample is flagged as "
                    "possibly out of distribution.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder made by 'invrim train'")
    p.add_argument("calibration", metavar="CAL", help="data file of held-out pairs x, y (e.g. from 'invrim simulate')")
    p.add_argument("--coverage", type=float, default=default(CalibrationConfig, "coverage"),
                   help="nominal coverage of the intervals (default %(default)s)")
    p.add_argument("--false-alarm", type=float, default=default(CalibrationConfig, "false_alarm"),
                   help="rate at which in-distribution samples are flagged by the data-consistency check "
                        "(default %(default)s)")
    p.add_argument("--ensemble", nargs="+", metavar="RUN2", default=None,
                   help="further run folders of the same problem (e.g. other --seed): the scale is their spread")
    p.add_argument("--scale", choices=SCALES, default=default(CalibrationConfig, "scale"),
                   help="per-pixel scale: base (trajectory movement or ensemble spread), learned (fitted on half "
                        "of CAL), or auto: the narrower on that half (default %(default)s)")
    p.add_argument("--weights", type=weights_choice, default="best", help="which weights: best (default), last, or an epoch number")
    p.add_argument("--batch-size", type=positive_int, default=default(CalibrationConfig, "batch_size"),
                   help="samples per batch (default %(default)s)")
    p.add_argument("--seed", type=int, default=default(CalibrationConfig, "seed"),
                   help="seed of the split into tuning and calibration samples (default %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda … (default cpu)")
    p.add_argument("--no-check-values", action="store_true", help="skip the NaN/Inf scan of CAL")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runs import CALIBRATION_FILE
    from ..uncertainty import calibrate, describe
    record = calibrate(args.run, args.calibration, args.coverage, false_alarm=args.false_alarm,
                       ensemble=args.ensemble, weights=args.weights, device=args.device, batch_size=args.batch_size,
                       seed=args.seed, scale=args.scale, progress=not args.quiet, check_values=not args.no_check_values)
    print(describe(record))
    print(f"wrote {Path(args.run) / CALIBRATION_FILE}")
    return 0
