"""Core ground-truth generators (invrim.data.generators) and the kit's check_generator."""
import json
import math
import os

import numpy as np
import pytest
import torch

from invrim.data.generators import SKIMAGE_IMAGES, GaussianRandomField, ImageCrops, RandomEllipses
from invrim.plugins import testing


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ random fields

@pytest.mark.parametrize("shape, dims", [([128], ("channel", "length")),
                                         ([24, 20], ("channel", "height", "width")),
                                         ([6, 8, 10], ("channel", "depth", "height", "width"))])
def test_field_shapes_dims_and_ranges(shape, dims):
    field = GaussianRandomField(shape=shape, channels=2)
    assert field.dims == dims
    x = field(3, generator=seeded(0))
    assert x.shape == (3, 2, *shape) and x.dtype == torch.float32
    flat = x.flatten(2)
    torch.testing.assert_close(flat.amin(2), torch.zeros(3, 2))            # minmax: each sample and
    torch.testing.assert_close(flat.amax(2), torch.ones(3, 2))             # channel spans [0, 1]
    z = GaussianRandomField(shape=shape, channels=2, normalize="standard")(3, generator=seeded(0),
                                                                           dtype=torch.float64)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z.flatten(2).mean(2), torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(z.flatten(2).std(2, correction=0), torch.ones(3, 2, dtype=torch.float64))
    # float32 and float64 come from the same float64 draw
    torch.testing.assert_close(field(3, generator=seeded(0), dtype=torch.float64).float(), x)


def test_field_reproducible_and_seed_dependent():
    field = GaussianRandomField(shape=[16, 16])
    a, b = field(4, generator=seeded(7)), field(4, generator=seeded(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, field(4, generator=seeded(8)))
    assert not torch.equal(a[0], a[1])
    torch.manual_seed(0)
    state = torch.get_rng_state()
    field(2)                                                   # generator=None: a fresh one
    assert torch.equal(torch.get_rng_state(), state)           # the global RNG is untouched


def radial_spectrum_slope(x: torch.Tensor) -> float:
    """log-log slope of the radially averaged power spectrum of a batch of 2-D images."""
    H, W = x.shape[-2:]
    power = (torch.fft.fftn(x.double(), dim=(-2, -1)).abs() ** 2).flatten(0, -3).mean(0)
    k = torch.sqrt(torch.fft.fftfreq(H)[:, None] ** 2 + torch.fft.fftfreq(W)[None, :] ** 2)
    bins = torch.round(k * H).long()                           # rings one frequency step wide
    ks, ps = [], []
    for r in range(2, H // 2 - 2):                             # skip the lowest and corner modes
        ring = bins == r
        ks.append(math.log(float(k[ring].mean())))
        ps.append(math.log(float(power[ring].mean())))
    return float(np.polyfit(ks, ps, 1)[0])


@pytest.mark.parametrize("power", [1.0, 2.0, 3.5])
def test_field_power_spectrum_slope(power):
    x = GaussianRandomField(shape=[64, 64], power=power, normalize="standard")(24, generator=seeded(1))
    assert abs(radial_spectrum_slope(x) + power) < 0.3


def test_field_smoothness_grows_with_power():
    rough = GaussianRandomField(shape=[64, 64], power=0.0)(4, generator=seeded(0))
    smooth = GaussianRandomField(shape=[64, 64], power=4.0)(4, generator=seeded(0))
    assert smooth.diff(dim=-1).abs().mean() < 0.25 * rough.diff(dim=-1).abs().mean()


# ------------------------------------------------------------------------------ ellipses

def test_ellipses_shape_range_and_counts():
    gen = RandomEllipses(shape=[40, 56], channels=2, ellipses=[2, 4])
    assert gen.dims == ("channel", "height", "width")
    x = gen(50, generator=seeded(0))
    assert x.shape == (50, 2, 40, 56) and x.min() >= 0 and x.max() <= 1
    assert (x.flatten(2).amax(2) > 0).all()                    # at least two ellipses each
    assert not torch.equal(x[:, 0], x[:, 1])                   # channels are independent
    # piecewise constant: few distinct values per image (<= 2^4 overlap patterns)
    assert max(len(torch.unique(img)) for img in x.flatten(0, 1)) <= 16
    # overlaps add and are clipped: saturated pixels appear somewhere in the batch
    assert (x == 1).any()
    # count bounds: with [0, 0] the images are empty; with [1, 1] each image has one level
    assert RandomEllipses(ellipses=[0, 0])(3, generator=seeded(0)).abs().max() == 0
    one = RandomEllipses(shape=[32, 32], ellipses=[1, 1])(20, generator=seeded(0))
    assert all(len(torch.unique(img)) <= 2 for img in one.flatten(0, 1))


def test_ellipses_are_fast():
    import time
    gen = RandomEllipses()
    start = time.perf_counter()
    x = gen(1000, generator=seeded(0))
    assert x.shape == (1000, 1, 64, 64) and time.perf_counter() - start < 2.0


def test_ellipses_smooth():
    sharp = RandomEllipses(shape=[48, 48], smooth=0.0)(8, generator=seeded(3))
    soft = RandomEllipses(shape=[48, 48], smooth=2.0)(8, generator=seeded(3))
    assert soft.min() >= 0 and soft.max() <= 1 and soft.shape == sharp.shape
    tv = lambda z: z.diff(dim=-1).abs().max()                  # noqa: E731
    assert tv(soft) < 0.5 * tv(sharp)
    assert len(torch.unique(soft[0])) > 5 * len(torch.unique(sharp[0]))
    torch.testing.assert_close(soft.mean(), sharp.mean(), atol=0.02, rtol=0)    # blur preserves mass


def test_ellipses_reproducible_and_dtype():
    gen = RandomEllipses(shape=[20, 30])
    assert torch.equal(gen(5, generator=seeded(1)), gen(5, generator=seeded(1)))
    assert not torch.equal(gen(5, generator=seeded(1)), gen(5, generator=seeded(2)))
    assert gen(2, generator=seeded(1), dtype=torch.float64).dtype == torch.float64


# ------------------------------------------------------------------------------ image crops

def to_grey(name: str) -> np.ndarray:
    from skimage import color, data, util
    image = util.img_as_float(getattr(data, name)())
    return color.rgb2gray(image[..., :3]) if image.ndim == 3 else image


def find_window(crop: np.ndarray, image: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the window of ``image`` equal (in float32) to ``crop``: an exhaustive
    search over the positions whose pixel equals the crop's first pixel."""
    h, w = crop.shape
    image = image.astype(np.float32)
    for top, left in np.argwhere(np.abs(image[:image.shape[0] - h + 1, :image.shape[1] - w + 1] - crop[0, 0]) < 1e-6):
        if np.abs(image[top:top + h, left:left + w] - crop).max() < 1e-6:
            return int(top), int(left)
    raise AssertionError("the crop is not a window of the image")


def test_crops_are_windows_of_the_real_images():
    pytest.importorskip("skimage")
    gen = ImageCrops(shape=[24, 32], images=["camera", "astronaut"], scale=[1, 1], flips=False)
    x = gen(4, generator=seeded(0))
    assert x.shape == (4, 1, 24, 32) and x.dtype == torch.float32 and gen.dims == ("channel", "height", "width")
    found = set()
    for crop in x[:, 0].numpy():
        for name in ("camera", "astronaut"):
            try:
                find_window(crop, to_grey(name))
                found.add(name)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("a crop matches no window of camera or astronaut")
    assert found                                               # at least one image really used


def test_crops_color_flips_and_scale():
    pytest.importorskip("skimage")
    from skimage import data
    colour = ImageCrops(shape=[16, 16], images=["coffee"], scale=[1, 1], flips=False, color=True)
    x = colour(2, generator=seeded(0))
    assert x.shape == (2, 3, 16, 16)
    rgb = data.coffee().astype(np.float32) / 255
    top, left = find_window(x[0, 0].numpy(), rgb[..., 0])
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), rgb[top:top + 16, left:left + 16], atol=1e-6)
    grey = ImageCrops(shape=[16, 16], images=["camera"], color=True)(2, generator=seeded(0))
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])   # replicated
    # flips only permute pixels: same draws, same multiset of values
    plain = ImageCrops(shape=[16, 16], images=["moon"], scale=[1, 1], flips=False)(6, generator=seeded(4))
    flipped = ImageCrops(shape=[16, 16], images=["moon"], scale=[1, 1], flips=True)(6, generator=seeded(4))
    assert torch.equal(plain.flatten(1).sort().values, flipped.flatten(1).sort().values)
    assert not torch.equal(plain, flipped)
    # zooming out (scale 0.25) shrinks details: neighbouring pixels differ more than at scale 1
    far = ImageCrops(shape=[32, 32], images=["brick"], scale=[0.25, 0.25], flips=False)(8, generator=seeded(0))
    near = ImageCrops(shape=[32, 32], images=["brick"], scale=[1, 1], flips=False)(8, generator=seeded(0))
    assert far.min() >= 0 and far.max() <= 1
    assert far.diff(dim=-1).abs().mean() > near.diff(dim=-1).abs().mean()
    # a crop larger than a small image is zoomed in just enough, never fails
    big = ImageCrops(shape=[200, 200], images=["text"], scale=[1, 1])(1, generator=seeded(0))
    assert big.shape == (1, 1, 200, 200) and torch.isfinite(big).all()


def test_all_default_images_load_offline():
    pytest.importorskip("skimage")
    from invrim.data.generators import load_image
    for name in SKIMAGE_IMAGES:
        image = load_image(name)
        assert image.dim() == 3 and image.shape[0] == 1 and min(image.shape[1:]) >= 172
        assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert ImageCrops().images == list(SKIMAGE_IMAGES)


def test_module_works_without_scikit_image():
    import subprocess
    import sys
    code = ("import sys; sys.modules['skimage'] = None; import torch; "
            "from invrim.data.generators import GaussianRandomField, RandomEllipses, ImageCrops; "
            "GaussianRandomField(shape=[8])(1); RandomEllipses(shape=[8, 8])(1)\n"
            "try:\n    ImageCrops()\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    assert out.strip() == "image_crops needs scikit-image: pip install scikit-image"


# ------------------------------------------------------------------------------ options

@pytest.mark.parametrize("factory, options, match", [
    (GaussianRandomField, {"shape": [4, 4, 4, 4]}, "shape"),
    (GaussianRandomField, {"shape": []}, "shape"),
    (GaussianRandomField, {"shape": [0, 8]}, "shape"),
    (GaussianRandomField, {"shape": [8.0, 8]}, "shape"),
    (GaussianRandomField, {"channels": 0}, "channels"),
    (GaussianRandomField, {"power": float("nan")}, "power"),
    (GaussianRandomField, {"normalize": "max"}, "normalize"),
    (RandomEllipses, {"shape": [64]}, "shape"),
    (RandomEllipses, {"ellipses": [3, 2]}, "ellipses"),
    (RandomEllipses, {"ellipses": [-1, 2]}, "ellipses"),
    (RandomEllipses, {"smooth": -1}, "smooth"),
    (RandomEllipses, {"channels": True}, "channels"),
    (ImageCrops, {"shape": "64"}, "shape"),
    (ImageCrops, {"images": ["lena"]}, "images"),
    (ImageCrops, {"images": []}, "images"),
    (ImageCrops, {"scale": [0, 1]}, "scale"),
    (ImageCrops, {"scale": [1, 0.5]}, "scale"),
    (ImageCrops, {"flips": "yes"}, "flips"),
    (ImageCrops, {"color": 1}, "color"),
])
def test_bad_options(factory, options, match):
    with pytest.raises(ValueError, match=match) as info:
        factory(**options)
    assert "\n" not in str(info.value)


def test_bad_call_arguments():
    gen = RandomEllipses(shape=[8, 8])
    with pytest.raises(ValueError, match="batch"):
        gen(0)
    with pytest.raises(ValueError, match="dtype"):
        gen(1, dtype=torch.int64)
    with pytest.raises(ValueError, match="generator"):
        gen(1, generator=0)


@pytest.mark.parametrize("factory", [GaussianRandomField, RandomEllipses, ImageCrops])
def test_config_roundtrip(factory):
    gen, _ = factory.example()
    rebuilt = factory(**json.loads(json.dumps(gen.config())))
    assert rebuilt == gen and rebuilt.config() == gen.config() and repr(rebuilt) == repr(gen)
    assert factory().config() == factory(**factory().config()).config()


# ------------------------------------------------------------------------------ the kit

@pytest.mark.parametrize("factory", [GaussianRandomField, RandomEllipses, ImageCrops])
def test_check_generator_passes(factory):
    gen, kwargs = factory.example()
    assert testing.check_generator(gen, **kwargs) == ["generate"]


def test_check_generator_passes_1d_and_3d_fields():
    assert testing.check_generator(GaussianRandomField(shape=[32]), batch=2)
    assert testing.check_generator(GaussianRandomField(shape=[4, 5, 6], normalize="standard"))


class _Base:
    name = "broken"
    dims = ("channel", "length")

    def config(self):
        return {}

    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.rand(batch, 1, 8, generator=generator, dtype=dtype)


class GlobalRNG(_Base):
    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.rand(batch, 1, 8, dtype=dtype)            # ignores `generator`


class Constant(_Base):
    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.ones(batch, 1, 8, dtype=dtype)


class DeclaredConstant(Constant):
    deterministic = True


class WrongDims(_Base):
    dims = ("channel", "height", "width")


class AlwaysFloat32(_Base):
    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.rand(batch, 1, 8, generator=generator)


class IgnoresBatch(_Base):
    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.rand(2, 1, 8, generator=generator, dtype=dtype)


class NotFinite(_Base):
    def __call__(self, batch, generator=None, dtype=torch.float32):
        return torch.rand(batch, 1, 8, generator=generator, dtype=dtype) / 0


class BadConfig(_Base):
    def config(self):
        return {"shape": (8,), "dtype": torch.float32}


class LosesOption(_Base):
    def __init__(self, offset=0.0):
        self.offset = offset

    def __call__(self, batch, generator=None, dtype=torch.float32):
        return super().__call__(batch, generator, dtype) + self.offset


@pytest.mark.parametrize("broken, message", [
    (GlobalRNG(), "global torch RNG"),
    (Constant(), "identical output"),
    (WrongDims(), "dims"),
    (AlwaysFloat32(), "dtype"),
    (IgnoresBatch(), "batch=1"),
    (NotFinite(), "not finite"),
    (BadConfig(), "JSON"),
    (LosesOption(offset=1.0), "rebuilt"),
])
def test_check_generator_fails_on_broken_generators(broken, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_generator(broken, batch=2)


def test_check_generator_accepts_declared_deterministic_and_missing_dims():
    assert testing.check_generator(DeclaredConstant())

    class NoDims:                                               # like invrim-mri's PhantomGenerator
        name = "no_dims"

        def config(self):
            return {}

        def __call__(self, batch, generator=None, dtype=torch.float32):
            return torch.rand(batch, 2, 3, generator=generator, dtype=dtype)

    assert testing.check_generator(NoDims(), batch=4, seed=0)   # seed / batch of the example are replaced


def test_seed_ignoring_generator_that_hides_its_global_rng_use():
    class Reseeding(_Base):
        def __call__(self, batch, generator=None, dtype=torch.float32):
            state = torch.get_rng_state()
            out = torch.rand(batch, 1, 8, dtype=dtype)
            torch.set_rng_state(state)                          # leaves no trace in the global state
            return out

    # restoring the global state makes the output repeat, but it ignores the seed
    with pytest.raises(AssertionError, match="identical output"):
        testing.check_generator(Reseeding(), batch=2)
