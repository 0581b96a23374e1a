//! The thread-safe arena: one sub-arena per stream, each behind its own lock, found without a
//! lock (feature `alloc`).

use alloc::vec::Vec;

use super::table::StreamTable;
use crate::algo::{ArenaConfig, GlobalArena, MAX_SUPERBLOCK_SIZE, MIN_SUPERBLOCK_SIZE, SubArena};
use crate::sync::Mutex;
use crate::{
    DEFAULT_ALIGNMENT, Error, MemoryResource, Range, StreamKey, StreamOrder, Upstream, align_down,
    align_up,
};

/// The default bound on the streams an [`Arena`] serves at once.
pub const DEFAULT_ARENA_STREAMS: usize = 64;

/// A sub-arena and what the resource knows of it.
#[derive(Debug)]
struct Sub<const N: usize, const P: usize> {
    arena: SubArena<N, P>,
    /// The stream whose work the free blocks here wait for: the slot's stream, or the shared
    /// stream once that one is retired. A block freed here by another stream `W` costs
    /// `order_after(owner, W)` first.
    owner: StreamKey,
    /// The global epoch this sub-arena's stream was last ordered after (see [`Global::epoch`]).
    seen_epoch: u64,
}

#[derive(Debug)]
struct Global<U, const N: usize, const P: usize> {
    upstream: U,
    arena: GlobalArena<N, P>,
    /// How many times memory was handed back to the global arena (a large free, superblocks
    /// reclaimed). The shared stream is ordered after the freeing stream each time; a stream
    /// that takes memory from the global arena is ordered after the shared stream first,
    /// unless no memory came back since it last was (its sub-arena's `seen_epoch`).
    epoch: u64,
}

/// Counters of an [`Arena`].
///
/// ```
/// use strata_core::algo::ArenaConfig;
/// use strata_core::resources::{Arena, NoOrdering};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
/// arena.allocate(4096, 256, StreamKey(1))?;
/// let s = arena.stats();
/// assert_eq!((s.streams, s.superblocks, s.superblock_bytes), (1, 1, 1 << 20));
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Streams with a sub-arena now.
    pub streams: usize,
    /// Superblocks the sub-arenas hold.
    pub superblocks: usize,
    /// Bytes of those superblocks.
    pub superblock_bytes: u64,
    /// Bytes of live large blocks (served by the global arena).
    pub large_bytes: u64,
    /// Free bytes of the global arena.
    pub global_free_bytes: u64,
    /// Times memory went back to the global arena (large frees, reclaimed superblocks).
    pub returns: u64,
}

/// RMM's arena, thread-safe and stream-ordered: one global arena taken from the upstream at
/// once (`config.arena_size`, the **total** size; it never grows), and one sub-arena per
/// stream, holding superblocks (1 MiB or more) taken from it.
///
/// # Scaling
///
/// A stream finds its sub-arena in a lock-free table (atomic loads only), then locks that
/// sub-arena alone: threads on different streams share no lock and no cache line on the fast
/// path. The global arena's lock is taken only to move a superblock, for requests above the
/// superblock size, and on out of memory. (Threads that share a stream share its lock; a
/// caller that wants one sub-arena per thread on one stream, as RMM does for the per-thread
/// default stream, passes a per-thread key.)
///
/// # Stream order
///
/// A block is reused at once on the stream that owns its sub-arena. Memory crosses streams in
/// three ways, each ordered with the resource's [`StreamOrder`]:
///
/// - a small block freed on stream `W` that belongs to stream `S`'s sub-arena goes back there
///   after `order_after(S, W)` (RMM synchronises the stream instead);
/// - memory handed back to the global arena (a large free on `W`, or `S`'s wholly free
///   superblocks reclaimed under memory pressure) first orders the *shared stream* after `W`
///   (or `S`);
/// - a stream that takes memory from the global arena (a superblock, or a large block) is first
///   ordered after the shared stream, unless no memory came back to the global arena since it
///   last was. Fresh memory costs nothing.
///
/// The shared stream is [`StreamKey::DEFAULT`] unless
/// [`with_shared_stream`](Self::with_shared_stream) says otherwise; it must outlive the arena.
///
/// # Streams that go away
///
/// [`retire_stream`](Self::retire_stream) hands a stream's sub-arena to the shared stream
/// (after `order_after(shared, S)`) and gives its wholly free superblocks back; its slot is
/// reused by a new stream once its last block is gone. At most `max_streams` streams have a
/// sub-arena at once (64 by default).
///
/// ```
/// use strata_core::algo::ArenaConfig;
/// use strata_core::resources::{Arena, NoOrdering};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(64 << 20))?;
/// std::thread::scope(|s| {
///     for t in 1..=2u64 {
///         let arena = &arena;
///         s.spawn(move || {
///             // Each thread on its own stream: its own sub-arena, its own lock.
///             let stream = StreamKey(t);
///             let a = arena.allocate(4096, 256, stream).unwrap();
///             arena.deallocate(a, 4096, 256, stream).unwrap();
///         });
///     }
/// });
/// assert_eq!(arena.stats().streams, 2);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Arena<U: Upstream, O: StreamOrder, const N: usize = 0, const P: usize = 0> {
    order: O,
    shared: StreamKey,
    superblock_size: u64,
    /// Stream → its sub-arena. Lock order: the table's insert lock, then a sub-arena, then
    /// the global arena; never two sub-arenas at once.
    table: StreamTable<Sub<N, P>>,
    global: Mutex<Global<U, N, P>>,
}

/// Checks `config` as [`GlobalArena::new`] will, before anything is taken from the upstream.
fn check_config(config: ArenaConfig) -> Result<u64, Error> {
    let superblock =
        align_up(config.superblock_size, DEFAULT_ALIGNMENT).ok_or(Error::SizeOverflow {
            requested: config.superblock_size,
        })?;
    if !(MIN_SUPERBLOCK_SIZE..=MAX_SUPERBLOCK_SIZE).contains(&superblock) {
        return Err(Error::Unsupported {
            what: "a superblock size below 1 MiB or above 1 TiB",
        });
    }
    let arena_size = align_down(config.arena_size, DEFAULT_ALIGNMENT);
    if arena_size < superblock {
        return Err(Error::Unsupported {
            what: "an arena smaller than one superblock",
        });
    }
    Ok(arena_size)
}

impl<U: Upstream, O: StreamOrder> Arena<U, O> {
    /// Takes the arena (`config.arena_size`, rounded down to 256) from `upstream` in one
    /// allocation; up to [`DEFAULT_ARENA_STREAMS`] streams at once.
    ///
    /// # Errors
    ///
    /// As [`with_streams`](Self::with_streams).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::SimUpstream;
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
    /// assert_eq!(arena.stats().global_free_bytes, 16 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn new(upstream: U, order: O, config: ArenaConfig) -> Result<Self, Error> {
        Self::with_streams(upstream, order, config, DEFAULT_ARENA_STREAMS)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> Arena<U, O, N, P> {
    /// As [`new`](Self::new), for up to `max_streams` streams at once, with `N` nodes and `P`
    /// partitions inline in each coalescing list (0: growable).
    ///
    /// # Errors
    ///
    /// Checked before the upstream is called: [`Error::Unsupported`] for a superblock size
    /// outside 1 MiB ..= 1 TiB, an arena smaller than one superblock, or `max_streams == 0`;
    /// [`Error::SizeOverflow`] for sizes that overflow when rounded. Then the upstream's error,
    /// or [`Error::MetadataExhausted`] (the range is given back).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
    /// let arena: Arena<_, _> =
    ///     Arena::with_streams(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20), 1)?;
    /// arena.allocate(256, 256, StreamKey(1))?;
    /// assert_eq!(arena.allocate(256, 256, StreamKey(2)), Err(Error::MetadataExhausted { capacity: 1 }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with_streams(
        mut upstream: U,
        order: O,
        config: ArenaConfig,
        max_streams: usize,
    ) -> Result<Self, Error> {
        let arena_size = check_config(config)?;
        let table = StreamTable::new(max_streams, || Sub {
            arena: SubArena::new(),
            owner: StreamKey::DEFAULT,
            seen_epoch: 0,
        })?;
        let range = upstream.allocate(arena_size, DEFAULT_ALIGNMENT)?;
        let arena = match GlobalArena::new(range, config.superblock_size) {
            Ok(a) => a,
            Err(e) => {
                let _ = upstream.deallocate(range);
                return Err(e);
            }
        };
        Ok(Self {
            order,
            shared: StreamKey::DEFAULT,
            superblock_size: arena.superblock_size(),
            table,
            global: Mutex::new(Global {
                upstream,
                arena,
                epoch: 0,
            }),
        })
    }

    /// The same arena with another shared stream (see the type's documentation). Set it
    /// before the first allocation.
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?
    ///     .with_shared_stream(StreamKey(9));
    /// assert_eq!(arena.shared_stream(), StreamKey(9));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_shared_stream(mut self, shared: StreamKey) -> Self {
        self.shared = shared;
        self
    }

    /// The shared stream.
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
    /// assert_eq!(arena.shared_stream(), StreamKey::DEFAULT);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn shared_stream(&self) -> StreamKey {
        self.shared
    }

    /// The counters (takes every lock in turn: for reports, not for hot paths).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
    /// let big = arena.allocate(4 << 20, 256, StreamKey(1))?;
    /// assert_eq!(arena.stats().large_bytes, 4 << 20);
    /// arena.deallocate(big, 4 << 20, 256, StreamKey(1))?;
    /// assert_eq!(arena.stats().returns, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> ArenaStats {
        let streams = self.table.streams();
        let g = self.global.lock();
        ArenaStats {
            streams,
            superblocks: g.arena.superblock_count(),
            superblock_bytes: g.arena.superblock_bytes(),
            large_bytes: g.arena.large_bytes(),
            global_free_bytes: g.arena.free_bytes(),
            returns: g.epoch,
        }
    }

    /// Free bytes in `stream`'s sub-arena (0 for a stream without one).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
    /// arena.allocate(1 << 19, 256, StreamKey(1))?;
    /// assert_eq!(arena.free_bytes_on(StreamKey(1)), 1 << 19);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn free_bytes_on(&self, stream: StreamKey) -> u64 {
        self.table
            .lookup(stream)
            .map_or(0, |i| self.table.lock(i).arena.free_bytes())
    }

    /// Checks every invariant of the global arena and the sub-arenas, and that the
    /// superblocks the global arena records are exactly those the sub-arenas hold; for tests.
    /// Takes every lock in turn: call it when no other thread uses the arena.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let arena = Arena::new(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20))?;
    /// arena.allocate(4096, 256, StreamKey(3))?;
    /// assert_eq!(arena.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        let mut held: Vec<Range> = Vec::new();
        for i in self.table.used() {
            let sub = self.table.lock(i);
            sub.arena.audit()?;
            held.extend(sub.arena.superblocks());
        }
        self.table.audit()?;
        let g = self.global.lock();
        g.arena.audit()?;
        held.sort();
        if held.as_slice() != g.arena.superblocks() {
            return Err("the sub-arenas do not hold exactly the recorded superblocks");
        }
        Ok(())
    }

    /// Retires `stream`: its sub-arena passes to the shared stream after
    /// `order_after(shared, stream)`, and its wholly free superblocks go back to the global
    /// arena. Call it before destroying the stream; its blocks still live are freed as usual
    /// (on any stream) and their memory is not stranded. Retiring a stream that has no
    /// sub-arena does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for the shared stream itself; the stream order's error (nothing
    /// changes then).
    ///
    /// ```
    /// use strata_core::algo::ArenaConfig;
    /// use strata_core::resources::{Arena, NoOrdering};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let arena: Arena<_, _> =
    ///     Arena::with_streams(SimUpstream::new(1 << 30), NoOrdering, ArenaConfig::new(16 << 20), 1)?;
    /// let a = arena.allocate(4096, 256, StreamKey(1))?;
    /// arena.deallocate(a, 4096, 256, StreamKey(1))?;
    /// arena.retire_stream(StreamKey(1))?;
    /// assert_eq!(arena.stats().superblocks, 0);
    /// arena.allocate(4096, 256, StreamKey(2))?; // the slot is free again
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn retire_stream(&self, stream: StreamKey) -> Result<(), Error> {
        if stream == self.shared {
            return Err(Error::Unsupported {
                what: "retiring the shared stream of an arena",
            });
        }
        self.table.retire(stream, |sub| {
            self.order.order_after(self.shared, stream)?;
            sub.owner = self.shared;
            let mut g = self.global.lock();
            if sub.arena.release_free_superblocks(&mut g.arena)? > 0 {
                g.epoch += 1;
            }
            Ok(())
        })?;
        Ok(())
    }

    #[cold]
    fn insert_stream(&self, stream: StreamKey) -> Result<usize, Error> {
        // A retired sub-arena is reused only once its last superblock is gone.
        self.table.insert(
            stream,
            |sub| sub.arena.superblock_bytes() == 0,
            |sub| {
                sub.owner = stream;
                sub.seen_epoch = 0;
                Ok(())
            },
        )
    }

    /// Orders `stream` after the memory handed back to the global arena since it last was.
    #[inline]
    fn order_for_global(
        &self,
        stream: StreamKey,
        sub: &mut Sub<N, P>,
        g: &Global<U, N, P>,
    ) -> Result<(), Error> {
        if sub.seen_epoch != g.epoch {
            if stream != self.shared {
                self.order.order_after(stream, self.shared)?;
            }
            sub.seen_epoch = g.epoch;
        }
        Ok(())
    }

    /// One attempt at an allocation that the sub-arena cannot serve from what it holds.
    fn allocate_from_global(
        &self,
        stream: StreamKey,
        sub: &mut Sub<N, P>,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        let mut g = self.global.lock();
        self.order_for_global(stream, sub, &g)?;
        if size > self.superblock_size {
            g.arena.allocate(size, align)
        } else {
            sub.arena.allocate(&mut g.arena, size, align)
        }
    }

    /// Gives every wholly free superblock of every sub-arena back to the global arena, each
    /// sub-arena's after ordering the shared stream after its owner; returns the bytes moved.
    fn reclaim(&self) -> Result<u64, Error> {
        let mut moved = 0;
        for i in self.table.used() {
            let mut sub = self.table.lock(i);
            let list = sub.arena.list();
            if !sub
                .arena
                .superblocks()
                .any(|s| list.is_chunk_free(s) == Some(true))
            {
                continue;
            }
            if sub.owner != self.shared {
                self.order.order_after(self.shared, sub.owner)?;
            }
            let mut g = self.global.lock();
            let released = sub.arena.release_free_superblocks(&mut g.arena)?;
            if released > 0 {
                g.epoch += 1;
            }
            moved += released;
        }
        Ok(moved)
    }

    #[cold]
    fn out_of_memory(&self, requested: u64) -> Error {
        let (mut largest, mut total) = {
            let g = self.global.lock();
            (g.arena.largest_free(), g.arena.free_bytes())
        };
        for i in self.table.used() {
            let sub = self.table.lock(i);
            largest = largest.max(sub.arena.largest_free());
            total += sub.arena.free_bytes();
        }
        Error::OutOfMemory {
            requested,
            largest_free: largest,
            total_free: total,
        }
    }

    #[cold]
    fn allocate_slow(
        &self,
        i: usize,
        stream: StreamKey,
        size: u64,
        align: u64,
    ) -> Result<u64, Error> {
        {
            let mut sub = self.table.lock(i);
            match self.allocate_from_global(stream, &mut sub, size, align) {
                Err(Error::OutOfMemory { .. }) => {}
                other => return other.map(|r| r.start),
            }
        }
        // Out of memory: every lock dropped, reclaim free superblocks and try once more.
        if self.reclaim()? == 0 {
            return Err(self.out_of_memory(size));
        }
        let mut sub = self.table.lock(i);
        if size <= self.superblock_size
            && let Some(r) = sub.arena.try_allocate(size, align)?
        {
            return Ok(r.start);
        }
        match self.allocate_from_global(stream, &mut sub, size, align) {
            Err(Error::OutOfMemory { .. }) => {
                drop(sub);
                Err(self.out_of_memory(size))
            }
            other => other.map(|r| r.start),
        }
    }

    /// A free that the caller's sub-arena could not take: a large block, a block of another
    /// stream's sub-arena, or a bad free.
    #[cold]
    fn deallocate_slow(
        &self,
        own: Option<usize>,
        addr: u64,
        size: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        {
            let mut g = self.global.lock();
            if g.arena.is_large(addr) {
                // Validate before ordering: a refused free orders nothing.
                if let Some(live) = g.arena.list().live_block(addr)
                    && align_up(size, DEFAULT_ALIGNMENT) != Some(live.len)
                {
                    return g.arena.deallocate(addr, size);
                }
                if stream != self.shared {
                    self.order.order_after(self.shared, stream)?;
                }
                g.arena.deallocate(addr, size)?;
                g.epoch += 1;
                return Ok(());
            }
        }
        // Another stream's sub-arena, one lock at a time.
        for j in self.table.used() {
            if Some(j) == own {
                continue;
            }
            let mut sub = self.table.lock(j);
            if sub.arena.owns(addr) {
                if let Some(live) = sub.arena.list().live_block(addr)
                    && align_up(size, DEFAULT_ALIGNMENT) != Some(live.len)
                {
                    return sub.arena.deallocate(addr, size);
                }
                if sub.owner != stream {
                    self.order.order_after(sub.owner, stream)?;
                }
                sub.arena.deallocate(addr, size)?;
                if self.table.is_retired(j) {
                    // No stream allocates here any more: hand back what became wholly free
                    // (it waits for the shared stream, which owns this sub-arena now).
                    let mut g = self.global.lock();
                    if sub.arena.release_free_superblocks(&mut g.arena)? > 0 {
                        g.epoch += 1;
                    }
                }
                return Ok(());
            }
        }
        // Nobody has a live block there: let the one whose memory it is say why.
        for i in self.table.used() {
            let mut sub = self.table.lock(i);
            if sub.arena.in_superblocks(addr) {
                return sub.arena.deallocate(addr, size);
            }
        }
        let mut g = self.global.lock();
        if g.arena.arena().contains(addr) {
            g.arena.deallocate(addr, size)
        } else {
            Err(Error::NotAllocated { addr })
        }
    }
}

impl<U, O, const N: usize, const P: usize> MemoryResource for Arena<U, O, N, P>
where
    U: Upstream + Send,
    O: StreamOrder,
{
    #[inline]
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        // Validate first: a bad request changes nothing (no sub-arena, no ordering).
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        crate::check_alignment(align)?;
        let i = match self.table.lookup(stream) {
            Some(i) => i,
            None => self.insert_stream(stream)?,
        };
        if size <= self.superblock_size {
            let mut sub = self.table.lock(i);
            if let Some(r) = sub.arena.try_allocate(size, align)? {
                return Ok(r.start);
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
        if size <= self.superblock_size
            && let Some(i) = own
        {
            let mut sub = self.table.lock(i);
            if sub.arena.owns(addr) {
                return sub.arena.deallocate(addr, size);
            }
        }
        self.deallocate_slow(own, addr, size, stream)
    }
}

impl<U: Upstream, O: StreamOrder, const N: usize, const P: usize> Drop for Arena<U, O, N, P> {
    /// Gives the arena's range back to the upstream, ignoring its error (blocks still live
    /// then dangle, as with RMM).
    fn drop(&mut self) {
        let mut g = self.global.lock();
        let range = g.arena.arena();
        let _ = g.upstream.deallocate(range);
    }
}
