"""strata on a GPU with several streams: PyTorch work on two non-default streams (strata adopts
them), a block freed on one stream and reused on another, and resources built through the C
interface (cuMemAlloc, the stream-ordered pool over it, the driver's async pool) used on
PyTorch's streams and released. Prints one JSON line; exits non-zero on a wrong result.

    STRATA_RESOURCE=stream-pool python3 gpu_streams.py
"""

import ctypes
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import strata_alloc  # noqa: E402


def c_api_on_streams(lib, s1, s2):
    """cuMemAlloc → stream-ordered pool, and an async pool, on two PyTorch streams."""
    check = strata_alloc.check
    mem, spool, apool = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    check("cuda_memory", lib.strata_cuda_memory_create(0, ctypes.byref(mem)))
    check("stream_pool", lib.strata_stream_pool_create(mem, None, ctypes.byref(spool)))
    check("async", lib.strata_async_create(0, None, ctypes.byref(apool)))
    out = {}
    for name, h in (("stream_pool", spool), ("async", apool)):
        p, q = ctypes.c_void_p(), ctypes.c_void_p()
        check("allocate", lib.strata_allocate(h, 1 << 20, 0, s1, ctypes.byref(p)))
        check("free", lib.strata_deallocate(h, p, 1 << 20, 0, s1))
        check("allocate", lib.strata_allocate(h, 1 << 20, 0, s2, ctypes.byref(q)))
        check("free", lib.strata_deallocate(h, q, 1 << 20, 0, s2))
        out[name] = {"reused_across_streams": p.value == q.value}
    for h in (apool, spool, mem):
        check("destroy", lib.strata_resource_destroy(h))
    return out


def main():
    strata_alloc.use_with_torch()
    lib = strata_alloc.load()
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    torch.manual_seed(0)
    with torch.cuda.stream(s1):
        a = torch.randn(1 << 22, device="cuda")
        b = (a * 2).sum()
    with torch.cuda.stream(s2):
        c = torch.arange(1 << 22, device="cuda", dtype=torch.float64).sum()
    torch.cuda.synchronize()
    ok = abs(b.item() - 2 * a.sum().item()) < 1e-2 * a.abs().sum().item()
    ok = ok and c.item() == (1 << 22) * ((1 << 22) - 1) / 2
    # A block freed on s1 (after s1's work) taken by s2: strata orders s2 after s1.
    with torch.cuda.stream(s1):
        x = torch.full((1 << 22,), 3.0, device="cuda")
        x_ptr = x.data_ptr()
        del x
    with torch.cuda.stream(s2):
        y = torch.ones(1 << 22, device="cuda")
        y_ptr = y.data_ptr()
        total = y.sum().item()
    ok = ok and total == float(1 << 22)
    c_api = c_api_on_streams(lib, s1.cuda_stream, s2.cuda_stream)
    torch.cuda.synchronize()
    del a, b, c, y
    torch.cuda.synchronize()
    for s in (s1, s2):
        strata_alloc.check("release", lib.strata_stream_release(s.cuda_stream))
    stats = strata_alloc.statistics(0)
    ok = ok and stats["allocated"]["total_count"] > 0
    print(json.dumps({
        "resource": os.environ.get("STRATA_RESOURCE", "stream-pool"),
        "ok": ok,
        "block_reused_across_streams": x_ptr == y_ptr,
        "c_api": c_api,
        "strata": stats,
    }), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
