//! The pool: a [`CoalescingList`] that grows from an [`Upstream`], like RMM's
//! `pool_memory_resource`, and, beyond RMM, gives wholly free chunks back.
//!
//! ```
//! use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
//!
//! let mut pool = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(1 << 20))?;
//! let a = pool.allocate(3 << 20, 256)?; // larger than the pool: it grows
//! assert!(pool.pool_size() >= 4 << 20);
//! pool.deallocate(a.start, 3 << 20)?;
//! assert!(pool.trim()? > 0); // wholly free chunks go back upstream
//! # Ok::<(), strata_core::Error>(())
//! ```

use crate::{DEFAULT_ALIGNMENT, Error, Range, Upstream, align_down, align_up};

use super::{AddressIndex, AddressTable, Block, BlockHandle, CoalescingList, PartitionId};

/// How a [`Pool`] starts and how far it may grow.
///
/// Sizes are rounded to multiples of 256 bytes: `initial_size` up, `maximum_size` down (so the
/// pool never exceeds the maximum given). RMM rejects sizes that are not multiples of 256;
/// strata rounds them.
///
/// ```
/// use strata_core::algo::PoolConfig;
/// let c = PoolConfig::new(1 << 20).with_maximum(1 << 30);
/// assert_eq!((c.initial_size, c.maximum_size), (1 << 20, Some(1 << 30)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolConfig {
    /// Bytes taken from the upstream when the pool is made (0: none until the first request).
    pub initial_size: u64,
    /// The most bytes the pool may hold from its upstream at once (`None`: no limit).
    pub maximum_size: Option<u64>,
}

impl PoolConfig {
    /// A pool that starts with `initial_size` bytes and has no maximum.
    ///
    /// ```
    /// let c = strata_core::algo::PoolConfig::new(4096);
    /// assert_eq!(c.maximum_size, None);
    /// ```
    pub const fn new(initial_size: u64) -> Self {
        Self {
            initial_size,
            maximum_size: None,
        }
    }

    /// The same configuration with a maximum size.
    ///
    /// ```
    /// let c = strata_core::algo::PoolConfig::new(0).with_maximum(1 << 20);
    /// assert_eq!(c.maximum_size, Some(1 << 20));
    /// ```
    pub const fn with_maximum(self, maximum_size: u64) -> Self {
        Self {
            maximum_size: Some(maximum_size),
            ..self
        }
    }

    /// The sizes a pool actually uses: the initial size rounded up to 256 and the maximum
    /// rounded down to 256.
    ///
    /// # Errors
    ///
    /// [`Error::SizeOverflow`] when the initial size cannot be rounded up;
    /// [`Error::LimitExceeded`] when the rounded initial size is above the rounded maximum.
    ///
    /// ```
    /// use strata_core::{Error, algo::PoolConfig};
    /// assert_eq!(PoolConfig::new(1000).with_maximum(5000).rounded(), Ok((1024, Some(4864))));
    /// assert!(matches!(
    ///     PoolConfig::new(4096).with_maximum(1024).rounded(),
    ///     Err(Error::LimitExceeded { .. })
    /// ));
    /// ```
    pub fn rounded(&self) -> Result<(u64, Option<u64>), Error> {
        let initial =
            align_up(self.initial_size, DEFAULT_ALIGNMENT).ok_or(Error::SizeOverflow {
                requested: self.initial_size,
            })?;
        let maximum = self.maximum_size.map(|m| align_down(m, DEFAULT_ALIGNMENT));
        if let Some(max) = maximum
            && initial > max
        {
            return Err(Error::LimitExceeded {
                requested: initial,
                allocated: 0,
                limit: max,
            });
        }
        Ok((initial, maximum))
    }
}

/// A coalescing pool over an upstream: allocation from a [`CoalescingList`] (TLSF good fit,
/// immediate coalescing), growth from `U` when it has no fitting block.
///
/// **Growth** (as RMM's pool): a request that no free block serves takes a new chunk from the
/// upstream of `max(request, pool size)` bytes without a maximum (the pool doubles), or of
/// `max(request, half the remaining room)` with one; a request larger than the remaining room
/// cannot grow the pool. When the upstream refuses, the pool retries at half the size, never
/// below the request. ("Request" here is [`CoalescingList::min_block_for`]: the size rounded
/// up to 256, plus alignment padding, rounded up to a size class.)
///
/// **Giving back** (beyond RMM): [`trim`](Self::trim) returns every wholly free chunk to the
/// upstream. And when growth fails (no room under the maximum, or the upstream refuses), the
/// pool trims by itself and tries to grow once more before it reports
/// [`Error::OutOfMemory`].
///
/// **Drop** returns every chunk to the upstream, ignoring its errors (blocks still live then
/// dangle, as with RMM). Give the pool `&mut U` to keep using the upstream afterwards
/// ([`Upstream`] is implemented for `&mut U`).
///
/// `N` and `P` are the list's inline nodes and partitions (0: growable, feature `alloc`), `I`
/// its [`AddressIndex`]: with the default [`AddressTable`] blocks are freed by address
/// ([`deallocate`](Self::deallocate)) or by handle; with [`HandlesOnly`](super::HandlesOnly)
/// only by the [`Block`] handle [`allocate_block`](Self::allocate_block) returns
/// ([`deallocate_block`](Self::deallocate_block)), and the list keeps no address table.
///
/// ```
/// use strata_core::{Error, SimUpstream, algo::{Pool, PoolConfig}};
///
/// let mut sim = SimUpstream::new(1 << 20);
/// {
///     let mut pool = Pool::new(&mut sim, PoolConfig::new(4096).with_maximum(1 << 16))?;
///     let a = pool.allocate(40_000, 256)?;
///     assert!(matches!(pool.allocate(40_000, 256), Err(Error::OutOfMemory { .. })));
///     pool.deallocate(a.start, 40_000)?;
/// }
/// assert_eq!(sim.in_use(), 0); // the pool gave everything back when dropped
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct Pool<U: Upstream, const N: usize = 0, const P: usize = 0, I: AddressIndex = AddressTable>
{
    upstream: U,
    list: CoalescingList<N, P, I>,
    /// The maximum, rounded down to 256.
    maximum: Option<u64>,
}

#[cfg(feature = "alloc")]
impl<U: Upstream> Pool<U> {
    /// A pool over `upstream` with a growable list, taking `config.initial_size` bytes now.
    ///
    /// # Errors
    ///
    /// As [`with_list`](Self::with_list).
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(1000))?;
    /// assert_eq!(pool.pool_size(), 1024); // rounded up to 256
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn new(upstream: U, config: PoolConfig) -> Result<Self, Error> {
        Self::with_list(upstream, CoalescingList::new(), config)
    }
}

impl<U: Upstream, const N: usize, const P: usize, I: AddressIndex> Pool<U, N, P, I> {
    /// A pool over `upstream` that keeps its blocks in `list` (which must be empty: e.g. a
    /// fixed-capacity list, for a pool with no heap), taking `config.initial_size` bytes now.
    ///
    /// # Errors
    ///
    /// On error the upstream is dropped (pass `&mut U` to keep it).
    /// [`Error::LimitExceeded`] when the initial size exceeds the maximum;
    /// [`Error::SizeOverflow`] when the initial size overflows when rounded;
    /// [`Error::Unsupported`] when `list` is not empty; the upstream's error when it cannot
    /// provide the initial size; [`Error::MetadataExhausted`] when the list has no room.
    ///
    /// ```
    /// use strata_core::{Error, SimUpstream, algo::{CoalescingList, Pool, PoolConfig}};
    /// let list = CoalescingList::<128, 1>::with_fixed_capacity();
    /// let mut pool = Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(1 << 16))?;
    /// let r = pool.allocate(1000, 256)?;
    /// pool.deallocate(r.start, 1000)?;
    /// let too_big = PoolConfig::new(1 << 20).with_maximum(1 << 10);
    /// let err = Pool::with_list(SimUpstream::new(1 << 20), CoalescingList::<8, 1>::with_fixed_capacity(), too_big);
    /// assert!(matches!(err, Err(Error::LimitExceeded { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with_list(
        upstream: U,
        list: CoalescingList<N, P, I>,
        config: PoolConfig,
    ) -> Result<Self, Error> {
        if list.chunk_count() != 0 {
            return Err(Error::Unsupported {
                what: "a pool over a list that already holds chunks",
            });
        }
        let (initial, maximum) = config.rounded()?;
        let mut pool = Self {
            upstream,
            list,
            maximum,
        };
        if initial > 0 {
            pool.add_upstream_chunk(0, initial)?;
        }
        Ok(pool)
    }

    /// Allocates `size` bytes aligned to `align` (at least 256) from partition 0, growing the
    /// pool if needed, and returns the block with its handle
    /// ([`deallocate_block`](Self::deallocate_block) frees it in O(1) with no lookup). The
    /// range has the length `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// As [`allocate`](Self::allocate).
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{CoalescingList, HandlesOnly, Pool, PoolConfig}};
    /// let list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// let mut pool = Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(4096))?;
    /// let b = pool.allocate_block(3000, 256)?;
    /// assert_eq!(b.range().len, 3072);
    /// pool.deallocate_block(b)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate_block(&mut self, size: u64, align: u64) -> Result<Block, Error> {
        self.allocate_block_in(0, size, align)
    }

    /// [`allocate_block`](Self::allocate_block) from partition `part` of the list; a chunk
    /// the pool grows by for this request goes to `part`.
    ///
    /// # Errors
    ///
    /// As [`allocate_in`](Self::allocate_in).
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{CoalescingList, HandlesOnly, Pool, PoolConfig}};
    /// let list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// let mut pool = Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(4096))?;
    /// let s1 = pool.add_partition()?;
    /// let b = pool.allocate_block_in(s1, 1024, 256)?; // s1 has nothing: the pool grows
    /// assert_eq!(pool.chunk_count(), 2);
    /// pool.deallocate_block_in(s1, b)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate_block_in(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Block, Error> {
        match self.list.allocate_block_in(part, size, align) {
            Err(Error::OutOfMemory { .. }) => self.grow_and_allocate(part, size, align),
            other => other,
        }
    }

    #[cold]
    fn grow_and_allocate(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Block, Error> {
        let need = CoalescingList::<N, P, I>::min_block_for(size, align)?;
        let grown = match self.grow(part, need) {
            Ok(()) => Ok(()),
            Err(first) => {
                // Beyond RMM: give wholly free chunks back, then try once more.
                if self.trim()? > 0 {
                    self.grow(part, need)
                } else {
                    Err(first)
                }
            }
        };
        match grown {
            Ok(()) => self.list.allocate_block_in(part, size, align),
            Err(Error::OutOfMemory { .. }) => Err(Error::OutOfMemory {
                requested: size,
                largest_free: self.list.largest_free(),
                total_free: self.list.free_bytes(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Takes a new chunk big enough for a block of `need` bytes, following the growth policy.
    fn grow(&mut self, part: PartitionId, need: u64) -> Result<(), Error> {
        let pool_size = self.list.chunk_bytes();
        let out_of_memory = Error::OutOfMemory {
            requested: need,
            largest_free: 0,
            total_free: 0,
        };
        let mut size = match self.maximum {
            Some(max) => {
                let room = max.saturating_sub(pool_size);
                if need > room {
                    return Err(out_of_memory);
                }
                need.max(align_down(room / 2, DEFAULT_ALIGNMENT))
            }
            None => need.max(pool_size),
        };
        loop {
            match self.add_upstream_chunk(part, size) {
                Ok(()) => return Ok(()),
                Err(Error::OutOfMemory { .. }) if size > need => {
                    size = need.max(align_down(size / 2, DEFAULT_ALIGNMENT));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes `size` bytes from the upstream as a new chunk of partition `part`.
    fn add_upstream_chunk(&mut self, part: PartitionId, size: u64) -> Result<(), Error> {
        let chunk = self.upstream.allocate(size, DEFAULT_ALIGNMENT)?;
        if let Err(e) = self.list.add_chunk_in(part, chunk) {
            // Not kept: give it straight back (an error here would leak it upstream only).
            let _ = self.upstream.deallocate(chunk);
            return Err(e);
        }
        Ok(())
    }

    /// Frees the block of `handle` (a [`BlockHandle`], or the [`Block`]) into partition 0
    /// (see [`CoalescingList::deallocate_block`]).
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::deallocate_block_in`]: [`Error::DoubleFree`] for a stale handle,
    /// [`Error::NotAllocated`] for a foreign one; nothing changes then.
    ///
    /// ```
    /// use strata_core::{Error, SimUpstream, algo::{CoalescingList, HandlesOnly, Pool, PoolConfig}};
    /// let list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// let mut pool = Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(256))?;
    /// let b = pool.allocate_block(100, 256)?;
    /// pool.deallocate_block(b)?;
    /// assert_eq!(pool.deallocate_block(b), Err(Error::DoubleFree { addr: b.start() }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_block(&mut self, handle: impl Into<BlockHandle>) -> Result<(), Error> {
        self.list.deallocate_block(handle)
    }

    /// Frees the block of `handle` into partition `part`.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::deallocate_block_in`].
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// let s1 = pool.add_partition()?;
    /// let b = pool.allocate_block(1024, 256)?; // an address-table pool hands out handles too
    /// pool.deallocate_block_in(s1, b)?;
    /// assert_eq!(pool.list().free_bytes_in(s1), 1024);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_block_in(
        &mut self,
        part: PartitionId,
        handle: impl Into<BlockHandle>,
    ) -> Result<(), Error> {
        self.list.deallocate_block_in(part, handle)
    }

    /// Adds a partition to the list (see [`CoalescingList::add_partition`]).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when no more partitions fit.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(0))?;
    /// assert_eq!(pool.add_partition()?, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn add_partition(&mut self) -> Result<PartitionId, Error> {
        self.list.add_partition()
    }

    /// Moves every free block of partition `from` into `into` (see
    /// [`CoalescingList::merge_partition`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStream`] for a partition that does not exist.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// let s1 = pool.add_partition()?;
    /// let r = pool.allocate(1024, 256)?;
    /// pool.deallocate_in(s1, r.start, 1024)?;
    /// pool.merge_partition(s1, 0)?;
    /// assert_eq!(pool.list().free_blocks(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn merge_partition(&mut self, from: PartitionId, into: PartitionId) -> Result<(), Error> {
        self.list.merge_partition(from, into)
    }

    /// Gives every wholly free chunk back to the upstream; returns the bytes given back.
    ///
    /// # Errors
    ///
    /// The upstream's error when it refuses a chunk; that chunk stays in the pool (as a free
    /// chunk of partition 0) and the chunks already given back stay given back.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// let r = pool.allocate(8192, 256)?; // grows by a second chunk
    /// assert_eq!(pool.trim()?, 4096);    // the first chunk is wholly free
    /// pool.deallocate(r.start, 8192)?;
    /// assert_eq!(pool.trim()?, 8192);
    /// assert_eq!((pool.pool_size(), pool.upstream().in_use()), (0, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&mut self) -> Result<u64, Error> {
        let mut released = 0;
        while let Some(chunk) = self.list.take_free_chunk() {
            if let Err(e) = self.upstream.deallocate(chunk) {
                // The two nodes the chunk held were just released, so this cannot fail.
                let _ = self.list.add_chunk(chunk);
                return Err(e);
            }
            released += chunk.len;
        }
        Ok(released)
    }

    /// Gives every chunk back to the upstream, live blocks or not, and empties the pool.
    /// Blocks still live dangle afterwards: their addresses are no longer the pool's.
    ///
    /// # Errors
    ///
    /// The first error of the upstream; every chunk is forgotten by the pool all the same.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// pool.allocate(256, 256)?;
    /// pool.release_all()?;
    /// assert_eq!((pool.pool_size(), pool.upstream().in_use()), (0, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_all(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for chunk in self.list.chunks() {
            if let Err(e) = self.upstream.deallocate(chunk) {
                result = result.and(Err(e));
            }
        }
        self.list.clear();
        result
    }

    /// Bytes the pool holds from its upstream (all chunks).
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.pool_size(), 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn pool_size(&self) -> u64 {
        self.list.chunk_bytes()
    }

    /// The maximum size, rounded down to 256, if there is one.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(0).with_maximum(1000))?;
    /// assert_eq!(pool.maximum_size(), Some(768));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn maximum_size(&self) -> Option<u64> {
        self.maximum
    }

    /// Bytes in live blocks (each rounded up to 256).
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// pool.allocate(1, 256)?;
    /// assert_eq!(pool.live_bytes(), 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn live_bytes(&self) -> u64 {
        self.list.live_bytes()
    }

    /// Free bytes in the pool, over all partitions.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.free_bytes(), 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn free_bytes(&self) -> u64 {
        self.list.free_bytes()
    }

    /// The largest free block, over all partitions.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// pool.allocate(1024, 256)?;
    /// assert_eq!(pool.largest_free(), 3072);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn largest_free(&self) -> u64 {
        self.list.largest_free()
    }

    /// How many chunks the pool holds from its upstream.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.chunk_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn chunk_count(&self) -> usize {
        self.list.chunk_count()
    }

    /// The list, to read its statistics or check its invariants.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.list().check_invariants(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn list(&self) -> &CoalescingList<N, P, I> {
        &self.list
    }

    /// The upstream.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// assert_eq!(pool.upstream().in_use(), 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The upstream, mutably (e.g. to change a simulated capacity). Ranges taken from it
    /// directly are not the pool's.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(4096), PoolConfig::new(4096))?;
    /// assert!(pool.allocate(8192, 256).is_err());
    /// pool.upstream_mut().set_capacity(1 << 20);
    /// assert!(pool.allocate(8192, 256).is_ok());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn upstream_mut(&mut self) -> &mut U {
        &mut self.upstream
    }
}

impl<U: Upstream, const N: usize, const P: usize> Pool<U, N, P, AddressTable> {
    /// Allocates `size` bytes aligned to `align` (at least 256), growing the pool if needed.
    /// The range returned has the length `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// Nothing changes on error, except that wholly free chunks may have been given back.
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`], [`Error::SizeOverflow`] for a bad
    /// request; [`Error::OutOfMemory`] (with the pool's largest free block and free bytes)
    /// when neither the pool nor its upstream can serve it, even after trimming; an
    /// upstream's other error (e.g. a backend failure); [`Error::MetadataExhausted`] when
    /// the list has no node left.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(0))?;
    /// let r = pool.allocate(1, 4096)?;
    /// assert_eq!((r.start % 4096, r.len), (0, 256));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.allocate_in(0, size, align)
    }

    /// Allocates from partition `part` of the list; a chunk the pool grows by for this request
    /// goes to `part`. (The stream-ordered pool keeps one partition per stream.)
    ///
    /// # Errors
    ///
    /// As [`allocate`](Self::allocate); also [`Error::UnknownStream`] (the partition id) for
    /// a partition that does not exist.
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// let s1 = pool.add_partition()?;
    /// let r = pool.allocate_in(s1, 1024, 256)?; // partition s1 has nothing: the pool grows
    /// assert_eq!(pool.chunk_count(), 2);
    /// pool.deallocate_in(s1, r.start, 1024)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn allocate_in(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        self.allocate_block_in(part, size, align).map(|b| b.range())
    }

    /// Frees the block at `addr` (allocated with `size`) into partition 0.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::deallocate`]: [`Error::NotAllocated`], [`Error::DoubleFree`],
    /// [`Error::SizeMismatch`], [`Error::ZeroSize`]; nothing changes then.
    ///
    /// ```
    /// use strata_core::{Error, SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(256))?;
    /// let r = pool.allocate(100, 256)?;
    /// pool.deallocate(r.start, 100)?;
    /// assert_eq!(pool.deallocate(r.start, 100), Err(Error::DoubleFree { addr: r.start }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        self.list.deallocate(addr, size)
    }

    /// Frees the block at `addr` into partition `part`.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::deallocate_in`].
    ///
    /// ```
    /// use strata_core::{SimUpstream, algo::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4096))?;
    /// let s1 = pool.add_partition()?;
    /// let r = pool.allocate(1024, 256)?;
    /// pool.deallocate_in(s1, r.start, 1024)?;
    /// assert_eq!(pool.list().free_bytes_in(s1), 1024);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn deallocate_in(&mut self, part: PartitionId, addr: u64, size: u64) -> Result<(), Error> {
        self.list.deallocate_in(part, addr, size)
    }
}

impl<U: Upstream, const N: usize, const P: usize, I: AddressIndex> Drop for Pool<U, N, P, I> {
    /// Gives every chunk back to the upstream, ignoring its errors.
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}

// The tests use the growable list and `Vec`: they need the `alloc` feature.
#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::SimUpstream;

    const KIB: u64 = 1024;

    /// Pool statistics and upstream use, which a failed call must not change.
    fn snapshot<U: Upstream, const N: usize, const P: usize>(
        p: &Pool<U, N, P>,
    ) -> (u64, u64, u64, u64, usize) {
        (
            p.pool_size(),
            p.live_bytes(),
            p.free_bytes(),
            p.largest_free(),
            p.chunk_count(),
        )
    }

    #[test]
    fn without_a_maximum_the_pool_doubles() {
        let mut p = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(4 * KIB)).unwrap();
        p.allocate(4 * KIB, 256).unwrap();
        p.allocate(256, 256).unwrap(); // grows by max(256, 4 KiB)
        assert_eq!((p.pool_size(), p.chunk_count()), (8 * KIB, 2));
        p.allocate(20 * KIB, 256).unwrap(); // grows by max(20 KiB, 8 KiB)
        assert_eq!(p.pool_size(), 28 * KIB);
        p.list().check_invariants().unwrap();
    }

    #[test]
    fn with_a_maximum_the_pool_grows_by_half_the_room() {
        let cfg = PoolConfig::new(0).with_maximum(64 * KIB);
        let mut p = Pool::new(SimUpstream::new(1 << 30), cfg).unwrap();
        p.allocate(256, 256).unwrap();
        assert_eq!(p.pool_size(), 32 * KIB); // max(256, 64 KiB / 2)
        p.allocate(32 * KIB, 256).unwrap();
        assert_eq!(p.pool_size(), 64 * KIB); // max(32 KiB, 16 KiB)
        // Full: a request that no free block serves fails, and changes nothing.
        let before = snapshot(&p);
        assert_eq!(
            p.allocate(32 * KIB, 256),
            Err(Error::OutOfMemory {
                requested: 32 * KIB,
                largest_free: 32 * KIB - 256,
                total_free: 32 * KIB - 256
            })
        );
        assert_eq!(snapshot(&p), before);
        assert_eq!(p.upstream().in_use(), 64 * KIB);
        p.list().check_invariants().unwrap();
    }

    #[test]
    fn a_request_beyond_the_remaining_room_fails_without_growing() {
        let cfg = PoolConfig::new(16 * KIB).with_maximum(64 * KIB);
        let mut p = Pool::new(SimUpstream::new(1 << 30), cfg).unwrap();
        let a = p.allocate(8 * KIB, 256).unwrap();
        let before = snapshot(&p);
        assert_eq!(
            p.allocate(60 * KIB, 256),
            Err(Error::OutOfMemory {
                requested: 60 * KIB,
                largest_free: 8 * KIB,
                total_free: 8 * KIB
            })
        );
        assert_eq!(snapshot(&p), before);
        assert_eq!(p.upstream().in_use(), 16 * KIB);
        p.deallocate(a.start, 8 * KIB).unwrap();
        // Now the initial chunk is wholly free: the pool trims it and grows instead.
        let big = p.allocate(60 * KIB, 256).unwrap();
        assert_eq!(big.len, 60 * KIB);
        assert_eq!(p.chunk_count(), 1);
        assert!(p.pool_size() <= 64 * KIB);
        p.list().check_invariants().unwrap();
    }

    #[test]
    fn upstream_refusal_halves_the_request_but_not_below_the_need() {
        // Room for 40 KiB upstream; the pool wants to double to 32 + 32 KiB.
        let mut p = Pool::new(SimUpstream::new(40 * KIB), PoolConfig::new(32 * KIB)).unwrap();
        p.allocate(32 * KIB, 256).unwrap();
        p.allocate(KIB, 256).unwrap(); // 32 KiB refused, 16 refused, 8 KiB taken
        assert_eq!(p.pool_size(), 40 * KIB);
        assert_eq!(p.chunk_count(), 2);
        let before = snapshot(&p);
        assert!(matches!(
            p.allocate(8 * KIB, 256),
            Err(Error::OutOfMemory {
                requested: 8192,
                ..
            })
        ));
        assert_eq!(snapshot(&p), before);
    }

    #[test]
    fn upstream_refusal_trims_free_chunks_and_retries() {
        let mut p = Pool::new(SimUpstream::new(48 * KIB), PoolConfig::new(16 * KIB)).unwrap();
        let a = p.allocate(16 * KIB, 256).unwrap();
        let b = p.allocate(16 * KIB, 256).unwrap(); // a second 16 KiB chunk
        p.deallocate(a.start, 16 * KIB).unwrap();
        // 32 KiB are wanted; the upstream has 16 KiB left, the first chunk is wholly free.
        let c = p.allocate(32 * KIB, 256).unwrap();
        assert_eq!(c.len, 32 * KIB);
        assert_eq!((p.pool_size(), p.upstream().in_use()), (48 * KIB, 48 * KIB));
        p.deallocate(b.start, 16 * KIB).unwrap();
        p.deallocate(c.start, 32 * KIB).unwrap();
        p.list().check_invariants().unwrap();
    }

    #[test]
    fn bad_calls_change_nothing() {
        let mut p = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4 * KIB)).unwrap();
        let a = p.allocate(KIB, 256).unwrap();
        let before = (snapshot(&p), p.upstream().in_use());
        type Call = fn(&mut Pool<SimUpstream>, u64) -> Result<(), Error>;
        let calls: [(Error, Call); 7] = [
            (Error::ZeroSize, |p, _| p.allocate(0, 256).map(drop)),
            (Error::InvalidAlignment { align: 100 }, |p, _| {
                p.allocate(256, 100).map(drop)
            }),
            (
                Error::SizeOverflow {
                    requested: u64::MAX,
                },
                |p, _| p.allocate(u64::MAX, 256).map(drop),
            ),
            (Error::NotAllocated { addr: 1 }, |p, _| p.deallocate(1, 256)),
            (Error::UnknownStream { stream: 4 }, |p, _| {
                p.allocate_in(4, 256, 256).map(drop)
            }),
            (
                Error::SizeMismatch {
                    addr: 0,
                    allocated: 1024,
                    given: 256,
                },
                |p, a| p.deallocate(a, 256),
            ),
            (
                Error::OutOfMemory {
                    requested: 1 << 30,
                    largest_free: 3 * KIB,
                    total_free: 3 * KIB,
                },
                |p, _| p.allocate(1 << 30, 256).map(drop),
            ),
        ];
        for (expected, call) in calls {
            let got = call(&mut p, a.start);
            match (got, expected) {
                (Err(Error::SizeMismatch { given, .. }), Error::SizeMismatch { .. }) => {
                    assert_eq!(given, 256)
                }
                (got, expected) => assert_eq!(got, Err(expected)),
            }
            assert_eq!((snapshot(&p), p.upstream().in_use()), before);
            p.list().check_invariants().unwrap();
        }
        p.deallocate(a.start, KIB).unwrap();
        // The block merged into the free rest before it: its start is no block's start now.
        assert_eq!(
            p.deallocate(a.start, KIB),
            Err(Error::NotAllocated { addr: a.start })
        );
    }

    #[test]
    fn configuration_is_rounded_and_checked() {
        let p = Pool::new(
            SimUpstream::new(1 << 20),
            PoolConfig::new(1000).with_maximum(5000),
        )
        .unwrap();
        assert_eq!((p.pool_size(), p.maximum_size()), (1024, Some(4864)));
        assert_eq!(
            Pool::new(
                SimUpstream::new(1 << 20),
                PoolConfig::new(4096).with_maximum(4000)
            )
            .unwrap_err(),
            Error::LimitExceeded {
                requested: 4096,
                allocated: 0,
                limit: 3840
            }
        );
        assert_eq!(
            Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(u64::MAX)).unwrap_err(),
            Error::SizeOverflow {
                requested: u64::MAX
            }
        );
        assert!(matches!(
            Pool::new(SimUpstream::new(1024), PoolConfig::new(4096)),
            Err(Error::OutOfMemory { .. })
        ));
        let mut list = CoalescingList::new();
        list.add_chunk(Range::new(0, 4096)).unwrap();
        assert!(matches!(
            Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(0)),
            Err(Error::Unsupported { .. })
        ));
        let empty = Pool::new(SimUpstream::new(1 << 20), PoolConfig::default()).unwrap();
        assert_eq!((empty.pool_size(), empty.upstream().in_use()), (0, 0));
    }

    #[test]
    fn drop_and_release_all_give_every_chunk_back() {
        let mut sim = SimUpstream::new(1 << 20);
        {
            let mut p = Pool::new(&mut sim, PoolConfig::new(4 * KIB)).unwrap();
            p.allocate(8 * KIB, 256).unwrap();
            p.allocate(KIB, 256).unwrap();
            assert_eq!(p.chunk_count(), 2);
        }
        assert_eq!((sim.in_use(), sim.live_ranges()), (0, 0));
        let mut p = Pool::new(&mut sim, PoolConfig::new(4 * KIB)).unwrap();
        p.allocate(KIB, 256).unwrap();
        p.release_all().unwrap();
        assert_eq!(p.pool_size(), 0);
        // The pool works again after a release.
        p.allocate(KIB, 256).unwrap();
        drop(p);
        assert_eq!(sim.in_use(), 0);
    }

    #[test]
    fn a_full_fixed_list_gives_the_new_chunk_straight_back() {
        let list = CoalescingList::<3, 1>::with_fixed_capacity();
        let mut p = Pool::with_list(SimUpstream::new(1 << 20), list, PoolConfig::new(KIB)).unwrap();
        p.allocate(256, 256).unwrap(); // 3 nodes in use
        let before = (snapshot(&p), p.upstream().in_use());
        assert_eq!(
            p.allocate(KIB, 256),
            Err(Error::MetadataExhausted { capacity: 3 })
        );
        assert_eq!((snapshot(&p), p.upstream().in_use()), before);
    }

    /// An upstream that fails with a backend error.
    struct Broken;
    impl Upstream for Broken {
        fn allocate(&mut self, _: u64, _: u64) -> Result<Range, Error> {
            Err(Error::Backend {
                call: "cuMemAlloc_v2",
                code: 999,
            })
        }
        fn deallocate(&mut self, range: Range) -> Result<(), Error> {
            Err(Error::NotAllocated { addr: range.start })
        }
    }

    #[test]
    fn upstream_errors_other_than_out_of_memory_pass_through() {
        let mut p = Pool::new(Broken, PoolConfig::new(0)).unwrap();
        assert_eq!(
            p.allocate(256, 256),
            Err(Error::Backend {
                call: "cuMemAlloc_v2",
                code: 999
            })
        );
        assert_eq!(p.trim(), Ok(0));
        assert_eq!(p.release_all(), Ok(()));
    }

    #[test]
    fn partitions_grow_into_the_partition_asked_for() {
        let mut p = Pool::new(SimUpstream::new(1 << 20), PoolConfig::new(4 * KIB)).unwrap();
        let s1 = p.add_partition().unwrap();
        let r = p.allocate_in(s1, KIB, 256).unwrap();
        assert_eq!(p.list().free_bytes_in(s1), 3 * KIB);
        assert_eq!(p.list().free_bytes_in(0), 4 * KIB);
        p.deallocate_in(s1, r.start, KIB).unwrap();
        assert_eq!(p.trim().unwrap(), 8 * KIB);
        p.merge_partition(s1, 0).unwrap();
        p.list().check_invariants().unwrap();
    }
}
