//! The thread-safe arena: sub-arenas per stream, stream order when memory crosses streams.

mod common;

use strata_core::algo::ArenaConfig;
use strata_core::resources::{Arena, NoOrdering};
use strata_core::sim_stream::SimStreams;
use strata_core::{Error, MemoryResource, Range, SimUpstream, StreamKey, StreamOrder};

const MIB: u64 = 1 << 20;
const S1: StreamKey = StreamKey(1);
const S2: StreamKey = StreamKey(2);
const S3: StreamKey = StreamKey(3);

fn arena(size: u64, streams: &SimStreams) -> Arena<SimUpstream, &SimStreams> {
    Arena::new(SimUpstream::new(1 << 40), streams, ArenaConfig::new(size)).unwrap()
}

#[test]
fn each_stream_reuses_its_own_blocks_without_ordering() {
    let st = SimStreams::new();
    let a = arena(64 * MIB, &st);
    for s in [S1, S2] {
        for _ in 0..10 {
            let x = st.allocate(&a, 4096, 256, s).unwrap();
            st.deallocate(&a, x, 4096, 256, s).unwrap();
        }
    }
    assert_eq!(st.order_calls(), 0);
    let s = a.stats();
    assert_eq!((s.streams, s.superblocks), (2, 2));
    a.audit().unwrap();
}

#[test]
fn a_block_freed_by_another_stream_goes_home_ordered() {
    let st = SimStreams::new();
    let a = arena(64 * MIB, &st);
    let x = st.allocate(&a, 4096, 256, S1).unwrap();
    // Used last on S2, freed there: S1 must wait for S2 before reusing it.
    st.order_after(S2, S1).unwrap();
    st.deallocate(&a, x, 4096, 256, S2).unwrap();
    assert_eq!(st.order_calls(), 2);
    assert_eq!(a.free_bytes_on(S1), MIB);
    let y = st.allocate(&a, 4096, 256, S1).unwrap();
    assert_eq!(x, y);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
}

#[test]
fn large_blocks_cross_streams_through_the_shared_stream() {
    let st = SimStreams::new();
    let a = arena(16 * MIB, &st);
    let big = st.allocate(&a, 8 * MIB, 256, S1).unwrap();
    st.deallocate(&a, big, 8 * MIB, 256, S1).unwrap();
    assert_eq!(a.stats().returns, 1);
    let again = st.allocate(&a, 8 * MIB, 256, S2).unwrap();
    assert_eq!(big, again);
    // The free ordered the shared stream after S1; the allocation ordered S2 after it.
    assert_eq!(st.order_calls(), 2);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    st.deallocate(&a, again, 8 * MIB, 256, S2).unwrap();
    // A small allocation now takes a superblock out of that memory: ordered too.
    st.allocate(&a, 4096, 256, S3).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn a_stream_reusing_its_own_large_blocks_orders_nothing() {
    let st = SimStreams::new();
    let a = arena(16 * MIB, &st);
    for _ in 0..10 {
        let big = st.allocate(&a, 8 * MIB, 256, S1).unwrap();
        st.deallocate(&a, big, 8 * MIB, 256, S1).unwrap();
    }
    // S1 is not the shared stream, yet its own frees need no ordering for its own reuse.
    assert_eq!((st.order_calls(), a.stats().returns), (0, 10));
    // Another stream takes that memory: the shared stream is ordered after S1, S2 after it.
    let again = st.allocate(&a, 8 * MIB, 256, S2).unwrap();
    assert_eq!(st.order_calls(), 2);
    st.deallocate(&a, again, 8 * MIB, 256, S2).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn large_frees_of_two_streams_are_ordered_before_either_takes_back() {
    let st = SimStreams::new();
    let a = arena(16 * MIB, &st);
    let x = st.allocate(&a, 4 * MIB, 256, S1).unwrap();
    let y = st.allocate(&a, 4 * MIB, 256, S2).unwrap();
    st.deallocate(&a, x, 4 * MIB, 256, S1).unwrap();
    assert_eq!(st.order_calls(), 0);
    // S2's free first orders the shared stream after S1's pending free.
    st.deallocate(&a, y, 4 * MIB, 256, S2).unwrap();
    assert_eq!(st.order_calls(), 1);
    // S1 takes all of it back, S2's block included: ordered after S2 through the shared stream.
    let z = st.allocate(&a, 16 * MIB, 256, S1).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    st.deallocate(&a, z, 16 * MIB, 256, S1).unwrap();
    // The shared stream itself takes it: ordered after S1's pending free.
    st.allocate(&a, 16 * MIB, 256, StreamKey::DEFAULT).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn retiring_a_stream_orders_its_pending_large_frees() {
    let st = SimStreams::new();
    let a = arena(16 * MIB, &st);
    let big = st.allocate(&a, 8 * MIB, 256, S1).unwrap();
    st.deallocate(&a, big, 8 * MIB, 256, S1).unwrap();
    a.retire_stream(S1).unwrap();
    // The retirement ordered the shared stream after S1: nothing refers to S1 after it.
    assert_eq!(st.order_calls(), 1);
    let again = st.allocate(&a, 8 * MIB, 256, S2).unwrap();
    assert_eq!((again, st.order_calls()), (big, 2));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn retiring_a_stream_that_only_freed_orders_its_pending_large_frees() {
    let st = SimStreams::new();
    let a = arena(16 * MIB, &st);
    let big = st.allocate(&a, 8 * MIB, 256, S1).unwrap();
    // Used last on S2, freed there: S2 has no sub-arena, its free is pending.
    st.order_after(S2, S1).unwrap();
    st.deallocate(&a, big, 8 * MIB, 256, S2).unwrap();
    assert_eq!(a.stats().streams, 1);
    a.retire_stream(S2).unwrap();
    // The shared stream now waits for S2 (1 call beside the test's own).
    assert_eq!(st.order_calls(), 2);
    // S3 waits for the shared stream only: nothing refers to S2 any more.
    let again = st.allocate(&a, 8 * MIB, 256, S3).unwrap();
    assert_eq!((again, st.order_calls()), (big, 3));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn out_of_memory_reclaims_free_superblocks_in_order() {
    let st = SimStreams::new();
    // Two superblocks in all.
    let a = arena(2 * MIB, &st);
    let x = st.allocate(&a, MIB, 256, S1).unwrap();
    let y = st.allocate(&a, MIB, 256, S2).unwrap();
    st.deallocate(&a, x, MIB, 256, S1).unwrap();
    // S3 needs a superblock: S1's wholly free one goes back, in order.
    let z = st.allocate(&a, MIB, 256, S3).unwrap();
    assert_eq!(z, x);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    assert_eq!(
        st.allocate(&a, 256, 256, S1),
        Err(Error::OutOfMemory {
            requested: 256,
            largest_free: 0,
            total_free: 0
        })
    );
    st.deallocate(&a, y, MIB, 256, S2).unwrap();
    st.deallocate(&a, z, MIB, 256, S3).unwrap();
    // Both superblocks free, in two sub-arenas: a large request reclaims and merges them.
    let big = st.allocate(&a, 2 * MIB, 256, S1).unwrap();
    assert_eq!(big, x.min(y));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
}

#[test]
fn retired_streams_pass_their_memory_on() {
    let st = SimStreams::new();
    let a: Arena<SimUpstream, &SimStreams> =
        Arena::with_streams(SimUpstream::new(1 << 40), &st, ArenaConfig::new(4 * MIB), 2).unwrap();
    let kept = st.allocate(&a, 4096, 256, S1).unwrap();
    let x = st.allocate(&a, 4096, 256, S2).unwrap();
    assert_eq!(
        st.allocate(&a, 4096, 256, S3),
        Err(Error::MetadataExhausted { capacity: 2 })
    );
    st.deallocate(&a, x, 4096, 256, S2).unwrap();
    a.retire_stream(S2).unwrap();
    assert_eq!(a.stats().superblocks, 1, "S2's free superblock went back");
    // S3 takes S2's slot, and S2's memory, in order.
    let y = st.allocate(&a, 4096, 256, S3).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    // S1 retires with a block still live: freed later on S3, its superblock goes back.
    a.retire_stream(S1).unwrap();
    assert_eq!(a.stats().streams, 1);
    st.order_after(S3, S1).unwrap();
    st.deallocate(&a, kept, 4096, 256, S3).unwrap();
    assert_eq!(a.stats().superblocks, 1, "only S3's superblock is held");
    st.deallocate(&a, y, 4096, 256, S3).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    assert_eq!(
        a.retire_stream(StreamKey::DEFAULT),
        Err(Error::Unsupported {
            what: "retiring the shared stream of an arena"
        })
    );
    a.audit().unwrap();
}

#[test]
fn bad_calls_change_nothing() {
    let a = Arena::new(
        SimUpstream::new(1 << 40),
        NoOrdering,
        ArenaConfig::new(4 * MIB),
    )
    .unwrap();
    assert_eq!(a.allocate(0, 256, S1), Err(Error::ZeroSize));
    assert_eq!(
        a.allocate(256, 3, S1),
        Err(Error::InvalidAlignment { align: 3 })
    );
    assert_eq!(a.stats().streams, 0);
    let x = a.allocate(300, 256, S1).unwrap();
    let big = a.allocate(2 * MIB, 256, S1).unwrap();
    let before = a.stats();
    assert!(matches!(
        a.deallocate(x, 4096, 256, S2),
        Err(Error::SizeMismatch { .. })
    ));
    assert!(matches!(
        a.deallocate(big, MIB, 256, S2),
        Err(Error::SizeMismatch { .. })
    ));
    assert_eq!(
        a.deallocate(0x10, 256, 256, S2),
        Err(Error::NotAllocated { addr: 0x10 })
    );
    assert_eq!(a.stats(), before);
    a.deallocate(x, 300, 256, S2).unwrap();
    assert!(a.deallocate(x, 300, 256, S1).is_err());
    a.deallocate(big, 2 * MIB, 256, S1).unwrap();
    assert!(a.deallocate(big, 2 * MIB, 256, S1).is_err());
    assert!(matches!(
        a.allocate(8 * MIB, 256, S1),
        Err(Error::OutOfMemory { .. })
    ));
    assert!(matches!(
        Arena::new(
            SimUpstream::new(1 << 40),
            NoOrdering,
            ArenaConfig::new(MIB / 2)
        ),
        Err(Error::Unsupported { .. })
    ));
    a.audit().unwrap();
}

#[test]
fn threads_on_their_own_streams_with_cross_stream_frees() {
    let st = SimStreams::new();
    let a = arena(256 * MIB, &st);
    std::thread::scope(|scope| {
        for t in 1..=2u64 {
            let (st, a) = (&st, &a);
            scope.spawn(move || {
                let me = StreamKey(t);
                let other = StreamKey(3 - t);
                let mut live: Vec<(u64, u64)> = Vec::new();
                let mut x = t * 0x9E37_79B9;
                for i in 0..3000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() < 24 && (!x.is_multiple_of(4) || live.is_empty()) {
                        // Mostly small, now and then above the superblock size.
                        let size = if x % 50 == 0 {
                            2 * MIB
                        } else {
                            256 * (1 + x % 256)
                        };
                        live.push((st.allocate(a, size, 256, me).unwrap(), size));
                    } else {
                        let (b, size) = live.swap_remove((x % live.len() as u64) as usize);
                        let on = if i % 7 == 0 { other } else { me };
                        if on == other {
                            st.order_after(other, me).unwrap();
                        }
                        st.deallocate(a, b, size, 256, on).unwrap();
                    }
                }
                for (b, size) in live {
                    st.deallocate(a, b, size, 256, me).unwrap();
                }
            });
        }
    });
    assert!(st.violations().is_empty(), "{:?}", &st.violations()[..1]);
    assert_eq!(st.live_blocks(), 0);
    a.audit().unwrap();
}

#[test]
fn drop_gives_the_arena_back() {
    let mut sim = SimUpstream::new(1 << 30);
    {
        let a = Arena::new(&mut sim, NoOrdering, ArenaConfig::new(8 * MIB)).unwrap();
        a.allocate(4096, 256, S1).unwrap();
    }
    assert_eq!(sim.in_use(), 0);
}

#[test]
fn a_small_request_takes_back_one_superblock_and_a_large_one_all() {
    let st = SimStreams::new();
    let a = arena(4 * MIB, &st);
    // S1 takes the whole arena, a superblock at a time, and frees three of them.
    let blocks: Vec<u64> = (0..4)
        .map(|_| st.allocate(&a, MIB, 256, S1).unwrap())
        .collect();
    for &b in &blocks[..3] {
        st.deallocate(&a, b, MIB, 256, S1).unwrap();
    }
    assert_eq!(a.stats().superblocks, 4);
    // S2 needs one superblock: one of S1's free ones goes back (ordered), not all three.
    let x = st.allocate(&a, 4096, 256, S2).unwrap();
    assert_eq!(a.stats().superblocks, 4);
    assert_eq!(a.free_bytes_on(S1), 2 * MIB);
    // A 2 MiB request needs neighbours to merge: every wholly free superblock goes back.
    let big = st.allocate(&a, 2 * MIB, 256, S3);
    assert!(big.is_ok() || matches!(big, Err(Error::OutOfMemory { .. })));
    assert_eq!(a.free_bytes_on(S1), 0);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    a.audit().unwrap();
    st.deallocate(&a, x, 4096, 256, S2).unwrap();
    st.deallocate(&a, blocks[3], MIB, 256, S1).unwrap();
    if let Ok(b) = big {
        st.deallocate(&a, b, 2 * MIB, 256, S3).unwrap();
    }
    a.audit().unwrap();
}

#[test]
fn a_refusal_with_nothing_to_reclaim_changes_nothing() {
    let st = SimStreams::new();
    let a = arena(2 * MIB, &st);
    let x = st.allocate(&a, MIB, 256, S1).unwrap();
    let y = st.allocate(&a, MIB, 256, S2).unwrap();
    let before = a.stats();
    // Full, nothing free anywhere: refused, with the totals, again and again.
    for _ in 0..3 {
        assert_eq!(
            st.allocate(&a, 4096, 256, S1),
            Err(Error::OutOfMemory {
                requested: 4096,
                largest_free: 0,
                total_free: 0
            })
        );
    }
    assert_eq!(a.stats(), before);
    st.deallocate(&a, x, MIB, 256, S1).unwrap();
    // Now S1's superblock is wholly free: S2 gets it back (ordered after S1, through the
    // shared stream).
    let z = st.allocate(&a, 4096, 256, S2).unwrap();
    assert!(Range::new(x, MIB).contains(z));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    st.deallocate(&a, z, 4096, 256, S2).unwrap();
    st.deallocate(&a, y, MIB, 256, S2).unwrap();
    a.audit().unwrap();
}

#[test]
fn threads_under_memory_pressure_keep_every_invariant() {
    // Four threads on their own streams in an arena of eight superblocks: superblocks move
    // between sub-arenas and the global arena all the time, large blocks come and go, and a
    // seventh of the blocks are freed on another stream.
    let st = SimStreams::new();
    let a = arena(8 * MIB, &st);
    std::thread::scope(|scope| {
        for t in 1..=4u64 {
            let (st, a) = (&st, &a);
            scope.spawn(move || {
                common::random_stream_walk(st, a, t, 8, |x| {
                    if x % 16 == 0 {
                        MIB + 256 * (x % 4096)
                    } else {
                        256 * (1 + x % 2048)
                    }
                });
            });
        }
    });
    assert!(st.violations().is_empty(), "{:?}", &st.violations()[..1]);
    a.audit().unwrap();
    let s = a.stats();
    assert_eq!(s.large_bytes, 0);
    assert!(s.returns > 0, "superblocks went back under pressure");
}
