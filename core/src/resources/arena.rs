//! The thread-safe arena: one sub-arena per stream, each behind its own lock, found without a
//! lock (feature `alloc`).

use alloc::collections::BTreeMap;
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
    /// How many times the shared stream took on memory handed back to the global arena: it
    /// was ordered after the stream that handed it back (or is that stream). A stream that
    /// takes memory from the global arena is ordered after the shared stream first, unless
    /// the epoch did not move since it last was (its sub-arena's `seen_epoch`).
    epoch: u64,
    /// The one stream whose large frees the shared stream is not yet ordered after, if any.
    ///
    /// Invariant: every byte handed back to the global arena was handed back by `pending`, or
    /// the shared stream was ordered after the stream that handed it back (and `epoch` moved
    /// since). A stream that frees and takes back its own large blocks so orders nothing; the
    /// shared stream is ordered after `pending` (and `pending` cleared) as soon as another
    /// stream hands memory back or takes memory from the global arena, and when `pending` is
    /// retired.
    pending: Option<StreamKey>,
    /// How many times memory was handed back to the global arena (large frees, superblocks).
    returns: u64,
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
/// path. The global arena's lock is held only for the exchange itself: a superblock taken
/// (O(log superblocks)) or given back, a block above the superblock size taken or freed; the
/// sub-arena's side of an exchange (adding the superblock, searching for wholly free ones) and
/// the stream ordering happen outside it. A free of another stream's block finds that
/// stream's sub-arena through a map of superblocks (O(log superblocks)), not by asking each
/// sub-arena. (Threads that share a stream share its lock; a caller that wants one sub-arena
/// per thread on one stream, as RMM does for the per-thread default stream, passes a
/// per-thread key.)
///
/// On out of memory, wholly free superblocks go back to the global arena and the request is
/// tried once more: for a request that one superblock serves, the first one found in another
/// sub-arena; for a larger one, every one, as in RMM. A sub-arena in which nothing was freed
/// since it was last searched is not searched again, so a refusal costs about nothing when
/// nothing could come back.
///
/// # Stream order
///
/// A block is reused at once on the stream that owns its sub-arena. Memory crosses streams in
/// three ways, each ordered with the resource's [`StreamOrder`]:
///
/// - a small block freed on stream `W` that belongs to stream `S`'s sub-arena goes back there
///   after `order_after(S, W)` (RMM synchronises the stream instead);
/// - memory handed back to the global arena orders the *shared stream* after the stream that
///   hands it back: at once for `S`'s wholly free superblocks reclaimed under memory pressure;
///   for a large free on `W`, lazily: the arena remembers the one stream whose large frees the
///   shared stream is not yet ordered after, and orders it only when another stream hands
///   memory back or takes memory from the global arena, or when `W` is retired. So a stream
///   that frees and takes back its own large blocks orders nothing;
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
    /// Superblock start → (its length, the slot of the sub-arena holding it): where a free
    /// that is not the freeing stream's own goes, with no scan over sub-arenas. Updated after
    /// a superblock is acquired and before it is released; a leaf lock (nothing else is taken
    /// while it is held).
    holders: Mutex<BTreeMap<u64, (u64, usize)>>,
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
                pending: None,
                returns: 0,
            }),
            holders: Mutex::new(BTreeMap::new()),
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
            returns: g.returns,
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
        let holders = self.holders.lock().clone();
        for i in self.table.used() {
            let sub = self.table.lock(i);
            if sub
                .arena
                .superblocks()
                .any(|sb| holders.get(&sb.start) != Some(&(sb.len, i)))
                || holders.values().filter(|h| h.1 == i).count() != sub.arena.list().chunk_count()
            {
                return Err("the superblock holders do not match the sub-arenas");
            }
        }
        let g = self.global.lock();
        g.arena.audit()?;
        held.sort();
        if !held.iter().copied().eq(g.arena.superblocks()) {
            return Err("the sub-arenas do not hold exactly the recorded superblocks");
        }
        Ok(())
    }

    /// Retires `stream`: its sub-arena passes to the shared stream after
    /// `order_after(shared, stream)`, and its wholly free superblocks go back to the global
    /// arena. Call it before destroying the stream; its blocks still live are freed as usual
    /// (on any stream) and their memory is not stranded. A stream that has no sub-arena (it
    /// only freed blocks of other streams) has nothing to pass on, but its large frees may not
    /// be ordered yet: the shared stream is ordered after it then, and nothing else happens.
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
            self.order_shared_after(&mut self.global.lock(), stream)?;
            sub.owner = self.shared;
            self.release_free(sub);
            Ok(())
        })?;
        // Without a sub-arena the closure did not run; the stream's large frees may still be
        // pending, and nothing may refer to the stream once it is gone.
        let mut g = self.global.lock();
        if g.pending == Some(stream) {
            self.order_shared_after(&mut g, stream)?;
        }
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

    /// Orders `stream` (whose sub-arena is `sub`) after the memory handed back to the global
    /// arena before `epoch`, unless it was already.
    #[inline]
    fn order_for_global(
        &self,
        stream: StreamKey,
        sub: &mut Sub<N, P>,
        epoch: u64,
    ) -> Result<(), Error> {
        if sub.seen_epoch != epoch {
            if stream != self.shared {
                self.order.order_after(stream, self.shared)?;
            }
            sub.seen_epoch = epoch;
        }
        Ok(())
    }

    /// One attempt at an allocation that the sub-arena cannot serve from what it holds. The
    /// global arena's lock is held for the exchange alone (a superblock or a large block
    /// taken); the ordering and the sub-arena's work come after.
    fn allocate_from_global(
        &self,
        i: usize,
        stream: StreamKey,
        sub: &mut Sub<N, P>,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        if size > self.superblock_size {
            let (block, epoch) = {
                let mut g = self.global.lock();
                self.flush_pending_for(&mut g, stream)?;
                (g.arena.allocate(size, align)?, g.epoch)
            };
            if let Err(e) = self.order_for_global(stream, sub, epoch) {
                // Unused: straight back, as it was.
                let back = self.global.lock().arena.deallocate(block.start, block.len);
                debug_assert!(back.is_ok());
                return Err(e);
            }
            return Ok(block);
        }
        // Another thread on this stream may have added a superblock since the fast path.
        if let Some(r) = sub.arena.try_allocate(size, align)? {
            return Ok(r);
        }
        let (superblock, epoch) = {
            let mut g = self.global.lock();
            self.flush_pending_for(&mut g, stream)?;
            (g.arena.acquire_superblock(size, align)?, g.epoch)
        };
        let added = self
            .order_for_global(stream, sub, epoch)
            .and_then(|()| sub.arena.add_superblock(superblock));
        if let Err(e) = added {
            let back = self.global.lock().arena.release_superblock(superblock);
            debug_assert!(back.is_ok());
            return Err(e);
        }
        self.holders
            .lock()
            .insert(superblock.start, (superblock.len, i));
        // The superblock holds the request (`acquire_superblock` sized it so).
        match sub.arena.try_allocate(size, align) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                debug_assert!(false, "a fresh superblock refused its request");
                Err(Error::OutOfMemory {
                    requested: size,
                    largest_free: superblock.len,
                    total_free: superblock.len,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Gives `sub`'s wholly free superblocks back to the global arena (the caller ordered the
    /// shared stream after their owner): the search under the sub-arena's lock alone, then
    /// one short hold of the global arena's. Returns the bytes moved.
    fn release_free(&self, sub: &mut Sub<N, P>) -> u64 {
        let mut taken: Vec<Range> = Vec::new();
        while let Some(superblock) = sub.arena.take_free_superblock() {
            taken.push(superblock);
        }
        self.give_back(&taken)
    }

    /// Gives superblocks taken out of a sub-arena back to the global arena.
    fn give_back(&self, taken: &[Range]) -> u64 {
        if taken.is_empty() {
            return 0;
        }
        {
            let mut holders = self.holders.lock();
            for sb in taken {
                holders.remove(&sb.start);
            }
        }
        let mut g = self.global.lock();
        let mut moved = 0;
        for &sb in taken {
            // Superblocks of this arena, recorded: this cannot fail.
            let back = g.arena.release_superblock(sb);
            debug_assert!(back.is_ok());
            moved += sb.len;
        }
        g.epoch += 1;
        g.returns += 1;
        moved
    }

    /// Gives wholly free superblocks of the sub-arenas back to the global arena, each
    /// sub-arena's after ordering the shared stream after its owner; returns the bytes moved.
    /// A sub-arena in which nothing was freed since its last search costs no search.
    ///
    /// With `one_for = Some(i)` (a request of sub-arena `i` that one superblock serves), one
    /// superblock is enough, and sub-arena `i`'s own are no use (a wholly free one would have
    /// served the request): the first found elsewhere goes back. Else (a request that may need
    /// free neighbours to merge) every wholly free superblock goes back, as in RMM.
    fn reclaim(&self, one_for: Option<usize>) -> Result<u64, Error> {
        let mut moved = 0;
        for i in self.table.used() {
            if one_for == Some(i) {
                continue;
            }
            let (taken, owner) = {
                let mut sub = self.table.lock(i);
                let mut taken: Vec<Range> = Vec::new();
                while let Some(superblock) = sub.arena.take_free_superblock() {
                    taken.push(superblock);
                    if one_for.is_some() {
                        break;
                    }
                }
                (taken, sub.owner)
            };
            if taken.is_empty() {
                continue;
            }
            if owner != self.shared
                && let Err(e) = self.order.order_after(self.shared, owner)
            {
                // Not handed back: they stay with their sub-arena, as they were (their nodes
                // were just released, so this cannot fail).
                let mut sub = self.table.lock(i);
                for &sb in &taken {
                    let back = sub.arena.add_superblock(sb);
                    debug_assert!(back.is_ok());
                }
                return Err(e);
            }
            moved += self.give_back(&taken);
            if one_for.is_some() {
                break;
            }
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
            match self.allocate_from_global(i, stream, &mut sub, size, align) {
                Err(Error::OutOfMemory { .. }) => {}
                other => return other.map(|r| r.start),
            }
        }
        // Out of memory: every lock dropped, reclaim free superblocks and try once more. A
        // request that fits one superblock needs one superblock back.
        let one = size <= self.superblock_size
            && align_up(size, DEFAULT_ALIGNMENT)
                .and_then(|s| s.checked_add(align.saturating_sub(DEFAULT_ALIGNMENT)))
                .is_some_and(|need| need <= self.superblock_size);
        if self.reclaim(one.then_some(i))? == 0 {
            return Err(self.out_of_memory(size));
        }
        let mut sub = self.table.lock(i);
        if size <= self.superblock_size
            && let Some(r) = sub.arena.try_allocate(size, align)?
        {
            return Ok(r.start);
        }
        match self.allocate_from_global(i, stream, &mut sub, size, align) {
            Err(Error::OutOfMemory { .. }) => {
                drop(sub);
                Err(self.out_of_memory(size))
            }
            other => other.map(|r| r.start),
        }
    }

    /// Frees the large block at `addr` (after ordering the shared stream after `stream`), or
    /// says why not; `None` when no large block starts there.
    fn free_large(
        &self,
        g: &mut Global<U, N, P>,
        addr: u64,
        size: u64,
        stream: StreamKey,
    ) -> Option<Result<(), Error>> {
        if !g.arena.is_large(addr) {
            return None;
        }
        // Validate before ordering: a refused free orders nothing.
        if let Some(live) = g.arena.list().live_block(addr)
            && align_up(size, DEFAULT_ALIGNMENT) != Some(live.len)
        {
            return Some(g.arena.deallocate(addr, size));
        }
        // Memory the shared stream hands back needs no ordering of its own; `pending` stays.
        if stream != self.shared
            && let Err(e) = self.flush_pending_for(g, stream)
        {
            return Some(Err(e));
        }
        Some(g.arena.deallocate(addr, size).map(|()| {
            g.returns += 1;
            if stream == self.shared {
                g.epoch += 1;
            } else {
                g.pending = Some(stream);
            }
        }))
    }

    /// Before `stream` hands memory back to the global arena or takes memory from it: orders
    /// the shared stream after the pending stream if that is another stream (see
    /// [`Global::pending`]). Nothing changes on error.
    #[inline]
    fn flush_pending_for(&self, g: &mut Global<U, N, P>, stream: StreamKey) -> Result<(), Error> {
        match g.pending {
            Some(p) if p != stream => self.order_shared_after(g, p),
            _ => Ok(()),
        }
    }

    /// Orders the shared stream after `stream`, under the global lock (so no large free on
    /// `stream` slips in between); `stream`'s pending large frees, if any, are then covered.
    /// Nothing changes on error.
    fn order_shared_after(&self, g: &mut Global<U, N, P>, stream: StreamKey) -> Result<(), Error> {
        self.order.order_after(self.shared, stream)?;
        if g.pending == Some(stream) {
            g.pending = None;
            g.epoch += 1;
        }
        Ok(())
    }

    /// A free that the caller's sub-arena could not take: a large block, a block of another
    /// stream's sub-arena (found through the superblock holders, with no scan), or a bad free.
    #[cold]
    fn deallocate_slow(
        &self,
        own: Option<usize>,
        addr: u64,
        size: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        // Blocks of sub-arenas are never larger than a superblock: a larger free is a large
        // block's (or a bad one), and asks the global arena first.
        if size > self.superblock_size
            && let Some(done) = self.free_large(&mut self.global.lock(), addr, size, stream)
        {
            return done;
        }
        let holder = {
            let holders = self.holders.lock();
            holders
                .range(..=addr)
                .next_back()
                .filter(|&(&start, &(len, _))| addr - start < len)
                .map(|(_, &(_, slot))| slot)
        };
        if let Some(j) = holder {
            let mut sub = self.table.lock(j);
            if Some(j) == own || !sub.arena.owns(addr) {
                // No live block there (or a free the fast path refused): it says why.
                return sub.arena.deallocate(addr, size);
            }
            if let Some(live) = sub.arena.list().live_block(addr)
                && align_up(size, DEFAULT_ALIGNMENT) != Some(live.len)
            {
                // Validate before ordering: a refused free orders nothing.
                return sub.arena.deallocate(addr, size);
            }
            if sub.owner != stream {
                self.order.order_after(sub.owner, stream)?;
            }
            sub.arena.deallocate(addr, size)?;
            if self.table.is_retired(j) {
                // No stream allocates here any more: hand back what became wholly free (it
                // waits for the shared stream, which owns this sub-arena now).
                self.release_free(&mut sub);
            }
            return Ok(());
        }
        let mut g = self.global.lock();
        if let Some(done) = self.free_large(&mut g, addr, size, stream) {
            return done;
        }
        // Nobody has a live block there: the global arena says why.
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
        if let Some(p) = g.pending {
            // The ordering the last large frees would have had, had they been flushed.
            let _ = self.order_shared_after(&mut g, p);
        }
        let range = g.arena.arena();
        let _ = g.upstream.deallocate(range);
    }
}
