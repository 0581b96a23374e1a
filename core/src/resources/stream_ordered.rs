//! The stream-ordered pool: one free list per stream, ordering only when a block crosses
//! streams (feature `alloc`).

use alloc::vec::Vec;

use crate::algo::{CoalescingList, PartitionId, PoolConfig};
use crate::sync::Mutex;
use crate::{
    DEFAULT_ALIGNMENT, Error, MemoryResource, StreamKey, StreamOrder, Upstream, align_down,
    align_up,
};

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
    /// Blocks taken from another stream's free list (each cost one `order_after`).
    pub steals: u64,
    /// Whole free lists of other streams merged into a stream's list (each cost one
    /// `order_after`, unless the list held only never-used memory).
    pub merges: u64,
    /// Streams retired with [`StreamOrderedPool::retire_stream`].
    pub retired: u64,
    /// Streams that have a free list now.
    pub streams: usize,
    /// Bytes held from the upstream.
    pub pool_size: u64,
    /// Free bytes, over all streams.
    pub free_bytes: u64,
    /// Bytes in live blocks (each rounded up to 256).
    pub live_bytes: u64,
}

/// Who a partition of the list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Partition 0: memory fresh from the upstream that no stream has used yet; anyone may
    /// take it with no ordering.
    Fresh,
    /// The free list of a stream: blocks freed on it.
    Stream(StreamKey),
    /// The list of a retired stream, empty, waiting to serve a new stream.
    Spare,
}

/// The partition of fresh memory.
const FRESH: PartitionId = 0;

#[derive(Debug)]
struct State<U, const N: usize, const P: usize> {
    upstream: U,
    list: CoalescingList<N, P>,
    /// The maximum pool size, rounded down to 256.
    maximum: Option<u64>,
    /// Stream → its partition. Invariant: keys distinct, and `owners[p] == Stream(key)` for
    /// every entry `(key, p)` (and for no other partition).
    streams: Vec<(StreamKey, PartitionId)>,
    /// Partition → owner. Invariant: `owners.len() == list.partition_count()`,
    /// `owners[0] == Fresh`, and a `Spare` partition has no free block.
    owners: Vec<Owner>,
    /// The `Spare` partitions.
    spare: Vec<PartitionId>,
    steals: u64,
    merges: u64,
    retired: u64,
}

impl<U: Upstream, const N: usize, const P: usize> State<U, N, P> {
    #[inline]
    fn lookup(&self, stream: StreamKey) -> Option<PartitionId> {
        self.streams
            .iter()
            .find(|&&(k, _)| k == stream)
            .map(|&(_, p)| p)
    }

    /// Gives `stream` a partition (a spare one, or a new one).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when no partition is left; nothing changes then.
    fn add_stream(&mut self, stream: StreamKey) -> Result<PartitionId, Error> {
        debug_assert!(self.lookup(stream).is_none());
        let p = match self.spare.pop() {
            Some(p) => p,
            None => {
                let p = self.list.add_partition()?;
                debug_assert_eq!(p as usize, self.owners.len());
                self.owners.push(Owner::Spare);
                p
            }
        };
        debug_assert_eq!(
            self.list.free_bytes_in(p),
            0,
            "a spare partition holds blocks"
        );
        self.owners[p as usize] = Owner::Stream(stream);
        self.streams.push((stream, p));
        Ok(p)
    }

    fn partition_for(&mut self, stream: StreamKey) -> Result<PartitionId, Error> {
        match self.lookup(stream) {
            Some(p) => Ok(p),
            None => self.add_stream(stream),
        }
    }

    /// Takes a new chunk for a block of `need` bytes into partition `part`: RMM's policy
    /// (double the pool, or half the room left under a maximum), halving on refusal, never
    /// below `need`.
    fn grow(&mut self, part: PartitionId, need: u64) -> Result<(), Error> {
        let pool_size = self.list.chunk_bytes();
        let mut size = match self.maximum {
            Some(max) => {
                let room = max.saturating_sub(pool_size);
                if need > room {
                    return Err(Error::OutOfMemory {
                        requested: need,
                        largest_free: 0,
                        total_free: 0,
                    });
                }
                need.max(align_down(room / 2, DEFAULT_ALIGNMENT))
            }
            None => need.max(pool_size),
        };
        loop {
            match self.upstream.allocate(size, DEFAULT_ALIGNMENT) {
                Ok(chunk) => {
                    if let Err(e) = self.list.add_chunk_in(part, chunk) {
                        // Not kept: straight back (an error here could only leak it upstream).
                        let _ = self.upstream.deallocate(chunk);
                        return Err(e);
                    }
                    return Ok(());
                }
                Err(Error::OutOfMemory { .. }) if size > need => {
                    size = need.max(align_down(size / 2, DEFAULT_ALIGNMENT));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives every wholly free chunk back to the upstream. Precondition: every free block is
    /// in partition `part` (so a chunk the upstream refuses goes back where it was).
    fn trim_all_in(&mut self, part: PartitionId) -> Result<u64, Error> {
        debug_assert_eq!(self.list.free_bytes_in(part), self.list.free_bytes());
        let mut released = 0;
        while let Some(chunk) = self.list.take_free_chunk() {
            if let Err(e) = self.upstream.deallocate(chunk) {
                // The chunk's two nodes were just released, so this cannot fail.
                let _ = self.list.add_chunk_in(part, chunk);
                return Err(e);
            }
            released += chunk.len;
        }
        Ok(released)
    }

    fn check(&self) {
        debug_assert_eq!(self.owners.len(), self.list.partition_count());
        debug_assert_eq!(self.owners.first(), Some(&Owner::Fresh));
        debug_assert!(
            self.streams
                .iter()
                .all(|&(k, p)| self.owners[p as usize] == Owner::Stream(k))
        );
        debug_assert!(
            self.spare.iter().all(
                |&p| self.owners[p as usize] == Owner::Spare && self.list.free_bytes_in(p) == 0
            )
        );
    }
}

/// A pool with one free list per stream, RMM's `stream_ordered_memory_resource` over strata's
/// TLSF list: a block freed on stream `S` is reused on `S` at once, with no ordering call; a
/// block that moves to another stream `W` costs one [`StreamOrder::order_after`]`(W, S)`, made
/// at the moment it moves (RMM records an event on every free instead).
///
/// # Allocation on stream `W`
///
/// 1. From `W`'s own free list (no ordering).
/// 2. Else one block from another list that has one that fits: never-used memory freely, a
///    block of stream `S` after `order_after(W, S)` (a *steal*). What is left of the block
///    stays in `S`'s list.
/// 3. Else, like RMM, whole lists of other streams are merged into `W`'s, each after
///    `order_after(W, S)`, until a block fits.
/// 4. Else the pool grows from the upstream (RMM's policy: by the pool's size, or by half the
///    room left under the maximum), and if the upstream refuses, gives back its wholly free
///    chunks and grows once more (all free blocks are `W`'s by then, so that is safe).
///
/// # Freeing
///
/// A free on `S` puts the block in `S`'s list; it calls nothing. Free a block on the stream
/// that used it last (or order that stream after the others that used it first).
///
/// # Streams that go away
///
/// [`retire_stream`](Self::retire_stream)`(S)` hands `S`'s free blocks to the *shared stream*
/// (the default stream unless [`with_shared_stream`](Self::with_shared_stream) says otherwise)
/// after `order_after(shared, S)`; then `S` may be destroyed. A block of a retired stream is
/// reused by another stream only after that stream is ordered after the shared one, hence after
/// `S`'s work. The pool never strands blocks: retire every stream before destroying it.
///
/// All of this happens under one lock (as in RMM); `order_after` is called with the lock held.
/// Metadata: `N` list nodes and `P` partitions inline (0: growable), as in [`CoalescingList`];
/// the stream table is on the heap.
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
    state: Mutex<State<U, N, P>>,
}

impl<U: Upstream, O: StreamOrder> StreamOrderedPool<U, O> {
    /// A pool over `upstream` with growable metadata, ordering streams through `order`,
    /// taking `config.initial_size` bytes now (as never-used memory, free for any stream).
    ///
    /// # Errors
    ///
    /// As [`with_list`](Self::with_list).
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
        Self::with_list(upstream, order, CoalescingList::new(), config)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> StreamOrderedPool<U, O, N, P> {
    /// A pool that keeps its blocks in `list` (empty; e.g. a fixed-capacity one: each stream
    /// takes a partition, partition 0 holds never-used memory).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when `list` is not empty; [`Error::SizeOverflow`] or
    /// [`Error::LimitExceeded`] for an initial size that overflows or exceeds the maximum;
    /// the upstream's error when it cannot provide the initial size;
    /// [`Error::MetadataExhausted`] when the list has no room.
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, PoolConfig};
    /// use strata_core::resources::{NoOrdering, StreamOrderedPool};
    /// use strata_core::SimUpstream;
    /// let list = CoalescingList::<256, 4>::with_fixed_capacity(); // 3 streams at once
    /// let pool = StreamOrderedPool::with_list(SimUpstream::new(1 << 20), NoOrdering, list, PoolConfig::new(4096))?;
    /// assert_eq!(pool.stats().pool_size, 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_list(
        mut upstream: U,
        order: O,
        mut list: CoalescingList<N, P>,
        config: PoolConfig,
    ) -> Result<Self, Error> {
        if list.chunk_count() != 0 || list.partition_count() != 1 {
            return Err(Error::Unsupported {
                what: "a stream-ordered pool over a list that is not empty",
            });
        }
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
        if initial > 0 {
            let chunk = upstream.allocate(initial, DEFAULT_ALIGNMENT)?;
            if let Err(e) = list.add_chunk_in(FRESH, chunk) {
                let _ = upstream.deallocate(chunk);
                return Err(e);
            }
        }
        let owners = alloc::vec![Owner::Fresh];
        Ok(Self {
            order,
            shared: StreamKey::DEFAULT,
            state: Mutex::new(State {
                upstream,
                list,
                maximum,
                streams: Vec::new(),
                owners,
                spare: Vec::new(),
                steals: 0,
                merges: 0,
                retired: 0,
            }),
        })
    }

    /// The same pool with another shared stream: the one that inherits the free blocks of
    /// retired streams. It must outlive the pool.
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

    /// The pool's counters.
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
        let st = self.state.lock();
        StreamPoolStats {
            steals: st.steals,
            merges: st.merges,
            retired: st.retired,
            streams: st.streams.len(),
            pool_size: st.list.chunk_bytes(),
            free_bytes: st.list.free_bytes(),
            live_bytes: st.list.live_bytes(),
        }
    }

    /// Free bytes in `stream`'s list (0 for a stream the pool does not know).
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
        let st = self.state.lock();
        st.lookup(stream).map_or(0, |p| st.list.free_bytes_in(p))
    }

    /// Retires `stream`: its free blocks go to the shared stream's list, after
    /// `order_after(shared, stream)` (only if it has free blocks), and its list is recycled for
    /// a future stream. Call it before destroying the stream; afterwards the stream may be
    /// destroyed with no block stranded. Freeing on `stream` again later simply gives it a new
    /// list. Retiring a stream the pool does not know does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for the shared stream itself; the stream order's error (nothing
    /// changes then); [`Error::MetadataExhausted`] when the shared stream needs a list and none
    /// is left.
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
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Some(i) = st.streams.iter().position(|&(k, _)| k == stream) else {
            return Ok(());
        };
        let p = st.streams[i].1;
        if st.list.free_bytes_in(p) > 0 {
            self.order.order_after(self.shared, stream)?;
            let into = st.partition_for(self.shared)?;
            st.list.merge_partition(p, into)?;
        }
        st.streams.swap_remove(i);
        st.owners[p as usize] = Owner::Spare;
        st.spare.push(p);
        st.retired += 1;
        st.check();
        Ok(())
    }

    /// Gives the wholly free chunks back to the upstream; returns the bytes given back.
    ///
    /// To keep stream order, every stream's free blocks first move to the shared stream's list
    /// (each after `order_after(shared, S)`), as if all streams were retired; the chunks then
    /// go back. The upstream itself is not stream-ordered: call this when the streams'
    /// work on those blocks is complete (a device synchronize), or over an upstream whose free
    /// waits for the device (as `cuMemFree` does).
    ///
    /// # Errors
    ///
    /// The stream order's error (the lists merged so far stay merged), or the upstream's
    /// error when it refuses a chunk (that chunk stays, in the shared stream's list).
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
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let into = st.partition_for(self.shared)?;
        for q in 0..st.owners.len() {
            let q = q as PartitionId;
            if q == into || st.list.free_bytes_in(q) == 0 {
                continue;
            }
            if let Owner::Stream(s) = st.owners[q as usize] {
                self.order.order_after(self.shared, s)?;
            }
            st.list.merge_partition(q, into)?;
        }
        let released = st.trim_all_in(into);
        st.check();
        released
    }

    #[cold]
    fn allocate_slow(
        &self,
        st: &mut State<U, N, P>,
        p: PartitionId,
        stream: StreamKey,
        size: u64,
        align: u64,
    ) -> Result<u64, Error> {
        // 2. A block of another list that surely fits.
        if let Some(q) = st.list.find_partition_with_fit(size, align, p) {
            match st.owners[q as usize] {
                Owner::Stream(s) => {
                    self.order.order_after(stream, s)?;
                    st.steals += 1;
                }
                Owner::Fresh => {}
                Owner::Spare => debug_assert!(false, "a spare partition had a free block"),
            }
            return st.list.allocate_in(q, size, align).map(|r| r.start);
        }
        // 3. Whole lists of other streams, until one block fits.
        for q in 0..st.owners.len() {
            let q = q as PartitionId;
            if q == p || st.list.free_bytes_in(q) == 0 {
                continue;
            }
            if let Owner::Stream(s) = st.owners[q as usize] {
                self.order.order_after(stream, s)?;
            }
            st.list.merge_partition(q, p)?;
            st.merges += 1;
            match st.list.allocate_in(p, size, align) {
                Err(Error::OutOfMemory { .. }) => {}
                other => return other.map(|r| r.start),
            }
        }
        // 4. Grow; if the upstream refuses, give back wholly free chunks (every free block is
        // in `p` now) and grow once more.
        let need = CoalescingList::<N, P>::min_block_for(size, align)?;
        let grown = match st.grow(p, need) {
            Err(first @ Error::OutOfMemory { .. }) => {
                if st.trim_all_in(p)? > 0 {
                    st.grow(p, need)
                } else {
                    Err(first)
                }
            }
            other => other,
        };
        match grown {
            Ok(()) => st.list.allocate_in(p, size, align).map(|r| r.start),
            Err(Error::OutOfMemory { .. }) => Err(Error::OutOfMemory {
                requested: size,
                largest_free: st.list.largest_free(),
                total_free: st.list.free_bytes(),
            }),
            Err(e) => Err(e),
        }
    }
}

impl<U, O, const N: usize, const P: usize> MemoryResource for StreamOrderedPool<U, O, N, P>
where
    U: Upstream + Send,
    O: StreamOrder,
{
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let p = match st.lookup(stream) {
            Some(p) => p,
            None => {
                // Validate before the stream gets a list: a bad request changes nothing.
                CoalescingList::<N, P>::min_block_for(size, align)?;
                st.add_stream(stream)?
            }
        };
        // 1. The stream's own list: no ordering.
        match st.list.allocate_in(p, size, align) {
            Err(Error::OutOfMemory { .. }) => {}
            other => return other.map(|r| r.start),
        }
        let result = self.allocate_slow(st, p, stream, size, align);
        st.check();
        result
    }

    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let p = match st.lookup(stream) {
            Some(p) => p,
            None => {
                // Validate before the stream gets a list: a bad free changes nothing. A free
                // that would fail fails the same way in any partition, so ask the list why.
                let valid = size != 0
                    && st
                        .list
                        .live_block(addr)
                        .is_some_and(|b| align_up(size, DEFAULT_ALIGNMENT) == Some(b.len));
                if !valid {
                    let refused = st.list.deallocate_in(FRESH, addr, size);
                    debug_assert!(refused.is_err());
                    return refused.and(Err(Error::NotAllocated { addr }));
                }
                st.add_stream(stream)?
            }
        };
        st.list.deallocate_in(p, addr, size)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> Drop
    for StreamOrderedPool<U, O, N, P>
{
    /// Gives every chunk back to the upstream, ignoring its errors (blocks still live then
    /// dangle, as with RMM).
    fn drop(&mut self) {
        let mut guard = self.state.lock();
        let State { upstream, list, .. } = &mut *guard;
        for chunk in list.chunks() {
            let _ = upstream.deallocate(chunk);
        }
        list.clear();
    }
}
