//! The callback resource: user functions as a resource.

use crate::{Error, MemoryResource, StreamKey};

/// A resource made of two functions: `allocate(size, align, stream)` and
/// `deallocate(addr, size, align, stream)`. This is RMM's `callback_memory_resource`; use it to
/// plug an allocator you cannot change into strata's adaptors, or to inject failures in tests.
///
/// Both functions must honour the [`MemoryResource`] contract; the resource adds nothing (it
/// does not even reject zero sizes or bad alignments for them).
///
/// ```
/// use strata_core::adaptors::{CallbackResource, Statistics};
/// use strata_core::{Error, MemoryResource, StreamKey};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let next = AtomicU64::new(0x10_0000);
/// let bump = CallbackResource::new(
///     |size: u64, _align: u64, _s: StreamKey| {
///         Ok(next.fetch_add(size.next_multiple_of(256), Ordering::Relaxed))
///     },
///     |_addr: u64, _size: u64, _align: u64, _s: StreamKey| Ok(()),
/// );
/// let r = Statistics::new(&bump);
/// let a = r.allocate(100, 256, StreamKey::DEFAULT)?;
/// assert_eq!(a, 0x10_0000);
/// r.deallocate(a, 100, 256, StreamKey::DEFAULT)?;
/// assert_eq!(r.bytes().total, 100);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CallbackResource<A, D> {
    allocate: A,
    deallocate: D,
}

impl<A, D> CallbackResource<A, D>
where
    A: Fn(u64, u64, StreamKey) -> Result<u64, Error> + Send + Sync,
    D: Fn(u64, u64, u64, StreamKey) -> Result<(), Error> + Send + Sync,
{
    /// A resource that calls `allocate` and `deallocate`.
    ///
    /// ```
    /// use strata_core::adaptors::CallbackResource;
    /// use strata_core::{Error, MemoryResource, StreamKey};
    /// let never = CallbackResource::new(
    ///     |size: u64, _: u64, _: StreamKey| {
    ///         Err(Error::OutOfMemory { requested: size, largest_free: 0, total_free: 0 })
    ///     },
    ///     |addr: u64, _: u64, _: u64, _: StreamKey| Err(Error::NotAllocated { addr }),
    /// );
    /// assert!(never.allocate(1, 256, StreamKey::DEFAULT).is_err());
    /// ```
    pub fn new(allocate: A, deallocate: D) -> Self {
        Self {
            allocate,
            deallocate,
        }
    }
}

impl<A, D> MemoryResource for CallbackResource<A, D>
where
    A: Fn(u64, u64, StreamKey) -> Result<u64, Error> + Send + Sync,
    D: Fn(u64, u64, u64, StreamKey) -> Result<(), Error> + Send + Sync,
{
    #[inline]
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        (self.allocate)(size, align, stream)
    }

    #[inline]
    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        (self.deallocate)(addr, size, align, stream)
    }
}
