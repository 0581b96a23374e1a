//! Single-threaded allocators as resources, and resources as upstreams.
//!
//! - [`LocalResource`]: the `&mut self` counterpart of [`MemoryResource`], for allocators that
//!   are not thread-safe (the algorithms, a [`SimUpstream`]); implemented here for
//!   [`CoalescingList`](algo::CoalescingList), [`algo::Pool`], [`FixedSizeList`](algo::FixedSizeList)
//!   and [`Binning`](algo::Binning).
//! - [`ThreadSafe`]: puts a [`LocalResource`] behind the crate's [`Mutex`](crate::sync::Mutex),
//!   which makes it a [`MemoryResource`].
//! - [`UpstreamResource`]: any [`Upstream`] as a [`LocalResource`].
//! - [`AsUpstream`]: any [`MemoryResource`] as an [`Upstream`], so that an algorithm can grow
//!   from a resource (a pool over a limiting adaptor, for instance).

use crate::algo;
use crate::sync::{Mutex, MutexGuard};
use crate::{DEFAULT_ALIGNMENT, Error, MemoryResource, Range, SimUpstream, StreamKey, Upstream};

/// An allocator with `&mut self` methods: a resource for one thread at a time.
///
/// Wrap it in [`ThreadSafe`] to share it between threads. Its contract is the one of
/// [`MemoryResource`], except for the `&mut self` receiver.
///
/// ```
/// use strata_core::adaptors::LocalResource;
/// use strata_core::{Error, StreamKey};
///
/// /// Hands out consecutive 256-byte-aligned addresses and never reuses them.
/// struct Bump { next: u64 }
/// impl LocalResource for Bump {
///     fn allocate(&mut self, size: u64, _align: u64, _s: StreamKey) -> Result<u64, Error> {
///         let addr = self.next;
///         self.next += size.next_multiple_of(256);
///         Ok(addr)
///     }
///     fn deallocate(&mut self, _: u64, _: u64, _: u64, _: StreamKey) -> Result<(), Error> {
///         Ok(())
///     }
/// }
/// let mut b = Bump { next: 0x1000 };
/// assert_eq!(b.allocate(10, 256, StreamKey::DEFAULT)?, 0x1000);
/// assert_eq!(b.allocate(10, 256, StreamKey::DEFAULT)?, 0x1100);
/// # Ok::<(), Error>(())
/// ```
pub trait LocalResource {
    /// Allocates `size` bytes aligned to `align` for use on `stream`; returns the address.
    ///
    /// # Errors
    ///
    /// As [`MemoryResource::allocate`].
    fn allocate(&mut self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error>;

    /// Frees the block at `addr`, allocated with `size` and `align`, last used on `stream`.
    ///
    /// # Errors
    ///
    /// As [`MemoryResource::deallocate`]: a bad call returns an error and changes nothing.
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        align: u64,
        stream: StreamKey,
    ) -> Result<(), Error>;
}

impl<L: LocalResource + ?Sized> LocalResource for &mut L {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        (**self).allocate(size, align, stream)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        (**self).deallocate(addr, size, align, stream)
    }
}

/// A simulated device is directly a (single-threaded) resource: it ignores the stream.
///
/// ```
/// use strata_core::adaptors::LocalResource;
/// use strata_core::{SimUpstream, StreamKey};
/// let mut sim = SimUpstream::new(1 << 20);
/// let a = LocalResource::allocate(&mut sim, 1000, 256, StreamKey::DEFAULT)?;
/// LocalResource::deallocate(&mut sim, a, 1000, 256, StreamKey::DEFAULT)?;
/// assert_eq!(sim.in_use(), 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
impl<const N: usize> LocalResource for SimUpstream<N> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        Upstream::allocate(self, size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        Upstream::deallocate(self, Range::new(addr, size))
    }
}

/// The coalescing list is a [`LocalResource`] over the chunks it holds (it never grows).
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::algo::CoalescingList;
/// use strata_core::{MemoryResource, Range, StreamKey};
/// let mut list = CoalescingList::new();
/// list.add_chunk(Range::new(1 << 20, 1 << 16))?;
/// let r = ThreadSafe::new(list);
/// let a = r.allocate(1000, 256, StreamKey::DEFAULT)?;
/// r.deallocate(a, 1000, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
impl<const N: usize, const P: usize> LocalResource for algo::CoalescingList<N, P> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        algo::CoalescingList::allocate(self, size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        algo::CoalescingList::deallocate(self, addr, size)
    }
}

/// The pool algorithm is a [`LocalResource`] (the stream is ignored); [`ThreadSafe`] over it
/// is what [`resources::Pool`](crate::resources::Pool) is.
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::algo::{Pool, PoolConfig};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let r = ThreadSafe::new(Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?);
/// let a = r.allocate(1000, 256, StreamKey::DEFAULT)?;
/// r.deallocate(a, 1000, 256, StreamKey::DEFAULT)?;
/// assert_eq!(r.lock().live_bytes(), 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
impl<U: Upstream, const N: usize, const P: usize> LocalResource for algo::Pool<U, N, P> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        algo::Pool::allocate(self, size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        algo::Pool::deallocate(self, addr, size)
    }
}

/// The fixed-size list is a [`LocalResource`] (the stream is ignored).
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let list: FixedSizeList<_, Heap> = FixedSizeList::new(SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
/// let r = ThreadSafe::new(list);
/// let a = r.allocate(200, 256, StreamKey::DEFAULT)?;
/// r.deallocate(a, 200, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
impl<U: Upstream, M: algo::MetaStorage> LocalResource for algo::FixedSizeList<U, M> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        algo::FixedSizeList::allocate(self, size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        algo::FixedSizeList::deallocate(self, addr, size)
    }
}

/// Binning is a [`LocalResource`] (the stream is ignored).
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::algo::{Binning, Heap};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let b: Binning<_, Heap> = Binning::with_exponents(SimUpstream::new(1 << 30), 8, 12)?;
/// let r = ThreadSafe::new(b);
/// let a = r.allocate(3000, 256, StreamKey::DEFAULT)?;
/// r.deallocate(a, 3000, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
impl<U: Upstream, M: algo::MetaStorage, const BINS: usize> LocalResource
    for algo::Binning<U, M, BINS>
{
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        algo::Binning::allocate(self, size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        algo::Binning::deallocate(self, addr, size)
    }
}

/// Any [`Upstream`] as a [`LocalResource`]: `allocate` asks the upstream for exactly `size`
/// bytes, `deallocate` gives the range `addr .. addr + size` back whole. The stream is ignored.
///
/// ```
/// use strata_core::adaptors::{ThreadSafe, UpstreamResource};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let r = ThreadSafe::new(UpstreamResource(SimUpstream::new(1 << 20)));
/// let a = r.allocate(512, 256, StreamKey::DEFAULT)?;
/// r.deallocate(a, 512, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct UpstreamResource<U>(pub U);

impl<U: Upstream> LocalResource for UpstreamResource<U> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        self.0.allocate(size, align).map(|r| r.start)
    }
    #[inline]
    fn deallocate(
        &mut self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        self.0.deallocate(Range::new(addr, size))
    }
}

/// A thread-safe wrapper: a [`LocalResource`] behind the crate's mutex (a spin lock, or loom's
/// mutex under `cfg(loom)`), so that it is a [`MemoryResource`] with `&self` methods.
///
/// Every call holds the lock for the whole of the inner call, so the inner allocator sees one
/// call at a time, exactly as if one thread made them all. This is RMM's
/// `thread_safe_resource_adaptor`.
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let r = ThreadSafe::new(SimUpstream::new(1 << 20));
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let a = r.allocate(4096, 256, StreamKey::DEFAULT).unwrap();
///             r.deallocate(a, 4096, 256, StreamKey::DEFAULT).unwrap();
///         });
///     }
/// });
/// assert_eq!(r.lock().in_use(), 0);
/// ```
#[derive(Debug, Default)]
pub struct ThreadSafe<L> {
    inner: Mutex<L>,
}

impl<L> ThreadSafe<L> {
    /// Wraps `inner`.
    ///
    /// ```
    /// let r = strata_core::adaptors::ThreadSafe::new(strata_core::SimUpstream::new(1024));
    /// assert_eq!(r.lock().capacity(), 1024);
    /// ```
    pub fn new(inner: L) -> Self {
        Self {
            inner: Mutex::new(inner),
        }
    }

    /// Locks the wrapped allocator, to inspect or reconfigure it. Allocation calls from other
    /// threads wait until the guard is dropped.
    ///
    /// ```
    /// let r = strata_core::adaptors::ThreadSafe::new(strata_core::SimUpstream::new(1024));
    /// r.lock().set_capacity(2048);
    /// assert_eq!(r.lock().capacity(), 2048);
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, L> {
        self.inner.lock()
    }

    /// Unwraps the allocator.
    ///
    /// ```
    /// let r = strata_core::adaptors::ThreadSafe::new(strata_core::SimUpstream::new(1024));
    /// let sim = r.into_inner();
    /// assert_eq!(sim.capacity(), 1024);
    /// ```
    pub fn into_inner(self) -> L {
        self.inner.into_inner()
    }
}

impl<L: LocalResource + Send> MemoryResource for ThreadSafe<L> {
    #[inline]
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        self.inner.lock().allocate(size, align, stream)
    }
    #[inline]
    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        self.inner.lock().deallocate(addr, size, align, stream)
    }
}

/// Any [`MemoryResource`] as an [`Upstream`], so that an algorithm can take its big ranges
/// from a resource or an adaptor stack (a pool growing through a limiting adaptor, say).
///
/// Every upstream call goes to the resource on one fixed stream (the default stream unless
/// [`AsUpstream::on_stream`] says otherwise). `deallocate` passes the alignment
/// [`DEFAULT_ALIGNMENT`], as the [`Upstream`] trait does not carry the alignment of a range:
/// a resource that needs the original alignment to free (the
/// [`Aligned`](super::Aligned) adaptor, above 256 bytes) is not a suitable target.
///
/// ```
/// use strata_core::adaptors::{AsUpstream, Limiting, ThreadSafe};
/// use strata_core::{Error, SimUpstream, Upstream};
///
/// let limited = Limiting::new(ThreadSafe::new(SimUpstream::new(1 << 30)), 8192);
/// let mut up = AsUpstream::new(&limited);
/// let r = up.allocate(8192, 256)?;
/// assert!(matches!(up.allocate(256, 256), Err(Error::LimitExceeded { .. })));
/// up.deallocate(r)?;
/// assert_eq!(limited.allocated_bytes(), 0);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Default)]
pub struct AsUpstream<R> {
    resource: R,
    stream: StreamKey,
}

impl<R: MemoryResource> AsUpstream<R> {
    /// Uses `resource` as an upstream, on the default stream.
    ///
    /// ```
    /// use strata_core::adaptors::{AsUpstream, ThreadSafe};
    /// let up = AsUpstream::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(up.stream(), strata_core::StreamKey::DEFAULT);
    /// ```
    pub fn new(resource: R) -> Self {
        Self::on_stream(resource, StreamKey::DEFAULT)
    }

    /// Uses `resource` as an upstream, calling it on `stream`.
    ///
    /// ```
    /// use strata_core::adaptors::{AsUpstream, ThreadSafe};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let up = AsUpstream::on_stream(ThreadSafe::new(SimUpstream::new(1 << 20)), StreamKey(7));
    /// assert_eq!(up.stream(), StreamKey(7));
    /// ```
    pub fn on_stream(resource: R, stream: StreamKey) -> Self {
        Self { resource, stream }
    }

    /// The stream the resource is called on.
    ///
    /// ```
    /// use strata_core::adaptors::{AsUpstream, ThreadSafe};
    /// let up = AsUpstream::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(up.stream().0, 0);
    /// ```
    pub fn stream(&self) -> StreamKey {
        self.stream
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{AsUpstream, ThreadSafe};
    /// let up = AsUpstream::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(up.resource().lock().in_use(), 0);
    /// ```
    pub fn resource(&self) -> &R {
        &self.resource
    }
}

impl<R: MemoryResource> Upstream for AsUpstream<R> {
    #[inline]
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.resource
            .allocate(size, align, self.stream)
            .map(|addr| Range::new(addr, size))
    }
    #[inline]
    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        self.resource
            .deallocate(range.start, range.len, DEFAULT_ALIGNMENT, self.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_safe_forwards_errors_unchanged() {
        let r = ThreadSafe::new(SimUpstream::<8>::with_slots(1024));
        assert_eq!(r.allocate(0, 256, StreamKey::DEFAULT), Err(Error::ZeroSize));
        let a = r.allocate(1024, 256, StreamKey::DEFAULT).unwrap();
        assert!(matches!(
            r.allocate(256, 256, StreamKey::DEFAULT),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(
            r.deallocate(a + 256, 1024, 256, StreamKey::DEFAULT),
            Err(Error::NotAllocated { addr: a + 256 })
        );
        r.deallocate(a, 1024, 256, StreamKey::DEFAULT).unwrap();
        assert_eq!(r.lock().in_use(), 0);
    }

    #[test]
    fn as_upstream_round_trips_ranges() {
        let r = ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20));
        let mut up = AsUpstream::on_stream(&r, StreamKey(3));
        let range = up.allocate(4096, 4096).unwrap();
        assert_eq!(range.len, 4096);
        assert_eq!(range.start % 4096, 0);
        assert_eq!(
            up.deallocate(Range::new(range.start, 1)),
            Err(Error::SizeMismatch {
                addr: range.start,
                allocated: 4096,
                given: 1
            })
        );
        up.deallocate(range).unwrap();
        assert_eq!(r.lock().in_use(), 0);
    }
}
