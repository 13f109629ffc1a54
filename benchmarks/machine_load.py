"""How busy the machine is while a benchmark runs (Linux ``/proc``; no-ops elsewhere).

Shared by the benchmark scripts: :class:`ForeignLoad` measures the cores used by *other* processes
during a block, :func:`wait_quiet` waits for the machine to calm down.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Optional


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def busy_jiffies() -> int:
    """CPU time used by everything on the machine (all cores), in clock ticks."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)      # minus idle, iowait


def own_jiffies() -> int:
    """CPU time used by this process (all its threads) and its reaped children."""
    with open("/proc/self/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return sum(int(v) for v in fields[11:15])                           # utime stime cutime cstime


class ForeignLoad:
    """Average number of cores used by *other* processes while the block runs (``value``, or None
    where ``/proc`` is missing)."""

    def __enter__(self) -> "ForeignLoad":
        self.value: Optional[float] = None
        try:
            self._t, self._busy, self._own = time.perf_counter(), busy_jiffies(), own_jiffies()
        except OSError:
            self._t = None
        return self

    def __exit__(self, *exc) -> None:
        if self._t is None:
            return
        dt = time.perf_counter() - self._t
        other = (busy_jiffies() - self._busy) - (own_jiffies() - self._own)
        self.value = max(0.0, other / os.sysconf("SC_CLK_TCK") / max(dt, 1e-9))


def wait_quiet(threshold: float, max_wait_s: float, interval: float = 2.0) -> Optional[float]:
    """Sleep until other processes use at most ``threshold`` cores, or ``max_wait_s`` passes;
    returns the last measured foreign load."""
    deadline = time.perf_counter() + max_wait_s
    announced = False
    while True:
        with ForeignLoad() as fl:
            time.sleep(interval)
        if fl.value is None or fl.value <= threshold or time.perf_counter() > deadline:
            return fl.value
        if not announced:
            print(f"    waiting: other processes use {fl.value:.1f} cores", flush=True)
            announced = True


def machine() -> dict:
    """The machine a benchmark ran on: CPU model and its vector/matrix flags (``lscpu``), python,
    torch and torch-rim versions."""
    info = {"python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "?").strip()
        info["flags"] = " ".join(f for f in fields.get("Flags", "").split()
                                 if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    import torch
    info["torch"] = torch.__version__
    try:
        import rim  # noqa: F401
        from importlib.metadata import version
        info["torch-rim"] = version("torch-rim")
    except ImportError:
        info["torch-rim"] = None
    return info
