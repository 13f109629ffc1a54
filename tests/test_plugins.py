"""Plugin discovery with real .dist-info folders on sys.path, the registry, the kit, the CLI."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from invrim.cli import main
from invrim.plugins import (AmbiguousComponentError, ComponentBuildError, MissingDependencyError, PluginError,
                            UnknownComponentError, refresh, registry, testing)

ROOT = Path(__file__).resolve().parents[1]

HEAVY_PHYSICS = '''
import torch
from invrim.physics import LinearForwardModel
import sys
sys.modules[__name__].IMPORTED = True

class Shift(LinearForwardModel):
    """Circular shift by `k` pixels along the last axis (exact adjoint: shift back)."""
    name = "shift"
    def __init__(self, k=1):
        super().__init__()
        self.k = int(k)
    def config(self):
        return {"k": self.k}
    @classmethod
    def example(cls):
        return cls(2), torch.randn(2, 1, 5, 7, generator=torch.Generator().manual_seed(0)), {}
    def forward(self, x, **p):
        return torch.roll(x, self.k, dims=-1)
    def adjoint(self, y, **p):
        return torch.roll(y, -self.k, dims=-1) * ADJOINT_SCALE

ADJOINT_SCALE = 1.0
'''


def hooks(forward_models="", extra=""):
    return textwrap.dedent(f'''
        from invrim.plugins import Component, hookimpl
        {extra}
        @hookimpl
        def invrim_forward_models():
            return [{forward_models}]
    ''')


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Install fake distributions (package + .dist-info) into a folder on sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("INVRIM_STRICT_PLUGINS", raising=False)
    for var in ("INVRIM_PLUGINS", "INVRIM_DISABLE_PLUGINS", "INVRIM_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    added = []

    def install(dist, package, modules, entry_name=None, version="1.0"):
        pkg = root / package
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for name, source in modules.items():
            (pkg / f"{name}.py").write_text(source)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[invrim]\n{entry_name or package} = {package}.hooks\n")
        added.append(package)
        refresh()

    yield install
    for name in list(sys.modules):
        if name.split(".")[0] in added:
            del sys.modules[name]
    refresh()


def test_good_plugin_is_active_lazy_and_buildable(site):
    site("invrim-shiftpkg", "shiftpkg", {
        "hooks": hooks('Component("shift", "shiftpkg.physics:Shift", "circular shift")'),
        "physics": HEAVY_PHYSICS})
    reg = registry()
    record = reg.plugin("shiftpkg")
    assert (record.status, record.distribution, record.version) == ("active", "invrim-shiftpkg", "1.0")
    assert "shift" in reg.forward_models.names()
    info = reg.forward_models.info("shift")
    assert info.plugin == "shiftpkg" and info.summary == "circular shift"
    assert "shiftpkg.physics" not in sys.modules          # listing imported nothing heavy
    model = reg.forward_models.build("shift", k=3)
    assert "shiftpkg.physics" in sys.modules
    assert torch.equal(model(torch.arange(5.0).view(1, 1, 5)), torch.tensor([[[2.0, 3, 4, 0, 1]]]))
    assert reg.forward_models.build("shiftpkg:shift").k == 1
    assert "adjoint[float64]" in testing.check_component(info)
    with pytest.raises(ValueError, match="cannot build forward model 'shift'"):
        reg.forward_models.build("shift", wrong=1)


def test_broken_plugins_are_recorded_and_never_stop_the_others(site, caplog):
    site("invrim-broken", "brokenpkg", {"hooks": "raise RuntimeError('boom at import')"})
    site("invrim-badhook", "badhookpkg", {"hooks": hooks('"not a component"')})
    site("invrim-raises", "raisespkg", {"hooks": hooks('1/0')})
    site("invrim-unknownhook", "unknownhookpkg", {"hooks": textwrap.dedent('''
        from invrim.plugins import hookimpl
        @hookimpl
        def invrim_forward_modelz():
            return []
    ''')})
    site("invrim-shiftpkg", "shiftpkg", {
        "hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'), "physics": HEAVY_PHYSICS})
    with caplog.at_level(logging.WARNING, logger="invrim.plugins"):
        reg = registry()
    status = {p.name: (p.status, p.error) for p in reg.plugins}
    assert status["brokenpkg"][0] == "failed" and "RuntimeError: boom at import" in status["brokenpkg"][1]
    assert status["badhookpkg"][0] == "failed" and "expected Component" in status["badhookpkg"][1]
    assert status["raisespkg"][0] == "failed" and "ZeroDivisionError" in status["raisespkg"][1]
    assert status["unknownhookpkg"][0] == "failed" and "invrim_forward_modelz" in status["unknownhookpkg"][1]
    assert status["shiftpkg"][0] == "active" and "shift" in reg.forward_models.names()
    assert status["invrim"][0] == "builtin"
    warnings = [r.getMessage() for r in caplog.records]
    assert any("brokenpkg" in w and "\n" not in w for w in warnings)


def test_strict_mode_raises(site, monkeypatch):
    site("invrim-broken", "brokenpkg", {"hooks": "raise RuntimeError('boom')"})
    monkeypatch.setenv("INVRIM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'brokenpkg' .*boom.*INVRIM_STRICT_PLUGINS"):
        registry()


def test_duplicate_names_are_an_error_only_when_used(site):
    for pkg in ("alpha", "beta"):
        site(f"invrim-{pkg}", pkg, {"hooks": hooks('Component("warp", "shiftpkg.physics:Shift")')})
    reg = registry()
    assert {"alpha:warp", "beta:warp"} <= set(reg.forward_models.names())
    with pytest.raises(AmbiguousComponentError) as e:
        reg.forward_models.info("warp")
    message = str(e.value)
    assert "alpha (invrim-alpha)" in message and "beta (invrim-beta)" in message
    assert "'alpha:warp' or 'beta:warp'" in message
    assert reg.forward_models.info("beta:warp").distribution == "invrim-beta"
    assert reg.forward_models.info("invrim-alpha:warp").plugin == "alpha"


def test_builtin_name_wins(site):
    site("invrim-myblur", "myblur", {"hooks": hooks('Component("blur", "shiftpkg.physics:Shift")')})
    reg = registry()
    assert reg.forward_models.info("blur").builtin
    assert reg.forward_models.info("myblur:blur").plugin == "myblur"
    assert reg.forward_models.names().count("blur") == 1


def test_duplicate_plugin_names(site):
    """A second distribution declaring a taken entry-point name disables neither: both are kept,
    both carry a warning naming the other, each is addressed as `distribution:name`."""
    site("invrim-one", "onepkg", {"hooks": hooks('Component("one", "shiftpkg.physics:Shift")')},
         entry_name="same")
    site("invrim-two", "twopkg", {"hooks": hooks('Component("two", "shiftpkg.physics:Shift")')},
         entry_name="same")
    reg = registry()
    records = {p.distribution: p for p in reg.plugins if p.name == "same"}
    assert sorted(records) == ["invrim-one", "invrim-two"]
    assert [p.status for p in records.values()] == ["active", "active"]
    assert records["invrim-one"].qualified_name == "invrim-one:same"
    assert "also declared by invrim-two" in records["invrim-one"].warning
    assert "also declared by invrim-one" in records["invrim-two"].warning
    assert {"one", "two"} <= set(reg.forward_models.names())
    assert reg.forward_models.info("same:two").distribution == "invrim-two"
    assert reg.forward_models.info("invrim-one:same:one").qualified_name == "invrim-one:same:one"
    assert reg.plugin("invrim-two:same") is records["invrim-two"]


def test_missing_dependencies_stay_listed(site):
    site("invrim-needy", "needypkg", {"hooks": hooks(
        'Component("needy", "needypkg.physics:X", requires=("not_a_real_package_xyz",))')})
    site("invrim-needyimport", "needyimport", {"hooks": "import not_a_real_package_abc\n" + hooks()})
    reg = registry()
    info = reg.forward_models.info("needy")
    assert info.status == "missing-deps" and [r.import_name for r in info.missing] == ["not_a_real_package_xyz"]
    with pytest.raises(MissingDependencyError, match="pip install not_a_real_package_xyz"):
        reg.forward_models.build("needy")
    record = reg.plugin("needyimport")
    assert record.status == "missing-deps" and "pip install not_a_real_package_abc" in record.error


def test_a_requirement_names_its_import_and_its_distribution(site, capsys):
    site("invrim-needy", "needypkg", {"hooks": hooks(
        'Component("needy", "needypkg.physics:X", requires=[("not_real_xyz", "not-real-xyz-dist"), "scipy"])')})
    reg = registry()
    info = reg.forward_models.info("needy")
    assert [tuple(r) for r in info.missing] == [("not_real_xyz", "not-real-xyz-dist")]
    with pytest.raises(MissingDependencyError, match=r"needs not_real_xyz: pip install not-real-xyz-dist$"):
        reg.forward_models.build("needy")
    # an import name alone that is known to differ from its distribution gets the distribution
    from invrim.plugins import Component
    assert Component("c", "m:f", requires=["skimage"]).requires[0].distribution == "scikit-image"
    with pytest.raises(ValueError, match=r"'scikit-image' is not an import name.*\('skimage', 'scikit-image'\)"):
        Component("c", "m:f", requires=["scikit-image"])
    # plugins check: the component is skipped with the hint, which is not a failure of the installation
    assert main(["plugins", "check", "needy"]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED" in out and "pip install not-real-xyz-dist" in out


def test_builtin_requirements_name_pypi_distributions():
    for kind in registry().kinds().values():
        for c in kind:
            for r in c.requires:
                assert r.distribution != "skimage", f"{c.qualified_name} says pip install skimage"


def test_environment_controls(site, monkeypatch):
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})
    site("invrim-other", "otherpkg", {"hooks": hooks('Component("other", "shiftpkg.physics:Shift")')})
    monkeypatch.setenv("INVRIM_DISABLE_PLUGINS", "otherpkg")
    refresh()
    status = {p.name: p.status for p in registry().plugins}
    assert status["otherpkg"] == "disabled" and status["shiftpkg"] == "active"
    monkeypatch.delenv("INVRIM_DISABLE_PLUGINS")
    monkeypatch.setenv("INVRIM_PLUGINS", "invrim-other")        # distribution names work too
    refresh()
    status = {p.name: p.status for p in registry().plugins}
    assert status["otherpkg"] == "active" and status["shiftpkg"] == "disabled"
    monkeypatch.delenv("INVRIM_PLUGINS")
    monkeypatch.setenv("INVRIM_DISABLE_PLUGIN_AUTOLOAD", "1")
    refresh()
    assert [p.name for p in registry().plugins] == ["invrim"]
    assert "blur" in registry().forward_models.names()


def test_unknown_names_list_close_matches():
    refresh()
    with pytest.raises(UnknownComponentError, match="unknown backbone 'hourglas'.*did you mean 'hourglass'"):
        registry().backbones.build("hourglas")
    with pytest.raises(UnknownComponentError, match=r"unknown forward model 'bulr'; available: .*blur.*"
                                                    r"identity.*; did you mean 'blur'\?"):
        registry().forward_models.info("bulr")


def test_core_components_pass_the_kit():
    refresh()
    for kind in registry().kinds().values():
        for component in kind:
            assert testing.check_component(component), component.name


def test_the_kit_catches_broken_physics(site):
    from invrim.physics import LinearForwardModel

    class Wrong(LinearForwardModel):
        name = "wrong"

        def forward(self, x):
            return torch.roll(x, 1, dims=-1)

        def adjoint(self, y):
            return torch.roll(y, 1, dims=-1)       # should roll back

    x = torch.randn(2, 1, 6)
    with pytest.raises(AssertionError, match="adjoint mismatch"):
        testing.check_adjoint(Wrong(), x)

    class Mixing(LinearForwardModel):
        name = "mixing"

        def forward(self, x):
            return x + x.mean(0, keepdim=True)      # samples leak into each other

        def adjoint(self, y):
            return y + y.mean(0, keepdim=True)

    with pytest.raises(AssertionError, match="sample 0 differs"):
        testing.check_batch_consistency(Mixing(), x)

    from invrim import Gaussian, Problem

    class WrongScore(Gaussian):
        def residual_score(self, prediction, y, **p):
            return (prediction - y) / self.sigma ** 2          # wrong sign

    with pytest.raises(AssertionError, match="score differs"):
        testing.check_score_matches_autograd(Problem(Wrong(), WrongScore(1.0)), x, x)
    with pytest.raises(AssertionError, match="residual_score differs"):
        testing.check_likelihood(WrongScore(1.0), x, x + 1)


def test_cli_list_and_check(site, capsys):
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})
    site("invrim-broken", "brokenpkg", {"hooks": "raise RuntimeError('boom')"})
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "shiftpkg" in out and "invrim-shiftpkg" in out and "active" in out
    assert "brokenpkg: import failed: RuntimeError: boom" in out
    assert main(["plugins", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {p["name"]: p["status"] for p in doc["plugins"]}["brokenpkg"] == "failed"
    assert main(["plugins", "check", "shift"]) == 0
    assert "PASSED" in capsys.readouterr().out
    sys.modules["shiftpkg.physics"].ADJOINT_SCALE = 2.0          # now the adjoint is wrong
    assert main(["plugins", "check", "shiftpkg"]) == 1
    assert "FAILED   forward model shiftpkg:shift: AssertionError: shift: adjoint mismatch" in capsys.readouterr().out
    assert main(["plugins", "check", "nonexistent"]) == 2
    assert "no plugin or component named 'nonexistent'" in capsys.readouterr().err


@pytest.mark.skipif(not (ROOT / "examples" / "plugin_template" / "pyproject.toml").exists(),
                    reason="example plugin missing")
def test_pip_installed_example_plugin_works_from_the_cli(tmp_path):
    """End to end: pip-install the documented example plugin and use its physics from the CLI."""
    pip = [sys.executable, "-m", "pip"]
    src = tmp_path / "plugin"
    import shutil
    shutil.copytree(ROOT / "examples" / "plugin_template", src)
    subprocess.run(pip + ["install", "--no-deps", "--quiet", str(src)], check=True)
    try:
        invrim = [sys.executable, "-m", "invrim"]
        listing = subprocess.run(invrim + ["plugins", "list", "--json"], capture_output=True, text=True, check=True)
        plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
        assert plugins["vignette"]["status"] == "active"
        assert plugins["vignette"]["distribution"] == "invrim-vignette"
        check = subprocess.run(invrim + ["plugins", "check", "vignette"], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "PASSED   forward model vignette:vignette" in check.stdout
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                str(src / "tests")], capture_output=True, text=True, cwd=tmp_path)
        assert tests.returncode == 0, tests.stdout[-2000:]
    finally:
        subprocess.run(pip + ["uninstall", "--yes", "--quiet", "invrim-vignette"], check=True)
        refresh()


def test_listing_plugins_imports_no_heavy_module():
    """`invrim plugins list` and registry lookups import neither torch nor any plugin's physics."""
    code = textwrap.dedent('''
        import sys
        from invrim.plugins import registry
        reg = registry()
        for kind in reg.kinds().values():
            for name in kind.names():
                kind.info(name)
        heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")
                       or (m.startswith("invrim_") and not m.endswith(".hooks") and "." in m))
        print(",".join(heavy))
        print(len(reg.plugins))
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, count = out.stdout.split("\n")[:2]
    assert heavy == "" and int(count) >= 1, out.stdout
    listing = subprocess.run([sys.executable, "-X", "importtime", "-m", "invrim", "plugins", "list"],
                             capture_output=True, text=True, check=True)
    assert "| torch" not in listing.stderr and "builtin" in listing.stdout


# --- robustness: what a plugin cannot do to the host -------------------------------------------------

BOOM_BACKBONE = '''
import sys

class Boom:
    def __init__(self, channels=1, mode="raise"):
        if mode == "raise":
            raise RuntimeError("kaboom inside the factory")
        if mode == "exit":
            sys.exit(4)
        if mode == "bad call":
            dict(channels, 1, 2)             # a TypeError from inside, not about the options
        self.channels = channels
'''


class PluginPanic(BaseException):
    """What a careless plugin might raise."""


def cli(root, *args, **env):
    """``python -m invrim ARGS`` in a fresh process that sees the fake distributions under ``root``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INVRIM_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "invrim", *args], capture_output=True, text=True,
                          env=environ, timeout=300)


def install_exiting_plugins(site):
    site("invrim-exitimport", "exitimport", {"hooks": "import sys\nsys.exit(3)\n"})
    site("invrim-exithook", "exithook", {"hooks": hooks("sys.exit()", extra="import sys")})
    site("invrim-genexit", "genexit", {"hooks": "raise GeneratorExit('closing')\n"})
    site("invrim-panic", "panicpkg", {"hooks": hooks(
        "(_ for _ in ()).throw(Panic('the plugin panicked'))",
        extra="class Panic(BaseException):\n            pass")})
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})


def test_base_exceptions_from_plugins_are_contained(site):
    install_exiting_plugins(site)
    reg = registry()
    status = {p.name: (p.status, p.error) for p in reg.plugins}
    assert status["exitimport"] == ("failed", "import failed: SystemExit: sys.exit(3) was called")
    assert status["exithook"] == ("failed", "bad hooks: invrim_forward_models: SystemExit: sys.exit(None) was called")
    assert status["genexit"] == ("failed", "import failed: GeneratorExit: closing")
    assert status["panicpkg"] == ("failed", "bad hooks: invrim_forward_models: Panic: the plugin panicked")
    assert status["shiftpkg"][0] == "active" and "shift" in reg.forward_models.names()
    pm = reg.plugin_manager                     # the failed ones are not left on the manager
    assert pm.get_plugin("shiftpkg") is sys.modules["shiftpkg.hooks"]
    assert pm.get_plugin("exithook") is None and pm.get_plugin("panicpkg") is None


def test_strict_mode_turns_a_base_exception_into_plugin_error(site, monkeypatch):
    site("invrim-exitimport", "exitimport", {"hooks": "import sys\nsys.exit(3)\n"})
    monkeypatch.setenv("INVRIM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'exitimport' \(invrim-exitimport\) failed: import failed: "
                                          r"SystemExit: sys.exit\(3\) was called \[INVRIM_STRICT") as e:
        registry()
    assert isinstance(e.value, Exception) and isinstance(e.value.__cause__, SystemExit)


def test_a_keyboard_interrupt_still_interrupts(site):
    site("invrim-interrupt", "interruptpkg", {"hooks": "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        registry()


def test_cli_lists_plugins_that_exit_or_panic(site, tmp_path):
    install_exiting_plugins(site)
    listing = cli(tmp_path / "site", "plugins", "list")
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    for line in ("exitimport: import failed: SystemExit: sys.exit(3) was called",
                 "exithook: bad hooks: invrim_forward_models: SystemExit: sys.exit(None) was called",
                 "genexit: import failed: GeneratorExit: closing",
                 "panicpkg: bad hooks: invrim_forward_models: Panic: the plugin panicked"):
        assert line in listing.stdout, listing.stdout
    assert "shiftpkg" in listing.stdout and "builtin" in listing.stdout
    strict = cli(tmp_path / "site", "plugins", "list", INVRIM_STRICT_PLUGINS="1")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr, strict.stderr
    assert strict.stderr.startswith("invrim plugins: error: plugin '")
    assert "INVRIM_STRICT_PLUGINS is set" in strict.stderr.splitlines()[-1]


def test_a_failing_factory_is_one_line_naming_component_and_plugin(site):
    site("invrim-boom", "boompkg", {"hooks": textwrap.dedent('''
        from invrim.plugins import Component, hookimpl
        @hookimpl
        def invrim_backbones():
            return [Component("boom", "boompkg.nets:Boom")]
        @hookimpl
        def invrim_forward_models():
            return [Component("broken_import", "boompkg.physics:X")]
    '''), "nets": BOOM_BACKBONE, "physics": "raise SystemExit('physics module exits')\n"})
    reg = registry()
    source = "from plugin 'boompkg' (invrim-boom 1.0)"
    with pytest.raises(ComponentBuildError) as e:
        reg.backbones.build("boom")
    assert str(e.value) == f"cannot build backbone 'boom' {source}: RuntimeError: kaboom inside the factory"
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(ComponentBuildError, match=r"SystemExit: sys.exit\(4\) was called"):
        reg.backbones.build("boom", mode="exit")
    with pytest.raises(ComponentBuildError, match=r"'boom' .*: TypeError: "):
        reg.backbones.build("boom", mode="bad call")
    with pytest.raises(ComponentBuildError) as e:
        reg.backbones.build("boompkg:boom", chanels=2)
    assert str(e.value) == (f"cannot build backbone 'boom' {source}: unknown option 'chanels' "
                            "(did you mean 'channels'?); its options: channels, mode")
    assert isinstance(e.value, ValueError) and isinstance(e.value.__cause__, TypeError)
    assert reg.backbones.build("boom", channels=2, mode="ok").channels == 2
    with pytest.raises(ComponentBuildError) as e:
        reg.forward_models.build("broken_import")
    assert str(e.value) == (f"cannot import forward model 'broken_import' {source}: boompkg.physics: "
                            "SystemExit: sys.exit('physics module exits') was called")


def test_cli_check_reports_components_that_exit(site, capsys):
    site("invrim-boom", "boompkg", {"hooks": textwrap.dedent('''
        from invrim.plugins import Component, hookimpl
        @hookimpl
        def invrim_forward_models():
            return [Component("exits", "boompkg.physics:X")]
        @hookimpl
        def invrim_generators():
            return [Component("quits", "boompkg.gen:Quits")]
    '''), "physics": "import sys\nsys.exit(5)\n",
        "gen": "import sys\nclass Quits:\n    @classmethod\n    def example(cls):\n        sys.exit(7)\n"})
    assert main(["plugins", "check", "boompkg"]) == 1
    out = capsys.readouterr().out
    assert ("FAILED   forward model boompkg:exits: ComponentBuildError: cannot import forward model 'exits' "
            "from plugin 'boompkg' (invrim-boom 1.0): boompkg.physics: SystemExit: sys.exit(5) was called") in out
    assert "FAILED   generator boompkg:quits: SystemExit: 7" in out


def test_shared_entry_point_names_keep_both_plugins(site, tmp_path):
    for dist, pkg in (("invrim-one", "onepkg"), ("invrim-two", "twopkg")):
        site(dist, pkg, {"hooks": hooks('Component("warp", "shiftpkg.physics:Shift")')}, entry_name="same")
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})
    reg = registry()
    assert {"invrim-one:same:warp", "invrim-two:same:warp"} <= set(reg.forward_models.names())
    with pytest.raises(AmbiguousComponentError) as e:
        reg.forward_models.info("same:warp")
    assert "same (invrim-one) and same (invrim-two)" in str(e.value)
    assert "'invrim-one:same:warp' or 'invrim-two:same:warp'" in str(e.value)
    assert reg.forward_models.info("invrim-two:warp").distribution == "invrim-two"
    assert reg.forward_models.info("invrim_two:same:warp").distribution == "invrim-two"   # PEP 503 spelling
    assert [c.distribution for c in reg.components_of("invrim-one:same")] == ["invrim-one"]
    assert len(reg.components_of("same")) == 2
    pm = reg.plugin_manager
    assert pm.get_plugin("invrim-one:same") is sys.modules["onepkg.hooks"]
    assert pm.get_plugin("invrim-two:same") is sys.modules["twopkg.hooks"]

    root = tmp_path / "site"
    listing = cli(root, "plugins", "list")
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines() if line.startswith("same ")]
    assert sorted(row[1] for row in rows) == ["invrim-one", "invrim-two"]
    assert all(row[3] == "active" for row in rows)
    assert ("invrim-one:same: entry-point name 'same' is also declared by invrim-two; "
            "address this plugin as 'invrim-one:same'") in listing.stdout
    doc = json.loads(cli(root, "plugins", "list", "--json").stdout)
    assert sorted(p["qualified_name"] for p in doc["plugins"] if p["name"] == "same") == [
        "invrim-one:same", "invrim-two:same"]
    blocked = json.loads(cli(root, "plugins", "list", "--json", INVRIM_DISABLE_PLUGINS="invrim-one:same").stdout)
    assert {p["qualified_name"]: p["status"] for p in blocked["plugins"] if p["name"] == "same"} == {
        "invrim-one:same": "disabled", "invrim-two:same": "active"}
    allowed = json.loads(cli(root, "plugins", "list", "--json", INVRIM_PLUGINS="invrim-two:same").stdout)
    status = {p["qualified_name"]: p["status"] for p in allowed["plugins"]}
    assert {k: status[k] for k in ("invrim", "invrim-one:same", "invrim-two:same", "shiftpkg")} == {
        "invrim": "builtin", "invrim-one:same": "disabled", "invrim-two:same": "active", "shiftpkg": "disabled"}
    check = cli(root, "plugins", "check", "invrim-two:same")
    assert "forward model invrim-two:same:warp" in check.stdout and "invrim-one" not in check.stdout
    assert "Traceback" not in check.stderr


def test_builtins_are_an_ordinary_plugin_on_one_manager(site, monkeypatch):
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})
    reg = registry()
    assert reg is registry()                                  # cached …
    pm = reg.plugin_manager
    assert pm.project_name == "invrim"
    assert pm.get_plugin("invrim") is sys.modules["invrim.plugins.builtin"]
    names = {c.name for result in pm.hook.invrim_forward_models() for c in result}
    assert {"blur", "identity", "shift"} <= names              # hooks are callable through the manager
    refresh()
    assert registry() is not reg                              # … until refresh()
    monkeypatch.setenv("INVRIM_DISABLE_PLUGINS", "invrim")    # blockable by name, as in pytest
    refresh()
    reg = registry()
    assert reg.plugin("invrim").status == "disabled" and reg.plugin_manager.is_blocked("invrim")
    assert "shift" in reg.forward_models.names() and "blur" not in reg.forward_models.names()
    with pytest.raises(UnknownComponentError, match="unknown forward model 'blur'"):
        reg.forward_models.info("blur")


def test_one_table_of_kinds():
    from invrim.plugins import KINDS
    from invrim.plugins.spec import InvrimSpec
    assert list(KINDS) == ["forward_models", "backbones", "likelihoods", "generators", "readers"]
    assert [k.hook for k in KINDS.values()] == [n for n in vars(InvrimSpec) if n.startswith("invrim_")]
    refresh()
    reg = registry()
    assert list(reg.kinds()) == list(KINDS)
    for kind in KINDS.values():
        assert getattr(reg, kind.name) is reg.kinds()[kind.name] and getattr(reg, kind.name).label == kind.label
        spec = getattr(InvrimSpec, kind.hook)
        assert spec.__doc__ and "return" in spec.__annotations__


def test_a_plugin_using_the_registry_while_loading_fails_alone(site):
    site("invrim-eager", "eagerpkg", {"hooks": "import invrim.plugins\ninvrim.plugins.registry()\n"})
    site("invrim-shiftpkg", "shiftpkg", {"hooks": hooks('Component("shift", "shiftpkg.physics:Shift")'),
                                         "physics": HEAVY_PHYSICS})
    reg = registry()                                          # no deadlock, no recursion
    record = reg.plugin("eagerpkg")
    assert record.status == "failed" and "registry() was called while plugins were loading" in record.error
    assert reg.plugin("shiftpkg").status == "active"


# ---- #18: a hook that raises, a plugin that failed, a run that names its plugins ----------------
def test_a_raising_hook_keeps_the_plugins_other_components(site):
    site("invrim-halfpkg", "halfpkg", {"hooks": hooks('Component("shift", "halfpkg.physics:Shift")', extra='''
        @hookimpl
        def invrim_backbones():
            raise RuntimeError("backbone hook is broken")
        '''), "physics": HEAVY_PHYSICS})
    reg = registry()
    record = reg.plugin("halfpkg")
    assert record.status == "partial" and "backbone hook is broken" in record.error
    assert record.hook_errors == {"invrim_backbones": "RuntimeError: backbone hook is broken"}
    assert reg.forward_models.build("shift", k=2).k == 2           # the working hook's component is usable
    with pytest.raises(UnknownComponentError) as e:                # a missing name points at the failure
        reg.backbones.info("halfnet")
    assert "may be provided by a plugin that failed to load" in str(e.value)
    assert "'halfpkg': RuntimeError: backbone hook is broken (invrim-halfpkg 1.0)" in str(e.value)
    assert "halfpkg" not in str(pytest.raises(UnknownComponentError, reg.forward_models.info, "nothere").value)


def test_a_name_of_a_failed_plugin_says_the_plugin_failed(site, capsys):
    site("invrim-brokenfm", "brokenfm", {"hooks": "raise RuntimeError('boom at import')"})
    reg = registry()
    with pytest.raises(UnknownComponentError, match=r"forward model 'xfm' is provided by plugin 'brokenfm', which "
                                                    r"failed to load: import failed: RuntimeError: boom at import"):
        reg.forward_models.info("brokenfm:xfm")
    code = main(["simulate", "--forward-model", "xfm", "--generator", "ellipses", "--samples", "2", "-o",
                 "unused.h5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "'xfm'" in err and "brokenfm" in err and "boom at import" in err
    # plugins check NAME on the failed plugin: its error, exit 1 (not "no plugin named ...")
    assert main(["plugins", "check", "brokenfm"]) == 1
    out = capsys.readouterr().out
    assert "FAILED   plugin brokenfm (invrim-brokenfm 1.0): import failed: RuntimeError: boom at import" in out


def test_plain_plugins_check_counts_failed_plugins(site, capsys, monkeypatch):
    site("invrim-brokenfm", "brokenfm", {"hooks": "raise RuntimeError('boom at import')"})
    monkeypatch.setattr(testing, "check_component", lambda component: ["stubbed"])   # only the counting here
    assert main(["plugins", "check"]) == 1
    captured = capsys.readouterr()
    assert "FAILED   plugin brokenfm" in captured.out and "1 failed" in captured.err
    assert "PASSED   backbone invrim:hourglass: stubbed" in captured.out


TINY_NET = '''
from invrim.backbones import Hourglass

class TinyNet(Hourglass):
    name = "tinynet"
'''


def _provider_plugin(site, version):
    site("invrim-provpkg", "provpkg", {
        "hooks": hooks('Component("shift", "provpkg.physics:Shift")', extra='''
        @hookimpl
        def invrim_backbones():
            return [Component("tinynet", "provpkg.nets:TinyNet")]
        '''), "physics": HEAVY_PHYSICS, "nets": TINY_NET}, version=version)


def _uninstall(root: Path, package: str) -> None:
    import shutil
    for path in [root / package, *root.glob(f"invrim_{package}-*.dist-info")]:
        shutil.rmtree(path)
    for name in [m for m in sys.modules if m.split(".")[0] == package]:
        del sys.modules[name]
    refresh()


def _one_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    return err


def test_a_run_records_its_plugins_and_names_the_one_to_install(site, tmp_path, capsys):
    from invrim import RIM
    from invrim.runs import CheckpointError, RunFolder
    _provider_plugin(site, "1.0")
    data, test, run, recon = (tmp_path / n for n in ("train.h5", "test.h5", "run", "recon.h5"))
    physics = ["--forward-model", "shift", "--generator", "ellipses", "-g", "shape=[16,16]", "-l", "sigma=0.05",
               "--quiet"]
    assert main(["simulate", *physics, "--samples", "8", "--seed", "0", "-o", str(data)]) == 0
    assert main(["simulate", *physics, "--samples", "4", "--seed", "1", "-o", str(test)]) == 0
    assert main(["train", str(data), "-o", str(run), "--backbone", "tinynet", "-b", "nf=4", "-b", "hidden_units=8",
                 "--T", "2", "--epochs", "1", "--quiet"]) == 0
    assert main(["reconstruct", str(run), str(test), "-o", str(recon), "--quiet"]) == 0
    providers = json.loads((run / "model.json").read_text())["providers"]
    assert providers["backbone"] == {"name": "provpkg:tinynet", "plugin": "provpkg", "distribution": "invrim-provpkg",
                                     "version": "1.0"}
    assert providers["forward_model"]["distribution"] == "invrim-provpkg"
    assert providers["likelihood"]["distribution"] == "invrim"

    _uninstall(tmp_path / "site", "provpkg")
    with pytest.raises(CheckpointError, match=r"needs backbone 'tinynet' from invrim-provpkg 1.0, which is not "
                                              r"installed: pip install invrim-provpkg$"):
        RIM.from_checkpoint(run)
    with pytest.raises(CheckpointError, match="pip install invrim-provpkg"):
        RunFolder(run).load_backbone()
    for argv in (["reconstruct", run, test, "-o", tmp_path / "again.h5", "--quiet"], ["evaluate", recon],
                 ["show", recon, "-o", tmp_path / "fig.png"]):
        err = _one_line(capsys, argv)
        assert "pip install invrim-provpkg" in err, err
    assert not (tmp_path / "again.h5").exists()

    _provider_plugin(site, "2.0")                   # another version: usable, with a warning naming both
    with pytest.warns(UserWarning, match=r"backbone 'tinynet' was provided by invrim-provpkg 1.0 .* but "
                                         r"invrim-provpkg 2.0 is installed"):
        rim = RIM.from_checkpoint(run)
    assert rim.model.name == "tinynet"
    from invrim.evaluation import evaluate           # data and reconstruction files warn alike
    with pytest.warns(UserWarning, match=r"recon.h5: forward model 'shift' was provided by invrim-provpkg 1.0 .* "
                                         r"invrim-provpkg 2.0 is installed"):
        assert evaluate(recon)["samples"] == 4


# ---- #20: readers, the fifth kind ----------------------------------------------------------------
CSV_READER = '''
import numpy as np
from pathlib import Path

class CSVReader:
    """A plugin's reader: a CSV table is one 2-D array, "table"."""
    name = "csv"
    suffixes = ("csv",)
    def __init__(self, path):
        self.path = Path(path)
        self._a = np.loadtxt(self.path, delimiter=",", dtype=np.float32, ndmin=2)
    def arrays(self):
        return {"table": (self._a.shape, self._a.dtype, None)}
    def read(self, name, index=()):
        return np.ascontiguousarray(self._a[tuple(index)])
    def hdf5_source(self, name):
        return None
    def close(self):
        pass
    @classmethod
    def example(cls, folder):
        a = np.arange(12, dtype=np.float32).reshape(4, 3)
        path = Path(folder) / "example.csv"
        np.savetxt(path, a, delimiter=",")
        return path, {"table": a}
'''


def test_builtin_readers_pass_the_kit():
    refresh()
    readers = registry().readers
    assert readers.names() == ["fits", "hdf5", "nifti", "numpy"]
    for component in readers:
        assert component.status in ("builtin", "missing-deps")
        if component.status == "builtin":
            assert testing.check_component(component) == ["read"]
    assert {r.import_name for r in readers.info("fits").requires} == {"astropy"}
    assert {r.import_name for r in readers.info("nifti").requires} == {"nibabel"}


def test_a_plugin_reader_is_chosen_by_suffix_for_invrim_import(site, tmp_path):
    site("invrim-csv", "csvpkg", {"hooks": textwrap.dedent('''
        from invrim.plugins import Component, hookimpl
        @hookimpl
        def invrim_readers():
            return [Component("csv", "csvpkg.reader:CSVReader", "comma-separated tables")]
    '''), "reader": CSV_READER})
    component = registry().readers.info("csv")
    assert component.plugin == "csvpkg" and testing.check_component(component) == ["read"]
    from invrim.data.readers import reader_class
    assert reader_class(tmp_path / "t.csv").__name__ == "CSVReader"
    import numpy as np
    np.savetxt(tmp_path / "obs.csv", np.arange(12 * 10, dtype=np.float32).reshape(12, 10), delimiter=",")
    out = tmp_path / "obs.h5"
    assert main(["import", str(tmp_path / "obs.csv"), "--forward-model", "identity", "--var",
                 "y=table:sample,width", "--var", f"x={tmp_path / 'obs.csv'}::table:sample,width",
                 "-o", str(out), "--quiet"]) == 0
    from invrim.data import HDF5Dataset
    item = HDF5Dataset(out)[1]                                   # each row a 1 x 10 image
    assert tuple(item["y"].shape) == (1, 1, 10) and float(item["y"][0, 0, 0]) == 10.0
