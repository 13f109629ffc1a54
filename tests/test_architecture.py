"""The house rules of docs/architecture.md: layers, one owner per file format, no side effects at import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "invrim"


def test_import_layers_contract_holds():
    """import-linter's contracts in pyproject.toml: the layers, and no cycles inside a package."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_the_contract_sees_an_upward_import(tmp_path):
    """The layers contract is not vacuous: an evaluation module imported by the RIM breaks it."""
    import grimp
    from importlinter.contracts.layers import LayersContract  # noqa: F401  (the contract type in use)

    graph = grimp.build_graph("invrim")
    assert graph.direct_import_exists(importer="invrim.rim", imported="invrim.runs")
    graph.add_import(importer="invrim.rim", imported="invrim.evaluation")
    chains = graph.find_illegal_dependencies_for_layers(
        layers=("invrim.evaluation", "invrim.rim"), containers=set())
    assert chains, "an upward import must be reported"


def test_importing_the_engine_loads_neither_training_nor_reconstruction():
    code = ("import sys, invrim.rim; bad = [m for m in sys.modules if m.startswith(('invrim.training', "
            "'invrim.reconstruct', 'invrim.evaluation', 'invrim.viz', 'invrim.figures'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["checkpoints.json", '"metrics.jsonl"', '"training.json"', '"data.json"'])
def test_run_folder_file_names_live_in_runs_py_alone(name):
    """The index is not even named elsewhere; the other files are not opened by name elsewhere
    (help texts may mention them)."""
    owners = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if name in p.read_text())
    assert owners == ["invrim/runs.py"], owners


def test_reconstruction_variable_names_live_in_the_format_module():
    """``trajectory_nmse`` and the ``done`` flags are the reconstruction format's: one owner (the
    data schema may list them among the names a dimension cannot take)."""
    for token in ('"trajectory_nmse"', '"done"', '"invrim-reconstruction"'):
        owners = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if token in p.read_text()}
        assert "invrim/data/reconstruction.py" in owners
        assert owners <= {"invrim/data/reconstruction.py", "invrim/data/schema.py"}, (token, owners)
