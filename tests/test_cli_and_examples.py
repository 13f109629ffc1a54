"""The command line and the examples (run in their fast mode so none of them rots)."""
from __future__ import annotations

import os
import re
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


QUICKSTART = "examples/deblur_quickstart.py"
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("examples/*.py"), *ROOT.glob("plugins/*/examples/*.py")])


def _run_fast(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(ROOT / script), "--fast",
                          "--figure", str(tmp_path / "fig.png")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fig.png").stat().st_size > 1000
    return out


@pytest.mark.parametrize("script", [s for s in EXAMPLES if s != QUICKSTART])
def test_example_runs_in_fast_mode(script, tmp_path):
    _run_fast(script, tmp_path)


def test_quickstart_beats_its_baselines_in_fast_mode(tmp_path):
    """The README's main job shows what invrim is for: at its --fast size (a fixed 320 training
    steps, not a time budget) the RIM beats the observation and the exact Wiener filter.
    Measured (one thread, and two): +2.55 / +2.65 dB over the observation, +0.88 / +0.98 dB over
    the Wiener filter; the full size gives +4.0 / +2.3 dB."""
    out = _run_fast(QUICKSTART, tmp_path)
    table = dict(re.findall(r"^  (observation y|Wiener filter|RIM) +(-?\d+\.\d+)$", out.stdout, re.M))
    assert set(table) == {"observation y", "Wiener filter", "RIM"}, out.stdout
    rim, obs, wiener = (float(table[k]) for k in ("RIM", "observation y", "Wiener filter"))
    assert obs < wiener, out.stdout                       # the baseline is a real one
    assert rim > obs + 1.5 and rim > wiener + 0.4, out.stdout
    assert "320 steps" in out.stdout
