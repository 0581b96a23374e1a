//! The stream-ordered pool: one heap per stream, each behind its own lock; ordering only when
//! memory crosses streams, a region at a time (feature `alloc`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::table::StreamTable;
use crate::algo::{BlockHandle, CoalescingList, PartitionId, PoolConfig};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::{
    DEFAULT_ALIGNMENT, Error, MemoryResource, Range, StreamKey, StreamOrder, Upstream, align_down,
    align_up,
};

/// How many borrowed regions a heap holds before it grows rather than borrow more (under
/// [`Reuse::StealFirst`]): every region is a chunk of its list, and a list's chunk operations
/// are linear in its chunks.
const REGION_CAP: usize = 16;

/// A heap that holds [`REGION_CAP`] regions grows by a quarter of its size (not the whole:
/// it is growing while other heaps have memory to spare).
const CAPPED_GROWTH_SHIFT: u32 = 2;

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
    /// RMM's order: take other streams' free memory first (a region of another heap's free
    /// blocks, lent whole to the stream's own heap, then whole lists), and grow only when none
    /// fits. The least memory; once a stream holds what it uses it runs on its own heap.
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
    /// Steals: regions of another stream's free blocks lent to a stream's heap (each cost one
    /// `order_after`).
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

/// A region of one heap's list that another heap holds as a chunk of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loan {
    len: u64,
    /// The other heap's slot: the borrower (in the lender's `lent`), or the lender (in the
    /// borrower's `borrowed`).
    slot: usize,
}

/// A stream's heap: the chunks it grew by and the regions it borrowed from other heaps, as the
/// chunks of a [`CoalescingList`] whose free blocks are partitioned by the stream that freed
/// them.
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
    /// Live blocks of `list` that are regions lent to other heaps, by start, with their
    /// handles: each is detached from the list's address table, so a free by address (the
    /// fast path) can never free one. They are disjoint, as the heap's chunks are (the list
    /// refuses overlapping chunks, so no heap ever holds a region nested in one of its own
    /// chunks either).
    lent: BTreeMap<u64, (Loan, BlockHandle)>,
    /// Bytes of the lent regions.
    lent_bytes: u64,
    /// Chunks of `list` that are regions borrowed from other heaps, by start.
    borrowed: BTreeMap<u64, Loan>,
    /// Heaps in which the owner freed blocks of theirs (cross-stream frees): where its own
    /// free blocks outside this heap may be. A hint; stale entries are dropped when seen.
    foreign: Vec<usize>,
}

impl<const N: usize, const P: usize> Heap<N, P> {
    fn new() -> Self {
        Self {
            list: CoalescingList::with_fixed_capacity(),
            parts: alloc::vec![Freer::Spare],
            spare: Vec::new(),
            lent: BTreeMap::new(),
            lent_bytes: 0,
            borrowed: BTreeMap::new(),
            foreign: Vec::new(),
        }
    }

    fn owner(&self) -> Freer {
        self.parts[0]
    }

    /// The lent region that contains `addr`, if there is one.
    fn loan_containing(&self, addr: u64) -> Option<(u64, Loan)> {
        self.lent
            .range(..=addr)
            .next_back()
            .filter(|&(&start, (loan, _))| addr - start < loan.len)
            .map(|(&start, &(loan, _))| (start, loan))
    }

    /// The borrowed region that contains `addr`, if there is one.
    fn borrowed_containing(&self, addr: u64) -> Option<(u64, Loan)> {
        self.borrowed
            .range(..=addr)
            .next_back()
            .filter(|&(&start, loan)| addr - start < loan.len)
            .map(|(&start, &loan)| (start, loan))
    }

    /// Records `region` (a live block of the list) as lent to heap `to`, and takes it out of
    /// the list's address table.
    fn lend(&mut self, region: Range, to: usize) {
        let handle = self.list.detach(region.start);
        debug_assert!(handle.is_some(), "a lent region is a live block");
        if let Some(handle) = handle {
            let loan = Loan {
                len: region.len,
                slot: to,
            };
            let old = self.lent.insert(region.start, (loan, handle));
            debug_assert!(old.is_none());
            self.lent_bytes += region.len;
        }
    }

    /// Forgets the loan of the region starting at `start` and frees the region into
    /// partition `p` (it was detached; it merges with its free neighbours there).
    fn unlend_into(&mut self, start: u64, p: PartitionId) -> Option<Loan> {
        let (loan, handle) = self.lent.remove(&start)?;
        self.lent_bytes -= loan.len;
        let freed = self.list.deallocate_detached_in(p, handle);
        debug_assert!(
            freed.is_ok(),
            "a lent region is a detached block of its lender"
        );
        Some(loan)
    }

    /// The partition of blocks freed on `stream`, if there is one.
    #[inline]
    fn part_of(&self, stream: StreamKey) -> Option<PartitionId> {
        self.parts
            .iter()
            .position(|&f| f == Freer::Stream(stream))
            .map(|p| p as PartitionId)
    }

    /// A partition id that names no partition (for `find_partition_with_fit` to exclude
    /// none).
    fn no_partition(&self) -> PartitionId {
        self.parts.len().min(PartitionId::MAX as usize) as PartitionId
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

    /// Makes partition `p` (now empty) a spare one, unless it is the owner's.
    fn release_part(&mut self, p: PartitionId) {
        debug_assert_eq!(self.list.free_bytes_in(p), 0);
        if p != 0 && self.parts[p as usize] != Freer::Spare {
            self.parts[p as usize] = Freer::Spare;
            self.spare.push(p);
        }
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
        self.foreign.clear();
        self.check();
        Ok(())
    }

    /// Takes every wholly free chunk out of the list; returns each with the stream that freed
    /// it. O(chunks × (chunks taken + 1)).
    fn take_free_chunks(&mut self) -> Vec<(Range, StreamKey)> {
        let mut free: Vec<u64> = (0..self.parts.len())
            .map(|p| self.list.free_bytes_in(p as PartitionId))
            .collect();
        let mut taken = Vec::new();
        while let Some(chunk) = self.list.take_free_chunk() {
            // The chunk was one free block: of the partition whose free bytes dropped by it.
            let p = (0..free.len())
                .find(|&p| free[p] - self.list.free_bytes_in(p as PartitionId) == chunk.len);
            match p.map(|p| (p, self.parts[p])) {
                Some((p, Freer::Stream(s))) => {
                    free[p] -= chunk.len;
                    taken.push((chunk, s));
                }
                _ => {
                    // A free block always lies in a partition that names a stream.
                    debug_assert!(false, "a wholly free chunk in no stream's partition");
                    let back = self.list.add_chunk_in(0, chunk);
                    debug_assert!(back.is_ok());
                    break;
                }
            }
        }
        taken
    }

    fn check(&self) {
        debug_assert_eq!(self.parts.len(), self.list.partition_count());
        debug_assert!(self.parts.iter().enumerate().all(|(p, f)| match f {
            Freer::Spare => self.list.free_bytes_in(p as PartitionId) == 0,
            Freer::Stream(s) => self.part_of(*s) == Some(p as PartitionId),
        }));
    }
}

/// A chunk taken from the upstream (not a borrowed region): the heap it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Root {
    len: u64,
    slot: usize,
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
    /// Every chunk a heap took from the upstream (or the reserve), by start: where a free
    /// that is not the freeing stream's own starts looking.
    chunks: BTreeMap<u64, Root>,
}

/// An allocation the slow path is serving.
#[derive(Debug, Clone, Copy)]
struct Want {
    size: u64,
    align: u64,
    /// The smallest free block sure to serve it.
    need: u64,
    /// The size of a region to borrow for it: the stream's heap doubles, as it would by
    /// growing (less when the lender has less to spare).
    target: u64,
}

/// What [`StreamOrderedPool::borrow`] found in a heap.
enum Borrowed {
    /// A block, from a region now in the borrower's heap.
    Block(u64),
    /// Nothing that fits; the stream still has free blocks there.
    NoFit,
    /// Nothing: the stream has no free block there.
    Gone,
}

/// A pool with one free list per stream, RMM's `stream_ordered_memory_resource` rebuilt for
/// many threads: a block freed on stream `S` is reused on `S` at once, with no ordering call; a
/// block that moves to another stream `W` costs one [`StreamOrder::order_after`]`(W, S)`, made
/// at the moment it moves (RMM records an event on every free instead).
///
/// # Structure
///
/// Each stream has a *heap*: a TLSF [`CoalescingList`] behind a lock of its own, found through
/// a lock-free stream table. Its chunks are the memory the stream took from the upstream, and
/// the *regions* it borrowed from other streams' heaps (a region is a free block of the
/// lender, lent whole: a live block there, a chunk here). A heap's free blocks are partitioned
/// by the stream that freed them (partition 0: the heap's own stream).
///
/// So every block allocated on `W` comes from `W`'s heap and, freed on `W`, goes back there:
/// a thread on its own stream runs on its own heap and its own lock, whatever memory it
/// started from. Memory that crosses streams moves a region at a time (each region as large
/// as the heap, as growth would make it, within half of what the lender has free), so
/// crossings are rare once each stream holds what it uses.
///
/// # Allocation on stream `W`
///
/// 1. From `W`'s heap, blocks `W` freed there (no ordering).
/// 2. Else a chunk never used yet (the initial size), moved into `W`'s heap (no ordering).
/// 3. Else blocks `W` freed in another heap (a block of another stream freed on `W`): a region
///    of them is borrowed (no ordering).
/// 4. Else blocks other streams freed in `W`'s heap: one stream's whole list, merged into
///    `W`'s after `order_after(W, S)`.
/// 5. Else a region of another heap's free blocks, freed by `S`, after `order_after(W, S)`: a
///    *steal*. The heap with the most free bytes is tried first; no heap is scanned, let
///    alone locked, that could not serve the request. (A stream that already holds 16
///    borrowed regions first gives back its wholly free ones; if it still holds 16, it grows
///    by a quarter of its heap instead, when the upstream allows: every region is a chunk of
///    its list, whose chunk operations are linear in its chunks.)
/// 6. Else, like RMM, whole free lists: wholly free borrowed regions go back to their lenders
///    (where they merge with their free neighbours), then every heap's lists are merged into
///    `W`'s, each after `order_after(W, S)`, until a block fits.
/// 7. Else `W`'s heap grows from the upstream (doubling it, or by half the room left under the
///    maximum); if the upstream refuses, the wholly free chunks of every heap (all `W`'s after
///    step 6) go back and the heap grows once more.
///
/// That is RMM's order, [`Reuse::StealFirst`], the default: the least memory. With
/// [`Reuse::GrowFirst`], step 7's first growth comes right after step 3: threads on their own
/// streams then touch no other stream's heap until the upstream refuses.
///
/// # Freeing on stream `S`
///
/// A block of `S`'s heap goes back there at once. A block of another heap (allocated on
/// another stream) goes back to the heap it came from, into `S`'s partition there; no ordering
/// call. Free a block on the stream that used it last (or order that stream after the others
/// first).
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
/// streams.deallocate(&pool, c, 1 << 20, 256, s2)?;
/// let d = streams.allocate(&pool, 1 << 20, 256, s2)?; // s2's own now: no more ordering
/// assert_eq!((d, streams.order_calls()), (a, 1));
/// assert!(streams.violations().is_empty());
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamOrderedPool<U: Upstream, O: StreamOrder, const N: usize = 0, const P: usize = 0> {
    order: O,
    shared: StreamKey,
    reuse: Reuse,
    /// Stream → its heap; each slot's hint is its heap's free bytes. Lock order: the table's
    /// insert lock, then one heap (never two), then the global state.
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
        let (initial, maximum) = config.rounded()?;
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
                chunks: BTreeMap::new(),
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
            // A lent region is live in its lender's list and a chunk in its borrower's.
            live_bytes += h.list.live_bytes() - h.lent_bytes;
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

    /// Checks every invariant: each heap's list and partitions; that every lent region is a
    /// live block of its lender and a chunk of its borrower, recorded on both sides; that the
    /// heaps' other chunks are exactly the chunks taken from the upstream; and the pool size.
    /// Takes every lock in turn: call it when no other thread uses the pool. For tests.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// use strata_core::algo::PoolConfig;
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let pool = StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0))?;
    /// let a = pool.allocate(4096, 256, StreamKey(1))?;
    /// pool.deallocate(a, 4096, 256, StreamKey(1))?;
    /// pool.allocate(1024, 256, StreamKey(2))?; // a region of stream 1's heap
    /// assert_eq!(pool.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        self.table.audit()?;
        // Per heap: (slot, chunks, lent, borrowed).
        type Snapshot = (usize, Vec<Range>, Vec<(u64, Loan)>, Vec<(u64, Loan)>);
        let mut heaps: Vec<Snapshot> = Vec::new();
        for i in self.table.used() {
            let h = self.table.lock(i);
            h.list.check_invariants()?;
            if h.parts.len() != h.list.partition_count() {
                return Err("a heap's partition labels do not match its list");
            }
            for (p, f) in h.parts.iter().enumerate() {
                let ok = match f {
                    Freer::Spare => h.list.free_bytes_in(p as PartitionId) == 0,
                    Freer::Stream(s) => h.part_of(*s) == Some(p as PartitionId),
                };
                if !ok {
                    return Err("a spare partition holds free blocks, or two name one stream");
                }
            }
            let mut lent_bytes = 0;
            for (&start, (loan, handle)) in &h.lent {
                if h.list.detached_block(*handle) != Some(Range::new(start, loan.len)) {
                    return Err("a lent region is not a detached live block of its lender");
                }
                lent_bytes += loan.len;
            }
            if lent_bytes != h.lent_bytes || h.lent_bytes > h.list.live_bytes() {
                return Err("a heap's lent bytes do not match its loans");
            }
            let chunks: Vec<Range> = h.list.chunks().collect();
            if h.borrowed
                .iter()
                .any(|(&start, loan)| !chunks.contains(&Range::new(start, loan.len)))
            {
                return Err("a borrowed region is not a chunk of its borrower");
            }
            let lent = h.lent.iter().map(|(&s, &(l, _))| (s, l)).collect();
            let borrowed = h.borrowed.iter().map(|(&s, &l)| (s, l)).collect();
            heaps.push((i, chunks, lent, borrowed));
        }
        let find = |slot: usize| heaps.iter().find(|h| h.0 == slot);
        for (i, _, lent, borrowed) in &heaps {
            for &(start, loan) in lent {
                let back = find(loan.slot).and_then(|b| b.3.iter().find(|e| e.0 == start));
                if back.map(|e| e.1)
                    != Some(Loan {
                        len: loan.len,
                        slot: *i,
                    })
                {
                    return Err("a lent region is not recorded by its borrower");
                }
            }
            for &(start, loan) in borrowed {
                let back = find(loan.slot).and_then(|l| l.2.iter().find(|e| e.0 == start));
                if back.map(|e| e.1)
                    != Some(Loan {
                        len: loan.len,
                        slot: *i,
                    })
                {
                    return Err("a borrowed region is not recorded by its lender");
                }
            }
        }
        let g = self.global.lock();
        let mut roots = 0;
        for (i, chunks, _, borrowed) in &heaps {
            for c in chunks {
                if borrowed.iter().any(|e| e.0 == c.start) {
                    continue;
                }
                if g.chunks.get(&c.start)
                    != Some(&Root {
                        len: c.len,
                        slot: *i,
                    })
                {
                    return Err("a heap's chunk is not recorded as taken from the upstream");
                }
                roots += 1;
            }
        }
        if roots != g.chunks.len() {
            return Err("a chunk taken from the upstream is in no heap");
        }
        let held: u64 = g.chunks.values().map(|r| r.len).sum::<u64>()
            + g.reserve.iter().map(|r| r.len).sum::<u64>();
        if held != g.pool_size {
            return Err("the pool size does not match the chunks and the reserve");
        }
        Ok(())
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
        let heaps: Vec<usize> = self.table.used().collect();
        self.trim_all(&heaps, self.shared)
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

    /// Gives every wholly free chunk of every heap back to the upstream, after labelling every
    /// free block as freed on `into` (each list after `order_after(into, S)`); wholly free
    /// borrowed regions go back to their lenders first, as often as that frees more. Returns
    /// the bytes given back to the upstream.
    fn trim_all(&self, heaps: &[usize], into: StreamKey) -> Result<u64, Error> {
        let mut released = self.release_reserve();
        loop {
            let mut returned = false;
            for &j in heaps {
                match self.trim_heap(j, into) {
                    Ok((bytes, back)) => {
                        released += bytes;
                        returned |= back;
                    }
                    Err(Error::MetadataExhausted { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            // A region that went back may have made its lender's chunk wholly free.
            if !returned {
                return Ok(released);
            }
        }
    }

    /// Merges every free list of heap `h` into the partition of `into`, each after
    /// `order_after(into, S)`; after each merge, `take(h, partition)` may take what it wants
    /// from the merged list (and the merging stops).
    fn merge_into<T>(
        &self,
        h: &mut Heap<N, P>,
        into: StreamKey,
        mut take: impl FnMut(&mut Heap<N, P>, PartitionId) -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let target = h.part_for(into)?;
        if h.list.free_bytes_in(target) > 0
            && let Some(t) = take(h, target)?
        {
            return Ok(Some(t));
        }
        for q in 0..h.parts.len() {
            let q = q as PartitionId;
            if q == target || h.list.free_bytes_in(q) == 0 {
                continue;
            }
            if let Freer::Stream(s) = h.parts[q as usize] {
                self.order.order_after(into, s)?;
            }
            h.list.merge_partition(q, target)?;
            h.release_part(q);
            self.merges.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = take(h, target)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Merges heap `j`'s free lists into `into`'s (ordered) and gives its wholly free chunks
    /// back: its own to the upstream, its borrowed regions to their lenders. Returns the bytes
    /// given back to the upstream and whether a region went back.
    fn trim_heap(&self, j: usize, into: StreamKey) -> Result<(u64, bool), Error> {
        let mut regions = Vec::new();
        let mut released = 0;
        {
            let mut h = self.table.lock(j);
            self.merge_into(&mut h, into, |_, _| Ok(None::<()>))?;
            while let Some(chunk) = h.list.take_free_chunk() {
                if let Some(loan) = h.borrowed.remove(&chunk.start) {
                    regions.push((chunk, loan.slot));
                    continue;
                }
                let mut g = self.global.lock();
                if let Err(e) = g.upstream.deallocate(chunk) {
                    drop(g);
                    // The chunk's nodes were just released, so this cannot fail; every free
                    // block of the heap is `into`'s now.
                    let back = h.part_for(into).and_then(|p| h.list.add_chunk_in(p, chunk));
                    debug_assert!(back.is_ok());
                    self.table.set_hint(j, h.list.free_bytes());
                    drop(h);
                    for &(region, lender) in &regions {
                        self.put_back(lender, region, into, j);
                    }
                    return Err(e);
                }
                let root = g.chunks.remove(&chunk.start);
                debug_assert_eq!(root.map(|r| (r.len, r.slot)), Some((chunk.len, j)));
                g.pool_size -= chunk.len;
                released += chunk.len;
            }
            self.table.set_hint(j, h.list.free_bytes());
        }
        for &(region, lender) in &regions {
            self.put_back(lender, region, into, j);
        }
        Ok((released, !regions.is_empty()))
    }

    /// Frees `region`, which heap `from` gives back (wholly free, freed on `freer`), in its
    /// lender `j`: into `freer`'s partition there, where it merges with its free neighbours.
    fn put_back(&self, j: usize, region: Range, freer: StreamKey, from: usize) {
        let mut h = self.table.lock(j);
        match h.part_for(freer) {
            Ok(p) => {
                let loan = h.unlend_into(region.start, p);
                debug_assert_eq!(
                    loan,
                    Some(Loan {
                        len: region.len,
                        slot: from
                    })
                );
                self.table.set_hint(j, h.list.free_bytes());
            }
            Err(_) => {
                // No partition left for `freer` here (fixed partitions): the region stays with
                // the heap that gave it back, as it was.
                drop(h);
                let mut b = self.table.lock(from);
                let back = b
                    .part_for(freer)
                    .and_then(|p| b.list.add_chunk_in(p, region));
                debug_assert!(back.is_ok());
                if back.is_ok() {
                    b.borrowed.insert(
                        region.start,
                        Loan {
                            len: region.len,
                            slot: j,
                        },
                    );
                }
            }
        }
    }

    /// Gives heap `b`'s wholly free borrowed regions back to their lenders, each into the
    /// partition of the stream that freed it there (no ordering: the blocks keep their
    /// label). Returns how many went back.
    fn return_idle(&self, b: usize) -> usize {
        let back: Vec<(Range, usize, StreamKey)> = {
            let mut h = self.table.lock(b);
            if h.borrowed.is_empty() {
                return 0;
            }
            let mut back = Vec::new();
            for (chunk, freer) in h.take_free_chunks() {
                if let Some(loan) = h.borrowed.remove(&chunk.start) {
                    back.push((chunk, loan.slot, freer));
                } else {
                    // A chunk of the heap's own: it stays, as it was (its nodes were just
                    // released, so this cannot fail).
                    let again = h
                        .part_of(freer)
                        .ok_or(Error::UnknownStream { stream: freer.0 })
                        .and_then(|p| h.list.add_chunk_in(p, chunk));
                    debug_assert!(again.is_ok());
                }
            }
            self.table.set_hint(b, h.list.free_bytes());
            back
        };
        for &(region, lender, freer) in &back {
            self.put_back(lender, region, freer, b);
        }
        back.len()
    }

    /// Grows `w`'s heap (slot `i`, by its size shifted right by `shift`, at least) and
    /// allocates from it; `None` when the upstream (or the maximum) refuses.
    fn grow_own(&self, i: usize, want: &Want, shift: u32) -> Result<Option<u64>, Error> {
        let mut h = self.table.lock(i);
        let grown = self.grow(&mut h, i, want.need, shift);
        let r = match grown {
            Ok(()) => h
                .list
                .allocate_in(0, want.size, want.align)
                .map(|r| Some(r.start)),
            Err(Error::OutOfMemory { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        self.table.set_hint(i, h.list.free_bytes());
        r
    }

    /// Grows heap `h` (slot `i`, locked by the caller) by a chunk for a block of `need`
    /// bytes, into its partition 0: with no maximum, by the heap's size shifted right by
    /// `shift` (0: the heap doubles), or `need` if more.
    fn grow(&self, h: &mut Heap<N, P>, i: usize, need: u64, shift: u32) -> Result<(), Error> {
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
            None => need.max(align_down(h.list.chunk_bytes() >> shift, DEFAULT_ALIGNMENT)),
        };
        loop {
            match g.upstream.allocate(size, DEFAULT_ALIGNMENT) {
                Ok(chunk) => {
                    if let Err(e) = h.list.add_chunk_in(0, chunk) {
                        // Not kept: straight back (an error here could only leak it upstream).
                        let _ = g.upstream.deallocate(chunk);
                        return Err(e);
                    }
                    g.chunks.insert(
                        chunk.start,
                        Root {
                            len: chunk.len,
                            slot: i,
                        },
                    );
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

    /// Step 2: a never-used chunk of at least `need` bytes from the reserve, moved into heap `i`.
    fn take_reserve(&self, i: usize, want: &Want) -> Result<Option<u64>, Error> {
        if self.reserve_bytes.load(Ordering::Relaxed) < want.need {
            return Ok(None);
        }
        let chunk = {
            let mut g = self.global.lock();
            let Some(k) = g.reserve.iter().position(|r| r.len >= want.need) else {
                return Ok(None);
            };
            let chunk = g.reserve.swap_remove(k);
            self.reserve_bytes.fetch_sub(chunk.len, Ordering::Relaxed);
            g.chunks.insert(
                chunk.start,
                Root {
                    len: chunk.len,
                    slot: i,
                },
            );
            chunk
        };
        let mut h = self.table.lock(i);
        if let Err(e) = h.list.add_chunk_in(0, chunk) {
            drop(h);
            let mut g = self.global.lock();
            g.chunks.remove(&chunk.start);
            g.reserve.push(chunk);
            self.reserve_bytes.fetch_add(chunk.len, Ordering::Relaxed);
            return Err(e);
        }
        let r = h.list.allocate_in(0, want.size, want.align);
        self.table.set_hint(i, h.list.free_bytes());
        r.map(|r| Some(r.start))
    }

    /// Carves a region for heap `to` out of partition `q` of heap `h`: `want.target` bytes, but
    /// at most half the partition's free bytes and at most its largest free block (at least
    /// `want.need`); records the loan. `None` when nothing fits, or when the block lies in a
    /// region `to` lent to `h` (`to` cannot hold a region inside one of its own chunks).
    fn carve(
        h: &mut Heap<N, P>,
        q: PartitionId,
        to: usize,
        want: &Want,
    ) -> Result<Option<Range>, Error> {
        let half = align_down(h.list.free_bytes_in(q) / 2, DEFAULT_ALIGNMENT);
        let mut len = want.target.min(half).max(want.need);
        if len > want.need {
            // No more than the largest free block: one attempt, sure to succeed if any can.
            len = len.min(h.list.largest_free_in(q)).max(want.need);
        }
        let region = match h.list.allocate_in(q, len, DEFAULT_ALIGNMENT) {
            Ok(r) => r,
            Err(Error::OutOfMemory { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if h.borrowed_containing(region.start)
            .is_some_and(|(_, loan)| loan.slot == to)
        {
            let back = h.list.deallocate_in(q, region.start, region.len);
            debug_assert!(back.is_ok());
            return Ok(None);
        }
        h.lend(region, to);
        Ok(Some(region))
    }

    /// Moves a region for stream `w`'s heap `i` out of heap `j`: blocks `w` freed there (no
    /// ordering) or, with `steal`, blocks another stream `S` freed there (after
    /// `order_after(w, S)`); then allocates the request from it.
    fn borrow(
        &self,
        i: usize,
        w: StreamKey,
        j: usize,
        want: &Want,
        steal: bool,
    ) -> Result<Borrowed, Error> {
        let (region, source) = {
            let mut h = self.table.lock(j);
            let mine = h.part_of(w);
            let mut got = None;
            if let Some(p) = mine {
                got = Self::carve(&mut h, p, i, want)?.map(|r| (r, w));
            }
            if got.is_none() && steal {
                let exclude = mine.unwrap_or(h.no_partition());
                if let Some(q) =
                    h.list
                        .find_partition_with_fit(want.need, DEFAULT_ALIGNMENT, exclude)
                {
                    let Freer::Stream(s) = h.parts[q as usize] else {
                        debug_assert!(false, "a spare partition had a free block");
                        return Ok(Borrowed::NoFit);
                    };
                    // Carved first, ordered then: no ordering for a region not taken. (The
                    // region is nobody's until it reaches `i`'s heap.)
                    if let Some(region) = Self::carve(&mut h, q, i, want)? {
                        if let Err(e) = self.order.order_after(w, s) {
                            // Not taken: back where it was, as it was.
                            h.unlend_into(region.start, q);
                            return Err(e);
                        }
                        self.steals.fetch_add(1, Ordering::Relaxed);
                        got = Some((region, s));
                    }
                }
            }
            let gone = mine.is_none_or(|p| h.list.free_bytes_in(p) == 0);
            self.table.set_hint(j, h.list.free_bytes());
            match got {
                Some(g) => g,
                None if gone => return Ok(Borrowed::Gone),
                None => return Ok(Borrowed::NoFit),
            }
        };
        self.lend_into(i, w, j, region, source, want)
    }

    /// Adds `region`, lent by heap `j` (blocks freed by `source`; `w` is ordered after it),
    /// to `w`'s heap `i` as a chunk, and allocates the request from it.
    fn lend_into(
        &self,
        i: usize,
        w: StreamKey,
        j: usize,
        region: Range,
        source: StreamKey,
        want: &Want,
    ) -> Result<Borrowed, Error> {
        let mut h = self.table.lock(i);
        match h.list.add_chunk_in(0, region) {
            Ok(()) => {
                h.borrowed.insert(
                    region.start,
                    Loan {
                        len: region.len,
                        slot: j,
                    },
                );
                let r = h.list.allocate_in(0, want.size, want.align);
                self.table.set_hint(i, h.list.free_bytes());
                r.map(|r| Borrowed::Block(r.start))
            }
            Err(e) => {
                drop(h);
                // Not taken: back to the lender, labelled as it was there (or as `w`'s, which
                // is ordered after it).
                let mut l = self.table.lock(j);
                let p = l.part_of(source).map_or_else(|| l.part_for(w), Ok);
                // `source`'s partition held the region's blocks a moment ago, so it exists.
                debug_assert!(p.is_ok());
                if let Ok(p) = p {
                    let loan = l.unlend_into(region.start, p);
                    debug_assert!(loan.is_some());
                }
                self.table.set_hint(j, l.list.free_bytes());
                match e {
                    // A region inside one of `i`'s own chunks (lent on by its borrower).
                    Error::Unsupported { .. } => Ok(Borrowed::NoFit),
                    e => Err(e),
                }
            }
        }
    }

    /// Step 3: blocks `w` freed in other heaps (cross-stream frees), borrowed with no ordering.
    fn reuse_own_frees(&self, i: usize, w: StreamKey, want: &Want) -> Result<Option<u64>, Error> {
        let hints = {
            let h = self.table.lock(i);
            if h.foreign.is_empty() {
                return Ok(None);
            }
            h.foreign.clone()
        };
        let mut gone = Vec::new();
        let mut found = None;
        for j in hints {
            match self.borrow(i, w, j, want, false)? {
                Borrowed::Block(a) => {
                    found = Some(a);
                    break;
                }
                Borrowed::Gone => gone.push(j),
                Borrowed::NoFit => {}
            }
        }
        if !gone.is_empty() {
            self.table.lock(i).foreign.retain(|j| !gone.contains(j));
        }
        Ok(found)
    }

    /// Step 4: blocks other streams freed in `w`'s own heap: the list of one stream that has a
    /// block that fits, merged into `w`'s after ordering.
    fn steal_own(&self, i: usize, w: StreamKey, want: &Want) -> Result<Option<u64>, Error> {
        let mut h = self.table.lock(i);
        if h.list.free_bytes() == h.list.free_bytes_in(0) {
            return Ok(None);
        }
        let Some(q) = h
            .list
            .find_partition_with_fit(want.need, DEFAULT_ALIGNMENT, 0)
        else {
            return Ok(None);
        };
        if let Freer::Stream(s) = h.parts[q as usize] {
            self.order.order_after(w, s)?;
        }
        h.list.merge_partition(q, 0)?;
        h.release_part(q);
        self.merges.fetch_add(1, Ordering::Relaxed);
        let r = h.list.allocate_in(0, want.size, want.align);
        self.table.set_hint(i, h.list.free_bytes());
        r.map(|r| Some(r.start))
    }

    /// Step 5: a region of another heap, most free bytes first: the heaps whose free bytes (the
    /// slot hints, read without a lock) cannot hold the request are not locked.
    fn steal_foreign(
        &self,
        heaps: &[usize],
        i: usize,
        w: StreamKey,
        want: &Want,
    ) -> Result<Option<u64>, Error> {
        let best = heaps
            .iter()
            .copied()
            .filter(|&j| j != i)
            .map(|j| (self.table.hint(j), j))
            .max();
        let Some((free, best)) = best else {
            return Ok(None);
        };
        if free < want.need {
            return Ok(None);
        }
        if let Borrowed::Block(a) = self.borrow(i, w, best, want, true)? {
            return Ok(Some(a));
        }
        for &j in heaps {
            if j != i
                && j != best
                && self.table.hint(j) >= want.need
                && let Borrowed::Block(a) = self.borrow(i, w, j, want, true)?
            {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// Step 6: wholly free borrowed regions back to their lenders, then whole free lists merged
    /// into `w`'s, heap by heap (`w`'s own first), until a block fits.
    fn merge_all(
        &self,
        heaps: &[usize],
        i: usize,
        w: StreamKey,
        want: &Want,
    ) -> Result<Option<u64>, Error> {
        for &b in heaps {
            self.return_idle(b);
        }
        let others = heaps.iter().copied().filter(|&j| j != i);
        for j in core::iter::once(i).chain(others) {
            let mut h = self.table.lock(j);
            if h.list.free_bytes() == 0 {
                continue;
            }
            let got = self.merge_into(&mut h, w, |h, p| {
                if j == i {
                    match h.list.allocate_in(p, want.size, want.align) {
                        Ok(r) => Ok(Some((r, w))),
                        Err(Error::OutOfMemory { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(Self::carve(h, p, i, want)?.map(|r| (r, w)))
                }
            });
            self.table.set_hint(j, h.list.free_bytes());
            drop(h);
            match got {
                Ok(Some((r, _))) if j == i => return Ok(Some(r.start)),
                Ok(Some((region, source))) => {
                    if let Borrowed::Block(a) = self.lend_into(i, w, j, region, source, want)? {
                        return Ok(Some(a));
                    }
                }
                // A heap with no partition left for `w`: skip it.
                Ok(None) | Err(Error::MetadataExhausted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Steps 2 to 7 of the allocation (see the type's documentation), for stream `w` whose
    /// heap is slot `i` (holding `own` bytes of chunks).
    #[cold]
    fn allocate_slow(
        &self,
        i: usize,
        w: StreamKey,
        size: u64,
        align: u64,
        (own, regions): (u64, usize),
    ) -> Result<u64, Error> {
        let need = CoalescingList::<N, P>::min_block_for(size, align)?;
        let want = Want {
            size,
            align,
            need,
            target: need.max(own),
        };
        if let Some(a) = self.take_reserve(i, &want)? {
            return Ok(a);
        }
        if let Some(a) = self.reuse_own_frees(i, w, &want)? {
            return Ok(a);
        }
        // Growth first, touching no other stream's memory.
        if self.reuse == Reuse::GrowFirst
            && let Some(a) = self.grow_own(i, &want, 0)?
        {
            return Ok(a);
        }
        if let Some(a) = self.steal_own(i, w, &want)? {
            return Ok(a);
        }
        // A stream that already lives on many borrowed regions gives back the idle ones and,
        // if it still holds many, grows before it borrows more.
        if self.reuse == Reuse::StealFirst
            && regions >= REGION_CAP
            && regions - self.return_idle(i) >= REGION_CAP
            && let Some(a) = self.grow_own(i, &want, CAPPED_GROWTH_SHIFT)?
        {
            return Ok(a);
        }
        // The heaps to look at from here on (a slot, once used, stays so; a slot taken
        // meanwhile holds a new, empty heap).
        let heaps: Vec<usize> = self.table.used().collect();
        if let Some(a) = self.steal_foreign(&heaps, i, w, &want)? {
            return Ok(a);
        }
        if let Some(a) = self.merge_all(&heaps, i, w, &want)? {
            return Ok(a);
        }
        // 7. Grow (unless that just failed); if the upstream refuses, give back what is
        // wholly free (every free block is `w`'s by now) and grow again.
        if self.reuse == Reuse::StealFirst
            && let Some(a) = self.grow_own(i, &want, 0)?
        {
            return Ok(a);
        }
        if self.trim_all(&heaps, w)? > 0
            && let Some(a) = self.grow_own(i, &want, 0)?
        {
            return Ok(a);
        }
        Err(self.out_of_memory(&heaps, size))
    }

    #[cold]
    fn out_of_memory(&self, heaps: &[usize], requested: u64) -> Error {
        let (mut largest, mut total) = (0, 0);
        for &i in heaps {
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

    /// A free that `stream`'s own heap could not take: a block of another heap, or a bad
    /// free. The chunk holding `addr` names its heap; a region lent on from there names the
    /// next, until the heap whose block it is.
    #[cold]
    fn deallocate_slow(&self, addr: u64, size: u64, stream: StreamKey) -> Result<(), Error> {
        let root = {
            let g = self.global.lock();
            g.chunks
                .range(..=addr)
                .next_back()
                .filter(|&(&start, root)| addr - start < root.len)
                .map(|(_, root)| root.slot)
        };
        let Some(mut j) = root else {
            return Err(Error::NotAllocated { addr });
        };
        // Regions nest at most once per heap (a heap holds no region inside its own chunks).
        for _ in 0..=self.table.len() {
            let mut h = self.table.lock(j);
            if let Some((_, loan)) = h.loan_containing(addr) {
                j = loan.slot;
                continue;
            }
            let Some(block) = h.list.live_block(addr) else {
                // No live block there: the list says why (nothing changes).
                return h.list.deallocate_in(0, addr, size);
            };
            if size == 0 || align_up(size, DEFAULT_ALIGNMENT) != Some(block.len) {
                // Refused the same way in any partition: nothing changes.
                return h.list.deallocate_in(0, addr, size);
            }
            let p = h.part_for(stream)?;
            h.list.deallocate_in(p, addr, size)?;
            self.table.set_hint(j, h.list.free_bytes());
            drop(h);
            // Tell `stream`'s heap where its free blocks are.
            if p != 0
                && let Some(i) = self.table.lookup(stream)
                && i != j
            {
                let mut own = self.table.lock(i);
                if !own.foreign.contains(&j) {
                    own.foreign.push(j);
                }
            }
            return Ok(());
        }
        // Only while regions move under a bad free: nothing is live there.
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
        let own = {
            let mut h = self.table.lock(i);
            match h.list.allocate_in(0, size, align) {
                Err(Error::OutOfMemory { .. }) => (h.list.chunk_bytes(), h.borrowed.len()),
                // The heap's hint is left high: it is refreshed on the next free, and a thief
                // misled by it only finds no fit.
                other => return other.map(|r| r.start),
            }
        };
        self.allocate_slow(i, stream, size, align, own)
    }

    #[inline]
    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        if let Some(i) = self.table.lookup(stream) {
            let mut h = self.table.lock(i);
            // One lookup: a block of this heap's own is freed; a region it lent to another
            // heap is detached from its address table, so never found here.
            if h.list.deallocate_if_live(0, addr, size)? {
                self.table.set_hint(i, h.list.free_bytes());
                return Ok(());
            }
        }
        self.deallocate_slow(addr, size, stream)
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
        for (start, root) in core::mem::take(&mut g.chunks) {
            let _ = g.upstream.deallocate(Range::new(start, root.len));
        }
    }
}
