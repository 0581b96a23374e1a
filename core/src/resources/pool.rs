//! The thread-safe coalescing pool.

use crate::algo;
use crate::sync::{Mutex, MutexGuard};
use crate::{Error, MemoryResource, StreamKey, Upstream};

/// A coalescing pool ([`algo::Pool`]: TLSF good fit, immediate coalescing, RMM's growth policy)
/// behind one lock, so that threads share it through `&self`.
///
/// The stream is ignored: a block freed on one stream may be handed at once to another, so use
/// it where all work is ordered anyway (one stream, host code, a device whose frees
/// synchronise), and the [`StreamOrderedPool`](super::StreamOrderedPool) otherwise.
///
/// ```
/// use strata_core::algo::PoolConfig;
/// use strata_core::resources::Pool;
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let pool = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(1 << 20))?;
/// let s = StreamKey::DEFAULT;
/// let a = pool.allocate(3 << 20, 256, s)?; // grows beyond the initial 1 MiB
/// assert!(pool.pool_size() >= 4 << 20);
/// pool.deallocate(a, 3 << 20, 256, s)?;
/// assert!(pool.trim()? > 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Pool<U: Upstream, const N: usize = 0, const P: usize = 0> {
    inner: Mutex<algo::Pool<U, N, P>>,
}

#[cfg(feature = "alloc")]
impl<U: Upstream> Pool<U> {
    /// A pool over `upstream` with growable metadata, taking `config.initial_size` bytes now.
    ///
    /// # Errors
    ///
    /// As [`algo::Pool::new`]: the upstream's error when it cannot provide the initial size,
    /// [`Error::LimitExceeded`] when the initial size exceeds the maximum.
    ///
    /// ```
    /// use strata_core::{algo::PoolConfig, resources::Pool, SimUpstream};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.pool_size(), 4096);
    /// assert!(Pool::new(SimUpstream::new(1024), PoolConfig::new(4096)).is_err());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn new(upstream: U, config: algo::PoolConfig) -> Result<Self, Error> {
        algo::Pool::new(upstream, config).map(Self::from_algo)
    }
}

impl<U: Upstream, const N: usize, const P: usize> Pool<U, N, P> {
    /// Shares an [`algo::Pool`] (e.g. one with fixed-capacity metadata, for no heap at all).
    ///
    /// ```
    /// use strata_core::algo::{self, CoalescingList, PoolConfig};
    /// use strata_core::{resources::Pool, MemoryResource, SimUpstream, StreamKey};
    /// let list = CoalescingList::<64, 1>::with_fixed_capacity();
    /// let inner = algo::Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(1 << 16))?;
    /// let pool = Pool::from_algo(inner);
    /// let a = pool.allocate(1000, 256, StreamKey::DEFAULT)?;
    /// pool.deallocate(a, 1000, 256, StreamKey::DEFAULT)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn from_algo(pool: algo::Pool<U, N, P>) -> Self {
        Self {
            inner: Mutex::new(pool),
        }
    }

    /// Gives every wholly free chunk back to the upstream; returns the bytes given back.
    ///
    /// # Errors
    ///
    /// As [`algo::Pool::trim`]: the upstream's error when it refuses a chunk.
    ///
    /// ```
    /// use strata_core::{algo::PoolConfig, resources::Pool, SimUpstream};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.trim()?, 4096);
    /// assert_eq!(pool.pool_size(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&self) -> Result<u64, Error> {
        self.inner.lock().trim()
    }

    /// Bytes the pool holds from its upstream.
    ///
    /// ```
    /// use strata_core::{algo::PoolConfig, resources::Pool, SimUpstream};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(8192))?;
    /// assert_eq!(pool.pool_size(), 8192);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn pool_size(&self) -> u64 {
        self.inner.lock().pool_size()
    }

    /// Locks the pool, to read its statistics or reach its upstream. Allocation calls wait
    /// until the guard is dropped.
    ///
    /// ```
    /// use strata_core::{algo::PoolConfig, resources::Pool, SimUpstream};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(8192))?;
    /// assert_eq!(pool.lock().upstream().in_use(), 8192);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, algo::Pool<U, N, P>> {
        self.inner.lock()
    }

    /// Unwraps the algorithm.
    ///
    /// ```
    /// use strata_core::{algo::PoolConfig, resources::Pool, SimUpstream};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(8192))?;
    /// assert_eq!(pool.into_inner().chunk_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn into_inner(self) -> algo::Pool<U, N, P> {
        self.inner.into_inner()
    }
}

impl<U: Upstream + Send, const N: usize, const P: usize> MemoryResource for Pool<U, N, P> {
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
