//! Property tests of the TLSF coalescing list and the pool: long random operation sequences,
//! every invariant checked after every step.
//!
//! Each test runs `CASES` cases of `STEPS` operations (over 100 000 operations per test). After
//! every step: the list's own full check (`check_invariants`: blocks tile their chunks, no two
//! adjacent blocks free in the same partition, free lists and bitmaps exact, live + free ==
//! chunk bytes), and against a model: live blocks do not overlap, lie in a chunk, honour their
//! alignment and have the footprint asked for; the byte counts match the model; a pool holds
//! exactly what it took from its upstream, and never more than its maximum. Invalid calls
//! (foreign address, double free, wrong size, zero size, bad alignment, unknown partition)
//! return the documented error and change nothing. The same for lists and pools that free by
//! handle (`HandlesOnly`, `deallocate_block`): a stale handle (its block freed already, its
//! node perhaps reused) is refused and changes nothing.

// The growable list and pool need the `alloc` feature.
#![cfg(feature = "alloc")]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use strata_core::algo::{
    AddressIndex, BlockHandle, CoalescingList, Fit, HandlesOnly, PartitionId, Pool, PoolConfig,
};
use strata_core::{Error, Range, SimUpstream, Upstream};

const CASES: u32 = 24;
const STEPS: usize = 4500;

/// One random operation; the numbers are reduced modulo the current state when applied.
#[derive(Debug, Clone)]
enum Op {
    Alloc {
        part: u8,
        size: u64,
        align_shift: u8,
    },
    Free {
        pick: usize,
        part: u8,
    },
    FreeWrongSize {
        pick: usize,
    },
    FreeTwice,
    FreeForeign {
        offset: u64,
    },
    FreeInterior {
        pick: usize,
    },
    BadRequest {
        which: u8,
    },
    MergePartition {
        from: u8,
        into: u8,
    },
    Steal {
        size: u64,
    },
    TakeFreeChunk,
}

fn op() -> impl Strategy<Value = Op> {
    // Sizes: mostly small, some up to a few chunks' worth.
    let size = prop_oneof![
        6 => 1u64..=2048,
        3 => 1u64..=16 * 1024,
        1 => 1u64..=96 * 1024,
    ];
    let align = prop_oneof![8 => Just(8u8), 1 => 9u8..=16];
    prop_oneof![
        30 => (any::<u8>(), size, align).prop_map(|(part, size, align_shift)| Op::Alloc {
            part,
            size,
            align_shift
        }),
        24 => (any::<usize>(), any::<u8>()).prop_map(|(pick, part)| Op::Free { pick, part }),
        1 => any::<usize>().prop_map(|pick| Op::FreeWrongSize { pick }),
        1 => Just(Op::FreeTwice),
        1 => any::<u64>().prop_map(|offset| Op::FreeForeign { offset }),
        1 => any::<usize>().prop_map(|pick| Op::FreeInterior { pick }),
        1 => any::<u8>().prop_map(|which| Op::BadRequest { which }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(from, into)| Op::MergePartition { from, into }),
        1 => (1u64..=32 * 1024).prop_map(|size| Op::Steal { size }),
        1 => Just(Op::TakeFreeChunk),
    ]
}

/// The model: live blocks by start (footprint, size asked for, alignment).
#[derive(Default)]
struct Model {
    live: BTreeMap<u64, (u64, u64, u64)>,
    /// The last block freed (for double frees): address and size.
    last_freed: Option<(u64, u64)>,
}

impl Model {
    fn pick(&self, pick: usize) -> Option<(u64, u64, u64)> {
        if self.live.is_empty() {
            return None;
        }
        let (&start, &(len, size, _)) = self.live.iter().nth(pick % self.live.len())?;
        Some((start, len, size))
    }

    /// Records a new live block, checking it against every other and against the chunks.
    fn insert(&mut self, r: Range, size: u64, align: u64, chunks: &[Range]) {
        assert_eq!(r.len, size.next_multiple_of(256), "footprint of {size} B");
        assert_eq!(r.start % align.max(256), 0, "{r:?} not aligned to {align}");
        assert!(
            chunks
                .iter()
                .any(|c| c.start <= r.start && r.end() <= c.end()),
            "{r:?} outside every chunk"
        );
        if let Some((&s, &(l, _, _))) = self.live.range(..r.end()).next_back() {
            assert!(
                s + l <= r.start,
                "{r:?} overlaps live {:?}",
                Range::new(s, l)
            );
        }
        self.live.insert(r.start, (r.len, size, align));
    }

    fn live_bytes(&self) -> u64 {
        self.live.values().map(|v| v.0).sum()
    }
}

/// What a failed call must leave unchanged.
fn snapshot<const N: usize, const P: usize, I: AddressIndex>(
    l: &CoalescingList<N, P, I>,
) -> (u64, u64, u64, usize, usize, usize, Vec<u64>) {
    let per_part = (0..l.partition_count())
        .map(|p| l.free_bytes_in(p as PartitionId))
        .collect();
    (
        l.free_bytes(),
        l.live_bytes(),
        l.chunk_bytes(),
        l.free_blocks(),
        l.live_blocks(),
        l.nodes_in_use(),
        per_part,
    )
}

/// Checks a call that must fail with `expected` and change nothing.
macro_rules! rejected {
    ($list:expr, $call:expr, $expected:pat) => {{
        let before = snapshot($list);
        let got = $call;
        assert!(
            matches!(got, Err($expected)),
            "expected {}, got {got:?}",
            stringify!($expected)
        );
        assert_eq!(snapshot($list), before, "a rejected call changed the state");
    }};
}

/// Bad calls shared by the list and the pool tests: none may change anything.
fn bad_calls<const N: usize, const P: usize>(
    list: &mut CoalescingList<N, P>,
    model: &Model,
    op: &Op,
    chunks: &[Range],
) {
    match *op {
        Op::FreeWrongSize { pick } => {
            if let Some((start, len, _)) = model.pick(pick) {
                rejected!(
                    list,
                    list.deallocate(start, len + 256),
                    Error::SizeMismatch { .. }
                );
                if len > 256 {
                    rejected!(
                        list,
                        list.deallocate(start, len - 256),
                        Error::SizeMismatch { .. }
                    );
                }
                rejected!(list, list.deallocate(start, 0), Error::ZeroSize);
            }
        }
        Op::FreeTwice => {
            if let Some((addr, size)) = model.last_freed
                && !model.live.contains_key(&addr)
            {
                rejected!(
                    list,
                    list.deallocate(addr, size),
                    Error::DoubleFree { .. } | Error::NotAllocated { .. }
                );
            }
        }
        Op::FreeForeign { offset } => {
            // Outside every chunk, or misaligned.
            let addr = if offset % 2 == 0 {
                offset % (1 << 30)
            } else {
                (1 << 40) + 1 + (offset % 255)
            };
            if !chunks.iter().any(|c| c.contains(addr)) || addr % 256 != 0 {
                rejected!(list, list.deallocate(addr, 256), Error::NotAllocated { .. });
            }
        }
        Op::FreeInterior { pick } => {
            if let Some((start, len, _)) = model.pick(pick)
                && len > 256
            {
                rejected!(
                    list,
                    list.deallocate(start + 256, len - 256),
                    Error::NotAllocated { .. } | Error::DoubleFree { .. }
                );
            }
        }
        Op::BadRequest { which } => match which % 4 {
            0 => rejected!(list, list.allocate(0, 256), Error::ZeroSize),
            1 => rejected!(
                list,
                list.allocate(256, 3 << (which % 8)),
                Error::InvalidAlignment { .. }
            ),
            2 => rejected!(
                list,
                list.allocate(u64::MAX - 100, 256),
                Error::SizeOverflow { .. }
            ),
            _ => {
                let part = list.partition_count() as PartitionId;
                rejected!(
                    list,
                    list.allocate_in(part, 256, 256),
                    Error::UnknownStream { .. }
                );
                rejected!(
                    list,
                    list.deallocate_in(part, 0, 256),
                    Error::UnknownStream { .. }
                );
                rejected!(
                    list,
                    list.merge_partition(part, 0),
                    Error::UnknownStream { .. }
                );
            }
        },
        _ => unreachable!("not a bad call"),
    }
}

/// The list-level checks after every step.
fn check_list<const N: usize, const P: usize, I: AddressIndex>(
    list: &CoalescingList<N, P, I>,
    model: &Model,
) {
    if let Err(e) = list.check_invariants() {
        panic!("invariant broken: {e}");
    }
    assert_eq!(list.live_blocks(), model.live.len());
    assert_eq!(list.live_bytes(), model.live_bytes());
    assert_eq!(list.live_bytes() + list.free_bytes(), list.chunk_bytes());
    let per_part: u64 = (0..list.partition_count())
        .map(|p| list.free_bytes_in(p as PartitionId))
        .sum();
    assert_eq!(per_part, list.free_bytes());
}

fn run_list(ops: &[Op], fit: Fit) {
    // Two adjacent chunks (which must never merge) and one far away.
    let chunks = [
        Range::new(1 << 30, 128 * 1024),
        Range::new((1 << 30) + 128 * 1024, 64 * 1024),
        Range::new(1 << 34, 192 * 1024),
    ];
    let mut list = CoalescingList::new().with_fit(fit);
    let parts = 4u8;
    for _ in 1..parts {
        list.add_partition().unwrap();
    }
    for (i, c) in chunks.iter().enumerate() {
        list.add_chunk_in((i % 2) as PartitionId, *c).unwrap();
    }
    let mut present: Vec<Range> = chunks.to_vec();
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Alloc {
                part,
                size,
                align_shift,
            } => {
                let part = (part % parts) as PartitionId;
                let align = 1u64 << align_shift;
                let before = snapshot(&list);
                match list.allocate_in(part, size, align) {
                    Ok(r) => model.insert(r, size, align, &present),
                    Err(Error::OutOfMemory {
                        requested,
                        largest_free,
                        total_free,
                    }) => {
                        assert_eq!(requested, size);
                        assert_eq!(total_free, list.free_bytes_in(part));
                        assert_eq!(largest_free, list.largest_free_in(part));
                        // Out of memory is honest: no free block of the partition can serve it.
                        let need = size.next_multiple_of(256) + align.max(256) - 256;
                        assert!(
                            largest_free < need,
                            "refused {size} B with a {largest_free} B block free"
                        );
                        assert_eq!(snapshot(&list), before);
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Free { pick, part } => {
                if let Some((start, _, size)) = model.pick(pick) {
                    list.deallocate_in((part % parts) as PartitionId, start, size)
                        .unwrap();
                    model.live.remove(&start);
                    model.last_freed = Some((start, size));
                }
            }
            Op::MergePartition { from, into } => {
                let (from, into) = ((from % parts) as PartitionId, (into % parts) as PartitionId);
                let moved = list.free_bytes_in(from);
                let before = list.free_bytes_in(into);
                list.merge_partition(from, into).unwrap();
                if from != into {
                    assert_eq!(list.free_bytes_in(from), 0);
                    assert_eq!(list.free_bytes_in(into), before + moved);
                }
            }
            Op::Steal { size } => {
                let exclude = (size % parts as u64) as PartitionId;
                if let Some(p) = list.find_partition_with_fit(size, 256, exclude) {
                    assert_ne!(p, exclude);
                    let r = list
                        .allocate_in(p, size, 256)
                        .expect("the partition found has a fit");
                    model.insert(r, size, 256, &present);
                }
            }
            Op::TakeFreeChunk => {
                if let Some(c) = list.take_free_chunk() {
                    let i = present
                        .iter()
                        .position(|p| *p == c)
                        .expect("a chunk that was added");
                    assert!(!model.live.keys().any(|&s| c.contains(s)));
                    present.swap_remove(i);
                    // Give it back, in another partition.
                    list.add_chunk_in((c.start % parts as u64) as PartitionId, c)
                        .unwrap();
                    present.push(c);
                }
            }
            _ => bad_calls(&mut list, &model, op, &present),
        }
        check_list(&list, &model);
    }
    // Free everything: each chunk is one free block again once merged into one partition.
    let live: Vec<_> = model
        .live
        .iter()
        .map(|(&s, &(_, size, _))| (s, size))
        .collect();
    for (start, size) in live {
        list.deallocate_in((start % 3) as PartitionId, start, size)
            .unwrap();
        model.live.remove(&start);
    }
    for p in 1..parts {
        list.merge_partition(p as PartitionId, 0).unwrap();
    }
    check_list(&list, &model);
    assert_eq!(list.free_blocks(), present.len());
    for c in &present {
        assert_eq!(list.is_chunk_free(*c), Some(true));
    }
}

/// The pool-level checks after every step.
fn check_pool(pool: &Pool<&mut SimUpstream>, model: &Model, max: Option<u64>) {
    check_list(pool.list(), model);
    assert_eq!(
        pool.pool_size(),
        pool.upstream().in_use(),
        "pool size != bytes taken upstream"
    );
    assert_eq!(pool.chunk_count(), pool.upstream().live_ranges());
    if let Some(max) = max {
        assert!(pool.pool_size() <= max, "pool above its maximum");
    }
}

fn run_pool(ops: &[Op], capacity: u64, initial: u64, max: Option<u64>) {
    let mut sim = SimUpstream::new(capacity);
    let config = PoolConfig {
        initial_size: initial,
        maximum_size: max,
    };
    let mut pool = Pool::new(&mut sim, config).unwrap();
    let mut model = Model::default();
    for op in ops {
        let chunks: Vec<Range> = pool.list().chunks().collect();
        match *op {
            Op::Alloc {
                size, align_shift, ..
            } => {
                let align = 1u64 << align_shift;
                let live_before = pool.live_bytes();
                match pool.allocate(size, align) {
                    Ok(r) => {
                        let chunks: Vec<Range> = pool.list().chunks().collect();
                        model.insert(r, size, align, &chunks);
                    }
                    Err(Error::OutOfMemory { requested, .. }) => {
                        assert_eq!(requested, size);
                        assert_eq!(pool.live_bytes(), live_before);
                        // The pool trimmed before giving up: no chunk is wholly free.
                        assert!(
                            pool.list()
                                .chunks()
                                .all(|c| pool.list().is_chunk_free(c) == Some(false)),
                            "out of memory with a wholly free chunk kept"
                        );
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Free { pick, .. } => {
                if let Some((start, _, size)) = model.pick(pick) {
                    pool.deallocate(start, size).unwrap();
                    model.live.remove(&start);
                    model.last_freed = Some((start, size));
                }
            }
            Op::TakeFreeChunk | Op::MergePartition { .. } => {
                let free_chunks = chunks
                    .iter()
                    .filter(|&&c| pool.list().is_chunk_free(c) == Some(true));
                let expected: u64 = free_chunks.map(|c| c.len).sum();
                assert_eq!(pool.trim().unwrap(), expected);
            }
            Op::Steal { size } => {
                // Grow the upstream a little now and then, as a device whose other users free.
                let cap = pool.upstream().capacity();
                pool.upstream_mut()
                    .set_capacity(cap + (size % 4096).next_multiple_of(256));
            }
            _ => {
                // Bad calls, through the pool.
                let before = (snapshot(pool.list()), pool.upstream().in_use());
                match *op {
                    Op::FreeWrongSize { pick } => {
                        if let Some((start, len, _)) = model.pick(pick) {
                            assert!(matches!(
                                pool.deallocate(start, len + 1),
                                Err(Error::SizeMismatch { .. })
                            ));
                        }
                    }
                    Op::FreeTwice => {
                        if let Some((addr, size)) = model.last_freed
                            && !model.live.contains_key(&addr)
                        {
                            assert!(matches!(
                                pool.deallocate(addr, size),
                                Err(Error::DoubleFree { .. } | Error::NotAllocated { .. })
                            ));
                        }
                    }
                    Op::FreeForeign { offset } => {
                        let addr = offset % (1 << 39);
                        assert!(matches!(
                            pool.deallocate(addr, 256),
                            Err(Error::NotAllocated { .. })
                        ));
                    }
                    Op::FreeInterior { pick } => {
                        if let Some((start, len, _)) = model.pick(pick)
                            && len > 256
                        {
                            assert!(pool.deallocate(start + 256, len - 256).is_err());
                        }
                    }
                    Op::BadRequest { which } => {
                        let got = match which % 3 {
                            0 => pool.allocate(0, 256),
                            1 => pool.allocate(256, 3 << (which % 8)),
                            _ => pool.allocate(u64::MAX - 100, 256),
                        };
                        assert!(matches!(
                            got,
                            Err(Error::ZeroSize
                                | Error::InvalidAlignment { .. }
                                | Error::SizeOverflow { .. })
                        ));
                    }
                    _ => unreachable!(),
                }
                assert_eq!((snapshot(pool.list()), pool.upstream().in_use()), before);
            }
        }
        check_pool(&pool, &model, max);
    }
    let live: Vec<_> = model
        .live
        .iter()
        .map(|(&s, &(_, size, _))| (s, size))
        .collect();
    for (start, size) in live {
        pool.deallocate(start, size).unwrap();
        model.live.remove(&start);
    }
    check_pool(&pool, &model, max);
    pool.trim().unwrap();
    assert_eq!(pool.pool_size(), 0);
    drop(pool);
    assert_eq!(sim.in_use(), 0, "the pool gave everything back");
}

/// The handle-based list: blocks are allocated with `allocate_block_in` and freed with their
/// `BlockHandle` (into any partition); stale handles (of blocks freed already, whose nodes may
/// hold other blocks since) are refused and change nothing. The same invariants after every
/// step. `N` > 0: a fixed node store, which may run out (an error that changes nothing).
fn run_handles<const N: usize, const P: usize>(
    ops: &[Op],
    mut list: CoalescingList<N, P, HandlesOnly>,
) {
    let chunks = [
        Range::new(1 << 30, 128 * 1024),
        Range::new((1 << 30) + 128 * 1024, 64 * 1024),
        Range::new(1 << 34, 192 * 1024),
    ];
    let parts = 4u8;
    for _ in 1..parts {
        list.add_partition().unwrap();
    }
    for (i, c) in chunks.iter().enumerate() {
        list.add_chunk_in((i % 2) as PartitionId, *c).unwrap();
    }
    let mut present: Vec<Range> = chunks.to_vec();
    let mut model = Model::default();
    let mut handles: HashMap<u64, BlockHandle> = HashMap::new();
    // Handles of blocks freed already, most recent last.
    let mut stale: Vec<(u64, BlockHandle)> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc {
                part,
                size,
                align_shift,
            } => {
                let part = (part % parts) as PartitionId;
                let align = 1u64 << align_shift;
                let before = snapshot(&list);
                match list.allocate_block_in(part, size, align) {
                    Ok(b) => {
                        model.insert(b.range(), size, align, &present);
                        assert!(handles.insert(b.start(), b.handle()).is_none());
                    }
                    Err(Error::OutOfMemory { largest_free, .. }) => {
                        let need = size.next_multiple_of(256) + align.max(256) - 256;
                        assert!(largest_free < need);
                        assert_eq!(snapshot(&list), before);
                    }
                    Err(Error::MetadataExhausted { capacity }) => {
                        assert_eq!(Some(capacity), list.node_capacity());
                        assert_eq!(snapshot(&list), before);
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Free { pick, part } => {
                if let Some((start, _, _)) = model.pick(pick) {
                    let h = handles.remove(&start).expect("a handle per live block");
                    list.deallocate_block_in((part % parts) as PartitionId, h)
                        .unwrap();
                    model.live.remove(&start);
                    stale.push((start, h));
                }
            }
            Op::FreeTwice | Op::FreeInterior { .. } | Op::FreeWrongSize { .. } => {
                // Every stale handle is refused, whatever its node holds now.
                for &(start, h) in stale.iter().rev().take(4) {
                    let before = snapshot(&list);
                    let got = list.deallocate_block(h);
                    assert!(
                        matches!(got, Err(Error::DoubleFree { .. })),
                        "stale handle of {start:#x}: {got:?}"
                    );
                    assert_eq!(snapshot(&list), before);
                }
            }
            Op::FreeForeign { .. } => {
                // A live block's handle, into a partition that does not exist.
                let part = list.partition_count() as PartitionId;
                if let Some(&h) = handles.values().next() {
                    rejected!(
                        &list,
                        list.deallocate_block_in(part, h),
                        Error::UnknownStream { .. }
                    );
                }
            }
            Op::BadRequest { which } => {
                let got = match which % 4 {
                    0 => list.allocate_block(0, 256),
                    1 => list.allocate_block(256, 3 << (which % 8)),
                    2 => list.allocate_block(u64::MAX - 100, 256),
                    _ => list.allocate_block_in(list.partition_count() as PartitionId, 256, 256),
                };
                assert!(matches!(
                    got,
                    Err(Error::ZeroSize
                        | Error::InvalidAlignment { .. }
                        | Error::SizeOverflow { .. }
                        | Error::UnknownStream { .. })
                ));
            }
            Op::MergePartition { from, into } => {
                let (from, into) = ((from % parts) as PartitionId, (into % parts) as PartitionId);
                list.merge_partition(from, into).unwrap();
            }
            Op::Steal { size } => {
                let exclude = (size % parts as u64) as PartitionId;
                if let Some(p) = list.find_partition_with_fit(size, 256, exclude) {
                    match list.allocate_block_in(p, size, 256) {
                        Ok(b) => {
                            model.insert(b.range(), size, 256, &present);
                            handles.insert(b.start(), b.handle());
                        }
                        Err(Error::MetadataExhausted { .. }) => {}
                        Err(e) => panic!("the partition found has a fit: {e}"),
                    }
                }
            }
            Op::TakeFreeChunk => {
                if let Some(c) = list.take_free_chunk() {
                    let i = present.iter().position(|p| *p == c).unwrap();
                    present.swap_remove(i);
                    if list
                        .add_chunk_in((c.start % parts as u64) as PartitionId, c)
                        .is_ok()
                    {
                        present.push(c);
                    }
                }
            }
        }
        check_list(&list, &model);
    }
    for (start, h) in handles.drain() {
        list.deallocate_block_in((start % 3) as PartitionId, h)
            .unwrap();
        model.live.remove(&start);
    }
    for p in 1..parts {
        list.merge_partition(p as PartitionId, 0).unwrap();
    }
    check_list(&list, &model);
    assert_eq!(list.free_blocks(), present.len());
    for c in &present {
        assert_eq!(list.is_chunk_free(*c), Some(true));
    }
}

/// A pool whose list frees by handle only: growth, trim, out of memory, every invariant.
fn run_handle_pool(ops: &[Op], capacity: u64, initial: u64, max: Option<u64>) {
    let mut sim = SimUpstream::new(capacity);
    let config = PoolConfig {
        initial_size: initial,
        maximum_size: max,
    };
    let list = CoalescingList::<0, 0, HandlesOnly>::growable();
    let mut pool = Pool::with_list(&mut sim, list, config).unwrap();
    let mut model = Model::default();
    let mut handles: HashMap<u64, BlockHandle> = HashMap::new();
    for op in ops {
        match *op {
            Op::Alloc {
                size, align_shift, ..
            } => {
                let align = 1u64 << align_shift;
                match pool.allocate_block(size, align) {
                    Ok(b) => {
                        let chunks: Vec<Range> = pool.list().chunks().collect();
                        model.insert(b.range(), size, align, &chunks);
                        handles.insert(b.start(), b.handle());
                    }
                    Err(Error::OutOfMemory { .. }) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Free { pick, .. } => {
                if let Some((start, _, _)) = model.pick(pick) {
                    pool.deallocate_block(handles.remove(&start).unwrap())
                        .unwrap();
                    model.live.remove(&start);
                }
            }
            Op::TakeFreeChunk => {
                pool.trim().unwrap();
            }
            _ => {}
        }
        check_list(pool.list(), &model);
        assert_eq!(pool.pool_size(), pool.upstream().in_use());
        if let Some(max) = max {
            assert!(pool.pool_size() <= max);
        }
    }
    for (start, h) in handles.drain() {
        pool.deallocate_block(h).unwrap();
        model.live.remove(&start);
    }
    check_list(pool.list(), &model);
    pool.trim().unwrap();
    assert_eq!(pool.pool_size(), 0);
    drop(pool);
    assert_eq!(sim.in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The list with four partitions and three chunks (two adjacent).
    #[test]
    fn list_keeps_every_invariant(ops in prop::collection::vec(op(), STEPS)) {
        run_list(&ops, Fit::Good);
    }

    /// The same list picking blocks by bounded best fit.
    #[test]
    fn best_fit_list_keeps_every_invariant(ops in prop::collection::vec(op(), STEPS)) {
        run_list(&ops, Fit::Best);
    }

    /// A fixed handle-only list picking blocks by bounded best fit.
    #[test]
    fn best_fit_handle_list_keeps_every_invariant(ops in prop::collection::vec(op(), STEPS)) {
        run_handles(
            &ops,
            CoalescingList::<96, 4, HandlesOnly>::with_fixed_capacity().with_fit(Fit::Best),
        );
    }

    /// A pool with a maximum, on a small simulated device: growth, trim, out of memory.
    #[test]
    fn capped_pool_keeps_every_invariant(
        ops in prop::collection::vec(op(), STEPS),
        initial in 0u64..64 * 1024,
    ) {
        run_pool(&ops, 1 << 20, initial, Some(256 * 1024));
    }

    /// A pool without a maximum whose upstream runs out: halving retries and trim-and-retry.
    #[test]
    fn uncapped_pool_on_a_small_device_keeps_every_invariant(
        ops in prop::collection::vec(op(), STEPS),
        capacity in 128u64 * 1024..384 * 1024,
    ) {
        run_pool(&ops, capacity, 16 * 1024, None);
    }

    /// The growable handle-only list, four partitions, three chunks: frees by handle, stale
    /// handles refused.
    #[test]
    fn handle_list_keeps_every_invariant(ops in prop::collection::vec(op(), STEPS)) {
        run_handles(&ops, CoalescingList::<0, 0, HandlesOnly>::growable());
    }

    /// A fixed handle-only list (96 nodes, 4 partitions inline): the same, plus running out
    /// of nodes.
    #[test]
    fn fixed_handle_list_keeps_every_invariant(ops in prop::collection::vec(op(), STEPS)) {
        run_handles(&ops, CoalescingList::<96, 4, HandlesOnly>::with_fixed_capacity());
    }

    /// A capped pool over a handle-only list.
    #[test]
    fn handle_pool_keeps_every_invariant(
        ops in prop::collection::vec(op(), STEPS),
        initial in 0u64..64 * 1024,
    ) {
        run_handle_pool(&ops, 1 << 20, initial, Some(256 * 1024));
    }
}

/// A fixed-capacity list (no heap for nodes) under the same random load: running out of nodes
/// is an error that changes nothing.
#[test]
fn fixed_list_reports_exhaustion_without_changing_state() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // Three allocations for each free, so the live blocks pile up to the node limit (with
    // even odds, the number of live blocks is a random walk that may never get there).
    let strategy = prop::collection::vec(
        (1u64..=8192, (0u8..4).prop_map(|k| k != 0), any::<usize>()),
        3000,
    );
    runner
        .run(&strategy, |ops| {
            let mut list = Box::new(CoalescingList::<48, 1>::with_fixed_capacity());
            list.add_chunk(Range::new(1 << 20, 1 << 20)).unwrap();
            let mut model = Model::default();
            let mut exhausted = 0;
            for (size, alloc, pick) in ops {
                if alloc {
                    let before = snapshot(&*list);
                    match list.allocate(size, 256) {
                        Ok(r) => model.insert(r, size, 256, &[Range::new(1 << 20, 1 << 20)]),
                        Err(Error::MetadataExhausted { capacity: 48 }) => {
                            exhausted += 1;
                            assert_eq!(snapshot(&*list), before);
                        }
                        Err(Error::OutOfMemory { .. }) => assert_eq!(snapshot(&*list), before),
                        Err(e) => panic!("unexpected {e}"),
                    }
                } else if let Some((start, _, size)) = model.pick(pick) {
                    list.deallocate(start, size).unwrap();
                    model.live.remove(&start);
                }
                check_list(&*list, &model);
            }
            assert!(exhausted > 0, "the load should exhaust 48 nodes");
            Ok(())
        })
        .unwrap();
}

/// The simulated upstream agrees with the pool's idea of its chunks.
#[test]
fn pool_chunks_are_the_upstream_ranges() {
    let mut sim = SimUpstream::new(1 << 20);
    let mut pool = Pool::new(&mut sim, PoolConfig::new(4096)).unwrap();
    let a = pool.allocate(20_000, 256).unwrap();
    let chunks: Vec<Range> = pool.list().chunks().collect();
    assert_eq!(chunks.len(), 2);
    pool.deallocate(a.start, 20_000).unwrap();
    pool.release_all().unwrap();
    drop(pool);
    for c in chunks {
        assert!(sim.deallocate(c).is_err(), "{c:?} was given back already");
    }
}
