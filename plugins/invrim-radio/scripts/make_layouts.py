"""Regenerate the bundled antenna layouts in ``invrim_radio/layouts/`` (they are committed; this
script documents how they were made and is deterministic).

    python plugins/invrim-radio/scripts/make_layouts.py

Each file: comment lines (``#``) with ``name``, ``latitude_deg`` and a description, then one
antenna per row: ``east_m north_m up_m diameter_m`` (local horizon coordinates of the pad).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "invrim_radio" / "layouts"


def write(name: str, latitude: float, description: str, rows: np.ndarray) -> None:
    lines = [f"# name: {name}", f"# latitude_deg: {latitude}", f"# {description}",
             "# east_m north_m up_m diameter_m"]
    lines += [f"{e:10.2f} {n:10.2f} {u:6.2f} {d:5.1f}" for e, n, u, d in rows]
    (OUT / f"{name}.txt").write_text("\n".join(lines) + "\n")


def vla_y() -> np.ndarray:
    # three arms (azimuths 5, 125, 245 deg), 9 pads each at r = R (n / 9) ** 1.716, like the VLA's
    # power-law pad spacing; R = 600 m (about the D configuration), 25 m dishes
    rows = []
    for az in (5.0, 125.0, 245.0):
        a = math.radians(az)
        for n in range(1, 10):
            r = 600.0 * (n / 9) ** 1.716
            rows.append((r * math.sin(a), r * math.cos(a), 0.0, 25.0))
    return np.array(rows)


def alma_compact() -> np.ndarray:
    # 25 x 12 m antennas, centrally condensed (Gaussian radii, sigma 60 m), no two pads closer
    # than 15 m: a compact ALMA-like configuration
    rng = np.random.default_rng(2)
    pads: list[tuple[float, float]] = []
    while len(pads) < 25:
        e, n = rng.normal(0.0, 60.0, 2)
        if all(math.hypot(e - a, n - b) >= 15.0 for a, b in pads):
            pads.append((e, n))
    return np.array([(e, n, 0.0, 12.0) for e, n in pads])


def random_array() -> np.ndarray:
    # 12 antennas uniform in a disc of radius 400 m, dishes of 12 or 25 m (a heterogeneous array)
    rng = np.random.default_rng(3)
    r = 400.0 * np.sqrt(rng.uniform(0, 1, 12))
    t = rng.uniform(0, 2 * math.pi, 12)
    d = rng.choice([12.0, 25.0], 12)
    return np.stack([r * np.sin(t), r * np.cos(t), np.zeros(12), d], 1)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write("vla", 34.0784, "VLA-like Y: 27 x 25 m dishes on three arms, power-law spacing, arms of 600 m", vla_y())
    write("alma_compact", -23.0229, "compact ALMA-like: 25 x 12 m dishes within ~150 m", alma_compact())
    write("random", -30.7215, "random: 12 dishes (12 or 25 m) uniform in a 400 m disc", random_array())
    print("wrote", sorted(p.name for p in OUT.glob("*.txt")))
