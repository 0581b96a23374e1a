//! The TLSF coalescing free list: O(1) good-fit allocation over abstract address ranges, with
//! immediate merging of physically adjacent free blocks, and free blocks split into partitions
//! (one per stream, for the stream-ordered pool). See [`CoalescingList`].

use core::fmt;
use core::hint::select_unpredictable;
use core::num::NonZeroU32;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use crate::{DEFAULT_ALIGNMENT, Error, Range, check_alignment};

/// The id of a partition of the free blocks (0 is the default partition; at most 16384).
///
/// ```
/// use strata_core::algo::{CoalescingList, PartitionId};
/// let mut list = CoalescingList::new();
/// let stream_1: PartitionId = list.add_partition()?;
/// assert_eq!(stream_1, 1);
/// # Ok::<(), strata_core::Error>(())
/// ```
pub type PartitionId = u16;

/// "No node" in the links.
const NIL: u32 = u32::MAX;

/// The hash-chain link of a live block taken out of the address table with
/// [`CoalescingList::detach`] (never a node index: those are below `MAX_NODES`).
const DETACHED: u32 = u32::MAX - 1;
/// The top bit of a physical link: set when the node on that side is a free block (of any
/// partition). Node indices stay below it.
const SIDE_FREE: u32 = 1 << 31;
/// The most node slots a list can have (indices below `SIDE_FREE`, and `NIL` unused).
const MAX_NODES: usize = SIDE_FREE as usize - 1;
/// Block sizes and starts are multiples of the granule, 256 bytes.
const GRANULE_SHIFT: u32 = DEFAULT_ALIGNMENT.trailing_zeros();
/// log2 of the number of second-level classes per power of two.
const SL_BITS: u32 = 5;
const SL_COUNT: usize = 1 << SL_BITS;
/// First-level classes: sizes below 2^64 bytes are below 2^56 granules; a rounded-up search
/// size stays below 2^57, whose first-level index is 57 - SL_BITS = 52.
const FL_COUNT: usize = 53;
const CLASS_COUNT: usize = FL_COUNT * SL_COUNT;

/// Node tags (16 bits, kept in the low bytes of `start` and `size`): a free block's tag is its
/// partition id (below 2^14); the others are kinds.
const TAG_LIVE: u32 = 1 << 14;
const TAG_CHUNK: u32 = 2 << 14;
const TAG_VACANT: u32 = 3 << 14;
/// The most partitions a list can have (partition ids are below this).
const MAX_PARTITIONS: usize = 1 << 14;
/// The low bits of `start` and `size` that hold the tag.
const TAG_MASK: u64 = DEFAULT_ALIGNMENT - 1;
/// The live tag's high byte, as it sits in the low bits of `size_tag` (its low byte, in
/// `start_tag`, is 0: a live node's `start_tag` is its start).
const LIVE_HI: u64 = (TAG_LIVE >> 8) as u64;

/// `max(0, floor(log2(units)) - 5)`: the number of low bits of a size (in granules) that its
/// class ignores.
#[inline(always)]
fn class_shift(units: u64) -> u32 {
    58 - (units | 32).leading_zeros()
}

/// The flat size-class index (first level × 32 + second level) of a block of `units` granules.
///
/// Classes below 64 granules are exact (the index is `units`); above, the first level is
/// `log2(units) - 4` and the second the next 5 bits below the leading one. With
/// `shift = class_shift(units)` and `m = units >> shift` (in 32..64 above the exact classes),
/// the first level is `shift + m / 32` and the second `m % 32`, so the flat index is
/// `32 * shift + m`.
#[inline(always)]
fn class_index(units: u64) -> usize {
    let shift = class_shift(units);
    ((shift as usize) << SL_BITS) + (units >> shift) as usize
}

/// The first class whose every block holds at least `units` granules (`units >= 1`):
/// `class_index(search_units(units))`, in a few instructions. The classes partition the sizes
/// into ranges in increasing order, so the first class that starts at `units` or above is the
/// one after the class of `units - 1`.
#[inline(always)]
fn search_class(units: u64) -> usize {
    debug_assert!(units >= 1);
    class_index(units - 1) + 1
}

/// `units` rounded up to the start of the next class boundary: every block whose class is at
/// least `class_of(search_units(units))` holds at least `units` granules, and it is the smallest
/// block size of that class.
#[inline(always)]
fn search_units(units: u64) -> u64 {
    let shift = class_shift(units);
    let up = units + (1u64 << shift) - 1;
    let shift_up = class_shift(up);
    (up >> shift_up) << shift_up
}

/// One metadata node: a block (live or free), a chunk record, or a vacant slot. 32 bytes,
/// aligned to 32, so a node never straddles two cache lines.
///
/// Starts and sizes are multiples of 256, so their low 8 bits are free: they hold the 16-bit
/// tag (low byte in `start_tag`, high byte in `size_tag`).
///
/// Field use by kind:
///
/// | kind   | start, size | `prev_phys`, `next_phys`        | `link_prev`, `link_next`             |
/// |--------|-------------|---------------------------------|--------------------------------------|
/// | free   | the block   | physical neighbours             | its size-class list                  |
/// | live   | the block   | physical neighbours             | generation, next in its hash bucket  |
/// | chunk  | the chunk   | last block, first block         | the chunk list                       |
/// | vacant | -           | -                               | -, next vacant slot                  |
///
/// The blocks of a chunk and its record form a circular list through the physical links: the
/// first block's `prev_phys` and the last block's `next_phys` are the chunk record. So every
/// block has two physical neighbours, and a chunk record (never free) stops merges at the
/// chunk's ends with no test for "no neighbour".
///
/// The top bit of each physical link (`SIDE_FREE`) says whether the node on that side is a
/// free block. A free thus knows from the block's own node whether a merge is possible, and
/// reads a neighbour only when it is free: when neither is, the free touches no neighbour
/// but to set their bits (stores, which do not wait for the memory they write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(32))]
struct Node {
    start_tag: u64,
    size_tag: u64,
    prev_phys: u32,
    next_phys: u32,
    link_prev: u32,
    link_next: u32,
}

impl Node {
    const VACANT: Node = Node::new(0, 0, TAG_VACANT, NIL, NIL);

    /// A node for `start .. start + size` (both multiples of 256) with `tag`.
    #[inline(always)]
    const fn new(start: u64, size: u64, tag: u32, prev_phys: u32, next_phys: u32) -> Node {
        Node {
            start_tag: start | (tag as u64 & TAG_MASK),
            size_tag: size | ((tag as u64 >> 8) & TAG_MASK),
            prev_phys,
            next_phys,
            link_prev: NIL,
            link_next: NIL,
        }
    }

    #[inline(always)]
    fn start(&self) -> u64 {
        self.start_tag & !TAG_MASK
    }

    /// The physical neighbour before (the chunk record for the first block).
    #[inline(always)]
    fn prev(&self) -> u32 {
        self.prev_phys & !SIDE_FREE
    }

    /// The physical neighbour after (the chunk record for the last block).
    #[inline(always)]
    fn next(&self) -> u32 {
        self.next_phys & !SIDE_FREE
    }

    /// Whether the neighbour before is a free block (of any partition).
    #[inline(always)]
    fn prev_is_free(&self) -> bool {
        self.prev_phys & SIDE_FREE != 0
    }

    /// Whether the neighbour after is a free block (of any partition).
    #[inline(always)]
    fn next_is_free(&self) -> bool {
        self.next_phys & SIDE_FREE != 0
    }

    #[inline(always)]
    fn size(&self) -> u64 {
        self.size_tag & !TAG_MASK
    }

    /// The partition id of a free block, or `TAG_LIVE` / `TAG_CHUNK` / `TAG_VACANT`.
    #[inline(always)]
    fn tag(&self) -> u32 {
        (self.start_tag & TAG_MASK) as u32 | (((self.size_tag & TAG_MASK) as u32) << 8)
    }

    #[inline(always)]
    fn set_tag(&mut self, tag: u32) {
        debug_assert!(tag <= TAG_VACANT);
        self.start_tag = self.start() | (tag as u64 & TAG_MASK);
        self.size_tag = self.size() | ((tag as u64 >> 8) & TAG_MASK);
    }

    #[inline(always)]
    fn set_size(&mut self, size: u64) {
        debug_assert_eq!(size & TAG_MASK, 0);
        self.size_tag = size | (self.size_tag & TAG_MASK);
    }

    #[inline(always)]
    fn is_free(&self) -> bool {
        self.tag() < TAG_LIVE
    }

    /// Whether this is a free block of the partition whose tag bytes are `lo`, `hi`.
    #[inline(always)]
    fn is_free_in(&self, lo: u64, hi: u64) -> bool {
        ((self.start_tag ^ lo) | (self.size_tag ^ hi)) & TAG_MASK == 0
    }
}

/// The two tag bytes of partition `part`: `(low, high)`.
#[inline(always)]
fn tag_bytes(part: u32) -> (u64, u64) {
    ((part & 0xff) as u64, (part >> 8) as u64)
}

/// The node `idx` of `nodes`, which must be a node index the list itself stored: a physical
/// or list link of a node (not `NIL`), a list head, the vacant list's head, a chunk-list link,
/// or a handle's node index that was checked against `nodes.len()`.
///
/// The hot paths follow several such links per operation; this accessor leaves out their
/// bounds checks (a debug build still checks).
#[inline(always)]
fn nd(nodes: &[Node], idx: u32) -> &Node {
    debug_assert!((idx as usize) < nodes.len(), "node {idx} out of range");
    // SAFETY: `idx < nodes.len()`. Every index the list stores (links, list heads, the vacant
    // list, the chunk list, the address table) names a slot below the high-water mark `hw`,
    // and `hw <= nodes.len()`: the growable slab has exactly `hw` nodes and never shrinks
    // except in `clear`, which drops every stored index with it; the fixed slab has `N >= hw`.
    // A slot is only ever linked after `add_vacant`/`preallocate` made it exist. A handle's
    // index, which comes from the caller, is checked with `nodes.get` before it is used.
    unsafe { nodes.get_unchecked(idx as usize) }
}

/// [`nd`], mutable (the same precondition).
#[inline(always)]
fn nd_mut(nodes: &mut [Node], idx: u32) -> &mut Node {
    debug_assert!((idx as usize) < nodes.len(), "node {idx} out of range");
    // SAFETY: as in `nd`: `idx` is a stored node index, below `hw <= nodes.len()`.
    unsafe { nodes.get_unchecked_mut(idx as usize) }
}

/// The length of `sl_map`: one row per possible first level of a `u64` bitmap, so that a row
/// index masked to 6 bits needs no bounds check (rows `FL_COUNT..64` stay 0).
const SL_ROWS: usize = 64;

/// The free lists of one partition.
///
/// Invariants: bit `sl` of `sl_map[fl]` is set iff `heads[fl * 32 + sl] != NIL`; bit `fl` of
/// `fl_map` is set iff `sl_map[fl] != 0`; each list holds exactly the free blocks of this
/// partition of that class, doubly linked through `link_prev`/`link_next`; `free_blocks`
/// counts them and `free_bytes` sums their sizes (kept by the callers of `push`/`unlink`).
///
/// The list operations are branch-free where the outcome depends on the data (is the list
/// empty, is the node at an end): a random workload would mispredict those branches about
/// half the time. A link that has no node to go to (the list's end) is written to the node
/// being linked or unlinked itself instead, whose links the caller rewrites afterwards.
#[derive(Clone)]
struct FreeIndex {
    fl_map: u64,
    sl_map: [u32; SL_ROWS],
    heads: [u32; CLASS_COUNT],
    free_bytes: u64,
    free_blocks: u32,
}

impl FreeIndex {
    const EMPTY: FreeIndex = FreeIndex {
        fl_map: 0,
        sl_map: [0; SL_ROWS],
        heads: [NIL; CLASS_COUNT],
        free_bytes: 0,
        free_blocks: 0,
    };

    /// The head of the list of class `c`.
    #[inline(always)]
    fn head(&self, c: usize) -> u32 {
        debug_assert!(c < CLASS_COUNT);
        // SAFETY: `c < CLASS_COUNT`. Every class index is `class_index(size >> 8)` of a block
        // size below 2^64 (at most 50 * 32 + 63), `search_class` of a rounded request below
        // 2^64 (at most 51 * 32 + 32), or `(fl << 5) + sl` of a bit set in the bitmaps, which
        // only ever hold bits of such classes (`fl < FL_COUNT`): all below
        // `CLASS_COUNT = FL_COUNT * 32`.
        unsafe { *self.heads.get_unchecked(c) }
    }

    /// Sets the head of the list of class `c`.
    #[inline(always)]
    fn set_head(&mut self, c: usize, idx: u32) {
        debug_assert!(c < CLASS_COUNT);
        // SAFETY: `c < CLASS_COUNT`, as in `head`.
        unsafe { *self.heads.get_unchecked_mut(c) = idx }
    }

    /// The first non-empty list of class `cs` or above.
    ///
    /// Both candidates (the rest of `cs`'s row, and the first row above it) are computed and
    /// one is selected, so there is no branch on which one holds the block.
    #[inline(always)]
    fn find(&self, cs: usize) -> Option<usize> {
        let (fl, sl) = (cs >> SL_BITS, cs & (SL_COUNT - 1));
        let sl_hits = self.sl_map[fl & (SL_ROWS - 1)] & (u32::MAX << sl);
        // `fl < FL_COUNT <= 63`, so the shift is below 64.
        let fl_hits = self.fl_map & (u64::MAX << (fl + 1));
        let fl_above = fl_hits.trailing_zeros() as usize; // 64 when there is none
        let in_row = (fl << SL_BITS) + sl_hits.trailing_zeros() as usize;
        let above =
            (fl_above << SL_BITS) + self.sl_map[fl_above & (SL_ROWS - 1)].trailing_zeros() as usize;
        let c = select_unpredictable(sl_hits != 0, in_row, above);
        if u64::from(sl_hits) | fl_hits == 0 {
            None
        } else {
            Some(c)
        }
    }

    /// The flat index of the highest non-empty class.
    fn top_class(&self) -> Option<usize> {
        if self.fl_map == 0 {
            return None;
        }
        let fl = 63 - self.fl_map.leading_zeros() as usize;
        let sl = 31 - self.sl_map[fl].leading_zeros() as usize;
        Some(fl * SL_COUNT + sl)
    }

    /// Pushes the free node `idx` on the front of the list of class `c` (its class).
    #[inline(always)]
    fn push(&mut self, nodes: &mut [Node], idx: u32, c: usize) {
        debug_assert!(nd(nodes, idx).is_free());
        debug_assert_eq!(class_index(nd(nodes, idx).size() >> GRANULE_SHIFT), c);
        let head = self.head(c);
        // The old head's back link; into `idx` itself (rewritten just below) when empty.
        let back = select_unpredictable(head != NIL, head, idx);
        nd_mut(nodes, back).link_prev = idx;
        let node = nd_mut(nodes, idx);
        node.link_prev = NIL;
        node.link_next = head;
        self.set_head(c, idx);
        self.sl_map[(c >> SL_BITS) & (SL_ROWS - 1)] |= 1 << (c & (SL_COUNT - 1));
        self.fl_map |= 1 << (c >> SL_BITS);
        self.free_blocks += 1;
    }

    /// Takes the free node `idx` out of the list of class `c` (its class). Its own links are
    /// left scribbled: the caller pushes it again, makes it live, or releases it.
    #[inline(always)]
    fn unlink(&mut self, nodes: &mut [Node], idx: u32, c: usize) {
        let node = nd(nodes, idx);
        let (prev, next) = (node.link_prev, node.link_next);
        debug_assert!(node.is_free());
        debug_assert!(prev != NIL || self.head(c) == idx);
        let after = select_unpredictable(next != NIL, next, idx);
        nd_mut(nodes, after).link_prev = prev;
        let before = select_unpredictable(prev != NIL, prev, idx);
        nd_mut(nodes, before).link_next = next;
        let head = select_unpredictable(prev == NIL, next, self.head(c));
        self.set_head(c, head);
        self.clear_if_empty(c, head);
        self.free_blocks -= 1;
    }

    /// Takes the head `idx` of the list of class `c` off the list (its links are left as in
    /// `unlink`).
    #[inline(always)]
    fn pop_head(&mut self, nodes: &mut [Node], idx: u32, c: usize) {
        debug_assert_eq!(self.head(c), idx);
        let next = nd(nodes, idx).link_next;
        self.set_head(c, next);
        let after = select_unpredictable(next != NIL, next, idx);
        nd_mut(nodes, after).link_prev = NIL;
        self.clear_if_empty(c, next);
        self.free_blocks -= 1;
    }

    /// Clears the bits of class `c` if its new head `head` is `NIL`, with no branch.
    #[inline(always)]
    fn clear_if_empty(&mut self, c: usize, head: u32) {
        let fl = c >> SL_BITS;
        let row = &mut self.sl_map[fl & (SL_ROWS - 1)];
        *row &= !(u32::from(head == NIL) << (c & (SL_COUNT - 1)));
        self.fl_map &= !(u64::from(*row == 0) << fl);
    }

    /// Free node `idx`, of class `old`, has just been resized into class `new`: moves it to
    /// the front of its new list. When the class did not change this takes it out of its list
    /// and puts it back at the front: no test, so no branch on the sizes (a random workload
    /// mispredicts that one about as often as not), and the block most recently touched is
    /// the first one its class hands out.
    #[inline(always)]
    fn reclass(&mut self, nodes: &mut [Node], idx: u32, old: usize, new: usize) {
        self.unlink(nodes, idx, old);
        self.push(nodes, idx, new);
    }
}

mod sealed {
    /// Where an [`AddressIndex`](super::AddressIndex) keeps its buckets: an array of `N` for a
    /// fixed list, nothing at all when there is no index.
    pub trait Buckets {
        /// No live block in any bucket.
        const EMPTY: Self;
        /// The buckets (empty when there is no index).
        fn as_slice(&self) -> &[u32];
        /// The buckets, mutable.
        fn as_mut_slice(&mut self) -> &mut [u32];
    }

    impl<const N: usize> Buckets for [u32; N] {
        const EMPTY: Self = [super::NIL; N];
        #[inline(always)]
        fn as_slice(&self) -> &[u32] {
            self
        }
        #[inline(always)]
        fn as_mut_slice(&mut self) -> &mut [u32] {
            self
        }
    }

    impl Buckets for () {
        const EMPTY: Self = ();
        #[inline(always)]
        fn as_slice(&self) -> &[u32] {
            &[]
        }
        #[inline(always)]
        fn as_mut_slice(&mut self) -> &mut [u32] {
            &mut []
        }
    }

    pub trait Sealed {}
    impl Sealed for super::AddressTable {}
    impl Sealed for super::HandlesOnly {}
}

/// How a [`CoalescingList`] finds a live block when it is freed: through a hash table of the
/// live blocks' addresses ([`AddressTable`], the default: `deallocate(addr, size)`, what a
/// memory resource needs), or not at all ([`HandlesOnly`]: blocks are freed by the [`Block`]
/// handle [`allocate_block`](CoalescingList::allocate_block) returned, and the list keeps no
/// table). Sealed: these two are the only implementations.
///
/// ```
/// use strata_core::algo::{AddressIndex, AddressTable, HandlesOnly};
/// assert!(AddressTable::INDEXED && !HandlesOnly::INDEXED);
/// ```
pub trait AddressIndex: sealed::Sealed {
    /// Whether the list keeps a table of the live blocks' addresses.
    const INDEXED: bool;
    #[doc(hidden)]
    type Buckets<const N: usize>: sealed::Buckets;
}

/// The default [`AddressIndex`]: a hash table from a live block's start to its node (4 bytes
/// a node), so blocks can be freed by address, as RMM's `deallocate(ptr, size)` does.
///
/// ```
/// use strata_core::{Range, algo::{AddressTable, CoalescingList}};
/// let mut list: CoalescingList<0, 0, AddressTable> = CoalescingList::new();
/// list.add_chunk(Range::new(0, 4096))?;
/// let r = list.allocate(1000, 256)?;
/// list.deallocate(r.start, 1000)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressTable;

impl AddressIndex for AddressTable {
    const INDEXED: bool = true;
    type Buckets<const N: usize> = [u32; N];
}

/// An [`AddressIndex`] that keeps nothing: blocks are freed only by their [`Block`] handle
/// ([`CoalescingList::deallocate_block`]), in O(1) with no lookup, as offset-allocator and
/// xalloc free by handle. The list has no `deallocate(addr, size)`.
///
/// ```
/// use strata_core::{Range, algo::{CoalescingList, HandlesOnly}};
/// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
/// list.add_chunk(Range::new(0, 4096))?;
/// let b = list.allocate_block(1000, 256)?;
/// assert_eq!(b.range(), Range::new(3072, 1024));
/// list.deallocate_block(b)?;
/// assert_eq!(list.free_blocks(), 1);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlesOnly;

impl AddressIndex for HandlesOnly {
    const INDEXED: bool = false;
    type Buckets<const N: usize> = ();
}

/// A live block handed out by [`CoalescingList::allocate_block`] (or a [`Pool`]'s): its range
/// and its [`BlockHandle`], which frees it in O(1) with no address lookup
/// ([`CoalescingList::deallocate_block`]).
///
/// [`Pool`]: super::Pool
///
/// ```
/// use strata_core::{Range, algo::{CoalescingList, HandlesOnly}};
/// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
/// list.add_chunk(Range::new(0, 4096))?;
/// let b = list.allocate_block(256, 256)?;
/// assert_eq!((b.start(), b.range().len), (3840, 256));
/// list.deallocate_block(b.handle())?; // or `deallocate_block(b)`
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    start: u64,
    len: u64,
    handle: BlockHandle,
}

impl Block {
    /// The range handed out: its start is aligned as asked, its length the size asked for
    /// rounded up to 256.
    ///
    /// ```
    /// use strata_core::{Range, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert_eq!(list.allocate_block(1, 256)?.range(), Range::new(3840, 256));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub const fn range(&self) -> Range {
        Range::new(self.start, self.len)
    }

    /// The start of the range handed out.
    ///
    /// ```
    /// use strata_core::{Range, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert_eq!(list.allocate_block(1, 4096)?.start() % 4096, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// What frees the block: 8 bytes to keep until then.
    ///
    /// ```
    /// use strata_core::{Range, algo::{BlockHandle, CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let h: BlockHandle = list.allocate_block(1, 256)?.handle();
    /// list.deallocate_block(h)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub const fn handle(&self) -> BlockHandle {
        self.handle
    }
}

impl From<Block> for BlockHandle {
    #[inline(always)]
    fn from(block: Block) -> BlockHandle {
        block.handle
    }
}

/// What frees a live block in O(1) with no lookup, as offset-allocator's allocation and
/// xalloc's region free theirs: the block's metadata node and the generation the node had
/// when the block was handed out. 8 bytes, and `Option<BlockHandle>` too.
///
/// The generation makes a stale handle (its block freed already, the node perhaps holding
/// another block since) fail with [`Error::DoubleFree`] instead of freeing the wrong block.
/// Generations come from a 31-bit counter per list (odd numbers of a wrapping `u32`), so a
/// stale handle could only be taken for a live block if its node had been reused exactly a
/// multiple of 2^31 allocations later.
///
/// ```
/// use strata_core::{Error, Range, algo::{CoalescingList, HandlesOnly}};
/// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
/// list.add_chunk(Range::new(0, 4096))?;
/// let a = list.allocate_block(256, 256)?;
/// list.deallocate_block(a)?;
/// let b = list.allocate_block(256, 256)?; // the same range and node, a new generation
/// assert_eq!(b.range(), a.range());
/// assert_eq!(list.deallocate_block(a), Err(Error::DoubleFree { addr: 3840 }));
/// list.deallocate_block(b)?;
/// assert_eq!(size_of::<Option<strata_core::algo::BlockHandle>>(), 8);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHandle {
    node: u32,
    generation: NonZeroU32,
}

/// The node slab, the vacant-slot list, and (with [`AddressTable`]) the address → live-node
/// hash table.
///
/// Invariants: slots `0..hw` are initialised (and, growable, exist); every slot below `hw` is a
/// block, a chunk record, or vacant and on the vacant list; `in_use` counts the non-vacant
/// ones; `live` counts the live blocks. With an index: every live block is in exactly one hash
/// chain (through `link_next`), the one of `bucket_in(start)`; with a growable table,
/// `live <= buckets.len()` (load factor at most 1).
struct Blocks<const N: usize, I: AddressIndex> {
    fixed: [Node; N],
    fixed_buckets: I::Buckets<N>,
    #[cfg(feature = "alloc")]
    nodes: Vec<Node>,
    #[cfg(feature = "alloc")]
    buckets: Vec<u32>,
    hw: u32,
    vacant: u32,
    in_use: u32,
    live: u32,
}

/// The multiplier of the address hash (2^64 / golden ratio).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

impl<const N: usize, I: AddressIndex> Blocks<N, I> {
    const fn new() -> Self {
        const { assert!(N <= MAX_NODES, "CoalescingList: N must be below 2^31") };
        Self {
            fixed: [Node::VACANT; N],
            fixed_buckets: <I::Buckets<N> as sealed::Buckets>::EMPTY,
            #[cfg(feature = "alloc")]
            nodes: Vec::new(),
            #[cfg(feature = "alloc")]
            buckets: Vec::new(),
            hw: 0,
            vacant: NIL,
            in_use: 0,
            live: 0,
        }
    }

    #[inline(always)]
    fn nodes(&self) -> &[Node] {
        #[cfg(feature = "alloc")]
        if N == 0 {
            return &self.nodes;
        }
        &self.fixed
    }

    #[inline(always)]
    fn nodes_mut(&mut self) -> &mut [Node] {
        #[cfg(feature = "alloc")]
        if N == 0 {
            return &mut self.nodes;
        }
        &mut self.fixed
    }

    #[inline(always)]
    fn buckets(&self) -> &[u32] {
        #[cfg(feature = "alloc")]
        if N == 0 {
            return &self.buckets;
        }
        sealed::Buckets::as_slice(&self.fixed_buckets)
    }

    /// The nodes and the buckets, both mutable.
    #[inline(always)]
    fn nodes_and_buckets(&mut self) -> (&mut [Node], &mut [u32]) {
        #[cfg(feature = "alloc")]
        if N == 0 {
            return (&mut self.nodes, &mut self.buckets);
        }
        (
            &mut self.fixed,
            sealed::Buckets::as_mut_slice(&mut self.fixed_buckets),
        )
    }

    #[inline(always)]
    fn node(&self, idx: u32) -> &Node {
        nd(self.nodes(), idx)
    }

    #[inline(always)]
    fn node_mut(&mut self, idx: u32) -> &mut Node {
        nd_mut(self.nodes_mut(), idx)
    }

    /// The most nodes this store can hold, `None` when growable.
    fn capacity(&self) -> Option<usize> {
        if N > 0 || cfg!(not(feature = "alloc")) {
            Some(N)
        } else {
            None
        }
    }

    /// The error for a full store.
    #[cold]
    fn exhausted(&self) -> Error {
        Error::MetadataExhausted {
            capacity: if N > 0 { N } else { self.hw as usize },
        }
    }

    /// Makes sure that `new_nodes` slots are vacant and that the table has room for
    /// `new_live` more live blocks, so the following `alloc_node` and `hash_insert` calls
    /// cannot fail. Changes nothing visible.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when a fixed store is full (or the heap refuses).
    #[inline(always)]
    fn reserve(&mut self, new_nodes: u32, new_live: u32) -> Result<(), Error> {
        while self.hw - self.in_use < new_nodes {
            self.add_vacant()?;
        }
        if I::INDEXED && N == 0 && self.live as usize + new_live as usize > self.buckets().len() {
            self.grow_buckets(self.live as usize + new_live as usize)?;
        }
        Ok(())
    }

    /// Makes sure the address table (with one, growable) has room for one more live block.
    #[inline(always)]
    fn reserve_live(&mut self) -> Result<(), Error> {
        if I::INDEXED && N == 0 && self.live as usize >= self.buckets().len() {
            self.grow_buckets(self.live as usize + 1)?;
        }
        Ok(())
    }

    /// Makes one more slot vacant: the next never-used slot of a fixed store, or a new one
    /// at the end of a growable store (whose capacity grows by doubling).
    #[cold]
    #[inline(never)]
    fn add_vacant(&mut self) -> Result<(), Error> {
        let idx = self.hw;
        #[cfg(feature = "alloc")]
        if N == 0 {
            if idx as usize >= MAX_NODES || self.nodes.try_reserve(1).is_err() {
                return Err(self.exhausted());
            }
            self.nodes.push(Node {
                link_next: self.vacant,
                ..Node::VACANT
            });
            self.vacant = idx;
            self.hw += 1;
            return Ok(());
        }
        if idx as usize >= N {
            return Err(self.exhausted());
        }
        self.fixed[idx as usize] = Node {
            link_next: self.vacant,
            ..Node::VACANT
        };
        self.vacant = idx;
        self.hw += 1;
        Ok(())
    }

    #[cfg(feature = "alloc")]
    #[cold]
    fn grow_buckets(&mut self, want: usize) -> Result<(), Error> {
        let n = want.max(64).next_power_of_two();
        let mut fresh: Vec<u32> = Vec::new();
        fresh
            .try_reserve_exact(n)
            .map_err(|_| Error::MetadataExhausted {
                capacity: self.nodes.len(),
            })?;
        fresh.resize(n, NIL);
        let old = core::mem::replace(&mut self.buckets, fresh);
        for mut cur in old {
            while cur != NIL {
                let next = self.nodes[cur as usize].link_next;
                let b = Self::bucket_in(self.nodes[cur as usize].start(), n);
                self.nodes[cur as usize].link_next = self.buckets[b];
                self.buckets[b] = cur;
                cur = next;
            }
        }
        Ok(())
    }

    #[cfg(not(feature = "alloc"))]
    #[cold]
    fn grow_buckets(&mut self, _want: usize) -> Result<(), Error> {
        Err(Error::MetadataExhausted { capacity: N })
    }

    /// Takes a vacant slot for `node`. A slot must have been reserved.
    #[inline(always)]
    fn alloc_node(&mut self, node: Node) -> u32 {
        let idx = self.vacant;
        debug_assert_ne!(idx, NIL, "no slot reserved");
        self.in_use += 1;
        let slot = self.node_mut(idx);
        debug_assert_eq!(slot.tag(), TAG_VACANT);
        let next = slot.link_next;
        *slot = node;
        self.vacant = next;
        idx
    }

    /// Puts slot `idx` back on the vacant list. The slot keeps the start of the block it
    /// held (and `link_prev`), so that a stale handle naming it reports that address.
    #[inline(always)]
    fn release_node(&mut self, idx: u32) {
        let vacant = self.vacant;
        let slot = self.node_mut(idx);
        debug_assert_ne!(slot.tag(), TAG_VACANT);
        slot.start_tag &= !TAG_MASK;
        slot.size_tag = Node::VACANT.size_tag;
        slot.link_next = vacant;
        self.vacant = idx;
        self.in_use -= 1;
    }

    /// The bucket of `addr` in a table of `buckets` buckets: the top bits of a multiplicative
    /// hash (a power-of-two table: always when growable), else the hash scaled to the range.
    #[inline(always)]
    fn bucket_in(addr: u64, buckets: usize) -> usize {
        let h = (addr >> GRANULE_SHIFT).wrapping_mul(HASH_MUL);
        if N == 0 || N.is_power_of_two() {
            debug_assert!(buckets.is_power_of_two());
            // `>> 1` first, so that a one-bucket table shifts by 63, not 64.
            ((h >> 1) >> (63 - buckets.trailing_zeros())) as usize
        } else {
            ((h as u128 * buckets as u128) >> 64) as usize
        }
    }

    /// Makes `n` vacant slots and (with an index) a table for `n` live blocks now (growable),
    /// touching the memory, so that later operations neither grow nor rehash until `n` nodes
    /// are in use.
    #[cfg(feature = "alloc")]
    fn preallocate(&mut self, n: usize) -> Result<(), Error> {
        debug_assert!(N == 0 && self.hw == 0);
        let n = n.min(MAX_NODES);
        let exhausted = Error::MetadataExhausted { capacity: 0 };
        self.nodes.try_reserve_exact(n).map_err(|_| exhausted)?;
        self.nodes.extend((0..n as u32).map(|i| Node {
            link_next: if i + 1 < n as u32 { i + 1 } else { NIL },
            ..Node::VACANT
        }));
        self.hw = n as u32;
        self.vacant = if n > 0 { 0 } else { NIL };
        if I::INDEXED {
            self.grow_buckets(n)?;
        }
        Ok(())
    }

    /// Adds live node `idx` to the table (with an index). Room must have been reserved.
    #[inline(always)]
    fn hash_insert(&mut self, idx: u32) {
        if !I::INDEXED {
            return;
        }
        let (nodes, buckets) = self.nodes_and_buckets();
        let b = Self::bucket_in(nd(nodes, idx).start(), buckets.len());
        nd_mut(nodes, idx).link_next = buckets[b];
        buckets[b] = idx;
    }

    /// The live node starting at `addr`, its predecessor in its hash chain (or `NIL`), and
    /// its bucket. Always `None` without an index.
    #[inline(always)]
    fn hash_find(&self, addr: u64) -> Option<(u32, u32, usize)> {
        let buckets = self.buckets();
        if buckets.is_empty() {
            return None;
        }
        let nodes = self.nodes();
        let b = Self::bucket_in(addr, buckets.len());
        let mut prev = NIL;
        let mut cur = buckets[b];
        while cur != NIL {
            let n = nd(nodes, cur);
            // A live node's `start_tag` is its start (the live tag's low byte is 0).
            if n.start_tag == addr {
                return Some((cur, prev, b));
            }
            prev = cur;
            cur = n.link_next;
        }
        None
    }

    /// Takes live node `idx`, whose chain predecessor is `prev`, out of bucket `b`.
    #[inline(always)]
    fn hash_remove(&mut self, idx: u32, prev: u32, b: usize) {
        let (nodes, buckets) = self.nodes_and_buckets();
        let next = nd(nodes, idx).link_next;
        nd_mut(nodes, idx).link_next = NIL;
        if prev != NIL {
            nd_mut(nodes, prev).link_next = next;
        } else {
            buckets[b] = next;
        }
    }

    fn clear(&mut self) {
        #[cfg(feature = "alloc")]
        {
            self.nodes.clear();
            self.buckets.iter_mut().for_each(|b| *b = NIL);
        }
        self.fixed.iter_mut().for_each(|n| *n = Node::VACANT);
        sealed::Buckets::as_mut_slice(&mut self.fixed_buckets)
            .iter_mut()
            .for_each(|b| *b = NIL);
        self.hw = 0;
        self.vacant = NIL;
        self.in_use = 0;
        self.live = 0;
    }

    /// Heap bytes held (slots and buckets, including unused capacity).
    fn heap_bytes(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.nodes.capacity() * size_of::<Node>() + self.buckets.capacity() * size_of::<u32>()
        }
        #[cfg(not(feature = "alloc"))]
        0
    }
}
/// The partitions' free indexes.
///
/// Invariant: fixed (`P > 0`): partitions `0..count` exist, `1 <= count <= P`. Growable
/// (`P == 0`): partitions `0..max(1, more.len())` exist; partition 0 is empty while `more` is
/// empty (it is created by the first call that frees something into it).
struct Parts<const P: usize> {
    fixed: [FreeIndex; P],
    count: usize,
    #[cfg(feature = "alloc")]
    more: Vec<FreeIndex>,
}

impl<const P: usize> Parts<P> {
    const fn new() -> Self {
        const {
            assert!(
                P <= MAX_PARTITIONS,
                "CoalescingList: at most 16384 partitions"
            )
        };
        Self {
            fixed: [FreeIndex::EMPTY; P],
            count: 1,
            #[cfg(feature = "alloc")]
            more: Vec::new(),
        }
    }

    /// How many partitions exist (at least 1).
    #[inline(always)]
    fn count(&self) -> usize {
        #[cfg(feature = "alloc")]
        if P == 0 {
            return self.more.len().max(1);
        }
        if P == 0 { 1 } else { self.count }
    }

    /// The free index of `p`; `None` for a partition that does not exist, or for the growable
    /// partition 0 before anything was freed into it (it is empty).
    #[inline(always)]
    fn get(&self, p: PartitionId) -> Option<&FreeIndex> {
        #[cfg(feature = "alloc")]
        if P == 0 {
            return self.more.get(p as usize);
        }
        if (p as usize) < self.count {
            self.fixed.get(p as usize)
        } else {
            None
        }
    }

    /// The free index of `p`, which must exist and be materialised (an internal invariant:
    /// every caller checked it; indexing out of range would be a bug in this module).
    #[inline(always)]
    fn at_mut(&mut self, p: PartitionId) -> &mut FreeIndex {
        debug_assert!((p as usize) < self.count());
        #[cfg(feature = "alloc")]
        if P == 0 {
            return &mut self.more[p as usize];
        }
        &mut self.fixed[p as usize]
    }

    /// Makes sure that the free index of existing partition `p` is materialised, so `at_mut(p)`
    /// succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStream`] when `p` does not exist; [`Error::MetadataExhausted`] when the
    /// heap refuses.
    #[inline(always)]
    fn materialise(&mut self, p: PartitionId) -> Result<(), Error> {
        if (p as usize) >= self.count() {
            return Err(Error::UnknownStream { stream: p as u64 });
        }
        #[cfg(feature = "alloc")]
        if P == 0 && self.more.is_empty() {
            self.more
                .try_reserve(1)
                .map_err(|_| Error::MetadataExhausted { capacity: 0 })?;
            self.more.push(FreeIndex::EMPTY);
        }
        Ok(())
    }

    fn add(&mut self) -> Result<PartitionId, Error> {
        #[cfg(feature = "alloc")]
        if P == 0 {
            let want = self.more.len().max(1) + 1;
            if want > MAX_PARTITIONS {
                return Err(Error::MetadataExhausted {
                    capacity: MAX_PARTITIONS,
                });
            }
            self.more.try_reserve(want - self.more.len()).map_err(|_| {
                Error::MetadataExhausted {
                    capacity: self.more.len(),
                }
            })?;
            while self.more.len() < want {
                self.more.push(FreeIndex::EMPTY);
            }
            return Ok((want - 1) as PartitionId);
        }
        if self.count >= P {
            return Err(Error::MetadataExhausted { capacity: P });
        }
        self.count += 1;
        Ok((self.count - 1) as PartitionId)
    }

    fn clear(&mut self) {
        for p in self.fixed.iter_mut() {
            *p = FreeIndex::EMPTY;
        }
        self.count = 1;
        #[cfg(feature = "alloc")]
        self.more.clear();
    }

    fn heap_bytes(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.more.capacity() * size_of::<FreeIndex>()
        }
        #[cfg(not(feature = "alloc"))]
        0
    }
}

/// How a [`CoalescingList`] picks the free block an allocation is carved from.
///
/// ```
/// use strata_core::{Range, algo::{CoalescingList, Fit}};
/// // Two free blocks: one of 257 280 bytes, and the rest of the chunk (about 3.7 MiB).
/// let two_free_blocks = |fit| -> Result<_, strata_core::Error> {
///     let mut list = CoalescingList::new().with_fit(fit);
///     list.add_chunk(Range::new(0, 4 << 20))?;
///     let a = list.allocate(257_280, 256)?;
///     list.allocate(256, 256)?; // keeps `a` from merging with the rest when freed
///     list.deallocate(a.start, a.len)?;
///     Ok((list, a))
/// };
/// // Good fit for 256 000 bytes: 257 280 lies in the request's own size class, where not
/// // every block holds the request, so the big block's class is taken (its end).
/// let (mut good, a) = two_free_blocks(Fit::Good)?;
/// assert_ne!(good.allocate(256_000, 256)?.start, a.start);
/// // Best fit: the smallest block that holds it, carved from its start.
/// let (mut best, a) = two_free_blocks(Fit::Best)?;
/// assert_eq!(best.allocate(256_000, 256)?.start, a.start);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Fit {
    /// TLSF's good fit, O(1): the head of the smallest non-empty size class whose every
    /// block holds the request, carved from its end. The default: the fastest, and within a
    /// few per cent of best fit in the memory a workload needs.
    #[default]
    Good,
    /// Best fit, bounded: among the first [`BEST_FIT_CANDIDATES`] blocks of the request's own
    /// size class that hold it, else of the smallest class above with a block, the smallest
    /// block (the lowest address among equals), carved from its start: address-ordered best
    /// fit, the policy that fragments least on most workloads, at the cost of reading up to
    /// twice [`BEST_FIT_CANDIDATES`] nodes per allocation. For a pool that must fit in as
    /// little memory as it can.
    Best,
}

/// How many blocks of one size class [`Fit::Best`] compares at most: the bound that keeps it
/// O(1).
pub const BEST_FIT_CANDIDATES: usize = 16;

/// A validated request: its footprint and the free-block size that guarantees a fit.
#[derive(Clone, Copy)]
struct Request {
    /// The footprint: the size rounded up to the granule.
    rsize: u64,
    /// The alignment, at least the granule.
    align: u64,
    /// `rsize` plus the worst-case padding for `align`.
    need: u64,
}

impl Request {
    #[inline(always)]
    fn new(size: u64, align: u64) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        check_alignment(align)?;
        let align = align.max(DEFAULT_ALIGNMENT);
        let overflow = Error::SizeOverflow { requested: size };
        let rsize = crate::align_up(size, DEFAULT_ALIGNMENT).ok_or(overflow)?;
        let need = rsize
            .checked_add(align - DEFAULT_ALIGNMENT)
            .ok_or(overflow)?;
        Ok(Self { rsize, align, need })
    }

    /// The padding needed before a block starting at `start` to align it.
    #[inline(always)]
    fn front_pad(&self, start: u64) -> u64 {
        (self.align - (start & (self.align - 1))) & (self.align - 1)
    }

    /// Whether a free block fits this request, alignment included.
    #[inline(always)]
    fn fits(&self, node: &Node) -> bool {
        let pad = self.front_pad(node.start());
        pad <= node.size() && node.size() - pad >= self.rsize
    }
}

/// A TLSF-style two-level segregated-fit free list with immediate coalescing, over abstract
/// address ranges; its free blocks are split into partitions.
///
/// `N` is the number of metadata nodes kept inline (0: growable on the heap), `P` the number
/// of partitions kept inline (0: growable), `I` how a live block is found when it is freed
/// ([`AddressTable`], the default: by address; [`HandlesOnly`]: by the [`Block`] handle only).
///
/// # How it works
///
/// Memory arrives in *chunks* ([`CoalescingList::add_chunk`]); each chunk is a separate region
/// that is carved into *blocks*. Every block, live or free, is a metadata node that knows its
/// physical neighbours inside its chunk, so a freed block merges with free neighbours in O(1)
/// and never across a chunk boundary (each chunk's record node closes its blocks into a ring
/// and is never free, so it stops every merge at the chunk's ends).
///
/// Free blocks sit in segregated lists indexed by a two-level size class (TLSF): the first level
/// is the power of two of the size (in 256-byte granules), the second splits each power of two
/// into 32 equal steps. A bitmap per level says which lists are non-empty, so the lookup of a
/// list that is guaranteed to fit is two `trailing_zeros` — O(1), good fit (at most 1/32 of the
/// size wasted by the rounding of the search; nothing is wasted in the block, which is split).
/// The end of the block found is handed out: the free rest keeps its node and goes to the front
/// of the list of its size class. When that search finds nothing, the blocks of the
/// classes just below are tried one by one before out-of-memory is reported, so a free block
/// that fits is never missed.
///
/// # Freeing by address or by handle
///
/// [`allocate`](Self::allocate) returns a [`Range`], and [`deallocate`](Self::deallocate)
/// finds the block again by its address, through a hash table chained through the nodes
/// themselves ([`AddressTable`]: what a memory resource, freed by pointer, needs).
/// [`allocate_block`](Self::allocate_block) returns a [`Block`], the range plus its node and a
/// generation, and [`deallocate_block`](Self::deallocate_block) goes straight to the node with
/// no lookup, checking in O(1) that the handle is not stale. A list built with [`HandlesOnly`]
/// keeps no address table at all, so it pays nothing for one.
///
/// # Partitions
///
/// Each free block belongs to a partition ([`PartitionId`], 0 by default): each partition has
/// its own size-class lists and bitmaps. [`CoalescingList::allocate_in`] takes only from one
/// partition; [`CoalescingList::deallocate_in`] frees into one, merging only with neighbours free
/// in that same partition. The stream-ordered pool keeps one partition per stream.
///
/// # Metadata
///
/// `CoalescingList<N, P>` keeps `N` block nodes and `P` partitions inline (no heap; usable in a
/// `static`, built by the `const fn` [`CoalescingList::with_fixed_capacity`]). `N == 0` means a
/// growable node store and `P == 0` growable partitions, both on the heap (feature `alloc`):
/// that is the default, `CoalescingList::new()`. A node is 32 bytes; the address table adds one
/// 4-byte bucket per node (fixed) or per live block, rounded up to a power of two (growable);
/// a [`HandlesOnly`] list has no table.
///
/// ```
/// use strata_core::{Range, Error, algo::CoalescingList};
///
/// let mut list = CoalescingList::new();
/// list.add_chunk(Range::new(0x10000, 4096))?;
/// let a = list.allocate(1000, 256)?; // rounded up to 1024
/// let b = list.allocate(1024, 256)?;
/// assert_eq!((a.len, b.len), (1024, 1024));
/// list.deallocate(a.start, 1000)?;
/// assert_eq!(list.deallocate(a.start, 1000), Err(Error::DoubleFree { addr: a.start }));
/// list.deallocate(b.start, 1024)?;
/// assert_eq!(list.free_blocks(), 1); // everything merged back into one block
/// list.check_invariants().unwrap();
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants and a heap-free list
///
/// Every block starts on a 256-byte boundary and its size is a multiple of 256; requests are
/// rounded up to that granule. A block needs one node, a chunk one more.
///
/// Invariants (checked by [`check_invariants`](Self::check_invariants)): the blocks of a chunk
/// tile it exactly, in address order through their physical links; chunks do not overlap; no
/// two physically adjacent blocks are free in the same partition; `live_bytes + free_bytes ==
/// chunk_bytes`; every free block is in the list of its partition and size class, and the
/// bitmaps say exactly which lists are non-empty; every live block is in the address table
/// (with one).
///
/// ```
/// use strata_core::{Range, algo::CoalescingList};
///
/// // No heap: 64 nodes and 2 partitions inline, built at compile time.
/// static EMPTY: CoalescingList<64, 2> = CoalescingList::with_fixed_capacity();
/// let mut list = CoalescingList::<64, 2>::with_fixed_capacity();
/// list.add_chunk(Range::new(1 << 20, 1 << 16))?;
/// let r = list.allocate(3000, 4096)?;
/// assert_eq!(r.start % 4096, 0);
/// assert_eq!(r.len, 3072);
/// assert_eq!(list.live_bytes(), 3072);
/// # let _ = &EMPTY;
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct CoalescingList<const N: usize = 0, const P: usize = 0, I: AddressIndex = AddressTable> {
    blocks: Blocks<N, I>,
    parts: Parts<P>,
    /// Head of the chunk list (chunk-record nodes, through `link_prev`/`link_next`).
    chunk_head: u32,
    chunk_count: u32,
    chunk_bytes: u64,
    /// Free bytes over all partitions.
    free_bytes: u64,
    /// The generation the next live block gets (odd, so never 0; wraps).
    next_generation: u32,
    /// How a free block is picked.
    fit: Fit,
}

#[cfg(feature = "alloc")]
impl CoalescingList<0, 0> {
    /// An empty list whose nodes and partitions grow on the heap (feature `alloc`), with an
    /// address table. ([`growable`](Self::growable) makes one with any [`AddressIndex`].)
    ///
    /// ```
    /// let list = strata_core::algo::CoalescingList::new();
    /// assert_eq!(list.chunk_bytes(), 0);
    /// assert_eq!(list.node_capacity(), None);
    /// ```
    pub const fn new() -> Self {
        Self::with_fixed_capacity()
    }

    /// An empty growable list with `nodes` node slots and a table for as many live blocks
    /// made (and touched) now, so that it neither grows nor rehashes until `nodes` nodes are in
    /// use (a block takes one node, a chunk one more). ([`preallocated`](Self::preallocated)
    /// makes one with any [`AddressIndex`].)
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when the heap refuses.
    ///
    /// ```
    /// use strata_core::algo::CoalescingList;
    /// let list = CoalescingList::with_capacity(1 << 16)?;
    /// assert!(list.metadata_bytes() >= (1 << 16) * CoalescingList::<0, 0>::NODE_BYTES);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_capacity(nodes: usize) -> Result<Self, Error> {
        Self::preallocated(nodes)
    }
}

#[cfg(feature = "alloc")]
impl<I: AddressIndex> CoalescingList<0, 0, I> {
    /// An empty list whose nodes and partitions grow on the heap (feature `alloc`), with the
    /// address index `I` (e.g. `CoalescingList::<0, 0, HandlesOnly>::growable()`).
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, HandlesOnly};
    /// let list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// assert_eq!(list.node_capacity(), None);
    /// assert_eq!(CoalescingList::<0, 0, HandlesOnly>::NODE_BYTES, 32);
    /// ```
    pub const fn growable() -> Self {
        Self::with_fixed_capacity()
    }

    /// An empty growable list with the address index `I` and `nodes` node slots (and, with an
    /// address table, a table for as many live blocks) made and touched now, as
    /// [`with_capacity`](CoalescingList::with_capacity).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when the heap refuses.
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, HandlesOnly};
    /// let list = CoalescingList::<0, 0, HandlesOnly>::preallocated(1 << 10)?;
    /// assert!(list.metadata_bytes() >= (1 << 10) * 32);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn preallocated(nodes: usize) -> Result<Self, Error> {
        let mut list = Self::growable();
        list.blocks.preallocate(nodes)?;
        Ok(list)
    }
}

#[cfg(feature = "alloc")]
impl Default for CoalescingList<0, 0> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const P: usize, I: AddressIndex> fmt::Debug for CoalescingList<N, P, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoalescingList")
            .field("chunks", &self.chunk_count)
            .field("chunk_bytes", &self.chunk_bytes)
            .field("live_blocks", &self.live_blocks())
            .field("free_blocks", &self.free_blocks())
            .field("free_bytes", &self.free_bytes)
            .field("partitions", &self.partition_count())
            .field("address_table", &I::INDEXED)
            .finish()
    }
}

impl<const N: usize, const P: usize, I: AddressIndex> CoalescingList<N, P, I> {
    /// An empty list with `N` nodes and `P` partitions inline (`N == 0` or `P == 0`: that part
    /// grows on the heap, feature `alloc`). A `const fn`, so the list can live in a `static`.
    ///
    /// The struct holds `N * 36` bytes of nodes and buckets (`N * 32` with [`HandlesOnly`])
    /// and `P * 6.9` KiB of free-list heads inline: put a large one in a `static` or a `Box`,
    /// not on a small stack.
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::<3, 1>::with_fixed_capacity();
    /// assert_eq!(list.node_capacity(), Some(3));
    /// // A chunk takes 2 nodes (its record and its block), a split one more.
    /// list.add_chunk(Range::new(0, 1024))?;
    /// let a = list.allocate(256, 256)?;
    /// assert_eq!(list.allocate(256, 256), Err(Error::MetadataExhausted { capacity: 3 }));
    /// list.deallocate(a.start, a.len)?;
    /// # Ok::<(), Error>(())
    /// ```
    pub const fn with_fixed_capacity() -> Self {
        Self {
            blocks: Blocks::new(),
            parts: Parts::new(),
            chunk_head: NIL,
            chunk_count: 0,
            chunk_bytes: 0,
            free_bytes: 0,
            next_generation: 1,
            fit: Fit::Good,
        }
    }

    /// The list with its free blocks picked by `fit` ([`Fit::Good`] unless set).
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, Fit};
    /// let list = CoalescingList::new().with_fit(Fit::Best);
    /// assert_eq!(list.fit(), Fit::Best);
    /// ```
    pub const fn with_fit(mut self, fit: Fit) -> Self {
        self.fit = fit;
        self
    }

    /// Picks free blocks by `fit` from now on (blocks already placed stay where they are).
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, Fit};
    /// let mut list = CoalescingList::new();
    /// list.set_fit(Fit::Best);
    /// assert_eq!(list.fit(), Fit::Best);
    /// ```
    pub fn set_fit(&mut self, fit: Fit) {
        self.fit = fit;
    }

    /// How free blocks are picked.
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, Fit};
    /// assert_eq!(CoalescingList::new().fit(), Fit::Good);
    /// ```
    pub const fn fit(&self) -> Fit {
        self.fit
    }

    // ----------------------------------------------------------------------------------------
    // Chunks
    // ----------------------------------------------------------------------------------------

    /// Adds `range` as a new chunk, all free, in partition 0.
    ///
    /// # Errors
    ///
    /// As [`add_chunk_in`](Self::add_chunk_in).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0x1000, 0x1000))?;
    /// assert_eq!((list.chunk_bytes(), list.free_bytes(), list.chunk_count()), (4096, 4096, 1));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn add_chunk(&mut self, range: Range) -> Result<(), Error> {
        self.add_chunk_in(0, range)
    }

    /// Adds `range` as a new chunk, all free, in partition `part`. A chunk is a region of its
    /// own: its blocks never merge with another chunk's, even an adjacent one.
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::ZeroSize`] for an empty range;
    /// [`Error::InvalidAlignment`] (with `align` 256) when its start or length is not a
    /// multiple of 256; [`Error::SizeOverflow`] when it wraps around the address space;
    /// [`Error::Unsupported`] when it overlaps a chunk already added;
    /// [`Error::UnknownStream`] (the partition id) for a partition that does not exist;
    /// [`Error::MetadataExhausted`] when two nodes are not available.
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert!(matches!(list.add_chunk(Range::new(2048, 4096)), Err(Error::Unsupported { .. })));
    /// assert_eq!(list.add_chunk(Range::new(4096, 100)), Err(Error::InvalidAlignment { align: 256 }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn add_chunk_in(&mut self, part: PartitionId, range: Range) -> Result<(), Error> {
        if range.len == 0 {
            return Err(Error::ZeroSize);
        }
        if (range.start | range.len) & (DEFAULT_ALIGNMENT - 1) != 0 {
            return Err(Error::InvalidAlignment {
                align: DEFAULT_ALIGNMENT,
            });
        }
        if range.start.checked_add(range.len).is_none() {
            return Err(Error::SizeOverflow {
                requested: range.len,
            });
        }
        if self.chunks().any(|c| c.overlaps(&range)) {
            return Err(Error::Unsupported {
                what: "a chunk that overlaps a chunk already added",
            });
        }
        self.parts.materialise(part)?;
        self.blocks.reserve(2, 0)?;
        // The record and the block form the chunk's ring: each is the other's neighbour on
        // both sides.
        let chunk = self.blocks.alloc_node(Node {
            link_next: self.chunk_head,
            ..Node::new(range.start, range.len, TAG_CHUNK, NIL, NIL)
        });
        let block =
            self.blocks
                .alloc_node(Node::new(range.start, range.len, part as u32, chunk, chunk));
        let record = self.blocks.node_mut(chunk);
        record.prev_phys = block | SIDE_FREE;
        record.next_phys = block | SIDE_FREE;
        if self.chunk_head != NIL {
            self.blocks.node_mut(self.chunk_head).link_prev = chunk;
        }
        self.chunk_head = chunk;
        self.chunk_count += 1;
        self.chunk_bytes += range.len;
        self.free_bytes += range.len;
        let Self { blocks, parts, .. } = self;
        let fi = parts.at_mut(part);
        fi.free_bytes += range.len;
        fi.push(
            blocks.nodes_mut(),
            block,
            class_index(range.len >> GRANULE_SHIFT),
        );
        Ok(())
    }

    /// The chunks, in no particular order.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.add_chunk(Range::new(8192, 4096))?;
    /// let mut v: Vec<Range> = list.chunks().collect();
    /// v.sort();
    /// assert_eq!(v, [Range::new(0, 4096), Range::new(8192, 4096)]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn chunks(&self) -> impl Iterator<Item = Range> + '_ {
        let mut cur = self.chunk_head;
        core::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let c = self.blocks.node(cur);
            cur = c.link_next;
            Some(Range::new(c.start(), c.size()))
        })
    }

    /// The chunk record node of the chunk `range` exactly, if it is one.
    fn find_chunk(&self, range: Range) -> Option<u32> {
        let mut cur = self.chunk_head;
        while cur != NIL {
            let c = self.blocks.node(cur);
            if c.start() == range.start && c.size() == range.len {
                return Some(cur);
            }
            cur = c.link_next;
        }
        None
    }

    /// Whether chunk record `chunk` is wholly free: one free block.
    fn chunk_node_is_free(&self, chunk: u32) -> bool {
        let first = self.blocks.node(self.blocks.node(chunk).next());
        first.is_free() && first.next() == chunk
    }

    /// Whether the chunk `range` (as added) is wholly free; `None` when it is not a chunk of
    /// this list. O(chunks).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// let chunk = Range::new(0, 4096);
    /// list.add_chunk(chunk)?;
    /// assert_eq!(list.is_chunk_free(chunk), Some(true));
    /// let a = list.allocate(256, 256)?;
    /// assert_eq!(list.is_chunk_free(chunk), Some(false));
    /// assert_eq!(list.is_chunk_free(Range::new(0, 256)), None);
    /// # let _ = a;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn is_chunk_free(&self, range: Range) -> Option<bool> {
        self.find_chunk(range).map(|c| self.chunk_node_is_free(c))
    }

    /// Removes a wholly free chunk, whichever partition its free block is in, and returns it
    /// (for a pool's trim or an arena's superblock reclaim). O(chunks).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(256, 256)?;
    /// assert_eq!(list.take_free_chunk(), None);
    /// list.deallocate(a.start, a.len)?;
    /// assert_eq!(list.take_free_chunk(), Some(Range::new(0, 4096)));
    /// assert_eq!(list.chunk_bytes(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn take_free_chunk(&mut self) -> Option<Range> {
        let mut cur = self.chunk_head;
        while cur != NIL {
            if self.chunk_node_is_free(cur) {
                return Some(self.remove_chunk_node(cur));
            }
            cur = self.blocks.node(cur).link_next;
        }
        None
    }

    /// Removes the chunk `range` if it is wholly free, and returns whether it did. O(chunks).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert!(!list.remove_free_chunk(Range::new(0, 2048)));
    /// assert!(list.remove_free_chunk(Range::new(0, 4096)));
    /// assert_eq!(list.chunk_count(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn remove_free_chunk(&mut self, range: Range) -> bool {
        match self.find_chunk(range) {
            Some(c) if self.chunk_node_is_free(c) => {
                self.remove_chunk_node(c);
                true
            }
            _ => false,
        }
    }

    fn remove_chunk_node(&mut self, chunk: u32) -> Range {
        let c = *self.blocks.node(chunk);
        let first = c.next();
        let part = self.blocks.node(first).tag() as PartitionId;
        let Self { blocks, parts, .. } = self;
        let fi = parts.at_mut(part);
        fi.unlink(
            blocks.nodes_mut(),
            first,
            class_index(c.size() >> GRANULE_SHIFT),
        );
        fi.free_bytes -= c.size();
        if c.link_prev != NIL {
            blocks.node_mut(c.link_prev).link_next = c.link_next;
        } else {
            self.chunk_head = c.link_next;
        }
        if c.link_next != NIL {
            blocks.node_mut(c.link_next).link_prev = c.link_prev;
        }
        blocks.release_node(first);
        blocks.release_node(chunk);
        self.chunk_count -= 1;
        self.chunk_bytes -= c.size();
        self.free_bytes -= c.size();
        Range::new(c.start(), c.size())
    }

    /// Forgets every chunk and block, live or free, and every partition but 0 (keeping the
    /// heap capacity of a growable store). Use [`chunks`](Self::chunks) first to give the
    /// chunks back to where they came from.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.allocate(256, 256)?;
    /// list.clear();
    /// assert_eq!((list.chunk_count(), list.live_blocks()), (0, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.parts.clear();
        self.chunk_head = NIL;
        self.chunk_count = 0;
        self.chunk_bytes = 0;
        self.free_bytes = 0;
    }

    // ----------------------------------------------------------------------------------------
    // Allocation
    // ----------------------------------------------------------------------------------------

    /// Allocates `size` bytes aligned to `align` from partition 0 and returns the block with
    /// its handle, which frees it in O(1) with no lookup
    /// ([`deallocate_block`](Self::deallocate_block)). The range starts on a multiple of
    /// `max(align, 256)` and its length is `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// As [`allocate_block_in`](Self::allocate_block_in).
    ///
    /// ```
    /// use strata_core::{Range, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let b = list.allocate_block(1000, 256)?;
    /// assert_eq!(b.range(), Range::new(3072, 1024)); // the end of the free block
    /// list.deallocate_block(b)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate_block(&mut self, size: u64, align: u64) -> Result<Block, Error> {
        self.allocate_block_in(0, size, align)
    }

    /// Allocates `size` bytes aligned to `align` from the free blocks of partition `part` only,
    /// and returns the block with its handle.
    ///
    /// Good fit in O(1): the first block of the smallest non-empty size class whose every
    /// block fits; when there is none, the blocks of the classes below it that may still fit
    /// are tried one by one (so a block that fits is never missed). An alignment above 256
    /// that the block's start does not meet splits a free block off the front.
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::ZeroSize`] for `size == 0`;
    /// [`Error::InvalidAlignment`] when `align` is not a power of two;
    /// [`Error::SizeOverflow`] when the rounded size overflows; [`Error::UnknownStream`] (the
    /// partition id) for a partition that does not exist; [`Error::OutOfMemory`] when no free
    /// block of `part` fits (with `part`'s largest free block and free bytes);
    /// [`Error::MetadataExhausted`] when the split needs a node and none is left.
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk_in(s1, Range::new(0, 4096))?;
    /// assert!(matches!(list.allocate_block(256, 256), Err(Error::OutOfMemory { .. })));
    /// let b = list.allocate_block_in(s1, 256, 256)?;
    /// assert_eq!(b.range(), Range::new(3840, 256));
    /// list.deallocate_block_in(s1, b)?;
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate_block_in(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Block, Error> {
        // The common case, in few instructions: an alignment of at most 256 (a power of
        // two), a size that rounds up without overflow, and a class list that is sure to fit.
        if self.fit == Fit::Best {
            return self.allocate_best(part, size, align);
        }
        let align_mask = align.wrapping_sub(1);
        if align_mask < DEFAULT_ALIGNMENT
            && align & align_mask == 0
            && size.wrapping_sub(1) < u64::MAX - TAG_MASK
        {
            let units = (size + TAG_MASK) >> GRANULE_SHIFT;
            if let Some(c) = self
                .parts
                .get(part)
                .and_then(|fi| fi.find(search_class(units)))
            {
                return self.take_head(part, c, units << GRANULE_SHIFT);
            }
        }
        self.allocate_general(part, size, align)
    }

    /// The generation for the next live block (odd, so never 0), and moves the counter on.
    #[inline(always)]
    fn take_generation(&mut self) -> NonZeroU32 {
        let g = self.next_generation | 1;
        self.next_generation = g.wrapping_add(2);
        NonZeroU32::new(g).unwrap_or(NonZeroU32::MIN)
    }

    /// Allocates `rsize` bytes (a multiple of 256, alignment 256) from the head of the list of
    /// class `c` of partition `part`, a class whose every block holds `rsize`.
    ///
    /// The end of the block is taken: the free rest keeps the node, and goes to the front of
    /// the list of its (perhaps unchanged) size class. Moving it even when its class is the
    /// same (a pop and a push of the same list: no change but its place at the front, where
    /// it was already) costs a few instructions but no branch on its new size, which a random
    /// workload mispredicts: 0.80 -> 0.55 simulated mispredictions per operation on
    /// uniform_1m, fewer instructions too.
    #[inline(always)]
    fn take_head(&mut self, part: PartitionId, c: usize, rsize: u64) -> Result<Block, Error> {
        let idx = self.parts.at_mut(part).head(c);
        let block = *self.blocks.node(idx);
        debug_assert!(block.tag() == part as u32 && block.link_prev == NIL);
        let rest = block.size() - rsize;
        if rest != 0 && self.blocks.vacant == NIL {
            self.blocks.add_vacant()?;
        }
        self.blocks.reserve_live()?;
        let generation = self.take_generation();
        let Self { blocks, parts, .. } = self;
        let fi = parts.at_mut(part);
        let start = block.start() + rest;
        let live = if rest == 0 {
            let nodes = blocks.nodes_mut();
            fi.pop_head(nodes, idx, c);
            let n = nd_mut(nodes, idx);
            n.size_tag = rsize | LIVE_HI;
            n.start_tag = start;
            n.link_prev = generation.get();
            n.link_next = NIL;
            // Its neighbours' bits: no longer free.
            nd_mut(nodes, block.prev()).next_phys = idx;
            nd_mut(nodes, block.next()).prev_phys = idx;
            idx
        } else {
            let v = blocks.vacant;
            let nodes = blocks.nodes_mut();
            let next_vacant = nd(nodes, v).link_next;
            debug_assert_eq!(nd(nodes, v).tag(), TAG_VACANT);
            *nd_mut(nodes, v) = Node {
                start_tag: start,
                size_tag: rsize | LIVE_HI,
                prev_phys: idx | SIDE_FREE,
                next_phys: block.next_phys,
                link_prev: generation.get(),
                link_next: NIL,
            };
            nd_mut(nodes, block.next()).prev_phys = v;
            let n = nd_mut(nodes, idx);
            n.next_phys = v;
            n.size_tag = rest | (block.size_tag & TAG_MASK);
            let rc = class_index(rest >> GRANULE_SHIFT);
            fi.pop_head(nodes, idx, c);
            fi.push(nodes, idx, rc);
            blocks.vacant = next_vacant;
            blocks.in_use += 1;
            v
        };
        fi.free_bytes -= rsize;
        Ok(self.finish_allocation(live, start, rsize, generation))
    }

    /// Every allocation that is not the common case: bad requests, an alignment above 256,
    /// a partition that does not exist or is empty, no class list sure to fit.
    #[cold]
    #[inline(never)]
    fn allocate_general(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Block, Error> {
        let req = Request::new(size, align)?;
        let Some(fi) = self.parts.get(part) else {
            return Err(self.missing_partition(part, size));
        };
        let idx = match fi.find(search_class(req.need >> GRANULE_SHIFT)) {
            Some(c) => fi.head(c),
            None => match self.fallback_fit(fi, &req) {
                Some(idx) => idx,
                None => return Err(self.out_of_memory_in(part, size)),
            },
        };
        self.carve(part, idx, &req)
    }

    /// [`Fit::Best`]: the smallest of the first [`BEST_FIT_CANDIDATES`] fitting blocks of the
    /// request's own class, else of the first non-empty class above it, carved from its start;
    /// the good-fit search of [`allocate_general`](Self::allocate_general) when neither has one.
    #[inline(never)]
    fn allocate_best(&mut self, part: PartitionId, size: u64, align: u64) -> Result<Block, Error> {
        let req = Request::new(size, align)?;
        let Some(fi) = self.parts.get(part) else {
            return Err(self.missing_partition(part, size));
        };
        let nodes = self.blocks.nodes();
        let own = class_index(req.rsize >> GRANULE_SHIFT);
        let mut best = best_in_class(fi, nodes, own, &req);
        if best == NIL
            && let Some(c) = fi.find(own + 1)
        {
            best = best_in_class(fi, nodes, c, &req);
        }
        if best == NIL {
            return self.allocate_general(part, size, align);
        }
        self.carve_front(part, best, &req)
    }

    /// Looks, block by block, through the classes that may hold a block fitting `req` but are
    /// below the class `find` starts at. The slow path, taken only before reporting
    /// out-of-memory: O(blocks in those classes).
    #[cold]
    fn fallback_fit(&self, fi: &FreeIndex, req: &Request) -> Option<u32> {
        let lo = class_index(req.rsize >> GRANULE_SHIFT);
        let hi = search_class(req.need >> GRANULE_SHIFT);
        let nodes = self.blocks.nodes();
        for c in lo..hi.min(CLASS_COUNT) {
            let mut cur = fi.head(c);
            while cur != NIL {
                let n = nd(nodes, cur);
                if req.fits(n) {
                    return Some(cur);
                }
                cur = n.link_next;
            }
        }
        None
    }

    /// Allocates `req` from free block `idx` of partition `part`, anywhere in its list (the
    /// general form of [`take_head`](Self::take_head)).
    fn carve(&mut self, part: PartitionId, idx: u32, req: &Request) -> Result<Block, Error> {
        let block = *self.blocks.node(idx);
        debug_assert!(block.tag() == part as u32 && req.fits(&block));
        if req.align != DEFAULT_ALIGNMENT {
            return self.carve_front(part, idx, req);
        }
        let (start, size) = (block.start(), block.size());
        let rest = size - req.rsize;
        self.blocks.reserve(u32::from(rest > 0), 1)?;
        let generation = self.take_generation();
        let Self { blocks, parts, .. } = self;
        // `allocate_general` found the block in this partition, so it exists.
        let fi = parts.at_mut(part);
        let c = class_index(size >> GRANULE_SHIFT);
        let live = if rest == 0 {
            fi.unlink(blocks.nodes_mut(), idx, c);
            let n = blocks.node_mut(idx);
            n.set_tag(TAG_LIVE);
            n.link_prev = generation.get();
            n.link_next = NIL;
            blocks.node_mut(block.prev()).next_phys = idx;
            blocks.node_mut(block.next()).prev_phys = idx;
            idx
        } else {
            let live = blocks.alloc_node(Node {
                link_prev: generation.get(),
                ..Node::new(
                    start + rest,
                    req.rsize,
                    TAG_LIVE,
                    idx | SIDE_FREE,
                    block.next_phys,
                )
            });
            let nodes = blocks.nodes_mut();
            nd_mut(nodes, block.next()).prev_phys = live;
            let n = nd_mut(nodes, idx);
            n.next_phys = live;
            n.set_size(rest);
            // The rest's neighbour before it is unchanged and was not free in this partition
            // (the block was fully merged): no merge is due.
            fi.reclass(nodes, idx, c, class_index(rest >> GRANULE_SHIFT));
            live
        };
        fi.free_bytes -= req.rsize;
        Ok(self.finish_allocation(live, start + rest, req.rsize, generation))
    }

    /// [`carve`](Self::carve) from the block's first aligned address (for an alignment above
    /// 256, and for [`Fit::Best`]): the block is split into a free front piece (if the start
    /// is not aligned), the live block, and a free tail (if any).
    #[inline(never)]
    fn carve_front(&mut self, part: PartitionId, idx: u32, req: &Request) -> Result<Block, Error> {
        let block = *self.blocks.node(idx);
        let front = req.front_pad(block.start());
        let tail = block.size() - front - req.rsize;
        self.blocks
            .reserve(u32::from(front > 0) + u32::from(tail > 0), 1)?;
        let generation = self.take_generation();
        let Self { blocks, parts, .. } = self;
        let fi = parts.at_mut(part);
        fi.unlink(
            blocks.nodes_mut(),
            idx,
            class_index(block.size() >> GRANULE_SHIFT),
        );
        let start = block.start() + front;
        // The node after, with its free bit (the live block or the tail links to it).
        let (old_next, old_next_raw) = (block.next(), block.next_phys);
        let live = if front == 0 {
            let n = blocks.node_mut(idx);
            n.set_size(req.rsize);
            n.set_tag(TAG_LIVE);
            n.link_prev = generation.get();
            n.link_next = NIL;
            blocks.node_mut(block.prev()).next_phys = idx;
            idx
        } else {
            // The original node stays free as the front piece; its neighbour before it is not
            // free in this partition (the block was fully merged), so no merge is due.
            blocks.node_mut(idx).set_size(front);
            fi.push(blocks.nodes_mut(), idx, class_index(front >> GRANULE_SHIFT));
            let live = blocks.alloc_node(Node {
                link_prev: generation.get(),
                ..Node::new(start, req.rsize, TAG_LIVE, idx | SIDE_FREE, NIL)
            });
            blocks.node_mut(idx).next_phys = live;
            live
        };
        if tail > 0 {
            let t = blocks.alloc_node(Node::new(
                start + req.rsize,
                tail,
                part as u32,
                live,
                old_next_raw,
            ));
            blocks.node_mut(live).next_phys = t | SIDE_FREE;
            blocks.node_mut(old_next).prev_phys = t | SIDE_FREE;
            fi.push(blocks.nodes_mut(), t, class_index(tail >> GRANULE_SHIFT));
        } else {
            blocks.node_mut(live).next_phys = old_next_raw;
            blocks.node_mut(old_next).prev_phys = live;
        }
        fi.free_bytes -= req.rsize;
        Ok(self.finish_allocation(live, start, req.rsize, generation))
    }

    /// The bookkeeping every allocation ends with: counters, the address table, the handle.
    #[inline(always)]
    fn finish_allocation(
        &mut self,
        live: u32,
        start: u64,
        rsize: u64,
        generation: NonZeroU32,
    ) -> Block {
        self.free_bytes -= rsize;
        self.blocks.live += 1;
        self.blocks.hash_insert(live);
        Block {
            start,
            len: rsize,
            handle: BlockHandle {
                node: live,
                generation,
            },
        }
    }

    #[cold]
    fn missing_partition(&self, part: PartitionId, size: u64) -> Error {
        if (part as usize) < self.parts.count() {
            // The growable partition 0 before anything was added: it is empty.
            self.out_of_memory_in(part, size)
        } else {
            Error::UnknownStream {
                stream: part as u64,
            }
        }
    }

    #[cold]
    fn out_of_memory_in(&self, part: PartitionId, size: u64) -> Error {
        Error::OutOfMemory {
            requested: size,
            largest_free: self.largest_free_in(part),
            total_free: self.free_bytes_in(part),
        }
    }

    /// The size of the smallest free block that is sure to serve `allocate(size, align)`:
    /// the footprint, plus the padding an alignment above 256 may need, rounded up to a size
    /// class boundary (at most 1/32 more). A pool grows by at least this much.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`] or [`Error::SizeOverflow`], as
    /// `allocate` would report them.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// assert_eq!(CoalescingList::<0, 0>::min_block_for(1, 256)?, 256);
    /// let n = CoalescingList::<0, 0>::min_block_for(1000 * 256, 256)?;
    /// assert!(n >= 1000 * 256 && n <= 1000 * 256 * 33 / 32);
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, n))?;
    /// list.allocate(1000 * 256, 256)?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn min_block_for(size: u64, align: u64) -> Result<u64, Error> {
        let req = Request::new(size, align)?;
        Ok(search_units(req.need >> GRANULE_SHIFT) << GRANULE_SHIFT)
    }

    // ----------------------------------------------------------------------------------------
    // Deallocation by handle
    // ----------------------------------------------------------------------------------------

    /// Frees the block of `handle` (a [`BlockHandle`], or the [`Block`] itself) into
    /// partition 0.
    ///
    /// # Errors
    ///
    /// As [`deallocate_block_in`](Self::deallocate_block_in).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let b = list.allocate_block(300, 256)?;
    /// list.deallocate_block(b)?;
    /// assert_eq!(list.deallocate_block(b), Err(Error::DoubleFree { addr: b.start() }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_block(&mut self, handle: impl Into<BlockHandle>) -> Result<(), Error> {
        self.deallocate_block_in(0, handle)
    }

    /// Frees the block of `handle` into partition `part`, merging it at once with its
    /// physical neighbours that are free in `part`. O(1), with no lookup: the handle names the
    /// block's node, which is checked to be live with the handle's generation. (With an
    /// [`AddressTable`] the block also leaves the table, a lookup.)
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::UnknownStream`] (the partition id) for a partition
    /// that does not exist; [`Error::DoubleFree`] for a stale handle, whose block was freed
    /// already: `addr` is the start its node recorded last, which is the block's start
    /// unless the node has held another block since; [`Error::NotAllocated`] (`addr` 0) for a
    /// handle whose node this list never used (a handle of another list).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::{CoalescingList, HandlesOnly}};
    /// let mut list = CoalescingList::<0, 0, HandlesOnly>::growable();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk(Range::new(0, 1024))?;
    /// let a = list.allocate_block(512, 256)?;
    /// let b = list.allocate_block(512, 256)?;
    /// assert_eq!(list.deallocate_block_in(7, a), Err(Error::UnknownStream { stream: 7 }));
    /// list.deallocate_block_in(s1, a)?;
    /// list.deallocate_block(b)?;
    /// // Free in different partitions: not merged.
    /// assert_eq!((list.free_bytes_in(0), list.free_bytes_in(s1), list.free_blocks()), (512, 512, 2));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_block_in(
        &mut self,
        part: PartitionId,
        handle: impl Into<BlockHandle>,
    ) -> Result<(), Error> {
        let handle = handle.into();
        let idx = handle.node;
        // A node is live iff the low byte of its `size_tag` is the live tag's high byte
        // (free blocks have a partition id below 2^14 there, chunk records and vacant slots
        // other kinds); a live node's `link_prev` holds its generation.
        let size_tag = match self.blocks.nodes().get(idx as usize) {
            Some(n)
                if n.size_tag & TAG_MASK == LIVE_HI && n.link_prev == handle.generation.get() =>
            {
                n.size_tag
            }
            _ => return Err(self.bad_handle(part, handle)),
        };
        if (part as usize) >= self.parts.count() {
            return Err(self.bad_handle(part, handle));
        }
        if I::INDEXED {
            let start = self.blocks.node(idx).start();
            match self.blocks.hash_find(start) {
                Some((found, prev, b)) if found == idx => self.blocks.hash_remove(idx, prev, b),
                _ => return Err(self.bad_handle(part, handle)),
            }
        }
        self.free_live(part, idx, size_tag & !TAG_MASK);
        Ok(())
    }

    /// Why `deallocate_block_in(part, handle)` refused `handle`.
    #[cold]
    #[inline(never)]
    fn bad_handle(&self, part: PartitionId, handle: BlockHandle) -> Error {
        if (part as usize) >= self.parts.count() {
            return Error::UnknownStream {
                stream: part as u64,
            };
        }
        match self.blocks.nodes()[..self.blocks.hw as usize].get(handle.node as usize) {
            Some(n) => Error::DoubleFree { addr: n.start() },
            None => Error::NotAllocated { addr: 0 },
        }
    }

    /// Frees live node `idx` (of `size` bytes, out of the address table) into partition
    /// `part`, which exists: counters, then the merge.
    #[inline(always)]
    fn free_live(&mut self, part: PartitionId, idx: u32, size: u64) {
        let Self {
            blocks,
            parts,
            free_bytes,
            ..
        } = self;
        blocks.live -= 1;
        *free_bytes += size;
        // `part` exists (checked by the callers) and is materialised: only the growable
        // partition 0 is not before a chunk was added, and a live block means a chunk was
        // added.
        let fi = parts.at_mut(part);
        fi.free_bytes += size;
        free_into(blocks, fi, idx, part as u32);
    }

    // ----------------------------------------------------------------------------------------
    // Partitions
    // ----------------------------------------------------------------------------------------

    /// Adds an empty partition and returns its id.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when all `P` inline partitions exist (fixed), or when 16384
    /// exist or the heap refuses (growable).
    ///
    /// ```
    /// use strata_core::{Error, algo::CoalescingList};
    /// let mut list = CoalescingList::<8, 2>::with_fixed_capacity();
    /// assert_eq!(list.add_partition(), Ok(1));
    /// assert_eq!(list.add_partition(), Err(Error::MetadataExhausted { capacity: 2 }));
    /// assert_eq!(list.partition_count(), 2);
    /// ```
    pub fn add_partition(&mut self) -> Result<PartitionId, Error> {
        self.parts.add()
    }

    /// How many partitions exist (at least 1: partition 0).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::CoalescingList::new().partition_count(), 1);
    /// ```
    pub fn partition_count(&self) -> usize {
        self.parts.count()
    }

    /// A partition other than `exclude` that has a free block sure to serve
    /// `allocate_in(_, size, align)` (checked in O(1) per partition by the bitmaps; a block
    /// that fits only thanks to the exact class walk of `allocate_in` is not seen). `None`
    /// when there is none, or the request is invalid.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk_in(s1, Range::new(0, 4096))?;
    /// assert_eq!(list.find_partition_with_fit(1024, 256, 0), Some(s1));
    /// assert_eq!(list.find_partition_with_fit(1024, 256, s1), None);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn find_partition_with_fit(
        &self,
        size: u64,
        align: u64,
        exclude: PartitionId,
    ) -> Option<PartitionId> {
        let req = Request::new(size, align).ok()?;
        let cs = search_class(req.need >> GRANULE_SHIFT);
        (0..self.parts.count())
            .map(|p| p as PartitionId)
            .filter(|&p| p != exclude)
            .find(|&p| self.parts.get(p).is_some_and(|fi| fi.find(cs).is_some()))
    }

    /// Moves every free block of partition `from` into `into`, merging each with its
    /// neighbours free in `into`. O(free blocks of `from`). `from` stays, empty.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStream`] (the partition id) when either does not exist; nothing
    /// changes then.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk(Range::new(0, 1024))?;
    /// let a = list.allocate(512, 256)?;
    /// let b = list.allocate(512, 256)?;
    /// list.deallocate_in(s1, a.start, 512)?;
    /// list.deallocate(b.start, 512)?;
    /// list.merge_partition(s1, 0)?;
    /// assert_eq!((list.free_blocks(), list.largest_free_in(0)), (1, 1024));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn merge_partition(&mut self, from: PartitionId, into: PartitionId) -> Result<(), Error> {
        let count = self.parts.count();
        for p in [from, into] {
            if (p as usize) >= count {
                return Err(Error::UnknownStream { stream: p as u64 });
            }
        }
        if from == into || self.parts.get(from).is_none_or(|fi| fi.free_blocks == 0) {
            return Ok(());
        }
        self.parts.materialise(into)?;
        let Self { blocks, parts, .. } = self;
        loop {
            // Take the next block of `from`.
            let fi = parts.at_mut(from);
            let Some(c) = fi.top_class() else { break };
            let idx = fi.head(c);
            let size = blocks.node(idx).size();
            fi.unlink(blocks.nodes_mut(), idx, c);
            fi.free_bytes -= size;
            let fi = parts.at_mut(into);
            fi.free_bytes += size;
            free_into(blocks, fi, idx, into as u32);
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Statistics
    // ----------------------------------------------------------------------------------------

    /// Free bytes, over all partitions. O(1).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::CoalescingList::new().free_bytes(), 0);
    /// ```
    #[inline]
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Free bytes of partition `part` (0 for a partition that does not exist). O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert_eq!((list.free_bytes_in(0), list.free_bytes_in(1)), (4096, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn free_bytes_in(&self, part: PartitionId) -> u64 {
        self.parts.get(part).map_or(0, |fi| fi.free_bytes)
    }

    /// Bytes in live blocks (footprints, rounded up to 256). O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.allocate(1, 256)?;
    /// assert_eq!(list.live_bytes(), 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn live_bytes(&self) -> u64 {
        self.chunk_bytes - self.free_bytes
    }

    /// Bytes in all chunks (live + free). O(1).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::CoalescingList::new().chunk_bytes(), 0);
    /// ```
    #[inline]
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// The size of the largest free block of any partition. O(partitions + blocks in the
    /// top size class of each).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.allocate(1024, 256)?;
    /// assert_eq!(list.largest_free(), 3072);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn largest_free(&self) -> u64 {
        (0..self.parts.count())
            .map(|p| self.largest_free_in(p as PartitionId))
            .max()
            .unwrap_or(0)
    }

    /// The size of the largest free block of partition `part` (0 when it has none or does not
    /// exist). O(blocks in its top non-empty size class).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert_eq!(list.largest_free_in(0), 4096);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn largest_free_in(&self, part: PartitionId) -> u64 {
        let Some(fi) = self.parts.get(part) else {
            return 0;
        };
        let Some(c) = fi.top_class() else { return 0 };
        let nodes = self.blocks.nodes();
        let mut best = 0;
        let mut cur = fi.head(c);
        while cur != NIL {
            best = best.max(nodes[cur as usize].size());
            cur = nodes[cur as usize].link_next;
        }
        best
    }

    /// How many live blocks there are. O(1).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::CoalescingList::new().live_blocks(), 0);
    /// ```
    #[inline]
    pub fn live_blocks(&self) -> usize {
        self.blocks.live as usize
    }

    /// How many free blocks there are, over all partitions. O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.add_chunk(Range::new(8192, 4096))?;
    /// assert_eq!(list.free_blocks(), 2);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn free_blocks(&self) -> usize {
        (self.blocks.in_use - self.chunk_count - self.blocks.live) as usize
    }

    /// How many free blocks partition `part` has (0 when it does not exist). O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// assert_eq!(list.free_blocks_in(0), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn free_blocks_in(&self, part: PartitionId) -> usize {
        self.parts.get(part).map_or(0, |fi| fi.free_blocks as usize)
    }

    /// How many chunks there are. O(1).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::CoalescingList::new().chunk_count(), 0);
    /// ```
    #[inline]
    pub fn chunk_count(&self) -> usize {
        self.chunk_count as usize
    }

    /// How many metadata nodes are in use: one per block and one per chunk.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.allocate(256, 256)?;
    /// assert_eq!(list.nodes_in_use(), 3); // chunk record, live block, free tail
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn nodes_in_use(&self) -> usize {
        self.blocks.in_use as usize
    }

    /// The most nodes the list can hold: `Some(N)` when fixed, `None` when growable.
    ///
    /// ```
    /// use strata_core::algo::CoalescingList;
    /// assert_eq!(CoalescingList::<16, 1>::with_fixed_capacity().node_capacity(), Some(16));
    /// ```
    pub fn node_capacity(&self) -> Option<usize> {
        self.blocks.capacity()
    }

    /// Bytes of metadata the list holds now, inline and on the heap, including capacity not
    /// in use (this is what [`NODE_BYTES`](Self::NODE_BYTES) per block adds up to).
    ///
    /// ```
    /// use strata_core::algo::CoalescingList;
    /// let list = CoalescingList::<16, 1>::with_fixed_capacity();
    /// assert!(list.metadata_bytes() >= 16 * CoalescingList::<16, 1>::NODE_BYTES);
    /// ```
    pub fn metadata_bytes(&self) -> usize {
        size_of::<Self>() + self.blocks.heap_bytes() + self.parts.heap_bytes()
    }

    /// Bytes of metadata per node (block or chunk): the node itself and, with an
    /// [`AddressTable`], its hash bucket (36 bytes; 32 with [`HandlesOnly`]). A growable list
    /// rounds its table up to a power of two of live blocks and grows its node array by
    /// doubling, so it may hold up to twice that.
    ///
    /// ```
    /// use strata_core::algo::{CoalescingList, HandlesOnly};
    /// assert_eq!(CoalescingList::<0, 0>::NODE_BYTES, 36);
    /// assert_eq!(CoalescingList::<0, 0, HandlesOnly>::NODE_BYTES, 32);
    /// ```
    pub const NODE_BYTES: usize = size_of::<Node>() + if I::INDEXED { size_of::<u32>() } else { 0 };

    // ----------------------------------------------------------------------------------------
    // Checking
    // ----------------------------------------------------------------------------------------

    // ----------------------------------------------------------------------------------------
    // Checking
    // ----------------------------------------------------------------------------------------

    /// Checks every invariant of the list in O(nodes + chunks² + partitions × classes), and
    /// says which one fails. For tests and debugging.
    ///
    /// Checked: chunks do not overlap; the blocks of each chunk tile it in address order with
    /// consistent physical links, 256-aligned, non-empty; no two adjacent blocks are free in the
    /// same partition; every free block is in the list of its partition and class, every list
    /// holds only such blocks, and the bitmaps and counters match the lists; every live block
    /// has a generation and (with an address table) is in its hash chain, and the chains hold
    /// only live blocks; vacant slots and counters add up; `live + free == chunk bytes`.
    ///
    /// # Errors
    ///
    /// A description of the first violated invariant.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// list.allocate(256, 256)?;
    /// assert_eq!(list.check_invariants(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let nodes = self.blocks.nodes();
        let hw = self.blocks.hw as usize;
        if nodes.len() < hw {
            return Err("node slab shorter than its high-water mark");
        }
        let in_range = |i: u32| (i as usize) < hw;
        let limit = hw + 1;
        // Chunks and the blocks that tile them.
        let (mut chunks, mut blocks, mut live, mut free, mut chunk_bytes, mut free_bytes) =
            (0usize, 0usize, 0usize, 0usize, 0u64, 0u64);
        let mut prev_chunk = NIL;
        let mut cur = self.chunk_head;
        while cur != NIL {
            chunks += 1;
            if chunks > limit || !in_range(cur) {
                return Err("chunk list has a cycle or a link out of range");
            }
            let c = &nodes[cur as usize];
            if c.tag() != TAG_CHUNK || c.link_prev != prev_chunk {
                return Err("chunk list holds a non-chunk or has a broken back link");
            }
            chunk_bytes += c.size();
            let mut other = c.link_next;
            while other != NIL {
                if !in_range(other) {
                    return Err("chunk list link out of range");
                }
                let o = &nodes[other as usize];
                if Range::new(c.start(), c.size()).overlaps(&Range::new(o.start(), o.size())) {
                    return Err("two chunks overlap");
                }
                other = o.link_next;
                if other == cur {
                    return Err("chunk list has a cycle");
                }
            }
            // The ring: record, first block, ..., last block, record.
            let mut b = c.next();
            let mut expect_start = c.start();
            let mut prev_b = cur;
            while b != cur {
                blocks += 1;
                if blocks > limit || !in_range(b) {
                    return Err("physical chain has a cycle or a link out of range");
                }
                let n = &nodes[b as usize];
                if n.prev() != prev_b {
                    return Err("physical back link broken");
                }
                let before = &nodes[prev_b as usize];
                if n.prev_is_free() != (before.is_free() && prev_b != cur)
                    || before.next_is_free() != n.is_free()
                {
                    return Err("a free-neighbour bit of a physical link is wrong");
                }
                if n.start() != expect_start {
                    return Err("blocks do not tile their chunk");
                }
                if n.size() == 0 {
                    return Err("empty block");
                }
                if n.is_free() {
                    free += 1;
                    free_bytes += n.size();
                    if prev_b != cur && nodes[prev_b as usize].tag() == n.tag() {
                        return Err("two adjacent blocks free in the same partition");
                    }
                    if (n.tag() as usize) >= self.parts.count() {
                        return Err("free block in a partition that does not exist");
                    }
                } else if n.tag() == TAG_LIVE {
                    live += 1;
                    if n.link_prev & 1 == 0 {
                        return Err("live block without a generation");
                    }
                } else {
                    return Err("physical chain holds a chunk record or vacant slot");
                }
                expect_start = n.start() + n.size();
                prev_b = b;
                b = n.next();
            }
            let last = &nodes[prev_b as usize];
            if c.prev() != prev_b
                || prev_b == cur
                || c.prev_is_free() != last.is_free()
                || last.next_is_free()
            {
                return Err("chunk record does not link its last block (or its bit), or has none");
            }
            if expect_start != c.start() + c.size() {
                return Err("blocks do not cover their chunk");
            }
            prev_chunk = cur;
            cur = c.link_next;
        }
        if chunks != self.chunk_count as usize || chunk_bytes != self.chunk_bytes {
            return Err("chunk counters wrong");
        }
        if free_bytes != self.free_bytes || self.live_bytes() + self.free_bytes != chunk_bytes {
            return Err("free-byte counter wrong: live + free != chunk bytes");
        }
        if live != self.blocks.live as usize {
            return Err("live-block counter wrong");
        }
        // Vacant slots.
        let mut vacant = 0usize;
        let mut v = self.blocks.vacant;
        while v != NIL {
            vacant += 1;
            if vacant > limit || !in_range(v) || nodes[v as usize].tag() != TAG_VACANT {
                return Err("vacant list broken");
            }
            v = nodes[v as usize].link_next;
        }
        if vacant + chunks + blocks != hw || hw - vacant != self.blocks.in_use as usize {
            return Err("nodes leaked: slots are neither blocks, chunks nor vacant");
        }
        if nodes[..hw].iter().filter(|n| n.tag() == TAG_VACANT).count() != vacant {
            return Err("a vacant slot is not on the vacant list");
        }
        // Free lists and bitmaps.
        let (mut listed, mut listed_bytes) = (0usize, 0u64);
        for p in 0..self.parts.count() {
            let Some(fi) = self.parts.get(p as PartitionId) else {
                continue;
            };
            let (mut pn, mut pb) = (0u32, 0u64);
            for fl in 0..FL_COUNT {
                if ((fi.fl_map >> fl) & 1 == 1) != (fi.sl_map[fl] != 0) {
                    return Err("first-level bitmap disagrees with the second level");
                }
                for sl in 0..SL_COUNT {
                    let c = fl * SL_COUNT + sl;
                    if ((fi.sl_map[fl] >> sl) & 1 == 1) != (fi.head(c) != NIL) {
                        return Err("second-level bitmap disagrees with the lists");
                    }
                    let mut prev = NIL;
                    let mut cur = fi.head(c);
                    while cur != NIL {
                        pn += 1;
                        if pn as usize > limit || !in_range(cur) {
                            return Err("free list has a cycle or a link out of range");
                        }
                        let n = &nodes[cur as usize];
                        if n.tag() != p as u32 || n.link_prev != prev {
                            return Err("free list holds a block of another partition or kind");
                        }
                        if class_index(n.size() >> GRANULE_SHIFT) != c {
                            return Err("free block in the wrong size class");
                        }
                        pb += n.size();
                        prev = cur;
                        cur = n.link_next;
                    }
                }
            }
            if fl_map_beyond(fi.fl_map) || fi.sl_map[FL_COUNT..].iter().any(|&r| r != 0) {
                return Err("bitmaps have bits beyond the classes");
            }
            if pn != fi.free_blocks || pb != fi.free_bytes {
                return Err("partition counters disagree with its lists");
            }
            listed += pn as usize;
            listed_bytes += pb;
        }
        if listed != free || listed_bytes != free_bytes {
            return Err("free blocks missing from the free lists");
        }
        // Address table.
        if I::INDEXED {
            let buckets = self.blocks.buckets();
            let mut hashed = 0usize;
            for (b, &head) in buckets.iter().enumerate() {
                let mut cur = head;
                while cur != NIL {
                    hashed += 1;
                    if hashed > limit || !in_range(cur) {
                        return Err("hash chain has a cycle or a link out of range");
                    }
                    let n = &nodes[cur as usize];
                    if n.tag() != TAG_LIVE {
                        return Err("hash chain holds a block that is not live");
                    }
                    if Blocks::<N, I>::bucket_in(n.start(), buckets.len()) != b {
                        return Err("live block in the wrong hash bucket");
                    }
                    cur = n.link_next;
                }
            }
            let detached = nodes[..hw]
                .iter()
                .filter(|n| n.tag() == TAG_LIVE && n.link_next == DETACHED)
                .count();
            if hashed + detached != live {
                return Err("live blocks missing from the address table");
            }
        }
        Ok(())
    }
}

/// Whether a first-level bitmap has a bit set at or above `FL_COUNT`.
fn fl_map_beyond(fl_map: u64) -> bool {
    fl_map >> FL_COUNT != 0
}

// ------------------------------------------------------------------------------------------------
// Freeing by address (lists with an address table)
// ------------------------------------------------------------------------------------------------

impl<const N: usize, const P: usize> CoalescingList<N, P, AddressTable> {
    /// Allocates `size` bytes aligned to `align` from partition 0. The returned range starts on
    /// a multiple of `max(align, 256)` and its length is `size` rounded up to 256.
    ///
    /// # Errors
    ///
    /// As [`allocate_in`](Self::allocate_in).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// // The end of the free block is taken.
    /// assert_eq!(list.allocate(1, 256)?, Range::new(3840, 256));
    /// assert_eq!(list.allocate(0, 256), Err(Error::ZeroSize));
    /// assert_eq!(list.allocate(1, 3), Err(Error::InvalidAlignment { align: 3 }));
    /// assert!(matches!(list.allocate(8192, 256), Err(Error::OutOfMemory { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.allocate_in(0, size, align)
    }

    /// Allocates `size` bytes aligned to `align` from the free blocks of partition `part` only
    /// (as [`allocate_block_in`](Self::allocate_block_in), returning only the range: the block
    /// is freed by address).
    ///
    /// # Errors
    ///
    /// As [`allocate_block_in`](Self::allocate_block_in).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk_in(s1, Range::new(0, 4096))?;
    /// assert!(matches!(list.allocate(256, 256), Err(Error::OutOfMemory { .. })));
    /// assert_eq!(list.allocate_in(s1, 256, 256)?, Range::new(3840, 256));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn allocate_in(
        &mut self,
        part: PartitionId,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        self.allocate_block_in(part, size, align).map(|b| b.range())
    }

    /// Frees the live block at `addr` into partition 0.
    ///
    /// # Errors
    ///
    /// As [`deallocate_in`](Self::deallocate_in).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(300, 256)?;
    /// assert_eq!(a, Range::new(3584, 512));
    /// assert_eq!(list.deallocate(3840, 300), Err(Error::NotAllocated { addr: 3840 }));
    /// assert!(matches!(list.deallocate(a.start, 1024), Err(Error::SizeMismatch { .. })));
    /// list.deallocate(a.start, 300)?; // the size asked for, or a.len (512): same granules
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        self.deallocate_in(0, addr, size)
    }

    /// Frees the live block at `addr` into partition `part`, merging it at once with its
    /// physical neighbours that are free in `part`. O(1): the block is found through the
    /// address table.
    ///
    /// `size` is compared after rounding up to 256: the size given to `allocate` and the
    /// length of the range it returned both match.
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::ZeroSize`] for `size == 0`;
    /// [`Error::UnknownStream`] (the partition id) for a partition that does not exist;
    /// [`Error::SizeMismatch`] when the block at `addr` has another size;
    /// [`Error::DoubleFree`] when `addr` is the start of a free block;
    /// [`Error::NotAllocated`] otherwise (an address never handed out, or the start of a
    /// block that was freed and then merged into the free block before it). Telling the last
    /// two apart scans the nodes: the error path is O(nodes).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// let s1 = list.add_partition()?;
    /// list.add_chunk(Range::new(0, 1024))?;
    /// let a = list.allocate(512, 256)?;
    /// let b = list.allocate(512, 256)?;
    /// list.deallocate_in(s1, a.start, 512)?;
    /// list.deallocate(b.start, 512)?;
    /// // Free in different partitions: not merged.
    /// assert_eq!((list.free_bytes_in(0), list.free_bytes_in(s1), list.free_blocks()), (512, 512, 2));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_in(&mut self, part: PartitionId, addr: u64, size: u64) -> Result<(), Error> {
        if self.deallocate_if_live(part, addr, size)? {
            Ok(())
        } else {
            Err(self.classify_bad_free(addr))
        }
    }

    /// Frees the live block at `addr` into partition `part`, as
    /// [`deallocate_in`](Self::deallocate_in) does, if there is one: `Ok(false)`, with nothing
    /// changed, when no live block starts at `addr`. One lookup, and no scan to tell a double
    /// free from a foreign address: for a caller that looks for the block elsewhere next (a
    /// resource made of several lists).
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::ZeroSize`] for `size == 0`;
    /// [`Error::UnknownStream`] (the partition id) for a partition that does not exist;
    /// [`Error::SizeMismatch`] when the block at `addr` has another size.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(512, 256)?;
    /// assert_eq!(list.deallocate_if_live(0, 1 << 20, 512), Ok(false)); // not one of ours
    /// assert_eq!(list.deallocate_if_live(0, a.start, 512), Ok(true));
    /// assert_eq!(list.deallocate_if_live(0, a.start, 512), Ok(false)); // freed already
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate_if_live(
        &mut self,
        part: PartitionId,
        addr: u64,
        size: u64,
    ) -> Result<bool, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        if (part as usize) >= self.parts.count() {
            return Err(Error::UnknownStream {
                stream: part as u64,
            });
        }
        let Some((idx, chain_prev, bucket)) = self.blocks.hash_find(addr) else {
            return Ok(false);
        };
        let block_size = self.blocks.node(idx).size();
        debug_assert_eq!(self.blocks.node(idx).tag(), TAG_LIVE);
        let rsize = crate::align_up(size, DEFAULT_ALIGNMENT).unwrap_or(0);
        if rsize != block_size {
            return Err(Error::SizeMismatch {
                addr,
                allocated: block_size,
                given: size,
            });
        }
        self.blocks.hash_remove(idx, chain_prev, bucket);
        self.free_live(part, idx, block_size);
        Ok(true)
    }

    /// Takes the live block at `addr` out of the address table and returns its handle: the
    /// block stays live (its bytes stay allocated), but a free by address no longer finds it
    /// (it is refused, as for an address never handed out) until it is freed with
    /// [`deallocate_detached_in`](Self::deallocate_detached_in). `None`, with nothing changed,
    /// when no live block starts at `addr`.
    ///
    /// For a block the list's owner holds for itself, which callers must not free (a region
    /// lent to another list, say), at no cost on the path that frees by address.
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(1024, 256)?;
    /// let h = list.detach(a.start).expect("live");
    /// assert_eq!(list.detached_block(h), Some(a));
    /// assert_eq!(list.deallocate(a.start, 1024), Err(Error::NotAllocated { addr: a.start }));
    /// list.deallocate_detached_in(0, h)?;
    /// assert_eq!(list.free_bytes(), 4096);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn detach(&mut self, addr: u64) -> Option<BlockHandle> {
        let (idx, chain_prev, bucket) = self.blocks.hash_find(addr)?;
        self.blocks.hash_remove(idx, chain_prev, bucket);
        let n = self.blocks.node_mut(idx);
        n.link_next = DETACHED;
        let generation = NonZeroU32::new(n.link_prev)?;
        Some(BlockHandle {
            node: idx,
            generation,
        })
    }

    /// The range of the detached block of `handle`, if `handle` names one.
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(256, 256)?;
    /// let h = list.detach(a.start).expect("live");
    /// assert_eq!(list.detached_block(h), Some(a));
    /// list.deallocate_detached_in(0, h)?;
    /// assert_eq!(list.detached_block(h), None);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn detached_block(&self, handle: BlockHandle) -> Option<Range> {
        let idx = self.detached_node(handle)?;
        let n = self.blocks.node(idx);
        Some(Range::new(n.start(), n.size()))
    }

    /// The node of `handle` if it is a detached live block with the handle's generation.
    fn detached_node(&self, handle: BlockHandle) -> Option<u32> {
        let n = self.blocks.nodes()[..self.blocks.hw as usize].get(handle.node as usize)?;
        (n.tag() == TAG_LIVE && n.link_next == DETACHED && n.link_prev == handle.generation.get())
            .then_some(handle.node)
    }

    /// Frees the block [`detach`](Self::detach) returned `handle` for into partition `part`,
    /// merging it with its free neighbours there.
    ///
    /// # Errors
    ///
    /// Nothing changes on error. [`Error::UnknownStream`] (the partition id) for a partition
    /// that does not exist; [`Error::NotAllocated`] (`addr` 0) when `handle` names no detached
    /// block of this list (freed already, never detached, or another list's).
    ///
    /// ```
    /// use strata_core::{Range, Error, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(256, 256)?;
    /// let h = list.detach(a.start).expect("live");
    /// list.deallocate_detached_in(0, h)?;
    /// assert_eq!(list.deallocate_detached_in(0, h), Err(Error::NotAllocated { addr: 0 }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn deallocate_detached_in(
        &mut self,
        part: PartitionId,
        handle: BlockHandle,
    ) -> Result<(), Error> {
        if (part as usize) >= self.parts.count() {
            return Err(Error::UnknownStream {
                stream: part as u64,
            });
        }
        let idx = self
            .detached_node(handle)
            .ok_or(Error::NotAllocated { addr: 0 })?;
        let size = self.blocks.node(idx).size();
        self.blocks.node_mut(idx).link_next = NIL;
        self.free_live(part, idx, size);
        Ok(())
    }

    /// Why a free of `addr` found no live block there: a free block starts there (double
    /// free), or nothing does.
    #[cold]
    fn classify_bad_free(&self, addr: u64) -> Error {
        let hw = self.blocks.hw as usize;
        if self.blocks.nodes()[..hw]
            .iter()
            .any(|n| n.is_free() && n.start() == addr)
        {
            Error::DoubleFree { addr }
        } else {
            Error::NotAllocated { addr }
        }
    }

    /// Whether a live block starts at `addr`; O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(256, 256)?;
    /// assert!(list.is_live(a.start));
    /// assert!(!list.is_live(a.start + 256));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn is_live(&self, addr: u64) -> bool {
        self.blocks.hash_find(addr).is_some()
    }

    /// The live block starting at `addr`, if there is one; O(1).
    ///
    /// ```
    /// use strata_core::{Range, algo::CoalescingList};
    /// let mut list = CoalescingList::new();
    /// list.add_chunk(Range::new(0, 4096))?;
    /// let a = list.allocate(300, 256)?;
    /// assert_eq!(list.live_block(a.start), Some(Range::new(3584, 512)));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn live_block(&self, addr: u64) -> Option<Range> {
        self.blocks.hash_find(addr).map(|(idx, _, _)| {
            let n = self.blocks.node(idx);
            Range::new(n.start(), n.size())
        })
    }
}

/// The smallest of the first [`BEST_FIT_CANDIDATES`] blocks of class `c` in `fi` that fit
/// `req` (the lowest address among equals), or `NIL`.
fn best_in_class(fi: &FreeIndex, nodes: &[Node], c: usize, req: &Request) -> u32 {
    let (mut best, mut best_key) = (NIL, (u64::MAX, u64::MAX));
    let mut cur = fi.head(c);
    for _ in 0..BEST_FIT_CANDIDATES {
        if cur == NIL {
            break;
        }
        let n = nd(nodes, cur);
        let key = (n.size(), n.start());
        if req.fits(n) && key < best_key {
            (best, best_key) = (cur, key);
        }
        cur = n.link_next;
    }
    best
}

/// Frees node `idx` (no longer live, or a free block taken out of its list) into the free
/// index `fi` of partition `tag`, merging it at once with its physical neighbours free in that
/// partition. Whichever node survives a merge moves to the front of the list of its new size
/// class (see [`FreeIndex::reclass`]). The caller has counted the block's bytes into `fi`
/// already.
///
/// Both neighbours exist: at a chunk's ends the neighbour is the chunk record, never free.
/// The free bits of `idx`'s physical links say which neighbours may merge, so a neighbour
/// that is not free is never read; the bits that point at the merged block are set on the
/// way (the node `idx` was free already when it comes from `merge_partition`, its
/// neighbours' bits set: setting them again is harmless).
#[inline(always)]
fn free_into<const N: usize, I: AddressIndex>(
    blocks: &mut Blocks<N, I>,
    fi: &mut FreeIndex,
    idx: u32,
    tag: u32,
) {
    let (lo, hi) = tag_bytes(tag);
    let nodes = blocks.nodes_mut();
    let me = *nd(nodes, idx);
    let (prev, next) = (me.prev(), me.next());
    let prev_free = me.prev_is_free() && nd(nodes, prev).is_free_in(lo, hi);
    let next_free = me.next_is_free() && nd(nodes, next).is_free_in(lo, hi);
    let size = me.size();
    match (prev_free, next_free) {
        (false, false) => {
            nd_mut(nodes, prev).next_phys = idx | SIDE_FREE;
            nd_mut(nodes, next).prev_phys = idx | SIDE_FREE;
            let m = nd_mut(nodes, idx);
            m.start_tag = me.start() | lo;
            m.size_tag = size | hi;
            fi.push(nodes, idx, class_index(size >> GRANULE_SHIFT));
        }
        (true, false) => {
            // The block before absorbs this one.
            nd_mut(nodes, next).prev_phys = prev | SIDE_FREE;
            let pm = nd_mut(nodes, prev);
            let old = pm.size();
            let merged = old + size;
            pm.next_phys = me.next_phys;
            pm.size_tag = merged | hi;
            fi.reclass(
                nodes,
                prev,
                class_index(old >> GRANULE_SHIFT),
                class_index(merged >> GRANULE_SHIFT),
            );
            blocks.release_node(idx);
        }
        (false, true) => {
            // The block after absorbs this one (it starts earlier now).
            nd_mut(nodes, prev).next_phys = next | SIDE_FREE;
            let nm = nd_mut(nodes, next);
            let old = nm.size();
            let merged = old + size;
            nm.prev_phys = me.prev_phys;
            nm.start_tag = me.start() | lo;
            nm.size_tag = merged | hi;
            fi.reclass(
                nodes,
                next,
                class_index(old >> GRANULE_SHIFT),
                class_index(merged >> GRANULE_SHIFT),
            );
            blocks.release_node(idx);
        }
        (true, true) => {
            // The block before absorbs this one and the one after.
            let n = *nd(nodes, next);
            fi.unlink(nodes, next, class_index(n.size() >> GRANULE_SHIFT));
            nd_mut(nodes, n.next()).prev_phys = prev | SIDE_FREE;
            let pm = nd_mut(nodes, prev);
            let old = pm.size();
            let merged = old + size + n.size();
            pm.next_phys = n.next_phys;
            pm.size_tag = merged | hi;
            fi.reclass(
                nodes,
                prev,
                class_index(old >> GRANULE_SHIFT),
                class_index(merged >> GRANULE_SHIFT),
            );
            blocks.release_node(idx);
            blocks.release_node(next);
        }
    }
}

// The tests use the growable list and `Vec`: they need the `alloc` feature.
#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    /// Everything a failed call must leave unchanged, as far as the statistics tell.
    fn snapshot<const N: usize, const P: usize>(
        l: &CoalescingList<N, P>,
    ) -> (u64, u64, u64, usize, usize, usize, usize, u64) {
        (
            l.free_bytes(),
            l.live_bytes(),
            l.chunk_bytes(),
            l.free_blocks(),
            l.live_blocks(),
            l.nodes_in_use(),
            l.chunk_count(),
            l.largest_free(),
        )
    }

    /// Runs `f`, which must fail with `expected`, and checks that nothing changed.
    fn fails_cleanly<const N: usize, const P: usize, T: core::fmt::Debug>(
        l: &mut CoalescingList<N, P>,
        expected: Error,
        f: impl FnOnce(&mut CoalescingList<N, P>) -> Result<T, Error>,
    ) {
        let before = snapshot(l);
        assert_eq!(f(l).unwrap_err(), expected);
        assert_eq!(snapshot(l), before, "state changed by a failed call");
        l.check_invariants().unwrap();
    }

    #[test]
    fn size_classes_are_monotone_and_search_rounds_up_to_a_class_start() {
        let mut last = 0;
        for u in 1..200_000u64 {
            let c = class_index(u);
            assert!(c >= last && c < CLASS_COUNT, "class of {u}");
            last = c;
            let s = search_units(u);
            assert!(s >= u && s - u <= u / 32, "search of {u} is {s}");
            // s is the smallest size of its class.
            assert_ne!(class_index(s - 1), class_index(s), "search of {u}");
        }
        for shift in 5..56 {
            for u in [
                (1u64 << shift) - 1,
                1 << shift,
                (1 << shift) + 1,
                3 << (shift - 1),
            ] {
                let s = search_units(u);
                assert!(s >= u && class_index(s) < CLASS_COUNT);
                assert_ne!(class_index(s - 1), class_index(s));
            }
        }
        let max_units = u64::MAX >> GRANULE_SHIFT;
        assert!(class_index(search_units(max_units)) < CLASS_COUNT);
    }

    #[test]
    fn node_is_32_bytes_and_metadata_per_block_at_most_64() {
        assert_eq!(size_of::<Node>(), 32);
        const { assert!(CoalescingList::<0, 0>::NODE_BYTES <= 64) };
    }

    #[test]
    fn frees_merge_with_both_neighbours_at_once() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0x10000, 4096)).unwrap();
        let mut x: Vec<Range> = (0..4).map(|_| l.allocate(1024, 256).unwrap()).collect();
        x.sort();
        assert_eq!(x[0].start, 0x10000);
        assert_eq!(l.free_blocks(), 0);
        l.deallocate(x[0].start, 1024).unwrap();
        l.deallocate(x[2].start, 1024).unwrap();
        assert_eq!(l.free_blocks(), 2);
        l.deallocate(x[3].start, 1024).unwrap(); // merges with the one before
        assert_eq!(l.free_blocks(), 2);
        l.check_invariants().unwrap();
        l.deallocate(x[1].start, 1024).unwrap(); // merges with both
        assert_eq!((l.free_blocks(), l.largest_free()), (1, 4096));
        assert_eq!(l.nodes_in_use(), 2);
        l.check_invariants().unwrap();
    }

    #[test]
    fn never_merges_across_chunks() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        l.add_chunk(Range::new(4096, 4096)).unwrap();
        assert!(matches!(
            l.allocate(8192, 256),
            Err(Error::OutOfMemory {
                requested: 8192,
                largest_free: 4096,
                total_free: 8192
            })
        ));
        let a = l.allocate(4096, 256).unwrap();
        let b = l.allocate(4096, 256).unwrap();
        l.deallocate(a.start, 4096).unwrap();
        l.deallocate(b.start, 4096).unwrap();
        assert_eq!(l.free_blocks(), 2);
        assert_eq!(l.is_chunk_free(Range::new(0, 4096)), Some(true));
        assert_eq!(l.is_chunk_free(Range::new(4096, 4096)), Some(true));
        l.check_invariants().unwrap();
    }

    #[test]
    fn large_alignments_split_off_the_front() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0x100, 1 << 20)).unwrap();
        let a = l.allocate(300, 1 << 16).unwrap();
        assert_eq!((a.start, a.len), (1 << 16, 512));
        // Front piece, live block, tail.
        assert_eq!((l.free_blocks(), l.live_blocks()), (2, 1));
        let small = l.allocate(256, 256).unwrap();
        assert!(small.start < a.start, "the front piece is reused");
        l.check_invariants().unwrap();
        l.deallocate(a.start, 300).unwrap();
        l.deallocate(small.start, 256).unwrap();
        assert_eq!(l.free_blocks(), 1);
        l.check_invariants().unwrap();
    }

    #[test]
    fn an_exact_fit_below_the_search_class_is_found() {
        // 1000 granules: not a class boundary, so the O(1) search looks one class higher.
        let size = 1000 * 256;
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, size)).unwrap();
        assert_eq!(l.allocate(size, 256).unwrap(), Range::new(0, size));
        // A class whose first block is too small but a later one fits.
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 1001 * 256)).unwrap();
        l.add_chunk(Range::new(1 << 30, 998 * 256)).unwrap();
        assert_eq!(class_index(998), class_index(1001));
        let r = l.allocate(1000 * 256, 256).unwrap();
        assert!(r.start < 1 << 30);
        // And an aligned request that fits only at an aligned start.
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(1 << 20, 4096)).unwrap();
        assert_eq!(l.allocate(4096, 1 << 20).unwrap().start, 1 << 20);
        l.check_invariants().unwrap();
    }

    #[test]
    fn bad_requests_and_frees_change_nothing() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0x4000, 8192)).unwrap();
        let a = l.allocate(1000, 256).unwrap();
        let b = l.allocate(256, 256).unwrap();
        let _guard = l.allocate(256, 256).unwrap();
        l.deallocate(b.start, 256).unwrap();
        assert_eq!(
            l.free_blocks(),
            2,
            "b is free on its own, between two live blocks"
        );
        let (largest, total) = (l.largest_free(), l.free_bytes());
        assert_eq!((largest, total), (8192 - 1024 - 512, 8192 - 1024 - 256));
        fails_cleanly(&mut l, Error::ZeroSize, |l| l.allocate(0, 256));
        fails_cleanly(&mut l, Error::InvalidAlignment { align: 0 }, |l| {
            l.allocate(256, 0)
        });
        fails_cleanly(&mut l, Error::InvalidAlignment { align: 768 }, |l| {
            l.allocate(256, 768)
        });
        fails_cleanly(
            &mut l,
            Error::SizeOverflow {
                requested: u64::MAX,
            },
            |l| l.allocate(u64::MAX, 256),
        );
        fails_cleanly(
            &mut l,
            Error::SizeOverflow {
                requested: (1 << 63) + 1,
            },
            |l| l.allocate((1 << 63) + 1, 1 << 63),
        );
        fails_cleanly(
            &mut l,
            Error::OutOfMemory {
                requested: 1 << 20,
                largest_free: largest,
                total_free: total,
            },
            |l| l.allocate(1 << 20, 256),
        );
        fails_cleanly(&mut l, Error::UnknownStream { stream: 1 }, |l| {
            l.allocate_in(1, 256, 256)
        });
        // Frees.
        fails_cleanly(&mut l, Error::ZeroSize, |l| l.deallocate(a.start, 0));
        fails_cleanly(&mut l, Error::NotAllocated { addr: 0x99 }, |l| {
            l.deallocate(0x99, 256)
        });
        fails_cleanly(
            &mut l,
            Error::NotAllocated {
                addr: a.start + 256,
            },
            |l| l.deallocate(a.start + 256, 256),
        );
        fails_cleanly(&mut l, Error::DoubleFree { addr: b.start }, |l| {
            l.deallocate(b.start, 256)
        });
        fails_cleanly(
            &mut l,
            Error::SizeMismatch {
                addr: a.start,
                allocated: 1024,
                given: 1025,
            },
            |l| l.deallocate(a.start, 1025),
        );
        fails_cleanly(
            &mut l,
            Error::SizeMismatch {
                addr: a.start,
                allocated: 1024,
                given: u64::MAX,
            },
            |l| l.deallocate(a.start, u64::MAX),
        );
        fails_cleanly(&mut l, Error::UnknownStream { stream: 7 }, |l| {
            l.deallocate_in(7, a.start, 1000)
        });
        // Any size in the same granules matches.
        l.deallocate(a.start, 769).unwrap();
        l.check_invariants().unwrap();
    }

    #[test]
    fn a_block_start_merged_away_is_not_allocated_any_more() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 768)).unwrap();
        let mut x: Vec<Range> = (0..3).map(|_| l.allocate(256, 256).unwrap()).collect();
        x.sort();
        let [lo, mid, hi] = [x[0].start, x[1].start, x[2].start];
        // Merged into the block before: `mid` is no longer a block start.
        l.deallocate(lo, 256).unwrap();
        l.deallocate(mid, 256).unwrap();
        assert_eq!(
            l.deallocate(mid, 256),
            Err(Error::NotAllocated { addr: mid })
        );
        assert_eq!(l.deallocate(lo, 256), Err(Error::DoubleFree { addr: lo }));
        // Merged into the block after: that block now starts at `mid`.
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 768)).unwrap();
        for _ in 0..3 {
            l.allocate(256, 256).unwrap();
        }
        l.deallocate(hi, 256).unwrap();
        l.deallocate(mid, 256).unwrap();
        assert_eq!(l.deallocate(hi, 256), Err(Error::NotAllocated { addr: hi }));
        assert_eq!(l.deallocate(mid, 256), Err(Error::DoubleFree { addr: mid }));
        l.check_invariants().unwrap();
    }

    #[test]
    fn bad_chunks_change_nothing() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0x10000, 0x10000)).unwrap();
        fails_cleanly(&mut l, Error::ZeroSize, |l| l.add_chunk(Range::new(0, 0)));
        let misaligned = Error::InvalidAlignment { align: 256 };
        fails_cleanly(&mut l, misaligned, |l| l.add_chunk(Range::new(0x80, 256)));
        fails_cleanly(&mut l, misaligned, |l| l.add_chunk(Range::new(0, 300)));
        fails_cleanly(&mut l, Error::SizeOverflow { requested: 512 }, |l| {
            l.add_chunk(Range::new(u64::MAX - 255, 512))
        });
        let overlap = Error::Unsupported {
            what: "a chunk that overlaps a chunk already added",
        };
        for r in [
            Range::new(0x10000, 256),
            Range::new(0xff00, 512),
            Range::new(0x1ff00, 512),
            Range::new(0, 0x100000),
        ] {
            fails_cleanly(&mut l, overlap, |l| l.add_chunk(r));
        }
        fails_cleanly(&mut l, Error::UnknownStream { stream: 3 }, |l| {
            l.add_chunk_in(3, Range::new(0, 256))
        });
        // Adjacent is fine.
        l.add_chunk(Range::new(0x20000, 256)).unwrap();
        l.add_chunk(Range::new(0xff00, 256)).unwrap();
        l.check_invariants().unwrap();
    }

    #[test]
    fn running_out_of_nodes_changes_nothing_and_frees_still_work() {
        let mut l = CoalescingList::<6, 1>::with_fixed_capacity();
        l.add_chunk(Range::new(0, 1 << 16)).unwrap();
        let a = l.allocate(256, 256).unwrap();
        let b = l.allocate(256, 256).unwrap();
        let c = l.allocate(256, 256).unwrap();
        assert_eq!(l.nodes_in_use(), 5);
        let d = l.allocate(256, 256).unwrap(); // 6 nodes
        let full = Error::MetadataExhausted { capacity: 6 };
        fails_cleanly(&mut l, full, |l| l.allocate(256, 256));
        fails_cleanly(&mut l, full, |l| l.add_chunk(Range::new(1 << 20, 256)));
        // Taking the whole tail needs no node.
        let rest = l.allocate((1 << 16) - 4 * 256, 256).unwrap();
        // Frees need no node.
        for r in [b, d, a, rest, c] {
            l.deallocate(r.start, r.len).unwrap();
            l.check_invariants().unwrap();
        }
        assert_eq!((l.free_blocks(), l.nodes_in_use()), (1, 2));
        // An aligned split needing two nodes with one left fails cleanly too.
        let mut l = CoalescingList::<3, 1>::with_fixed_capacity();
        l.add_chunk(Range::new(256, 1 << 16)).unwrap();
        fails_cleanly(&mut l, Error::MetadataExhausted { capacity: 3 }, |l| {
            l.allocate(256, 4096)
        });
    }

    #[test]
    fn partitions_allocate_and_merge_only_within_themselves() {
        let mut l = CoalescingList::new();
        let s1 = l.add_partition().unwrap();
        let s2 = l.add_partition().unwrap();
        assert_eq!((s1, s2, l.partition_count()), (1, 2, 3));
        l.add_chunk(Range::new(0, 4096)).unwrap();
        let blocks: Vec<Range> = (0..4).map(|_| l.allocate(1024, 256).unwrap()).collect();
        // Free 0 and 2 on s1, 1 on s2, 3 on 0: nothing merges.
        l.deallocate_in(s1, blocks[0].start, 1024).unwrap();
        l.deallocate_in(s2, blocks[1].start, 1024).unwrap();
        l.deallocate_in(s1, blocks[2].start, 1024).unwrap();
        l.deallocate(blocks[3].start, 1024).unwrap();
        assert_eq!(l.free_blocks(), 4);
        assert_eq!(
            (l.free_bytes_in(0), l.free_bytes_in(s1), l.free_bytes_in(s2)),
            (1024, 2048, 1024)
        );
        l.check_invariants().unwrap();
        // Allocation takes only from its own partition.
        assert!(matches!(
            l.allocate_in(s2, 2048, 256),
            Err(Error::OutOfMemory {
                largest_free: 1024,
                total_free: 1024,
                ..
            })
        ));
        assert_eq!(l.find_partition_with_fit(1024, 256, s1), Some(0));
        assert_eq!(l.find_partition_with_fit(1024, 256, 0), Some(s1));
        assert_eq!(l.find_partition_with_fit(2048, 256, 0), None);
        let r = l.allocate_in(s2, 1024, 256).unwrap();
        assert_eq!(r, blocks[1]);
        // Freed again on s1, it merges with both s1 neighbours.
        l.deallocate_in(s1, r.start, 1024).unwrap();
        assert_eq!((l.free_blocks_in(s1), l.largest_free_in(s1)), (1, 3072));
        l.check_invariants().unwrap();
        // Merging s1 into 0 coalesces the whole chunk.
        l.merge_partition(s1, 0).unwrap();
        assert_eq!((l.free_blocks(), l.largest_free_in(0)), (1, 4096));
        assert_eq!(l.free_bytes_in(s1), 0);
        l.check_invariants().unwrap();
        // Errors.
        fails_cleanly(&mut l, Error::UnknownStream { stream: 9 }, |l| {
            l.merge_partition(9, 0)
        });
        fails_cleanly(&mut l, Error::UnknownStream { stream: 9 }, |l| {
            l.merge_partition(0, 9)
        });
        l.merge_partition(0, 0).unwrap();
        assert_eq!(l.find_partition_with_fit(0, 256, 1), None);
    }

    #[test]
    fn merge_partition_coalesces_runs_in_any_order() {
        let mut l = CoalescingList::new();
        let s = [0, l.add_partition().unwrap(), l.add_partition().unwrap()];
        l.add_chunk(Range::new(0, 64 * 256)).unwrap();
        let blocks: Vec<Range> = (0..64).map(|_| l.allocate(256, 256).unwrap()).collect();
        for (i, b) in blocks.iter().enumerate() {
            l.deallocate_in(s[(i * 7 + i / 3) % 3], b.start, 256)
                .unwrap();
        }
        l.check_invariants().unwrap();
        l.merge_partition(s[2], s[1]).unwrap();
        l.check_invariants().unwrap();
        l.merge_partition(s[1], s[0]).unwrap();
        l.check_invariants().unwrap();
        assert_eq!(l.free_blocks(), 1);
        assert_eq!(l.take_free_chunk(), Some(Range::new(0, 64 * 256)));
        l.check_invariants().unwrap();
    }

    #[test]
    fn fixed_partitions_have_a_maximum() {
        let mut l = CoalescingList::<16, 3>::with_fixed_capacity();
        assert_eq!(l.add_partition(), Ok(1));
        assert_eq!(l.add_partition(), Ok(2));
        assert_eq!(
            l.add_partition(),
            Err(Error::MetadataExhausted { capacity: 3 })
        );
        l.add_chunk_in(2, Range::new(0, 4096)).unwrap();
        assert!(l.allocate_in(2, 256, 256).unwrap().end() <= 4096);
        assert!(l.allocate_in(3, 256, 256).is_err());
        l.check_invariants().unwrap();
    }

    #[test]
    fn wholly_free_chunks_are_found_in_any_partition() {
        let mut l = CoalescingList::new();
        let s1 = l.add_partition().unwrap();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        l.add_chunk_in(s1, Range::new(8192, 4096)).unwrap();
        let a = l.allocate(256, 256).unwrap();
        assert_eq!(l.take_free_chunk(), Some(Range::new(8192, 4096)));
        assert_eq!(l.take_free_chunk(), None);
        assert_eq!(l.is_chunk_free(Range::new(8192, 4096)), None);
        assert!(!l.remove_free_chunk(Range::new(0, 4096)));
        l.deallocate_in(s1, a.start, 256).unwrap();
        // Free, though split over two partitions: not wholly free until merged.
        assert_eq!(l.is_chunk_free(Range::new(0, 4096)), Some(false));
        l.merge_partition(0, s1).unwrap();
        assert!(l.remove_free_chunk(Range::new(0, 4096)));
        assert_eq!((l.chunk_bytes(), l.nodes_in_use()), (0, 0));
        l.check_invariants().unwrap();
    }

    #[test]
    fn many_blocks_grow_the_table_and_merge_back() {
        let mut l = CoalescingList::new();
        let n = 5000u64;
        l.add_chunk(Range::new(1 << 30, n * 512)).unwrap();
        let mut live: Vec<Range> = (0..n)
            .map(|i| l.allocate(256 + (i % 2) * 256, 256).unwrap())
            .collect();
        assert_eq!(l.live_blocks(), n as usize);
        l.check_invariants().unwrap();
        // A fixed pseudo-random order.
        let mut x = 12345u64;
        for i in (1..live.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            live.swap(i, (x >> 33) as usize % (i + 1));
        }
        for r in &live {
            l.deallocate(r.start, r.len).unwrap();
        }
        assert_eq!((l.free_blocks(), l.live_blocks()), (1, 0));
        l.check_invariants().unwrap();
        assert!(l.metadata_bytes() >= 2 * CoalescingList::<0, 0>::NODE_BYTES);
    }

    #[test]
    fn a_preallocated_list_does_not_grow_within_its_capacity() {
        let mut l = CoalescingList::with_capacity(1002).unwrap();
        l.check_invariants().unwrap();
        l.add_chunk(Range::new(0, 1000 * 256)).unwrap();
        let bytes = l.metadata_bytes();
        let live: Vec<Range> = (0..1000).map(|_| l.allocate(256, 256).unwrap()).collect();
        assert_eq!((l.nodes_in_use(), l.metadata_bytes()), (1001, bytes));
        l.check_invariants().unwrap();
        for r in live.iter().step_by(2).chain(live.iter().skip(1).step_by(2)) {
            l.deallocate(r.start, 256).unwrap();
        }
        assert_eq!((l.free_blocks(), l.metadata_bytes()), (1, bytes));
        l.check_invariants().unwrap();
    }

    #[test]
    fn clear_forgets_everything() {
        let mut l = CoalescingList::<8, 2>::with_fixed_capacity();
        l.add_partition().unwrap();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        let a = l.allocate(256, 256).unwrap();
        l.clear();
        assert_eq!(snapshot(&l), (0, 0, 0, 0, 0, 0, 0, 0));
        assert_eq!(l.partition_count(), 1);
        assert!(!l.is_live(a.start));
        l.check_invariants().unwrap();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        l.check_invariants().unwrap();
    }

    #[test]
    fn growable_partition_zero_is_empty_before_any_chunk() {
        let mut l = CoalescingList::new();
        assert!(matches!(
            l.allocate(256, 256),
            Err(Error::OutOfMemory { total_free: 0, .. })
        ));
        assert_eq!(l.deallocate(0, 256), Err(Error::NotAllocated { addr: 0 }));
        assert_eq!(l.largest_free(), 0);
        l.merge_partition(0, 0).unwrap();
        let s1 = l.add_partition().unwrap();
        l.merge_partition(0, s1).unwrap();
        l.check_invariants().unwrap();
    }

    #[test]
    fn search_class_is_the_class_of_the_search_size() {
        for u in (1..100_000u64).chain((5..56).flat_map(|s| {
            [
                (1u64 << s) - 1,
                1 << s,
                (1 << s) + 1,
                3 << (s - 1),
                (1 << s) + (1 << (s - 5)),
            ]
        })) {
            assert_eq!(search_class(u), class_index(search_units(u)), "units {u}");
        }
        assert!(search_class(u64::MAX >> GRANULE_SHIFT) < CLASS_COUNT);
    }

    #[test]
    fn handles_free_in_o1_and_refuse_stale_and_foreign_handles() {
        let mut l = CoalescingList::<0, 0, HandlesOnly>::growable();
        l.add_chunk(Range::new(0x10000, 8 * 256)).unwrap();
        let b: Vec<Block> = (0..8)
            .map(|_| l.allocate_block(256, 256).unwrap())
            .collect();
        assert_eq!((l.free_blocks(), l.live_blocks()), (0, 8));
        l.check_invariants().unwrap();
        // Free every other one, then the rest: everything merges back.
        for x in b.iter().step_by(2).chain(b.iter().skip(1).step_by(2)) {
            l.deallocate_block(*x).unwrap();
            l.check_invariants().unwrap();
        }
        assert_eq!(
            (l.free_blocks(), l.live_blocks(), l.nodes_in_use()),
            (1, 0, 2)
        );
        // Every handle is stale now, and reports the start its block had.
        for x in &b {
            let before = (l.free_bytes(), l.free_blocks(), l.nodes_in_use());
            assert!(matches!(
                l.deallocate_block(x.handle()),
                Err(Error::DoubleFree { .. })
            ));
            assert_eq!((l.free_bytes(), l.free_blocks(), l.nodes_in_use()), before);
        }
        assert_eq!(
            l.deallocate_block(b[0]),
            Err(Error::DoubleFree { addr: b[0].start() })
        );
        // The same node and range again: the old handle still does not free the new block.
        let c = l.allocate_block(256, 256).unwrap();
        let stale = b
            .iter()
            .find(|x| x.handle().node == c.handle().node)
            .unwrap();
        assert!(l.deallocate_block(*stale).is_err());
        assert_eq!(l.live_blocks(), 1);
        // A handle of a node this list never used; an unknown partition.
        let foreign = BlockHandle {
            node: 1000,
            generation: NonZeroU32::MIN,
        };
        assert_eq!(
            l.deallocate_block(foreign),
            Err(Error::NotAllocated { addr: 0 })
        );
        assert_eq!(
            l.deallocate_block_in(3, c),
            Err(Error::UnknownStream { stream: 3 })
        );
        l.deallocate_block(c).unwrap();
        l.check_invariants().unwrap();
        assert_eq!(CoalescingList::<0, 0, HandlesOnly>::NODE_BYTES, 32);
        assert_eq!(size_of::<Option<BlockHandle>>(), 8);
    }

    #[test]
    fn an_address_table_list_frees_by_handle_and_by_address_alike() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        let a = l.allocate_block(1000, 256).unwrap();
        let b = l.allocate(1000, 256).unwrap();
        assert!(l.is_live(a.start()) && l.is_live(b.start));
        l.deallocate_block(a).unwrap();
        assert!(!l.is_live(a.start()));
        assert_eq!(
            l.deallocate(a.start(), 1000),
            Err(Error::DoubleFree { addr: a.start() })
        );
        l.deallocate(b.start, 1000).unwrap();
        assert_eq!(l.free_blocks(), 1);
        l.check_invariants().unwrap();
    }

    #[test]
    fn detached_blocks_stay_live_out_of_reach_of_frees_by_address() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 1 << 20)).unwrap();
        let blocks: Vec<Range> = (0..8).map(|i| l.allocate(256 << i, 256).unwrap()).collect();
        let handles: Vec<BlockHandle> = blocks
            .iter()
            .step_by(2)
            .map(|b| l.detach(b.start).unwrap())
            .collect();
        l.check_invariants().unwrap();
        assert_eq!(l.live_blocks(), 8);
        for (b, h) in blocks.iter().step_by(2).zip(&handles) {
            assert!(!l.is_live(b.start));
            assert_eq!(l.detach(b.start), None);
            assert_eq!(l.deallocate_if_live(0, b.start, b.len), Ok(false));
            assert_eq!(
                l.deallocate_block(*h),
                Err(Error::DoubleFree { addr: b.start })
            );
            assert_eq!(l.detached_block(*h), Some(*b));
        }
        // The table still grows and rehashes around them.
        let more: Vec<Range> = (0..100).map(|_| l.allocate(256, 256).unwrap()).collect();
        l.check_invariants().unwrap();
        for b in blocks.iter().skip(1).step_by(2).chain(&more) {
            assert_eq!(l.deallocate_if_live(0, b.start, b.len), Ok(true));
        }
        for h in &handles {
            l.deallocate_detached_in(0, *h).unwrap();
            assert_eq!(
                l.deallocate_detached_in(0, *h),
                Err(Error::NotAllocated { addr: 0 })
            );
        }
        assert_eq!(
            (l.live_blocks(), l.free_blocks(), l.free_bytes()),
            (0, 1, 1 << 20)
        );
        l.check_invariants().unwrap();
    }

    #[test]
    fn best_fit_takes_the_smallest_fitting_candidate_lowest_address_first() {
        // Free blocks of 1010, 1005, 1012 and 1005 units, separated by live spacers, in address
        // order. Classes are 16 units wide here: 1005 lies in [992, 1008), 1010 and 1012 in
        // [1008, 1024).
        let mut l = CoalescingList::new().with_fit(Fit::Best);
        let unit = 256;
        l.add_chunk(Range::new(0, 1 << 24)).unwrap();
        let sizes = [1010, 1005, 1012, 1005];
        let mut free = Vec::new();
        let mut next = 0;
        for units in sizes {
            let b = l.allocate(units * unit, 256).unwrap();
            assert_eq!(b.start, next, "best fit carves from the start");
            l.allocate(unit, 256).unwrap();
            next = b.start + b.len + unit;
            free.push(b);
        }
        for b in &free {
            l.deallocate(b.start, b.len).unwrap();
        }
        // 1001 units: the two 1005-unit blocks, in the request's own class, fit best; the lower
        // one is taken first, each at its start.
        assert_eq!(l.allocate(1001 * unit, 256).unwrap().start, free[1].start);
        assert_eq!(l.allocate(1001 * unit, 256).unwrap().start, free[3].start);
        // Then the smallest of the class above: 1010 units.
        assert_eq!(l.allocate(1001 * unit, 256).unwrap().start, free[0].start);
        // Good fit takes the head of the class above (1012 units), at its end.
        l.set_fit(Fit::Good);
        assert_eq!(
            l.allocate(1001 * unit, 256).unwrap().start,
            free[2].start + 11 * unit
        );
        l.check_invariants().unwrap();
    }

    #[test]
    fn a_fixed_handle_list_needs_no_heap_and_no_table() {
        static EMPTY: CoalescingList<16, 2, HandlesOnly> = CoalescingList::with_fixed_capacity();
        let mut l = CoalescingList::<16, 2, HandlesOnly>::with_fixed_capacity();
        assert!(size_of_val(&l) < size_of::<CoalescingList<16, 2>>());
        let s1 = l.add_partition().unwrap();
        l.add_chunk(Range::new(1 << 20, 1 << 16)).unwrap();
        let a = l.allocate_block(3000, 4096).unwrap();
        assert_eq!((a.start() % 4096, a.range().len), (0, 3072));
        let b = l.allocate_block_in(0, 256, 256).unwrap();
        l.deallocate_block_in(s1, a).unwrap();
        l.deallocate_block(b).unwrap();
        l.merge_partition(s1, 0).unwrap();
        assert_eq!(l.free_blocks(), 1);
        l.check_invariants().unwrap();
        assert_eq!(EMPTY.chunk_count(), 0);
    }

    #[test]
    fn debug_output_summarises() {
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(0, 4096)).unwrap();
        let s = alloc::format!("{l:?}");
        assert!(s.contains("chunk_bytes: 4096"), "{s}");
    }
}
