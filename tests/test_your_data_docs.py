"""#20: every command of docs/your-data.md runs (the page's bash blocks, in order, in a fresh folder)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_your_data_page_runs(tmp_path):
    pytest.importorskip("astropy")
    page = (ROOT / "docs" / "your-data.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", page, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = dict(os.environ, OMP_NUM_THREADS="1", INVRIM_STRICT_PLUGINS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
