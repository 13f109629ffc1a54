"""#20: foreign files in (fastMRI HDF5, NumPy, FITS, NIfTI), reconstructed like invrim's own files;
--link without copying; bad mappings refused in one line with nothing written."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from invrim import data
from invrim.cli import main
from invrim.data import DataError, HDF5Dataset, validate
from invrim.data.importer import import_data, load_mapping, mapping_from_dict, parse_var, plan_import
from invrim.reconstruct import reconstruct
from invrim.training.from_file import train_on_file

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"nf": 4, "hidden_units": 8, "ch_mult": [1]}
MRI = {"coils": 2, "acceleration": 2}


def _train(path, run):
    train_on_file(path, run, backbone_config=SMALL, rim_options={"T": 2}, epochs=1, batch_size=4,
                  learning_rate=1e-3, seed=0, progress=False)
    return run


@pytest.fixture(scope="module")
def blur(tmp_path_factory):
    """A tiny blur run trained on simulated data, and a simulated test file for it."""
    folder = tmp_path_factory.mktemp("blur")
    common = dict(generator="ellipses", generator_config={"shape": [16, 16]},
                  forward_model_config={"psf_sigma": 1.0}, likelihood_config={"sigma": 0.05}, progress=False)
    train = data.simulate(folder / "train.h5", "blur", "gaussian", 8, seed=0, **common)
    test = data.simulate(folder / "test.h5", "blur", "gaussian", 5, seed=1, **common)
    return _train(train, folder / "run"), test


@pytest.fixture(scope="module")
def mri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mri")
    common = dict(generator="mri_phantom", generator_config={"height": 16}, forward_model_config=MRI,
                  likelihood_config={"sigma": 0.01}, progress=False)
    train = data.simulate(folder / "train.h5", "mri_multicoil", "gaussian", 8, seed=0, **common)
    test = data.simulate(folder / "test.h5", "mri_multicoil", "gaussian", 3, seed=1, **common)
    return _train(train, folder / "run"), test


def _arrays(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim and k in ("x", "y", "mask", "sens")}


def _x_hat(run, path, out):
    reconstruct(run, path, out, batch_size=2, progress=False)
    with h5py.File(out, "r") as f:
        return f["x_hat"][...]


def _blur_mapping(**variables):
    return mapping_from_dict({"forward_model": "blur", "forward_model_config": {"psf_sigma": 1.0},
                              "likelihood": "gaussian", "likelihood_config": {"sigma": 0.05},
                              "variables": variables})


# ---- every format, imported and reconstructed like invrim's own file -----------------------------
def test_fastmri_layout_reconstructs_like_invrims_own_file(mri, tmp_path):
    run, test = mri
    a = _arrays(test)
    mask = a["mask"][0].astype(bool)
    raw = tmp_path / "raw"
    raw.mkdir()
    with h5py.File(raw / "file_brain_001.h5", "w") as f:          # the fastMRI multicoil layout
        f["kspace"] = a["y"]                                          # (slices, coils, ky, kx) complex64
        f["mask"] = mask                                              # (kx,) one per file
        f["ismrmrd_header"] = "<ismrmrdHeader/>"
        f["reconstruction_rss"] = np.sqrt((np.abs(a["x"]) ** 2).sum(1)).astype(np.float32)
    (tmp_path / "maps").mkdir()
    np.savez(tmp_path / "maps" / "file_brain_001.npz", sens=a["sens"])
    # invrim's own file of the same arrays (one mask for every slice)
    import xarray as xr
    own = xr.Dataset({"y": (("sample", "coil", "ky", "kx"), a["y"]),
                      "mask": (("sample", "kx"), np.broadcast_to(mask, (len(a["y"]), mask.size)).copy()),
                      "sens": (("sample", "coil", "height", "width"), a["sens"])},
                     attrs={**data.read_attrs(test), "parameters": ["mask", "sens"]})
    data.write_dataset(own, tmp_path / "own.h5")
    reference = _x_hat(run, tmp_path / "own.h5", tmp_path / "own_recon.h5")

    mapping = tmp_path / "fastmri.toml"
    mapping.write_text("""forward_model = "mri_multicoil"
forward_model_config = {coils = 2, acceleration = 2}
likelihood = "gaussian"
likelihood_config = {sigma = 0.01}

[variables.y]
array = "kspace"
dims = ["sample", "coil", "ky", "kx"]
[variables.mask]
array = "mask"
dims = ["kx"]
[variables.sens]
file = "maps/{stem}.npz"
array = "sens"
dims = ["sample", "coil", "height", "width"]
""")
    for link in (False, True):
        out = tmp_path / f"imported{int(link)}"
        args = ["import", "--mapping", str(mapping), str(raw / "*.h5"), "-o", str(out), "--quiet"]
        assert main(args + (["--link"] if link else [])) == 0
        imported = out / "file_brain_001.h5"
        info = validate(imported)
        assert info.samples == 3 and not info.has_truth and info.parameters == ["mask", "sens"]
        with h5py.File(imported) as f:
            assert f["y"].is_virtual == link and not f["sens"].is_virtual
        x_hat = _x_hat(run, imported, tmp_path / f"recon{int(link)}.h5")
        np.testing.assert_array_equal(x_hat, reference)
    assert main(["show", str(tmp_path / "recon1.h5"), "--index", "0", "-o", str(tmp_path / "fig.png")]) == 0


def test_npz_fits_and_nifti_reconstruct_like_invrims_own_file(blur, tmp_path):
    pytest.importorskip("astropy")
    pytest.importorskip("nibabel")
    from astropy.io import fits
    import nibabel
    run, test = blur
    a = _arrays(test)
    y, x = a["y"][:, 0], a["x"][:, 0]                                 # (sample, height, width)
    reference = _x_hat(run, test, tmp_path / "ref.h5")

    np.savez(tmp_path / "obs.npz", img=np.moveaxis(y, 0, -1), truth=x)          # (height, width, sample)
    fits.HDUList([fits.PrimaryHDU(y), fits.ImageHDU(x, name="TRUTH")]).writeto(tmp_path / "cube.fits")
    nibabel.save(nibabel.Nifti1Image(np.moveaxis(y, 0, -1), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    cases = {
        "npz": _blur_mapping(y=f"{tmp_path / 'obs.npz'}::img:height,width,sample",
                             x=f"{tmp_path / 'obs.npz'}::truth:sample,height,width"),
        "fits": _blur_mapping(y=f"{tmp_path / 'cube.fits'}::PRIMARY:sample,height,width",
                              x=f"{tmp_path / 'cube.fits'}::TRUTH:sample,height,width"),
        "nifti": _blur_mapping(y=f"{tmp_path / 'vol.nii.gz'}::data:height,width,sample"),
    }
    for name, mapping in cases.items():
        plan = plan_import(mapping)
        assert plan.samples == 5 and plan.variables["y"].inserted == ("channel",), name
        out = import_data(mapping, tmp_path / f"{name}.h5", progress=False)
        np.testing.assert_array_equal(_x_hat(run, out, tmp_path / f"{name}_recon.h5"), reference, err_msg=name)
    with fits.open(tmp_path / "cube.fits") as hdul:
        assert hdul[0].header["NAXIS1"] == 16 and hdul[0].header["NAXIS3"] == 5   # numpy order is reversed
    # a FITS HDU by index, a --select, and the CLI
    assert main(["import", str(tmp_path / "cube.fits"), "--forward-model", "blur", "-f", "psf_sigma=1.0",
                 "-l", "sigma=0.05", "--var", "y=0:sample,height,width", "--var", "x=1:sample,height,width",
                 "--select", "sample=1:5:2", "-o", str(tmp_path / "cli.h5"), "--quiet"]) == 0
    got = HDF5Dataset(tmp_path / "cli.h5").read(0, 2)
    assert torch.equal(got["y"][:, 0], torch.from_numpy(y[1:5:2])) and torch.equal(got["x"][:, 0], torch.from_numpy(x[1:5:2]))


# ---- --link: no copy --------------------------------------------------------------------------
def test_link_adds_under_one_percent_and_reads_back_identically(tmp_path):
    g = np.random.default_rng(0)
    shape = (24, 4, 48, 48)
    kspace = (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)
    sens = (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)
    src = tmp_path / "study"
    src.mkdir()
    with h5py.File(src / "scan.h5", "w") as f:
        f["kspace"] = kspace
        f.create_group("calib")["maps"] = sens
        f["mask"] = (np.arange(48) % 2 == 0).astype(np.float32)
    mapping = mapping_from_dict({"forward_model": "mri_multicoil", "forward_model_config": {"coils": 4},
                                 "file": "scan.h5", "variables": {
                                     "y": {"array": "kspace", "dims": ["sample", "coil", "ky", "kx"]},
                                     "mask": {"array": "mask", "dims": ["kx"]},
                                     "sens": {"array": "calib/maps", "dims": ["sample", "coil", "height", "width"]}}},
                                base=src)
    out = import_data(mapping, src / "linked.h5", link=True, progress=False)
    added, inputs = out.stat().st_size, (src / "scan.h5").stat().st_size
    assert added < 0.01 * inputs, (added, inputs)
    moved = tmp_path / "moved"
    shutil.move(str(src), str(moved))                          # sources are recorded relative to the output
    with h5py.File(moved / "linked.h5", "r") as f:
        assert f["y"].is_virtual and f["sens"].is_virtual and f["mask"].is_virtual
        np.testing.assert_array_equal(f["y"][...], kspace)
        np.testing.assert_array_equal(f["sens"][...], sens)
        np.testing.assert_array_equal(f["mask"][...], np.broadcast_to(f["mask"][0], (24, 48)))
    import xarray as xr
    with xr.open_dataset(moved / "linked.h5", engine="h5netcdf") as ds:
        assert ds["y"].dims == ("sample", "coil", "ky", "kx") and np.array_equal(ds["y"].values, kspace)
    assert validate(moved / "linked.h5", check_values=False).samples == 24
    (moved / "scan.h5").unlink()                               # a lost source is an error, not zeros
    with pytest.raises(DataError, match=r"linked\.h5: variable '(y|mask|sens)' links to scan\.h5, which is not there"):
        validate(moved / "linked.h5")


# ---- complex handling ------------------------------------------------------------------------
def test_complex_x_becomes_channels_and_real_pairs_become_complex(tmp_path):
    g = np.random.default_rng(1)
    img = (g.standard_normal((2, 8, 8)) + 1j * g.standard_normal((2, 8, 8))).astype(np.complex64)
    sens = np.ones((2, 1, 8, 8), np.complex64)
    mask = np.ones(8, np.float32)
    import invrim_mri.fft as mfft
    y = mfft.fft2c(torch.from_numpy(img))[:, None].numpy()
    np.savez(tmp_path / "a.npz", img=img, y=np.stack([y.real, y.imag], -1), sens=sens, mask=mask)
    f = str(tmp_path / "a.npz")
    mapping = mapping_from_dict({"forward_model": "mri_multicoil", "forward_model_config": {"coils": 1},
                                 "variables": {"x": f"{f}::img:sample,height,width",
                                               "y": {"file": f, "array": "y", "dims": ["sample", "coil", "ky", "kx", "reim"],
                                                     "complex": True},
                                               "sens": f"{f}::sens:sample,coil,height,width", "mask": f"{f}::mask:kx"}})
    out = import_data(mapping, tmp_path / "c.h5", progress=False)
    got = HDF5Dataset(out).read(0, 2)
    assert torch.equal(got["x"], torch.stack([torch.from_numpy(img.real), torch.from_numpy(img.imag)], 1))
    assert got["y"].is_complex() and torch.equal(got["y"], torch.from_numpy(y))


# ---- bad mappings: one line naming file, array and axis; nothing written -----------------------
@pytest.mark.parametrize("variables, pattern", [
    ({"y": "obs.npz::img:sample,height"},
     r"obs\.npz: array 'img' has 3 axes \(shape \(4, 6, 5\)\) but dims names 2"),
    ({"y": "obs.npz::image:sample,height,width"}, r"obs\.npz: no array 'image'; it holds img \(4, 6, 5\)"),
    ({"y": "obs.npz::img:sample,height,width", "x": "obs.npz::truth:sample,height,width"},
     r"obs\.npz: array 'truth' has 3 samples \(axis 0, 'sample'\) but .*obs\.npz: array 'img' has 4 \(axis 0\)"),
    ({"y": "obs.npz::img:sample,height,width", "psff": "obs.npz::img:sample,height,width"},
     r"unknown variable 'psff': forward model 'blur' .* takes x, y, psf, sigma \(did you mean 'psf'\?\)"),
    ({"y": "obs.npz::img:sample,height,depth"},
     r"obs\.npz: array 'img': axis 2 named 'depth' is not an axis of variable 'y'"),
])
def test_bad_mappings_fail_in_one_line_and_write_nothing(tmp_path, variables, pattern):
    g = np.random.default_rng(2)
    np.savez(tmp_path / "obs.npz", img=g.random((4, 6, 5)).astype(np.float32),
             truth=g.random((3, 6, 5)).astype(np.float32))
    mapping = mapping_from_dict({"forward_model": "blur", "forward_model_config": {"psf_sigma": 1.0},
                                 "variables": variables}, base=tmp_path)
    out = tmp_path / "out.h5"
    with pytest.raises(DataError, match=pattern) as e:
        import_data(mapping, out, progress=False)
    assert "\n" not in str(e.value)
    assert not out.exists() and not (tmp_path / "out.h5.partial").exists()
    code = main(["import", "--forward-model", "blur", "-f", "psf_sigma=1.0", "-o", str(out)]
                + [a for n, v in variables.items() for a in ("--var", f"{n}={tmp_path / v}" if "::" in v else f"{n}={v}")])
    assert code == 2 and not out.exists() and not (tmp_path / "out.h5.partial").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", np.zeros((3, 12, 10), np.float32))
    out = tmp_path / "out.h5"
    assert main(["import", str(tmp_path / "stack.npy"), "--forward-model", "blur", "-f", "psf_sigma=1.0",
                 "--var", "y=stack:sample,height,width", "-o", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "3 samples" in text and "y      <- " in text and "adds channel of size 1" in text and "float32" in text
    assert not out.exists()


def test_parse_var_and_mapping_files(tmp_path):
    spec = parse_var("y=data/a.h5::group/kspace:sample,coil,ky,kx")
    assert (spec.file, spec.array, spec.dims) == ("data/a.h5", "group/kspace", ("sample", "coil", "ky", "kx"))
    assert parse_var("mask=mask").dims is None
    (tmp_path / "m.json").write_text('{"forward_model": "blur", "variables": {"y": {"file": "a.npy", '
                                     '"dims": "sample,height,width", "select": {"sample": "0:2"}}}}')
    m = load_mapping(tmp_path / "m.json")
    assert m.base == tmp_path and m.variables["y"].select == {"sample": slice(0, 2)}
    (tmp_path / "bad.toml").write_text("forward_model = 'blur'\nvariabels = {}\n")
    with pytest.raises(DataError, match=r"bad\.toml: unknown key\(s\) variabels"):
        load_mapping(tmp_path / "bad.toml")


def test_missing_extra_says_what_to_install(tmp_path, monkeypatch):
    from invrim.data.readers import reader_class
    from invrim.plugins import refresh
    real = __import__("importlib").util.find_spec

    def hide(name, *a, **k):
        return None if name == "astropy" else real(name, *a, **k)
    monkeypatch.setattr("invrim.plugins.component.importlib.util.find_spec", hide)
    refresh()
    try:
        (tmp_path / "a.fits").write_bytes(b"SIMPLE  =")
        with pytest.raises(DataError, match=r"a\.fits: reader 'fits' from invrim needs astropy: pip install astropy"):
            reader_class(tmp_path / "a.fits")
    finally:
        monkeypatch.undo()
        refresh()


def test_linked_axes_keep_the_source_order_and_read_by_name(blur, tmp_path):
    """--link keeps a source's (sample, width, height) order: every reader rearranges by dim name."""
    run, test = blur
    a = _arrays(test)
    reference = _x_hat(run, test, tmp_path / "ref.h5")
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f.create_group("obs")["images"] = np.ascontiguousarray(np.swapaxes(a["y"][:, 0], 1, 2))
        f["noise"] = np.full(5, 0.05, np.float32)                       # a noise level per sample
    mapping = _blur_mapping(y=f"{tmp_path / 'stack.h5'}::obs/images:sample,width,height",
                            sigma=f"{tmp_path / 'stack.h5'}::noise:sample")
    out = import_data(mapping, tmp_path / "linked.h5", link=True, progress=False)
    with h5py.File(out) as f:
        assert f["y"].is_virtual and f["sigma"].is_virtual and f["y"].shape == (5, 16, 16, 1)
    import xarray as xr
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["y"].dims == ("sample", "width", "height", "channel")
    item = HDF5Dataset(out)[0]
    assert torch.equal(item["y"], torch.from_numpy(a["y"][0])) and float(item["sigma"]) == pytest.approx(0.05)
    x_hat = _x_hat(run, out, tmp_path / "recon.h5")
    np.testing.assert_allclose(x_hat, reference, rtol=1e-5, atol=1e-6)
    assert main(["show", str(tmp_path / "recon.h5"), "--index", "1", "-o", str(tmp_path / "fig.png")]) == 0


def test_fits_scaled_integers_and_hdus_by_name(tmp_path):
    pytest.importorskip("astropy")
    from astropy.io import fits
    from invrim.data.readers import FITSReader
    raw = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 10.0
    fits.HDUList([hdu, fits.ImageHDU(np.ones((3, 4), ">f8"), name="WEIGHT")]).writeto(tmp_path / "s.fits")
    with FITSReader(tmp_path / "s.fits") as r:
        listed = r.arrays()
        assert set(listed) == {"0", "PRIMARY", "1", "WEIGHT"} and listed["0"].shape == (2, 3, 4)
        np.testing.assert_array_equal(r.read("PRIMARY", (slice(1, 2), slice(None), slice(0, 4, 2))),
                                      raw[1:2, :, ::2] * 0.5 + 10)
        assert r.read("WEIGHT").dtype.isnative


def test_netcdf_dims_come_from_the_file_and_link_honours_select(tmp_path):
    import xarray as xr
    g = np.random.default_rng(4)
    images = g.random((6, 12, 10)).astype(np.float32)
    xr.Dataset({"img": (("sample", "height", "width"), images)}).to_netcdf(tmp_path / "theirs.nc", engine="h5netcdf")
    mapping = _blur_mapping(y=f"{tmp_path / 'theirs.nc'}::img")          # no dims: the file names them
    mapping.select = {"sample": slice(1, 6, 2)}
    plan = plan_import(mapping, link=True)
    assert plan.variables["y"].source_dims == ("sample", "height", "width") and plan.samples == 3
    out = import_data(plan, tmp_path / "mine.h5", progress=False)
    with h5py.File(out) as f:
        assert f["y"].is_virtual
        np.testing.assert_array_equal(f["y"][:, :, :, 0], images[1:6:2])


def test_import_many_keeps_finished_outputs(tmp_path, monkeypatch):
    from invrim.filesets import import_many
    (tmp_path / "in").mkdir()
    for i in range(3):
        np.save(tmp_path / "in" / f"s{i}.npy", np.full((2, 12, 10), i, np.float32))
    mapping = _blur_mapping(y={"dims": ["sample", "height", "width"]})
    first = import_many(mapping, str(tmp_path / "in" / "*.npy"), tmp_path / "out", progress=False)
    assert [p.name for p in first] == ["s0.h5", "s1.h5", "s2.h5"]
    (tmp_path / "out" / "s1.h5").unlink()                      # as if the job had been killed there
    calls = []
    import invrim.data.importer as importer
    real = importer.import_data
    monkeypatch.setattr(importer, "import_data", lambda job, out, **k: calls.append(out.name) or real(job, out, **k))
    again = import_many(mapping, str(tmp_path / "in" / "*.npy"), tmp_path / "out", progress=False)
    assert calls == ["s1.h5"] and again == first
    assert float(HDF5Dataset(tmp_path / "out" / "s2.h5")[0]["y"].mean()) == 2.0


def test_simulate_takes_the_ground_truth_from_a_fits_cube_or_a_npy(tmp_path, capsys):
    """``invrim simulate --from FILE --from-array ARRAY:DIMS``: a sky model or images from FITS or
    NumPy as ground truth, read back equal; a missing array name or wrong axes in one line."""
    from astropy.io import fits

    from invrim.cli import main
    cube = np.random.default_rng(0).uniform(0, 1, (5, 12, 10)).astype(np.float32)
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    np.save(tmp_path / "cube.npy", cube.transpose(1, 2, 0))          # (height, width, sample)
    for source, array in (("cube.fits", "0:sample,height,width"), ("cube.npy", "cube:height,width,sample")):
        out = tmp_path / f"{source}.h5"
        assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1.0", "--from", str(tmp_path / source),
                     "--from-array", array, "-o", str(out), "--quiet"]) == 0
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["x"][:, 0], cube)
            assert f["y"].shape == (5, 1, 12, 10)
    capsys.readouterr()
    assert main(["simulate", "--forward-model", "blur", "--from", str(tmp_path / "cube.fits"),
                 "-o", str(tmp_path / "no.h5")]) == 2
    assert "--from-array" in capsys.readouterr().err
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1.0", "--from", str(tmp_path / "cube.fits"),
                 "--from-array", "0:height,width,depth", "-o", str(tmp_path / "no.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'sample'" in err
    assert not (tmp_path / "no.h5").exists()
