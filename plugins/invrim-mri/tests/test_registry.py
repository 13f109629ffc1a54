"""The entry point registers the plugin's components."""
import invrim.plugins
from invrim.plugins import registry, testing


def test_entry_point_registers_the_components():
    invrim.plugins.refresh()
    reg = registry()
    for name, cls in (("mri_singlecoil", "SingleCoilMRI"), ("mri_multicoil", "MultiCoilMRI")):
        info = reg.forward_models.info(name)
        assert info.distribution == "invrim-mri" and info.status == "active"
        assert type(reg.forward_models.build(name)).__name__ == cls
    gen = reg.generators.info("mri_phantom")
    assert gen.distribution == "invrim-mri"
    assert testing.check_component(gen) == ["generate"]


def test_problem_from_config_through_the_registry():
    from invrim import Problem
    invrim.plugins.refresh()
    problem = Problem.from_config("mri_multicoil", "gaussian", {}, {"sigma": 0.1})
    assert type(problem.forward_model).__name__ == "MultiCoilMRI"
    assert Problem.from_config(**problem.config()).config() == problem.config()


def test_hooks_module_is_light():
    import subprocess
    import sys
    code = ("import sys, invrim_mri.hooks; "
            "bad = [m for m in ('invrim_mri.physics', 'invrim_mri.masks', 'invrim_mri.coils', 'invrim_mri.phantoms') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
