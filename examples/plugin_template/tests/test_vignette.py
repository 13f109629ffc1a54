"""The plugin's own tests: invrim's conformance kit does the heavy lifting."""
import torch

from invrim.plugins import registry, testing
from invrim_vignette.physics import Vignette


def test_conformance():
    model, x, params = Vignette.example()
    testing.check_forward_model(model, x, **params)


def test_registered_through_the_entry_point():
    component = registry().forward_models.info("vignette")
    assert component.distribution == "invrim-vignette" and component.status == "active"
    assert isinstance(registry().forward_models.build("vignette", strength=0.3), Vignette)


def test_corners_are_darker_than_the_centre():
    gain = Vignette(1.0)(torch.ones(1, 1, 9, 9))          # the image of a flat field
    assert gain[0, 0, 4, 4] == 1 and gain[0, 0, 0, 0] < 0.3
