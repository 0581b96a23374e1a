"""CuPy on strata memory: a matrix product, a reduction and an FFT on arrays allocated by
strata, each checked against NumPy; prints one JSON line and exits non-zero on a wrong result.

    python3 cupy_check.py
"""

import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

import strata_alloc  # noqa: E402


def main():
    strata_alloc.use_with_cupy()
    rng = np.random.default_rng(7)
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)

    ga, gb = cp.asarray(a), cp.asarray(b)
    on_strata = isinstance(ga.data.mem, cp.cuda.UnownedMemory) and type(
        ga.data.mem._owner
    ).__name__ == "_Block"
    gc_ = ga @ gb
    product = cp.asnumpy(gc_)
    reference = a.astype(np.float64) @ b.astype(np.float64)
    product_err = float(np.max(np.abs(product - reference)) / np.max(np.abs(reference)))

    m = 10_000_000
    x = cp.arange(m, dtype=cp.float64)
    total = float(x.sum())
    sum_ok = total == m * (m - 1) / 2

    signal = rng.standard_normal(1 << 20)
    spectrum = cp.asnumpy(cp.fft.fft(cp.asarray(signal)))
    fft_err = float(np.max(np.abs(spectrum - np.fft.fft(signal))))

    during = strata_alloc.statistics(0)
    del ga, gb, gc_, x
    gc.collect()
    cp.cuda.runtime.deviceSynchronize()
    after = strata_alloc.statistics(0)

    ok = on_strata and product_err < 1e-4 and sum_ok and fft_err < 1e-6
    ok = ok and during["allocated"]["total_count"] >= 5
    ok = ok and after["allocated"]["current_bytes"] < during["allocated"]["current_bytes"]
    print(
        json.dumps(
            {
                "cupy": cp.__version__,
                "on_strata_memory": on_strata,
                "matmul_rel_err": product_err,
                "sum_ok": sum_ok,
                "fft_max_abs_err": fft_err,
                "strata_during": during,
                "strata_after_free": after,
                "ok": ok,
            }
        ),
        flush=True,
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
