"""Speed and accuracy of the NUFFT choices against the float64 direct sum (one thread).

    OMP_NUM_THREADS=1 python plugins/invrim-radio/scripts/bench_nufft.py

Times the type-2 transform (image → visibilities) of one image at random points inside Nyquist:
finufft (float64 and float32, several tolerances), torchkbnufft (when installed; float64, several
kernel widths) and invrim-radio's pure-torch direct sum (``backend="dft"``), and reports each one's
relative error ``‖c − c_ref‖ / ‖c_ref‖`` against the float64 direct sum.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from invrim_radio.nufft import dft_type2, nufft_type2


def timed(fn, repeats=10):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - start) / repeats


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'size':>8} {'points':>7}  {'method':<34}{'time [ms]':>10}{'rel. error':>12}")
    for size, points in ((32, 2000), (64, 4000), (128, 20000)):
        g = torch.Generator().manual_seed(0)
        z = torch.randn(1, size, size, dtype=torch.complex128, generator=g)
        fu = torch.rand(1, points, dtype=torch.float64, generator=g) - 0.5
        fv = torch.rand(1, points, dtype=torch.float64, generator=g) - 0.5
        ref = dft_type2(z, fu, fv)
        err = lambda c: float((c.to(torch.complex128) - ref).norm() / ref.norm())   # noqa: E731
        rows = []
        for eps in (1e-6, 1e-10, 1e-12):
            c, t = timed(lambda: nufft_type2(z, fu, fv, "finufft", eps))
            rows.append((f"finufft float64 eps={eps:g}", t, err(c)))
        for eps in (1e-4, 1e-6):
            c, t = timed(lambda: nufft_type2(z.to(torch.complex64), fu.float(), fv.float(), "finufft", eps))
            rows.append((f"finufft float32 eps={eps:g}", t, err(c)))
        try:
            import torchkbnufft as tkb
            omega = 2 * np.pi * torch.stack([fv[0], fu[0]])          # (2, K) radians, first axis = height
            for numpoints, table in ((6, 2 ** 10), (8, 2 ** 12), (12, 2 ** 14)):
                op = tkb.KbNufft(im_size=(size, size), grid_size=(2 * size, 2 * size), numpoints=numpoints,
                                 table_oversamp=table, dtype=torch.float64)
                c, t = timed(lambda: op(z[None], omega).reshape(1, -1))
                rows.append((f"torchkbnufft float64 J={numpoints}", t, err(c)))
        except ImportError:
            rows.append(("torchkbnufft (not installed)", float("nan"), float("nan")))
        c, t = timed(lambda: dft_type2(z.to(torch.complex64), fu.float(), fv.float()), repeats=3)
        rows.append(("direct sum (torch) float32", t, err(c)))
        for name, t, e in rows:
            print(f"{size:>5}²  {points:>7}  {name:<34}{1e3 * t:10.2f}{e:12.1e}")


if __name__ == "__main__":
    import os
    import sys
    main()
    sys.stdout.flush()
    os._exit(0)    # torchkbnufft 1.5.2 aborts at interpreter exit ("terminate called …"); skip the teardown
