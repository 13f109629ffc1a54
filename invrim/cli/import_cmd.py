"""``invrim import``: your own files (HDF5, NumPy, FITS, NIfTI) → invrim data files."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  # fastMRI multi-coil: k-space per slice, one mask per file, coil maps from another file
  invrim import brain_001.h5 --forward-model mri_multicoil -f coils=4 -l sigma=0.01 \\
      --var y=kspace:sample,coil,ky,kx --var mask=mask:kx \\
      --var sens=maps/brain_001.npz::sens:sample,coil,height,width --link -o brain_001_invrim.h5
  # a FITS cube of 100 planes of 64x64 (NAXIS3=100): numpy order (plane, row, column)
  invrim import cube.fits --forward-model blur -f psf_sigma=1.5 -l sigma=0.02 \\
      --var y=PRIMARY:sample,height,width -o cube.h5
  # a mapping file for many files at once (one output per input, {stem} in file names)
  invrim import --mapping fastmri.toml 'raw/*.h5' -o imported/
  invrim import --mapping fastmri.toml raw/file1.h5 --dry-run      # check and print the plan only

--var NAME=[FILE::]ARRAY[:DIM,DIM,...]: the array becomes variable NAME (x, y or a parameter of the
physics: invrim plugins list); one dim name per axis of the array, 'sample' for the axis that counts
samples; no 'sample' axis: the same values for every sample (a mask shared by all slices). Without
FILE, the input file. A missing 'channel' axis is added with size 1; complex x for a forward model
with (re, im) channels is split into them; --complex NAME reads a real last axis of size 2 as
(re, im). Everything is checked against the physics before anything is written."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import", help="turn your own files (HDF5, NumPy, FITS, NIfTI) into invrim data files",
        description="Map the arrays of your files to the variables of a forward model, check them, and write "
                    "invrim's self-describing data file (streamed copy, or --link: HDF5 virtual datasets).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="the file(s) the arrays come from (globs and manifest text files too); several: -o is a folder")
    p.add_argument("-m", "--mapping", metavar="FILE", help="a TOML or JSON mapping (see docs/your-data.md)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=[FILE::]ARRAY[:DIMS]",
                   help="map an array to a variable (repeatable; replaces the mapping's entry of that name)")
    p.add_argument("--select", action="append", default=[], metavar="DIM=START:STOP[:STEP]",
                   help="keep part of a dim in every variable that has it (repeatable)")
    p.add_argument("--complex", action="append", default=[], metavar="NAME",
                   help="variable NAME's real last axis of size 2 holds (re, im) (repeatable)")
    p.add_argument("--forward-model", metavar="NAME", help="registered forward model (invrim plugins list)")
    p.add_argument("-f", "--forward-model-option", action="append", metavar="KEY=VALUE", default=[],
                   help="forward-model option (repeatable)")
    p.add_argument("--likelihood", metavar="NAME", help="registered likelihood (default: gaussian)")
    p.add_argument("-l", "--likelihood-option", action="append", metavar="KEY=VALUE", default=[],
                   help="likelihood option, e.g. sigma=0.05 (repeatable)")
    p.add_argument("-o", "--output", metavar="OUT", help="the file to write (a folder for several inputs)")
    p.add_argument("--link", action="store_true",
                   help="no copy: HDF5 virtual datasets point at the source arrays where possible")
    p.add_argument("--dry-run", action="store_true", help="print variables, dims, dtypes and samples; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-check-values", action="store_true", help="skip the NaN/Inf check while copying")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def _mapping(args: argparse.Namespace):
    from pathlib import Path

    from ..data.importer import ImportMapping, load_mapping, parse_select, parse_var
    from . import UsageError
    from .options import parse_options

    if args.mapping:
        mapping = load_mapping(args.mapping)
    else:
        if not args.forward_model:
            raise UsageError("give the physics: --forward-model NAME (or a --mapping file)")
        mapping = ImportMapping(forward_model=args.forward_model, base=Path("."), label="the command line")
    if args.forward_model:
        mapping.forward_model = args.forward_model
    if args.likelihood:
        mapping.likelihood = args.likelihood
    mapping.forward_model_config.update(parse_options(args.forward_model_option, "--forward-model-option"))
    mapping.likelihood_config.update(parse_options(args.likelihood_option, "--likelihood-option"))
    for text in args.var:
        spec = parse_var(text)
        if spec.file is not None:
            spec.file = str(Path(spec.file).resolve()) if args.mapping else spec.file
        mapping.variables[spec.name] = spec
    for text in args.select:
        dim, s = parse_select(text)
        mapping.select[dim] = s
    for name in args.complex:
        if name not in mapping.variables:
            raise UsageError(f"--complex {name}: no variable {name!r} is mapped")
        mapping.variables[name].complex = True
    if not mapping.variables:
        raise UsageError("map at least y: --var y=ARRAY:DIMS (or a --mapping file)")
    return mapping


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.importer import import_data
    from ..filesets import import_jobs, is_many, resolve_inputs
    from . import UsageError

    mapping = _mapping(args)
    inputs = resolve_inputs(args.inputs) if args.inputs else []
    if not inputs and not mapping.file and not all(v.file for v in mapping.variables.values()):
        raise UsageError("give the input file (INPUT), or a file for every variable (--var NAME=FILE::ARRAY)")
    output = Path(args.output) if args.output else None
    many = len(inputs) > 1 or bool(inputs and is_many(args.inputs)) or bool(
        args.output and (output.is_dir() or args.output.endswith(("/", "\\"))))
    if not args.dry_run and output is None:
        raise UsageError("the output is required: -o FILE (-o FOLDER for several inputs), or --dry-run")
    if many:
        if output is not None and output.is_file():
            raise UsageError(f"several inputs: -o {output} must be a folder, not a file")
        jobs = import_jobs(mapping, inputs, output)
        if not args.dry_run:
            output.mkdir(parents=True, exist_ok=True)
    else:
        jobs = [(mapping.with_file(inputs[0].resolve()) if inputs else mapping, output)]
    for job, out in jobs:
        if args.dry_run:
            plan = import_data(job, out or "unused.h5", link=args.link, dry_run=True)
            print(f"{job.file or 'input'} -> {out or '(no output)'}: nothing written (--dry-run)")
            print(plan.describe())
            continue
        if many and out.is_file() and not args.overwrite:
            print(f"{out} exists: kept (--overwrite replaces it)")
            continue
        path = import_data(job, out, link=args.link, overwrite=args.overwrite, progress=not args.quiet,
                           check_values=not args.no_check_values)
        _report(path)
    return 0


def _report(path) -> None:
    from ..data import validate
    info = validate(path, check_values=False, check_physics=False)
    names = [n for n in info.variables if n in ("x", "y", *info.parameters)]
    shapes = ", ".join(f"{n}{tuple(info.variables[n].shape[1:])}" for n in names)
    linked = [n for n in names if _is_virtual(path, n)]
    how = f" ({', '.join(linked)} linked, the rest copied)" if linked else ""
    print(f"wrote {info.samples} samples to {path}{how}: {shapes}")


def _is_virtual(path, name: str) -> bool:
    import h5py
    with h5py.File(path, "r") as f:
        return bool(f[name].is_virtual)
