"""Undersampling masks: measured acceleration, fully sampled centre, reproducibility, errors."""
import pytest
import torch

from invrim_mri.masks import acceleration_of, center_columns, equispaced_mask, make_mask, random_mask

FUNCS = [random_mask, equispaced_mask]


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("width,acc,cf", [(32, 4, 0.08), (33, 4, 0.08), (48, 4, 0.08), (64, 8, 0.04),
                                          (320, 4, 0.08), (368, 8, 0.04), (37, 2.5, 0.1)])
def test_measured_acceleration_is_the_requested_one(fn, width, acc, cf):
    masks = fn(64, width, acc, cf, seed=0)
    assert masks.shape == (64, width) and masks.dtype == torch.bool
    measured = acceleration_of(masks)
    if fn is random_mask:      # exact number of lines, up to rounding of width / acc
        assert (masks.sum(1) == round(width / acc)).all()
    assert abs(width / float(masks.sum(1).double().mean()) - acc) / acc < 0.12, measured
    # the fully sampled centre holds the DC column width // 2 and round(width * cf) columns
    centre = center_columns(width, cf)
    assert centre.start <= width // 2 < centre.stop
    assert centre.stop - centre.start == max(1, round(width * cf))
    assert masks[:, centre].all()


@pytest.mark.parametrize("fn", FUNCS)
def test_reproducible_from_seed_and_generator(fn):
    a = fn(5, 40, 4, 0.08, seed=3)
    b = fn(5, 40, 4, 0.08, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(3)
    first, second = fn(5, 40, 4, 0.08, generator=g), fn(5, 40, 4, 0.08, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)
    assert not all(torch.equal(a[0], a[i]) for i in range(1, 5))   # one draw per sample


def test_equispaced_outer_lines_are_equispaced():
    m = equispaced_mask(1, 64, 4, 0.04, seed=1)[0]
    centre = center_columns(64, 0.04)
    outer = torch.nonzero(m).flatten().tolist()
    outer = [i for i in outer if not centre.start <= i < centre.stop]
    gaps = sorted(b - a for a, b in zip(outer, outer[1:]))[:-1]   # drop the gap across the centre
    assert len(outer) > 5 and gaps[-1] - gaps[0] <= 1


def test_full_height_masks_and_acceleration_one():
    m = random_mask(2, 16, 4, 0.125, height=10, seed=0)
    assert m.shape == (2, 10, 16) and (m == m[:, :1]).all()
    assert random_mask(2, 16, 1, 0.1, seed=0).all() and equispaced_mask(2, 16, 1, 0.1, seed=0).all()
    assert make_mask("equispaced", 2, 16, 2, 0.25, seed=0).shape == (2, 16)


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("kwargs,word", [
    ({"acceleration": 0.5}, "acceleration"), ({"acceleration": float("nan")}, "acceleration"),
    ({"center_fraction": 0.0}, "center_fraction"), ({"center_fraction": 1.0}, "center_fraction"),
    ({"center_fraction": -0.1}, "center_fraction"), ({"center_fraction": 0.5, "acceleration": 4}, "center_fraction"),
    ({"width": 0}, "width"), ({"batch": 0}, "batch"), ({"height": -1}, "height"),
])
def test_bad_configuration(fn, kwargs, word):
    args = {"batch": 2, "width": 32, "acceleration": 4, "center_fraction": 0.08, **kwargs}
    with pytest.raises(ValueError, match=word):
        fn(**args)


def test_bad_kind_and_both_seed_and_generator():
    with pytest.raises(ValueError, match="kind"):
        make_mask("radial", 1, 16)
    with pytest.raises(ValueError, match="seed"):
        random_mask(1, 16, seed=0, generator=torch.Generator())
