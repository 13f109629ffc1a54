"""Readers of foreign files: HDF5 of any layout, NumPy ``.npy``/``.npz``, FITS and NIfTI.

A reader is the fifth kind of registered component (``registry().readers``, hook
``invrim_readers``): :func:`reader_for` picks one by the file's suffix, so a plugin adds a format
by registering a class with this interface:

* ``name`` and ``suffixes`` (class attributes: ``("fits", "fits.gz", ...)``, lower case, no dot);
* ``__init__(path)`` opens the file (lazily where the format allows);
* :meth:`~Reader.arrays` ``-> {name: ArrayInfo(shape, dtype, dims or None)}`` without reading data;
* :meth:`~Reader.read` ``(name, index) -> np.ndarray``, ``index`` a tuple of slices, one per axis
  (native byte order; memory bounded by what the slices select where the format allows);
* :meth:`~Reader.hdf5_source` ``(name) -> (file, dataset path) | None``: where the array lives
  in an HDF5 file, so that ``invrim import --link`` can point a virtual dataset at it;
* :meth:`~Reader.close`, and use as a context manager;
* the class method :meth:`~Reader.example` ``(folder) -> (path, {name: array})`` writes a small
  file of the format: the conformance kit (:func:`invrim.plugins.testing.check_reader`) reads it back.

Only this module and the importer (:mod:`invrim.data.importer`) know foreign layouts; nothing here
imports astropy or nibabel until a file of theirs is opened.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from .schema import DataError

PathLike = Union[str, "os.PathLike[str]"]
Index = tuple  # a tuple of slices, one per axis


class ArrayInfo(NamedTuple):
    """What a reader knows of one array before reading it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    #: the axis names the file itself gives (netCDF / dimension scales), else None
    dims: Optional[tuple[str, ...]] = None


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (FITS stores big-endian values)."""
    array = np.asarray(array)
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != _NATIVE:
        return array.astype(array.dtype.newbyteorder("="))
    return array


_NATIVE = "<" if np.little_endian else ">"


class Reader:
    """The base of the built-in readers (a plugin's reader need not subclass it)."""

    name = "reader"
    suffixes: tuple[str, ...] = ()

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")

    def arrays(self) -> dict[str, ArrayInfo]:
        raise NotImplementedError

    def read(self, name: str, index: Index = ()) -> np.ndarray:
        raise NotImplementedError

    def hdf5_source(self, name: str) -> Optional[tuple[Path, str]]:
        return None

    def close(self) -> None:
        pass

    def info(self, name: str) -> ArrayInfo:
        """One array's :class:`ArrayInfo`; a one-line DataError listing the arrays when absent."""
        return array_info(self, self.path, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _full(index: Index, ndim: int) -> tuple:
    index = tuple(index)
    return index + (slice(None),) * (ndim - len(index))


class HDF5Reader(Reader):
    """Any HDF5 file (fastMRI, netCDF-4, MATLAB v7.3 …): every numeric dataset, nested groups
    included, named by its path (``"kspace"``, ``"group/sub/data"``). Dimension names come from
    attached dimension scales (netCDF files); string datasets (an ``ismrmrd_header``) are skipped."""

    name = "hdf5"
    suffixes = ("h5", "hdf5", "hdf", "he5", "nc", "nc4", "mat", "cxi", "nxs")

    def __init__(self, path: PathLike):
        super().__init__(path)
        import h5py
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{self.path} could not be read as HDF5: {first}") from None
        self._arrays: Optional[dict[str, ArrayInfo]] = None

    def arrays(self) -> dict[str, ArrayInfo]:
        if self._arrays is None:
            import h5py
            found: dict[str, ArrayInfo] = {}

            def visit(name: str, obj: Any) -> None:
                if not isinstance(obj, h5py.Dataset):
                    return
                try:
                    dtype = np.dtype(obj.dtype)
                except TypeError:
                    return
                if dtype.kind not in "biufc" or obj.shape is None:
                    return
                if _is_netcdf_dimension(obj):
                    return
                found[name] = ArrayInfo(tuple(int(s) for s in obj.shape), dtype, _scale_names(obj))

            self._file.visititems(visit)
            self._arrays = found
        return self._arrays

    def read(self, name: str, index: Index = ()) -> np.ndarray:
        info = self.info(name)
        ds = self._file[name]
        if not info.shape:
            return np.asarray(ds[()])
        return np.asarray(ds[_full(index, len(info.shape))])

    def hdf5_source(self, name: str) -> Optional[tuple[Path, str]]:
        self.info(name)
        ds = self._file[name]
        if ds.is_virtual:               # a virtual dataset's own sources could be followed; copy instead
            return None
        return self.path, "/" + name.lstrip("/")

    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
            self._file = None

    @classmethod
    def example(cls, folder: PathLike):
        import h5py
        g = np.random.default_rng(0)
        arrays = {"kspace": (g.standard_normal((3, 2, 6, 5)) + 1j * g.standard_normal((3, 2, 6, 5))).astype(np.complex64),
                  "group/image": g.standard_normal((4, 7)).astype(np.float32)}
        path = Path(folder) / "example.h5"
        with h5py.File(path, "w") as f:
            for name, a in arrays.items():
                f[name] = a
            f["header"] = "<xml/>"
        return path, arrays


def _is_netcdf_dimension(ds) -> bool:
    """A netCDF dimension without values (h5netcdf/netCDF-C write them as empty dimension scales)."""
    name = ds.attrs.get("NAME", b"")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return isinstance(name, str) and name.startswith("This is a netCDF dimension but not a netCDF variable")


def _scale_names(ds) -> Optional[tuple[str, ...]]:
    names = []
    for dim in ds.dims:
        scales = list(dim.values())
        if not scales:
            return None
        names.append(scales[0].name.rsplit("/", 1)[-1])
    return tuple(names) if names else None


class NumpyReader(Reader):
    """``.npy`` (memory-mapped: only the selected slices are read) and ``.npz`` (every member an
    array; members are read whole, as zip members cannot be memory-mapped, and the last one read
    is kept for the next slice). ``allow_pickle=False``: object arrays are refused. A ``.npy``
    file's one array is named after the file's stem."""

    name = "numpy"
    suffixes = ("npy", "npz")

    def __init__(self, path: PathLike):
        super().__init__(path)
        self._npz = None
        self._mmap = None
        self._cached: tuple[Optional[str], Optional[np.ndarray]] = (None, None)
        try:
            if self.path.name.lower().endswith(".npz"):
                self._npz = np.load(self.path, allow_pickle=False)
            else:
                self._mmap = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{self.path}: {str(e).splitlines()[0]} (object arrays are not read: "
                            "allow_pickle=False)") from None
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{self.path} could not be read as NumPy data: {first}") from None
        self._arrays: Optional[dict[str, ArrayInfo]] = None

    def arrays(self) -> dict[str, ArrayInfo]:
        if self._arrays is None:
            if self._mmap is not None:
                self._arrays = {self.path.stem: ArrayInfo(tuple(self._mmap.shape), np.dtype(self._mmap.dtype))}
            else:
                out = {}
                for name in self._npz.files:
                    with self._npz.zip.open(name + ".npy" if name + ".npy" in self._npz.zip.namelist() else name) as fh:
                        version = np.lib.format.read_magic(fh)
                        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = header(fh)
                    if np.dtype(dtype).kind in "biufc":
                        out[name] = ArrayInfo(tuple(int(s) for s in shape), np.dtype(dtype))
                self._arrays = out
        return self._arrays

    def read(self, name: str, index: Index = ()) -> np.ndarray:
        info = self.info(name)
        if self._mmap is not None:
            whole = self._mmap
        else:
            if self._cached[0] != name:
                self._cached = (None, None)
                self._cached = (name, self._npz[name])
            whole = self._cached[1]
        if not info.shape:
            return native(np.array(whole))
        return native(np.array(whole[_full(index, len(info.shape))]))

    def close(self) -> None:
        if getattr(self, "_npz", None) is not None:
            self._npz.close()
            self._npz = None
        self._mmap = None
        self._cached = (None, None)

    @classmethod
    def example(cls, folder: PathLike):
        g = np.random.default_rng(1)
        arrays = {"images": g.standard_normal((3, 5, 4)).astype(np.float32),
                  "weights": g.standard_normal((4,)).astype(np.float64)}
        path = Path(folder) / "example.npz"
        np.savez(path, **arrays)
        return path, arrays


class FITSReader(Reader):
    """FITS images and cubes (needs astropy: ``pip install invrim[fits]``). Every HDU holding an
    image is an array, named by its ``EXTNAME`` (``"SCI"``; ``"PRIMARY"`` for the first) and also
    reachable by its index (``"0"``, ``"1"`` …). NumPy's axis order is the reverse of FITS's
    ``NAXIS`` order: a cube of ``NAXIS1 = width, NAXIS2 = height, NAXIS3 = planes`` reads as
    ``(planes, height, width)``. Values are scaled by ``BSCALE``/``BZERO`` and returned in native
    byte order; slices are read through ``hdu.section`` (only what is selected)."""

    name = "fits"
    suffixes = ("fits", "fit", "fts", "fits.gz", "fit.gz", "fts.gz")

    def __init__(self, path: PathLike):
        super().__init__(path)
        from astropy.io import fits
        try:
            # no memmap: hdu.section then reads lazily all the same, and also scaled (BSCALE/BZERO) images
            self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=False)
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{self.path} could not be read as FITS: {first}") from None
        self._arrays: Optional[dict[str, ArrayInfo]] = None
        self._hdu_of: dict[str, int] = {}

    def _image_hdus(self):
        from astropy.io import fits
        for i, hdu in enumerate(self._hdul):
            if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS", 0):
                yield i, hdu

    def arrays(self) -> dict[str, ArrayInfo]:
        if self._arrays is None:
            out: dict[str, ArrayInfo] = {}
            names = [hdu.name for _, hdu in self._image_hdus()]
            for i, hdu in self._image_hdus():
                shape = tuple(int(s) for s in hdu.shape)
                one = np.asarray(hdu.section[(slice(0, 1),) * len(shape)]) if shape else np.asarray(hdu.data)
                info = ArrayInfo(shape, native(one).dtype)
                keys = [str(i)] + ([hdu.name] if hdu.name and names.count(hdu.name) == 1 else [])
                for key in keys:
                    out[key] = info
                    self._hdu_of[key] = i
            self._arrays = out
        return self._arrays

    def read(self, name: str, index: Index = ()) -> np.ndarray:
        info = self.info(name)
        hdu = self._hdul[self._hdu_of[name]]
        index = _full(index, len(info.shape))
        if any(s.step not in (None, 1) for s in index if isinstance(s, slice)):
            plain = tuple(slice(s.start, s.stop) for s in index)
            steps = tuple(slice(None, None, s.step) for s in index)
            return native(np.asarray(hdu.section[plain])[steps])
        return native(np.asarray(hdu.section[index]))

    def close(self) -> None:
        if getattr(self, "_hdul", None) is not None:
            self._hdul.close()
            self._hdul = None

    @classmethod
    def example(cls, folder: PathLike):
        from astropy.io import fits
        g = np.random.default_rng(2)
        cube = g.standard_normal((3, 6, 5)).astype(np.float32)
        image = g.standard_normal((6, 5)).astype(np.float64)
        path = Path(folder) / "example.fits"
        fits.HDUList([fits.PrimaryHDU(cube), fits.ImageHDU(image, name="PSF")]).writeto(path)
        return path, {"PRIMARY": cube, "0": cube, "PSF": image, "1": image}


class NiftiReader(Reader):
    """NIfTI-1/2 volumes (``.nii``, ``.nii.gz``; needs nibabel: ``pip install invrim[nifti]``). The
    image is one array, ``"data"``, in nibabel's axis order (``i, j, k[, t]``), scaled by
    ``scl_slope``/``scl_inter``; slices are read lazily through ``img.dataobj``."""

    name = "nifti"
    suffixes = ("nii", "nii.gz")

    def __init__(self, path: PathLike):
        super().__init__(path)
        import nibabel
        try:
            self._img = nibabel.load(str(self.path))
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{self.path} could not be read as NIfTI: {first}") from None
        self._arrays: Optional[dict[str, ArrayInfo]] = None

    def arrays(self) -> dict[str, ArrayInfo]:
        if self._arrays is None:
            shape = tuple(int(s) for s in self._img.shape)
            one = np.asarray(self._img.dataobj[(slice(0, 1),) * len(shape)])
            self._arrays = {"data": ArrayInfo(shape, native(one).dtype)}
        return self._arrays

    def read(self, name: str, index: Index = ()) -> np.ndarray:
        info = self.info(name)
        return native(np.asarray(self._img.dataobj[_full(index, len(info.shape))]))

    def close(self) -> None:
        self._img = None

    @classmethod
    def example(cls, folder: PathLike):
        import nibabel
        g = np.random.default_rng(3)
        volume = g.standard_normal((5, 6, 3)).astype(np.float32)
        path = Path(folder) / "example.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(path))
        return path, {"data": volume}


# ---------------------------------------------------------------------------------------------
# choosing a reader
# ---------------------------------------------------------------------------------------------
def _suffix_match(path: Path, suffixes: Sequence[str]) -> int:
    """The length of the longest of ``suffixes`` that ends ``path``'s name (0: none)."""
    name = path.name.lower()
    best = 0
    for s in suffixes:
        s = s.lower().lstrip(".")
        if name.endswith("." + s):
            best = max(best, len(s))
    return best


def reader_class(path: PathLike, reader: Optional[str] = None):
    """The reader class for ``path``: the registered reader named ``reader``, else the one whose
    ``suffixes`` end the file's name (the longest match; built-ins win ties), else HDF5 when the
    file's content is HDF5. A one-line DataError otherwise; a reader whose optional package is
    missing says what to install."""
    from ..plugins import MissingDependencyError, registry
    path = Path(path)
    readers = registry().readers
    if reader is not None:
        try:
            return readers.load(reader)
        except MissingDependencyError as e:
            raise DataError(f"{path}: {e}") from None
        except LookupError as e:
            raise DataError(f"{path}: {e}") from None
    best, chosen = 0, None
    for component in readers:
        cls = _suffixes_of(component)
        if cls is None:
            continue
        score = _suffix_match(path, getattr(cls, "suffixes", ()))
        if score > best or (score == best and score and component.builtin and not chosen.builtin):
            best, chosen = score, component
    if chosen is not None:
        try:
            return chosen.load()
        except MissingDependencyError as e:
            raise DataError(f"{path}: {e}") from None
    try:
        import h5py
        if path.is_file() and h5py.is_hdf5(path):
            return HDF5Reader
    except Exception:
        pass
    if not path.exists():
        raise DataError(f"{path}: no such file")
    known = sorted({s for c in readers for s in (getattr(_suffixes_of(c), "suffixes", ()) or ())})
    raise DataError(f"{path}: no reader for this kind of file (known suffixes: {', '.join(known)}); "
                    "name one with reader=... (invrim plugins list shows the readers)")


def _suffixes_of(component):
    """The reader class of a component for its suffixes, imported even when the package the reader
    needs to *open* files is missing (the built-in readers import astropy/nibabel only then)."""
    import dataclasses
    try:
        return dataclasses.replace(component, missing=()).load()
    except Exception:
        return None


def listed_arrays(reader) -> dict[str, ArrayInfo]:
    """``reader.arrays()`` as :class:`ArrayInfo` values (a plugin's reader may return plain tuples)."""
    out = {}
    for name, value in reader.arrays().items():
        shape, dtype, *rest = tuple(value)
        dims = rest[0] if rest else None
        out[str(name)] = ArrayInfo(tuple(int(s) for s in shape), np.dtype(dtype), None if dims is None else tuple(dims))
    return out


def array_info(reader, path: PathLike, name: str) -> ArrayInfo:
    """One array's :class:`ArrayInfo`; a one-line DataError listing the file's arrays when absent."""
    arrays = listed_arrays(reader)
    if name not in arrays:
        listing = ", ".join(f"{n} {tuple(a.shape)}" for n, a in arrays.items()) or "(none)"
        raise DataError(f"{path}: no array {name!r}; it holds {listing}")
    return arrays[name]


def open_reader(path: PathLike, reader: Optional[str] = None):
    """An open reader for ``path`` (see :func:`reader_class`)."""
    cls = reader_class(path, reader)
    try:
        return cls(path)
    except DataError:
        raise
    except ModuleNotFoundError as e:
        from ..plugins.component import install_hint
        raise DataError(f"{path}: reading it needs {e.name}: {install_hint([(e.name or '?').split('.')[0]])}") from None
