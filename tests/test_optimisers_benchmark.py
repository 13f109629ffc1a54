"""benchmarks/optimisers.py (RIM against Adam, L-BFGS, gradient descent and CG): its --quick mode
runs, and its JSON has the expected keys with finite numbers. See benchmarks/OPTIMISERS.md."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "optimisers.py"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_quick_mode_writes_complete_json(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(tmp_path / "r.json"),
                          "--figure", str(tmp_path / "r.png")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Target (nonlinear problem" in out.stdout
    assert (tmp_path / "r.png").stat().st_size > 1000
    data = json.loads((tmp_path / "r.json").read_text())

    machine = data["machine"]
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert isinstance(machine["cpu_flags_avx_amx"], list)
    assert machine["torch_threads"] == 1
    assert data["quick"] is True and isinstance(data["verdict"], str)
    assert set(data["problems"]) == {"ringdown", "kappa", "deblur"}

    for name, res in data["problems"].items():
        kinds = {"truth", "wiener"} if name == "deblur" else {"truth"}
        T = res["T"]
        assert T <= 20 and res["n_test"] > 0 and res["cap"] > 0
        rim = res["rim"]
        assert set(rim["final_median_error"]) == kinds
        for kind in kinds:
            curve = rim["median_error_per_step"][kind]
            assert len(curve) == T + 1 and all(_finite(v) for v in curve)
            assert _finite(rim["final_median_error"][kind]) and rim["final_median_error"][kind] >= 0
        assert _finite(rim["seconds_per_sample_batched"]) and rim["seconds_per_sample_batched"] > 0
        assert _finite(rim["seconds_per_sample_one_at_a_time"])
        assert _finite(res["rim_training"]["seconds"]) and _finite(res["rim_training"]["final_loss"])
        assert all(0 <= v <= 1 for v in res["reference"]["share_better_than_rim"].values())

        expected = {"adam", "lbfgs", "gd"} | ({"cg"} if name == "deblur" else set())
        assert set(res["optimisers"]) == expected
        for method, entry in res["optimisers"].items():
            best = entry["best"]
            assert best["lr"] is None if method in ("lbfgs", "cg") else _finite(best["lr"])
            assert len(entry["runs"]) >= 1
            for kind in kinds:
                s = best[kind]
                assert 0 <= s["share_reached"] <= 1
                assert _finite(s["final_median_error"])
                # an iteration count is finite or None ("not reached"), never NaN
                for key in ("median_iterations", "ratio_to_T", "median_evaluations",
                            "median_error_curve_reaches_at", "median_seconds_per_sample"):
                    assert s[key] is None or _finite(s[key]), (name, method, kind, key, s[key])
                if s["median_iterations"] is not None:
                    assert s["share_reached"] >= 0.5
                    assert math.isclose(s["ratio_to_T"], s["median_iterations"] / T)
                curve = entry["median_error_curve"][kind]
                assert len(curve) == len(entry["curve_points"]) and all(_finite(v) for v in curve)
            if method == "lbfgs":
                evals = entry["median_evaluations_curve"]
                assert entry["curve_points"][:2] == [0, 1] and evals[0] == 0
                assert evals[1] >= 2                      # the first f/g evaluation, then the line search's
                assert all(a <= b for a, b in zip(evals, evals[1:]))
    hessian = data["deblur_hessian"]
    assert _finite(hessian["condition_number"]) and hessian["condition_number"] >= 1


def test_the_verdict_counts_zero_iterations_as_a_miss():
    """An optimiser that is at the RIM's error from its start (0 iterations) beats the RIM: the
    target "Adam and L-BFGS need >= 10x T" is missed, not met."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("optimisers_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def problem(adam, lbfgs):
        best = lambda med: {"best": {"truth": {"median_iterations": med, "share_reached": 1.0 if med is not None
                                               else 0.2, "median_evaluations": med,
                                               "median_error_curve_reaches_at": med}}}
        return {"T": 10, "cap": 2000, "optimisers": {"adam": best(adam), "lbfgs": best(lbfgs)}}
    assert "MISSED" in bench.verdict({"problems": {"kappa": problem(0, 0)}})
    assert "MISSED" in bench.verdict({"problems": {"kappa": problem(None, 50)}})
    assert "MET" in bench.verdict({"problems": {"kappa": problem(None, 100)}})
    assert "MISSED" not in bench.verdict({"problems": {"ringdown": problem(150, None)}})
