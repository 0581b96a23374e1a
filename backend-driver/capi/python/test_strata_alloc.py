"""strata_alloc's ctypes bindings on the simulated device (no GPU, no PyTorch, no CuPy needed).

    STRATA_LIBRARY=path/to/libstrata_capi.so python3 test_strata_alloc.py

Run by tests/python.rs; exits non-zero on the first failure.
"""

import ctypes
import gc
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import strata_alloc  # noqa: E402


def sim_stack(lib):
    device, pool, stats = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    strata_alloc.check("sim", lib.strata_sim_device_create(1 << 30, ctypes.byref(device)))
    strata_alloc.check("pool", lib.strata_pool_create(device, None, ctypes.byref(pool)))
    strata_alloc.check("stats", lib.strata_statistics_create(pool, ctypes.byref(stats)))
    return device, pool, stats


def counters(lib, handle):
    s = strata_alloc.Statistics()
    strata_alloc.check("statistics", lib.strata_resource_statistics(handle, ctypes.byref(s)))
    return s.as_dict()


class Bindings(unittest.TestCase):
    def setUp(self):
        self.lib = strata_alloc.load()

    def test_allocate_free_and_errors(self):
        lib = self.lib
        device, pool, stats = sim_stack(lib)
        p = ctypes.c_void_p()
        strata_alloc.check("allocate", lib.strata_allocate(stats, 4096, 0, 0x77, ctypes.byref(p)))
        self.assertEqual(p.value % 256, 0)
        self.assertEqual(counters(lib, stats)["current_bytes"], 4096)
        strata_alloc.check("free", lib.strata_deallocate(stats, p, 4096, 0, 0x77))
        with self.assertRaises(strata_alloc.StrataError) as e:
            strata_alloc.check("free", lib.strata_deallocate(stats, p, 4096, 0, 0x77))
        self.assertEqual(e.exception.status, "STRATA_STATUS_DOUBLE_FREE")
        with self.assertRaises(strata_alloc.StrataError) as e:
            strata_alloc.check("allocate", lib.strata_allocate(stats, 0, 0, None, ctypes.byref(p)))
        self.assertEqual(e.exception.status, "STRATA_STATUS_INVALID_ARGUMENT")
        for h in (stats, pool, device):
            strata_alloc.check("destroy", lib.strata_resource_destroy(h))
        with self.assertRaises(strata_alloc.StrataError) as e:
            strata_alloc.check("destroy", lib.strata_resource_destroy(stats))
        self.assertEqual(e.exception.status, "STRATA_STATUS_UNKNOWN_HANDLE")

    def test_cupy_owner_frees_through_strata(self):
        lib = self.lib
        device, pool, stats = sim_stack(lib)
        p = ctypes.c_void_p()
        strata_alloc.check("allocate", lib.strata_allocate(stats, 1 << 20, 0, 0, ctypes.byref(p)))
        owner = strata_alloc._Block(stats, p.value, 1 << 20, 0)
        self.assertEqual(counters(lib, stats)["current_count"], 1)
        del owner
        gc.collect()
        self.assertEqual(counters(lib, stats)["current_count"], 0)
        self.assertEqual(counters(lib, stats)["total_count"], 1)
        for h in (stats, pool, device):
            strata_alloc.check("destroy", lib.strata_resource_destroy(h))

    def test_defaults_without_a_gpu(self):
        lib = self.lib
        # No default resource exists: the counters read zero, and the hook returns NULL.
        self.assertEqual(strata_alloc.statistics(0)["allocated"]["total_count"], 0)
        self.assertIsNone(lib.strata_torch_alloc(0, 0, None))
        with self.assertRaises(ValueError):
            strata_alloc.configure("magic")
        strata_alloc.configure("arena", pool_size=1 << 30, log="/tmp/strata-python-test.csv")
        strata_alloc.configure()  # from the (empty) environment
        out = ctypes.c_void_p()
        status = lib.strata_default_resource(0, ctypes.byref(out))
        name = lib.strata_status_name(status).decode()
        if status == strata_alloc.OK:
            self.skipTest("a GPU is present: the no-GPU path does not apply")
        self.assertIn(name, ("STRATA_STATUS_NO_DRIVER", "STRATA_STATUS_NO_DEVICE"))
        self.assertIn("device 0", lib.strata_last_error_message().decode())


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    ok = result.wasSuccessful() and result.testsRun == 3
    print(f"python: {result.testsRun - len(result.failures) - len(result.errors)} passed, "
          f"{len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if ok else 1)
