"""``invrim simulate``: ground truth + forward model + noise → a data file."""
from __future__ import annotations

import argparse

from .arguments import non_negative_int, positive_int
import sys
from typing import Any, Optional

from .options import accepted_options, check_options, describe_options, option_errors, parse_options

EPILOG = """examples:
  invrim simulate --forward-model blur -f psf_sigma=[1,2] --likelihood gaussian -l sigma=0.05 \\
      --generator ellipses -g shape=[64,64] --samples 1000 --seed 0 -o train.h5
  invrim simulate --forward-model mri_multicoil -f acceleration=4 -f coils=8 --generator mri_phantom \\
      -l sigma=0.01 --samples 200 --seed 1 -o mri.h5
  invrim simulate --forward-model blur -f psf_sigma=2 --from train.h5 -o test_blur2.h5
  invrim simulate --forward-model radio_interferometry --from skies.fits --from-array 0:sample,height,width \\
      -o radio.h5                                      # ground truth from a FITS cube (astropy)
  invrim simulate --forward-model blur --options      # list the options of a component

Option values are JSON when they parse (numbers, [lists], true/false), otherwise strings.
Defaults: a forward model's `dimensions` option, when it has one and it is not given, is the
ground truth's number of spatial axes (from the generator or the --from file); `blur` without a
PSF option uses a Gaussian PSF of psf_sigma=1.5 px; the gaussian likelihood's sigma is 0.05.
The file records every option used (its forward_model_config, likelihood_config attributes).
The file's arrays depend only on the seed and the options (bit for bit)."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "simulate", help="simulate a dataset file: ground truth, forward model, noise",
        description="Simulate observations y ~ p(y | F(x)) of ground truth x from a generator (or from the x "
                    "of an existing file) and stream them, with any per-sample physics parameters, into a "
                    "self-describing netCDF-4/HDF5 file.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", metavar="FILE", help="the data file to write (.h5)")
    p.add_argument("--forward-model", metavar="NAME", required=True, help="registered forward model (invrim plugins list)")
    p.add_argument("-f", "--forward-model-option", action="append", metavar="KEY=VALUE", default=[],
                   help="forward-model option (repeatable)")
    p.add_argument("--likelihood", metavar="NAME", default="gaussian", help="registered likelihood (default: gaussian)")
    p.add_argument("-l", "--likelihood-option", action="append", metavar="KEY=VALUE", default=[],
                   help="likelihood option, e.g. sigma=0.05 (repeatable)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--generator", metavar="NAME", help="ground-truth generator (random_field, ellipses, image_crops, ...)")
    src.add_argument("--from", dest="source", metavar="FILE", help="take the ground truth x from this data file")
    p.add_argument("--from-array", dest="source_array", metavar="ARRAY[:DIMS]", default=None,
                   help="with --from a FITS, NIfTI, NumPy or other file: the array holding the ground truth and "
                        "its axis names, one of them 'sample', e.g. '0:sample,height,width' (a FITS cube)")
    p.add_argument("-g", "--generator-option", action="append", metavar="KEY=VALUE", default=[],
                   help="generator option, e.g. shape=[64,64] (repeatable)")
    p.add_argument("--samples", type=positive_int, metavar="N", help="number of samples (default with --from: all)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="real dtype (default float32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--options", action="store_true",
                   help="print the options of the named components and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import simulate
    from ..plugins import registry
    from . import UsageError

    reg = registry()
    if args.options:
        print(describe_options(reg.forward_models, args.forward_model))
        print(describe_options(reg.likelihoods, args.likelihood))
        if args.generator:
            print(describe_options(reg.generators, args.generator))
        return 0
    if not args.output:
        raise UsageError("the output file is required: -o FILE")
    if not args.generator and not args.source:
        raise UsageError("give the ground truth: --generator NAME (see 'invrim plugins list') or --from FILE")
    if args.source_array and not args.source:
        raise UsageError("--from-array names an array of the --from file: give --from FILE too")
    if args.source and args.generator_option:
        raise UsageError("--generator-option is only used with --generator")
    if args.generator and args.samples is None:
        raise UsageError("--samples N is required with --generator")
    fm_opts = parse_options(args.forward_model_option, "--forward-model-option")
    lik_opts = parse_options(args.likelihood_option, "--likelihood-option")
    gen_opts = parse_options(args.generator_option, "--generator-option")
    check_options(reg.forward_models, args.forward_model, fm_opts, "--forward-model-option")
    check_options(reg.likelihoods, args.likelihood, lik_opts, "--likelihood-option")
    if args.generator:
        check_options(reg.generators, args.generator, gen_opts, "--generator-option")
    fm_opts = _complete_forward_model_options(reg, args, fm_opts, gen_opts)
    with option_errors(reg.forward_models, args.forward_model, fm_opts, "--forward-model-option"), \
            option_errors(reg.likelihoods, args.likelihood, lik_opts, "--likelihood-option"), \
            option_errors(reg.generators if args.generator else None, args.generator, gen_opts, "--generator-option"):
        path = simulate(args.output, args.forward_model, args.likelihood, args.samples,
                        generator=args.generator, source=args.source, source_array=args.source_array, seed=args.seed,
                        forward_model_config=fm_opts, likelihood_config=lik_opts,
                        generator_config=gen_opts if args.generator else None,
                        dtype=getattr(torch, args.dtype), overwrite=args.overwrite, progress=not args.quiet)
    from ..data import validate
    info = validate(path, check_values=False, check_physics=False)
    shapes = ", ".join(f"{n}{tuple(v.shape[1:])}" for n, v in info.variables.items())
    print(f"wrote {info.samples} samples to {path}: {shapes}")
    return 0


def _spatial_axes(reg, args: argparse.Namespace, gen_opts: dict[str, Any]) -> Optional[int]:
    """How many spatial axes the ground truth has (None when it cannot be told here: then
    :func:`~invrim.data.simulate` reports the problem itself)."""
    from ..physics.base import SPATIAL_DIMS
    spatial = {name for names in SPATIAL_DIMS.values() for name in names}
    try:
        if args.generator:
            dims = tuple(reg.generators.build(args.generator, **gen_opts).dims)
        elif args.source_array:
            from ..data.simulation import parse_array
            dims = parse_array(args.source_array)[1] or ()
        else:
            from ..data import validate
            from ..data.schema import TRUTH
            dims = tuple(validate(args.source, check_values=False, check_physics=False).variables[TRUTH].dims)
    except Exception:
        return None
    count = sum(d in spatial for d in dims)
    return count if count in SPATIAL_DIMS else None


def _complete_forward_model_options(reg, args: argparse.Namespace, fm_opts: dict[str, Any],
                                    gen_opts: dict[str, Any]) -> dict[str, Any]:
    """Fill in what the command line left out: ``dimensions`` from the ground truth, and the
    forward model's own ``simulation_defaults`` (e.g. blur's default PSF)."""
    factory = reg.forward_models.load(args.forward_model)
    opts = dict(fm_opts)
    defaults = getattr(factory, "simulation_defaults", None)
    if callable(defaults):
        added = {k: v for k, v in defaults(opts).items() if k not in opts}
        if added and not args.quiet:
            listed = ", ".join(f"{k}={v!r}" for k, v in added.items())
            print(f"invrim simulate: forward model {args.forward_model!r}: using the default {listed} "
                  "(set it with -f)", file=sys.stderr)
        opts.update(added)
    # a forward model's `dimensions`, unless given (or fixed by a kernel array such as blur's psf)
    if "dimensions" not in opts and "dimensions" in (accepted_options(factory) or []) and "psf" not in opts:
        axes = _spatial_axes(reg, args, gen_opts)
        if axes is not None:
            opts["dimensions"] = axes
    return opts
