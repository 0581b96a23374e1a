//! Stream-ordered allocation from driver memory pools: [`Async`] (a private pool) and
//! [`AsyncView`] (a pool owned elsewhere, or the device's default pool).

use std::fmt;
use std::ops::Deref;
use std::ptr;

use strata_core::{Error, MemoryResource, StreamKey};

use crate::checked;
use crate::device::Device;
use crate::error::DriverError;
use crate::live::{LiveSet, allocate_aligned};
use crate::memory::{device_alloc_error, out_of_device_memory};
use crate::stream::with_stream;
use crate::sys::{
    CUmemAllocationHandleType, CUmemAllocationType, CUmemLocation, CUmemLocationType,
    CUmemPool_attribute, CUmemPoolProps, CUmemoryPool,
};

/// A memory-pool handle.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RawPool(CUmemoryPool);

// SAFETY: a CUmemoryPool is an opaque driver handle that the thread-safe driver API accepts
// from any thread; strata never dereferences it.
unsafe impl Send for RawPool {}
// SAFETY: as for Send: shared use only passes the handle value to driver calls.
unsafe impl Sync for RawPool {}

/// Which shareable handle a pool's memory can be exported as, for another process (IPC).
///
/// ```
/// assert_eq!(strata_driver::IpcHandle::default(), strata_driver::IpcHandle::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpcHandle {
    /// Not exportable.
    #[default]
    None,
    /// A POSIX file descriptor (`CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR`), passed to the
    /// other process over a Unix socket.
    PosixFd,
}

/// How [`Async`] sets up its pool. The defaults are RMM's: no priming, keep all memory
/// (release threshold `u64::MAX`), no maximum, not exportable.
///
/// ```
/// use strata_driver::{AsyncOptions, IpcHandle};
/// let opts = AsyncOptions { max_pool_size: Some(1 << 30), ..AsyncOptions::default() };
/// assert_eq!(opts.release_threshold, u64::MAX);
/// assert_eq!(opts.initial_pool_size, None);
/// assert_eq!(opts.ipc, IpcHandle::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncOptions {
    /// Prime the pool at creation with one allocation of this many bytes, freed at once: with
    /// a release threshold at least this large the memory stays reserved for later requests.
    /// This is priming only, not a reservation: the driver may still release memory above the
    /// threshold, and the pool grows past this size on demand.
    pub initial_pool_size: Option<u64>,
    /// Reserved memory the pool keeps when it synchronises (`CU_MEMPOOL_ATTR_RELEASE_THRESHOLD`);
    /// `u64::MAX` (the default) keeps everything, 0 releases all unused memory at every
    /// synchronisation.
    pub release_threshold: u64,
    /// The most memory the pool may reserve (`CUmemPoolProps::maxSize`); `None` (the default)
    /// is the driver's limit, the device's memory.
    pub max_pool_size: Option<u64>,
    /// Whether the pool can be exported to other processes.
    pub ipc: IpcHandle,
}

impl Default for AsyncOptions {
    fn default() -> Self {
        AsyncOptions {
            initial_pool_size: None,
            release_threshold: u64::MAX,
            max_pool_size: None,
            ipc: IpcHandle::None,
        }
    }
}

/// Stream-ordered allocation from a driver memory pool that someone else owns: a pool handle
/// made elsewhere ([`AsyncView::from_raw`]) or the device's default pool
/// ([`AsyncView::default_pool`]). RMM's `cuda_async_view_memory_resource`.
///
/// `allocate` is `cuMemAllocFromPoolAsync` on the given stream and `deallocate`
/// `cuMemFreeAsync` on the given stream (the stream of last use): a block is usable at once by
/// work enqueued later on its stream, and the driver reuses freed memory across streams
/// following its own event dependencies. Every live allocation is on the books: a bad free is
/// an error that changes nothing, and allocations still live when the view drops are freed
/// (after the device finishes its work). The pool itself is left as it is.
///
/// # Errors
///
/// Out of memory (also when a maximum pool size is reached) is [`Error::OutOfMemory`] with the
/// requested size and the device's free memory; an unknown stream is
/// [`Error::UnknownStream`].
///
/// ```no_run
/// use strata_core::MemoryResource;
/// use strata_driver::{AsyncView, Device, Stream};
/// let dev = Device::get(0)?;
/// let mr = AsyncView::default_pool(&dev)?;
/// let s = Stream::new(&dev)?;
/// let p = mr.allocate(1 << 20, 256, s.key())?;
/// mr.deallocate(p, 1 << 20, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncView {
    device: Device,
    pool: RawPool,
    /// Allocations from `pool` through this value, each owned by it until freed.
    live: LiveSet,
}

impl AsyncView {
    /// A view of the device's default memory pool (`cuDeviceGetDefaultMemPool`), the one
    /// `cuMemAllocAsync` uses.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] (in [`DriverError::Core`]) for a device without memory pools; a
    /// [`DriverError::Call`] naming `cuDeviceGetDefaultMemPool`.
    ///
    /// ```no_run
    /// let v = strata_driver::AsyncView::default_pool(&strata_driver::Device::get(0)?)?;
    /// assert!(!v.raw().is_null());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn default_pool(device: &Device) -> Result<AsyncView, DriverError> {
        require_pools(device)?;
        let pool = checked::device_get_default_mem_pool(device.raw())?;
        // SAFETY: the default pool lives as long as the device's context, which strata keeps
        // for the life of the process.
        Ok(unsafe { AsyncView::from_raw(device, pool) })
    }

    /// A view of a pool created elsewhere.
    ///
    /// # Safety
    ///
    /// `pool` is a live memory pool whose memory lives on `device`, and it outlives the view
    /// (and every allocation made through it).
    ///
    /// ```no_run
    /// use strata_driver::{Async, AsyncView, Device};
    /// let dev = Device::get(0)?;
    /// let owner = Async::new(&dev)?;
    /// // SAFETY: `owner` outlives `view`.
    /// let view = unsafe { AsyncView::from_raw(&dev, owner.raw()) };
    /// assert_eq!(view.raw(), owner.raw());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub unsafe fn from_raw(device: &Device, pool: CUmemoryPool) -> AsyncView {
        AsyncView {
            device: device.clone(),
            pool: RawPool(pool),
            live: LiveSet::new(),
        }
    }

    /// The raw pool handle.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert!(!mr.raw().is_null());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn raw(&self) -> CUmemoryPool {
        self.pool.0
    }

    /// The device whose memory the pool holds.
    ///
    /// ```no_run
    /// let dev = strata_driver::Device::get(0)?;
    /// assert_eq!(strata_driver::Async::new(&dev)?.device(), &dev);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes allocated through this value and not yet freed (as requested).
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.allocated_bytes(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn allocated_bytes(&self) -> u64 {
        self.live.bytes()
    }

    /// How many allocations made through this value are live.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.allocation_count(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn allocation_count(&self) -> u64 {
        self.live.count()
    }

    fn get(&self, attr: CUmemPool_attribute) -> Result<u64, DriverError> {
        // SAFETY: the pool is live while `self` lives; every attribute read here is 64-bit.
        unsafe { checked::mem_pool_get_u64(self.pool.0, attr) }
    }

    fn set(&self, attr: CUmemPool_attribute, value: u64) -> Result<(), DriverError> {
        // SAFETY: the pool is live while `self` lives; every attribute written here is 64-bit.
        unsafe { checked::mem_pool_set_u64(self.pool.0, attr, value) }
    }

    /// The release threshold: reserved memory the pool keeps when it synchronises.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolGetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.release_threshold()?, u64::MAX);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn release_threshold(&self) -> Result<u64, DriverError> {
        self.get(CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD)
    }

    /// Sets the release threshold.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolSetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// mr.set_release_threshold(1 << 30)?;
    /// assert_eq!(mr.release_threshold()?, 1 << 30);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set_release_threshold(&self, bytes: u64) -> Result<(), DriverError> {
        self.set(
            CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            bytes,
        )
    }

    /// Memory the pool has reserved from the device now (in use or cached).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolGetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.reserved_current()?, 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn reserved_current(&self) -> Result<u64, DriverError> {
        self.get(CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)
    }

    /// The most memory the pool has reserved since creation or the last
    /// [`reset_high_watermarks`](AsyncView::reset_high_watermarks).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolGetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert!(mr.reserved_high()? >= mr.reserved_current()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn reserved_high(&self) -> Result<u64, DriverError> {
        self.get(CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)
    }

    /// Memory of the pool in use by allocations now.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolGetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.used_current()?, 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn used_current(&self) -> Result<u64, DriverError> {
        self.get(CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
    }

    /// The most memory of the pool in use at once since creation or the last reset.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolGetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert!(mr.used_high()? >= mr.used_current()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn used_high(&self) -> Result<u64, DriverError> {
        self.get(CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH)
    }

    /// Resets both high watermarks to the current values.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolSetAttribute`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// mr.reset_high_watermarks()?;
    /// assert_eq!(mr.used_high()?, mr.used_current()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn reset_high_watermarks(&self) -> Result<(), DriverError> {
        self.set(CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0)?;
        self.set(CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0)
    }

    /// Releases reserved memory that no allocation uses until at most `keep` bytes stay
    /// reserved (`cuMemPoolTrimTo`). Memory freed on a stream whose work has not finished is
    /// not released; synchronise first.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemPoolTrimTo`.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// mr.trim_to(0)?;
    /// assert_eq!(mr.reserved_current()?, 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn trim_to(&self, keep: u64) -> Result<(), DriverError> {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        // SAFETY: the pool is live while `self` lives.
        unsafe { checked::mem_pool_trim_to(self.pool.0, keep) }
    }

    /// Frees every allocation still on the books (after the device's work finishes).
    fn free_leftovers(&self) {
        let left = self.live.drain();
        if left.is_empty() {
            return;
        }
        let Ok(_g) = self.device.enter() else {
            return;
        };
        let _ = checked::ctx_synchronize();
        for (_, e) in left {
            // SAFETY: the books owned these allocations and they just left the books; the
            // device is idle, so no work uses them.
            let _ = unsafe { checked::mem_free_async(e.base, ptr::null_mut()) };
        }
        let _ = checked::ctx_synchronize();
    }
}

impl MemoryResource for AsyncView {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        // A pool's memory is the device's: more than the device has can never succeed.
        if size > self.device.total_memory() {
            with_stream(stream, |_| Ok(()))?;
            return Err(out_of_device_memory(size, &self.device));
        }
        let (addr, entry) = allocate_aligned(size, align, |n| {
            with_stream(stream, |s| {
                let _g = self.device.enter()?;
                // SAFETY: the pool is live while `self` lives; `s` is live while the registry
                // is held.
                unsafe { checked::mem_alloc_from_pool_async(n, self.pool.0, s) }
                    .map_err(|e| device_alloc_error(e, size, &self.device))
            })
        })?;
        self.live.insert(addr, entry);
        Ok(addr)
    }

    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        with_stream(stream, |s| {
            let entry = self.live.remove(addr, size)?;
            let r = self.device.enter().and_then(|_g| {
                // SAFETY: `entry` left the books, so this call owns the allocation; the caller
                // names `s` as the stream of last use; `s` is live while the registry is held.
                unsafe { checked::mem_free_async(entry.base, s) }
            });
            r.map_err(|e| {
                self.live.insert(addr, entry);
                Error::from(e)
            })
        })
    }
}

impl Drop for AsyncView {
    fn drop(&mut self) {
        self.free_leftovers();
    }
}

impl fmt::Debug for AsyncView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncView")
            .field("device", &self.device.ordinal())
            .field("pool", &self.pool.0)
            .field("allocated_bytes", &self.allocated_bytes())
            .finish()
    }
}

fn require_pools(device: &Device) -> Result<(), DriverError> {
    if device.supports_memory_pools()? {
        Ok(())
    } else {
        Err(DriverError::Core(Error::Unsupported {
            what: "this device has no stream-ordered memory pools",
        }))
    }
}

/// Stream-ordered allocation from a private driver memory pool that this value creates
/// (`cuMemPoolCreate`) and destroys: RMM's `cuda_async_memory_resource`.
///
/// It is *not* the device's default pool (use [`AsyncView::default_pool`] for that). By
/// default it keeps all memory it ever reserved (release threshold `u64::MAX`, as RMM), until
/// [`trim_to`](AsyncView::trim_to) or a lower threshold releases it; see [`AsyncOptions`] for
/// priming, a maximum size and IPC export. It dereferences to [`AsyncView`] for the pool's
/// attributes; allocation and free behave as described there.
///
/// ```no_run
/// use strata_core::MemoryResource;
/// use strata_driver::{Async, AsyncOptions, Device, Stream};
/// let dev = Device::get(0)?;
/// let mr = Async::with_options(&dev, AsyncOptions {
///     initial_pool_size: Some(64 << 20),
///     max_pool_size: Some(1 << 30),
///     ..AsyncOptions::default()
/// })?;
/// assert!(mr.reserved_current()? >= 64 << 20); // primed, and kept
/// let s = Stream::new(&dev)?;
/// let p = mr.allocate(1 << 20, 256, s.key())?;
/// mr.deallocate(p, 1 << 20, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Async {
    view: AsyncView,
    options: AsyncOptions,
}

impl Async {
    /// A private pool on `device` with the default [`AsyncOptions`].
    ///
    /// # Errors
    ///
    /// As for [`Async::with_options`].
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// # let _ = mr;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Result<Async, DriverError> {
        Self::with_options(device, AsyncOptions::default())
    }

    /// A private pool on `device`, set up as `options` says.
    ///
    /// # Errors
    ///
    /// - [`Error::Unsupported`] (in [`DriverError::Core`]) for a device without memory pools,
    ///   or without POSIX-fd export when `options.ipc` asks for it;
    /// - [`Error::TooLarge`] when the initial size exceeds the maximum size;
    /// - [`Error::SizeOverflow`] for a maximum that does not fit the address space;
    /// - [`Error::OutOfMemory`] when priming fails for lack of memory;
    /// - a [`DriverError::Call`] naming the pool call that failed.
    ///
    /// ```no_run
    /// use strata_driver::{Async, AsyncOptions, Device, IpcHandle};
    /// let dev = Device::get(0)?;
    /// let mr = Async::with_options(&dev, AsyncOptions { release_threshold: 0, ..Default::default() })?;
    /// assert_eq!(mr.release_threshold()?, 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn with_options(device: &Device, options: AsyncOptions) -> Result<Async, DriverError> {
        require_pools(device)?;
        if let (Some(initial), Some(max)) = (options.initial_pool_size, options.max_pool_size)
            && initial > max
        {
            return Err(Error::TooLarge {
                requested: initial,
                max,
            }
            .into());
        }
        let max = options.max_pool_size.unwrap_or(0);
        let max_size = usize::try_from(max).map_err(|_| Error::SizeOverflow { requested: max })?;
        let handle_types = match options.ipc {
            IpcHandle::None => CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE,
            IpcHandle::PosixFd => {
                if !device.supports_posix_fd_pools()? {
                    return Err(Error::Unsupported {
                        what: "this device cannot export pools as POSIX file descriptors",
                    }
                    .into());
                }
                CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
            }
        };
        let ordinal = i32::try_from(device.ordinal()).map_err(|_| DriverError::InvalidDevice {
            ordinal: device.ordinal(),
            count: 0,
        })?;
        let props = CUmemPoolProps {
            allocType: CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
            handleTypes: handle_types,
            location: CUmemLocation {
                type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                id: ordinal,
            },
            win32SecurityAttributes: ptr::null_mut(),
            maxSize: max_size,
            usage: 0,
            reserved: [0; 54],
        };
        let pool = {
            let _g = device.enter()?;
            checked::mem_pool_create(&props)?
        };
        // From here on `mr` owns the pool: an early return destroys it.
        let mr = Async {
            // SAFETY: the pool was just created on `device` and `mr` destroys it only after
            // the view's allocations are freed.
            view: unsafe { AsyncView::from_raw(device, pool) },
            options,
        };
        mr.view.set_release_threshold(options.release_threshold)?;
        if let Some(initial) = options.initial_pool_size.filter(|&n| n > 0) {
            mr.prime(initial)?;
        }
        Ok(mr)
    }

    /// One allocation of `bytes` on the legacy default stream, freed at once, then a
    /// synchronisation: the pool reserves the memory and (under its threshold) keeps it.
    fn prime(&self, bytes: u64) -> Result<(), DriverError> {
        let n = usize::try_from(bytes).map_err(|_| Error::SizeOverflow { requested: bytes })?;
        let _g = self.view.device.enter()?;
        // SAFETY: the pool is live; the null stream is always valid.
        let p = unsafe { checked::mem_alloc_from_pool_async(n, self.view.pool.0, ptr::null_mut()) }
            .map_err(|e| device_alloc_error(e, bytes, &self.view.device))?;
        // SAFETY: `p` was just allocated on the null stream and nothing else uses it.
        unsafe { checked::mem_free_async(p, ptr::null_mut()) }?;
        // SAFETY: the null stream is always valid.
        unsafe { checked::stream_synchronize(ptr::null_mut()) }
    }

    /// The options the pool was created with.
    ///
    /// ```no_run
    /// let mr = strata_driver::Async::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(mr.options(), &strata_driver::AsyncOptions::default());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn options(&self) -> &AsyncOptions {
        &self.options
    }

    /// Exports the pool as a POSIX file descriptor, for another process to import
    /// (`cuMemPoolExportToShareableHandle`).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] (in [`DriverError::Core`]) unless the pool was created with
    /// [`IpcHandle::PosixFd`]; a [`DriverError::Call`] naming the export call.
    ///
    /// ```no_run
    /// use strata_driver::{Async, AsyncOptions, Device, IpcHandle};
    /// let dev = Device::get(0)?;
    /// let mr = Async::with_options(&dev, AsyncOptions { ipc: IpcHandle::PosixFd, ..Default::default() })?;
    /// let fd = mr.export_posix_fd()?;
    /// # let _ = fd;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    #[cfg(unix)]
    pub fn export_posix_fd(&self) -> Result<std::os::fd::OwnedFd, DriverError> {
        use std::os::fd::FromRawFd;
        if self.options.ipc != IpcHandle::PosixFd {
            return Err(Error::Unsupported {
                what: "the pool was not created with IpcHandle::PosixFd",
            }
            .into());
        }
        // SAFETY: the pool is live and was created with the POSIX-fd handle type.
        let fd = unsafe { checked::mem_pool_export_posix_fd(self.view.pool.0) }?;
        // SAFETY: the driver returned a new file descriptor that nothing else owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}

impl Deref for Async {
    type Target = AsyncView;
    fn deref(&self) -> &AsyncView {
        &self.view
    }
}

impl MemoryResource for Async {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        self.view.allocate(size, align, stream)
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        self.view.deallocate(addr, size, align, stream)
    }
}

impl Drop for Async {
    fn drop(&mut self) {
        self.view.free_leftovers();
        let Ok(_g) = self.view.device.enter() else {
            return;
        };
        // SAFETY: this value created the pool and freed every allocation it handed out;
        // frees still in flight on streams complete before the driver releases the pool.
        let _ = unsafe { checked::mem_pool_destroy(self.view.pool.0) };
    }
}

impl fmt::Debug for Async {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("view", &self.view)
            .field("options", &self.options)
            .finish()
    }
}
