"""Many files through: reconstruct a set of files (a glob, a list, a manifest) into a folder,
resumably and split across jobs, and summarise a folder of reconstructions.

* :func:`resolve_inputs` — a glob, a list of paths or a manifest text file → the sorted inputs;
* :func:`output_names` — one output name per input (``<stem>.h5``; clashing stems made unique);
* :func:`reconstruct_many` — every input of this job's share through :func:`invrim.reconstruct.reconstruct`,
  skipping what the folder's manifest records as done (a killed job resumes where it stopped);
* :func:`evaluate_folder` — per-file and overall medians of every reconstruction file of a folder.

Shards: ``shard=(i, n)`` (``--shard I/N``, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``)
takes the inputs whose position in the sorted list is ``i`` modulo ``n``, so ``n`` jobs cover every
input exactly once and never write the same output. Under ``torchrun`` every rank works on every
file of its job together (:func:`~invrim.reconstruct.reconstruct` splits a file's samples across
ranks), and only rank 0 writes the manifest.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from . import distributed as dd
from .data.schema import DataError

PathLike = Union[str, "os.PathLike[str]"]

#: The manifest of a reconstruction folder: which inputs are done, by which run.
MANIFEST = "manifest.json"
_GLOB = re.compile(r"[*?\[]")
_DOUBLE_SUFFIXES = (".nii.gz", ".fits.gz", ".fit.gz", ".fts.gz")


#: The suffixes of manifest text files (one input path per line).
MANIFEST_SUFFIXES = (".txt", ".lst", ".list", ".manifest")


def is_manifest(path: PathLike) -> bool:
    """Whether ``path`` is a manifest: an existing text file listing one input per line, named
    ``*.txt``, ``*.lst``, ``*.list`` or ``*.manifest`` (by name only: a CSV or a FITS file is data)."""
    path = Path(path)
    return path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file()


def read_manifest_list(path: PathLike) -> list[Path]:
    """The paths listed in a manifest text file (blank lines and ``#`` comments skipped; relative
    paths are relative to the manifest's folder)."""
    path = Path(path)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def resolve_inputs(inputs: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
    """The input files of a job, sorted (the stable order shards are assigned by).

    ``inputs`` is a glob (``"data/*.h5"``), one file, a manifest text file (one path per line), or
    a list of any of these. A glob that matches nothing or a listed file that does not exist is a
    one-line DataError; a file listed twice is taken once.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if _GLOB.search(text) and not Path(text).exists():
            matches = sorted(_glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"no file matches {text!r}")
            found += [Path(m) for m in matches if Path(m).is_file()]
        elif is_manifest(text):
            listed = read_manifest_list(text)
            missing = [p for p in listed if not p.is_file()]
            if missing:
                raise DataError(f"{text}: listed file {missing[0]} does not exist")
            found += listed
        elif Path(text).is_dir():
            raise DataError(f"{text} is a folder: give a glob such as '{Path(text) / '*.h5'}'")
        elif not Path(text).is_file():
            raise DataError(f"{text}: no such file")
        else:
            found.append(Path(text))
    unique = {str(p.resolve()): p for p in found}
    if not unique:
        raise DataError(f"no input files in {inputs!r}")
    return [unique[k] for k in sorted(unique)]


def is_many(inputs: Union[PathLike, Sequence[PathLike]]) -> bool:
    """Whether ``inputs`` names a set of files (several, a glob, or a manifest) rather than one file:
    then the outputs go to a folder, one per input."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if len(items) != 1:
        return len(items) > 1
    text = os.fspath(items[0])
    return bool(_GLOB.search(text) and not Path(text).exists()) or is_manifest(text)


def stem(path: PathLike) -> str:
    """A file's name without its suffix (``scan.nii.gz`` → ``scan``)."""
    name = Path(path).name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return Path(name).stem


def output_names(inputs: Sequence[PathLike], suffix: str = ".h5") -> list[str]:
    """``<stem>.h5`` per input; inputs sharing a stem (``a/x.h5``, ``b/x.h5``) get
    ``<stem>-<8 hex digits of their absolute path's SHA-1>.h5`` — the same name whatever other
    files the set holds, so reruns and shards agree."""
    stems = [stem(p) for p in inputs]
    out = []
    for p, s in zip(inputs, stems):
        if stems.count(s) > 1:
            digest = hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]
            out.append(f"{s}-{digest}{suffix}")
        else:
            out.append(f"{s}{suffix}")
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → ``(2, 8)`` (shard 2 of 8, counting from 0); also ``"2of8"``."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:/|of)\s*(\d+)\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"--shard expects I/N with 0 <= I < N (e.g. --shard 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_of(items: Sequence[Any], shard: Optional[tuple[int, int]]) -> list[int]:
    """The positions of ``items`` that ``shard = (i, n)`` takes: ``i, i + n, i + 2n …``."""
    if shard is None:
        return list(range(len(items)))
    i, n = shard
    if isinstance(i, bool) or isinstance(n, bool) or not (isinstance(i, int) and isinstance(n, int)) or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    return list(range(i, len(items), n))


# ---- importing many files ----------------------------------------------------------------------
def import_jobs(mapping, inputs: Union[PathLike, Sequence[PathLike]], out_dir: Optional[PathLike]) -> list[tuple[Any, Optional[Path]]]:
    """``[(mapping for one input, its output)]``: each input (:func:`resolve_inputs`) becomes the
    mapping's default file (``{stem}`` in variable files names its companions) and goes to
    ``out_dir/<stem>.h5`` (:func:`output_names`; None without ``out_dir``)."""
    files = resolve_inputs(inputs)
    out = Path(out_dir) if out_dir is not None else None
    return [(mapping.with_file(source.resolve()), out / name if out is not None else None)
            for source, name in zip(files, output_names(files))]


def import_many(mapping, inputs: Union[PathLike, Sequence[PathLike]], out_dir: PathLike, *, link: bool = False,
                overwrite: bool = False, progress: bool = True, check_values: bool = True) -> list[Path]:
    """:func:`invrim.data.importer.import_data` for every input of a glob, list or manifest, one
    output each in ``out_dir`` (created). Outputs that exist already are kept (a rerun after a kill
    imports only what is missing: each file appears under its name only once complete), unless
    ``overwrite``. Returns the outputs in input order."""
    from .data.importer import import_data
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is a file; give a folder for the imports of several inputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for job, target in import_jobs(mapping, inputs, out_dir):
        if target.is_file() and not overwrite:
            outputs.append(target)
            continue
        outputs.append(import_data(job, target, link=link, overwrite=overwrite, progress=progress,
                                   check_values=check_values))
    return outputs


# ---- the folder's manifest --------------------------------------------------------------------
@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.manifest.lock`` (several shards update one manifest)."""
    lock = folder / ".manifest.lock"
    with open(lock, "a+") as fh:
        try:
            import fcntl
            fcntl.flock(fh, fcntl.LOCK_EX)
        except (ImportError, OSError):      # no POSIX locks (Windows, some network file systems)
            pass
        try:
            yield
        finally:
            try:
                import fcntl
                fcntl.flock(fh, fcntl.LOCK_UN)
            except (ImportError, OSError):
                pass


def read_manifest(folder: PathLike) -> dict[str, Any]:
    """The manifest of a reconstruction folder (``{"finished": {}}`` when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"finished": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not a readable manifest ({e}); delete it to start the folder again") from None
    data.setdefault("finished", {})
    return data


def _record_done(folder: Path, entry: dict[str, Any], key: str, run: str) -> None:
    """Add one finished input to the manifest, atomically (a temporary file renamed over it)."""
    with _locked(folder):
        data = read_manifest(folder)
        data["run"] = run
        data["finished"][key] = entry
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / MANIFEST)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def reconstruct_many(run: PathLike, inputs: Union[PathLike, Sequence[PathLike]], out_dir: PathLike, *,
                     shard: Optional[tuple[int, int]] = None, progress: bool = True,
                     **reconstruct_kwargs: Any) -> list[Path]:
    """Reconstruct every input file of this job's share into ``out_dir/<stem>.h5``.

    Parameters
    ----------
    run
        The run folder (as for :func:`invrim.reconstruct.reconstruct`).
    inputs
        A glob, a list of files, or a manifest text file (one path per line): see :func:`resolve_inputs`.
    out_dir
        The output folder (created). It gets one reconstruction per input (:func:`output_names`)
        and ``manifest.json``, the record of the inputs done, written atomically after each file.
    shard
        ``(i, n)``: only the inputs at sorted positions ``i, i + n, …`` (see :func:`shard_of`).
    reconstruct_kwargs
        Passed to :func:`~invrim.reconstruct.reconstruct` (``batch_size``, ``weights``,
        ``overwrite``, ``device`` …).

    Returns
    -------
    The outputs of this job's share, in input order. A rerun after a kill skips the inputs the
    manifest records as done (their output present) and resumes the one that was cut short from
    its ``.partial`` file; the outputs equal an uninterrupted run's.

    Raises
    ------
    DataError
        After the whole share, when some inputs could not be reconstructed (a bad file, other
        physics): one line listing them; the others are done and recorded.
    """
    from .reconstruct import reconstruct

    out_dir = Path(out_dir)
    files = resolve_inputs(inputs)
    names = output_names(files)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is a file; give a folder for the reconstructions of several inputs")
    dd.init_if_needed()
    dd.on_main(lambda: out_dir.mkdir(parents=True, exist_ok=True), DataError)
    mine = shard_of(files, shard)
    overwrite = bool(reconstruct_kwargs.get("overwrite", False))

    def finished() -> list[bool]:
        done = read_manifest(out_dir)["finished"]
        flags = []
        for position in mine:
            source, name = files[position], names[position]
            entry = done.get(str(source.resolve())) or {}
            st = source.stat()
            flags.append(not overwrite and entry.get("output") == name and (out_dir / name).is_file()
                         and entry.get("input_size") == st.st_size and entry.get("input_mtime_ns") == st.st_mtime_ns)
        return flags

    # rank 0 decides what is done, so that every rank of a torchrun job takes the same files
    skip = dd.broadcast_object(dd.on_main(finished, DataError))
    results, failed = [], []
    for position, skipped in zip(mine, skip):
        source, name = files[position], names[position]
        target = out_dir / name
        if skipped:
            results.append(target)
            continue
        try:
            path = reconstruct(run, source, target, progress=progress, **reconstruct_kwargs)
        except DataError as e:            # a bad input stops only itself (every rank raises alike)
            failed.append((source, str(e)))
            continue
        if dd.is_main():
            st = source.stat()
            _record_done(out_dir, {"output": name, "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns},
                         str(source.resolve()), str(Path(run).resolve()))
        results.append(Path(path))
    if failed:
        listing = "; ".join(reason if str(source) in reason else f"{source}: {reason}" for source, reason in failed)
        raise DataError(f"{len(failed)} of {len(mine)} inputs could not be reconstructed (the other "
                        f"{len(mine) - len(failed)} are in {out_dir}): {listing}")
    return results


# ---- a folder of reconstructions ------------------------------------------------------------
def reconstruction_files(folder: PathLike) -> list[Path]:
    """The complete reconstruction files of ``folder`` (sorted; other files are ignored)."""
    from .data.reconstruction import read_reconstruction
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    out = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.endswith(".partial") or re.search(r"\.part\d+of\d+$", path.name):
            continue
        try:
            read_reconstruction(path)
        except (DataError, OSError, ValueError):
            continue
        out.append(path)
    return out


def _median(values: Iterable[float]) -> Optional[float]:
    import math
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else 0.5 * (vals[mid - 1] + vals[mid])


def evaluate_folder(folder: PathLike, batch_size: int = 64) -> dict[str, Any]:
    """PSNR / SSIM / NMSE of every reconstruction file of ``folder`` (:func:`invrim.evaluation.evaluate`).

    Returns ``{"folder", "files": [{"file", "samples", "median": {method: {metric: value}}}],
    "overall": {"samples", "median": {method: {metric: value}}}, "skipped": [{"file", "reason"}],
    "methods", "metrics"}``: per-file medians over the file's samples and overall medians over
    every sample of every file. Files without ground truth (observation-only data) are listed in
    ``skipped`` with the reason; a DataError when no file can be evaluated.
    """
    from .evaluation import evaluate

    files = reconstruction_files(folder)
    if not files:
        raise DataError(f"{folder}: no reconstruction files (made by 'invrim reconstruct') in this folder")
    per_file, skipped = [], []
    pooled: dict[str, dict[str, list[float]]] = {}
    methods: list[str] = []
    metrics: list[str] = []
    for path in files:
        try:
            result = evaluate(path, batch_size=batch_size)
        except DataError as e:
            skipped.append({"file": str(path), "reason": str(e)})
            continue
        medians = {m: {k: _median(result["per_sample"][m][k]) for k in result["metrics"]} for m in result["methods"]}
        per_file.append({"file": str(path), "samples": result["samples"], "median": medians,
                         "labels": result["labels"]})
        for m in result["methods"]:
            if m not in methods:
                methods.append(m)
            for k in result["metrics"]:
                if k not in metrics:
                    metrics.append(k)
                pooled.setdefault(m, {}).setdefault(k, []).extend(result["per_sample"][m][k])
    if not per_file:
        raise DataError(f"{folder}: none of its {len(files)} reconstruction(s) can be evaluated; "
                        f"{skipped[0]['reason']}")
    overall = {m: {k: _median(v) for k, v in ks.items()} for m, ks in pooled.items()}
    return {"folder": str(folder), "files": per_file, "skipped": skipped, "methods": methods, "metrics": metrics,
            "overall": {"samples": sum(f["samples"] for f in per_file), "median": overall}}


def format_folder(result: dict[str, Any]) -> str:
    """The table of :func:`evaluate_folder`: one row per file and method, then the overall medians."""
    metrics = result["metrics"]
    header = ["file", "method", "samples"] + [f"median {k.upper()}" for k in metrics]
    rows = []
    for f in result["files"]:
        for m, values in f["median"].items():
            rows.append([Path(f["file"]).name, f["labels"].get(m, m), str(f["samples"])]
                        + [_num(values.get(k)) for k in metrics])
    labels = {m: lab for f in reversed(result["files"]) for m, lab in f["labels"].items()}
    for m in result["methods"]:
        rows.append(["(all files)", labels.get(m, m), str(result["overall"]["samples"])]
                    + [_num(result["overall"]["median"].get(m, {}).get(k)) for k in metrics])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    for s in result["skipped"]:
        lines.append(f"skipped {Path(s['file']).name}: {s['reason']}")
    return "\n".join(lines)


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"
