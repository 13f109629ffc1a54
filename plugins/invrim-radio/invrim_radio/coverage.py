"""Antenna layouts and Earth-rotation synthesis: which ``(u, v)`` points an array measures.

A layout is a small text file in ``invrim_radio/layouts/`` (``LAYOUTS``): header comments with
``name`` and ``latitude_deg``, then one antenna per row, ``east_m north_m up_m diameter_m``. Any
other file of that form can be given by path.

For a baseline ``b = p_j − p_i`` in local (east, north, up) metres at latitude ``φ``, its equatorial
components are ``X = −sin φ · N + cos φ · U``, ``Y = E``, ``Z = cos φ · N + sin φ · U``, and at hour
angle ``H`` towards declination ``δ``

    u = ( sin H · X + cos H · Y) / λ
    v = (−sin δ cos H · X + sin δ sin H · Y + cos δ · Z) / λ

(Thompson, Moran & Swenson, ch. 4; ``w`` is dropped: a small field). One visibility per antenna pair
and time (``i < j``); the conjugate point ``(−u, −v)`` carries no new information for a real sky.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = ["LAYOUTS", "Layout", "load_layout", "baselines", "earth_rotation_uv", "SPEED_OF_LIGHT",
           "dish_fwhm_arcsec"]

#: The bundled layouts.
LAYOUTS = ("vla", "alma_compact", "random")
SPEED_OF_LIGHT = 299_792_458.0
ARCSEC = math.pi / (180 * 3600)


@dataclass(frozen=True)
class Layout:
    """An antenna array: ``enu`` ``(N, 3)`` metres (east, north, up), ``diameter`` ``(N,)`` metres."""

    name: str
    latitude_deg: float
    enu: tuple
    diameter: tuple

    @property
    def antennas(self) -> int:
        return len(self.diameter)

    def positions(self) -> Tensor:
        return torch.tensor(self.enu, dtype=torch.float64)

    def diameters(self) -> Tensor:
        return torch.tensor(self.diameter, dtype=torch.float64)

    def max_baseline(self) -> float:
        """The longest baseline in metres (no ``(u, v)`` point is longer than this over λ)."""
        p = self.positions()
        return float(torch.cdist(p, p).max())


def _parse(text: str, source: str) -> Layout:
    meta: dict[str, str] = {}
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() in ("name", "latitude_deg"):
                meta[key.strip()] = value.strip()
            continue
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(f"{source}, line {number}: expected 'east_m north_m up_m diameter_m', got {line!r}")
        rows.append(tuple(float(p) for p in parts))
    if len(rows) < 2:
        raise ValueError(f"{source}: a layout needs at least two antennas, got {len(rows)}")
    if "latitude_deg" not in meta:
        raise ValueError(f"{source}: missing the header line '# latitude_deg: ...'")
    if any(r[3] <= 0 for r in rows):
        raise ValueError(f"{source}: every antenna diameter must be positive")
    return Layout(meta.get("name", Path(source).stem), float(meta["latitude_deg"]),
                  tuple(r[:3] for r in rows), tuple(r[3] for r in rows))


@lru_cache(maxsize=None)
def load_layout(layout: Union[str, Path]) -> Layout:
    """A bundled layout by name (``"vla"``, ``"alma_compact"``, ``"random"``) or a layout file by path."""
    name = str(layout)
    if name in LAYOUTS:
        text = resources.files("invrim_radio").joinpath("layouts", f"{name}.txt").read_text()
        return _parse(text, f"layout {name!r}")
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"unknown antenna layout {name!r}: give one of {', '.join(LAYOUTS)} or a layout file path")
    return _parse(path.read_text(), str(path))


def baselines(layout: Layout) -> tuple[Tensor, Tensor, Tensor]:
    """Every antenna pair ``i < j``: ``(b (P, 3) metres east/north/up, i (P,), j (P,))``."""
    i, j = torch.triu_indices(layout.antennas, layout.antennas, offset=1)
    p = layout.positions()
    return p[j] - p[i], i, j


def earth_rotation_uv(layout: Layout, hour_angles: Tensor, declination: float, wavelength: float) -> Tensor:
    """``(u, v)`` in wavelengths of every baseline at every hour angle: ``(T, P, 2)`` float64.

    ``hour_angles`` in hours ``(T,)``, ``declination`` in degrees, ``wavelength`` in metres.
    """
    b, _, _ = baselines(layout)
    lat = math.radians(layout.latitude_deg)
    X = -math.sin(lat) * b[:, 1] + math.cos(lat) * b[:, 2]
    Y = b[:, 0]
    Z = math.cos(lat) * b[:, 1] + math.sin(lat) * b[:, 2]
    H = (torch.as_tensor(hour_angles, dtype=torch.float64) * (math.pi / 12))[:, None]
    d = math.radians(declination)
    u = torch.sin(H) * X + torch.cos(H) * Y
    v = -math.sin(d) * torch.cos(H) * X + math.sin(d) * torch.sin(H) * Y + math.cos(d) * Z
    return torch.stack([u, v], -1) / wavelength


def dish_fwhm_arcsec(diameter: float, frequency: float) -> float:
    """Primary-beam FWHM ``1.13 λ / D`` of a uniformly illuminated (tapered) dish, in arcsec."""
    return 1.13 * SPEED_OF_LIGHT / frequency / diameter / ARCSEC


def _check_range(value, label: str, low: Optional[float] = None) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    else:
        try:
            pair = tuple(float(v) for v in value)
        except TypeError:
            raise ValueError(f"{label} must be a number or [low, high], got {value!r}") from None
        if len(pair) != 2 or not pair[0] <= pair[1]:
            raise ValueError(f"{label} must be a number or [low, high] with low <= high, got {value!r}")
    if low is not None and not pair[0] > low:
        raise ValueError(f"{label} must be > {low}, got {value!r}")
    return pair
