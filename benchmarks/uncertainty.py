"""Calibrated uncertainty, measured: coverage, width against error, out-of-distribution flags.

For every domain a RIM is trained once (a fixed number of epochs, the user's path: ``simulate →
train_on_file``); then, for several seeds, a new calibration file and a new in-distribution test
file are simulated, the RIM is calibrated (:func:`invrim.uncertainty.calibrate`) and the test file
is reconstructed with ``uncertainty=True``. Reported per seed and as the median over seeds:

* per-pixel and whole-image coverage at 90 % and 95 % against nominal;
* the mean half-width and its rank correlation with the true error, over pixels and over samples
  (each sample's mean half-width against its RMS error);
* the fraction of samples flagged as out of distribution on the in-distribution test file and on
  two shifted files: another kind of image (where the domain has one), and observations whose
  noise is larger than the file declares (the extra noise added to ``y`` with h5py).

Domains: ``blur`` (32x32 ellipses, Gaussian PSF σ ∈ [1, 2] px, mixed noise σ ∈ [0.01, 0.1]; the
other kind of image: scikit-image crops), ``mri`` (4-coil 4x Cartesian, 32x32 phantoms), ``ct``
(parallel beam, 32x32, 16 views). ``--ensemble K`` adds, for the first domain, K runs with other
seeds (each the same budget) and the ensemble's spread as the scale.

    python benchmarks/uncertainty.py --ensemble 2              # the recorded run (about 25 minutes on 2 cores)
    python benchmarks/uncertainty.py --quick                   # a smoke test
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import ForeignLoad, machine  # noqa: E402

from invrim.data import simulate  # noqa: E402
from invrim.data.reconstruction import UNCERTAINTY_ATTR, read_reconstruction  # noqa: E402
from invrim.reconstruct import reconstruct  # noqa: E402
from invrim.training.from_file import train_on_file  # noqa: E402
from invrim.uncertainty import CoverageTally, calibrate  # noqa: E402

DOMAINS: dict[str, dict[str, Any]] = {
    "blur": dict(forward_model="blur", likelihood="gaussian", generator="ellipses",
                 forward_model_config={"psf_sigma": [1.0, 2.0]}, likelihood_config={"sigma_range": [0.01, 0.1]},
                 generator_config={"shape": [32, 32]}, other_images=("image_crops", {"shape": [32, 32]}),
                 extra_noise=0.1),
    "mri": dict(forward_model="mri_multicoil", likelihood="gaussian", generator="mri_phantom",
                forward_model_config={"coils": 4, "acceleration": 4}, likelihood_config={"sigma": 0.02},
                generator_config={"height": 32}, other_images=None, extra_noise=0.04),
    "ct": dict(forward_model="ct_parallel", likelihood="gaussian", generator="ellipses",
               forward_model_config={"image_size": 32, "n_angles": 16}, likelihood_config={"sigma": 0.5},
               generator_config={"shape": [32, 32]}, other_images=("image_crops", {"shape": [32, 32]}),
               extra_noise=1.0),
}
LEVELS = (0.9, 0.95)


def _simulate(folder: Path, name: str, d: dict, n: int, seed: int, generator=None) -> Path:
    gen, gen_cfg = generator or (d["generator"], d["generator_config"])
    return simulate(folder / f"{name}.h5", d["forward_model"], d["likelihood"], n, generator=gen,
                    forward_model_config=d["forward_model_config"], likelihood_config=d["likelihood_config"],
                    generator_config=gen_cfg, seed=seed, progress=False, overwrite=True)


def _noisier(src: Path, dst: Path, sigma: float, seed: int) -> Path:
    """A copy of ``src`` whose observations carry extra Gaussian noise the file does not declare."""
    shutil.copyfile(src, dst)
    rng = np.random.default_rng(seed)
    with h5py.File(dst, "r+") as f:
        y = f["y"][:]
        noise = rng.normal(0, sigma, y.shape)
        if np.iscomplexobj(y):
            noise = noise + 1j * rng.normal(0, sigma, y.shape)
        f["y"][...] = (y + noise).astype(y.dtype)
    return dst


def _tally(out: Path, truth_file: Path) -> dict[str, Any]:
    attrs = read_reconstruction(out)
    tally = CoverageTally(attrs[UNCERTAINTY_ATTR])
    with h5py.File(out, "r") as f, h5py.File(truth_file, "r") as g:
        n = f["x_hat"].shape[0]
        for lo in range(0, n, 64):
            hi = min(lo + 64, n)
            tally.add(torch.from_numpy(g["x"][lo:hi]).double(), torch.from_numpy(f["x_hat"][lo:hi]).double(),
                      torch.from_numpy(f["x_uncertainty"][lo:hi]).double())
        ood = float(f["ood"][:].mean())
    r = tally.result()
    curve = {c["nominal"]: c for c in r["curve"]}
    return {"pixel": {lv: curve[lv]["pixel"] for lv in LEVELS}, "image": {lv: curve[lv]["image"] for lv in LEVELS},
            "mean_half_width": r["mean_half_width"], "rank_correlation": r["rank_correlation"],
            "sample_rank_correlation": r["sample_rank_correlation"], "flagged": ood}


def _flagged(run: Path, file: Path, out: Path, ensemble) -> float:
    reconstruct(run, file, out, uncertainty=True, ensemble=ensemble, overwrite=True, progress=False)
    with h5py.File(out, "r") as f:
        return float(f["ood"][:].mean())


def run_domain(name: str, d: dict, folder: Path, args, ensemble: int = 0) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    train = _simulate(folder, "train", d, args.train, 0)
    runs = []
    t0 = time.perf_counter()
    with ForeignLoad() as load:
        for k in range(1 + ensemble):
            run = folder / f"run{k}"
            train_on_file(train, run, epochs=args.epochs, batch_size=16, progress=False, seed=k,
                          validation_split=0.1)
            runs.append(run)
    train_s = time.perf_counter() - t0
    members = runs[1:] or None
    seeds = []
    for s in range(args.seeds):
        cal = _simulate(folder, f"cal{s}", d, args.cal, 1000 + s)
        test = _simulate(folder, f"test{s}", d, args.test, 2000 + s)
        # the base scale alone (trajectory movement or ensemble spread), then the default (auto)
        calibrate(runs[0], cal, 0.9, ensemble=members, seed=s, scale="base", progress=False)
        out = folder / f"out_base{s}.h5"
        reconstruct(runs[0], test, out, uncertainty=True, overwrite=True, progress=False)
        base = _tally(out, test)
        record = calibrate(runs[0], cal, 0.9, ensemble=members, seed=s, progress=False)
        out = folder / f"out{s}.h5"
        reconstruct(runs[0], test, out, uncertainty=True, overwrite=True, progress=False)
        row = {"seed": s, **_tally(out, test), "scale": record["scale"]["method"],
               "floor_factor": record["scale"]["floor_factor"], "pixel_quantile": record["pixel"]["quantile"],
               "base_scale": {k: base[k] for k in ("pixel", "image", "mean_half_width", "rank_correlation",
                                                   "sample_rank_correlation")}}
        noisy = _noisier(test, folder / f"noisy{s}.h5", d["extra_noise"], s)
        row["flagged_extra_noise"] = _flagged(runs[0], noisy, folder / f"out_noisy{s}.h5", members)
        if d["other_images"]:
            other = _simulate(folder, f"other{s}", d, args.test, 3000 + s, generator=d["other_images"])
            row["flagged_other_images"] = _flagged(runs[0], other, folder / f"out_other{s}.h5", members)
        seeds.append(row)
        print(f"  {name}{' ensemble' if ensemble else ''} seed {s}: base scale: pixel {base['pixel'][0.9]:.3f}, "
              f"width {base['mean_half_width']:.4f}, rho {base['rank_correlation']:.2f} (samples "
              f"{base['sample_rank_correlation']:.2f}); {row['scale']}: width {row['mean_half_width']:.4f}, "
              f"pixel {row['pixel'][0.9]:.3f}/"
              f"{row['pixel'][0.95]:.3f}, image {row['image'][0.9]:.3f}/{row['image'][0.95]:.3f}, "
              f"rho {row['rank_correlation']:.2f} (samples {row['sample_rank_correlation']:.2f}), flagged "
              f"{row['flagged']:.3f} / noisy {row['flagged_extra_noise']:.3f}"
              + (f" / other {row['flagged_other_images']:.3f}" if "flagged_other_images" in row else ""), flush=True)

    def med(key, level=None):
        vals = [r[key][level] if level is not None else r[key] for r in seeds if key in r]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None
    base_rows = [r["base_scale"] for r in seeds]
    base_summary = {k: statistics.median([r[k] for r in base_rows if r[k] is not None] or [math.nan])
                    for k in ("mean_half_width", "rank_correlation", "sample_rank_correlation")}
    base_summary["pixel"] = {lv: statistics.median([r["pixel"][lv] for r in base_rows]) for lv in LEVELS}
    summary = {"base_scale": base_summary, "scales_chosen": [r["scale"] for r in seeds],
               "pixel": {lv: med("pixel", lv) for lv in LEVELS}, "image": {lv: med("image", lv) for lv in LEVELS},
               **{k: med(k) for k in ("mean_half_width", "rank_correlation", "sample_rank_correlation", "flagged",
                                      "flagged_extra_noise", "flagged_other_images")}}
    return {"domain": name, "scale": "ensemble" if ensemble else "trajectory", "members": 1 + ensemble,
            "train_seconds": train_s, "foreign_load_cores": load.value, "seeds": seeds, "median": summary,
            "config": {k: v for k, v in d.items()}, "sizes": {"train": args.train, "cal": args.cal, "test": args.test}}


def table(results: list[dict[str, Any]]) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"
    lines = ["| domain | scale (members) | pixels in @90 | @95 | images in @90 | @95 | mean half-width | "
             "ρ(width, error) pixels | samples | flagged: in-dist. | extra noise | other images |", "|" + "---|" * 12]
    for r in results:
        m, b = r["median"], r["median"]["base_scale"]
        chosen = "/".join(sorted(set(m["scales_chosen"])))
        lines.append(f"| {r['domain']} | {r['scale']} alone ({r['members']}) | {pct(b['pixel'][0.9])} | "
                     f"{pct(b['pixel'][0.95])} | | | {b['mean_half_width']:.4f} | {b['rank_correlation']:.2f} | "
                     f"{b['sample_rank_correlation']:.2f} | | | |")
        lines.append(f"| {r['domain']} | auto: {chosen} ({r['members']}) | {pct(m['pixel'][0.9])} | {pct(m['pixel'][0.95])} | "
                     f"{pct(m['image'][0.9])} | {pct(m['image'][0.95])} | {m['mean_half_width']:.4f} | "
                     f"{m['rank_correlation']:.2f} | "
                     f"{m['sample_rank_correlation']:.2f} | {pct(m['flagged'])} | {pct(m['flagged_extra_noise'])} | "
                     f"{pct(m['flagged_other_images'])} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", default="blur,mri,ct")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6, help="training budget per run (a step budget, so that a busy "
                   "machine changes the time, not the result)")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--cal", type=int, default=300)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--ensemble", type=int, default=0, help="further members for the first domain")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=str(Path(__file__).with_name("uncertainty_results.json")))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.train, args.cal, args.test = 1, 1, 64, 60, 40
    torch.set_num_threads(2)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.domains.split(",")):
            print(f"{name}: training {args.epochs} epochs of {args.train} samples …", flush=True)
            results.append(run_domain(name, DOMAINS[name], Path(tmp) / name, args))
            if i == 0 and args.ensemble:
                results.append(run_domain(name, DOMAINS[name], Path(tmp) / f"{name}_ens", args, args.ensemble))
    print(table(results))
    if not args.quick:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "results": results},
                                              indent=1, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
