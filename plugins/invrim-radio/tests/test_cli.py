"""simulate → train → reconstruct → evaluate → show through the invrim command line."""
from __future__ import annotations

import h5py
import numpy as np

PHYSICS = ["--forward-model", "radio_interferometry", "-f", "image_size=16", "-f", "layout=random",
           "-f", "duration=[0.5,1.5]", "-f", "integration=30", "-f", "noise=0.3",
           "--generator", "radio_sky", "-g", "shape=[16,16]", "--quiet"]


def test_cli_pipeline_reports_clean_and_tikhonov(tmp_path, capsys):
    from invrim.cli import main
    train, test = tmp_path / "train.h5", tmp_path / "test.h5"
    assert main(["simulate", *PHYSICS, "--samples", "12", "--seed", "0", "-o", str(train)]) == 0
    assert main(["simulate", *PHYSICS, "--samples", "3", "--seed", "1", "-o", str(test)]) == 0
    with h5py.File(train, "r") as f:                     # the visibility layout of the file
        assert f["y"].dtype.kind == "c" or f["y"].dtype.names == ("r", "i")
        V = f["y"].shape[1]
        assert f["uv"].shape == (12, V, 2) and f["weight"].shape == f["sigma"].shape == (12, V)
        weight, sigma = f["weight"][:], f["sigma"][:]
        assert (weight == 0).any() and np.all(sigma[weight == 0] == 1)       # padded slots
    assert main(["train", str(train), "-o", str(tmp_path / "run"), "-b", "nf=4", "-b", "hidden_units=8",
                 "--T", "2", "--epochs", "1", "--quiet"]) == 0
    assert main(["reconstruct", str(tmp_path / "run"), str(test), "-o", str(tmp_path / "r.h5"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r.h5")]) == 0
    out = capsys.readouterr().out
    assert "Högbom CLEAN (baseline)" in out and "Tikhonov-CG (λ=" in out and "RIM" in out, out
    assert main(["show", str(tmp_path / "r.h5"), "--index", "0", "-o", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 1000
