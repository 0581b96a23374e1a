//! The thread-safe fixed-size resource.

use crate::algo::{FixedConfig, FixedSizeList, FixedStats, MetaStorage};
use crate::sync::{Mutex, MutexGuard};
use crate::{Error, MemoryResource, StreamKey, Upstream};

/// Blocks of one size ([`FixedSizeList`]: O(1) allocate and free, chunks of
/// `block_size × blocks_per_chunk` bytes from the upstream) behind one lock.
///
/// Requests up to the block size get a whole block; larger ones fail with
/// [`Error::TooLarge`]. The stream is ignored (see [`Pool`](super::Pool) for what that means).
/// `M` says where the metadata lives: [`Heap`](crate::algo::Heap) (feature `alloc`) or
/// [`Inline`](crate::algo::Inline) (no heap).
///
/// ```
/// use strata_core::algo::{FixedConfig, Heap};
/// use strata_core::resources::FixedSize;
/// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
///
/// let r: FixedSize<_, Heap> = FixedSize::new(SimUpstream::new(1 << 30), FixedConfig::new(4096, 64)?);
/// let s = StreamKey::DEFAULT;
/// let a = r.allocate(4000, 256, s)?;
/// assert!(matches!(r.allocate(8192, 256, s), Err(Error::TooLarge { .. })));
/// r.deallocate(a, 4000, 256, s)?;
/// assert_eq!(r.stats().live_blocks, 0);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct FixedSize<U: Upstream, M: MetaStorage> {
    inner: Mutex<FixedSizeList<U, M>>,
}

impl<U: Upstream, M: MetaStorage> FixedSize<U, M> {
    /// A resource of `config.block_size()` blocks over `upstream`; it takes nothing from the
    /// upstream until the first allocation (or [`grow`](Self::grow)).
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, Inline};
    /// use strata_core::resources::FixedSize;
    /// let r: FixedSize<_, Inline<64, 4>> =
    ///     FixedSize::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 16)?);
    /// assert_eq!(r.stats().chunks, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn new(upstream: U, config: FixedConfig) -> Self {
        Self {
            inner: Mutex::new(FixedSizeList::new(upstream, config)),
        }
    }

    /// Takes one more chunk from the upstream now (RMM preallocates one at construction).
    ///
    /// # Errors
    ///
    /// As [`FixedSizeList::grow`]: the upstream's error, or [`Error::MetadataExhausted`].
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, Heap};
    /// use strata_core::resources::FixedSize;
    /// let r: FixedSize<_, Heap> =
    ///     FixedSize::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 16)?);
    /// r.grow()?;
    /// assert_eq!(r.stats().chunks, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn grow(&self) -> Result<(), Error> {
        self.inner.lock().grow().map(|_| ())
    }

    /// Gives every wholly free chunk back; returns the bytes given back.
    ///
    /// # Errors
    ///
    /// As [`FixedSizeList::trim`]: the upstream's error when it refuses a chunk.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, Heap};
    /// use strata_core::resources::FixedSize;
    /// let r: FixedSize<_, Heap> =
    ///     FixedSize::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 16)?);
    /// r.grow()?;
    /// assert_eq!(r.trim()?, 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&self) -> Result<u64, Error> {
        self.inner.lock().trim()
    }

    /// The list's statistics.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, Heap};
    /// use strata_core::resources::FixedSize;
    /// use strata_core::{MemoryResource, StreamKey};
    /// let r: FixedSize<_, Heap> =
    ///     FixedSize::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 16)?);
    /// r.allocate(10, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.stats().live_blocks, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> FixedStats {
        self.inner.lock().stats()
    }

    /// Locks the list, to inspect it.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, Heap};
    /// use strata_core::resources::FixedSize;
    /// let r: FixedSize<_, Heap> =
    ///     FixedSize::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 16)?);
    /// assert_eq!(r.lock().config().block_size(), 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, FixedSizeList<U, M>> {
        self.inner.lock()
    }
}

impl<U: Upstream + Send, M: MetaStorage> MemoryResource for FixedSize<U, M>
where
    FixedSizeList<U, M>: Send,
{
    #[inline]
    fn allocate(&self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        self.inner.lock().allocate(size, align).map(|r| r.start)
    }

    #[inline]
    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        self.inner.lock().deallocate(addr, size)
    }
}
