"""The data layer: self-describing named-axis HDF5 files, simulation, the lazy Dataset, the CLI.

Files are read back with plain h5py and with xarray, never only through invrim itself.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

import invrim
from invrim import data
from invrim.cli import main
from invrim.data import DataError, HDF5Dataset
from invrim.physics.blur import gaussian_psf
from invrim.plugins import registry
from invrim.training.from_file import train_on_file

SMALL_BACKBONE = {"nf": 4, "hidden_units": 8, "ch_mult": [1]}
JSON_ATTRS = ("forward_model_config", "likelihood_config", "generator_config", "parameters", "versions",
              "providers")
BLUR_SEED = 5


# ---------------------------------------------------------------------------------------------
# helpers and shared files
# ---------------------------------------------------------------------------------------------

def data_error(fn, *fragments) -> str:
    """``fn()`` raises a one-line DataError (a ValueError) containing every fragment."""
    with pytest.raises(DataError) as e:
        fn()
    assert isinstance(e.value, ValueError)
    message = str(e.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, (fragment, message)
    return message


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def blur_xr(n=4, h=8, w=8, seed=0) -> xr.Dataset:
    """A small hand-made dataset for the core ``blur`` model (fixed PSF)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, h, w), dtype=np.float32)
    y = x + np.float32(0.1) * rng.standard_normal(x.shape, dtype=np.float32)
    dims = ("sample", "channel", "height", "width")
    return xr.Dataset({"x": (dims, x), "y": (dims, y)},
                      attrs={"forward_model": "blur", "forward_model_config": {"psf_sigma": 1.0},
                             "likelihood": "gaussian", "likelihood_config": {"sigma": 0.1}})


def simulate_blur(path, samples, seed=BLUR_SEED, shape=(16, 16), psf_sigma=(0.5, 2.0), sigma_range=(0.01, 0.1),
                  generator="random_field", **kw):
    return data.simulate(path, "blur", "gaussian", samples, generator=generator,
                         generator_config={"shape": list(shape)},
                         forward_model_config={"psf_sigma": list(psf_sigma)},
                         likelihood_config={"sigma_range": list(sigma_range)}, seed=seed, progress=False, **kw)


@pytest.fixture(scope="module")
def blur_file(tmp_path_factory):
    """70 samples (two random blocks) of blur with per-sample PSF widths and noise levels."""
    return simulate_blur(tmp_path_factory.mktemp("blur") / "blur.h5", 70)


@pytest.fixture(scope="module")
def mri_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mri") / "mri.h5"
    return data.simulate(path, "mri_multicoil", "gaussian", 6, generator="mri_phantom",
                         generator_config={"height": 16}, forward_model_config={"coils": 3},
                         likelihood_config={"sigma": 0.01}, seed=0, progress=False)


# ---------------------------------------------------------------------------------------------
# round trips: h5py and xarray read what invrim wrote
# ---------------------------------------------------------------------------------------------

def test_simulated_file_reads_back_with_plain_h5py(blur_file):
    with h5py.File(blur_file, "r") as f:
        arrays = {k: f[k][()] for k in ("x", "y", "psf", "sigma")}
        attrs = dict(f.attrs)
        assert f["x"].chunks[1:] == f["x"].shape[1:]           # chunks are whole samples
    assert arrays["x"].shape == (70, 1, 16, 16) and arrays["y"].shape == (70, 1, 16, 16)
    assert arrays["psf"].shape == (70, 13, 13) and arrays["sigma"].shape == (70,)
    assert all(a.dtype == np.float32 for a in arrays.values())
    # the attributes are JSON text that any reader can decode
    decoded = {k: json.loads(attrs[k]) for k in JSON_ATTRS}
    assert attrs["invrim_format"] == "invrim-dataset" and int(np.squeeze(attrs["invrim_format_version"])) == 1
    assert attrs["forward_model"] == "blur" and attrs["likelihood"] == "gaussian"
    assert decoded["forward_model_config"] == {"dimensions": 2, "boundary": "same", "psf_sigma": [0.5, 2.0],
                                               "psf_size": 13}
    assert decoded["likelihood_config"]["sigma_range"] == [0.01, 0.1]
    assert decoded["parameters"] == ["psf", "sigma"]
    assert decoded["providers"]["forward_model"]["distribution"] == "invrim"
    assert int(np.squeeze(attrs["seed"])) == BLUR_SEED and attrs["generator"] == "random_field"

    # x is exactly the generator (rebuilt from the file's attributes) on the fixed block streams
    gen = registry().generators.build(attrs["generator"], **decoded["generator_config"])
    first = gen(64, generator=data.block_generator(BLUR_SEED, 0))
    second = gen(6, generator=data.block_generator(BLUR_SEED, 1))
    assert same_bits(arrays["x"][:64], first.numpy())
    assert same_bits(arrays["x"][64:], second.numpy())

    # HDF5Dataset items are the h5py arrays, one by one and as a block
    ds = HDF5Dataset(blur_file)
    assert len(ds) == 70 and ds.variables == ["y", "x", "psf", "sigma"]
    for i in (0, 1, 63, 64, 69):
        item = ds[i]
        for k, a in arrays.items():
            assert same_bits(item[k].numpy(), a[i]), (k, i)
    block = ds.read(0, 70)
    for k, a in arrays.items():
        assert same_bits(block[k].numpy(), a), k

    # the physics is rebuilt from the file alone
    problem = data.problem_from_file(blur_file)
    assert problem.forward_model.name == "blur" and problem.forward_model.psf_sigma == [0.5, 2.0]
    assert problem.likelihood.sigma_range == [0.01, 0.1]


def test_files_read_back_with_xarray(blur_file, mri_file):
    with xr.open_dataset(blur_file, engine="h5netcdf") as ds:
        assert ds.x.dims == ("sample", "channel", "height", "width") == ds.y.dims
        assert ds.psf.dims == ("sample", "psf_height", "psf_width") and ds.sigma.dims == ("sample",)
        for k in JSON_ATTRS:
            assert isinstance(json.loads(ds.attrs[k]), (dict, list)), k
        with h5py.File(blur_file, "r") as f:
            for k in ("x", "y", "psf", "sigma"):
                assert same_bits(ds[k].values, f[k][()]), k
    with xr.open_dataset(mri_file, engine="h5netcdf") as ds:
        assert ds.y.dims == ("sample", "coil", "ky", "kx") and ds.y.dtype == np.complex64
        assert ds.sens.dims == ("sample", "coil", "height", "width") and ds.sens.dtype == np.complex64
        assert ds.mask.dims == ("sample", "kx") and ds.x.dims == ("sample", "channel", "height", "width")
        assert ds.sizes["coil"] == 3 and ds.sizes["sample"] == 6
        with h5py.File(mri_file, "r") as f:
            for k in ("x", "y", "mask", "sens"):
                assert same_bits(ds[k].values, f[k][()]), k
    # invrim's own opener validates and decodes the JSON attributes
    with data.open_dataset(mri_file) as ds:
        assert ds.attrs["forward_model_config"]["coils"] == 3
        assert ds.attrs["parameters"] == ["mask", "sens"]
        assert ds.attrs["providers"]["forward_model"]["distribution"] == "invrim-mri"


@pytest.mark.parametrize("complex_dtype", [np.complex64, np.complex128])
def test_complex_data_round_trip_bit_exact(tmp_path, complex_dtype):
    real = np.float32 if complex_dtype == np.complex64 else np.float64
    rng = np.random.default_rng(1)
    n, coils, H, W = 3, 2, 8, 6
    x = rng.standard_normal((n, 2, H, W)).astype(real)

    def cplx(*shape):
        z = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(complex_dtype)
        flat = z.reshape(-1)      # awkward values must survive too: -0, subnormals, huge numbers
        tiny = np.finfo(real).smallest_subnormal
        flat[:4] = [complex(-0.0, 0.0), complex(tiny, -tiny), complex(np.finfo(real).max, -0.0),
                    complex(1 / 3, -2 / 3)]
        return z

    y, sens = cplx(n, coils, H, W), cplx(n, coils, H, W)
    mask = np.zeros((n, W), bool)
    mask[:, ::2] = True
    ds = xr.Dataset({"x": (("sample", "channel", "height", "width"), x),
                     "y": (("sample", "coil", "ky", "kx"), y),
                     "mask": (("sample", "kx"), mask),
                     "sens": (("sample", "coil", "height", "width"), sens)},
                    attrs={"forward_model": "mri_multicoil", "forward_model_config": {"coils": coils},
                           "likelihood": "gaussian", "likelihood_config": {"sigma": 0.1},
                           "parameters": ["mask", "sens"]})
    path = data.write_dataset(ds, tmp_path / "c.h5")
    with h5py.File(path, "r") as f:
        assert f["y"].dtype == complex_dtype and f["sens"].dtype == complex_dtype
        assert same_bits(f["y"][()], y) and same_bits(f["sens"][()], sens) and same_bits(f["x"][()], x)
        assert f["mask"].dtype == np.uint8 and np.array_equal(f["mask"][()], mask)
    with xr.open_dataset(path, engine="h5netcdf") as xds:
        assert same_bits(xds.y.values, y) and same_bits(xds.sens.values, sens)
    item = HDF5Dataset(path)[2]
    assert same_bits(item["y"].numpy(), y[2]) and same_bits(item["sens"].numpy(), sens[2])
    assert item["mask"].dtype == torch.bool and torch.equal(item["mask"], torch.from_numpy(mask[2]))


# ---------------------------------------------------------------------------------------------
# permuted dims
# ---------------------------------------------------------------------------------------------

def test_permuted_dims_come_back_in_forward_model_order(tmp_path):
    rng = np.random.default_rng(2)
    n, H, W = 5, 6, 7                       # not square: a transposed read cannot pass unnoticed
    x = rng.random((n, 1, H, W), dtype=np.float32)
    y = rng.random((n, 1, H, W), dtype=np.float32)
    psf = rng.random((n, 3, 5), dtype=np.float32)        # asymmetric, not square
    sigma = rng.uniform(0.05, 0.1, n).astype(np.float32)
    img = ("sample", "channel", "height", "width")
    ds = xr.Dataset({"x": (img, x), "y": (img, y), "psf": (("sample", "psf_height", "psf_width"), psf),
                     "sigma": (("sample",), sigma)},
                    attrs={"forward_model": "blur", "forward_model_config": {"dimensions": 2},
                           "likelihood": "gaussian", "likelihood_config": {"sigma": 0.1},
                           "parameters": ["psf", "sigma"]})
    permuted = ds.copy()
    for k in ("x", "y"):
        permuted[k] = ds[k].transpose("sample", "width", "height", "channel")
    permuted["psf"] = ds.psf.transpose("sample", "psf_width", "psf_height")
    path = data.write_dataset(permuted, tmp_path / "permuted.h5")
    with xr.open_dataset(path, engine="h5netcdf") as stored:     # really stored permuted
        assert stored.x.dims == ("sample", "width", "height", "channel") and stored.x.shape == (n, W, H, 1)
        assert stored.psf.dims == ("sample", "psf_width", "psf_height")
    dataset = HDF5Dataset(path)
    assert dataset.target_dims("x") == ("channel", "height", "width")
    assert dataset.target_dims("psf") == ("psf_height", "psf_width")
    for i in range(n):
        item = dataset[i]
        assert item["x"].shape == (1, H, W) and item["x"].is_contiguous()
        assert torch.equal(item["x"], torch.from_numpy(x[i])) and torch.equal(item["y"], torch.from_numpy(y[i]))
        assert torch.equal(item["psf"], torch.from_numpy(psf[i])) and float(item["sigma"]) == sigma[i]
    items = dataset.__getitems__([4, 1, 2])
    assert all(torch.equal(it["x"], torch.from_numpy(x[i])) for it, i in zip(items, [4, 1, 2]))

    # a simulated file, opened with xarray, transposed and written again, reads back unchanged
    # (attributes copied from xarray are JSON strings already)
    original = simulate_blur(tmp_path / "sim.h5", 4, shape=(10, 12), psf_sigma=(0.5, 1.0))
    with xr.open_dataset(original, engine="h5netcdf") as sim:
        sim = sim.load()
    for k in ("x", "y"):
        sim[k] = sim[k].transpose("sample", "width", "height", "channel")
    again = data.write_dataset(sim, tmp_path / "sim_permuted.h5")
    assert data.read_attrs(again)["forward_model_config"] == data.read_attrs(original)["forward_model_config"]
    a, b = HDF5Dataset(original), HDF5Dataset(again)
    for k in ("x", "y", "psf", "sigma"):
        assert torch.equal(a.read(0, 4)[k], b.read(0, 4)[k]), k

    # simulate --from a permuted file takes x in the forward model's order
    resim = data.simulate(tmp_path / "resim.h5", "blur", "gaussian", source=path,
                          forward_model_config={"psf_sigma": 0.5}, likelihood_config={"sigma": 0.01},
                          progress=False)
    with h5py.File(resim, "r") as f:
        assert same_bits(f["x"][()], x)


# ---------------------------------------------------------------------------------------------
# the lazy Dataset: workers, batches, pickling, laziness
# ---------------------------------------------------------------------------------------------

def _batches(ds, **kw):
    return list(torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False, **kw))


@pytest.mark.parametrize("context", [None, "spawn"])
def test_dataloader_workers_give_the_same_batches(blur_file, context):
    ds = HDF5Dataset(blur_file)
    ds[3]                                     # the parent has an open handle before the workers start
    reference = _batches(ds, num_workers=0)
    parallel = _batches(ds, num_workers=2, multiprocessing_context=context)
    assert len(reference) == len(parallel) == 5          # 70 samples: 4 full batches and one of 6
    with h5py.File(blur_file, "r") as f:
        for b, (r, p) in enumerate(zip(reference, parallel)):
            assert set(r) == set(p) == {"x", "y", "psf", "sigma"}
            for k in r:
                assert torch.equal(r[k], p[k]), (b, k)
                assert same_bits(r[k].numpy(), f[k][16 * b:16 * (b + 1)]), (b, k)
    assert ds[3]["x"].shape == (1, 16, 16)             # the parent's handle still works


def test_getitems_handles_unsorted_duplicate_and_negative_indices(blur_file):
    ds = HDF5Dataset(blur_file)
    indices = [7, 3, 4, 3, 69, 0, -1, 8, 5, 6, 7, 40, 2]
    batch = ds.__getitems__(indices)
    assert len(batch) == len(indices)
    for i, item in zip(indices, batch):
        expected = ds[i]
        assert set(item) == set(expected)
        for k in item:
            assert torch.equal(item[k], expected[k]), (i, k)
    assert ds.__getitems__([]) == []
    for bad in (70, -71):
        with pytest.raises(IndexError):
            ds[bad]
        with pytest.raises(IndexError):
            ds.__getitems__([0, bad])
    # variables=... and dtype=... select and convert
    sub = HDF5Dataset(blur_file, variables=["y", "sigma"], dtype=torch.float64)
    assert set(sub[5]) == {"y", "sigma"} and sub[5]["y"].dtype == torch.float64
    assert torch.equal(sub[5]["y"], ds[5]["y"].double())
    data_error(lambda: HDF5Dataset(blur_file, variables=["y", "nope"]), blur_file, "'nope'")


def test_pickling_a_used_dataset_drops_the_handle(blur_file):
    ds = HDF5Dataset(blur_file)
    before = ds[10]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    after = clone[10]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(ds[11]["y"], clone[11]["y"])      # the original keeps working
    clone.close()
    assert torch.equal(clone[12]["x"], ds[12]["x"])      # and a closed one reopens


def test_dataset_reads_only_what_it_is_asked_for(blur_file, monkeypatch):
    """Opening a file reads metadata and at most the first sample (the physics check), never the
    whole file; a batch reads one slice per run of consecutive indices."""
    reads: list[tuple[str, int]] = []
    original = h5py.Dataset.__getitem__

    def counting(self, key, *args, **kwargs):
        out = original(self, key, *args, **kwargs)
        name = self.name.lstrip("/")
        if name in ("x", "y", "psf", "sigma"):
            reads.append((name, int(np.shape(out)[0]) if np.ndim(out) else 1))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    ds = HDF5Dataset(blur_file, check_values=False)
    assert reads and all(count <= 1 for _, count in reads), reads
    reads.clear()
    ds[20]
    assert sorted(reads) == [("psf", 1), ("sigma", 1), ("x", 1), ("y", 1)]
    reads.clear()
    ds.__getitems__([33, 31, 32, 50])                   # runs 31..33 and 50
    assert sorted(r for r in reads if r[0] == "y") == [("y", 1), ("y", 3)]
    # the NaN/Inf scan is the one full pass, and only when asked for
    reads.clear()
    HDF5Dataset(blur_file, check_values=True)
    assert sum(c for n, c in reads if n == "y") >= 70


# ---------------------------------------------------------------------------------------------
# reproducibility
# ---------------------------------------------------------------------------------------------

def test_same_seed_same_file_bit_for_bit_and_another_seed_differs(tmp_path):
    kw = dict(shape=(8, 8), psf_sigma=(0.5, 1.0), generator="ellipses")
    a = simulate_blur(tmp_path / "a.h5", 10, seed=1, **kw)
    b = simulate_blur(tmp_path / "b.h5", 10, seed=1, **kw)
    c = simulate_blur(tmp_path / "c.h5", 10, seed=2, **kw)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb, h5py.File(c, "r") as fc:
        for k in ("x", "y", "psf", "sigma"):
            assert same_bits(fa[k][()], fb[k][()]), k
            assert not np.array_equal(fa[k][()], fc[k][()]), k
        attrs_a = {k: v for k, v in fa.attrs.items() if k != "created"}
        attrs_b = {k: v for k, v in fb.attrs.items() if k != "created"}
        assert attrs_a.keys() == attrs_b.keys()
        assert all(np.array_equal(attrs_a[k], attrs_b[k]) for k in attrs_a)


def _prefix_equal(small, large, n):
    with h5py.File(small, "r") as fs, h5py.File(large, "r") as fl:
        return {k: [i for i in range(n) if not same_bits(fs[k][i], fl[k][i])][:3]
                for k in ("x", "y", "psf", "sigma")}


def test_first_block_of_a_file_is_the_same_in_a_larger_file(tmp_path):
    small = simulate_blur(tmp_path / "s.h5", 64, shape=(8, 8), psf_sigma=(0.5, 1.0))
    large = simulate_blur(tmp_path / "l.h5", 130, shape=(8, 8), psf_sigma=(0.5, 1.0))
    assert _prefix_equal(small, large, 64) == {"x": [], "y": [], "psf": [], "sigma": []}


def test_first_n_samples_of_a_file_equal_those_of_a_larger_file(tmp_path):
    small = simulate_blur(tmp_path / "s.h5", 100, shape=(8, 8), psf_sigma=(0.5, 1.0))
    large = simulate_blur(tmp_path / "l.h5", 200, shape=(8, 8), psf_sigma=(0.5, 1.0))
    assert _prefix_equal(small, large, 100) == {"x": [], "y": [], "psf": [], "sigma": []}


# ---------------------------------------------------------------------------------------------
# per-sample physics parameters
# ---------------------------------------------------------------------------------------------

def test_blur_draws_one_psf_per_sample_with_a_width_in_range(blur_file):
    with h5py.File(blur_file, "r") as f:
        psf = f["psf"][()].astype(np.float64)
    c = psf.shape[-1] // 2
    assert np.allclose(psf.sum(axis=(1, 2)), 1, atol=1e-5)
    # a sampled Gaussian: psf[c, c+1] / psf[c, c] = exp(-1 / (2 sigma^2))
    widths = np.sqrt(-1 / (2 * np.log(psf[:, c, c + 1] / psf[:, c, c])))
    for p, s in zip(psf, widths):
        assert np.allclose(p, gaussian_psf(13, float(s), dtype=torch.float64).numpy(), atol=2e-6)
    assert widths.min() >= 0.5 - 1e-3 and widths.max() <= 2.0 + 1e-3
    assert widths.min() < 0.8 and widths.max() > 1.7            # spread over the range
    assert len(np.unique(np.round(widths, 4))) == 70


def test_gaussian_sigma_range_gives_each_sample_its_noise_level(tmp_path):
    path = simulate_blur(tmp_path / "noise.h5", 12, shape=(64, 64), psf_sigma=(0.5, 1.5), sigma_range=(0.01, 0.2))
    ds = HDF5Dataset(path)
    batch = ds.read(0, 12)
    sigma = batch["sigma"]
    assert sigma.shape == (12,) and bool(((sigma >= 0.01) & (sigma <= 0.2)).all())
    assert float(sigma.max() / sigma.min()) > 2
    fm = ds.problem.forward_model
    residual = batch["y"] - fm(batch["x"], psf=batch["psf"])
    std = residual.flatten(1).std(dim=1)
    assert torch.allclose(std, sigma, rtol=0.1), (std, sigma)


def test_inpainting_fraction_gives_per_sample_boolean_masks(tmp_path):
    path = data.simulate(tmp_path / "inp.h5", "inpainting", "gaussian", 6, generator="random_field",
                         generator_config={"shape": [32, 32]}, forward_model_config={"fraction": 0.3},
                         likelihood_config={"sigma": 0.01}, progress=False)
    with h5py.File(path, "r") as f:
        assert f["mask"].dtype == np.uint8 and f["mask"].attrs["invrim_dtype"] in ("bool", b"bool")
        assert json.loads(f.attrs["parameters"]) == ["mask"]
    with xr.open_dataset(path, engine="h5netcdf") as xds:
        assert xds.mask.dims == ("sample", "height", "width")
    batch = HDF5Dataset(path).read(0, 6)
    mask = batch["mask"]
    assert mask.dtype == torch.bool and mask.shape == (6, 32, 32)
    assert abs(float(mask.float().mean()) - 0.3) < 0.03
    assert not torch.equal(mask[0], mask[1])
    noise = batch["y"] - mask[:, None] * batch["x"]
    assert abs(float(noise.std()) - 0.01) < 0.001


def test_mri_masks_and_coil_maps_are_stored_per_sample(mri_file):
    ds = HDF5Dataset(mri_file)
    assert ds.variables == ["y", "x", "mask", "sens"]
    batch = ds.read(0, 6)
    assert batch["y"].dtype == torch.complex64 and batch["y"].shape == (6, 3, 16, 16)
    assert batch["sens"].dtype == torch.complex64 and batch["sens"].shape == (6, 3, 16, 16)
    assert batch["mask"].dtype == torch.bool and batch["mask"].shape == (6, 16)
    assert not torch.equal(batch["sens"][0], batch["sens"][1])
    assert torch.allclose((batch["sens"].abs() ** 2).sum(1), torch.ones(6, 16, 16), atol=1e-4)
    fraction = batch["mask"].float().mean(1)
    assert bool(((fraction > 0.15) & (fraction < 0.5)).all()), fraction
    residual = batch["y"] - ds.problem.forward_model(batch["x"], mask=batch["mask"], sens=batch["sens"])
    assert abs(float(residual.real.std()) - 0.01) < 0.0015 and abs(float(residual.imag.std()) - 0.01) < 0.0015


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file and the fault
# ---------------------------------------------------------------------------------------------

def _write(ds, path):
    data.write_dataset(ds, path)
    return path


def _mri_singlecoil_real_y(tmp):
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"x": (("sample", "channel", "height", "width"), rng.random((3, 2, 8, 8), dtype=np.float32)),
                     "y": (("sample", "ky", "kx"), rng.random((3, 8, 8), dtype=np.float32)),
                     "mask": (("sample", "kx"), np.ones((3, 8), bool))},
                    attrs={"forward_model": "mri_singlecoil", "forward_model_config": {}, "likelihood": "gaussian",
                           "likelihood_config": {"sigma": 0.1}, "parameters": ["mask"]})
    return _write(ds, tmp / "real_y.h5")


def _unknown_model(tmp):
    ds = blur_xr()
    ds.attrs.update(forward_model="foo_model",
                    providers={"forward_model": {"name": "foo:foo_model", "plugin": "foo",
                                                 "distribution": "invrim-foo", "version": "1.2"}})
    return _write(ds, tmp / "foo.h5")


def _h5py_attrs():
    return {"invrim_format": "invrim-dataset", "invrim_format_version": 1, "forward_model": "blur",
            "forward_model_config": json.dumps({"psf_sigma": 1.0}), "likelihood": "gaussian",
            "likelihood_config": json.dumps({"sigma": 0.1}), "parameters": "[]"}


def _h5py_unnamed(tmp):
    path = tmp / "plain.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(_h5py_attrs())
        f["x"] = np.zeros((4, 1, 8, 8), np.float32)
        f["y"] = np.zeros((4, 1, 8, 8), np.float32)
    return path


def _h5py_mismatched_counts(tmp):
    """Named dims (dimension scales), but x holds 4 samples and y 5."""
    path = tmp / "counts.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(_h5py_attrs())
        x = f.create_dataset("x", data=np.zeros((4, 1, 8, 8), np.float32))
        y = f.create_dataset("y", data=np.zeros((5, 1, 8, 8), np.float32))
        names = ("sample", "channel", "height", "width")
        for name, size in zip(names, (5, 1, 8, 8)):
            f.create_dataset(name, data=np.arange(size, dtype=np.float32)).make_scale(name)
        for var in (x, y):
            for i, name in enumerate(names):
                var.dims[i].attach_scale(f[name])
    return path


def _sample_not_first(tmp):
    """Written by hand with xarray (as docs/file-format.md allows), sample as the second dim."""
    ds = blur_xr().transpose("channel", "sample", "height", "width")
    ds.attrs = {"invrim_format": "invrim-dataset", "invrim_format_version": 1, "forward_model": "blur",
                "forward_model_config": json.dumps({"psf_sigma": 1.0}), "likelihood": "gaussian",
                "likelihood_config": json.dumps({"sigma": 0.1})}
    ds.to_netcdf(tmp / "order.h5", engine="h5netcdf")
    return tmp / "order.h5"


def _with_nan(tmp):
    ds = blur_xr(n=6)
    ds.y.values[4, 0, 1, 2] = np.inf
    ds.y.values[2, 0, 3, 3] = np.nan
    return _write(ds, tmp / "nan.h5")


def _newer_version(tmp):
    path = _write(blur_xr(), tmp / "v2.h5")
    with h5py.File(path, "a") as f:
        f.attrs["invrim_format_version"] = 2
    return path


def _truncated(tmp):
    good = _write(blur_xr(), tmp / "good.h5")
    raw = good.read_bytes()
    (tmp / "truncated.h5").write_bytes(raw[:len(raw) // 2])
    return tmp / "truncated.h5"


def _text(tmp):
    (tmp / "notes.h5").write_text("sample,x,y\n0,1,2\n")
    return tmp / "notes.h5"


def _partial(tmp):
    path = _write(blur_xr(), tmp / "done.h5")
    return Path(shutil.move(path, tmp / "done.h5.partial"))


def _renamed_dim(tmp):
    return _write(blur_xr().rename_dims(height="rows"), tmp / "dims.h5")


BAD_FILES = {
    # id: (make the file, validate() keywords, fragments the message must hold)
    "missing-x": (lambda t: _write(blur_xr().drop_vars("x"), t / "nox.h5"), {"require_truth": True},
                  ["'x'", "missing"]),
    "missing-y": (lambda t: _write(blur_xr().drop_vars("y"), t / "noy.h5"), {}, ["'y'", "missing"]),
    "missing-parameter": (lambda t: _write(blur_xr().assign_attrs(parameters=["psf"]), t / "nopsf.h5"), {},
                          ["'psf'", "missing"]),
    "wrong-dims": (_renamed_dim, {}, ["rows", "(sample, channel, height, width)"]),
    "sample-not-first": (_sample_not_first, {}, ["'y'", "sample"]),
    "unnamed-dims": (_h5py_unnamed, {}, ["'y'", "unnamed", "phony_dim"]),
    "real-y-complex-model": (_mri_singlecoil_real_y, {}, ["'y'", "float32", "mri_singlecoil", "complex"]),
    "integer-x": (lambda t: _write(blur_xr().assign(x=lambda d: d.x.astype("int16")), t / "xint.h5"), {},
                  ["'x'", "int16"]),
    "complex-y-real-model": (lambda t: _write(blur_xr().assign(y=lambda d: d.y.astype("complex64")),
                                              t / "ycplx.h5"), {}, ["'y'", "complex64", "real"]),
    "nan-inf": (_with_nan, {}, ["'y'", "NaN", "sample 2"]),
    "unknown-forward-model": (_unknown_model, {}, ["'foo_model'", "not installed", "pip install invrim-foo"]),
    "bad-config": (lambda t: _write(blur_xr().assign_attrs(forward_model_config={"psf_sigma": -1}),
                                    t / "cfg.h5"), {}, ["forward_model_config", "psf_sigma"]),
    "newer-version": (_newer_version, {}, ["version 2", "upgrade invrim"]),
    "truncated": (_truncated, {}, ["truncated"]),
    "not-hdf5": (_text, {}, ["not an HDF5"]),
    "partial": (_partial, {}, ["incomplete"]),
    "missing-file": (lambda t: t / "absent.h5", {}, ["no such file"]),
    "not-invrim": (lambda t: _write_plain_netcdf(t), {}, ["not an invrim data file"]),
}


def _write_plain_netcdf(tmp):
    xr.Dataset({"y": (("sample", "height"), np.zeros((2, 3), np.float32))}).to_netcdf(tmp / "plain.nc",
                                                                                   engine="h5netcdf")
    return tmp / "plain.nc"


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_give_one_line_naming_file_and_fault(tmp_path, case):
    make, kwargs, fragments = BAD_FILES[case]
    path = make(tmp_path)
    data_error(lambda: data.validate(path, **kwargs), path.name, *fragments)
    # every reader goes through the same checks
    data_error(lambda: HDF5Dataset(path, check_values=True, **kwargs), path.name, *fragments)


def test_mismatched_sample_counts_are_reported(tmp_path):
    path = _h5py_mismatched_counts(tmp_path)
    data_error(lambda: data.validate(path, require_truth=True), path.name, "different numbers of samples")


def test_nan_is_reported_at_its_sample_across_scan_blocks(tmp_path, monkeypatch):
    from invrim.data import validation
    ds = blur_xr(n=50)
    ds.x.values[37, 0, 0, 0] = np.nan
    path = _write(ds, tmp_path / "late_nan.h5")
    monkeypatch.setattr(validation, "SCAN_BYTES", 3 * 8 * 8 * 4)        # three samples a read
    data_error(lambda: data.validate(path), path.name, "'x'", "sample 37")
    assert data.validate(path, check_values=False).samples == 50
    assert len(HDF5Dataset(path)) == 50                                 # the scan is opt-in there


def test_observation_only_file_reads_but_cannot_train(tmp_path):
    path = _write(blur_xr().drop_vars("x"), tmp_path / "obs.h5")
    ds = HDF5Dataset(path)
    assert ds.variables == ["y"] and not ds.info.has_truth
    data_error(lambda: HDF5Dataset(path, require_truth=True), path.name, "'x'")
    data_error(lambda: train_on_file(path, tmp_path / "run", epochs=1, progress=False), path.name, "'x'")
    assert not (tmp_path / "run").exists()


def test_existing_output_is_never_replaced_without_overwrite(tmp_path):
    path = _write(blur_xr(), tmp_path / "out.h5")
    before = path.read_bytes()
    data_error(lambda: data.write_dataset(blur_xr(seed=1), path), path.name, "already exists")
    data_error(lambda: simulate_blur(path, 3, shape=(8, 8), psf_sigma=(0.5, 1.0)), path.name, "already exists")
    data_error(lambda: data.DatasetWriter(path, 2, {"y": (("height",), "float32")}, {"height": 3}),
               path.name, "already exists")
    assert path.read_bytes() == before
    # a failed replacement leaves the old file and no .partial
    with pytest.raises(DataError):
        with data.DatasetWriter(path, 2, {"y": (("height",), "float32")}, {"height": 3},
                                attrs=blur_xr().attrs, overwrite=True) as writer:
            writer.write(0, y=np.zeros((2, 4), np.float32))             # wrong shape
    assert path.read_bytes() == before and not (tmp_path / "out.h5.partial").exists()
    # with overwrite it is replaced
    data.write_dataset(blur_xr(seed=1), path, overwrite=True)
    with h5py.File(path, "r") as f:
        assert same_bits(f["x"][()], blur_xr(seed=1).x.values)


def test_streaming_writer_round_trip(tmp_path):
    """DatasetWriter: samples written in pieces, in any order, read back with h5py."""
    rng = np.random.default_rng(3)
    x = rng.random((7, 1, 4, 5), dtype=np.float32)
    mask = rng.random((7, 4, 5)) < 0.5
    attrs = {"forward_model": "inpainting", "forward_model_config": {}, "likelihood": "gaussian",
             "likelihood_config": {"sigma": 0.1}, "parameters": ["mask"]}
    img = ("channel", "height", "width")
    with data.DatasetWriter(tmp_path / "w.h5", 7, {"x": (img, "float32"), "y": (img, torch.float32),
                                                   "mask": (("height", "width"), torch.bool)},
                            {"channel": 1, "height": 4, "width": 5}, attrs) as writer:
        assert (tmp_path / "w.h5.partial").exists() and not (tmp_path / "w.h5").exists()
        writer.write(4, x=x[4:], y=torch.from_numpy(x[4:] * mask[4:, None]), mask=torch.from_numpy(mask[4:]))
        writer.write(0, x=x[:4], y=x[:4] * mask[:4, None], mask=mask[:4])
        data_error(lambda: writer.write(6, x=x[:2]), "w.h5", "outside")
        data_error(lambda: writer.write(0, z=x), "w.h5", "'z'")
    assert not (tmp_path / "w.h5.partial").exists()
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert same_bits(f["x"][()], x) and np.array_equal(f["mask"][()], mask.astype(np.uint8))
        assert f.attrs["invrim_format"] == "invrim-dataset"
    item = HDF5Dataset(tmp_path / "w.h5", require_truth=True)[5]
    assert item["mask"].dtype == torch.bool and torch.equal(item["mask"], torch.from_numpy(mask[5]))


class _FailingGenerator:
    """A generator instance (not registered) that fails on its second block."""

    name = "failing"
    dims = ("channel", "height", "width")

    def __init__(self, error=KeyboardInterrupt, rank=4):
        self.calls, self.error, self.rank = 0, error, rank

    def config(self):
        return {}

    def __call__(self, batch, generator=None, dtype=torch.float32):
        self.calls += 1
        if self.calls > 1:
            raise self.error()
        return torch.rand(batch, *(1, 8, 8)[4 - self.rank:], generator=generator, dtype=dtype)


def test_interrupted_or_failed_simulation_leaves_no_file(tmp_path):
    path = tmp_path / "boom.h5"
    with pytest.raises(KeyboardInterrupt):       # block 0 is written, block 1 is interrupted
        data.simulate(path, "blur", "gaussian", 70, generator=_FailingGenerator(),
                      forward_model_config={"psf_sigma": 1.0}, progress=False)
    assert not path.exists() and not (tmp_path / "boom.h5.partial").exists()
    data_error(lambda: data.simulate(path, "blur", "gaussian", 3, generator=_FailingGenerator(rank=3),
                                     forward_model_config={"psf_sigma": 1.0}, progress=False),
               "'failing'", "(8, 8)", "(channel, height, width)")
    data_error(lambda: data.simulate(path, "blur", "gaussian", 3, generator="random_field",
                                     generator_config={"shape": [4, 4]}, forward_model_config={"psf_sigma": 2.0},
                                     progress=False), "'blur'", "larger than the signal")
    assert not path.exists() and not (tmp_path / "boom.h5.partial").exists()


def test_simulate_float64_stores_complex128_observations(tmp_path):
    path = data.simulate(tmp_path / "f64.h5", "mri_singlecoil", "gaussian", 2, generator="mri_phantom",
                         generator_config={"height": 8}, likelihood_config={"sigma": 0.01}, dtype=torch.float64,
                         progress=False)
    with h5py.File(path, "r") as f:
        assert f["x"].dtype == np.float64 and f["y"].dtype == np.complex128 and f["y"].shape == (2, 8, 8)
        y = f["y"][()]
    with xr.open_dataset(path, engine="h5netcdf") as xds:
        assert xds.y.dims == ("sample", "ky", "kx") and same_bits(xds.y.values, y)
    item = HDF5Dataset(path)[1]
    assert item["y"].dtype == torch.complex128 and same_bits(item["y"].numpy(), y[1])
    assert HDF5Dataset(path, dtype=torch.float32)[1]["y"].dtype == torch.complex64


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("invrim "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = ["simulate", "--forward-model", "blur", "-f", "psf_sigma=[0.5,1.5]", "-f", "boundary=periodic",
            "-l", "sigma_range=[0.01,0.05]", "--generator", "ellipses", "-g", "shape=[12,12]",
            "-g", "ellipses=[1,3]", "--samples", "9", "--seed", "4", "-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"wrote 9 samples to {out}" in captured.out
    assert "simulate" in captured.err and "9/9" in captured.err           # the progress bar
    attrs = data.read_attrs(out)
    assert attrs["forward_model_config"]["psf_sigma"] == [0.5, 1.5]
    assert attrs["forward_model_config"]["boundary"] == "periodic"
    assert attrs["likelihood_config"]["sigma_range"] == [0.01, 0.05]
    assert attrs["generator"] == "ellipses" and attrs["generator_config"]["ellipses"] == [1, 3]
    assert attrs["seed"] == 4 and attrs["parameters"] == ["psf", "sigma"]
    # the same through the library, bit for bit
    lib = data.simulate(tmp_path / "lib.h5", "blur", "gaussian", 9, generator="ellipses",
                        generator_config={"shape": [12, 12], "ellipses": [1, 3]},
                        forward_model_config={"psf_sigma": [0.5, 1.5], "boundary": "periodic"},
                        likelihood_config={"sigma_range": [0.01, 0.05]}, seed=4, progress=False)
    with h5py.File(out, "r") as a, h5py.File(lib, "r") as b:
        assert all(same_bits(a[k][()], b[k][()]) for k in ("x", "y", "psf", "sigma"))

    # --from: the ground truth of another file, new physics, all its samples by default
    second = tmp_path / "from.h5"
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1.0", "-l", "sigma=0.02",
                 "--from", str(out), "-o", str(second), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as a, h5py.File(second, "r") as b:
        assert same_bits(a["x"][()], b["x"][()]) and not np.array_equal(a["y"][()], b["y"][()])
        assert json.loads(b.attrs["parameters"]) == [] and "psf" not in b
    assert data.read_attrs(second)["source"] == str(out.resolve())

    # --options lists the components' options
    assert main(["simulate", "--forward-model", "mri_multicoil", "--generator", "mri_phantom", "--options"]) == 0
    listing = capsys.readouterr().out
    assert "coils" in listing and "acceleration" in listing and "sigma_range" in listing and "height" in listing

    # mistakes: exit code 2 and one line on stderr
    assert main(["simulate", "--forward-model", "blur", "-f", "foo=1", "--generator", "ellipses",
                 "--samples", "2", "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "'foo'", "psf_sigma", "boundary")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses",
                 "-g", "size=3", "--samples", "2", "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "'size'", "shape")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses",
                 "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "--samples")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma", "--generator", "ellipses",
                 "--samples", "2", "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "KEY=VALUE")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses",
                 "-g", "shape=[8,8]", "--samples", "2", "-o", str(out), "--quiet"]) == 2
    _one_line_error(capsys, "already exists")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--from",
                 str(tmp_path / "absent.h5"), "-o", str(tmp_path / "x.h5"), "--quiet"]) == 2
    _one_line_error(capsys, "absent.h5", "no such file")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--from", str(out),
                 "--samples", "10", "-o", str(tmp_path / "x.h5"), "--quiet"]) == 2
    _one_line_error(capsys, "holds 9 samples")
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses",
                 "--samples", "0", "-o", str(tmp_path / "x.h5"), "--quiet"]) == 2
    _one_line_error(capsys, "samples")
    assert main(["simulate", "--forward-model", "nope", "--generator", "ellipses", "--samples", "2",
                 "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "nope")
    assert not (tmp_path / "x.h5").exists()


def test_cli_quiet_hides_the_progress_bar_in_a_real_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "invrim", "simulate", "--forward-model", "blur",
                          "-f", "psf_sigma=1.0", "--generator", "random_field", "-g", "shape=[8,8]",
                          "--samples", "3", "-o", str(tmp_path / "q.h5"), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and "wrote 3 samples" in out.stdout
    with h5py.File(tmp_path / "q.h5", "r") as f:
        assert f["y"].shape == (3, 1, 8, 8)


def test_cli_train_resume_and_refusal(tmp_path, capsys):
    path = simulate_blur(tmp_path / "train.h5", 16, shape=(8, 8), psf_sigma=(0.5, 1.0))
    run = tmp_path / "run"
    base = ["train", str(path), "-o", str(run), "-b", "nf=4", "-b", "hidden_units=8", "-b", "ch_mult=[1]",
            "--T", "2", "--batch-size", "8", "--seed", "0", "--quiet"]
    assert main(base + ["--epochs", "1"]) == 0
    assert "trained to epoch 1" in capsys.readouterr().out
    described = json.loads((run / "data.json").read_text())
    assert described["forward_model"] == "blur" and described["parameters"] == ["psf", "sigma"]
    assert described["shapes"]["x"] == [1, 8, 8] and described["dims"]["psf"] == ["psf_height", "psf_width"]
    assert described["path"] == str(path.resolve()) and described["samples"] == 16

    def epochs():
        return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert epochs() == [1]
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    assert "trained to epoch 2" in capsys.readouterr().out
    assert epochs() == [1, 2]
    # a new run into the same folder is refused
    assert main(base + ["--epochs", "3"]) == 2
    _one_line_error(capsys, "already holds a training run", "--resume")
    assert epochs() == [1, 2]
    # bad backbone option, bad file
    assert main(base[:2] + ["-o", str(tmp_path / "run2"), "-b", "bogus=1", "--quiet"]) == 2
    _one_line_error(capsys, "'bogus'", "nf")
    (tmp_path / "text.h5").write_text("no")
    assert main(["train", str(tmp_path / "text.h5"), "-o", str(tmp_path / "run3"), "--quiet"]) == 2
    _one_line_error(capsys, "text.h5", "not an HDF5")
    assert not (tmp_path / "run3").exists()


# ---------------------------------------------------------------------------------------------
# end to end: simulate -> train -> reload -> predict
# ---------------------------------------------------------------------------------------------

def test_end_to_end_blur_with_per_sample_psf_and_noise_learns(tmp_path):
    train = simulate_blur(tmp_path / "train.h5", 64, seed=1, psf_sigma=(0.5, 1.5), sigma_range=(0.01, 0.05))
    val = simulate_blur(tmp_path / "val.h5", 8, seed=2, psf_sigma=(0.5, 1.5), sigma_range=(0.01, 0.05))
    run = tmp_path / "run"
    rim, history = train_on_file(train, run, backbone_config=SMALL_BACKBONE, rim_options={"T": 4}, epochs=4,
                                 batch_size=8, learning_rate=3e-3, validation_file=val, seed=0, progress=False)
    losses = list(history)
    assert len(losses) == 4 and history.records[-1]["step"] == 32
    assert losses[-1] < 0.5 * losses[0], losses                         # it learns
    assert history.records[-1]["val_loss"] is not None
    assert json.loads((run / "data.json").read_text())["validation"]["samples"] == 8

    batch = HDF5Dataset(val).read(0, 8)
    reloaded = invrim.RIM(checkpoints_directory=run)               # the physics comes from the run folder
    assert reloaded.problem.forward_model.name == "blur" and reloaded.problem.likelihood.sigma_range == [0.01, 0.05]
    x_hat = reloaded.predict(batch["y"], psf=batch["psf"], sigma=batch["sigma"])
    assert x_hat.shape == batch["x"].shape and bool(torch.isfinite(x_hat).all())
    assert torch.equal(x_hat, rim.predict(batch["y"], psf=batch["psf"], sigma=batch["sigma"]))


def test_training_on_a_file_is_reproducible_with_a_seed(tmp_path, blur_file):
    """``seed`` (``invrim train --seed``) fixes the initial weights too, whatever the global RNG did."""
    runs = []
    for i, global_seed in enumerate((11, 12)):
        torch.manual_seed(global_seed)
        rim, history = train_on_file(blur_file, tmp_path / f"run{i}", backbone_config=SMALL_BACKBONE,
                                     rim_options={"T": 2}, epochs=1, batch_size=35, seed=3, progress=False)
        runs.append((list(history), {k: v.clone() for k, v in rim.model.state_dict().items()}))
    (h0, w0), (h1, w1) = runs
    assert h0 == h1
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)


def test_end_to_end_mri_multicoil_plugin(tmp_path, mri_file):
    run = tmp_path / "run"
    rim, history = train_on_file(mri_file, run, backbone_config=SMALL_BACKBONE, rim_options={"T": 2}, epochs=1,
                                 batch_size=3, learning_rate=1e-3, seed=0, progress=False)
    assert len(list(history)) == 1 and np.isfinite(list(history)[0])
    described = json.loads((run / "data.json").read_text())
    assert described["forward_model"] == "mri_multicoil" and described["dims"]["y"] == ["coil", "ky", "kx"]
    batch = HDF5Dataset(mri_file).read(0, 4)
    reloaded = invrim.RIM(checkpoints_directory=run)
    assert reloaded.problem.forward_model.name == "mri_multicoil" and reloaded.problem.forward_model.coils == 3
    x_hat = reloaded.predict(batch["y"], mask=batch["mask"], sens=batch["sens"])
    assert x_hat.shape == (4, 2, 16, 16) and x_hat.dtype == torch.float32 and bool(torch.isfinite(x_hat).all())
    assert torch.equal(x_hat, rim.predict(batch["y"], mask=batch["mask"], sens=batch["sens"]))
