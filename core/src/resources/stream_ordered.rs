//! The stream-ordered pool: one heap per stream, each behind its own lock; ordering only when a
//! block crosses streams (feature `alloc`).

use alloc::vec::Vec;

use super::table::StreamTable;
use crate::algo::{CoalescingList, PartitionId, PoolConfig};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::{
    DEFAULT_ALIGNMENT, Error, MemoryResource, Range, StreamKey, StreamOrder, Upstream, align_down,
    align_up,
};

/// The default bound on the streams a [`StreamOrderedPool`] serves at once.
pub const DEFAULT_POOL_STREAMS: usize = 64;

/// A [`StreamOrder`] that does nothing: for programs in which every "stream" is the same queue
/// (host code, or a device with one stream), where a block freed on one is safe on all.
///
/// ```
/// use strata_core::resources::NoOrdering;
/// use strata_core::{StreamKey, StreamOrder};
/// NoOrdering.order_after(StreamKey(1), StreamKey(2))?;
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoOrdering;

impl StreamOrder for NoOrdering {
    #[inline]
    fn order_after(&self, _waiter: StreamKey, _signaller: StreamKey) -> Result<(), Error> {
        Ok(())
    }
}

/// What a stream of a [`StreamOrderedPool`] does when its own free blocks cannot serve a
/// request (and no never-used memory is left).
///
/// ```
/// use strata_core::algo::PoolConfig;
/// use strata_core::resources::{NoOrdering, Reuse, StreamOrderedPool};
/// use strata_core::SimUpstream;
/// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?
///     .with_reuse(Reuse::GrowFirst);
/// assert_eq!(pool.reuse(), Reuse::GrowFirst);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reuse {
    /// RMM's order: take other streams' free blocks first (one block, then whole lists), and
    /// grow only when none fits. The least memory; but a stream that lives on blocks of
    /// another stream's heap shares that heap's lock.
    #[default]
    StealFirst,
    /// Grow the stream's own heap first, while the upstream gives memory (and the maximum
    /// allows); take other streams' blocks only when it refuses. Threads on their own streams
    /// then share nothing, at the price of more memory held.
    GrowFirst,
}

/// Counters of a [`StreamOrderedPool`].
///
/// ```
/// use strata_core::algo::PoolConfig;
/// use strata_core::resources::{NoOrdering, StreamOrderedPool};
/// use strata_core::SimUpstream;
/// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(4096))?;
/// let s = pool.stats();
/// assert_eq!((s.steals, s.merges, s.pool_size, s.free_bytes), (0, 0, 4096, 4096));
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamPoolStats {
    /// Blocks taken from another stream's free blocks (each cost one `order_after`).
    pub steals: u64,
    /// Whole free lists of other streams merged into a stream's (each cost one
    /// `order_after`).
    pub merges: u64,
    /// Streams retired with [`StreamOrderedPool::retire_stream`].
    pub retired: u64,
    /// Streams that have a heap now.
    pub streams: usize,
    /// Bytes held from the upstream.
    pub pool_size: u64,
    /// Free bytes, over all heaps (and the memory no stream has taken yet).
    pub free_bytes: u64,
    /// Bytes in live blocks (each rounded up to 256).
    pub live_bytes: u64,
}

/// Who freed the blocks of a partition of a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freer {
    /// A stream: its work must be waited for before another stream reuses the blocks.
    Stream(StreamKey),
    /// Nobody: an unused partition (it has no free block), ready for a new stream.
    Spare,
}

/// A stream's heap: the chunks it grew by, as the chunks of a [`CoalescingList`] whose free
/// blocks are partitioned by the stream that freed them.
#[derive(Debug)]
struct Heap<const N: usize, const P: usize> {
    list: CoalescingList<N, P>,
    /// Partition → who freed its blocks. Partition 0 is the heap's owner: the stream it
    /// serves (the shared stream once that one is retired). Invariants: `parts.len() ==
    /// list.partition_count()`; no two partitions name the same stream; a `Spare` partition
    /// has no free block.
    parts: Vec<Freer>,
    /// The `Spare` partitions.
    spare: Vec<PartitionId>,
}

impl<const N: usize, const P: usize> Heap<N, P> {
    fn new() -> Self {
        Self {
            list: CoalescingList::with_fixed_capacity(),
            parts: alloc::vec![Freer::Spare],
            spare: Vec::new(),
        }
    }

    fn owner(&self) -> Freer {
        self.parts[0]
    }

    /// The partition of blocks freed on `stream`, if there is one.
    #[inline]
    fn part_of(&self, stream: StreamKey) -> Option<PartitionId> {
        self.parts
            .iter()
            .position(|&f| f == Freer::Stream(stream))
            .map(|p| p as PartitionId)
    }

    /// The partition of blocks freed on `stream`, made if needed.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when the list has no partition left; nothing changes.
    fn part_for(&mut self, stream: StreamKey) -> Result<PartitionId, Error> {
        if let Some(p) = self.part_of(stream) {
            return Ok(p);
        }
        let p = match self.spare.pop() {
            Some(p) => p,
            None => {
                let p = self.list.add_partition()?;
                debug_assert_eq!(p as usize, self.parts.len());
                self.parts.push(Freer::Spare);
                p
            }
        };
        debug_assert_eq!(self.list.free_bytes_in(p), 0);
        self.parts[p as usize] = Freer::Stream(stream);
        Ok(p)
    }

    /// Labels the blocks freed on `from` as freed on `to` (the caller ordered `to` after
    /// `from`), merging them into `to`'s partition when there is one; the partition with the
    /// lower id stays, so the owner's stays partition 0.
    fn relabel(&mut self, from: StreamKey, to: StreamKey) -> Result<(), Error> {
        let Some(p) = self.part_of(from) else {
            return Ok(());
        };
        match self.part_of(to) {
            Some(q) => {
                let (keep, drop) = (p.min(q), p.max(q));
                self.list.merge_partition(drop, keep)?;
                self.parts[keep as usize] = Freer::Stream(to);
                self.parts[drop as usize] = Freer::Spare;
                self.spare.push(drop);
            }
            None => self.parts[p as usize] = Freer::Stream(to),
        }
        self.check();
        Ok(())
    }

    /// Makes the heap `stream`'s: free blocks of the previous owner move to a partition of
    /// their own first, so that `stream` takes them only after ordering.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when that partition cannot be made; nothing changes.
    fn adopt(&mut self, stream: StreamKey) -> Result<(), Error> {
        if let Freer::Stream(old) = self.owner()
            && self.list.free_bytes_in(0) > 0
        {
            // Make a partition for `old` (not partition 0, which `part_for` would find).
            self.parts[0] = Freer::Spare;
            let q = match self.part_for(old) {
                Ok(q) => q,
                Err(e) => {
                    self.parts[0] = Freer::Stream(old);
                    return Err(e);
                }
            };
            self.list.merge_partition(0, q)?;
        }
        if let Some(p) = self.part_of(stream) {
            // Blocks `stream` freed here before: its own now.
            self.list.merge_partition(p, 0)?;
            self.parts[p as usize] = Freer::Spare;
            self.spare.push(p);
        }
        self.parts[0] = Freer::Stream(stream);
        self.check();
        Ok(())
    }

    fn check(&self) {
        debug_assert_eq!(self.parts.len(), self.list.partition_count());
        debug_assert!(self.parts.iter().enumerate().all(|(p, f)| match f {
            Freer::Spare => self.list.free_bytes_in(p as PartitionId) == 0,
            Freer::Stream(s) => self.part_of(*s) == Some(p as PartitionId),
        }));
    }
}

/// What the pool holds from the upstream.
#[derive(Debug)]
struct Global<U> {
    upstream: U,
    /// The maximum pool size, rounded down to 256.
    maximum: Option<u64>,
    /// Bytes held from the upstream: every heap's chunks and the reserve.
    pool_size: u64,
    /// Chunks no stream has used yet (the initial size): the first stream that needs memory
    /// takes one with no ordering.
    reserve: Vec<Range>,
}

/// A pool with one free list per stream, RMM's `stream_ordered_memory_resource` rebuilt for
/// many threads: a block freed on stream `S` is reused on `S` at once, with no ordering call; a
/// block that moves to another stream `W` costs one [`StreamOrder::order_after`]`(W, S)`, made
/// at the moment it moves (RMM records an event on every free instead).
///
/// # Structure
///
/// Each stream has a *heap*: the chunks it took from the upstream, as a TLSF
/// [`CoalescingList`], behind a lock of its own, found through a lock-free stream table. A
/// heap's free blocks are partitioned by the stream that freed them (partition 0: the heap's
/// own stream). So threads on different streams share no lock on the fast path.
///
/// # Allocation on stream `W`
///
/// 1. From `W`'s heap, blocks `W` freed there (no ordering).
/// 2. Else a chunk never used yet (the initial size), moved into `W`'s heap (no ordering).
/// 3. Else one block, from `W`'s heap or another, freed by `W` (no ordering) or by another
///    stream `S` (after `order_after(W, S)`: a *steal*). What is left of it stays with `S`.
/// 4. Else, like RMM, whole free lists of other streams are merged into `W`'s, heap by heap,
///    each after `order_after(W, S)`, until a block fits.
/// 5. Else `W`'s heap grows from the upstream (doubling it, or by half the room left under the
///    maximum); if the upstream refuses, the wholly free chunks of every heap (all `W`'s after
///    step 4) go back and the heap grows once more.
///
/// That is RMM's order, [`Reuse::StealFirst`], the default: the least memory. With
/// [`Reuse::GrowFirst`], step 5's first growth comes before steps 3 and 4: threads on their
/// own streams then touch no other stream's heap until the upstream refuses.
///
/// # Freeing on stream `S`
///
/// The block goes back to the heap it came from, into `S`'s partition there; no ordering call.
/// Free a block on the stream that used it last (or order that stream after the others first).
///
/// # Streams that go away
///
/// [`retire_stream`](Self::retire_stream)`(S)` labels every block freed on `S` as freed on
/// the *shared stream* (the default stream unless
/// [`with_shared_stream`](Self::with_shared_stream) says otherwise), after
/// `order_after(shared, S)`; then `S` may be destroyed. Its heap goes to the next new stream.
/// Nothing is stranded.
///
/// At most `max_streams` streams have a heap at once (64 by default). `N`, `P`: nodes and
/// partitions inline in each heap's list (0: growable); with `P > 0` a heap takes frees from at
/// most `P - 1` streams besides its own.
///
/// ```
/// use strata_core::algo::PoolConfig;
/// use strata_core::resources::StreamOrderedPool;
/// use strata_core::sim_stream::SimStreams;
/// use strata_core::{SimUpstream, StreamKey};
///
/// let streams = SimStreams::new(); // checks every reuse
/// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 30), &streams, PoolConfig::new(0))?;
/// let (s1, s2) = (StreamKey(1), StreamKey(2));
///
/// let a = streams.allocate(&pool, 1 << 20, 256, s1)?;
/// streams.deallocate(&pool, a, 1 << 20, 256, s1)?;
/// let b = streams.allocate(&pool, 1 << 20, 256, s1)?; // same stream: reused, no ordering
/// assert_eq!((a, streams.order_calls()), (b, 0));
/// streams.deallocate(&pool, b, 1 << 20, 256, s1)?;
/// let c = streams.allocate(&pool, 1 << 20, 256, s2)?; // another stream: one order_after
/// assert_eq!((c, streams.order_calls()), (a, 1));
/// assert!(streams.violations().is_empty());
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamOrderedPool<U: Upstream, O: StreamOrder, const N: usize = 0, const P: usize = 0> {
    order: O,
    shared: StreamKey,
    reuse: Reuse,
    /// Stream → its heap. Lock order: the table's insert lock, then one heap (never two),
    /// then the global state.
    table: StreamTable<Heap<N, P>>,
    global: Mutex<Global<U>>,
    /// Bytes in `global.reserve`, readable without the lock (written with it held), so that a
    /// stream short of memory skips the global lock once the reserve is gone.
    reserve_bytes: AtomicU64,
    steals: AtomicU64,
    merges: AtomicU64,
    retired: AtomicU64,
}

impl<U: Upstream, O: StreamOrder> StreamOrderedPool<U, O> {
    /// A pool over `upstream` with growable metadata, ordering streams through `order`,
    /// taking `config.initial_size` bytes now (memory the first stream to need it takes with no
    /// ordering); up to [`DEFAULT_POOL_STREAMS`] streams at once.
    ///
    /// # Errors
    ///
    /// As [`with_streams`](Self::with_streams).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::SimUpstream;
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(1000))?;
    /// assert_eq!(pool.stats().pool_size, 1024);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn new(upstream: U, order: O, config: PoolConfig) -> Result<Self, Error> {
        Self::with_streams(upstream, order, config, DEFAULT_POOL_STREAMS)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> StreamOrderedPool<U, O, N, P> {
    /// As [`new`](Self::new), for up to `max_streams` streams at once, with `N` nodes and `P`
    /// partitions inline in each heap's list (0: growable).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for `max_streams == 0`; [`Error::SizeOverflow`] or
    /// [`Error::LimitExceeded`] for an initial size that overflows or exceeds the maximum;
    /// then the upstream's error when it cannot provide the initial size.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
    /// let pool: StreamOrderedPool<_, _, 256, 4> =
    ///     StreamOrderedPool::with_streams(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0), 1)?;
    /// pool.allocate(256, 256, StreamKey(1))?;
    /// assert_eq!(pool.allocate(256, 256, StreamKey(2)), Err(Error::MetadataExhausted { capacity: 1 }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with_streams(
        mut upstream: U,
        order: O,
        config: PoolConfig,
        max_streams: usize,
    ) -> Result<Self, Error> {
        let table = StreamTable::new(max_streams, Heap::new)?;
        let initial =
            align_up(config.initial_size, DEFAULT_ALIGNMENT).ok_or(Error::SizeOverflow {
                requested: config.initial_size,
            })?;
        let maximum = config
            .maximum_size
            .map(|m| align_down(m, DEFAULT_ALIGNMENT));
        if let Some(max) = maximum
            && initial > max
        {
            return Err(Error::LimitExceeded {
                requested: initial,
                allocated: 0,
                limit: max,
            });
        }
        let mut reserve = Vec::new();
        if initial > 0 {
            reserve.push(upstream.allocate(initial, DEFAULT_ALIGNMENT)?);
        }
        Ok(Self {
            order,
            shared: StreamKey::DEFAULT,
            reuse: Reuse::StealFirst,
            table,
            global: Mutex::new(Global {
                upstream,
                maximum,
                pool_size: initial,
                reserve,
            }),
            reserve_bytes: AtomicU64::new(initial),
            steals: AtomicU64::new(0),
            merges: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        })
    }

    /// The same pool with another shared stream: the one that inherits the free blocks of
    /// retired streams. It must outlive the pool. Set it before the first allocation.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?
    ///     .with_shared_stream(StreamKey(0x100));
    /// assert_eq!(pool.shared_stream(), StreamKey(0x100));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_shared_stream(mut self, shared: StreamKey) -> Self {
        self.shared = shared;
        self
    }

    /// The same pool with another [`Reuse`] policy ([`Reuse::StealFirst`] unless said
    /// otherwise).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, Reuse, StreamOrderedPool};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?
    ///     .with_reuse(Reuse::GrowFirst);
    /// let a = pool.allocate(4096, 256, StreamKey(1))?;
    /// pool.deallocate(a, 4096, 256, StreamKey(1))?;
    /// let b = pool.allocate(4096, 256, StreamKey(2))?; // S2 grows its own heap
    /// assert_ne!(a, b);
    /// assert_eq!(pool.stats().steals, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_reuse(mut self, reuse: Reuse) -> Self {
        self.reuse = reuse;
        self
    }

    /// The [`Reuse`] policy.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, Reuse, StreamOrderedPool};
    /// use strata_core::SimUpstream;
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// assert_eq!(pool.reuse(), Reuse::StealFirst);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// The shared stream.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// assert_eq!(pool.shared_stream(), StreamKey::DEFAULT);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn shared_stream(&self) -> StreamKey {
        self.shared
    }

    /// The stream order.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::SimUpstream;
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// assert_eq!(*pool.order(), NoOrdering);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn order(&self) -> &O {
        &self.order
    }

    /// The pool's counters (takes every lock in turn: for reports, not for hot paths).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// pool.allocate(1000, 256, StreamKey(1))?;
    /// let s = pool.stats();
    /// assert_eq!((s.streams, s.live_bytes), (1, 1024));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> StreamPoolStats {
        let (mut free_bytes, mut live_bytes) = (0, 0);
        for i in self.table.used() {
            let h = self.table.lock(i);
            free_bytes += h.list.free_bytes();
            live_bytes += h.list.live_bytes();
        }
        let g = self.global.lock();
        free_bytes += g.reserve.iter().map(|r| r.len).sum::<u64>();
        StreamPoolStats {
            steals: self.steals.load(Ordering::Relaxed),
            merges: self.merges.load(Ordering::Relaxed),
            retired: self.retired.load(Ordering::Relaxed),
            streams: self.table.streams(),
            pool_size: g.pool_size,
            free_bytes,
            live_bytes,
        }
    }

    /// Free bytes freed on `stream`, over every heap.
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// let a = pool.allocate(1024, 256, StreamKey(1))?;
    /// pool.deallocate(a, 1024, 256, StreamKey(2))?;
    /// assert_eq!(pool.free_bytes_on(StreamKey(2)), 1024);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn free_bytes_on(&self, stream: StreamKey) -> u64 {
        self.table
            .used()
            .map(|i| {
                let h = self.table.lock(i);
                h.part_of(stream).map_or(0, |p| h.list.free_bytes_in(p))
            })
            .sum()
    }

    /// Retires `stream`: every block freed on it becomes a block freed on the shared stream,
    /// after `order_after(shared, stream)`; its heap goes to the next new stream. Call it after
    /// the last free on `stream` and before destroying it. Retiring a stream the pool never saw
    /// does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for the shared stream itself; the stream order's error (nothing
    /// changes then).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::StreamOrderedPool;
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::{SimUpstream, StreamKey};
    ///
    /// let streams = SimStreams::new();
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), &streams, PoolConfig::new(0))?;
    /// let (s1, s2) = (StreamKey(1), StreamKey(2));
    /// let a = streams.allocate(&pool, 4096, 256, s1)?;
    /// streams.deallocate(&pool, a, 4096, 256, s1)?;
    /// pool.retire_stream(s1)?; // the default stream waits for s1; s1 can go
    /// assert_eq!(pool.free_bytes_on(StreamKey::DEFAULT), 4096);
    /// streams.allocate(&pool, 4096, 256, s2)?; // s2 waits for the default stream
    /// assert!(streams.violations().is_empty());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn retire_stream(&self, stream: StreamKey) -> Result<(), Error> {
        if stream == self.shared {
            return Err(Error::Unsupported {
                what: "retiring the shared stream of a stream-ordered pool",
            });
        }
        let mut ordered = false;
        let mut order_once = || -> Result<(), Error> {
            if !ordered {
                self.order.order_after(self.shared, stream)?;
                ordered = true;
            }
            Ok(())
        };
        let had_heap = self.table.retire(stream, |h| {
            order_once()?;
            h.relabel(stream, self.shared)
        })?;
        for i in self.table.used() {
            let mut h = self.table.lock(i);
            if h.part_of(stream).is_some() {
                order_once()?;
                h.relabel(stream, self.shared)?;
            }
        }
        if had_heap {
            self.retired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives the wholly free chunks back to the upstream; returns the bytes given back.
    ///
    /// To keep stream order, every heap's free blocks are first labelled as freed on the
    /// shared stream (each after `order_after(shared, S)`), as if all streams were retired;
    /// the chunks then go back. The upstream itself is not stream-ordered: call this when the
    /// streams' work on those blocks is complete (a device synchronize), or over an upstream
    /// whose free waits for the device (as `cuMemFree` does).
    ///
    /// # Errors
    ///
    /// The stream order's error (the lists merged so far stay merged); the upstream's error
    /// when it refuses a chunk (that chunk stays, freed on the shared stream).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(4096))?;
    /// let a = pool.allocate(8192, 256, StreamKey(1))?; // grows by a second chunk
    /// pool.deallocate(a, 8192, 256, StreamKey(1))?;
    /// assert_eq!(pool.trim()?, 4096 + 8192);
    /// assert_eq!(pool.stats().pool_size, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&self) -> Result<u64, Error> {
        let mut released = self.release_reserve();
        for i in self.table.used() {
            let mut h = self.table.lock(i);
            released += self.trim_heap(&mut h, self.shared)?;
        }
        Ok(released)
    }

    /// Gives the reserve back to the upstream; returns the bytes given back. A chunk the
    /// upstream refuses stays in the reserve.
    fn release_reserve(&self) -> u64 {
        let mut g = self.global.lock();
        let Global {
            upstream,
            reserve,
            pool_size,
            ..
        } = &mut *g;
        let mut released = 0;
        reserve.retain(|&chunk| match upstream.deallocate(chunk) {
            Ok(()) => {
                released += chunk.len;
                false
            }
            Err(_) => true,
        });
        *pool_size -= released;
        self.reserve_bytes
            .store(reserve.iter().map(|r| r.len).sum(), Ordering::Relaxed);
        released
    }

    /// Merges every free list of heap `h` into the partition of `into`, each after
    /// `order_after(into, S)`; with `fit = Some((size, align))`, stops as soon as a block of
    /// that request can be allocated, and returns it.
    fn merge_into(
        &self,
        h: &mut Heap<N, P>,
        into: StreamKey,
        fit: Option<(u64, u64)>,
    ) -> Result<Option<u64>, Error> {
        let target = h.part_for(into)?;
        for q in 0..h.parts.len() {
            let q = q as PartitionId;
            if q == target || h.list.free_bytes_in(q) == 0 {
                continue;
            }
            if let Freer::Stream(s) = h.parts[q as usize] {
                self.order.order_after(into, s)?;
            }
            h.list.merge_partition(q, target)?;
            self.merges.fetch_add(1, Ordering::Relaxed);
            if let Some((size, align)) = fit {
                match h.list.allocate_in(target, size, align) {
                    Err(Error::OutOfMemory { .. }) => {}
                    other => return other.map(|r| Some(r.start)),
                }
            }
        }
        Ok(None)
    }

    /// Merges heap `h`'s free lists into `into`'s (ordered) and gives its wholly free chunks
    /// back to the upstream; returns the bytes given back.
    fn trim_heap(&self, h: &mut Heap<N, P>, into: StreamKey) -> Result<u64, Error> {
        self.merge_into(h, into, None)?;
        let mut released = 0;
        while let Some(chunk) = h.list.take_free_chunk() {
            let mut g = self.global.lock();
            if let Err(e) = g.upstream.deallocate(chunk) {
                // The chunk's nodes were just released, so this cannot fail; every free block
                // of the heap is `into`'s now.
                let target = h.part_for(into);
                debug_assert!(target.is_ok());
                let back = target.and_then(|p| h.list.add_chunk_in(p, chunk));
                debug_assert!(back.is_ok());
                return Err(e);
            }
            g.pool_size -= chunk.len;
            released += chunk.len;
        }
        Ok(released)
    }

    /// Grows `w`'s heap (slot `i`) and allocates from it; `None` when the upstream (or the
    /// maximum) refuses.
    fn grow_own(&self, i: usize, need: u64, size: u64, align: u64) -> Result<Option<u64>, Error> {
        let mut h = self.table.lock(i);
        match self.grow(&mut h, need) {
            Ok(()) => h.list.allocate_in(0, size, align).map(|r| Some(r.start)),
            Err(Error::OutOfMemory { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One block of heap `h` for stream `w`: freed by `w` (no ordering), or by another stream
    /// (after ordering `w` after it).
    fn steal_in(
        &self,
        h: &mut Heap<N, P>,
        w: StreamKey,
        size: u64,
        align: u64,
    ) -> Result<Option<u64>, Error> {
        let mine = h.part_of(w);
        if let Some(p) = mine {
            match h.list.allocate_in(p, size, align) {
                Err(Error::OutOfMemory { .. }) => {}
                other => return other.map(|r| Some(r.start)),
            }
        }
        // `find_partition_with_fit` skips one partition: `w`'s, or one past the last.
        let exclude = mine.unwrap_or(h.parts.len().min(PartitionId::MAX as usize) as PartitionId);
        let Some(q) = h.list.find_partition_with_fit(size, align, exclude) else {
            return Ok(None);
        };
        match h.parts[q as usize] {
            Freer::Stream(s) => {
                self.order.order_after(w, s)?;
                self.steals.fetch_add(1, Ordering::Relaxed);
            }
            Freer::Spare => debug_assert!(false, "a spare partition had a free block"),
        }
        h.list.allocate_in(q, size, align).map(|r| Some(r.start))
    }

    /// A never-used chunk of at least `need` bytes from the reserve, if there is one.
    fn take_reserve(&self, need: u64) -> Option<Range> {
        if self.reserve_bytes.load(Ordering::Relaxed) < need {
            return None;
        }
        let mut g = self.global.lock();
        let i = g.reserve.iter().position(|r| r.len >= need)?;
        let chunk = g.reserve.swap_remove(i);
        self.reserve_bytes.fetch_sub(chunk.len, Ordering::Relaxed);
        Some(chunk)
    }

    /// Grows heap `h` (stream `w`'s, locked by the caller) by a chunk for a block of `need`
    /// bytes, into its partition 0.
    fn grow(&self, h: &mut Heap<N, P>, need: u64) -> Result<(), Error> {
        let mut g = self.global.lock();
        let mut size = match g.maximum {
            Some(max) => {
                let room = max.saturating_sub(g.pool_size);
                if need > room {
                    return Err(Error::OutOfMemory {
                        requested: need,
                        largest_free: 0,
                        total_free: 0,
                    });
                }
                need.max(align_down(room / 2, DEFAULT_ALIGNMENT))
            }
            // The heap doubles (RMM doubles its one pool).
            None => need.max(h.list.chunk_bytes()),
        };
        loop {
            match g.upstream.allocate(size, DEFAULT_ALIGNMENT) {
                Ok(chunk) => {
                    if let Err(e) = h.list.add_chunk_in(0, chunk) {
                        // Not kept: straight back (an error here could only leak it upstream).
                        let _ = g.upstream.deallocate(chunk);
                        return Err(e);
                    }
                    g.pool_size += chunk.len;
                    return Ok(());
                }
                Err(Error::OutOfMemory { .. }) if size > need => {
                    size = need.max(align_down(size / 2, DEFAULT_ALIGNMENT));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Steps 2 to 5 of the allocation (see the type's documentation), for stream `w` whose
    /// heap is slot `i`.
    #[cold]
    fn allocate_slow(&self, i: usize, w: StreamKey, size: u64, align: u64) -> Result<u64, Error> {
        let need = CoalescingList::<N, P>::min_block_for(size, align)?;
        // 2. A never-used chunk.
        if let Some(chunk) = self.take_reserve(need) {
            let mut h = self.table.lock(i);
            if let Err(e) = h.list.add_chunk_in(0, chunk) {
                drop(h);
                self.global.lock().reserve.push(chunk);
                self.reserve_bytes.fetch_add(chunk.len, Ordering::Relaxed);
                return Err(e);
            }
            return h.list.allocate_in(0, size, align).map(|r| r.start);
        }
        let others = self.table.used().filter(|&j| j != i);
        let heaps = core::iter::once(i).chain(others.clone());
        // Growth first, touching no other stream's heap.
        if self.reuse == Reuse::GrowFirst
            && let Some(a) = self.grow_own(i, need, size, align)?
        {
            return Ok(a);
        }
        // 3. One block: `w`'s own heap first, then the others, one lock at a time.
        for j in heaps.clone() {
            if let Some(a) = self.steal_in(&mut self.table.lock(j), w, size, align)? {
                return Ok(a);
            }
        }
        // 4. Whole free lists, heap by heap.
        for j in heaps.clone() {
            match self.merge_into(&mut self.table.lock(j), w, Some((size, align))) {
                Ok(Some(a)) => return Ok(a),
                // A heap with no partition left for `w`: skip it.
                Ok(None) | Err(Error::MetadataExhausted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // 5. Grow (unless that just failed); if the upstream refuses, give back what is
        // wholly free (every free block is `w`'s by now) and grow again.
        if self.reuse == Reuse::StealFirst
            && let Some(a) = self.grow_own(i, need, size, align)?
        {
            return Ok(a);
        }
        let mut released = self.release_reserve();
        for j in heaps {
            match self.trim_heap(&mut self.table.lock(j), w) {
                Ok(n) => released += n,
                Err(Error::MetadataExhausted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if released > 0
            && let Some(a) = self.grow_own(i, need, size, align)?
        {
            return Ok(a);
        }
        Err(self.out_of_memory(size))
    }

    #[cold]
    fn out_of_memory(&self, requested: u64) -> Error {
        let (mut largest, mut total) = (0, 0);
        for i in self.table.used() {
            let h = self.table.lock(i);
            largest = largest.max(h.list.largest_free());
            total += h.list.free_bytes();
        }
        Error::OutOfMemory {
            requested,
            largest_free: largest,
            total_free: total,
        }
    }

    /// A free that `stream`'s own heap could not take: a block of another heap, or a bad free.
    #[cold]
    fn deallocate_slow(
        &self,
        own: Option<usize>,
        addr: u64,
        size: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        for j in self.table.used() {
            if Some(j) == own {
                continue;
            }
            let mut h = self.table.lock(j);
            if let Some(block) = h.list.live_block(addr) {
                if size == 0 || align_up(size, DEFAULT_ALIGNMENT) != Some(block.len) {
                    // Refused the same way in any partition: nothing changes.
                    return h.list.deallocate_in(0, addr, size);
                }
                let p = h.part_for(stream)?;
                return h.list.deallocate_in(p, addr, size);
            }
        }
        // No live block there: the heap whose chunks hold the address says why.
        for j in self.table.used() {
            let mut h = self.table.lock(j);
            if h.list.chunks().any(|c| c.contains(addr)) {
                return h.list.deallocate_in(0, addr, size);
            }
        }
        Err(Error::NotAllocated { addr })
    }
}

impl<U, O, const N: usize, const P: usize> MemoryResource for StreamOrderedPool<U, O, N, P>
where
    U: Upstream + Send,
    O: StreamOrder,
{
    #[inline]
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let i = match self.table.lookup(stream) {
            Some(i) => i,
            None => {
                // Validate before the stream gets a heap: a bad request changes nothing.
                CoalescingList::<N, P>::min_block_for(size, align)?;
                self.table.insert(stream, |_| true, |h| h.adopt(stream))?
            }
        };
        // 1. The stream's own free blocks in its own heap: no ordering.
        {
            let mut h = self.table.lock(i);
            match h.list.allocate_in(0, size, align) {
                Err(Error::OutOfMemory { .. }) => {}
                other => return other.map(|r| r.start),
            }
        }
        self.allocate_slow(i, stream, size, align)
    }

    #[inline]
    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        let own = self.table.lookup(stream);
        if let Some(i) = own {
            let mut h = self.table.lock(i);
            if h.list.is_live(addr) {
                return h.list.deallocate_in(0, addr, size);
            }
        }
        self.deallocate_slow(own, addr, size, stream)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> Drop
    for StreamOrderedPool<U, O, N, P>
{
    /// Gives every chunk back to the upstream, ignoring its errors (blocks still live then
    /// dangle, as with RMM).
    fn drop(&mut self) {
        let mut g = self.global.lock();
        for chunk in core::mem::take(&mut g.reserve) {
            let _ = g.upstream.deallocate(chunk);
        }
        for i in self.table.used() {
            let h = self.table.lock(i);
            for chunk in h.list.chunks() {
                let _ = g.upstream.deallocate(chunk);
            }
        }
    }
}
