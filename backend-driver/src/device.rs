//! Devices, their primary contexts, and making the right context current for each call.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::checked;
use crate::error::DriverError;
use crate::loader::driver;
use crate::sys::{CUcontext, CUdevice, CUdevice_attribute};

/// A retained primary context handle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawCtx(pub(crate) CUcontext);

// SAFETY: a CUcontext is an opaque driver handle; the driver API may be called with it from
// any thread (the driver synchronises internally), and strata never dereferences it.
unsafe impl Send for RawCtx {}
// SAFETY: as for Send: shared use only passes the handle value to thread-safe driver calls.
unsafe impl Sync for RawCtx {}

struct DeviceInner {
    ordinal: usize,
    dev: CUdevice,
    /// The device's primary context, retained once (at the first `Device::get` of this
    /// ordinal) and kept for the life of the process, so that no handle derived from it
    /// (memory, streams, events, pools) can outlive it.
    ctx: RawCtx,
    /// The device's memory in bytes (`cuDeviceTotalMem_v2`, read once).
    total: u64,
}

/// A CUDA device, with its primary context retained.
///
/// Cheap to clone (an `Arc`); every clone of an ordinal refers to the same retained primary
/// context. Each call that needs a context makes this device's primary context current for
/// the duration of the call and restores what was current before, so resources and streams of
/// several devices can be used from one thread in any order.
///
/// ```no_run
/// use strata_driver::Device;
/// for dev in Device::all()? {
///     let info = dev.memory_info()?;
///     println!(
///         "{}: {} (cc {:?}), {} of {} bytes free, pools: {}, concurrent managed: {}",
///         dev.ordinal(),
///         dev.name()?,
///         dev.compute_capability()?,
///         info.free,
///         info.total,
///         dev.supports_memory_pools()?,
///         dev.supports_concurrent_managed_access()?,
///     );
/// }
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
#[derive(Clone)]
pub struct Device(Arc<DeviceInner>);

/// Devices already retained, by ordinal (never emptied: primary contexts live as long as the
/// process).
static DEVICES: Mutex<Vec<Option<Device>>> = Mutex::new(Vec::new());

/// A device's free and total memory, in bytes, as `cuMemGetInfo` reports them.
///
/// ```no_run
/// let info = strata_driver::Device::get(0)?.memory_info()?;
/// assert!(info.free <= info.total);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Bytes free on the device.
    pub free: u64,
    /// The device's total memory.
    pub total: u64,
}

impl Device {
    /// How many CUDA devices there are.
    ///
    /// # Errors
    ///
    /// The loading errors of [`driver`](crate::driver): `NoDriver`, `NoDevice`, ...
    ///
    /// ```
    /// match strata_driver::Device::count() {
    ///     Ok(n) => assert!(n >= 1),
    ///     Err(e) => println!("no CUDA: {e}"),
    /// }
    /// ```
    pub fn count() -> Result<usize, DriverError> {
        Ok(driver()?.device_count())
    }

    /// The device with this ordinal, its primary context retained.
    ///
    /// # Errors
    ///
    /// The loading errors of [`driver`](crate::driver); [`DriverError::InvalidDevice`] for an
    /// ordinal past the last device; a [`DriverError::Call`] if the driver refuses the device
    /// or its context.
    ///
    /// ```
    /// use strata_driver::{Device, DriverError};
    /// match Device::get(0) {
    ///     Ok(dev) => assert_eq!(dev.ordinal(), 0),
    ///     Err(DriverError::NoDriver | DriverError::NoDevice) => {} // a machine without a GPU
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn get(ordinal: usize) -> Result<Device, DriverError> {
        let count = driver()?.device_count();
        if ordinal >= count {
            return Err(DriverError::InvalidDevice { ordinal, count });
        }
        let mut cache = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() < count {
            cache.resize(count, None);
        }
        if let Some(d) = &cache[ordinal] {
            return Ok(d.clone());
        }
        let dev = checked::device_get(ordinal as i32)?;
        let total = checked::device_total_mem(dev)?;
        let ctx = checked::primary_ctx_retain(dev)?;
        let d = Device(Arc::new(DeviceInner {
            ordinal,
            dev,
            ctx: RawCtx(ctx),
            total,
        }));
        cache[ordinal] = Some(d.clone());
        Ok(d)
    }

    /// Every device, in ordinal order.
    ///
    /// # Errors
    ///
    /// As for [`Device::get`].
    ///
    /// ```no_run
    /// let all = strata_driver::Device::all()?;
    /// assert_eq!(all.len(), strata_driver::Device::count()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn all() -> Result<Vec<Device>, DriverError> {
        (0..Self::count()?).map(Device::get).collect()
    }

    /// The device's ordinal (0-based).
    ///
    /// ```no_run
    /// assert_eq!(strata_driver::Device::get(0)?.ordinal(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn ordinal(&self) -> usize {
        self.0.ordinal
    }

    /// The raw `CUdevice`.
    ///
    /// ```no_run
    /// let raw: strata_driver::sys::CUdevice = strata_driver::Device::get(0)?.raw();
    /// # let _ = raw;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn raw(&self) -> CUdevice {
        self.0.dev
    }

    /// The raw handle of the retained primary context (valid for the life of the process).
    ///
    /// ```no_run
    /// assert!(!strata_driver::Device::get(0)?.raw_context().is_null());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn raw_context(&self) -> CUcontext {
        self.0.ctx.0
    }

    /// The device's name, e.g. `"NVIDIA H100 80GB HBM3"`.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetName`.
    ///
    /// ```no_run
    /// assert!(!strata_driver::Device::get(0)?.name()?.is_empty());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn name(&self) -> Result<String, DriverError> {
        checked::device_get_name(self.0.dev)
    }

    /// The device's total memory in bytes (read when the device was first retained).
    ///
    /// ```no_run
    /// assert!(strata_driver::Device::get(0)?.total_memory() > 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn total_memory(&self) -> u64 {
        self.0.total
    }

    /// The device's free and total memory now.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemGetInfo_v2` (or the context switch).
    ///
    /// ```no_run
    /// let m = strata_driver::Device::get(0)?.memory_info()?;
    /// assert!(m.free <= m.total);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn memory_info(&self) -> Result<MemoryInfo, DriverError> {
        let _g = self.enter()?;
        let (free, total) = checked::mem_get_info()?;
        Ok(MemoryInfo { free, total })
    }

    /// A raw device attribute (`cuDeviceGetAttribute`).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute` (e.g. an attribute this driver
    /// does not know).
    ///
    /// ```no_run
    /// use strata_driver::sys::CUdevice_attribute;
    /// let dev = strata_driver::Device::get(0)?;
    /// let sms = dev.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    /// assert!(sms > 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn attribute(&self, attr: CUdevice_attribute) -> Result<i32, DriverError> {
        checked::device_get_attribute(self.0.dev, attr)
    }

    fn flag(&self, attr: CUdevice_attribute) -> Result<bool, DriverError> {
        Ok(self.attribute(attr)? != 0)
    }

    /// The compute capability, `(major, minor)`; `(9, 0)` on a Hopper GPU.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// let (major, _minor) = strata_driver::Device::get(0)?.compute_capability()?;
    /// assert!(major >= 5);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn compute_capability(&self) -> Result<(i32, i32), DriverError> {
        Ok((
            self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ))
    }

    /// Whether the device supports stream-ordered memory pools (what [`Async`](crate::Async)
    /// needs).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// assert!(strata_driver::Device::get(0)?.supports_memory_pools()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn supports_memory_pools(&self) -> Result<bool, DriverError> {
        self.flag(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)
    }

    /// Whether the device's memory pools can be exported as POSIX file descriptors (IPC).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// let ipc = strata_driver::Device::get(0)?.supports_posix_fd_pools()?;
    /// # let _ = ipc;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn supports_posix_fd_pools(&self) -> Result<bool, DriverError> {
        let types =
            self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES)?;
        Ok(types & 1 != 0)
    }

    /// Whether the device supports managed memory at all.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// assert!(strata_driver::Device::get(0)?.supports_managed_memory()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn supports_managed_memory(&self) -> Result<bool, DriverError> {
        self.flag(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY)
    }

    /// Whether the device can access managed memory concurrently with the host (what makes
    /// prefetching and advice meaningful).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// let yes = strata_driver::Device::get(0)?.supports_concurrent_managed_access()?;
    /// # let _ = yes;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn supports_concurrent_managed_access(&self) -> Result<bool, DriverError> {
        self.flag(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS)
    }

    /// How many streaming multiprocessors the device has.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuDeviceGetAttribute`.
    ///
    /// ```no_run
    /// assert!(strata_driver::Device::get(0)?.multiprocessor_count()? > 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn multiprocessor_count(&self) -> Result<i32, DriverError> {
        self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
    }

    /// Waits for all work on the device's primary context to finish (`cuCtxSynchronize`).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuCtxSynchronize`: an earlier asynchronous error.
    ///
    /// ```no_run
    /// strata_driver::Device::get(0)?.synchronize()?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn synchronize(&self) -> Result<(), DriverError> {
        let _g = self.enter()?;
        checked::ctx_synchronize()
    }

    /// Makes this device's primary context current on the calling thread until the guard
    /// drops; then what was current before is current again.
    pub(crate) fn enter(&self) -> Result<CtxGuard, DriverError> {
        let cur = checked::ctx_get_current()?;
        if cur == self.0.ctx.0 {
            return Ok(CtxGuard { prev: None });
        }
        // SAFETY: the primary context is retained for the life of the process.
        unsafe { checked::ctx_set_current(self.0.ctx.0) }?;
        Ok(CtxGuard { prev: Some(cur) })
    }
}

/// Restores the previously current context when dropped. Not `Send`: the current context is
/// per thread.
pub(crate) struct CtxGuard {
    prev: Option<CUcontext>,
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.prev {
            // SAFETY: `prev` was current on this thread a moment ago (null or a live context
            // whose owner has not released it: releasing a context another library made
            // current while strata borrows the thread would be that library's bug). A failure
            // here leaves strata's context current, which is harmless, so it is ignored.
            let _ = unsafe { checked::ctx_set_current(prev) };
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.0.ordinal == other.0.ordinal
    }
}

impl Eq for Device {}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.0.ordinal)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_fail_cleanly_without_a_driver() {
        if crate::driver_library_present() {
            return; // covered by the GPU tests
        }
        assert_eq!(Device::count(), Err(DriverError::NoDriver));
        assert_eq!(Device::get(0).unwrap_err(), DriverError::NoDriver);
        assert_eq!(Device::get(usize::MAX).unwrap_err(), DriverError::NoDriver);
        assert_eq!(Device::all().unwrap_err(), DriverError::NoDriver);
    }
}
