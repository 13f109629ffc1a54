"""Simulation: ground truth (a generator or an existing file) + forward model + noise → data file."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..plugins import registry
from ..plugins.provenance import provider_record
from .io import DatasetWriter, check_output
from .validation import open_h5, warn_if_unregistered
from .schema import OBSERVATION, SAMPLE, TRUTH, DataError, check_dim_names, dim_options

#: Samples drawn per random stream. Fixed (not a user option) so that a seed gives the same file
#: whatever the machine, and the first N samples are the same for any total count.
BLOCK = 64


def block_generator(seed: int, block: int) -> torch.Generator:
    """An independent, reproducible random stream for block ``block`` of seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(block)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def _build(kind: str, spec: Any, config: Optional[dict]) -> tuple[Any, str, dict]:
    """A component from a registry name + options, or an instance as is."""
    if isinstance(spec, str):
        obj = registry().kinds()[f"{kind}s"].build(spec, **(config or {}))
        return obj, spec, obj.config() if hasattr(obj, "config") else dict(config or {})
    if config:
        raise ValueError(f"{kind}_config is only used with a {kind} name, not an instance")
    name = getattr(spec, "name", None)
    if not isinstance(name, str):
        raise ValueError(f"the {kind} instance has no registry 'name' attribute")
    return spec, name, spec.config() if hasattr(spec, "config") else {}


def parse_array(text: str) -> tuple[str, Optional[tuple[str, ...]]]:
    """``"ARRAY[:DIM,DIM,...]"`` (``--from-array``) as ``(array, dims or None)``: the grammar of
    ``invrim import --var`` (:func:`invrim.data.importer.parse_var`) without its ``NAME=``."""
    from .importer import parse_var
    spec = parse_var(f"{TRUTH}={text}")
    if spec.file is not None or spec.array is None:
        raise DataError(f"--from-array expects ARRAY[:DIM,DIM,...] (the file is --from's), got {text!r}")
    return spec.array, spec.dims


class _ForeignTruth:
    """Reads ``x`` from one array of any file a reader opens (FITS, NIfTI, NumPy, HDF5 …): its
    axes named by ``dims`` (one of them ``sample``; a missing ``channel`` axis is added)."""

    def __init__(self, path: Path, array: str, x_dims: tuple[str, ...]):
        from .readers import open_reader
        name, dims = parse_array(array)
        self.path, self.name = path, name
        self.reader = open_reader(path)
        info = self.reader.info(name)
        dims = dims or info.dims
        where = f"{path}: array {name!r} of shape {tuple(info.shape)}"
        if dims is None:
            raise DataError(f"{where} has no axis names: give them, e.g. --from-array "
                            f"'{name}:{','.join([SAMPLE, *x_dims][:len(info.shape)])}'")
        if len(dims) != len(info.shape):
            raise DataError(f"{where} has {len(info.shape)} axes but {len(dims)} names were given ({', '.join(dims)})")
        if SAMPLE not in dims:
            raise DataError(f"{where}: one axis must be named '{SAMPLE}' (the images), got ({', '.join(dims)})")
        if np.dtype(info.dtype).kind not in "fiu":
            raise DataError(f"{where} has dtype {info.dtype}; expected real numbers")
        wanted = [d for d in x_dims if d != "channel" or "channel" in dims]
        if x_dims and sorted(d for d in dims if d != SAMPLE) != sorted(wanted):
            raise DataError(f"{where} has axes ({', '.join(dims)}) but the forward model expects "
                            f"({SAMPLE}, {', '.join(x_dims)}) (in any order; channel may be left out)")
        self.dims, self.axis = tuple(dims), dims.index(SAMPLE)
        self.samples = int(info.shape[self.axis])
        self.add_channel = bool(x_dims) and "channel" in x_dims and "channel" not in dims
        target = [SAMPLE, *wanted] if x_dims else list(dims)
        self.pattern = f"{' '.join(dims)} -> {' '.join(target)}"

    def __call__(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        from einops import rearrange
        index = tuple(slice(start, stop) if i == self.axis else slice(None) for i in range(len(self.dims)))
        t = torch.from_numpy(np.ascontiguousarray(self.reader.read(self.name, index)).astype(np.float64))
        t = rearrange(t, self.pattern)
        if self.add_channel:
            t = t.unsqueeze(1)
        return t.contiguous().to(dtype)


def _source_truth(path: Union[str, os.PathLike], x_dims: tuple[str, ...], array: Optional[str]):
    """The reader of ``simulate``'s ``source``: the ``x`` of an invrim data file, or ``array`` of
    any file a reader opens."""
    if array is not None:
        return _ForeignTruth(Path(path), array, x_dims)
    import h5py
    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an invrim data file: name the array that holds the ground truth and its "
                        "axes, e.g. --from-array '0:sample,height,width' (source_array=...)")
    return _SourceTruth(path, x_dims)


class _SourceTruth:
    """Reads ``x`` from an existing file in blocks, axes put in the forward model's order."""

    def __init__(self, path: Union[str, os.PathLike], x_dims: tuple[str, ...], variable: str = TRUTH):
        self.path = Path(path)
        with open_h5(self.path) as f:
            if variable not in f.variables:
                raise DataError(f"{self.path}: missing variable {variable!r} to take the ground truth from (another "
                                "array of the file: --from-array NAME:DIMS, source_array=...)")
            var = f.variables[variable]
            dims, self.shape, dtype = tuple(var.dimensions), tuple(var.shape), np.dtype(var.dtype)
        if not dims or dims[0] != SAMPLE:
            raise DataError(f"{self.path}: variable {variable!r} has dims ({', '.join(dims)}); "
                            f"it must start with '{SAMPLE}'")
        if dtype.kind != "f":
            raise DataError(f"{self.path}: variable {variable!r} has dtype {dtype}; expected real floating point")
        self.variable = variable
        self.samples = self.shape[0]
        self.pattern = None
        if x_dims and tuple(dims[1:]) != tuple(x_dims):
            if sorted(dims[1:]) != sorted(x_dims):
                raise DataError(f"{self.path}: variable {variable!r} has dims ({', '.join(dims)}) but the forward "
                                f"model expects ({SAMPLE}, {', '.join(x_dims)}) (in any order)")
            self.pattern = f"{' '.join(dims)} -> {SAMPLE} {' '.join(x_dims)}"

    def __call__(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        import h5py
        from einops import rearrange
        with h5py.File(self.path, "r") as f:
            t = torch.from_numpy(np.ascontiguousarray(f[self.variable][start:stop]))
        if self.pattern:
            t = rearrange(t, self.pattern).contiguous()
        return t.to(dtype)


def _dims_for(name: str, tensor: torch.Tensor, spec: dict) -> tuple[str, ...]:
    rank = tensor.dim() - 1
    for option in dim_options(spec[name]) if name in spec else []:
        if len(option) == rank:
            return tuple(option)
    return tuple(f"{name}_dim{i}" for i in range(rank))


def simulate(path: Union[str, os.PathLike], forward_model: Any, likelihood: Any, samples: Optional[int] = None,
             *, generator: Any = None, source: Union[str, os.PathLike, None] = None, seed: int = 0,
             forward_model_config: Optional[dict] = None, likelihood_config: Optional[dict] = None,
             generator_config: Optional[dict] = None, dtype: torch.dtype = torch.float32,
             overwrite: bool = False, progress: bool = True, source_array: Optional[str] = None) -> Path:
    """Simulate a training or test set and stream it into an invrim data file.

    For every sample: ground truth ``x`` from ``generator`` (or the ``x`` variable of ``source``),
    per-sample physics parameters from ``forward_model.sample_parameters`` and
    ``likelihood.sample_parameters`` (masks, PSFs, noise levels …), and ``y ~ p(y | F(x))``.

    Parameters
    ----------
    path
        Output file; written as ``path.partial`` and renamed when complete.
    forward_model, likelihood, generator
        Registry names (built with ``*_config`` options) or instances.
    samples
        Number of samples (default: all of ``source``).
    source
        Take ``x`` from this file instead of a generator: the ``x`` of an invrim data file, or,
        with ``source_array``, one array of any file a reader opens (FITS, NIfTI, NumPy, HDF5).
    source_array
        ``"ARRAY[:DIM,DIM,…]"``: the array of ``source`` and its axis names, one of them
        ``sample`` (e.g. ``"0:sample,height,width"`` for a FITS cube's primary HDU; a missing
        ``channel`` axis is added).
    seed
        Makes the file's data reproducible bit for bit (the same seed and options give the same
        arrays; only the ``created`` attribute differs).
    dtype
        Real dtype of ``x`` (and of ``y``'s parts).

    Returns
    -------
    Path of the finished file.
    """
    out = Path(path)
    check_output(out, overwrite, inputs=[source])     # before any (possibly long) simulation
    if (generator is None) == (source is None):
        raise ValueError("give exactly one of generator (a name) or source (a file with ground truth x)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    fm, fm_name, fm_cfg = _build("forward_model", forward_model, forward_model_config)
    lik, lik_name, lik_cfg = _build("likelihood", likelihood, likelihood_config)
    attrs: dict[str, Any] = {"forward_model": fm_name, "forward_model_config": fm_cfg,
                             "likelihood": lik_name, "likelihood_config": lik_cfg, "seed": seed}
    providers = {"forward_model": provider_record("forward_model", fm_name),
                 "likelihood": provider_record("likelihood", lik_name)}
    if source is not None:
        if not Path(source).is_file():
            raise DataError(f"{source}: no such file")
        reader = _source_truth(source, tuple(fm.x_dims), source_array)
        samples = reader.samples if samples is None else samples
        if samples > reader.samples:
            raise DataError(f"{reader.path} holds {reader.samples} samples of x; cannot simulate {samples}")
        attrs["source"] = str(Path(source).resolve())
        if source_array is not None:
            attrs["source_array"] = str(source_array)
        def make_x(start: int, n: int, g) -> torch.Tensor:
            x = reader(start, start + n, dtype)
            if n < BLOCK:                 # pad the last block (its extra samples are dropped)
                x = torch.cat([x, x[-1:].expand(BLOCK - n, *x.shape[1:])])
            return x
    else:
        gen, gen_name, gen_cfg = _build("generator", generator, generator_config)
        attrs.update(generator=gen_name, generator_config=gen_cfg)
        providers["generator"] = provider_record("generator", gen_name)
        make_x = lambda start, n, g: gen(batch=BLOCK, generator=g, dtype=dtype)   # noqa: E731
        gen_label = f"generator {gen_name!r}"
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    providers = {k: v for k, v in providers.items() if v}
    attrs["providers"] = providers
    warn_if_unregistered(attrs, path)
    versions = {"invrim": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for p in providers.values():
        if p.get("distribution"):
            versions[p["distribution"]] = p.get("version")
    attrs["versions"] = versions
    x_label = gen_label if source is None else f"the x of {source}"

    def make_block(block: int) -> dict[str, torch.Tensor]:
        # every block draws all BLOCK samples and keeps what it needs, so that the first N samples
        # of a file are those of any larger file made with the same seed
        start = block * BLOCK
        n = min(BLOCK, samples - start)
        g = block_generator(seed, block)
        x = make_x(start, n, g)
        if not isinstance(x, torch.Tensor) or x.shape[0] != BLOCK:
            raise DataError(f"cannot simulate {out}: {x_label} did not return a tensor of {BLOCK} samples")
        if fm.x_dims and x.dim() - 1 != len(fm.x_dims):
            raise DataError(f"cannot simulate {out}: {x_label} makes x of shape {tuple(x.shape[1:])} but forward "
                            f"model {fm_name!r} expects axes ({', '.join(fm.x_dims)})")
        try:
            with torch.no_grad():
                params = dict(fm.sample_parameters(x, g))
                prediction = fm(x, **params)
                params.update(lik.sample_parameters(prediction, g))
                y = lik.sample(prediction, g, **params)
        except DataError:
            raise
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"cannot simulate {out}: forward model {fm_name!r} with likelihood {lik_name!r} fails "
                            f"on x of shape {tuple(x.shape[1:])} from {x_label}: {first}") from None
        return {k: v[:n] for k, v in {TRUTH: x, OBSERVATION: y, **params}.items()}

    first = make_block(0)
    param_names = [k for k in first if k not in (TRUTH, OBSERVATION)]
    attrs["parameters"] = param_names
    spec = {**(getattr(lik, "param_dims", {}) or {}), **(getattr(fm, "param_dims", {}) or {})}
    dims = {TRUTH: tuple(fm.x_dims) or tuple(f"x_dim{i}" for i in range(first[TRUTH].dim() - 1)),
            OBSERVATION: tuple(fm.y_dims) or tuple(f"y_dim{i}" for i in range(first[OBSERVATION].dim() - 1))}
    for name in param_names:
        dims[name] = _dims_for(name, first[name], spec)
    sizes: dict[str, int] = {}
    owner: dict[str, str] = {}
    for name, names in dims.items():
        check_dim_names(names, f"forward model {fm_name!r} (variable {name!r})")
        shape = tuple(first[name].shape[1:])
        if len(shape) != len(names):
            raise DataError(f"variable {name!r} has shape {shape} but its dims are ({', '.join(names)})")
        for d, s in zip(names, shape):
            if d in sizes and sizes[d] != s:
                raise DataError(f"dimension {d!r} has size {sizes[d]} in {owner[d]!r} but {s} in {name!r}: the forward "
                                f"model {fm_name!r} must give axes of different sizes different names")
            sizes[d] = s
            owner[d] = name
    variables = {name: (dims[name], first[name].dtype) for name in dims}
    blocks = -(-samples // BLOCK)
    with DatasetWriter(path, samples, variables, sizes, attrs, overwrite=overwrite) as writer, \
            tqdm(total=samples, disable=not progress, desc="simulate", unit="sample", dynamic_ncols=True) as bar:
        for block in range(blocks):
            data = first if block == 0 else make_block(block)
            for name in dims:
                if tuple(data[name].shape[1:]) != tuple(first[name].shape[1:]):
                    raise DataError(f"{name!r} changed shape between samples: {tuple(first[name].shape[1:])} "
                                    f"then {tuple(data[name].shape[1:])}")
            writer.write(block * BLOCK, **data)
            bar.update(data[OBSERVATION].shape[0])
    return Path(path)
