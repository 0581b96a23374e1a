//! The thread-safe binning resource.

use crate::algo::{self, BinningStats, MetaStorage};
use crate::sync::{Mutex, MutexGuard};
use crate::{Error, MemoryResource, StreamKey, Upstream};

/// Requests sorted into fixed-size bins, larger ones straight to the upstream
/// ([`algo::Binning`], RMM's `binning_memory_resource`), behind one lock.
///
/// Unlike RMM's, [`add_bin`](Self::add_bin) is safe while other threads allocate. The stream
/// is ignored (see [`Pool`](super::Pool) for what that means).
///
/// ```
/// use strata_core::algo::Heap;
/// use strata_core::resources::Binning;
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// // Bins of 256 B .. 64 KiB; anything larger goes to the upstream.
/// let r: Binning<_, Heap> = Binning::with_exponents(SimUpstream::new(1 << 30), 8, 16)?;
/// let s = StreamKey::DEFAULT;
/// let small = r.allocate(300, 256, s)?;
/// let large = r.allocate(1 << 20, 256, s)?;
/// assert_eq!((r.stats().live_blocks, r.stats().large_allocations), (1, 1));
/// r.deallocate(small, 300, 256, s)?;
/// r.deallocate(large, 1 << 20, 256, s)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Binning<U: Upstream, M: MetaStorage, const BINS: usize = 32> {
    inner: Mutex<algo::Binning<U, M, BINS>>,
}

impl<U: Upstream, M: MetaStorage, const BINS: usize> Binning<U, M, BINS> {
    /// Bins of `2^min_exp ..= 2^max_exp` bytes over `upstream` (see
    /// [`algo::Binning::with_exponents`]).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a bin above the largest block size;
    /// [`Error::MetadataExhausted`] for more than `BINS` bins.
    ///
    /// ```
    /// use strata_core::algo::Heap;
    /// use strata_core::resources::Binning;
    /// let r: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 10)?;
    /// assert_eq!(r.stats().bins, 3);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_exponents(upstream: U, min_exp: u32, max_exp: u32) -> Result<Self, Error> {
        algo::Binning::with_exponents(upstream, min_exp, max_exp).map(Self::from_algo)
    }

    /// Shares an [`algo::Binning`] (built with any bins).
    ///
    /// ```
    /// use strata_core::algo::{self, Heap};
    /// use strata_core::resources::Binning;
    /// let mut b: algo::Binning<_, Heap> = algo::Binning::new(strata_core::SimUpstream::new(1 << 30));
    /// b.add_bin(4096)?;
    /// let r = Binning::from_algo(b);
    /// assert_eq!(r.stats().bins, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn from_algo(binning: algo::Binning<U, M, BINS>) -> Self {
        Self {
            inner: Mutex::new(binning),
        }
    }

    /// Adds a bin of `size` bytes (rounded up to 256), even while other threads allocate.
    ///
    /// # Errors
    ///
    /// As [`algo::Binning::add_bin`]; nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::Heap;
    /// use strata_core::resources::Binning;
    /// let r: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 8)?;
    /// r.add_bin(3000)?;
    /// assert_eq!(r.stats().bins, 2);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn add_bin(&self, size: u64) -> Result<(), Error> {
        self.inner.lock().add_bin(size)
    }

    /// Gives every wholly free bin chunk back; returns the bytes given back.
    ///
    /// # Errors
    ///
    /// As [`algo::Binning::trim`]: the upstream's error when it refuses a chunk.
    ///
    /// ```
    /// use strata_core::algo::Heap;
    /// use strata_core::resources::Binning;
    /// use strata_core::{MemoryResource, StreamKey};
    /// let r: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 8)?;
    /// let a = r.allocate(256, 256, StreamKey::DEFAULT)?;
    /// r.deallocate(a, 256, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.trim()?, 128 * 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&self) -> Result<u64, Error> {
        self.inner.lock().trim()
    }

    /// The counters.
    ///
    /// ```
    /// use strata_core::algo::Heap;
    /// use strata_core::resources::Binning;
    /// let r: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 9)?;
    /// assert_eq!(r.stats().live_blocks, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> BinningStats {
        self.inner.lock().stats()
    }

    /// Locks the algorithm, to inspect it.
    ///
    /// ```
    /// use strata_core::algo::Heap;
    /// use strata_core::resources::Binning;
    /// let r: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 9)?;
    /// assert_eq!(r.lock().bin_sizes().count(), 2);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, algo::Binning<U, M, BINS>> {
        self.inner.lock()
    }
}

impl<U: Upstream + Send, M: MetaStorage, const BINS: usize> MemoryResource for Binning<U, M, BINS>
where
    algo::Binning<U, M, BINS>: Send,
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
