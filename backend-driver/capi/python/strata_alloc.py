"""strata as the CUDA memory allocator of PyTorch and CuPy, through strata's C interface.

    import strata_alloc
    strata_alloc.configure(resource="stream-pool", pool_size=4 << 30)  # optional
    strata_alloc.use_with_torch()   # before PyTorch's first CUDA allocation
    strata_alloc.use_with_cupy()
    ...
    print(strata_alloc.statistics(0))

Both frameworks then allocate from one default resource per device, created on the device's
first allocation. Without `configure`, the environment configures it:

    STRATA_RESOURCE   cuda | async | pool | stream-pool (default) | arena | binning
    STRATA_POOL_SIZE  the pools' initial size, the arena's size, the async pool's priming
                      size: bytes (4GiB, 512M, 1048576) or a percentage of free memory (50%)
    STRATA_POOL_MAX   the most the pool may hold (same units)
    STRATA_LOG        write RMM's CSV log of every allocation and free to this path
                      (".dev<N>" is inserted before the extension)

The library is `libstrata_capi.so`: the path in STRATA_LIBRARY, else the one beside this file,
else the release build of the repository (`cargo build --release -p strata-capi`).
"""

import ctypes
import os
import pathlib
import threading

__all__ = [
    "KINDS",
    "Statistics",
    "StrataError",
    "configure",
    "library_path",
    "load",
    "statistics",
    "use_with_cupy",
    "use_with_torch",
]

#: strata_status values (see include/strata.h).
OK = 0
OUT_OF_MEMORY = 1

#: strata_kind values, by the names STRATA_RESOURCE takes.
KINDS = {"cuda": 0, "async": 1, "pool": 2, "stream-pool": 3, "arena": 4, "binning": 5}


class Statistics(ctypes.Structure):
    """strata_statistics: bytes and allocations, current, peak and total."""

    _fields_ = [
        ("current_bytes", ctypes.c_int64),
        ("peak_bytes", ctypes.c_int64),
        ("total_bytes", ctypes.c_int64),
        ("current_count", ctypes.c_int64),
        ("peak_count", ctypes.c_int64),
        ("total_count", ctypes.c_int64),
    ]

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in self._fields_}


class _DefaultConfig(ctypes.Structure):
    """strata_default_config."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("initial_size", ctypes.c_uint64),
        ("maximum_size", ctypes.c_uint64),
        ("log_path", ctypes.c_char_p),
    ]


class StrataError(RuntimeError):
    """A strata call failed: `status` is its strata_status name, the message strata's."""

    def __init__(self, call, status, message):
        self.call = call
        self.status = status
        super().__init__(f"{call}: {status}: {message}")


_lib = None
_lib_path = None
_lock = threading.Lock()


def library_path():
    """Where libstrata_capi.so is looked for (see the module's doc)."""
    env = os.environ.get("STRATA_LIBRARY")
    if env:
        return pathlib.Path(env)
    here = pathlib.Path(__file__).resolve().parent
    beside = here / "libstrata_capi.so"
    if beside.exists():
        return beside
    return here.parents[2] / "target" / "release" / "libstrata_capi.so"


def load(path=None):
    """Loads the library once (from `path`, else `library_path()`) and returns it."""
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            return _lib
        p = pathlib.Path(path) if path else library_path()
        lib = ctypes.CDLL(str(p))
        c_status = ctypes.c_int
        handle = ctypes.c_void_p
        sigs = {
            "strata_last_error_message": ([], ctypes.c_char_p),
            "strata_status_name": ([ctypes.c_int], ctypes.c_char_p),
            "strata_sim_device_create": ([ctypes.c_uint64, ctypes.POINTER(handle)], c_status),
            "strata_statistics_create": ([handle, ctypes.POINTER(handle)], c_status),
            "strata_pool_create": ([handle, ctypes.c_void_p, ctypes.POINTER(handle)], c_status),
            "strata_stream_pool_create": (
                [handle, ctypes.c_void_p, ctypes.POINTER(handle)], c_status),
            "strata_arena_create": ([handle, ctypes.c_void_p, ctypes.POINTER(handle)], c_status),
            "strata_cuda_memory_create": ([ctypes.c_int, ctypes.POINTER(handle)], c_status),
            "strata_async_create": (
                [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(handle)], c_status),
            "strata_stream_release": ([ctypes.c_void_p], c_status),
            "strata_resource_count": ([ctypes.POINTER(ctypes.c_size_t)], c_status),
            "strata_resource_destroy": ([handle], c_status),
            "strata_allocate": (
                [handle, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p,
                 ctypes.POINTER(ctypes.c_void_p)],
                c_status,
            ),
            "strata_deallocate": (
                [handle, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p],
                c_status,
            ),
            "strata_resource_statistics": ([handle, ctypes.POINTER(Statistics)], c_status),
            "strata_default_configure": ([ctypes.POINTER(_DefaultConfig)], c_status),
            "strata_default_resource": ([ctypes.c_int, ctypes.POINTER(handle)], c_status),
            "strata_default_statistics": (
                [ctypes.c_int, ctypes.POINTER(Statistics), ctypes.POINTER(Statistics)],
                c_status,
            ),
            "strata_torch_alloc": ([ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p],
                                   ctypes.c_void_p),
            "strata_torch_free": (
                [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p], None),
        }
        for name, (args, res) in sigs.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = res
        _lib, _lib_path = lib, p
        return lib


def check(call, status):
    """Raises StrataError for a failed status."""
    if status != OK:
        lib = load()
        raise StrataError(
            call,
            lib.strata_status_name(status).decode(),
            lib.strata_last_error_message().decode(errors="replace"),
        )


def configure(resource=None, pool_size=0, maximum=0, log=None):
    """Configures the default resources before the first one is created.

    With no `resource`, the environment is read now. `pool_size` and `maximum` are bytes (0:
    the default); `log` a CSV log path or None.
    """
    lib = load()
    if resource is None:
        check("strata_default_configure", lib.strata_default_configure(None))
        return
    if resource not in KINDS:
        raise ValueError(f"resource {resource!r}: expected one of {', '.join(KINDS)}")
    config = _DefaultConfig(
        KINDS[resource], int(pool_size), int(maximum),
        os.fsencode(log) if log is not None else None,
    )
    check("strata_default_configure", lib.strata_default_configure(ctypes.byref(config)))


def statistics(device=0):
    """The counters of `device`'s default resource: what was handed out ("allocated") and
    what strata holds from the device ("reserved"). All zero before its first allocation."""
    lib = load()
    allocated, reserved = Statistics(), Statistics()
    check(
        "strata_default_statistics",
        lib.strata_default_statistics(device, ctypes.byref(allocated), ctypes.byref(reserved)),
    )
    return {"allocated": allocated.as_dict(), "reserved": reserved.as_dict()}


def use_with_torch():
    """Makes strata PyTorch's CUDA allocator. Call it before PyTorch's first CUDA allocation
    (PyTorch refuses to swap an allocator that has been used)."""
    import torch

    load()
    allocator = torch.cuda.memory.CUDAPluggableAllocator(
        str(_lib_path), "strata_torch_alloc", "strata_torch_free"
    )
    torch.cuda.memory.change_current_allocator(allocator)
    return allocator


class _Block:
    """The owner of a CuPy allocation: frees it through strata when CuPy drops it."""

    __slots__ = ("handle", "ptr", "size", "stream")

    def __init__(self, handle, ptr, size, stream):
        self.handle, self.ptr, self.size, self.stream = handle, ptr, size, stream

    def __del__(self):
        lib = _lib
        if lib is None or not self.ptr:
            return
        status = lib.strata_deallocate(self.handle, self.ptr, self.size, 0, self.stream)
        if status != OK:
            # A finaliser cannot raise; strata also left the message for the thread.
            import sys

            msg = lib.strata_last_error_message().decode(errors="replace")
            print(f"strata: freeing a CuPy block failed: {msg}", file=sys.stderr)


_handles = {}


def _default_handle(device):
    h = _handles.get(device)
    if h is None:
        lib = load()
        out = ctypes.c_void_p()
        check("strata_default_resource", lib.strata_default_resource(device, ctypes.byref(out)))
        h = _handles[device] = out
    return h


def use_with_cupy():
    """Makes strata CuPy's allocator (`cupy.cuda.set_allocator`): each allocation is a
    `cupy.cuda.MemoryPointer` over `cupy.cuda.UnownedMemory` whose owner frees it through
    strata, on the stream it was allocated on."""
    import cupy

    lib = load()

    def malloc(size):
        device = cupy.cuda.runtime.getDevice()
        if size == 0:
            return cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(0, 0, None, device), 0)
        handle = _default_handle(device)
        stream = cupy.cuda.get_current_stream().ptr
        ptr = ctypes.c_void_p()
        status = lib.strata_allocate(handle, size, 0, stream, ctypes.byref(ptr))
        if status == OUT_OF_MEMORY:
            raise cupy.cuda.memory.OutOfMemoryError(size, -1)
        check("strata_allocate", status)
        owner = _Block(handle, ptr.value, size, stream)
        mem = cupy.cuda.UnownedMemory(ptr.value, size, owner, device)
        return cupy.cuda.MemoryPointer(mem, 0)

    cupy.cuda.set_allocator(malloc)
    return malloc
