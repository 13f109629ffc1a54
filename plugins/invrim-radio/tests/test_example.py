"""The example runs end to end in its --fast mode and saves its figure."""
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "radio_example.py"


def test_example_fast_mode(tmp_path):
    figure = tmp_path / "figure.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(EXAMPLE), "--fast", "--figure", str(figure)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for row in ("dirty image", "Högbom CLEAN", "Tikhonov-CG", "RIM (T=6)", "residual RMS"):
        assert row in out.stdout
    assert figure.stat().st_size > 1000
