//! The thread-safe resources and the adaptors, from several threads.

use strata_core::adaptors::{Limiting, Statistics, ThreadSafe, Tracking};
use strata_core::algo::{FixedConfig, Heap, PoolConfig};
use strata_core::resources::{Binning, FixedSize, Pool, StreamOrderedPool};
use strata_core::sim_stream::SimStreams;
use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};

const S: StreamKey = StreamKey::DEFAULT;

/// A small xorshift generator: deterministic workloads without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Two threads allocate and free at random on one stream through `checker`, which flags any
/// two live blocks that overlap; at the end everything is freed. Alignments are
/// `256 << (0..align_steps)`.
fn hammer<R: MemoryResource>(r: &R, max_size: u64, align_steps: u64) {
    let checker = SimStreams::new();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let checker = &checker;
            scope.spawn(move || {
                let mut rng = Rng(0x1234_5678 + t);
                let mut live = Vec::new();
                for _ in 0..3000 {
                    let x = rng.next();
                    if live.len() < 32 && !x.is_multiple_of(3) {
                        let size = 1 + x % max_size;
                        let align = 256 << (x % align_steps);
                        let a = checker.allocate(r, size, align, S).unwrap();
                        assert_eq!(a % align, 0);
                        live.push((a, size, align));
                    } else if !live.is_empty() {
                        let (a, size, align) = live.swap_remove((x % live.len() as u64) as usize);
                        checker.deallocate(r, a, size, align, S).unwrap();
                    }
                }
                for (a, size, align) in live {
                    checker.deallocate(r, a, size, align, S).unwrap();
                }
            });
        }
    });
    assert!(
        checker.violations().is_empty(),
        "{:?}",
        checker.violations()
    );
    assert_eq!(checker.live_blocks(), 0);
}

/// The bad calls every resource must refuse without changing anything.
fn refuses_bad_calls<R: MemoryResource>(r: &R) {
    assert_eq!(r.allocate(0, 256, S), Err(Error::ZeroSize));
    assert_eq!(
        r.allocate(256, 100, S),
        Err(Error::InvalidAlignment { align: 100 })
    );
    let a = r.allocate(512, 256, S).unwrap();
    assert!(matches!(
        r.deallocate(a + 256, 512, 256, S),
        Err(Error::NotAllocated { .. })
    ));
    assert!(matches!(
        r.deallocate(a, 4096, 256, S),
        Err(Error::SizeMismatch { .. })
    ));
    r.deallocate(a, 512, 256, S).unwrap();
    assert!(matches!(
        r.deallocate(a, 512, 256, S),
        Err(Error::DoubleFree { .. } | Error::NotAllocated { .. })
    ));
}

#[test]
fn pool_from_two_threads() {
    let pool = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(1 << 20)).unwrap();
    hammer(&pool, 1 << 16, 3);
    refuses_bad_calls(&pool);
    let p = pool.lock();
    assert_eq!(p.live_bytes(), 0);
    p.list().check_invariants().unwrap();
}

#[test]
fn fixed_size_from_two_threads() {
    let r: FixedSize<_, Heap> = FixedSize::new(
        SimUpstream::new(1 << 30),
        FixedConfig::new(4096, 16).unwrap(),
    );
    hammer(&r, 2048, 1);
    refuses_bad_calls(&r);
    assert_eq!(r.stats().live_blocks, 0);
    assert!(matches!(
        r.allocate(4097, 256, S),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn binning_from_two_threads() {
    let r: Binning<_, Heap> = Binning::with_exponents(SimUpstream::new(1 << 30), 8, 14).unwrap();
    hammer(&r, 1 << 16, 3);
    refuses_bad_calls(&r);
    let s = r.stats();
    assert_eq!((s.live_blocks, s.large_allocations), (0, 0));
    r.lock().audit().unwrap();
}

#[test]
fn stream_ordered_pool_on_one_stream_from_two_threads() {
    let st = SimStreams::new();
    let r =
        StreamOrderedPool::new(SimUpstream::new(1 << 30), &st, PoolConfig::new(1 << 20)).unwrap();
    hammer(&r, 1 << 16, 3);
    refuses_bad_calls(&r);
    assert_eq!(st.order_calls(), 0);
    assert_eq!(r.stats().live_bytes, 0);
}

#[test]
fn statistics_stay_exact_under_threads() {
    let pool = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(1 << 20)).unwrap();
    let r = Statistics::new(&pool);
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let r = &r;
            scope.spawn(move || {
                for i in 0..5000u64 {
                    let size = 256 * (1 + (i + t) % 4);
                    let a = r.allocate(size, 256, S).unwrap();
                    r.deallocate(a, size, 256, S).unwrap();
                }
            });
        }
    });
    let s = r.stats();
    assert_eq!(
        (s.bytes.value, s.count.value, s.count.total),
        (0, 0, 10_000)
    );
    let expected_total: i64 = (0..2u64)
        .flat_map(|t| (0..5000u64).map(move |i| 256 * (1 + (i + t) % 4)))
        .sum::<u64>() as i64;
    assert_eq!(s.bytes.total, expected_total);
    // At most one block per thread is live at once.
    assert!(s.count.peak >= 1 && s.count.peak <= 2);
    assert!(s.bytes.peak >= 256 && s.bytes.peak <= 2 * 1024);
}

#[test]
fn limiting_never_exceeds_the_budget_under_threads() {
    let base = ThreadSafe::new(SimUpstream::new(1 << 30));
    let r = Limiting::new(Tracking::<_>::new(&base), 4096);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let r = &r;
            scope.spawn(move || {
                let mut refused = 0;
                for _ in 0..5000 {
                    match r.allocate(3000, 256, S) {
                        Ok(a) => {
                            // 3072 charged: the other thread cannot have a block now.
                            assert!(r.upstream().allocated_bytes() <= 4096);
                            r.deallocate(a, 3000, 256, S).unwrap();
                        }
                        Err(Error::LimitExceeded { limit: 4096, .. }) => refused += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                refused
            });
        }
    });
    assert_eq!(r.allocated_bytes(), 0);
    assert!(r.upstream().leak_report().is_empty());
    assert_eq!(base.lock().in_use(), 0);
}
