"""The command line and the examples (run in their fast mode so none of them rots)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from invrim import __version__
from invrim.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_cli_version_help_and_info(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 0 and "usage: invrim" in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "hourglass" in out and "unet" in out


def test_console_script_and_module_entry_point():
    exe = Path(sys.executable).with_name("invrim")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "invrim"]
    out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"invrim {__version__}"
    out = subprocess.run([sys.executable, "-m", "invrim", "bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr


EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("examples/*.py"), *ROOT.glob("plugins/*/examples/*.py")])


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_in_fast_mode(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(ROOT / script), "--fast",
                          "--figure", str(tmp_path / "fig.png")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fig.png").stat().st_size > 1000
