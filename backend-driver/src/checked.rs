//! The checked layer: one function per driver call strata makes, each turning the call's
//! `CUresult` into a `Result` that names the call.
//!
//! This is the only module that calls into [`crate::sys`]; every function it calls is listed in
//! [`crate::loader::REQUIRED_SYMBOLS`] and probed when the driver is loaded, so cudarc's
//! "Missing symbol" panic cannot happen. (A unit test checks both rules over the source.)
//!
//! Preconditions shared by every function here: [`crate::driver`] returned `Ok` before (so
//! the library is loaded and every symbol exists; before that, cudarc panics). Functions that
//! take handles or addresses are `unsafe`: their handles must be live and their pointers valid
//! for the stated lengths.

use core::ffi::{c_int, c_void};
use core::ptr;

use crate::error::{DriverError, check};
use crate::sys::{
    self, CUcontext, CUdevice, CUdevice_attribute, CUdeviceptr, CUevent, CUmem_advise,
    CUmemAllocationHandleType, CUmemLocation, CUmemPool_attribute, CUmemPoolProps, CUmemoryPool,
    CUresult, CUstream,
};

type R<T> = Result<T, DriverError>;

// ---- loading and devices (no handles) -------------------------------------------------------

/// `cuDriverGetVersion`. May be called before `cuInit`.
pub(crate) fn driver_get_version() -> R<i32> {
    let mut v: c_int = 0;
    // SAFETY: the out-pointer is a live local; the loader checked the symbol exists.
    check("cuDriverGetVersion", unsafe {
        sys::cuDriverGetVersion(&mut v)
    })?;
    Ok(v)
}

/// `cuInit(0)`; returns the raw code so the loader can map `NO_DEVICE` and `STUB_LIBRARY`.
pub(crate) fn init_raw() -> CUresult {
    // SAFETY: cuInit takes no pointers; the loader checked the symbol exists.
    unsafe { sys::cuInit(0) }
}

/// `cuDeviceGetCount`.
pub(crate) fn device_get_count() -> R<i32> {
    let mut n: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceGetCount", unsafe { sys::cuDeviceGetCount(&mut n) })?;
    Ok(n)
}

/// `cuDeviceGet`.
pub(crate) fn device_get(ordinal: i32) -> R<CUdevice> {
    let mut d: CUdevice = 0;
    // SAFETY: the out-pointer is a live local; the driver validates the ordinal.
    check("cuDeviceGet", unsafe { sys::cuDeviceGet(&mut d, ordinal) })?;
    Ok(d)
}

/// `cuDeviceGetName`, decoded lossily as UTF-8.
pub(crate) fn device_get_name(dev: CUdevice) -> R<String> {
    let mut buf = [0 as core::ffi::c_char; 256];
    // SAFETY: the buffer is live and its length is passed; the driver writes a NUL-terminated
    // string of at most that length.
    check("cuDeviceGetName", unsafe {
        sys::cuDeviceGetName(buf.as_mut_ptr(), buf.len() as c_int, dev)
    })?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `cuDeviceTotalMem_v2`.
pub(crate) fn device_total_mem(dev: CUdevice) -> R<u64> {
    let mut bytes: usize = 0;
    // SAFETY: the out-pointer is a live local; the driver validates the device.
    check("cuDeviceTotalMem_v2", unsafe {
        sys::cuDeviceTotalMem_v2(&mut bytes, dev)
    })?;
    Ok(bytes as u64)
}

/// `cuDeviceGetAttribute`.
pub(crate) fn device_get_attribute(dev: CUdevice, attr: CUdevice_attribute) -> R<i32> {
    let mut v: c_int = 0;
    // SAFETY: the out-pointer is a live local; the driver validates device and attribute.
    check("cuDeviceGetAttribute", unsafe {
        sys::cuDeviceGetAttribute(&mut v, attr, dev)
    })?;
    Ok(v)
}

/// `cuDevicePrimaryCtxRetain`.
pub(crate) fn primary_ctx_retain(dev: CUdevice) -> R<CUcontext> {
    let mut ctx: CUcontext = ptr::null_mut();
    // SAFETY: the out-pointer is a live local; the driver validates the device.
    check("cuDevicePrimaryCtxRetain", unsafe {
        sys::cuDevicePrimaryCtxRetain(&mut ctx, dev)
    })?;
    Ok(ctx)
}

/// `cuDeviceGetDefaultMemPool`.
pub(crate) fn device_get_default_mem_pool(dev: CUdevice) -> R<CUmemoryPool> {
    let mut pool: CUmemoryPool = ptr::null_mut();
    // SAFETY: the out-pointer is a live local; the driver validates the device.
    check("cuDeviceGetDefaultMemPool", unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, dev)
    })?;
    Ok(pool)
}

// ---- contexts --------------------------------------------------------------------------------

/// `cuCtxGetCurrent` (null when the thread has none).
pub(crate) fn ctx_get_current() -> R<CUcontext> {
    let mut ctx: CUcontext = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuCtxGetCurrent", unsafe { sys::cuCtxGetCurrent(&mut ctx) })?;
    Ok(ctx)
}

/// `cuCtxSetCurrent`.
///
/// # Safety
///
/// `ctx` is null or a live context (a retained primary context).
pub(crate) unsafe fn ctx_set_current(ctx: CUcontext) -> R<()> {
    // SAFETY: the caller passes null or a live context.
    check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(ctx) })
}

/// `cuCtxSynchronize` on the current context.
pub(crate) fn ctx_synchronize() -> R<()> {
    // SAFETY: no pointers; acts on the calling thread's current context.
    check("cuCtxSynchronize", unsafe { sys::cuCtxSynchronize() })
}

/// `cuMemGetInfo_v2` for the current context's device: `(free, total)`.
pub(crate) fn mem_get_info() -> R<(u64, u64)> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both out-pointers are live locals.
    check("cuMemGetInfo_v2", unsafe {
        sys::cuMemGetInfo_v2(&mut free, &mut total)
    })?;
    Ok((free as u64, total as u64))
}

// ---- plain, managed and pinned-host memory ---------------------------------------------------

/// `cuMemAlloc_v2` in the current context.
pub(crate) fn mem_alloc(size: usize) -> R<CUdeviceptr> {
    let mut p: CUdeviceptr = 0;
    // SAFETY: the out-pointer is a live local; the allocation is owned by the caller.
    check("cuMemAlloc_v2", unsafe { sys::cuMemAlloc_v2(&mut p, size) })?;
    Ok(p)
}

/// `cuMemFree_v2`.
///
/// # Safety
///
/// `p` came from `cuMemAlloc_v2` or `cuMemAllocManaged`, is not freed yet, and nothing uses it
/// afterwards.
pub(crate) unsafe fn mem_free(p: CUdeviceptr) -> R<()> {
    // SAFETY: the caller owns the allocation and gives it up.
    check("cuMemFree_v2", unsafe { sys::cuMemFree_v2(p) })
}

/// `cuMemAllocManaged` with `CU_MEM_ATTACH_GLOBAL`.
pub(crate) fn mem_alloc_managed(size: usize) -> R<CUdeviceptr> {
    let mut p: CUdeviceptr = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuMemAllocManaged", unsafe {
        sys::cuMemAllocManaged(
            &mut p,
            size,
            sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL as u32,
        )
    })?;
    Ok(p)
}

/// `cuMemHostAlloc` with `CU_MEMHOSTALLOC_PORTABLE` (pinned for every context).
pub(crate) fn mem_host_alloc(size: usize) -> R<*mut c_void> {
    let mut p: *mut c_void = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuMemHostAlloc", unsafe {
        sys::cuMemHostAlloc(&mut p, size, sys::CU_MEMHOSTALLOC_PORTABLE)
    })?;
    Ok(p)
}

/// `cuMemFreeHost`.
///
/// # Safety
///
/// `p` came from `cuMemHostAlloc`, is not freed yet, and nothing uses it afterwards.
pub(crate) unsafe fn mem_free_host(p: *mut c_void) -> R<()> {
    // SAFETY: the caller owns the allocation and gives it up.
    check("cuMemFreeHost", unsafe { sys::cuMemFreeHost(p) })
}

/// `cuMemAdvise_v2`.
///
/// # Safety
///
/// `location` names a valid location. (The driver validates the address range: advice on
/// memory that is not managed returns an error and changes no data.)
pub(crate) unsafe fn mem_advise(
    p: CUdeviceptr,
    len: usize,
    advice: CUmem_advise,
    location: CUmemLocation,
) -> R<()> {
    // SAFETY: plain values only; advice never writes the memory's contents.
    check("cuMemAdvise_v2", unsafe {
        sys::cuMemAdvise_v2(p, len, advice, location)
    })
}

/// `cuMemPrefetchAsync_v2`.
///
/// # Safety
///
/// `stream` is a live stream handle (or a special handle) of the current context.
pub(crate) unsafe fn mem_prefetch_async(
    p: CUdeviceptr,
    len: usize,
    location: CUmemLocation,
    stream: CUstream,
) -> R<()> {
    // SAFETY: the caller passes a live stream; prefetching migrates pages, never changes data.
    check("cuMemPrefetchAsync_v2", unsafe {
        sys::cuMemPrefetchAsync_v2(p, len, location, 0, stream)
    })
}

// ---- streams and events ----------------------------------------------------------------------

/// `cuStreamCreate` in the current context.
pub(crate) fn stream_create(flags: u32) -> R<CUstream> {
    let mut s: CUstream = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuStreamCreate", unsafe {
        sys::cuStreamCreate(&mut s, flags)
    })?;
    Ok(s)
}

/// `cuStreamDestroy_v2`.
///
/// # Safety
///
/// `s` is a live stream this crate created, and nothing uses it afterwards.
pub(crate) unsafe fn stream_destroy(s: CUstream) -> R<()> {
    // SAFETY: the caller owns the stream and gives it up.
    check("cuStreamDestroy_v2", unsafe { sys::cuStreamDestroy_v2(s) })
}

/// `cuStreamSynchronize`.
///
/// # Safety
///
/// `s` is a live stream handle or a special handle.
pub(crate) unsafe fn stream_synchronize(s: CUstream) -> R<()> {
    // SAFETY: the caller passes a live stream.
    check("cuStreamSynchronize", unsafe {
        sys::cuStreamSynchronize(s)
    })
}

/// `cuStreamQuery`: `Ok(true)` when all work is done, `Ok(false)` while some is pending.
///
/// # Safety
///
/// `s` is a live stream handle or a special handle.
pub(crate) unsafe fn stream_query(s: CUstream) -> R<bool> {
    // SAFETY: the caller passes a live stream.
    match unsafe { sys::cuStreamQuery(s) } {
        CUresult::CUDA_SUCCESS => Ok(true),
        CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        code => Err(DriverError::Call {
            call: "cuStreamQuery",
            code,
        }),
    }
}

/// `cuStreamWaitEvent`.
///
/// # Safety
///
/// `s` is a live stream handle (or a special handle) and `e` a live event.
pub(crate) unsafe fn stream_wait_event(s: CUstream, e: CUevent) -> R<()> {
    // SAFETY: the caller passes live handles.
    check("cuStreamWaitEvent", unsafe {
        sys::cuStreamWaitEvent(s, e, 0)
    })
}

/// `cuEventCreate` in the current context.
pub(crate) fn event_create(flags: u32) -> R<CUevent> {
    let mut e: CUevent = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuEventCreate", unsafe {
        sys::cuEventCreate(&mut e, flags)
    })?;
    Ok(e)
}

/// `cuEventDestroy_v2`.
///
/// # Safety
///
/// `e` is a live event this crate created, and nothing uses it afterwards.
pub(crate) unsafe fn event_destroy(e: CUevent) -> R<()> {
    // SAFETY: the caller owns the event and gives it up.
    check("cuEventDestroy_v2", unsafe { sys::cuEventDestroy_v2(e) })
}

/// `cuEventRecord`.
///
/// # Safety
///
/// `e` is a live event and `s` a live stream handle (or a special handle) of its context.
pub(crate) unsafe fn event_record(e: CUevent, s: CUstream) -> R<()> {
    // SAFETY: the caller passes live handles.
    check("cuEventRecord", unsafe { sys::cuEventRecord(e, s) })
}

/// `cuEventSynchronize`.
///
/// # Safety
///
/// `e` is a live event.
pub(crate) unsafe fn event_synchronize(e: CUevent) -> R<()> {
    // SAFETY: the caller passes a live event.
    check("cuEventSynchronize", unsafe { sys::cuEventSynchronize(e) })
}

/// `cuEventQuery`: `Ok(true)` when the recorded work is done.
///
/// # Safety
///
/// `e` is a live event.
pub(crate) unsafe fn event_query(e: CUevent) -> R<bool> {
    // SAFETY: the caller passes a live event.
    match unsafe { sys::cuEventQuery(e) } {
        CUresult::CUDA_SUCCESS => Ok(true),
        CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        code => Err(DriverError::Call {
            call: "cuEventQuery",
            code,
        }),
    }
}

// ---- copies and sets -------------------------------------------------------------------------

/// `cuMemcpyHtoDAsync_v2`.
///
/// # Safety
///
/// `dst` is device memory valid for `len` bytes, `src` host memory valid for reads of `len`
/// bytes until the copy completes, and `s` a live stream handle of the current context.
pub(crate) unsafe fn memcpy_htod_async(
    dst: CUdeviceptr,
    src: *const c_void,
    len: usize,
    s: CUstream,
) -> R<()> {
    // SAFETY: the caller guarantees both ranges and the stream.
    check("cuMemcpyHtoDAsync_v2", unsafe {
        sys::cuMemcpyHtoDAsync_v2(dst, src, len, s)
    })
}

/// `cuMemcpyDtoHAsync_v2`.
///
/// # Safety
///
/// `src` is device memory valid for `len` bytes, `dst` host memory valid for writes of `len`
/// bytes until the copy completes and not read before, and `s` a live stream handle.
pub(crate) unsafe fn memcpy_dtoh_async(
    dst: *mut c_void,
    src: CUdeviceptr,
    len: usize,
    s: CUstream,
) -> R<()> {
    // SAFETY: the caller guarantees both ranges and the stream.
    check("cuMemcpyDtoHAsync_v2", unsafe {
        sys::cuMemcpyDtoHAsync_v2(dst, src, len, s)
    })
}

/// `cuMemcpyDtoDAsync_v2`.
///
/// # Safety
///
/// Both are device ranges valid for `len` bytes, and `s` a live stream handle.
pub(crate) unsafe fn memcpy_dtod_async(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    len: usize,
    s: CUstream,
) -> R<()> {
    // SAFETY: the caller guarantees both ranges and the stream.
    check("cuMemcpyDtoDAsync_v2", unsafe {
        sys::cuMemcpyDtoDAsync_v2(dst, src, len, s)
    })
}

/// `cuMemsetD8Async`.
///
/// # Safety
///
/// `dst` is device memory valid for `len` bytes, and `s` a live stream handle.
pub(crate) unsafe fn memset_d8_async(
    dst: CUdeviceptr,
    value: u8,
    len: usize,
    s: CUstream,
) -> R<()> {
    // SAFETY: the caller guarantees the range and the stream.
    check("cuMemsetD8Async", unsafe {
        sys::cuMemsetD8Async(dst, value, len, s)
    })
}

// ---- memory pools ----------------------------------------------------------------------------

/// `cuMemPoolCreate`.
pub(crate) fn mem_pool_create(props: &CUmemPoolProps) -> R<CUmemoryPool> {
    let mut pool: CUmemoryPool = ptr::null_mut();
    // SAFETY: the out-pointer is a live local and `props` a live, fully initialised struct.
    check("cuMemPoolCreate", unsafe {
        sys::cuMemPoolCreate(&mut pool, props)
    })?;
    Ok(pool)
}

/// `cuMemPoolDestroy`.
///
/// # Safety
///
/// `pool` is a live pool this crate created, and nothing allocates from it afterwards.
pub(crate) unsafe fn mem_pool_destroy(pool: CUmemoryPool) -> R<()> {
    // SAFETY: the caller owns the pool and gives it up.
    check("cuMemPoolDestroy", unsafe { sys::cuMemPoolDestroy(pool) })
}

/// `cuMemPoolGetAttribute` for a 64-bit attribute (thresholds and byte counters).
///
/// # Safety
///
/// `pool` is a live pool; `attr` is one whose value is a `cuuint64_t`.
pub(crate) unsafe fn mem_pool_get_u64(pool: CUmemoryPool, attr: CUmemPool_attribute) -> R<u64> {
    let mut v: u64 = 0;
    // SAFETY: the value pointer is a live u64, the size the caller's attribute takes.
    check("cuMemPoolGetAttribute", unsafe {
        sys::cuMemPoolGetAttribute(pool, attr, (&mut v as *mut u64).cast())
    })?;
    Ok(v)
}

/// `cuMemPoolSetAttribute` for a 64-bit attribute.
///
/// # Safety
///
/// `pool` is a live pool; `attr` is one whose value is a `cuuint64_t`.
pub(crate) unsafe fn mem_pool_set_u64(
    pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: u64,
) -> R<()> {
    let mut v = value;
    // SAFETY: the value pointer is a live u64, the size the caller's attribute takes.
    check("cuMemPoolSetAttribute", unsafe {
        sys::cuMemPoolSetAttribute(pool, attr, (&mut v as *mut u64).cast())
    })
}

/// `cuMemPoolTrimTo`.
///
/// # Safety
///
/// `pool` is a live pool.
pub(crate) unsafe fn mem_pool_trim_to(pool: CUmemoryPool, keep: usize) -> R<()> {
    // SAFETY: the caller passes a live pool; trimming releases only unused memory.
    check("cuMemPoolTrimTo", unsafe {
        sys::cuMemPoolTrimTo(pool, keep)
    })
}

/// `cuMemPoolExportToShareableHandle` for a POSIX file descriptor.
///
/// # Safety
///
/// `pool` is a live pool created with the POSIX-fd handle type.
pub(crate) unsafe fn mem_pool_export_posix_fd(pool: CUmemoryPool) -> R<c_int> {
    let mut fd: c_int = -1;
    // SAFETY: for the POSIX-fd handle type the driver writes one `int` through the pointer,
    // which points at a live local.
    check("cuMemPoolExportToShareableHandle", unsafe {
        sys::cuMemPoolExportToShareableHandle(
            (&mut fd as *mut c_int).cast(),
            pool,
            CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    })?;
    Ok(fd)
}

/// `cuMemAllocFromPoolAsync`.
///
/// # Safety
///
/// `pool` is a live pool and `s` a live stream handle (or a special handle).
pub(crate) unsafe fn mem_alloc_from_pool_async(
    size: usize,
    pool: CUmemoryPool,
    s: CUstream,
) -> R<CUdeviceptr> {
    let mut p: CUdeviceptr = 0;
    // SAFETY: the out-pointer is a live local; the caller passes live handles.
    check("cuMemAllocFromPoolAsync", unsafe {
        sys::cuMemAllocFromPoolAsync(&mut p, size, pool, s)
    })?;
    Ok(p)
}

/// `cuMemFreeAsync`.
///
/// # Safety
///
/// `p` came from a stream-ordered allocation, is not freed yet, and nothing enqueued after
/// this on `s` (or not ordered before it) uses it; `s` is a live stream handle.
pub(crate) unsafe fn mem_free_async(p: CUdeviceptr, s: CUstream) -> R<()> {
    // SAFETY: the caller owns the allocation and gives it up in stream order.
    check("cuMemFreeAsync", unsafe { sys::cuMemFreeAsync(p, s) })
}

#[cfg(test)]
mod tests {
    /// Every raw call goes through this module, each `check("name", …)` names the function it
    /// wraps, and every function called is probed by the loader.
    #[test]
    fn every_sys_call_is_named_and_probed() {
        let src = include_str!("checked.rs");
        let body = &src[..src.find("#[cfg(test)]").expect("test module")];
        // a driver function: `sys::cu` then an upper-case letter (not `sys::culib`)
        let driver_calls = |text: &str| -> Vec<(usize, String)> {
            text.match_indices("sys::cu")
                .filter(|(i, _)| text[i + 7..].starts_with(|c: char| c.is_ascii_uppercase()))
                .map(|(i, _)| {
                    let name = text[i + 5..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    (i, name)
                })
                .collect()
        };
        let calls = driver_calls(body);
        assert!(calls.len() > 30, "found {} calls", calls.len());
        for (i, name) in &calls {
            assert!(
                crate::loader::REQUIRED_SYMBOLS.contains(&name.as_str()),
                "{name} is called but not probed by the loader"
            );
            // the nearest check("…") before the call names it (except the raw-code calls)
            let before = &body[..*i];
            let named = before
                .rfind("check(\"")
                .map(|j| &before[j + 7..])
                .and_then(|s| s.split('"').next());
            let raw = ["cuInit", "cuStreamQuery", "cuEventQuery"];
            if !raw.contains(&name.as_str()) {
                assert_eq!(named, Some(name.as_str()), "check() names the wrong call");
            }
        }
        for sym in crate::loader::REQUIRED_SYMBOLS {
            assert!(
                calls.iter().any(|(_, n)| n == sym),
                "{sym} is probed but never called"
            );
        }
        for (file, text) in [
            ("lib.rs", include_str!("lib.rs")),
            ("loader.rs", include_str!("loader.rs")),
            ("device.rs", include_str!("device.rs")),
            ("stream.rs", include_str!("stream.rs")),
            ("memory.rs", include_str!("memory.rs")),
            ("pool.rs", include_str!("pool.rs")),
            ("ordered.rs", include_str!("ordered.rs")),
            ("live.rs", include_str!("live.rs")),
            ("error.rs", include_str!("error.rs")),
            ("containers.rs", include_str!("containers.rs")),
            ("defaults.rs", include_str!("defaults.rs")),
        ] {
            assert!(
                driver_calls(text).is_empty(),
                "{file} calls the driver directly instead of through checked"
            );
        }
    }
}
