//! The arena, in the sense of RMM's `arena_memory_resource`: one big upstream allocation split
//! into superblocks that sub-arenas (one per thread or stream) take and serve small requests
//! from, so that threads rarely meet on a shared lock.
//!
//! # Pieces
//!
//! - [`GlobalArena`]: the *arena*, one range of `arena_size` bytes taken from the upstream once
//!   and never grown. Its free space is a [`CoalescingList`] (one chunk: the arena; free blocks
//!   merge with free neighbours at once). It hands out superblocks to sub-arenas and serves
//!   large requests itself.
//! - [`SubArena`]: the superblocks it holds, as the chunks of its own [`CoalescingList`]; it
//!   serves small requests from them and takes a new superblock from the global arena when
//!   none fits.
//! - [`Arena`]: a global arena, `S` sub-arenas and the upstream, single-threaded: the reference
//!   composition, and the one to use when no thread safety is needed.
//!
//! # Sizes
//!
//! - `arena_size` ([`ArenaConfig`]): the **total** size of the global arena, rounded down to a
//!   multiple of 256: everything the arena ever serves comes from this one upstream allocation
//!   (like a pool capped at `arena_size`, taken all at once). RMM defaults it to half the
//!   device's free memory; the core has no such query, so it is always given explicitly
//!   (`strata_driver::stream_ordered_arena` takes it in its `ArenaConfig` too).
//! - `superblock_size`: 1 MiB by default and at least 1 MiB (at most 1 TiB), rounded up to 256.
//!   A sub-arena takes superblocks of `max(superblock_size, request)` bytes (the request
//!   rounded up to 256, plus `align - 256` when `align > 256`).
//! - Requests larger than `superblock_size` ([`ArenaConfig::handles`]) go straight to the
//!   global arena; the others go to a sub-arena.
//!
//! # Out of memory
//!
//! When a request fails for lack of memory, wholly free superblocks go back to the global arena
//! (where they merge with their free neighbours), and the request is tried once more; then
//! [`Error::OutOfMemory`] reports the request, the largest free block and the free bytes over
//! the global arena and all sub-arenas. A request that may need free neighbours to merge (a
//! large one) gets back the wholly free superblocks of **every** sub-arena, as in RMM; one that
//! a single superblock serves needs just one, from another sub-arena (a wholly free one of its
//! own would have served it). A sub-arena in which nothing was freed since its last search
//! is not searched again ([`SubArena::take_free_superblock`]), so a refusal costs no more than
//! the memory that could come back.
//!
//! # Locking: how a thread-safe resource composes these
//!
//! [`GlobalArena`] and [`SubArena`] are separate values, and the methods that need both take
//! the global arena by `&mut`, so a resource can put **each behind its own lock**: one
//! `Mutex<GlobalArena>` and one `Mutex<SubArena>` per thread (or stream). Then:
//!
//! - *small allocation*: lock the caller's sub-arena and call [`SubArena::try_allocate`]. That
//!   serves almost every request, with no other lock. On `Ok(None)`, keep the sub-arena lock,
//!   lock the global arena for [`GlobalArena::acquire_superblock`] alone, unlock it, and
//!   [`SubArena::add_superblock`] (O(superblocks held)) with the sub-arena's lock only.
//! - *large allocation* ([`ArenaConfig::handles`], known without a lock): lock the global arena
//!   only; [`GlobalArena::allocate`].
//! - *small free*: lock the caller's sub-arena; if [`SubArena::owns`] the address, free it
//!   there. Else (a block freed by another thread) lock the other sub-arenas **one at a time**
//!   and free it in the one that owns it. Never hold two sub-arena locks at once.
//! - *large free*: lock the global arena only; [`GlobalArena::deallocate`].
//! - *out of memory*: drop every lock; then for each sub-arena in turn lock it and collect its
//!   wholly free superblocks with [`SubArena::take_free_superblock`], unlock it, lock the
//!   global arena and [`GlobalArena::release_superblock`] them; retry once.
//!
//! The lock order is always *a sub-arena, then the global arena*, and no one holds two
//! sub-arena locks, so there is no deadlock. The global lock is taken only to move a
//! superblock (at least 1 MiB at a time: O(log superblocks) with growable metadata) and for
//! large requests.
//!
//! ```
//! use strata_core::algo::{Arena, ArenaConfig};
//! use strata_core::SimUpstream;
//!
//! // A 64 MiB arena, two sub-arenas (e.g. two threads), growable metadata.
//! let mut arena: Arena<_, 2> = Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new(64 << 20))?;
//! let a = arena.allocate(0, 4096, 256)?; // sub-arena 0 takes a 1 MiB superblock
//! let b = arena.allocate(1, 4096, 256)?; // sub-arena 1 takes another
//! let big = arena.allocate(0, 8 << 20, 256)?; // above 1 MiB: from the global arena
//! assert_eq!(arena.global().superblock_count(), 2);
//! arena.deallocate(1, a.start, 4096)?; // freed by the other thread: found all the same
//! arena.deallocate(1, b.start, 4096)?;
//! arena.deallocate(0, big.start, 8 << 20)?;
//! assert_eq!(arena.reclaim()?, 2 << 20); // both superblocks back in the global arena
//! assert_eq!(arena.global().free_bytes(), 64 << 20);
//! # Ok::<(), strata_core::Error>(())
//! ```

use core::fmt;

use super::CoalescingList;
use crate::{DEFAULT_ALIGNMENT, Error, Range, Upstream, align_down, align_up, check_alignment};

/// The smallest superblock: 1 MiB (RMM's minimum).
pub const MIN_SUPERBLOCK_SIZE: u64 = 1 << 20;

/// The largest superblock: 1 TiB (RMM's sanity bound).
pub const MAX_SUPERBLOCK_SIZE: u64 = 1 << 40;

/// The sizes of an arena. See the `algo::arena` module documentation for what each means.
///
/// ```
/// use strata_core::algo::ArenaConfig;
/// let c = ArenaConfig::new(1 << 30).with_superblock_size(4 << 20);
/// assert_eq!((c.arena_size, c.superblock_size), (1 << 30, 4 << 20));
/// assert!(c.handles((4 << 20) + 1));
/// assert!(!c.handles(4 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaConfig {
    /// The total size of the global arena (rounded down to 256): one upstream allocation.
    pub arena_size: u64,
    /// The superblock size and large-request threshold (default and minimum 1 MiB).
    pub superblock_size: u64,
}

impl ArenaConfig {
    /// An arena of `arena_size` bytes with 1 MiB superblocks.
    ///
    /// ```
    /// let c = strata_core::algo::ArenaConfig::new(256 << 20);
    /// assert_eq!(c.superblock_size, 1 << 20);
    /// ```
    pub const fn new(arena_size: u64) -> Self {
        Self {
            arena_size,
            superblock_size: MIN_SUPERBLOCK_SIZE,
        }
    }

    /// The same configuration with another superblock size.
    ///
    /// ```
    /// let c = strata_core::algo::ArenaConfig::new(256 << 20).with_superblock_size(2 << 20);
    /// assert_eq!(c.superblock_size, 2 << 20);
    /// ```
    pub const fn with_superblock_size(self, superblock_size: u64) -> Self {
        Self {
            superblock_size,
            ..self
        }
    }

    /// Whether a request of `size` bytes goes straight to the global arena (it exceeds the
    /// superblock size) rather than to a sub-arena.
    ///
    /// ```
    /// let c = strata_core::algo::ArenaConfig::new(256 << 20);
    /// assert!(c.handles((1 << 20) + 1) && !c.handles(1 << 20));
    /// ```
    #[inline]
    pub const fn handles(&self, size: u64) -> bool {
        size > self.superblock_size
    }

    /// The checked configuration: sizes rounded (the arena down, the superblock up, to 256).
    fn checked(self) -> Result<Self, Error> {
        let superblock_size =
            align_up(self.superblock_size, DEFAULT_ALIGNMENT).ok_or(Error::SizeOverflow {
                requested: self.superblock_size,
            })?;
        if !(MIN_SUPERBLOCK_SIZE..=MAX_SUPERBLOCK_SIZE).contains(&superblock_size) {
            return Err(Error::Unsupported {
                what: "a superblock size below 1 MiB or above 1 TiB",
            });
        }
        let arena_size = align_down(self.arena_size, DEFAULT_ALIGNMENT);
        if arena_size < superblock_size {
            return Err(Error::Unsupported {
                what: "an arena smaller than one superblock",
            });
        }
        Ok(Self {
            arena_size,
            superblock_size,
        })
    }
}

/// The superblocks the sub-arenas hold, by start: a sorted array inline (`N > 0`: at most `N`,
/// so its O(n) insertion is bounded), or a B-tree on the heap (`N == 0`, feature `alloc`:
/// O(log n) whatever the count). The same convention as [`CoalescingList`].
struct SuperblockSet<const N: usize> {
    fixed: heapless::Vec<Range, N>,
    #[cfg(feature = "alloc")]
    tree: alloc::collections::BTreeMap<u64, u64>,
}

impl<const N: usize> SuperblockSet<N> {
    const fn new() -> Self {
        Self {
            fixed: heapless::Vec::new(),
            #[cfg(feature = "alloc")]
            tree: alloc::collections::BTreeMap::new(),
        }
    }

    /// Whether the heap (the tree) holds the set.
    #[inline]
    const fn on_heap() -> bool {
        cfg!(feature = "alloc") && N == 0
    }

    /// The superblock starting at `start`.
    #[inline]
    fn get(&self, start: u64) -> Option<Range> {
        #[cfg(feature = "alloc")]
        if Self::on_heap() {
            return self.tree.get(&start).map(|&len| Range::new(start, len));
        }
        self.fixed
            .binary_search_by_key(&start, |r| r.start)
            .ok()
            .map(|i| self.fixed[i])
    }

    fn len(&self) -> usize {
        #[cfg(feature = "alloc")]
        if Self::on_heap() {
            return self.tree.len();
        }
        self.fixed.len()
    }

    fn has_room(&self) -> bool {
        Self::on_heap() || !self.fixed.is_full()
    }

    fn capacity(&self) -> usize {
        if Self::on_heap() { usize::MAX } else { N }
    }

    /// Inserts `range`; the caller checked [`has_room`](Self::has_room) and that no superblock
    /// starts there.
    fn insert(&mut self, range: Range) {
        #[cfg(feature = "alloc")]
        if Self::on_heap() {
            let old = self.tree.insert(range.start, range.len);
            debug_assert!(old.is_none());
            return;
        }
        let at = self.fixed.partition_point(|r| r.start < range.start);
        let inserted = self.fixed.insert(at, range);
        debug_assert!(inserted.is_ok(), "room was checked");
    }

    /// Removes the superblock starting at `start`.
    fn remove(&mut self, start: u64) -> Option<Range> {
        #[cfg(feature = "alloc")]
        if Self::on_heap() {
            return self.tree.remove(&start).map(|len| Range::new(start, len));
        }
        let i = self.fixed.binary_search_by_key(&start, |r| r.start).ok()?;
        Some(self.fixed.remove(i))
    }

    fn iter(&self) -> Superblocks<'_> {
        #[cfg(feature = "alloc")]
        if Self::on_heap() {
            return Superblocks(SuperblocksInner::Tree(self.tree.iter()));
        }
        Superblocks(SuperblocksInner::Fixed(self.fixed.iter()))
    }
}

/// The superblocks a [`GlobalArena`] has handed out, in address order (see
/// [`GlobalArena::superblocks`]).
#[derive(Debug, Clone)]
struct Superblocks<'a>(SuperblocksInner<'a>);

#[derive(Debug, Clone)]
enum SuperblocksInner<'a> {
    Fixed(core::slice::Iter<'a, Range>),
    #[cfg(feature = "alloc")]
    Tree(alloc::collections::btree_map::Iter<'a, u64, u64>),
}

impl Iterator for Superblocks<'_> {
    type Item = Range;

    fn next(&mut self) -> Option<Range> {
        match &mut self.0 {
            SuperblocksInner::Fixed(it) => it.next().copied(),
            #[cfg(feature = "alloc")]
            SuperblocksInner::Tree(it) => it.next().map(|(&start, &len)| Range::new(start, len)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            SuperblocksInner::Fixed(it) => it.size_hint(),
            #[cfg(feature = "alloc")]
            SuperblocksInner::Tree(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Superblocks<'_> {}

/// The global arena: one range taken from the upstream, split into superblocks for the
/// sub-arenas and into large blocks for requests above the superblock size.
///
/// `N` and `P` are the node and partition capacities of its [`CoalescingList`] (0: growable
/// on the heap, feature `alloc`; for no heap use `P = 1`). With `N > 0`, at most `N` live
/// superblocks are recorded too.
///
/// Invariants (checked by [`audit`](Self::audit)): the list holds one chunk, the arena; its
/// live blocks are exactly the recorded superblocks and the large blocks; the superblocks are
/// sorted and disjoint; `free + superblock bytes + large bytes == arena size`.
///
/// ```
/// use strata_core::algo::{GlobalArena, SubArena};
/// use strata_core::{Range, Error};
///
/// // Over a range obtained elsewhere (here: made up), 1 MiB superblocks.
/// let mut global: GlobalArena = GlobalArena::new(Range::new(1 << 30, 16 << 20), 1 << 20)?;
/// let mut sub: SubArena = SubArena::new();
/// let r = sub.allocate(&mut global, 1000, 256)?;
/// assert_eq!(global.superblock_count(), 1);
/// assert_eq!(global.deallocate(r.start, 1000), Err(Error::NotAllocated { addr: r.start }));
/// sub.deallocate(r.start, 1000)?;
/// assert_eq!(sub.release_free_superblocks(&mut global)?, 1 << 20);
/// assert_eq!(global.free_bytes(), 16 << 20);
/// # Ok::<(), Error>(())
/// ```
pub struct GlobalArena<const N: usize = 0, const P: usize = 0> {
    arena: Range,
    superblock_size: u64,
    list: CoalescingList<N, P>,
    /// The superblocks held by sub-arenas.
    superblocks: SuperblockSet<N>,
    superblock_bytes: u64,
    /// How many superblocks are longer than `superblock_size` (taken for an aligned request
    /// near it). While there is none, a live block longer than `superblock_size` (a large
    /// block, in the common case) is told from a superblock with no lookup.
    oversized: usize,
}

impl<const N: usize, const P: usize> fmt::Debug for GlobalArena<N, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalArena")
            .field("arena", &self.arena)
            .field("superblock_size", &self.superblock_size)
            .field("superblocks", &self.superblock_count())
            .field("superblock_bytes", &self.superblock_bytes)
            .field("large_bytes", &self.large_bytes())
            .field("free_bytes", &self.free_bytes())
            .finish()
    }
}

impl<const N: usize, const P: usize> GlobalArena<N, P> {
    /// A global arena over `arena` (which the caller took from an upstream and gives back
    /// when the arena is gone; [`Arena`] does both), with superblocks of `superblock_size`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a superblock size outside 1 MiB ..= 1 TiB or an arena
    /// smaller than one superblock; the errors of [`CoalescingList::add_chunk`] for a range
    /// that is not 256-aligned, or when the metadata has no room.
    ///
    /// ```
    /// use strata_core::algo::GlobalArena;
    /// use strata_core::{Range, Error};
    /// let g: GlobalArena = GlobalArena::new(Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.arena(), Range::new(0, 4 << 20));
    /// assert!(matches!(GlobalArena::<0, 0>::new(Range::new(0, 4 << 20), 4096), Err(Error::Unsupported { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(arena: Range, superblock_size: u64) -> Result<Self, Error> {
        let config = ArenaConfig {
            arena_size: arena.len,
            superblock_size,
        }
        .checked()?;
        if config.arena_size != arena.len {
            return Err(Error::InvalidAlignment {
                align: DEFAULT_ALIGNMENT,
            });
        }
        let mut list = CoalescingList::with_fixed_capacity();
        list.add_chunk(arena)?;
        Ok(Self {
            arena,
            superblock_size: config.superblock_size,
            list,
            superblocks: SuperblockSet::new(),
            superblock_bytes: 0,
            oversized: 0,
        })
    }

    /// The arena's range.
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 1 << 20), 1 << 20)?;
    /// assert_eq!(g.arena().len, 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn arena(&self) -> Range {
        self.arena
    }

    /// The superblock size (and large-request threshold), rounded up to 256.
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), (1 << 20) + 1)?;
    /// assert_eq!(g.superblock_size(), (1 << 20) + 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn superblock_size(&self) -> u64 {
        self.superblock_size
    }

    /// Whether a request of `size` bytes is a large one, served here rather than by a
    /// sub-arena (see [`ArenaConfig::handles`]).
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert!(g.handles(2 << 20));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn handles(&self, size: u64) -> bool {
        size > self.superblock_size
    }

    /// Allocates a block of `size` bytes aligned to `align` from the arena directly (for a
    /// large request; any size is served). The range has the length `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::allocate`]: [`Error::OutOfMemory`] with the global arena's
    /// largest free block and free bytes when nothing fits (an [`Arena`] then reclaims free
    /// superblocks and retries). Nothing changes on error.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let r = g.allocate(3 << 20, 1 << 20)?;
    /// assert_eq!(r.start % (1 << 20), 0);
    /// assert_eq!(g.large_bytes(), 3 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.list.allocate(size, align)
    }

    /// Frees a block that [`allocate`](Self::allocate) handed out.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] for an address that is not the start of such a block (a
    /// superblock is not one: it goes back through [`release_superblock`](Self::release_superblock));
    /// [`Error::DoubleFree`], [`Error::SizeMismatch`] as [`CoalescingList::deallocate`].
    /// Nothing changes on error.
    ///
    /// ```
    /// use strata_core::Error;
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let r = g.allocate(2 << 20, 256)?;
    /// assert!(matches!(g.deallocate(r.start, 1 << 20), Err(Error::SizeMismatch { .. })));
    /// g.deallocate(r.start, 2 << 20)?;
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        if let Some(block) = self.list.live_block(addr)
            && self.is_superblock(block)
        {
            return Err(Error::NotAllocated { addr });
        }
        self.list.deallocate(addr, size)
    }

    /// Whether the live block `block` of the list is a superblock. A block shorter than the
    /// superblock size is not, nor is a longer one while no superblock is longer (a large
    /// block is, always): those need no lookup.
    #[inline]
    fn is_superblock(&self, block: Range) -> bool {
        block.len >= self.superblock_size
            && (block.len == self.superblock_size || self.oversized > 0)
            && self.superblocks.get(block.start).is_some()
    }

    /// Whether a large block (not a superblock) starts at `addr`.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let r = g.allocate(2 << 20, 256)?;
    /// assert!(g.is_large(r.start) && !g.is_large(r.start + 256));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn is_large(&self, addr: u64) -> bool {
        self.list
            .live_block(addr)
            .is_some_and(|b| !self.is_superblock(b))
    }

    /// Takes a superblock big enough for a request of `size` bytes aligned to `align`:
    /// `max(superblock_size, size rounded up to 256, plus align - 256 when align > 256)`.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`], [`Error::SizeOverflow`] for a bad
    /// request; [`Error::MetadataExhausted`] when no more superblocks can be recorded;
    /// [`Error::OutOfMemory`] when no free block of the arena fits. Nothing changes on error.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.acquire_superblock(4096, 256)?.len, 1 << 20);
    /// assert_eq!(g.acquire_superblock(1 << 20, 4096)?.len, (1 << 20) + 3840);
    /// assert_eq!(g.superblock_bytes(), (2 << 20) + 3840);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn acquire_superblock(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        check_alignment(align)?;
        let need = align_up(size, DEFAULT_ALIGNMENT)
            .and_then(|s| s.checked_add(align.saturating_sub(DEFAULT_ALIGNMENT)))
            .ok_or(Error::SizeOverflow { requested: size })?;
        if !self.superblocks.has_room() {
            return Err(Error::MetadataExhausted {
                capacity: self.superblocks.capacity(),
            });
        }
        let superblock = self
            .list
            .allocate(need.max(self.superblock_size), DEFAULT_ALIGNMENT)?;
        self.superblocks.insert(superblock);
        self.superblock_bytes += superblock.len;
        self.oversized += usize::from(superblock.len > self.superblock_size);
        self.debug_check_bytes();
        Ok(superblock)
    }

    /// Takes back a superblock that [`acquire_superblock`](Self::acquire_superblock) handed
    /// out (its sub-arena must hold no live block in it); it merges with free neighbours.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] when no superblock starts at `superblock.start`;
    /// [`Error::SizeMismatch`] when its length differs. Nothing changes on error.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let s = g.acquire_superblock(1, 256)?;
    /// g.release_superblock(s)?;
    /// assert!(g.release_superblock(s).is_err());
    /// assert_eq!(g.largest_free(), 4 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_superblock(&mut self, superblock: Range) -> Result<(), Error> {
        let Some(recorded) = self.superblocks.get(superblock.start) else {
            return Err(Error::NotAllocated {
                addr: superblock.start,
            });
        };
        if recorded.len != superblock.len {
            return Err(Error::SizeMismatch {
                addr: superblock.start,
                allocated: recorded.len,
                given: superblock.len,
            });
        }
        let freed = self.list.deallocate(recorded.start, recorded.len);
        debug_assert!(freed.is_ok(), "a recorded superblock is live in the list");
        freed?;
        self.superblocks.remove(recorded.start);
        self.superblock_bytes -= recorded.len;
        self.oversized -= usize::from(recorded.len > self.superblock_size);
        self.debug_check_bytes();
        Ok(())
    }

    /// The O(1) part of the invariants: superblocks are live blocks of the list, and every
    /// byte of the arena is free, in a superblock or in a large block.
    #[inline]
    fn debug_check_bytes(&self) {
        debug_assert!(self.superblock_bytes <= self.list.live_bytes());
        debug_assert_eq!(
            self.list.free_bytes() + self.list.live_bytes(),
            self.arena.len
        );
        debug_assert!(self.superblock_count() <= self.list.live_blocks());
    }

    /// Free bytes of the arena.
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.free_bytes(), 4 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn free_bytes(&self) -> u64 {
        self.list.free_bytes()
    }

    /// The largest free block of the arena.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// g.allocate(3 << 20, 256)?;
    /// assert_eq!(g.largest_free(), 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn largest_free(&self) -> u64 {
        self.list.largest_free()
    }

    /// How many superblocks the sub-arenas hold.
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.superblock_count(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn superblock_count(&self) -> usize {
        self.superblocks.len()
    }

    /// Bytes of the superblocks the sub-arenas hold.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// g.acquire_superblock(1, 256)?;
    /// assert_eq!(g.superblock_bytes(), 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn superblock_bytes(&self) -> u64 {
        self.superblock_bytes
    }

    /// The superblocks the sub-arenas hold, in address order.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let a = g.acquire_superblock(1, 256)?;
    /// let b = g.acquire_superblock(1, 256)?;
    /// let all: Vec<_> = g.superblocks().collect();
    /// assert_eq!(all, [a.min(b), a.max(b)]);
    /// assert_eq!(g.superblocks().len(), 2);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn superblocks(&self) -> impl ExactSizeIterator<Item = Range> + Clone + '_ {
        self.superblocks.iter()
    }

    /// The superblock starting at `start`, if one does. O(log superblocks) (O(N) inline).
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let s = g.acquire_superblock(1, 256)?;
    /// assert_eq!((g.superblock_at(s.start), g.superblock_at(s.start + 256)), (Some(s), None));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn superblock_at(&self, start: u64) -> Option<Range> {
        self.superblocks.get(start)
    }

    /// Bytes of the live large blocks.
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.large_bytes(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn large_bytes(&self) -> u64 {
        self.list.live_bytes() - self.superblock_bytes
    }

    /// How many large blocks are live.
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// g.allocate(2 << 20, 256)?;
    /// assert_eq!(g.large_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn large_count(&self) -> usize {
        self.list.live_blocks() - self.superblock_count()
    }

    /// The coalescing list of the arena's free space (for its statistics).
    ///
    /// ```
    /// let g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// assert_eq!(g.list().chunk_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn list(&self) -> &CoalescingList<N, P> {
        &self.list
    }

    /// Checks every invariant; for tests and debugging. O(blocks + superblocks).
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// let mut g: strata_core::algo::GlobalArena =
    ///     strata_core::algo::GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// g.acquire_superblock(1, 256)?;
    /// assert_eq!(g.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        self.list.check_invariants()?;
        if self.list.chunk_count() != 1 || self.list.chunk_bytes() != self.arena.len {
            return Err("the global list does not hold exactly the arena");
        }
        let mut prev: Option<Range> = None;
        for s in self.superblocks() {
            if prev.is_some_and(|p| p.end() > s.start) {
                return Err("superblocks unsorted or overlapping");
            }
            prev = Some(s);
        }
        if self
            .superblocks()
            .any(|s| self.list.live_block(s.start) != Some(s))
        {
            return Err("a superblock is not a live block of the global list");
        }
        if self
            .superblocks()
            .filter(|s| s.len > self.superblock_size)
            .count()
            != self.oversized
        {
            return Err("the count of superblocks longer than the superblock size is wrong");
        }
        if self.superblocks().map(|s| s.len).sum::<u64>() != self.superblock_bytes {
            return Err("superblock bytes do not match the superblocks");
        }
        if self.free_bytes() + self.superblock_bytes + self.large_bytes() != self.arena.len {
            return Err("free + superblocks + large != arena size");
        }
        Ok(())
    }
}

/// A sub-arena: the superblocks one thread (or stream) took from the global arena, and the
/// small blocks it serves from them.
///
/// Its superblocks are the chunks of its own [`CoalescingList`] (good fit in O(1), neighbours
/// merged at once, never across superblocks); a wholly free superblock goes back to the
/// global arena through [`release_free_superblocks`](Self::release_free_superblocks). `N`,
/// `P`: as for [`GlobalArena`].
///
/// ```
/// use strata_core::algo::{GlobalArena, SubArena};
/// use strata_core::Range;
/// let mut global: GlobalArena = GlobalArena::new(Range::new(0, 8 << 20), 1 << 20)?;
/// let mut sub: SubArena = SubArena::new();
/// assert_eq!(sub.try_allocate(256, 256)?, None); // no superblock yet
/// let r = sub.allocate(&mut global, 256, 256)?;
/// assert_eq!(sub.try_allocate(256, 256)?.map(|s| s.len), Some(256)); // now served locally
/// assert!(sub.owns(r.start));
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct SubArena<const N: usize = 0, const P: usize = 0> {
    list: CoalescingList<N, P>,
    /// Whether a superblock may have become wholly free since the last full search for one
    /// (a block was freed, or a superblock added): when not, the search costs nothing.
    maybe_free: bool,
}

impl<const N: usize, const P: usize> fmt::Debug for SubArena<N, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubArena")
            .field("superblocks", &self.list.chunk_count())
            .field("superblock_bytes", &self.list.chunk_bytes())
            .field("live_bytes", &self.list.live_bytes())
            .field("free_bytes", &self.list.free_bytes())
            .finish()
    }
}

impl<const N: usize, const P: usize> Default for SubArena<N, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const P: usize> SubArena<N, P> {
    /// An empty sub-arena (no superblock). A `const fn`.
    ///
    /// ```
    /// let sub = strata_core::algo::SubArena::<64, 1>::new();
    /// assert_eq!(sub.superblock_bytes(), 0);
    /// ```
    pub const fn new() -> Self {
        Self {
            list: CoalescingList::with_fixed_capacity(),
            maybe_free: false,
        }
    }

    /// Allocates from the superblocks already held, without the global arena: `Ok(None)` when
    /// none has room (then call [`allocate`](Self::allocate)).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`], [`Error::SizeOverflow`] for a bad
    /// request; [`Error::MetadataExhausted`] when a split needs a node and none is left.
    /// Nothing changes on error.
    ///
    /// ```
    /// let mut sub = strata_core::algo::SubArena::<0, 0>::new();
    /// assert_eq!(sub.try_allocate(0, 256), Err(strata_core::Error::ZeroSize));
    /// assert_eq!(sub.try_allocate(256, 256), Ok(None));
    /// ```
    #[inline]
    pub fn try_allocate(&mut self, size: u64, align: u64) -> Result<Option<Range>, Error> {
        match self.list.allocate(size, align) {
            Ok(r) => Ok(Some(r)),
            Err(Error::OutOfMemory { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Allocates `size` bytes aligned to `align`, taking a superblock from `global` when none
    /// held has room. The range has the length `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when `global` [handles](GlobalArena::handles) the size (route large
    /// requests to the global arena); the errors of [`try_allocate`](Self::try_allocate) and
    /// of [`GlobalArena::acquire_superblock`] ([`Error::OutOfMemory`] when the global arena
    /// has no room: reclaim free superblocks and retry). Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// use strata_core::{Range, Error};
    /// let mut global: GlobalArena = GlobalArena::new(Range::new(0, 1 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// assert!(matches!(sub.allocate(&mut global, 2 << 20, 256), Err(Error::TooLarge { .. })));
    /// sub.allocate(&mut global, 1 << 19, 256)?;
    /// sub.allocate(&mut global, 1 << 19, 256)?;
    /// assert!(matches!(sub.allocate(&mut global, 256, 256), Err(Error::OutOfMemory { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn allocate<const GN: usize, const GP: usize>(
        &mut self,
        global: &mut GlobalArena<GN, GP>,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        if global.handles(size) {
            return Err(Error::TooLarge {
                requested: size,
                max: global.superblock_size(),
            });
        }
        if let Some(r) = self.try_allocate(size, align)? {
            return Ok(r);
        }
        let superblock = global.acquire_superblock(size, align)?;
        if let Err(e) = self.add_superblock(superblock) {
            let back = global.release_superblock(superblock);
            debug_assert!(back.is_ok());
            return Err(e);
        }
        match self.list.allocate(size, align) {
            Ok(r) => Ok(r),
            Err(e) => {
                let removed = self.list.remove_free_chunk(superblock);
                let back = global.release_superblock(superblock);
                debug_assert!(removed && back.is_ok());
                Err(e)
            }
        }
    }

    /// Adds a superblock taken from a global arena with [`GlobalArena::acquire_superblock`]
    /// (all free): the part of [`allocate`](Self::allocate) that needs no global arena, so
    /// that a thread-safe resource holds the global arena's lock only for the exchange itself.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::add_chunk`]: [`Error::MetadataExhausted`] when two nodes are not
    /// available, [`Error::Unsupported`] for a range that overlaps a superblock held (and the
    /// alignment errors for a range that is not a superblock). Nothing changes on error: give
    /// the superblock back with [`GlobalArena::release_superblock`].
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// let mut global: GlobalArena = GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// let superblock = global.acquire_superblock(4096, 256)?; // under the global arena's lock
    /// sub.add_superblock(superblock)?; // under the sub-arena's lock only
    /// assert_eq!(sub.try_allocate(4096, 256)?.map(|r| r.len), Some(4096));
    /// assert!(sub.add_superblock(superblock).is_err()); // held already: refused
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn add_superblock(&mut self, superblock: Range) -> Result<(), Error> {
        self.list.add_chunk(superblock)?;
        self.maybe_free = true;
        Ok(())
    }

    /// Removes one wholly free superblock and returns it (give it back with
    /// [`GlobalArena::release_superblock`]); `None` when none is. Costs nothing when no block
    /// was freed (and no superblock added) since the last call that returned `None`; else
    /// O(superblocks) at most.
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// let mut global: GlobalArena = GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// let r = sub.allocate(&mut global, 256, 256)?;
    /// assert_eq!(sub.take_free_superblock(), None); // in use
    /// sub.deallocate(r.start, 256)?;
    /// let superblock = sub.take_free_superblock().unwrap();
    /// global.release_superblock(superblock)?;
    /// assert_eq!((sub.superblock_bytes(), global.free_bytes()), (0, 4 << 20));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn take_free_superblock(&mut self) -> Option<Range> {
        if !self.maybe_free {
            return None;
        }
        let taken = self.list.take_free_chunk();
        if taken.is_none() {
            self.maybe_free = false;
        }
        taken
    }

    /// Frees a block of this sub-arena.
    ///
    /// # Errors
    ///
    /// As [`CoalescingList::deallocate`]: [`Error::NotAllocated`] (e.g. a block of another
    /// sub-arena: check [`owns`](Self::owns) first), [`Error::DoubleFree`],
    /// [`Error::SizeMismatch`], [`Error::ZeroSize`]. Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// let mut global: GlobalArena = GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// let r = sub.allocate(&mut global, 300, 256)?;
    /// sub.deallocate(r.start, 300)?;
    /// assert_eq!(sub.live_bytes(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        self.list.deallocate(addr, size)?;
        self.maybe_free = true;
        Ok(())
    }

    /// Whether a live block of this sub-arena starts at `addr`. O(1).
    ///
    /// ```
    /// let sub = strata_core::algo::SubArena::<0, 0>::new();
    /// assert!(!sub.owns(0));
    /// ```
    #[inline]
    pub fn owns(&self, addr: u64) -> bool {
        self.list.is_live(addr)
    }

    /// Whether `addr` lies in one of this sub-arena's superblocks. O(superblocks).
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// let mut global: GlobalArena = GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// sub.allocate(&mut global, 256, 256)?;
    /// let superblock = sub.superblocks().next().unwrap();
    /// assert!(sub.in_superblocks(superblock.start + 4096));
    /// assert!(!sub.in_superblocks(superblock.end()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn in_superblocks(&self, addr: u64) -> bool {
        self.list.chunks().any(|c| c.contains(addr))
    }

    /// Gives every wholly free superblock back to `global` (where it merges with its free
    /// neighbours); returns the bytes given back.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] or [`Error::SizeMismatch`] when `global` is not the arena the
    /// superblocks came from; that superblock stays here.
    ///
    /// ```
    /// use strata_core::algo::{GlobalArena, SubArena};
    /// let mut global: GlobalArena = GlobalArena::new(strata_core::Range::new(0, 4 << 20), 1 << 20)?;
    /// let mut sub: SubArena = SubArena::new();
    /// let r = sub.allocate(&mut global, 256, 256)?;
    /// assert_eq!(sub.release_free_superblocks(&mut global)?, 0); // still in use
    /// sub.deallocate(r.start, 256)?;
    /// assert_eq!(sub.release_free_superblocks(&mut global)?, 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_free_superblocks<const GN: usize, const GP: usize>(
        &mut self,
        global: &mut GlobalArena<GN, GP>,
    ) -> Result<u64, Error> {
        let mut released = 0;
        while let Some(superblock) = self.take_free_superblock() {
            if let Err(e) = global.release_superblock(superblock) {
                // The chunk's nodes were just released, so adding it back cannot fail.
                let back = self.add_superblock(superblock);
                debug_assert!(back.is_ok());
                return Err(e);
            }
            released += superblock.len;
        }
        Ok(released)
    }

    /// Bytes in live blocks.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().live_bytes(), 0);
    /// ```
    pub fn live_bytes(&self) -> u64 {
        self.list.live_bytes()
    }

    /// Free bytes in the superblocks held.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().free_bytes(), 0);
    /// ```
    pub fn free_bytes(&self) -> u64 {
        self.list.free_bytes()
    }

    /// The largest free block in the superblocks held.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().largest_free(), 0);
    /// ```
    pub fn largest_free(&self) -> u64 {
        self.list.largest_free()
    }

    /// Bytes of the superblocks held.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().superblock_bytes(), 0);
    /// ```
    pub fn superblock_bytes(&self) -> u64 {
        self.list.chunk_bytes()
    }

    /// The superblocks held, in no particular order.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().superblocks().count(), 0);
    /// ```
    pub fn superblocks(&self) -> impl Iterator<Item = Range> + '_ {
        self.list.chunks()
    }

    /// The coalescing list of the superblocks (for its statistics).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().list().live_blocks(), 0);
    /// ```
    pub fn list(&self) -> &CoalescingList<N, P> {
        &self.list
    }

    /// Checks every invariant of the sub-arena's list; for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::SubArena::<0, 0>::new().audit(), Ok(()));
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        self.list.check_invariants()
    }
}

/// Where a block lives, for a free that did not find it on the fast path.
enum Owner {
    Sub(usize),
    Global,
    Nobody,
}

/// RMM's arena, single-threaded: a [`GlobalArena`] over one upstream allocation, `S`
/// sub-arenas (indexed `0..S`, e.g. one per thread or stream) and the upstream.
///
/// Requests above the superblock size go to the global arena; the others to the sub-arena
/// named by the caller. A free may name any sub-arena: a block of another is found (RMM
/// allows a block to be freed by another thread). On out of memory, wholly free superblocks go
/// back to the global arena (see the module's *Out of memory*) and the request is retried
/// once. Dropping an
/// `Arena` gives the arena's range back to the upstream.
///
/// `N`, `P`: node and partition capacities of every coalescing list (0: on the heap).
///
/// ```
/// use strata_core::algo::{Arena, ArenaConfig};
/// use strata_core::{SimUpstream, Error};
/// let mut arena: Arena<_, 1> = Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new(2 << 20))?;
/// let a = arena.allocate(0, 1 << 20, 256)?; // takes superblock 1 of 2
/// let b = arena.allocate(0, 1 << 20, 256)?; // takes superblock 2
/// arena.deallocate(0, a.start, 1 << 20)?;
/// // A large request needs the whole arena's room: the free superblock is reclaimed first.
/// assert!(matches!(arena.allocate(0, (1 << 20) + 256, 256), Err(Error::OutOfMemory { .. })));
/// assert_eq!(arena.global().superblock_count(), 1);
/// # let _ = b;
/// # Ok::<(), Error>(())
/// ```
pub struct Arena<U: Upstream, const S: usize, const N: usize = 0, const P: usize = 0> {
    upstream: U,
    global: GlobalArena<N, P>,
    subs: [SubArena<N, P>; S],
}

impl<U: Upstream + fmt::Debug, const S: usize, const N: usize, const P: usize> fmt::Debug
    for Arena<U, S, N, P>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("upstream", &self.upstream)
            .field("global", &self.global)
            .field("subs", &self.subs)
            .finish()
    }
}

impl<U: Upstream, const S: usize, const N: usize, const P: usize> Arena<U, S, N, P> {
    /// Takes the arena (`config.arena_size`, rounded down to 256) from `upstream` in one
    /// allocation.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a superblock size outside 1 MiB ..= 1 TiB or an arena
    /// smaller than one superblock (checked before the upstream is called); the upstream's
    /// error; [`Error::MetadataExhausted`] when the global list has no room (the range is
    /// then given back).
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// use strata_core::{SimUpstream, Error};
    /// let arena: Arena<_, 4> = Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new((16 << 20) + 100))?;
    /// assert_eq!(arena.global().arena().len, 16 << 20);
    /// assert_eq!(arena.upstream().in_use(), 16 << 20);
    /// let small = Arena::<_, 4>::new(SimUpstream::new(1 << 30), ArenaConfig::new(4096));
    /// assert!(matches!(small, Err(Error::Unsupported { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(mut upstream: U, config: ArenaConfig) -> Result<Self, Error> {
        let config = config.checked()?;
        let range = upstream.allocate(config.arena_size, DEFAULT_ALIGNMENT)?;
        match GlobalArena::new(range, config.superblock_size) {
            Ok(global) => Ok(Self {
                upstream,
                global,
                subs: [const { SubArena::new() }; S],
            }),
            Err(e) => {
                let _ = upstream.deallocate(range);
                Err(e)
            }
        }
    }

    /// Allocates `size` bytes aligned to `align` for sub-arena `sub` (or, above the superblock
    /// size, from the global arena). On out of memory, reclaims wholly free superblocks (every
    /// one for a large request, one from another sub-arena for a small one) and retries once.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStream`] (with `sub`) when `sub >= S`; [`Error::ZeroSize`],
    /// [`Error::InvalidAlignment`], [`Error::SizeOverflow`] for a bad request;
    /// [`Error::MetadataExhausted`]; [`Error::OutOfMemory`] with the largest free block and
    /// the free bytes over the global arena and every sub-arena. Nothing changes on error,
    /// except that free superblocks may have gone back to the global arena.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// use strata_core::{SimUpstream, Error};
    /// let mut arena: Arena<_, 2> = Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// assert_eq!(arena.allocate(2, 256, 256), Err(Error::UnknownStream { stream: 2 }));
    /// let r = arena.allocate(1, 1000, 512)?;
    /// assert_eq!((r.start % 512, r.len), (0, 1024));
    /// assert_eq!(
    ///     arena.allocate(0, 8 << 20, 256),
    ///     Err(Error::OutOfMemory { requested: 8 << 20, largest_free: 3 << 20, total_free: (4 << 20) - 1024 })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    pub fn allocate(&mut self, sub: usize, size: u64, align: u64) -> Result<Range, Error> {
        if sub >= S {
            return Err(Error::UnknownStream { stream: sub as u64 });
        }
        match self.try_once(sub, size, align) {
            Err(Error::OutOfMemory { .. }) => {}
            done => return done,
        }
        // A request that one superblock serves needs one superblock back, from another
        // sub-arena (a wholly free one of its own would have served it). If nothing came back
        // (nothing was freed since the last search found nothing), the retry would fail the
        // same way.
        let one = !self.global.handles(size)
            && align_up(size, DEFAULT_ALIGNMENT)
                .and_then(|s| s.checked_add(align.saturating_sub(DEFAULT_ALIGNMENT)))
                .is_some_and(|need| need <= self.global.superblock_size());
        let moved = if one {
            self.reclaim_one(sub)?
        } else {
            self.reclaim()?
        };
        if moved == 0 {
            return Err(self.out_of_memory(size));
        }
        match self.try_once(sub, size, align) {
            Err(Error::OutOfMemory { .. }) => Err(self.out_of_memory(size)),
            done => done,
        }
    }

    fn try_once(&mut self, sub: usize, size: u64, align: u64) -> Result<Range, Error> {
        if self.global.handles(size) {
            self.global.allocate(size, align)
        } else {
            self.subs[sub].allocate(&mut self.global, size, align)
        }
    }

    #[cold]
    fn out_of_memory(&self, requested: u64) -> Error {
        let largest_free = self
            .subs
            .iter()
            .map(SubArena::largest_free)
            .fold(self.global.largest_free(), u64::max);
        let total_free = self
            .subs
            .iter()
            .map(SubArena::free_bytes)
            .fold(self.global.free_bytes(), |a, b| a + b);
        Error::OutOfMemory {
            requested,
            largest_free,
            total_free,
        }
    }

    /// Frees the block at `addr` of `size` bytes. `sub` is the caller's sub-arena, looked at
    /// first; a block of another sub-arena or of the global arena is found too.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStream`] when `sub >= S`; [`Error::NotAllocated`],
    /// [`Error::DoubleFree`], [`Error::SizeMismatch`] for a bad free. Nothing changes on
    /// error.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// use strata_core::{SimUpstream, Error};
    /// let mut arena: Arena<_, 2> = Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// let r = arena.allocate(0, 4096, 256)?;
    /// assert!(matches!(arena.deallocate(1, r.start, 8192), Err(Error::SizeMismatch { .. })));
    /// arena.deallocate(1, r.start, 4096)?;
    /// // Freed twice: an error (`DoubleFree`, or `NotAllocated` once the block has merged
    /// // into the free block before it).
    /// assert!(arena.deallocate(0, r.start, 4096).is_err());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn deallocate(&mut self, sub: usize, addr: u64, size: u64) -> Result<(), Error> {
        if sub >= S {
            return Err(Error::UnknownStream { stream: sub as u64 });
        }
        if !self.global.handles(size) && self.subs[sub].owns(addr) {
            return self.subs[sub].deallocate(addr, size);
        }
        match self.owner_of(sub, addr) {
            Owner::Sub(j) => self.subs[j].deallocate(addr, size),
            Owner::Global => self.global.deallocate(addr, size),
            Owner::Nobody => Err(Error::NotAllocated { addr }),
        }
    }

    /// Who should answer a free of `addr`: the sub-arena or global arena where a live block
    /// starts there, else (to tell a double free from a foreign address) the one whose
    /// superblocks or arena contain it.
    fn owner_of(&self, sub: usize, addr: u64) -> Owner {
        if self.global.is_large(addr) {
            return Owner::Global;
        }
        // The caller's sub-arena first, then the others.
        let order = core::iter::once(sub).chain((0..S).filter(move |&j| j != sub));
        if let Some(j) = order.clone().find(|&j| self.subs[j].owns(addr)) {
            return Owner::Sub(j);
        }
        if let Some(j) = order.clone().find(|&j| self.subs[j].in_superblocks(addr)) {
            return Owner::Sub(j);
        }
        if self.global.arena().contains(addr) {
            Owner::Global
        } else {
            Owner::Nobody
        }
    }

    /// Gives one wholly free superblock of a sub-arena other than `sub` back to the global
    /// arena; returns its bytes (0 when there is none).
    fn reclaim_one(&mut self, sub: usize) -> Result<u64, Error> {
        for (j, other) in self.subs.iter_mut().enumerate() {
            if j == sub {
                continue;
            }
            if let Some(superblock) = other.take_free_superblock() {
                if let Err(e) = self.global.release_superblock(superblock) {
                    let back = other.add_superblock(superblock);
                    debug_assert!(back.is_ok());
                    return Err(e);
                }
                return Ok(superblock.len);
            }
        }
        Ok(0)
    }

    /// Gives every wholly free superblock of every sub-arena back to the global arena;
    /// returns the bytes moved. [`allocate`](Self::allocate) does this on out of memory.
    ///
    /// # Errors
    ///
    /// None in practice: the superblocks always come from this arena's global arena.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// let mut arena: Arena<_, 1> = Arena::new(strata_core::SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// let r = arena.allocate(0, 256, 256)?;
    /// arena.deallocate(0, r.start, 256)?;
    /// assert_eq!(arena.reclaim()?, 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn reclaim(&mut self) -> Result<u64, Error> {
        let mut moved = 0;
        for sub in self.subs.iter_mut() {
            moved += sub.release_free_superblocks(&mut self.global)?;
        }
        Ok(moved)
    }

    /// The global arena.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// let arena: Arena<_, 1> = Arena::new(strata_core::SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// assert_eq!(arena.global().free_bytes(), 4 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn global(&self) -> &GlobalArena<N, P> {
        &self.global
    }

    /// Sub-arena `i`, if `i < S`.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// let arena: Arena<_, 2> = Arena::new(strata_core::SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// assert!(arena.sub_arena(1).is_some() && arena.sub_arena(2).is_none());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn sub_arena(&self, i: usize) -> Option<&SubArena<N, P>> {
        self.subs.get(i)
    }

    /// The upstream.
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// let arena: Arena<_, 1> = Arena::new(strata_core::SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// assert_eq!(arena.upstream().in_use(), 4 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// Checks every invariant: the global arena's, each sub-arena's, and that the superblocks
    /// the global arena records are exactly those the sub-arenas hold, each held by one.
    /// O(blocks + superblocks²); for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// use strata_core::algo::{Arena, ArenaConfig};
    /// let mut arena: Arena<_, 2> = Arena::new(strata_core::SimUpstream::new(1 << 30), ArenaConfig::new(4 << 20))?;
    /// arena.allocate(1, 4096, 256)?;
    /// assert_eq!(arena.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        self.global.audit()?;
        let mut held = 0;
        for sub in &self.subs {
            sub.audit()?;
            for sb in sub.superblocks() {
                held += 1;
                if self.global.superblock_at(sb.start) != Some(sb) {
                    return Err("a sub-arena holds a superblock the global arena does not record");
                }
            }
        }
        if held != self.global.superblock_count() {
            return Err("a recorded superblock is held by no sub-arena, or by two");
        }
        for sb in self.global.superblocks() {
            if self
                .subs
                .iter()
                .filter(|s| s.superblocks().any(|c| c == sb))
                .count()
                != 1
            {
                return Err("a superblock is not held by exactly one sub-arena");
            }
        }
        Ok(())
    }
}

impl<U: Upstream, const S: usize, const N: usize, const P: usize> Drop for Arena<U, S, N, P> {
    /// Gives the arena's range back to the upstream, ignoring its error.
    fn drop(&mut self) {
        let _ = self.upstream.deallocate(self.global.arena());
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// Superblocks; per sub-arena live, free and superblock bytes; global free and large bytes.
    type Snapshot = (Vec<Range>, Vec<(u64, u64, u64)>, u64, u64);

    /// Everything observable about an arena's state.
    fn snapshot<const S: usize>(a: &Arena<SimUpstream, S>) -> Snapshot {
        (
            a.global().superblocks().collect(),
            a.subs
                .iter()
                .map(|s| (s.live_bytes(), s.free_bytes(), s.superblock_bytes()))
                .collect(),
            a.global().free_bytes(),
            a.global().large_bytes(),
        )
    }

    fn arena<const S: usize>(size: u64) -> Arena<SimUpstream, S> {
        Arena::new(SimUpstream::new(1 << 40), ArenaConfig::new(size)).unwrap()
    }

    #[test]
    fn config_is_checked_before_the_upstream_is_called() {
        let mut up = SimUpstream::new(1 << 30);
        for config in [
            ArenaConfig::new(64 * MIB).with_superblock_size(MIB - 256),
            ArenaConfig::new(64 * MIB).with_superblock_size(MAX_SUPERBLOCK_SIZE + 1),
            ArenaConfig::new(MIB - 1),
        ] {
            assert!(matches!(
                Arena::<_, 1>::new(&mut up, config),
                Err(Error::Unsupported { .. })
            ));
        }
        assert!(matches!(
            Arena::<_, 1>::new(&mut up, ArenaConfig::new(2 << 30)),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(up.in_use(), 0);
        assert_eq!(
            GlobalArena::<0, 0>::new(Range::new(0, MIB + 1), MIB).map(|_| ()),
            Err(Error::InvalidAlignment { align: 256 })
        );
    }

    #[test]
    fn small_requests_use_superblocks_large_ones_the_global_arena() {
        let mut a = arena::<2>(16 * MIB);
        let s0 = a.allocate(0, 1000, 256).unwrap();
        let s1 = a.allocate(1, 1000, 256).unwrap();
        let exact = a.allocate(0, MIB, 256).unwrap(); // exactly the threshold: a superblock
        let large = a.allocate(0, MIB + 1, 256).unwrap();
        assert_eq!(a.global().superblock_count(), 3);
        assert_eq!(a.global().large_count(), 1);
        assert_eq!(large.len, MIB + 256);
        assert!(a.sub_arena(0).unwrap().owns(s0.start));
        assert!(a.sub_arena(1).unwrap().owns(s1.start));
        assert!(a.global().is_large(large.start));
        a.audit().unwrap();
        for (sub, r) in [(1, s0), (0, s1), (1, exact), (1, large)] {
            a.deallocate(sub, r.start, r.len).unwrap();
            a.audit().unwrap();
        }
        assert_eq!(a.reclaim().unwrap(), 3 * MIB);
        assert_eq!(a.global().largest_free(), 16 * MIB);
        a.audit().unwrap();
    }

    #[test]
    fn bad_calls_change_nothing() {
        let mut a = arena::<2>(8 * MIB);
        let small = a.allocate(0, 512, 256).unwrap();
        let freed = a.allocate(0, 512, 256).unwrap();
        a.deallocate(0, freed.start, 512).unwrap();
        let large = a.allocate(1, 2 * MIB, 256).unwrap();
        let superblock = a.global().superblocks().next().unwrap();
        let before = snapshot(&a);
        assert_eq!(a.allocate(0, 0, 256), Err(Error::ZeroSize));
        assert_eq!(
            a.allocate(0, 256, 3),
            Err(Error::InvalidAlignment { align: 3 })
        );
        assert_eq!(
            a.allocate(0, u64::MAX, 256),
            Err(Error::SizeOverflow {
                requested: u64::MAX
            })
        );
        assert_eq!(
            a.allocate(7, 256, 256),
            Err(Error::UnknownStream { stream: 7 })
        );
        assert_eq!(
            a.deallocate(7, small.start, 512),
            Err(Error::UnknownStream { stream: 7 })
        );
        // Foreign addresses, inside and outside the arena.
        for addr in [0, small.start + 256, large.start + 256, u64::MAX] {
            assert_eq!(
                a.deallocate(1, addr, 512),
                Err(Error::NotAllocated { addr })
            );
            assert_eq!(
                a.deallocate(1, addr, 2 * MIB),
                Err(Error::NotAllocated { addr })
            );
        }
        // A free of a whole superblock as if it were a block is refused.
        for sub in 0..2 {
            assert!(matches!(
                a.deallocate(sub, superblock.start, superblock.len),
                Err(Error::SizeMismatch { .. }
                    | Error::DoubleFree { .. }
                    | Error::NotAllocated { .. })
            ));
        }
        assert!(matches!(
            a.deallocate(1, small.start, 1024),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(matches!(
            a.deallocate(0, large.start, 512),
            Err(Error::SizeMismatch { .. })
        ));
        // A double free (NotAllocated when the freed block merged into the free one before
        // it, as CoalescingList documents).
        assert!(matches!(
            a.deallocate(1, freed.start, 512),
            Err(Error::DoubleFree { .. } | Error::NotAllocated { .. })
        ));
        assert_eq!(snapshot(&a), before);
        a.audit().unwrap();
        // The global arena alone refuses to free a superblock as a large block.
        assert_eq!(
            a.global.deallocate(superblock.start, superblock.len),
            Err(Error::NotAllocated {
                addr: superblock.start
            })
        );
        assert_eq!(
            a.global
                .release_superblock(Range::new(superblock.start, MIB / 2)),
            Err(Error::SizeMismatch {
                addr: superblock.start,
                allocated: superblock.len,
                given: MIB / 2
            })
        );
        assert_eq!(snapshot(&a), before);
    }

    #[test]
    fn out_of_memory_reclaims_then_reports_totals() {
        let mut a = arena::<2>(4 * MIB);
        // Sub 0 and sub 1 each take a superblock and free everything in it.
        for sub in 0..2 {
            let r = a.allocate(sub, 4096, 256).unwrap();
            a.deallocate(sub, r.start, 4096).unwrap();
        }
        // A 3 MiB request fits only once both free superblocks are back.
        let big = a.allocate(0, 3 * MIB, 256).unwrap();
        assert_eq!(a.global().superblock_count(), 0);
        a.audit().unwrap();
        // Now sub 1 keeps a live block: the request cannot be served.
        let keep = a.allocate(1, 256, 256).unwrap();
        assert_eq!(
            a.allocate(0, 2 * MIB, 256),
            Err(Error::OutOfMemory {
                requested: 2 * MIB,
                largest_free: MIB - 256,
                total_free: MIB - 256
            })
        );
        a.audit().unwrap();
        a.deallocate(1, keep.start, 256).unwrap();
        a.deallocate(0, big.start, 3 * MIB).unwrap();
        a.reclaim().unwrap();
        assert_eq!(a.global().free_bytes(), 4 * MIB);
        a.audit().unwrap();
    }

    #[test]
    fn a_small_request_reclaims_one_superblock_of_another_sub_arena() {
        let mut a = arena::<2>(4 * MIB);
        let blocks: Vec<Range> = (0..4).map(|_| a.allocate(0, MIB, 256).unwrap()).collect();
        for b in &blocks[..3] {
            a.deallocate(0, b.start, b.len).unwrap();
        }
        // Sub-arena 1 needs one superblock: one of sub-arena 0's three free ones comes back.
        let x = a.allocate(1, 256, 256).unwrap();
        assert_eq!(a.global().superblock_count(), 4);
        assert_eq!(a.sub_arena(0).unwrap().superblock_bytes(), 3 * MIB);
        a.audit().unwrap();
        // Sub-arena 0's own free superblocks are no use to it for a small request: nothing
        // moves, the request is served from them.
        a.allocate(0, MIB, 256).unwrap();
        assert_eq!(a.global().superblock_count(), 4);
        // A large request takes back every free superblock.
        assert!(matches!(
            a.allocate(1, 2 * MIB, 256),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(a.sub_arena(0).unwrap().superblock_bytes(), 2 * MIB);
        a.deallocate(1, x.start, 256).unwrap();
        a.audit().unwrap();
    }

    #[test]
    fn a_search_for_free_superblocks_is_skipped_until_something_is_freed() {
        let mut g: GlobalArena = GlobalArena::new(Range::new(1 << 30, 4 * MIB), MIB).unwrap();
        let mut s: SubArena = SubArena::new();
        let r = s.allocate(&mut g, 256, 256).unwrap();
        assert!(s.maybe_free, "a superblock was added");
        assert_eq!(s.take_free_superblock(), None);
        assert!(
            !s.maybe_free,
            "searched: nothing free, and nothing freed since"
        );
        assert_eq!(s.take_free_superblock(), None);
        s.deallocate(r.start, 256).unwrap();
        assert!(s.maybe_free);
        let sb = s.take_free_superblock().unwrap();
        g.release_superblock(sb).unwrap();
        g.audit().unwrap();
    }

    #[test]
    fn blocks_of_every_length_are_told_from_superblocks() {
        let mut g: GlobalArena = GlobalArena::new(Range::new(1 << 30, 16 * MIB), MIB).unwrap();
        // A block of the global arena as long as a superblock, one longer, one shorter; a
        // superblock of the usual size, and one longer (an aligned request near the size).
        let same = g.allocate(MIB, 256).unwrap();
        let longer = g.allocate(MIB + 4096, 256).unwrap();
        let shorter = g.allocate(4096, 256).unwrap();
        let sb = g.acquire_superblock(256, 256).unwrap();
        for r in [same, longer, shorter] {
            assert!(g.is_large(r.start));
        }
        assert!(!g.is_large(sb.start));
        let long_sb = g.acquire_superblock(MIB, 4096).unwrap();
        assert_eq!(long_sb.len, MIB + 3840);
        assert!(!g.is_large(long_sb.start) && g.is_large(longer.start));
        assert_eq!(
            g.deallocate(long_sb.start, long_sb.len),
            Err(Error::NotAllocated {
                addr: long_sb.start
            })
        );
        assert_eq!(
            g.deallocate(sb.start, sb.len),
            Err(Error::NotAllocated { addr: sb.start })
        );
        g.audit().unwrap();
        for r in [same, longer, shorter] {
            g.deallocate(r.start, r.len).unwrap();
        }
        g.release_superblock(long_sb).unwrap();
        g.release_superblock(sb).unwrap();
        g.audit().unwrap();
        assert_eq!(g.free_bytes(), 16 * MIB);
    }

    #[test]
    fn superblock_metadata_exhaustion_changes_nothing() {
        let mut up = SimUpstream::new(1 << 30);
        // 4 nodes per list: the global list holds the arena chunk (2 nodes) and two
        // superblocks (one split node each); the third superblock finds no node.
        let mut a: Arena<_, 1, 4, 1> = Arena::new(&mut up, ArenaConfig::new(8 * MIB)).unwrap();
        let mut err = None;
        for _ in 0..8 {
            match a.allocate(0, MIB, 256) {
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(Error::MetadataExhausted { .. })));
        a.audit().unwrap();
    }

    #[test]
    fn drop_gives_the_arena_back() {
        let mut up = SimUpstream::new(1 << 30);
        {
            let mut a: Arena<_, 1> = Arena::new(&mut up, ArenaConfig::new(4 * MIB)).unwrap();
            a.allocate(0, 256, 256).unwrap();
        }
        assert_eq!(up.in_use(), 0);
    }

    #[test]
    fn a_superblock_is_never_released_while_in_use() {
        let mut g: GlobalArena = GlobalArena::new(Range::new(1 << 30, 4 * MIB), MIB).unwrap();
        let mut s: SubArena = SubArena::new();
        let r = s.allocate(&mut g, 256, 256).unwrap();
        assert_eq!(s.release_free_superblocks(&mut g).unwrap(), 0);
        assert_eq!(g.superblock_count(), 1);
        // A foreign global arena refuses the superblock; it stays with the sub-arena.
        s.deallocate(r.start, 256).unwrap();
        let mut other: GlobalArena = GlobalArena::new(Range::new(1 << 32, 4 * MIB), MIB).unwrap();
        assert!(matches!(
            s.release_free_superblocks(&mut other),
            Err(Error::NotAllocated { .. })
        ));
        assert_eq!(s.superblock_bytes(), MIB);
        assert_eq!(s.release_free_superblocks(&mut g).unwrap(), MIB);
        g.audit().unwrap();
        s.audit().unwrap();
    }
}
