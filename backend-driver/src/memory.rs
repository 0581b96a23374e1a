//! The plain driver upstreams: device memory, managed memory (with advice and prefetching), and
//! pinned host memory; and the prefetching adaptor.

use std::fmt;

use strata_core::{Error, MemoryResource, Range, StreamKey, Upstream};

use crate::checked;
use crate::device::Device;
use crate::error::DriverError;
use crate::live::{Entry, LiveSet, allocate_aligned};
use crate::stream::{Stream, with_stream};
use crate::sys::{CUmem_advise, CUmemLocation, CUmemLocationType, CUresult, CUstream};

/// Maps a failed allocation call: out of memory becomes [`Error::OutOfMemory`] with the
/// device's free memory; anything else the call's backend error.
pub(crate) fn device_alloc_error(e: DriverError, requested: u64, device: &Device) -> Error {
    if e.is_call_error(CUresult::CUDA_ERROR_OUT_OF_MEMORY) {
        out_of_device_memory(requested, device)
    } else {
        e.into()
    }
}

/// [`Error::OutOfMemory`] for `requested` bytes of `device`, with its free memory now.
pub(crate) fn out_of_device_memory(requested: u64, device: &Device) -> Error {
    Error::OutOfMemory {
        requested,
        largest_free: 0,
        total_free: device.memory_info().map(|m| m.free).unwrap_or(0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Device,
    Managed,
    Host,
}

/// What the three plain upstreams share: a device (whose context every call runs in) and the
/// books of live allocations, each of which this value owns until it is freed.
struct Plain {
    device: Device,
    kind: Kind,
    live: LiveSet,
}

impl Plain {
    fn new(device: &Device, kind: Kind) -> Self {
        Plain {
            device: device.clone(),
            kind,
            live: LiveSet::new(),
        }
    }

    fn alloc(&self, size: u64, align: u64) -> Result<u64, Error> {
        // More than the device has can never succeed: say so without asking the driver.
        if self.kind == Kind::Device && size > self.device.total_memory() {
            return Err(out_of_device_memory(size, &self.device));
        }
        let (addr, entry) = allocate_aligned(size, align, |n| {
            let _g = self.device.enter()?;
            let r = match self.kind {
                Kind::Device => checked::mem_alloc(n),
                Kind::Managed => checked::mem_alloc_managed(n),
                Kind::Host => checked::mem_host_alloc(n).map(|p| p as u64),
            };
            r.map_err(|e| match self.kind {
                Kind::Host if e.is_call_error(CUresult::CUDA_ERROR_OUT_OF_MEMORY) => {
                    Error::OutOfMemory {
                        requested: size,
                        largest_free: 0,
                        total_free: 0,
                    }
                }
                _ => device_alloc_error(e, size, &self.device),
            })
        })?;
        self.live.insert(addr, entry);
        Ok(addr)
    }

    /// # Safety
    ///
    /// `base` is a live allocation of this kind, owned by the caller, unused afterwards.
    unsafe fn raw_free(&self, base: u64) -> Result<(), DriverError> {
        match self.kind {
            // SAFETY: the caller's contract.
            Kind::Device | Kind::Managed => unsafe { checked::mem_free(base) },
            // SAFETY: the caller's contract.
            Kind::Host => unsafe { checked::mem_free_host(base as usize as *mut _) },
        }
    }

    /// Frees `addr` after waiting for `stream` (when given) to finish the work that may use it.
    fn free(&self, addr: u64, size: u64, stream: Option<CUstream>) -> Result<(), Error> {
        let entry = self.live.remove(addr, size)?;
        let r = (|| {
            let _g = self.device.enter()?;
            if let Some(s) = stream {
                // SAFETY: the caller resolved `s` through the stream registry and holds it.
                unsafe { checked::stream_synchronize(s) }?;
            }
            // SAFETY: `entry` left the books above, so this call owns the allocation; the
            // stream of last use has finished with it.
            unsafe { self.raw_free(entry.base) }
        })();
        r.map_err(|e| {
            // The driver kept the memory: keep it on the books.
            self.live.insert(addr, entry);
            Error::from(e)
        })
    }

    fn allocate_on(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        with_stream(stream, |_| Ok(()))?;
        self.alloc(size, align)
    }

    fn deallocate_on(&self, addr: u64, size: u64, stream: StreamKey) -> Result<(), Error> {
        with_stream(stream, |s| self.free(addr, size, Some(s)))
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let left = self.live.drain();
        if left.is_empty() {
            return;
        }
        let Ok(_g) = self.device.enter() else {
            return;
        };
        // Work that may still use the leftovers must finish first.
        let _ = checked::ctx_synchronize();
        for (_, Entry { base, .. }) in left {
            // SAFETY: the books owned these allocations, and they just left the books.
            let _ = unsafe { self.raw_free(base) };
        }
    }
}

macro_rules! plain_resource {
    ($name:ident) => {
        impl $name {
            /// The device whose context allocates and frees.
            ///
            /// ```no_run
            #[doc = concat!("use strata_driver::{Device, ", stringify!($name), "};")]
            /// let dev = Device::get(0)?;
            #[doc = concat!("assert_eq!(", stringify!($name), "::new(&dev).device(), &dev);")]
            /// # Ok::<(), strata_driver::DriverError>(())
            /// ```
            pub fn device(&self) -> &Device {
                &self.0.device
            }

            /// Bytes allocated through this resource and not yet freed (as requested, before
            /// any over-alignment).
            ///
            /// ```no_run
            #[doc = concat!("use strata_driver::{Device, ", stringify!($name), "};")]
            #[doc = concat!("let r = ", stringify!($name), "::new(&Device::get(0)?);")]
            /// assert_eq!(r.allocated_bytes(), 0);
            /// # Ok::<(), strata_driver::DriverError>(())
            /// ```
            pub fn allocated_bytes(&self) -> u64 {
                self.0.live.bytes()
            }

            /// How many allocations are live.
            ///
            /// ```no_run
            #[doc = concat!("use strata_driver::{Device, ", stringify!($name), "};")]
            #[doc = concat!("let r = ", stringify!($name), "::new(&Device::get(0)?);")]
            /// assert_eq!(r.allocation_count(), 0);
            /// # Ok::<(), strata_driver::DriverError>(())
            /// ```
            pub fn allocation_count(&self) -> u64 {
                self.0.live.count()
            }
        }

        impl MemoryResource for $name {
            fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
                self.0.allocate_on(size, align, stream)
            }

            fn deallocate(
                &self,
                addr: u64,
                size: u64,
                _align: u64,
                stream: StreamKey,
            ) -> Result<(), Error> {
                self.0.deallocate_on(addr, size, stream)
            }
        }

        impl Upstream for $name {
            fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
                self.0.alloc(size, align).map(|a| Range::new(a, size))
            }

            fn deallocate(&mut self, range: Range) -> Result<(), Error> {
                self.0.free(range.start, range.len, None)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("device", &self.0.device.ordinal())
                    .field("allocated_bytes", &self.allocated_bytes())
                    .finish()
            }
        }
    };
}

/// Device memory from `cuMemAlloc_v2` / `cuMemFree_v2`: RMM's `cuda_memory_resource`.
///
/// Both a core [`Upstream`] (for the core's pools, arenas and bins) and a [`MemoryResource`].
/// Allocation is synchronous and ignores the stream (which must still be a live one);
/// `deallocate` waits for the given stream (the stream of last use) to finish, then frees.
/// Alignments up to 256 bytes are what the driver gives anyway; larger ones are served by
/// over-allocating. Every live allocation is on the books, so a bad free (an address it did not
/// hand out, a wrong size, a double free) is an error that changes nothing; allocations still
/// live when the resource drops are freed then.
///
/// # Errors
///
/// Out of memory is [`Error::OutOfMemory`] with the requested size and the device's free
/// memory (`largest_free` is 0: unknown).
///
/// ```no_run
/// use strata_core::{MemoryResource, StreamKey};
/// use strata_driver::{Device, DeviceMemory};
/// let mr = DeviceMemory::new(&Device::get(0)?);
/// let p = mr.allocate(1 << 20, 256, StreamKey::DEFAULT)?;
/// assert_eq!(p % 256, 0);
/// assert_eq!(mr.allocated_bytes(), 1 << 20);
/// mr.deallocate(p, 1 << 20, 256, StreamKey::DEFAULT)?;
/// assert!(matches!(
///     mr.allocate(1 << 50, 256, StreamKey::DEFAULT),
///     Err(strata_core::Error::OutOfMemory { requested: 1125899906842624, .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DeviceMemory(Plain);

impl DeviceMemory {
    /// A device-memory resource for `device`.
    ///
    /// ```no_run
    /// let mr = strata_driver::DeviceMemory::new(&strata_driver::Device::get(0)?);
    /// # let _ = mr;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Self {
        DeviceMemory(Plain::new(device, Kind::Device))
    }
}

plain_resource!(DeviceMemory);

/// Managed (unified) memory from `cuMemAllocManaged` (attached globally): RMM's
/// `managed_memory_resource`. Accessible from the host and every device; pages migrate on
/// demand, or ahead of use with [`Managed::prefetch`] or the [`Prefetch`] adaptor, and
/// [`Managed::advise`] sets their preferred location and access hints.
///
/// The same books, errors and stream rules as [`DeviceMemory`]. Never ask for more managed
/// memory than the device and host can hold: oversubscription is allowed by the driver and
/// pages then thrash.
///
/// ```no_run
/// use strata_core::{MemoryResource, StreamKey};
/// use strata_driver::{Advice, Device, Location, Managed, Stream};
/// let dev = Device::get(0)?;
/// let mr = Managed::new(&dev);
/// let s = Stream::new(&dev)?;
/// let p = mr.allocate(1 << 20, 256, s.key())?;
/// mr.advise(p, 1 << 20, Advice::PreferredLocation(Location::Device(0)))?;
/// mr.prefetch(p, 1 << 20, Location::Device(0), &s)?;
/// mr.deallocate(p, 1 << 20, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Managed(Plain);

impl Managed {
    /// A managed-memory resource whose calls run in `device`'s context.
    ///
    /// ```no_run
    /// let mr = strata_driver::Managed::new(&strata_driver::Device::get(0)?);
    /// # let _ = mr;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Self {
        Managed(Plain::new(device, Kind::Managed))
    }

    /// Gives the driver a hint about `len` bytes of managed memory at `addr`
    /// (`cuMemAdvise_v2`).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemAdvise_v2`, e.g. for memory that is not managed.
    ///
    /// ```no_run
    /// use strata_core::{MemoryResource, StreamKey};
    /// use strata_driver::{Advice, Device, Managed};
    /// let mr = Managed::new(&Device::get(0)?);
    /// let p = mr.allocate(4096, 256, StreamKey::DEFAULT)?;
    /// mr.advise(p, 4096, Advice::ReadMostly)?;
    /// mr.deallocate(p, 4096, 256, StreamKey::DEFAULT)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn advise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), DriverError> {
        advise(&self.0.device, addr, len, advice)
    }

    /// Migrates `len` bytes at `addr` to `to`, in order on `stream`
    /// (`cuMemPrefetchAsync_v2`); see [`prefetch`].
    ///
    /// # Errors
    ///
    /// As for [`prefetch`].
    ///
    /// ```no_run
    /// use strata_core::MemoryResource;
    /// use strata_driver::{Device, Location, Managed, Stream};
    /// let dev = Device::get(0)?;
    /// let (mr, s) = (Managed::new(&dev), Stream::new(&dev)?);
    /// let p = mr.allocate(4096, 256, s.key())?;
    /// mr.prefetch(p, 4096, Location::Host, &s)?;
    /// mr.deallocate(p, 4096, 256, s.key())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefetch(
        &self,
        addr: u64,
        len: u64,
        to: Location,
        stream: &Stream,
    ) -> Result<(), DriverError> {
        prefetch(addr, len, to, stream)
    }
}

plain_resource!(Managed);

/// Pinned (page-locked) host memory from `cuMemHostAlloc` (portable: pinned for every
/// context) / `cuMemFreeHost`: RMM's `pinned_host_memory_resource`. The addresses are host
/// pointers, also usable by the device (unified addressing).
///
/// The same books, errors and stream rules as [`DeviceMemory`]; out of memory reports
/// `total_free` 0 (host memory is not the device's).
///
/// ```no_run
/// use strata_core::{MemoryResource, StreamKey};
/// use strata_driver::{Device, PinnedHost};
/// let mr = PinnedHost::new(&Device::get(0)?);
/// let p = mr.allocate(4096, 256, StreamKey::DEFAULT)?;
/// // SAFETY: 4096 live, exclusively owned bytes at `p`.
/// let host = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, 4096) };
/// host.fill(7);
/// mr.deallocate(p, 4096, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PinnedHost(Plain);

impl PinnedHost {
    /// A pinned-host resource whose calls run in `device`'s context.
    ///
    /// ```no_run
    /// let mr = strata_driver::PinnedHost::new(&strata_driver::Device::get(0)?);
    /// # let _ = mr;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Self {
        PinnedHost(Plain::new(device, Kind::Host))
    }
}

plain_resource!(PinnedHost);

/// Where managed memory should live: on a device (by ordinal) or on the host.
///
/// ```
/// use strata_driver::Location;
/// assert_ne!(Location::Device(0), Location::Host);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The device with this ordinal.
    Device(usize),
    /// Host memory.
    Host,
}

impl Location {
    fn raw(self) -> Result<CUmemLocation, DriverError> {
        Ok(match self {
            Location::Device(ordinal) => CUmemLocation {
                type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                id: i32::try_from(ordinal).map_err(|_| DriverError::InvalidDevice {
                    ordinal,
                    count: crate::Device::count().unwrap_or(0),
                })?,
            },
            Location::Host => CUmemLocation {
                type_: CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST,
                id: 0,
            },
        })
    }
}

/// A hint about managed memory (`CUmem_advise`), for [`advise`] and [`Managed::advise`].
///
/// ```
/// use strata_driver::{Advice, Location};
/// let hints = [Advice::ReadMostly, Advice::PreferredLocation(Location::Device(0)),
///              Advice::AccessedBy(Location::Host)];
/// assert_eq!(hints.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Mostly read: the driver may keep read-only copies where it is read.
    ReadMostly,
    /// Undoes [`Advice::ReadMostly`].
    UnsetReadMostly,
    /// Prefer to keep the pages at this location.
    PreferredLocation(Location),
    /// Undoes [`Advice::PreferredLocation`].
    UnsetPreferredLocation,
    /// This location accesses the pages: keep them mapped there.
    AccessedBy(Location),
    /// Undoes [`Advice::AccessedBy`] for this location.
    UnsetAccessedBy(Location),
}

impl Advice {
    fn raw(self) -> Result<(CUmem_advise, CUmemLocation), DriverError> {
        use CUmem_advise::*;
        // The location is ignored for the read-mostly hints; pass a valid one anyway.
        let none = Location::Host.raw()?;
        Ok(match self {
            Advice::ReadMostly => (CU_MEM_ADVISE_SET_READ_MOSTLY, none),
            Advice::UnsetReadMostly => (CU_MEM_ADVISE_UNSET_READ_MOSTLY, none),
            Advice::PreferredLocation(l) => (CU_MEM_ADVISE_SET_PREFERRED_LOCATION, l.raw()?),
            Advice::UnsetPreferredLocation => (CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION, none),
            Advice::AccessedBy(l) => (CU_MEM_ADVISE_SET_ACCESSED_BY, l.raw()?),
            Advice::UnsetAccessedBy(l) => (CU_MEM_ADVISE_UNSET_ACCESSED_BY, l.raw()?),
        })
    }
}

fn usize_len(len: u64) -> Result<usize, DriverError> {
    usize::try_from(len).map_err(|_| DriverError::Core(Error::SizeOverflow { requested: len }))
}

/// Gives the driver a hint about `len` bytes of managed memory at `addr` (`cuMemAdvise_v2`),
/// in `device`'s context.
///
/// # Errors
///
/// A [`DriverError::Call`] naming `cuMemAdvise_v2`: memory that is not managed, a bad
/// location, a device without managed memory.
///
/// ```no_run
/// use strata_core::{MemoryResource, StreamKey};
/// use strata_driver::{advise, Advice, Device, Location, Managed};
/// let dev = Device::get(0)?;
/// let mr = Managed::new(&dev);
/// let p = mr.allocate(4096, 256, StreamKey::DEFAULT)?;
/// advise(&dev, p, 4096, Advice::AccessedBy(Location::Device(0)))?;
/// mr.deallocate(p, 4096, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn advise(device: &Device, addr: u64, len: u64, advice: Advice) -> Result<(), DriverError> {
    let (a, loc) = advice.raw()?;
    let len = usize_len(len)?;
    let _g = device.enter()?;
    // SAFETY: the location is valid by construction; the driver validates the address range,
    // and advice never changes the memory's contents.
    unsafe { checked::mem_advise(addr, len, a, loc) }
}

/// Migrates `len` bytes of managed memory at `addr` to `to`, in order on `stream`
/// (`cuMemPrefetchAsync_v2`): the pages are there before work enqueued later on `stream` runs.
///
/// # Errors
///
/// A [`DriverError::Call`] naming `cuMemPrefetchAsync_v2`: memory that is not managed, a
/// device without concurrent managed access, a bad location.
///
/// ```no_run
/// use strata_core::MemoryResource;
/// use strata_driver::{prefetch, Device, Location, Managed, Stream};
/// let dev = Device::get(0)?;
/// let (mr, s) = (Managed::new(&dev), Stream::new(&dev)?);
/// let p = mr.allocate(1 << 20, 256, s.key())?;
/// prefetch(p, 1 << 20, Location::Device(0), &s)?;
/// mr.deallocate(p, 1 << 20, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn prefetch(addr: u64, len: u64, to: Location, stream: &Stream) -> Result<(), DriverError> {
    let loc = to.raw()?;
    let len = usize_len(len)?;
    let _g = stream.device().enter()?;
    // SAFETY: the stream is live while `stream` lives; the driver validates the range, and
    // prefetching only migrates pages.
    unsafe { checked::mem_prefetch_async(addr, len, loc, stream.raw()) }
}

/// An adaptor that prefetches every new allocation to a device, on the allocation's stream:
/// RMM's `prefetch_resource_adaptor`. Meant for [`Managed`] memory (or a pool over it): the
/// pages are resident on the device before work enqueued later on that stream touches them.
///
/// # Errors
///
/// `allocate` returns the upstream's errors, [`Error::UnknownStream`] for a stream that is not
/// live, or the prefetch's backend error (after giving the block back).
///
/// ```no_run
/// use strata_core::MemoryResource;
/// use strata_driver::{Device, Managed, Prefetch, Stream};
/// let dev = Device::get(0)?;
/// let mr = Prefetch::new(Managed::new(&dev), &dev);
/// let s = Stream::new(&dev)?;
/// let p = mr.allocate(1 << 20, 256, s.key())?; // resident on the device, in stream order
/// mr.deallocate(p, 1 << 20, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Prefetch<R> {
    upstream: R,
    device: Device,
}

impl<R: MemoryResource> Prefetch<R> {
    /// Wraps `upstream`, prefetching to `device`.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Managed, Prefetch};
    /// let dev = Device::get(0)?;
    /// let mr = Prefetch::new(Managed::new(&dev), &dev);
    /// # let _ = mr;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(upstream: R, device: &Device) -> Self {
        Prefetch {
            upstream,
            device: device.clone(),
        }
    }

    /// The wrapped resource.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Managed, Prefetch};
    /// let dev = Device::get(0)?;
    /// let mr = Prefetch::new(Managed::new(&dev), &dev);
    /// assert_eq!(mr.upstream().allocated_bytes(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// Unwraps the adaptor.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Managed, Prefetch};
    /// let dev = Device::get(0)?;
    /// let managed: Managed = Prefetch::new(Managed::new(&dev), &dev).into_inner();
    /// # let _ = managed;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn into_inner(self) -> R {
        self.upstream
    }
}

impl<R: MemoryResource> MemoryResource for Prefetch<R> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        with_stream(stream, |_| Ok(()))?;
        let addr = self.upstream.allocate(size, align, stream)?;
        let r = with_stream(stream, |s| {
            let loc = Location::Device(self.device.ordinal()).raw()?;
            let len = usize_len(size)?;
            let _g = self.device.enter()?;
            // SAFETY: `s` is live while the registry is held; the range was just allocated
            // by the upstream; prefetching only migrates pages.
            unsafe { checked::mem_prefetch_async(addr, len, loc, s) }?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(addr),
            Err(e) => {
                let _ = self.upstream.deallocate(addr, size, align, stream);
                Err(e)
            }
        }
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        self.upstream.deallocate(addr, size, align, stream)
    }
}

impl<R: fmt::Debug> fmt::Debug for Prefetch<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetch")
            .field("device", &self.device.ordinal())
            .field("upstream", &self.upstream)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_maps_to_driver_values() {
        let (a, l) = Advice::PreferredLocation(Location::Device(3))
            .raw()
            .unwrap();
        assert_eq!(a, CUmem_advise::CU_MEM_ADVISE_SET_PREFERRED_LOCATION);
        assert_eq!(
            (l.type_, l.id),
            (CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, 3)
        );
        let (a, l) = Advice::UnsetAccessedBy(Location::Host).raw().unwrap();
        assert_eq!(a, CUmem_advise::CU_MEM_ADVISE_UNSET_ACCESSED_BY);
        assert_eq!(l.type_, CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST);
        assert!(Location::Device(usize::MAX).raw().is_err());
    }
}
