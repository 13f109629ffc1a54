"""Write sky images as FITS files with a celestial WCS (needs astropy: ``pip install invrim-radio[fits]``)."""
from __future__ import annotations

import os
from typing import Optional, Union

__all__ = ["write_fits"]


def write_fits(image, path: Union[str, os.PathLike], pixel_scale: float, ra: float = 0.0, dec: float = 0.0,
               frequency: Optional[float] = None, unit: str = "Jy/pixel", overwrite: bool = False):
    """Write one image ``(H, W)`` (or ``(1, H, W)``; a tensor or an array) to ``path``.

    ``pixel_scale`` in arcsec, the phase centre ``(ra, dec)`` in degrees at pixel ``(H//2, W//2)``
    (0-based), as invrim-radio's forward model puts it. The forward model's ``l = (w − W//2) δ``
    points east (towards increasing RA, as ``u`` does) and ``m = (h − H//2) δ`` north; FITS images
    are conventionally written with RA increasing to the left (``CDELT1 < 0``), so the columns are
    mirrored on writing (column ``w`` becomes FITS column ``W − w``, 1-based) and row ``h`` becomes
    FITS row ``h + 1``. Returns the path.
    """
    try:
        from astropy.io import fits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("write_fits needs astropy: pip install invrim-radio[fits]") from None
    import numpy as np
    data = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"write_fits needs an image of shape (H, W) or (1, H, W), got {data.shape}")
    H, W = data.shape
    data = np.ascontiguousarray(data[:, ::-1])                       # east to the left
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---SIN", "DEC--SIN"
    header["CRPIX1"], header["CRPIX2"] = W - W // 2, H // 2 + 1           # FITS pixels are 1-based
    header["CRVAL1"], header["CRVAL2"] = float(ra), float(dec)
    header["CDELT1"], header["CDELT2"] = -float(pixel_scale) / 3600, float(pixel_scale) / 3600
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["BUNIT"] = unit
    if frequency is not None:
        header["RESTFRQ"] = float(frequency)
    header["ORIGIN"] = "invrim-radio"
    fits.PrimaryHDU(data=data, header=header).writeto(os.fspath(path), overwrite=overwrite)
    return path
