//! # strata-capi
//!
//! strata's C interface: a `cdylib` (`libstrata_capi.so`) and a `staticlib`
//! (`libstrata_capi.a`) with the header `include/strata.h`, generated from this crate by
//! cbindgen and checked against it by the test `tests/header.rs` (so it cannot drift).
//!
//! - **Handles.** Resources are opaque `strata_resource*` handles. A handle is a registry
//!   slot and a generation number, never a pointer: a destroyed, made-up or stale handle is
//!   reported as `STRATA_STATUS_UNKNOWN_HANDLE`, never dereferenced.
//! - **Resources.** On the simulated device (`strata_sim_device_create`: an address space with
//!   a capacity and no memory behind it, for tests anywhere) or on a CUDA device
//!   (`strata_cuda_memory_create`, `strata_async_create`); over any resource, the pool, the
//!   stream-ordered pool, the arena and binning; over any resource, the adaptors statistics,
//!   limiting and logging (RMM's CSV log).
//! - **Calls.** Every function returns a `strata_status` (except the two PyTorch hooks and
//!   the two message functions, whose signatures are fixed) and never unwinds: a panic (none is
//!   expected) is caught and reported as `STRATA_STATUS_INTERNAL`. A failed call changes
//!   nothing and leaves a message for `strata_last_error_message()` on the calling thread.
//! - **Streams** are `void*` (`CUstream` / `cudaStream_t`; any value on the simulated
//!   device). A CUDA stream is adopted on first use and must stay alive until
//!   `strata_stream_release`.
//! - **PyTorch and CuPy.** `strata_torch_alloc` / `strata_torch_free` are the entry points of
//!   `torch.cuda.memory.CUDAPluggableAllocator`; they allocate from a per-device default
//!   resource configured by `STRATA_RESOURCE`, `STRATA_POOL_SIZE`, `STRATA_POOL_MAX`,
//!   `STRATA_LOG` or `strata_default_configure`. `python/strata_alloc.py` installs them in
//!   PyTorch and CuPy.
//!
//! ```
//! use std::ptr;
//! use strata_capi::*;
//!
//! let mut device = ptr::null_mut();
//! let mut pool = ptr::null_mut();
//! let mut p = ptr::null_mut();
//! // SAFETY: every out-pointer is valid; the stream is a simulated one.
//! unsafe {
//!     assert_eq!(strata_sim_device_create(1 << 30, &mut device), StrataStatus::Ok);
//!     assert_eq!(strata_pool_create(device, ptr::null(), &mut pool), StrataStatus::Ok);
//!     assert_eq!(strata_allocate(pool, 4096, 0, ptr::null_mut(), &mut p), StrataStatus::Ok);
//!     assert_eq!(strata_deallocate(pool, p, 4096, 0, ptr::null_mut()), StrataStatus::Ok);
//!     assert_eq!(
//!         strata_deallocate(pool, p, 4096, 0, ptr::null_mut()),
//!         StrataStatus::DoubleFree
//!     );
//!     assert_eq!(strata_resource_destroy(pool), StrataStatus::Ok);
//!     assert_eq!(strata_resource_destroy(pool), StrataStatus::UnknownHandle);
//!     assert_eq!(strata_resource_destroy(device), StrataStatus::Ok);
//! }
//! ```

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use strata_core::DEFAULT_ALIGNMENT;

mod defaults;
mod error;
mod registry;
mod resources;
mod streams;

pub use defaults::{StrataDefaultConfig, StrataKind};
pub use error::StrataStatus;
pub use resources::{
    StrataArenaOptions, StrataAsyncOptions, StrataBinningOptions, StrataPoolOptions,
};

use error::{Failure, guard};
use registry::Registry;
use resources::Entry;

/// An opaque resource handle (`strata_resource*` in C). Never dereference it: its value is a
/// registry slot and a generation number.
#[derive(Debug)]
pub struct StrataResource {
    _opaque: [u8; 0],
}

/// Counters of a statistics adaptor (`strata_resource_statistics`), RMM's
/// `statistics_resource_adaptor` counters: bytes as requested, and allocations.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrataStatistics {
    /// Bytes allocated and not yet freed.
    pub current_bytes: i64,
    /// The most bytes allocated at once.
    pub peak_bytes: i64,
    /// All bytes ever allocated.
    pub total_bytes: i64,
    /// Allocations not yet freed.
    pub current_count: i64,
    /// The most allocations live at once.
    pub peak_count: i64,
    /// All allocations ever made.
    pub total_count: i64,
}

/// Every live handle.
pub(crate) static HANDLES: Registry<Entry> = Registry::new();

fn handle_value(h: *const StrataResource) -> usize {
    h as usize
}

fn lookup(h: *const StrataResource) -> Result<Arc<Entry>, Failure> {
    HANDLES
        .get(handle_value(h))
        .map_err(|why| defaults::lookup_failure(handle_value(h), why))
}

fn register(e: Entry) -> Result<*mut StrataResource, Failure> {
    HANDLES
        .insert(Arc::new(e))
        .map(ptr::without_provenance_mut)
        .ok_or_else(|| Failure::new(StrataStatus::OutOfMemory, "no handle slot left"))
}

fn require_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(Failure::invalid(format!("{what} is null")))
    } else {
        Ok(())
    }
}

/// Writes `value` to `out`, checked non-null before.
///
/// # Safety
///
/// `out` is valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: the caller guarantees that `out` is valid for writes.
    unsafe { out.write(value) }
}

/// Creates a resource from an optional options struct and an upstream handle, and writes its
/// handle to `out`.
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
unsafe fn create_over<O: Copy + Default>(
    upstream: *mut StrataResource,
    options: *const O,
    out: *mut *mut StrataResource,
    build: impl FnOnce(&Entry, &O) -> Result<Entry, Failure>,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let up = lookup(upstream)?;
        let o = if options.is_null() {
            O::default()
        } else {
            // SAFETY: non-null, and the caller guarantees it is valid for a read.
            unsafe { options.read() }
        };
        let h = register(build(&up, &o)?)?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// The message of the last failed call on the calling thread (an empty string when none
/// failed). The pointer stays valid until the next failed call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn strata_last_error_message() -> *const c_char {
    error::last_error_ptr()
}

/// The name of a status (`"STRATA_STATUS_OUT_OF_MEMORY"`), or `"STRATA_STATUS_UNKNOWN"` for a
/// number that is none. The string is static.
#[unsafe(no_mangle)]
pub extern "C" fn strata_status_name(status: c_int) -> *const c_char {
    StrataStatus::ALL
        .iter()
        .find(|s| **s as c_int == status)
        .map_or(c"STRATA_STATUS_UNKNOWN".as_ptr(), |s| s.name().as_ptr())
}

/// Creates a simulated device of `capacity` bytes: addresses from a large virtual window with
/// nothing behind them (never dereference them), first fit, at most about 1000 live ranges.
/// Use it as the upstream of pools, arenas and bins to test a program without a GPU.
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_sim_device_create(
    capacity: u64,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let h = register(resources::sim_device(capacity))?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Writes the number of CUDA devices to `count`.
///
/// Fails with `STRATA_STATUS_NO_DRIVER` where the CUDA driver cannot be loaded.
///
/// # Safety
///
/// `count` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_cuda_device_count(count: *mut c_int) -> StrataStatus {
    guard(|| {
        require_out(count, "count")?;
        let n = strata_driver::Device::count()?;
        // SAFETY: `count` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(count, c_int::try_from(n).unwrap_or(c_int::MAX)) };
        Ok(())
    })
}

/// Creates `cuMemAlloc` / `cuMemFree` memory of CUDA device `device` (RMM's
/// `cuda_memory_resource`): synchronous, no caching; the usual upstream of the pools.
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_cuda_memory_create(
    device: c_int,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let h = register(resources::cuda_memory(resources::device(device)?))?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Creates the driver's stream-ordered allocator (`cuMemAllocFromPoolAsync`) on a private
/// memory pool of CUDA device `device` (RMM's `cuda_async_memory_resource`). `options` may
/// be NULL: RMM's defaults (no priming, keep all memory, no maximum).
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_async_create(
    device: c_int,
    options: *const StrataAsyncOptions,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let o = if options.is_null() {
            StrataAsyncOptions {
                release_threshold: u64::MAX,
                ..StrataAsyncOptions::default()
            }
        } else {
            // SAFETY: non-null, and the caller guarantees it is valid for a read.
            unsafe { options.read() }
        };
        let h = register(resources::async_pool(resources::device(device)?, &o)?)?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Creates a coalescing pool (TLSF good fit, RMM's growth policy) over `upstream`. Streams
/// are ignored: a block freed on one stream is reused at once on any, so use it where all
/// work is on one stream (else the stream-ordered pool). `options` may be NULL.
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_pool_create(
    upstream: *mut StrataResource,
    options: *const StrataPoolOptions,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the caller's guarantees are `create_over`'s.
    unsafe { create_over(upstream, options, out, resources::pool) }
}

/// Creates a stream-ordered pool over `upstream`: one heap per stream; a block freed on a
/// stream is reused on it at once, and another stream takes it only after waiting for that
/// stream's work (a CUDA event on a device). `options` may be NULL.
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_stream_pool_create(
    upstream: *mut StrataResource,
    options: *const StrataPoolOptions,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the caller's guarantees are `create_over`'s.
    unsafe { create_over(upstream, options, out, resources::stream_pool) }
}

/// Creates RMM's arena over `upstream`: one upstream allocation of `options->arena_size`
/// bytes (it never grows), a sub-arena per stream. `options` is required.
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_arena_create(
    upstream: *mut StrataResource,
    options: *const StrataArenaOptions,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the caller's guarantees are `create_over`'s.
    unsafe { create_over(upstream, options, out, resources::arena) }
}

/// Creates size-class bins over `upstream` (RMM's `binning_memory_resource`): requests up to
/// the largest bin come from fixed-size bins, larger ones from `upstream`. Streams are
/// ignored. `options` may be NULL (bins of 1 KiB ..= 4 MiB).
///
/// # Safety
///
/// `options` is null or valid for a read; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_binning_create(
    upstream: *mut StrataResource,
    options: *const StrataBinningOptions,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the caller's guarantees are `create_over`'s.
    unsafe { create_over(upstream, options, out, resources::binning) }
}

/// Wraps `upstream` in a statistics adaptor: current, peak and total bytes and allocations,
/// read with `strata_resource_statistics` (from this handle and adaptors over it).
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_statistics_create(
    upstream: *mut StrataResource,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the options pointer is null; the caller guarantees `out`.
    unsafe {
        create_over(upstream, ptr::null::<()>(), out, |up, ()| {
            Ok(resources::statistics(up))
        })
    }
}

/// Wraps `upstream` in a limiting adaptor: allocations beyond `limit` bytes in use fail with
/// `STRATA_STATUS_OUT_OF_MEMORY`.
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_limiting_create(
    upstream: *mut StrataResource,
    limit: u64,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    // SAFETY: the options pointer is null; the caller guarantees `out`.
    unsafe {
        create_over(upstream, ptr::null::<()>(), out, |up, ()| {
            Ok(resources::limiting(up, limit))
        })
    }
}

/// Wraps `upstream` in a logging adaptor writing RMM's CSV log
/// (`Thread,Time,Action,Pointer,Size,Stream`) to `path`, created or truncated. The log is
/// buffered: `strata_logging_flush` writes it out (destroying the last handle that uses it
/// does too).
///
/// # Safety
///
/// `path` is a NUL-terminated string; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_logging_create(
    upstream: *mut StrataResource,
    path: *const c_char,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        // SAFETY: the caller guarantees a NUL-terminated string.
        let path = unsafe { resources::path_arg(path) }?;
        let up = lookup(upstream)?;
        let h = register(resources::logging(&up, path)?)?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Destroys a handle. The resource itself goes when no adaptor or resource created over it is
/// left (they hold it), and then gives its memory back to its upstream: blocks still allocated
/// from it are then invalid. A default resource (`strata_default_resource`) cannot be
/// destroyed (`STRATA_STATUS_INVALID_ARGUMENT`).
#[unsafe(no_mangle)]
pub extern "C" fn strata_resource_destroy(resource: *mut StrataResource) -> StrataStatus {
    guard(|| {
        let h = handle_value(resource);
        let removed = HANDLES
            .remove_if(h, |e| {
                if e.pinned {
                    Err(Failure::invalid(
                        "a default resource lives as long as the process and cannot be destroyed",
                    ))
                } else {
                    Ok(())
                }
            })
            .map_err(|why| defaults::lookup_failure(h, why))??;
        drop(removed);
        Ok(())
    })
}

/// Allocates `size` bytes aligned to `alignment` (0: 256; else a power of two) for use on
/// `stream`, and writes the address to `ptr`. The block is usable at once by work enqueued
/// later on `stream`.
///
/// Errors: `STRATA_STATUS_INVALID_ARGUMENT` for a zero size or a bad alignment,
/// `STRATA_STATUS_OUT_OF_MEMORY`, `STRATA_STATUS_UNKNOWN_HANDLE`, a driver error.
///
/// # Safety
///
/// `ptr` is valid for a write. For a CUDA resource, `stream` is NULL, `cudaStreamLegacy`,
/// `cudaStreamPerThread` or a live stream of the device's primary context, which stays alive
/// until `strata_stream_release` (strata adopts it on first use).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_allocate(
    resource: *mut StrataResource,
    size: u64,
    alignment: u64,
    stream: *mut c_void,
    ptr: *mut *mut c_void,
) -> StrataStatus {
    guard(|| {
        require_out(ptr, "ptr")?;
        let e = lookup(resource)?;
        // SAFETY: the caller's guarantee on `stream`.
        let key = unsafe { streams::key_for(e.device.as_ref(), stream) };
        let align = if alignment == 0 {
            DEFAULT_ALIGNMENT
        } else {
            alignment
        };
        let addr = e.mr.allocate(size, align, key)?;
        // SAFETY: `ptr` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(ptr, ptr::without_provenance_mut(addr as usize)) };
        Ok(())
    })
}

/// Frees the block at `ptr`, allocated with `size` and `alignment`, last used on `stream` (the
/// free is ordered after the work enqueued on it so far).
///
/// Errors: `STRATA_STATUS_DOUBLE_FREE`, `STRATA_STATUS_NOT_ALLOCATED`,
/// `STRATA_STATUS_SIZE_MISMATCH` for a bad free, which changes nothing;
/// `STRATA_STATUS_INVALID_ARGUMENT` for a NULL `ptr`.
///
/// # Safety
///
/// As `strata_allocate` for `stream`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_deallocate(
    resource: *mut StrataResource,
    ptr: *mut c_void,
    size: u64,
    alignment: u64,
    stream: *mut c_void,
) -> StrataStatus {
    guard(|| {
        if ptr.is_null() {
            return Err(Failure::invalid("ptr is null"));
        }
        let e = lookup(resource)?;
        // SAFETY: the caller's guarantee on `stream`.
        let key = unsafe { streams::key_for(e.device.as_ref(), stream) };
        let align = if alignment == 0 {
            DEFAULT_ALIGNMENT
        } else {
            alignment
        };
        e.mr.deallocate(ptr as usize as u64, size, align, key)?;
        Ok(())
    })
}

/// Writes the counters of the nearest statistics adaptor at or above `resource` (the handle of
/// `strata_statistics_create`, or an adaptor over it) to `out`.
/// `STRATA_STATUS_UNSUPPORTED` when there is none.
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_resource_statistics(
    resource: *mut StrataResource,
    out: *mut StrataStatistics,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let e = lookup(resource)?;
        let stats = e.stats.as_ref().ok_or_else(|| {
            Failure::new(
                StrataStatus::Unsupported,
                format!(
                    "this {} resource has no statistics adaptor: wrap it with strata_statistics_create",
                    e.kind
                ),
            )
        })?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, StrataStatistics::from(stats.stats())) };
        Ok(())
    })
}

/// Flushes the log of the nearest logging adaptor at or above `resource`.
/// `STRATA_STATUS_UNSUPPORTED` when there is none; `STRATA_STATUS_IO_ERROR` when writing
/// failed (the first error met while logging, or the flush's own).
#[unsafe(no_mangle)]
pub extern "C" fn strata_logging_flush(resource: *mut StrataResource) -> StrataStatus {
    guard(|| {
        let e = lookup(resource)?;
        let log = e.log.as_ref().ok_or_else(|| {
            Failure::new(
                StrataStatus::Unsupported,
                format!("this {} resource has no logging adaptor", e.kind),
            )
        })?;
        log.flush()?;
        Ok(())
    })
}

/// Writes the number of live handles (default resources included) to `count`.
///
/// # Safety
///
/// `count` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_resource_count(count: *mut usize) -> StrataStatus {
    guard(|| {
        require_out(count, "count")?;
        // SAFETY: `count` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(count, HANDLES.len()) };
        Ok(())
    })
}

/// Releases a CUDA stream that strata adopted: strata waits for its work, hands blocks freed
/// on it in stream-ordered resources to their shared stream, and forgets it. Call it before
/// destroying a stream that was passed to strata. A stream strata does not hold is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn strata_stream_release(stream: *mut c_void) -> StrataStatus {
    guard(|| {
        streams::release(stream);
        Ok(())
    })
}

/// Configures the per-device default resources (`strata_default_resource`, the PyTorch and
/// CuPy hooks), before the first one is created; `config == NULL` reads the environment now:
/// `STRATA_RESOURCE` (`cuda`, `async`, `pool`, `stream-pool` (the default), `arena`,
/// `binning`), `STRATA_POOL_SIZE` and `STRATA_POOL_MAX` (bytes such as `4GiB` or `512M`, or a
/// percentage of the free memory such as `50%`), `STRATA_LOG` (a CSV log path). Without a call,
/// the environment is read when the first default resource is created.
///
/// `STRATA_STATUS_ALREADY_INITIALIZED` once a default resource exists.
///
/// # Safety
///
/// `config` is null or valid for a read, its `log_path` null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_default_configure(
    config: *const StrataDefaultConfig,
) -> StrataStatus {
    guard(|| {
        let parsed = if config.is_null() {
            None
        } else {
            // SAFETY: non-null, and the caller guarantees it is valid for a read and that its
            // path is null or NUL-terminated.
            Some(unsafe { defaults::Config::from_c(&*config) }?)
        };
        defaults::configure(parsed)
    })
}

/// Writes the handle of CUDA device `device`'s default resource to `out`, creating it on first
/// use: a statistics adaptor over (a log over) the configured resource. It lives as long as
/// the process.
///
/// # Safety
///
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_default_resource(
    device: c_int,
    out: *mut *mut StrataResource,
) -> StrataStatus {
    guard(|| {
        require_out(out, "out")?;
        let d = defaults::get_or_create(device)?;
        // SAFETY: `out` is non-null and the caller guarantees it is valid for a write.
        unsafe { put(out, ptr::without_provenance_mut(d.handle)) };
        Ok(())
    })
}

/// Writes the counters of device `device`'s default resource: `allocated`, what was handed to
/// callers; `reserved`, what the resource holds from the device (bytes and `cuMemAlloc` calls;
/// for the async kind, the driver pool's reserved bytes, current and peak, with no counts).
/// Either pointer may be NULL. All zero while the device has no default resource yet.
///
/// # Safety
///
/// `allocated` and `reserved` are null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_default_statistics(
    device: c_int,
    allocated: *mut StrataStatistics,
    reserved: *mut StrataStatistics,
) -> StrataStatus {
    guard(|| {
        let (a, r) = match defaults::existing(device)? {
            Some(d) => (d.allocated(), d.reserved()?),
            None => Default::default(),
        };
        if !allocated.is_null() {
            // SAFETY: non-null, and the caller guarantees it is valid for a write.
            unsafe { put(allocated, a) };
        }
        if !reserved.is_null() {
            // SAFETY: non-null, and the caller guarantees it is valid for a write.
            unsafe { put(reserved, r) };
        }
        Ok(())
    })
}

/// Reports a failure of a hook that cannot return a status: the thread's last error message,
/// and a line on standard error (PyTorch does not check the hook's result).
fn report_hook_failure(what: &str, status: StrataStatus) {
    let _ = std::panic::catch_unwind(|| {
        use std::io::Write;
        // SAFETY: `last_error_ptr` returns a NUL-terminated string owned by this thread.
        let message = unsafe { std::ffi::CStr::from_ptr(error::last_error_ptr()) };
        let _ = writeln!(
            std::io::stderr(),
            "strata: {what} failed ({}): {}",
            status.name().to_string_lossy(),
            message.to_string_lossy()
        );
    });
}

/// PyTorch's allocation hook (`torch.cuda.memory.CUDAPluggableAllocator(lib, "strata_torch_alloc",
/// "strata_torch_free")`): `size` bytes on CUDA device `device` for use on `stream`, from the
/// device's default resource (created on first use). Returns NULL for `size == 0`, and on
/// failure, which is also written to standard error and left for `strata_last_error_message`
/// (PyTorch does not check for NULL).
///
/// # Safety
///
/// `stream` is as for `strata_allocate`: PyTorch's streams live as long as the process.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_torch_alloc(
    size: isize,
    device: c_int,
    stream: *mut c_void,
) -> *mut c_void {
    let mut out: *mut c_void = ptr::null_mut();
    let status = guard(|| {
        if size == 0 {
            return Ok(());
        }
        let size =
            u64::try_from(size).map_err(|_| Failure::invalid(format!("negative size {size}")))?;
        let d = defaults::get_or_create(device)?;
        // SAFETY: the caller's guarantee on `stream`.
        let key = unsafe { streams::key_for(d.entry.device.as_ref(), stream) };
        let addr = d.entry.mr.allocate(size, DEFAULT_ALIGNMENT, key)?;
        out = ptr::without_provenance_mut(addr as usize);
        Ok(())
    });
    if status != StrataStatus::Ok {
        report_hook_failure("strata_torch_alloc", status);
    }
    out
}

/// PyTorch's free hook: frees `ptr` (of `size` bytes, from `strata_torch_alloc` on `device`)
/// on `stream`, the stream it was allocated on. NULL is ignored. A failure (a pointer strata
/// did not hand out) changes nothing; it is written to standard error and left for
/// `strata_last_error_message`.
///
/// # Safety
///
/// As `strata_torch_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strata_torch_free(
    ptr: *mut c_void,
    size: isize,
    device: c_int,
    stream: *mut c_void,
) {
    let status = guard(|| {
        if ptr.is_null() {
            return Ok(());
        }
        let size =
            u64::try_from(size).map_err(|_| Failure::invalid(format!("negative size {size}")))?;
        let d = defaults::existing(device)?.ok_or_else(|| {
            Failure::new(
                StrataStatus::NotAllocated,
                format!(
                    "device {device} has no default resource: {ptr:p} was not allocated by strata"
                ),
            )
        })?;
        // SAFETY: the caller's guarantee on `stream`.
        let key = unsafe { streams::key_for(d.entry.device.as_ref(), stream) };
        d.entry
            .mr
            .deallocate(ptr as usize as u64, size, DEFAULT_ALIGNMENT, key)?;
        Ok(())
    });
    if status != StrataStatus::Ok {
        report_hook_failure("strata_torch_free", status);
    }
}
