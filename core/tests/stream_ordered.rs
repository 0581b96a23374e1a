//! The stream-ordered pool, checked by the simulated stream executor.

mod common;

use strata_core::algo::PoolConfig;
use strata_core::resources::{NoOrdering, Reuse, StreamOrderedPool};
use strata_core::sim_stream::{SimStreams, Violation};
use strata_core::{Error, MemoryResource, Range, SimUpstream, StreamKey, StreamOrder, Upstream};

const S0: StreamKey = StreamKey::DEFAULT;
const S1: StreamKey = StreamKey(1);
const S2: StreamKey = StreamKey(2);
const S3: StreamKey = StreamKey(3);

fn pool(
    capacity: u64,
    initial: u64,
    streams: &SimStreams,
) -> StreamOrderedPool<SimUpstream, &SimStreams> {
    StreamOrderedPool::new(
        SimUpstream::new(capacity),
        streams,
        PoolConfig::new(initial),
    )
    .unwrap()
}

#[test]
fn reuse_on_the_same_stream_never_orders() {
    let st = SimStreams::new();
    let p = pool(1 << 30, 1 << 20, &st);
    for round in 0..50u64 {
        let size = 256 * (1 + round % 7);
        let a = st.allocate(&p, size, 256, S1).unwrap();
        st.enqueue(S1);
        st.deallocate(&p, a, size, 256, S1).unwrap();
    }
    assert_eq!(st.order_calls(), 0);
    assert_eq!(p.stats().steals, 0);
    assert!(st.violations().is_empty());
}

#[test]
fn never_used_memory_is_taken_without_ordering() {
    let st = SimStreams::new();
    // The initial size is one never-used chunk: the first stream to need memory takes it
    // whole, with no ordering; a second stream takes a block of it from the first (a steal).
    let p = pool(1 << 30, 1 << 20, &st);
    let a = st.allocate(&p, 4096, 256, S1).unwrap();
    assert_eq!(st.order_calls(), 0);
    let b = st.allocate(&p, 4096, 256, S2).unwrap();
    assert_ne!(a, b);
    assert_eq!((st.order_calls(), p.stats().steals), (1, 1));
    assert_eq!(p.stats().pool_size, 1 << 20, "no growth");
    assert!(st.violations().is_empty());
}

#[test]
fn one_order_per_steal_and_none_per_free() {
    let st = SimStreams::new();
    let p = pool(1 << 30, 0, &st);
    let blocks: Vec<u64> = (0..4)
        .map(|_| st.allocate(&p, 1 << 16, 256, S1).unwrap())
        .collect();
    for &b in &blocks {
        st.deallocate(&p, b, 1 << 16, 256, S1).unwrap();
    }
    assert_eq!(st.order_calls(), 0, "frees order nothing");
    // S2 takes from S1's list: one ordering call per block taken.
    let taken: Vec<u64> = (0..2)
        .map(|_| st.allocate(&p, 1 << 16, 256, S2).unwrap())
        .collect();
    assert_eq!(st.order_calls(), 2);
    assert_eq!(p.stats().steals, 2);
    // Freed on S2 and reused on S2: no more ordering.
    for &b in &taken {
        st.deallocate(&p, b, 1 << 16, 256, S2).unwrap();
    }
    for _ in 0..2 {
        st.allocate(&p, 1 << 16, 256, S2).unwrap();
    }
    assert_eq!(st.order_calls(), 2);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
}

#[test]
fn whole_lists_are_merged_before_growing() {
    let st = SimStreams::new();
    // The upstream holds exactly the initial chunk: growing is impossible.
    let p = pool(4096, 4096, &st);
    let a = st.allocate(&p, 2048, 256, S1).unwrap();
    let b = st.allocate(&p, 2048, 256, S2).unwrap();
    st.deallocate(&p, a, 2048, 256, S1).unwrap();
    st.deallocate(&p, b, 2048, 256, S2).unwrap();
    // S1 took the whole initial chunk; S2 stole half of it (one ordering). No list has 4096
    // bytes in one block; merging both into S3's coalesces them (two orderings).
    let c = st.allocate(&p, 4096, 256, S3).unwrap();
    assert_eq!(c, a.min(b));
    let s = p.stats();
    assert_eq!((s.merges, s.steals, s.pool_size), (2, 1, 4096));
    assert_eq!(st.order_calls(), 3);
    assert!(st.violations().is_empty(), "{:?}", st.violations());
}

#[test]
fn under_pressure_free_chunks_go_back_and_the_pool_grows_again() {
    let st = SimStreams::new();
    // Room for 8 KiB upstream.
    let p = pool(8192, 0, &st);
    let a = st.allocate(&p, 4096, 256, S1).unwrap(); // a 4 KiB chunk
    let b = st.allocate(&p, 4096, 256, S2).unwrap(); // another 4 KiB chunk
    st.deallocate(&p, a, 4096, 256, S1).unwrap();
    st.deallocate(&p, b, 4096, 256, S2).unwrap();
    // 8 KiB in one block needs a new chunk: merge, trim both chunks, grow.
    let c = st.allocate(&p, 8192, 256, S3).unwrap();
    assert_eq!(p.stats().pool_size, 8192);
    st.deallocate(&p, c, 8192, 256, S3).unwrap();
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    assert!(matches!(
        st.allocate(&p, 16384, 256, S3),
        Err(Error::OutOfMemory {
            requested: 16384,
            ..
        })
    ));
}

#[test]
fn retired_streams_strand_nothing() {
    let st = SimStreams::new();
    let p = pool(1 << 30, 0, &st);
    let a = st.allocate(&p, 1 << 20, 256, S1).unwrap();
    st.deallocate(&p, a, 1 << 20, 256, S1).unwrap();
    p.retire_stream(S1).unwrap();
    assert_eq!(p.free_bytes_on(S1), 0);
    assert_eq!(p.free_bytes_on(S0), 1 << 20);
    // Another stream gets the block (ordered after the shared stream, which waited for S1).
    let b = st.allocate(&p, 1 << 20, 256, S2).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        p.stats().pool_size,
        1 << 20,
        "no growth: the block was not stranded"
    );
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    // Freed on a stream with no heap of its own: back to the heap it came from.
    st.deallocate(&p, b, 1 << 20, 256, S3).unwrap();
    assert_eq!(p.free_bytes_on(S3), 1 << 20);
    let s = p.stats();
    assert_eq!((s.retired, s.streams), (1, 1));
    assert_eq!(
        p.retire_stream(S0),
        Err(Error::Unsupported {
            what: "retiring the shared stream of a stream-ordered pool"
        })
    );
    p.retire_stream(StreamKey(99)).unwrap();
}

#[test]
fn heaps_of_retired_streams_are_reused() {
    // Room for two streams at once.
    let st = SimStreams::new();
    let p: StreamOrderedPool<_, _> =
        StreamOrderedPool::with_streams(SimUpstream::new(1 << 20), &st, PoolConfig::new(0), 2)
            .unwrap();
    let a = st.allocate(&p, 256, 256, S1).unwrap();
    let b = st.allocate(&p, 256, 256, S2).unwrap();
    assert_eq!(
        st.allocate(&p, 256, 256, S3),
        Err(Error::MetadataExhausted { capacity: 2 })
    );
    st.deallocate(&p, b, 256, 256, S2).unwrap();
    p.retire_stream(S2).unwrap();
    assert_eq!(
        p.free_bytes_on(S0),
        256,
        "S2's block is the shared stream's now"
    );
    // S3 gets S2's heap; the block it is handed waited for the shared stream, which waited
    // for S2.
    let c = st.allocate(&p, 256, 256, S3).unwrap();
    assert_eq!(c, b);
    st.deallocate(&p, a, 256, 256, S1).unwrap();
    st.deallocate(&p, c, 256, 256, S3).unwrap();
    let s = p.stats();
    assert_eq!((s.streams, s.retired), (2, 1));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
}

#[test]
fn bad_calls_change_nothing() {
    let st = SimStreams::new();
    let p = pool(1 << 20, 4096, &st);
    let before = p.stats();
    assert_eq!(p.allocate(0, 256, S1), Err(Error::ZeroSize));
    assert_eq!(
        p.allocate(256, 3, S1),
        Err(Error::InvalidAlignment { align: 3 })
    );
    assert_eq!(
        p.deallocate(0x1000, 256, 256, S2),
        Err(Error::NotAllocated { addr: 0x1000 })
    );
    assert_eq!(p.stats(), before, "no stream list created by a bad call");
    let a = p.allocate(300, 256, S1).unwrap();
    assert!(matches!(
        p.deallocate(a, 1024, 256, S2),
        Err(Error::SizeMismatch { .. })
    ));
    assert_eq!(p.deallocate(a, 0, 256, S2), Err(Error::ZeroSize));
    assert_eq!(p.stats().streams, 1);
    p.deallocate(a, 300, 256, S2).unwrap();
    assert!(matches!(
        p.deallocate(a, 300, 256, S2),
        Err(Error::DoubleFree { .. }) | Err(Error::NotAllocated { .. })
    ));
    assert!(matches!(
        p.deallocate(a, 300, 256, S3),
        Err(Error::DoubleFree { .. }) | Err(Error::NotAllocated { .. })
    ));
    assert_eq!(p.stats().streams, 1, "frees never give a stream a heap");
}

/// A region one heap lends another is a live block of its lender's list, but not one the
/// lender's stream allocated: no free by address on that stream (or any other) may take it.
#[test]
fn a_lent_region_cannot_be_freed_by_address() {
    let st = SimStreams::new();
    let p = pool(1 << 20, 0, &st);
    let a = st.allocate(&p, 8192, 256, S1).unwrap();
    st.enqueue(S1);
    st.deallocate(&p, a, 8192, 256, S1).unwrap();
    let b = st.allocate(&p, 1024, 256, S2).unwrap();
    assert_eq!(
        p.stats().steals,
        1,
        "stream 2 lives on a region of stream 1's heap"
    );
    let before = p.stats();
    // Every 256-aligned range inside stream 1's chunk: none is a block a caller holds.
    for start in (a..a + 8192).step_by(256) {
        for len in (256..=a + 8192 - start).step_by(256) {
            if start == b && len == 1024 {
                continue;
            }
            for s in [S1, S2, S3] {
                assert!(
                    p.deallocate(start, len, 256, s).is_err(),
                    "freed {start:#x}+{len} on {s:?}"
                );
            }
        }
    }
    assert_eq!(p.stats(), before);
    p.audit().unwrap();
    st.deallocate(&p, b, 1024, 256, S2).unwrap();
    p.audit().unwrap();
}

/// A stream order that fails: the block must not be handed over.
struct Failing;
impl StreamOrder for Failing {
    fn order_after(&self, _: StreamKey, _: StreamKey) -> Result<(), Error> {
        Err(Error::Backend {
            call: "cuStreamWaitEvent",
            code: 700,
        })
    }
}

#[test]
fn an_ordering_failure_is_forwarded_and_keeps_the_block() {
    let p = StreamOrderedPool::new(SimUpstream::new(4096), Failing, PoolConfig::new(0)).unwrap();
    let a = p.allocate(4096, 256, S1).unwrap();
    p.deallocate(a, 4096, 256, S1).unwrap();
    let err = Error::Backend {
        call: "cuStreamWaitEvent",
        code: 700,
    };
    assert_eq!(p.allocate(4096, 256, S2), Err(err));
    assert_eq!(p.free_bytes_on(S1), 4096);
    assert_eq!(p.retire_stream(S1), Err(err));
    assert_eq!(p.free_bytes_on(S1), 4096);
    assert_eq!(p.allocate(4096, 256, S1).unwrap(), a);
}

/// A broken stream order: it orders the wrong way round.
struct Reversed<'a>(&'a SimStreams);
impl StreamOrder for Reversed<'_> {
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), Error> {
        self.0.order_after(signaller, waiter)
    }
}

#[test]
fn the_executor_catches_a_wrong_order_implementation() {
    let st = SimStreams::new();
    let p = StreamOrderedPool::new(SimUpstream::new(1 << 20), Reversed(&st), PoolConfig::new(0))
        .unwrap();
    let a = st.allocate(&p, 4096, 256, S1).unwrap();
    st.deallocate(&p, a, 4096, 256, S1).unwrap();
    st.allocate(&p, 4096, 256, S2).unwrap();
    assert!(matches!(
        st.violations()[..],
        [Violation::Unordered {
            freed_on: S1,
            handed_to: S2,
            ..
        }]
    ));
}

#[test]
fn the_executor_catches_a_pool_that_skips_ordering() {
    // The pool itself is right, but told that ordering is free: the executor, which never hears
    // of an order_after, flags the cross-stream reuse.
    let st = SimStreams::new();
    let p =
        StreamOrderedPool::new(SimUpstream::new(1 << 20), NoOrdering, PoolConfig::new(0)).unwrap();
    let a = st.allocate(&p, 4096, 256, S1).unwrap();
    st.deallocate(&p, a, 4096, 256, S1).unwrap();
    st.allocate(&p, 4096, 256, S2).unwrap();
    assert_eq!(st.violations().len(), 1);
}

#[test]
fn threads_on_their_own_streams_with_cross_stream_frees() {
    let st = SimStreams::new();
    let p = pool(64 << 20, 1 << 20, &st);
    std::thread::scope(|scope| {
        for t in 1..=2u64 {
            let (st, p) = (&st, &p);
            scope.spawn(move || {
                let me = StreamKey(t);
                let other = StreamKey(3 - t);
                let mut live: Vec<(u64, u64)> = Vec::new();
                let mut x = t * 0x9E37_79B9;
                for i in 0..2000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() < 16 && (x % 4 != 0 || live.is_empty()) {
                        let size = 256 * (1 + x % 64);
                        live.push((st.allocate(p, size, 256, me).unwrap(), size));
                    } else {
                        let (a, size) = live.swap_remove((x % live.len() as u64) as usize);
                        // Now and then the block's last use is on the other stream.
                        let on = if i % 5 == 0 { other } else { me };
                        if on == other {
                            st.order_after(other, me).unwrap();
                        }
                        st.deallocate(p, a, size, 256, on).unwrap();
                    }
                }
                for (a, size) in live {
                    st.deallocate(p, a, size, 256, me).unwrap();
                }
            });
        }
    });
    assert!(st.violations().is_empty(), "{:?}", &st.violations()[..1]);
    let s = p.stats();
    assert_eq!(s.live_bytes, 0);
    assert_eq!(s.free_bytes, s.pool_size);
}

#[test]
fn drop_gives_every_chunk_back() {
    let mut sim = SimUpstream::new(1 << 20);
    {
        let p = StreamOrderedPool::new(&mut sim, NoOrdering, PoolConfig::new(4096)).unwrap();
        p.allocate(8192, 256, S1).unwrap();
        p.allocate(256, 256, S2).unwrap();
    }
    assert_eq!(sim.in_use(), 0);
}

#[test]
fn grow_first_keeps_streams_apart_until_the_upstream_refuses() {
    let st = SimStreams::new();
    // Room for two 64 KiB chunks upstream.
    let p = StreamOrderedPool::new(SimUpstream::new(2 << 16), &st, PoolConfig::new(0))
        .unwrap()
        .with_reuse(Reuse::GrowFirst);
    let a = st.allocate(&p, 1 << 16, 256, S1).unwrap();
    st.deallocate(&p, a, 1 << 16, 256, S1).unwrap();
    // S2 grows a heap of its own rather than wait for S1.
    let b = st.allocate(&p, 1 << 16, 256, S2).unwrap();
    assert_ne!(a, b);
    assert_eq!(st.order_calls(), 0);
    // S3 cannot grow: it takes S1's block, ordered.
    let c = st.allocate(&p, 1 << 16, 256, S3).unwrap();
    assert_eq!(c, a);
    assert_eq!((st.order_calls(), p.stats().steals), (1, 1));
    assert!(st.violations().is_empty(), "{:?}", st.violations());
}

/// An upstream whose free waits for the device, as `cuMemFree` does: every stream's work is
/// complete before the memory is given back.
struct WaitsOnFree<'a> {
    inner: SimUpstream,
    streams: &'a SimStreams,
}

impl Upstream for WaitsOnFree<'_> {
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.inner.allocate(size, align)
    }
    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        for s in 0..=6 {
            self.streams.synchronize(StreamKey(s));
        }
        self.inner.deallocate(range)
    }
}

/// A random walk over many streams with cross-stream frees, retirements and trims, on an
/// upstream small enough that streams keep borrowing regions from each other, merging lists,
/// trimming and growing again: every reuse checked, every invariant audited.
fn random_walk(seed: u64, reuse: Reuse, capacity: u64) {
    let st = SimStreams::new();
    let upstream = WaitsOnFree {
        inner: SimUpstream::new(capacity),
        streams: &st,
    };
    let p = StreamOrderedPool::new(upstream, &st, PoolConfig::new(0))
        .unwrap()
        .with_reuse(reuse);
    let streams: Vec<StreamKey> = (1..=6).map(StreamKey).collect();
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<(u64, u64, StreamKey)> = Vec::new();
    let mut failed = 0;
    for step in 0..3000 {
        let r = next();
        match r % 100 {
            0..=54 => {
                let s = streams[(next() % 6) as usize];
                let size = if next() % 8 == 0 {
                    256 * (1 + next() % 512)
                } else {
                    256 * (1 + next() % 32)
                };
                match st.allocate(&p, size, 256, s) {
                    Ok(a) => live.push((a, size, s)),
                    Err(Error::OutOfMemory { .. }) => failed += 1,
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            55..=96 if !live.is_empty() => {
                let (a, size, s) = live.swap_remove((next() % live.len() as u64) as usize);
                // A third of the blocks are used last on another stream, and freed there.
                let on = if next() % 3 == 0 {
                    let o = streams[(next() % 6) as usize];
                    st.order_after(o, s).unwrap();
                    o
                } else {
                    s
                };
                st.deallocate(&p, a, size, 256, on).unwrap();
            }
            97 => {
                // Retire a stream (it may come back later as a new one); its live blocks are
                // used last, and freed, on other streams.
                let s = streams[(next() % 6) as usize];
                for l in live.iter_mut().filter(|l| l.2 == s) {
                    let o = streams[(s.0 % 6) as usize];
                    st.order_after(o, s).unwrap();
                    l.2 = o;
                }
                p.retire_stream(s).unwrap();
            }
            98 => {
                p.trim().unwrap();
            }
            _ => {}
        }
        if step % 7 == 0 {
            p.audit().unwrap_or_else(|e| panic!("step {step}: {e}"));
        }
    }
    assert!(st.violations().is_empty(), "{:?}", &st.violations()[..1]);
    for (a, size, s) in live.drain(..) {
        st.deallocate(&p, a, size, 256, s).unwrap();
    }
    p.audit().unwrap();
    let s = p.stats();
    assert_eq!((s.live_bytes, s.free_bytes), (0, s.pool_size));
    assert!(s.steals > 0, "streams took memory from each other");
    p.trim().unwrap();
    p.audit().unwrap();
    assert_eq!(p.stats().pool_size, 0, "every chunk went back");
    assert!(failed < 1500, "{failed} allocations failed");
}

#[test]
fn random_walks_over_many_streams_keep_every_invariant() {
    for seed in 1..=4u64 {
        random_walk(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            Reuse::StealFirst,
            4 << 20,
        );
        random_walk(
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
            Reuse::GrowFirst,
            4 << 20,
        );
        random_walk(
            seed.wrapping_mul(0x1234_5678_9ABC_DEF1),
            Reuse::StealFirst,
            64 << 20,
        );
    }
}

#[test]
fn threads_under_memory_pressure_keep_every_invariant() {
    // Four threads on their own streams, an upstream that holds about what they use at once:
    // regions move between heaps, lists merge, chunks are trimmed and grown again, all at
    // the same time; every reuse is checked.
    for reuse in [Reuse::StealFirst, Reuse::GrowFirst] {
        let st = SimStreams::new();
        let upstream = WaitsOnFree {
            inner: SimUpstream::new(6 << 20),
            streams: &st,
        };
        let p = StreamOrderedPool::new(upstream, &st, PoolConfig::new(0))
            .unwrap()
            .with_reuse(reuse);
        std::thread::scope(|scope| {
            for t in 1..=4u64 {
                let (st, p) = (&st, &p);
                scope.spawn(move || {
                    common::random_stream_walk(st, p, t, 24, |x| 256 * (1 + x % 256));
                });
            }
        });
        assert!(st.violations().is_empty(), "{:?}", &st.violations()[..1]);
        p.audit().unwrap();
        let s = p.stats();
        assert_eq!((s.live_bytes, s.free_bytes), (0, s.pool_size));
    }
}

#[test]
fn one_block_passed_back_and_forth_costs_one_counted_ordering_per_crossing() {
    // The rounds of the driver's GPU test: a block allocated and freed on A, then allocated
    // and freed on B, three times. Each round B gets A's block, and every ordering made is
    // counted as a steal or a merge (none wasted).
    let st = SimStreams::new();
    let p = pool(1 << 30, 0, &st);
    const N: u64 = 256 << 20;
    for _ in 0..3 {
        let x = st.allocate(&p, N, 256, S1).unwrap();
        st.deallocate(&p, x, N, 256, S1).unwrap();
        let y = st.allocate(&p, N, 256, S2).unwrap();
        assert_eq!(x, y, "the block freed on S1 is reused on S2");
        st.deallocate(&p, y, N, 256, S2).unwrap();
    }
    let s = p.stats();
    assert!(st.order_calls() >= 3, "{s:?}");
    assert!(st.order_calls() <= s.steals + s.merges + s.retired, "{s:?}");
    assert_eq!(s.pool_size, N, "one block, passed back and forth");
    assert!(st.violations().is_empty(), "{:?}", st.violations());
    p.audit().unwrap();
}
