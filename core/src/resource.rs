//! The resource trait every strata resource and adaptor implements, and stream order.

/// The identity of a stream of work (a CUDA stream, or a simulated one).
///
/// The core never interprets it beyond equality and hashing; the driver backend uses the
/// `CUstream` handle's value. [`StreamKey::DEFAULT`] is the default (legacy) stream.
///
/// ```
/// use strata_core::StreamKey;
/// assert_eq!(StreamKey::DEFAULT, StreamKey(0));
/// assert_ne!(StreamKey(1), StreamKey::DEFAULT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamKey(pub u64);

impl StreamKey {
    /// The default stream.
    pub const DEFAULT: StreamKey = StreamKey(0);
}

/// A memory resource: hands out and takes back blocks of (abstract or device) addresses.
///
/// Implementations are `Send + Sync` with `&self` methods, so one resource serves many threads
/// and streams. The trait is object safe: use it generically (`Statistics<Pool<U>>`) or
/// type-erased (`&dyn MemoryResource`, `Arc<dyn MemoryResource>`), like RMM's resource refs.
///
/// Contract, for every implementation:
///
/// - `allocate` returns an address aligned to at least `align` (and to at least 256 bytes for
///   device resources) whose `size` bytes overlap no other live block of this resource.
///   A block allocated on stream `S` may be used at once by work enqueued later on `S`.
/// - `deallocate` takes the address, size, alignment and stream of a live block; the stream is
///   the one on which the block was last used. A bad call (an address never handed out, a
///   double free, a wrong size) returns an error and changes nothing.
///
/// ```
/// use strata_core::{MemoryResource, StreamKey, Error};
///
/// // A resource that refuses everything: the smallest possible implementation.
/// struct Empty;
/// impl MemoryResource for Empty {
///     fn allocate(&self, size: u64, _align: u64, _s: StreamKey) -> Result<u64, Error> {
///         Err(Error::OutOfMemory { requested: size, largest_free: 0, total_free: 0 })
///     }
///     fn deallocate(&self, addr: u64, _: u64, _: u64, _: StreamKey) -> Result<(), Error> {
///         Err(Error::NotAllocated { addr })
///     }
/// }
/// let r: &dyn MemoryResource = &Empty;
/// assert!(r.allocate(256, 256, StreamKey::DEFAULT).is_err());
/// assert!(r.is_equal(r));
/// ```
pub trait MemoryResource: Send + Sync {
    /// Allocates `size` bytes aligned to `align` for use on `stream`; returns the address.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`](crate::Error::ZeroSize) for `size == 0`,
    /// [`Error::InvalidAlignment`](crate::Error::InvalidAlignment) for an alignment that is not
    /// a power of two, [`Error::OutOfMemory`](crate::Error::OutOfMemory) (or another variant
    /// that says why) when the request cannot be served.
    fn allocate(
        &self,
        size: u64,
        align: u64,
        stream: crate::StreamKey,
    ) -> Result<u64, crate::Error>;

    /// Frees the block at `addr`, allocated with `size` and `align`, last used on `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`](crate::Error::NotAllocated),
    /// [`Error::DoubleFree`](crate::Error::DoubleFree) or
    /// [`Error::SizeMismatch`](crate::Error::SizeMismatch) for a bad call, which changes nothing.
    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        align: u64,
        stream: crate::StreamKey,
    ) -> Result<(), crate::Error>;

    /// Whether memory allocated from `self` may be freed through `other` and the reverse.
    ///
    /// The default is identity: the same object.
    fn is_equal(&self, other: &dyn MemoryResource) -> bool {
        core::ptr::addr_eq(self as *const Self, other as *const dyn MemoryResource)
    }
}

/// Forwards every method of [`MemoryResource`] through a smart pointer or reference type.
macro_rules! forward_memory_resource {
    ($(#[$attr:meta])* $ptr:ty) => {
        $(#[$attr])*
        impl<R: MemoryResource + ?Sized> MemoryResource for $ptr {
            #[inline]
            fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, crate::Error> {
                (**self).allocate(size, align, stream)
            }
            #[inline]
            fn deallocate(
                &self,
                addr: u64,
                size: u64,
                align: u64,
                stream: StreamKey,
            ) -> Result<(), crate::Error> {
                (**self).deallocate(addr, size, align, stream)
            }
            fn is_equal(&self, other: &dyn MemoryResource) -> bool {
                (**self).is_equal(other)
            }
        }
    };
}

forward_memory_resource!(&R);
forward_memory_resource!(#[cfg(feature = "alloc")] alloc::sync::Arc<R>);
forward_memory_resource!(#[cfg(feature = "alloc")] alloc::boxed::Box<R>);

/// Stream order, abstractly: "make stream `waiter` wait for all work enqueued so far on stream
/// `signaller`".
///
/// The stream-ordered pool calls it only when a block freed on `signaller` is handed to
/// `waiter` (a steal), never on a plain free. The CUDA driver implements it as `cuEventRecord`
/// on `signaller` plus `cuStreamWaitEvent` on `waiter`; a host-only program can implement it as
/// a no-op, and tests implement it with a simulated executor that checks the rule.
///
/// ```
/// use strata_core::{StreamOrder, StreamKey, Error};
/// struct Serial; // everything runs on one queue: order is automatic
/// impl StreamOrder for Serial {
///     fn order_after(&self, _w: StreamKey, _s: StreamKey) -> Result<(), Error> { Ok(()) }
/// }
/// Serial.order_after(StreamKey(1), StreamKey(2))?;
/// # Ok::<(), Error>(())
/// ```
pub trait StreamOrder: Send + Sync {
    /// Makes `waiter` wait for the work enqueued so far on `signaller`.
    ///
    /// # Errors
    ///
    /// A backend error (e.g. the driver failed to record or wait on an event); the caller then
    /// does not hand the block to `waiter`.
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), crate::Error>;
}

impl<O: StreamOrder + ?Sized> StreamOrder for &O {
    #[inline]
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), crate::Error> {
        (**self).order_after(waiter, signaller)
    }
}

#[cfg(feature = "alloc")]
impl<O: StreamOrder + ?Sized> StreamOrder for alloc::sync::Arc<O> {
    #[inline]
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), crate::Error> {
        (**self).order_after(waiter, signaller)
    }
}
