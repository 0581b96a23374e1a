//! Property tests of the fixed-size list, binning and the arena: long random operation
//! sequences, every invariant checked after every step.
//!
//! Each test runs `CASES` cases of `STEPS` operations (over 100 000 operations per algorithm).
//! After every step, against a model of the live blocks: no two live blocks overlap, every
//! block honours its alignment and has the length asked for; every byte taken from the upstream
//! is accounted for (live + free == bytes held, and the upstream's own count agrees); the
//! algorithm's full audit passes (free lists, lookup tables, and for the arena the superblocks
//! the global arena records are exactly those the sub-arenas hold). Invalid calls (zero size,
//! bad alignment, too large, foreign address, interior address, double free, wrong size) and
//! failed allocations return an error and change nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_core::algo::{
    Arena, ArenaConfig, Binning, FixedBlocks, FixedConfig, FixedSizeList, FixedStats, Heap, Inline,
    MetaStorage,
};
use strata_core::{Error, Range, SimUpstream};

const CASES: u32 = 64;
const STEPS: usize = 1600;
const MIB: u64 = 1 << 20;

/// One random operation; the numbers are reduced modulo the current state when applied.
#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: u64,
        align_shift: u8,
        sub: u8,
    },
    Free {
        pick: usize,
        sub: u8,
    },
    FreeWrongSize {
        pick: usize,
        delta: u64,
    },
    FreeInterior {
        pick: usize,
        offset: u64,
    },
    FreeTwice {
        pick: usize,
    },
    FreeForeign {
        addr: u64,
    },
    /// Fixed: trim. Binning: trim. Arena: reclaim.
    Trim,
    /// Fixed: grow. Binning: add a bin. Arena: an allocation straight from the global arena.
    Grow {
        size: u64,
    },
}

fn ops(small: u64, large: u64) -> impl Strategy<Value = Vec<Op>> {
    let size = prop_oneof![
        8 => 1..=small,
        2 => 1..=large,
        1 => Just(0u64),
    ];
    let op = prop_oneof![
        10 => (size, 0u8..=13, any::<u8>())
            .prop_map(|(size, align_shift, sub)| Op::Alloc { size, align_shift, sub }),
        8 => (any::<usize>(), any::<u8>()).prop_map(|(pick, sub)| Op::Free { pick, sub }),
        1 => (any::<usize>(), 1u64..=8).prop_map(|(pick, k)| Op::FreeWrongSize { pick, delta: k * 256 }),
        1 => (any::<usize>(), 1u64..=4096).prop_map(|(pick, offset)| Op::FreeInterior { pick, offset }),
        1 => any::<usize>().prop_map(|pick| Op::FreeTwice { pick }),
        1 => prop_oneof![Just(0u64), Just(256), Just(u64::MAX - 255), 1u64..(1 << 40)]
            .prop_map(|addr| Op::FreeForeign { addr }),
        1 => Just(Op::Trim),
        1 => (1..=large).prop_map(|size| Op::Grow { size }),
    ];
    prop::collection::vec(op, STEPS)
}

/// The live blocks: start -> (range, size asked for).
#[derive(Default)]
struct Model {
    live: BTreeMap<u64, (Range, u64)>,
    /// Addresses freed and not handed out again since.
    freed: Vec<u64>,
}

impl Model {
    /// Records a new block, checking that it overlaps no live block.
    fn insert(&mut self, r: Range, size: u64, align: u64) {
        assert!(
            r.len > 0 && r.len == size.div_ceil(256) * 256,
            "{r:?} for {size}"
        );
        assert_eq!(r.start % align.max(256), 0, "{r:?} not aligned to {align}");
        if let Some((_, (prev, _))) = self.live.range(..r.start).next_back() {
            assert!(prev.end() <= r.start, "{prev:?} overlaps {r:?}");
        }
        if let Some((_, (next, _))) = self.live.range(r.start..).next() {
            assert!(r.end() <= next.start, "{r:?} overlaps {next:?}");
        }
        self.live.insert(r.start, (r, size));
        self.freed.retain(|&a| a != r.start);
    }

    fn pick(&self, pick: usize) -> Option<(Range, u64)> {
        if self.live.is_empty() {
            return None;
        }
        self.live.values().nth(pick % self.live.len()).copied()
    }

    fn remove(&mut self, start: u64) {
        self.live.remove(&start);
        self.freed.push(start);
        if self.freed.len() > 64 {
            self.freed.remove(0);
        }
    }

    fn bytes(&self) -> u64 {
        self.live.values().map(|(r, _)| r.len).sum()
    }

    /// A bad free to try, from the op: (address, size), or `None` when the op is no bad free
    /// or there is nothing to aim at.
    fn bad_free(&self, op: &Op) -> Option<(u64, u64)> {
        match *op {
            Op::FreeWrongSize { pick, delta } => {
                let (r, _) = self.pick(pick)?;
                // Larger by `delta`, or (when possible) smaller by it: never the same 256-byte
                // granules.
                let size = if pick % 2 == 0 || r.len <= delta {
                    r.len + delta
                } else {
                    r.len - delta
                };
                Some((r.start, size))
            }
            Op::FreeInterior { pick, offset } => {
                let (r, size) = self.pick(pick)?;
                (offset < r.len).then_some((r.start + offset, size))
            }
            Op::FreeTwice { pick } => {
                let candidates: Vec<u64> = self
                    .freed
                    .iter()
                    .copied()
                    .filter(|a| !self.live.contains_key(a))
                    .collect();
                let addr = *candidates.get(pick % candidates.len().max(1))?;
                Some((addr, 256))
            }
            Op::FreeForeign { addr } => {
                let inside = self
                    .live
                    .range(..=addr)
                    .next_back()
                    .is_some_and(|(_, (r, _))| r.contains(addr));
                (!inside).then_some((addr, 256))
            }
            _ => None,
        }
    }
}

fn align_of(shift: u8) -> u64 {
    1u64 << shift
}

// ---------------------------------------------------------------------------------------------
// Fixed-size list
// ---------------------------------------------------------------------------------------------

fn fixed_snapshot<M: MetaStorage>(
    l: &FixedSizeList<SimUpstream, M>,
) -> (FixedStats, Vec<Range>, u64) {
    (
        l.stats(),
        l.blocks().chunks().collect(),
        l.upstream().in_use(),
    )
}

fn fixed_check<M: MetaStorage>(l: &FixedSizeList<SimUpstream, M>, model: &Model) {
    l.blocks().audit().unwrap();
    let s = l.stats();
    let bs = l.config().block_size();
    assert_eq!(s.live_blocks, model.live.len() as u64);
    assert_eq!(s.requested_bytes, model.bytes());
    assert_eq!((s.live_blocks + s.free_blocks) * bs, s.upstream_bytes);
    assert_eq!(s.upstream_bytes, l.upstream().in_use());
    assert_eq!(s.chunks * l.config().chunk_bytes(), s.upstream_bytes);
    for (r, _) in model.live.values() {
        assert!(l.blocks().contains(r.start) && l.blocks().contains(r.end() - 1));
    }
}

fn run_fixed<M: MetaStorage>(mut l: FixedSizeList<SimUpstream, M>, ops: &[Op]) {
    let mut model = Model::default();
    let bs = l.config().block_size();
    for op in ops {
        match *op {
            Op::Alloc {
                size, align_shift, ..
            } => {
                let align = align_of(align_shift);
                let before = fixed_snapshot(&l);
                match l.allocate(size, align) {
                    Ok(r) => model.insert(r, size, align),
                    Err(e) => {
                        match e {
                            Error::ZeroSize => assert_eq!(size, 0),
                            Error::InvalidAlignment { .. } => assert!(align > 256),
                            Error::TooLarge { .. } => assert!(size > bs),
                            Error::OutOfMemory { .. } | Error::MetadataExhausted { .. } => {}
                            other => panic!("unexpected {other:?}"),
                        }
                        assert_eq!(fixed_snapshot(&l), before);
                    }
                }
            }
            Op::Free { pick, .. } => {
                if let Some((r, size)) = model.pick(pick) {
                    // Free with the size asked for or with the range's length.
                    let given = if pick % 2 == 0 { size } else { r.len };
                    l.deallocate(r.start, given).unwrap();
                    model.remove(r.start);
                }
            }
            Op::Trim => {
                let before = l.stats();
                let released = l.trim().unwrap();
                let after = l.stats();
                assert_eq!(before.upstream_bytes - after.upstream_bytes, released);
                assert_eq!(released % l.config().chunk_bytes(), 0);
                assert_eq!(after.live_blocks, before.live_blocks);
            }
            Op::Grow { .. } => {
                let before = fixed_snapshot(&l);
                if l.grow().is_err() {
                    assert_eq!(fixed_snapshot(&l), before);
                }
            }
            _ => {
                if let Some((addr, size)) = model.bad_free(op) {
                    let before = fixed_snapshot(&l);
                    assert!(l.deallocate(addr, size).is_err(), "{op:?} accepted");
                    assert_eq!(fixed_snapshot(&l), before);
                }
            }
        }
        fixed_check(&l, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Heap metadata, a capped upstream (so growing fails at times), 768-byte blocks (not a
    /// power of two: the divide path).
    #[test]
    fn fixed_list_heap(ops in ops(768, 1024)) {
        let config = FixedConfig::new(768, 8).unwrap();
        let list: FixedSizeList<_, Heap> = FixedSizeList::new(SimUpstream::new(768 * 8 * 10), config);
        run_fixed(list, &ops);
    }

    /// Inline metadata that runs out (MetadataExhausted), power-of-two blocks.
    #[test]
    fn fixed_list_inline(ops in ops(1024, 1536)) {
        let config = FixedConfig::new(1024, 4).unwrap();
        let list: FixedSizeList<_, Inline<64, 12>> = FixedSizeList::new(SimUpstream::new(1 << 30), config);
        run_fixed(list, &ops);
    }
}

// ---------------------------------------------------------------------------------------------
// Binning
// ---------------------------------------------------------------------------------------------

type Bins = Binning<SimUpstream, Heap, 16>;

fn binning_snapshot(
    b: &Bins,
) -> (
    strata_core::algo::BinningStats,
    Vec<Range>,
    u64,
    Vec<Vec<Range>>,
) {
    (
        b.stats(),
        b.large_allocations().to_vec(),
        b.upstream().in_use(),
        b.bins().iter().map(|bin| bin.chunks().collect()).collect(),
    )
}

fn binning_check(b: &Bins, model: &Model) {
    b.audit().unwrap();
    let s = b.stats();
    assert_eq!(s.upstream_bytes(), b.upstream().in_use());
    assert_eq!(s.live_block_bytes + s.free_block_bytes, s.chunk_bytes);
    assert_eq!(s.live_blocks + s.large_allocations, model.live.len() as u64);
    let large: u64 = b.large_allocations().iter().map(|r| r.len).sum();
    assert_eq!(large, s.large_bytes);
    let requested: u64 = b.bins().iter().map(|bin| bin.stats().requested_bytes).sum();
    assert_eq!(requested + large, model.bytes());
    // Every live block is in the bin its size maps to, or a large allocation, or (added
    // before a smaller bin) in a larger bin.
    for (r, size) in model.live.values() {
        let in_large = b
            .large_allocations()
            .binary_search_by_key(&r.start, |l| l.start)
            .is_ok();
        let in_bin = b.bins().iter().any(|bin| bin.contains(r.start));
        assert!(
            in_large != in_bin,
            "{r:?} ({size} B) owned by neither or both"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn binning(ops in ops(4096, 20_000), extra_bins in prop::collection::vec(1u64..=16_384, 0..3)) {
        // Power-of-two bins 256 B ..= 4 KiB, a few odd ones, a capped upstream.
        let mut b: Bins = Binning::with_exponents(SimUpstream::new(3 * MIB), 8, 12).unwrap();
        for s in extra_bins {
            b.add_bin(s).unwrap();
        }
        let mut model = Model::default();
        let mut added = 0u64;
        for op in &ops {
            match *op {
                Op::Alloc { size, align_shift, .. } => {
                    let align = align_of(align_shift);
                    let before = binning_snapshot(&b);
                    match b.allocate(size, align) {
                        Ok(r) => model.insert(r, size, align),
                        Err(e) => {
                            match e {
                                Error::ZeroSize => assert_eq!(size, 0),
                                Error::OutOfMemory { .. } | Error::MetadataExhausted { .. } => {}
                                other => panic!("unexpected {other:?}"),
                            }
                            assert_eq!(binning_snapshot(&b), before);
                        }
                    }
                }
                Op::Free { pick, .. } => {
                    if let Some((r, size)) = model.pick(pick) {
                        let given = if pick % 2 == 0 { size } else { r.len };
                        b.deallocate(r.start, given).unwrap();
                        model.remove(r.start);
                    }
                }
                Op::Trim => {
                    let before = b.stats();
                    let released = b.trim().unwrap();
                    assert_eq!(before.chunk_bytes - b.stats().chunk_bytes, released);
                }
                Op::Grow { size } => {
                    // A bin added while blocks are live (at most a few per case).
                    if added < 4 {
                        added += 1;
                        b.add_bin(size).unwrap();
                    }
                }
                _ => {
                    if let Some((addr, size)) = model.bad_free(op) {
                        let before = binning_snapshot(&b);
                        prop_assert!(b.deallocate(addr, size).is_err(), "{:?} accepted", op);
                        prop_assert_eq!(binning_snapshot(&b), before);
                    }
                }
            }
            binning_check(&b, &model);
        }
        let up = b.upstream().in_use();
        prop_assert_eq!(up, b.stats().upstream_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Arena
// ---------------------------------------------------------------------------------------------

const SUBS: usize = 3;
type TestArena = Arena<SimUpstream, SUBS>;

/// The superblocks; per sub-arena live and free bytes; the global arena's large and free
/// bytes. A failed call changes none of it, except that a failed allocation may move free
/// superblocks back to the global arena.
fn arena_snapshot(a: &TestArena) -> (Vec<Range>, Vec<(u64, u64)>, u64, u64) {
    (
        a.global().superblocks().collect(),
        (0..SUBS)
            .map(|i| {
                let s = a.sub_arena(i).unwrap();
                (s.live_bytes(), s.free_bytes())
            })
            .collect(),
        a.global().large_bytes(),
        a.global().free_bytes(),
    )
}

fn arena_check(a: &TestArena, model: &Model) {
    a.audit().unwrap();
    let g = a.global();
    let arena_size = g.arena().len;
    assert_eq!(a.upstream().in_use(), arena_size);
    let (mut live, mut free, mut held) = (0, 0, 0);
    for i in 0..SUBS {
        let s = a.sub_arena(i).unwrap();
        live += s.live_bytes();
        free += s.free_bytes();
        held += s.superblock_bytes();
        assert_eq!(s.live_bytes() + s.free_bytes(), s.superblock_bytes());
    }
    assert_eq!(held, g.superblock_bytes());
    assert_eq!(live + g.large_bytes(), model.bytes());
    // Every byte of the arena: free in the global arena, in a superblock, or a large block.
    assert_eq!(g.free_bytes() + held + g.large_bytes(), arena_size);
    assert_eq!(live + free + g.free_bytes() + g.large_bytes(), arena_size);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn arena(ops in ops(64 * 1024, 3 * MIB)) {
        let mut a: TestArena =
            Arena::new(SimUpstream::new(1 << 30), ArenaConfig::new(12 * MIB)).unwrap();
        let mut model = Model::default();
        for op in &ops {
            let request = match *op {
                Op::Alloc { size, align_shift, sub } => {
                    Some((sub as usize % SUBS, size, align_of(align_shift)))
                }
                // Straight to the global arena.
                Op::Grow { size } => Some((0, size.max(MIB + 1), 256)),
                _ => None,
            };
            if let Some((sub, size, align)) = request {
                let before = arena_snapshot(&a);
                match a.allocate(sub, size, align) {
                    Ok(r) => model.insert(r, size, align),
                    Err(e) => {
                        match e {
                            Error::ZeroSize => prop_assert_eq!(size, 0),
                            Error::OutOfMemory { requested, total_free, largest_free } => {
                                prop_assert_eq!(requested, size);
                                prop_assert!(largest_free <= total_free);
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        // Live blocks unchanged; only free superblocks may have gone back.
                        let after = arena_snapshot(&a);
                        prop_assert_eq!(after.2, before.2);
                        for (x, y) in after.1.iter().zip(&before.1) {
                            prop_assert_eq!(x.0, y.0);
                        }
                        prop_assert!(after.0.iter().all(|s| before.0.contains(s)));
                    }
                }
            } else {
                match *op {
                    Op::Free { pick, sub } => {
                        if let Some((r, size)) = model.pick(pick) {
                            let given = if pick % 2 == 0 { size } else { r.len };
                            a.deallocate(sub as usize % SUBS, r.start, given).unwrap();
                            model.remove(r.start);
                        }
                    }
                    Op::Trim => {
                        let before = a.global().free_bytes();
                        let moved = a.reclaim().unwrap();
                        prop_assert_eq!(a.global().free_bytes(), before + moved);
                    }
                    _ => {
                        if let Some((addr, size)) = model.bad_free(op) {
                            let before = arena_snapshot(&a);
                            for sub in 0..SUBS {
                                prop_assert!(a.deallocate(sub, addr, size).is_err(), "{:?} accepted", op);
                            }
                            prop_assert_eq!(arena_snapshot(&a), before);
                        }
                    }
                }
            }
            arena_check(&a, &model);
        }
    }
}

/// The sub-arenas and the global arena used directly, the way a thread-safe resource does
/// (each behind its own lock): a small deterministic interleaving of two "threads".
#[test]
fn global_and_sub_arenas_compose_without_the_arena_type() {
    use strata_core::algo::{GlobalArena, SubArena};
    let mut global: GlobalArena = GlobalArena::new(Range::new(1 << 32, 8 * MIB), MIB).unwrap();
    let mut subs: [SubArena; 2] = [SubArena::new(), SubArena::new()];
    let mut live = Vec::new();
    for i in 0..64u64 {
        let t = (i % 2) as usize;
        let size = 256 * (1 + i * 37 % 512);
        let r = match subs[t].try_allocate(size, 256).unwrap() {
            Some(r) => r,
            None => subs[t].allocate(&mut global, size, 256).unwrap(),
        };
        live.push((t, r));
    }
    // Free everything from the *other* thread: find the owner as the resource would.
    for (t, r) in live {
        let other = 1 - t;
        assert!(!subs[other].owns(r.start));
        assert!(subs[t].owns(r.start));
        subs[t].deallocate(r.start, r.len).unwrap();
    }
    let held = global.superblock_bytes();
    let moved: u64 = subs
        .iter_mut()
        .map(|s| s.release_free_superblocks(&mut global).unwrap())
        .sum();
    assert_eq!(moved, held);
    assert_eq!(global.free_bytes(), 8 * MIB);
    assert_eq!(global.largest_free(), 8 * MIB);
    global.audit().unwrap();
}

/// Fixed lists with inline metadata work with no heap at all (the list itself is the only
/// storage); here the list lives on the stack and runs out of metadata cleanly.
#[test]
fn fixed_blocks_inline_runs_out_cleanly() {
    let mut up = SimUpstream::new(1 << 30);
    let mut l: FixedBlocks<Inline<16, 4>> = FixedBlocks::new(FixedConfig::new(256, 4).unwrap());
    let mut n = 0;
    loop {
        match l.allocate(&mut up, 256, 256) {
            Ok(_) => n += 1,
            Err(e) => {
                assert!(matches!(e, Error::MetadataExhausted { .. }));
                break;
            }
        }
    }
    assert_eq!(n, 16);
    l.audit().unwrap();
}
