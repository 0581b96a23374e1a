//! loom models of the lock-based resources: `Pool`, `FixedSize`, `Binning`.
//!
//! Each model checks, in every interleaving, that concurrent allocations get disjoint blocks,
//! that a free racing an allocation leaves the resource consistent, and that everything comes
//! back.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use strata_core::algo::{FixedConfig, Heap, PoolConfig};
use strata_core::resources::{Binning, FixedSize, Pool};
use strata_core::{MemoryResource, SimUpstream, StreamKey};
use strata_loom_tests::model;

const S: StreamKey = StreamKey::DEFAULT;

/// Thread `i` allocates a scratch block and a kept block of `sizes[i]`, then frees the scratch
/// one (so frees race allocations); the kept blocks must be disjoint, and everything comes back.
fn allocations_are_disjoint<R: MemoryResource + 'static>(r: Arc<R>, sizes: &[u64]) {
    let handles: Vec<_> = sizes
        .iter()
        .map(|&size| {
            let r = r.clone();
            thread::spawn(move || {
                let scratch = r.allocate(256, 256, S).unwrap();
                let kept = r.allocate(size, 256, S).unwrap();
                assert!(scratch + 256 <= kept || kept + size <= scratch);
                r.deallocate(scratch, 256, 256, S).unwrap();
                (kept, size)
            })
        })
        .collect();
    let blocks: Vec<(u64, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, &(a, n)) in blocks.iter().enumerate() {
        for &(b, m) in &blocks[i + 1..] {
            assert!(
                a + n <= b || b + m <= a,
                "blocks overlap: {a:#x}+{n} and {b:#x}+{m}"
            );
        }
    }
    for (a, n) in blocks {
        r.deallocate(a, n, 256, S).unwrap();
    }
}

/// One thread frees a block while another allocates one of the same size (which may reuse it).
fn free_races_allocate<R: MemoryResource + 'static>(r: Arc<R>, size: u64) {
    let first = r.allocate(size, 256, S).unwrap();
    let freer = {
        let r = r.clone();
        thread::spawn(move || r.deallocate(first, size, 256, S).unwrap())
    };
    let allocator = {
        let r = r.clone();
        thread::spawn(move || r.allocate(size, 256, S).unwrap())
    };
    freer.join().unwrap();
    let second = allocator.join().unwrap();
    r.deallocate(second, size, 256, S).unwrap();
}

fn pool(initial: u64) -> Arc<Pool<SimUpstream<16>>> {
    let upstream = SimUpstream::<16>::with_slots(1 << 20);
    Arc::new(Pool::new(upstream, PoolConfig::new(initial)).unwrap())
}

#[test]
fn pool_two_threads_get_disjoint_blocks() {
    model::exhaustive(|| {
        let p = pool(1024);
        allocations_are_disjoint(p.clone(), &[256, 512]);
        let inner = p.lock();
        assert_eq!(inner.live_bytes(), 0);
        inner.list().check_invariants().unwrap();
    });
}

#[test]
fn pool_two_threads_grow_at_once() {
    model::exhaustive(|| {
        // Empty pool: both threads must grow it; the upstream sees every chunk come back.
        let p = pool(0);
        allocations_are_disjoint(p.clone(), &[256, 256]);
        assert_eq!(p.trim().unwrap(), p.lock().upstream().peak_in_use());
        assert_eq!(p.lock().upstream().in_use(), 0);
    });
}

#[test]
fn pool_free_races_allocate() {
    model::exhaustive(|| {
        let p = pool(512);
        free_races_allocate(p.clone(), 512);
        let inner = p.lock();
        assert_eq!(inner.live_bytes(), 0);
        inner.list().check_invariants().unwrap();
    });
}

#[test]
fn pool_three_threads_bounded() {
    model::bounded(2, || {
        let p = pool(1024);
        allocations_are_disjoint(p.clone(), &[256, 256, 512]);
        assert_eq!(p.lock().live_bytes(), 0);
    });
}

fn fixed() -> Arc<FixedSize<SimUpstream<16>, Heap>> {
    let config = FixedConfig::new(256, 2).unwrap();
    Arc::new(FixedSize::new(
        SimUpstream::<16>::with_slots(1 << 20),
        config,
    ))
}

#[test]
fn fixed_size_two_threads_get_disjoint_blocks() {
    model::exhaustive(|| {
        let r = fixed();
        allocations_are_disjoint(r.clone(), &[256, 100]);
        assert_eq!(r.stats().live_blocks, 0);
        r.lock().blocks().audit().unwrap();
    });
}

#[test]
fn fixed_size_free_races_allocate() {
    model::exhaustive(|| {
        let r = fixed();
        free_races_allocate(r.clone(), 256);
        assert_eq!(r.stats().live_blocks, 0);
        r.lock().blocks().audit().unwrap();
    });
}

#[test]
fn fixed_size_three_threads_bounded() {
    model::bounded(2, || {
        // Two blocks per chunk: the third allocation grows the list.
        let r = fixed();
        allocations_are_disjoint(r.clone(), &[256, 256, 256]);
        assert_eq!(r.stats().live_blocks, 0);
    });
}

fn binning() -> Arc<Binning<SimUpstream<16>, Heap, 4>> {
    let b = Binning::with_exponents(SimUpstream::<16>::with_slots(1 << 30), 8, 9).unwrap();
    Arc::new(b)
}

#[test]
fn binning_two_threads_bins_and_upstream() {
    model::exhaustive(|| {
        // One request from a bin, one too large for any bin (straight to the upstream).
        let r = binning();
        allocations_are_disjoint(r.clone(), &[300, 4096]);
        let s = r.stats();
        assert_eq!((s.live_blocks, s.large_allocations), (0, 0));
        r.lock().audit().unwrap();
    });
}

#[test]
fn binning_free_races_allocate() {
    model::exhaustive(|| {
        let r = binning();
        free_races_allocate(r.clone(), 512);
        assert_eq!(r.stats().live_blocks, 0);
        r.lock().audit().unwrap();
    });
}

#[test]
fn binning_three_threads_bounded() {
    model::bounded(2, || {
        let r = binning();
        allocations_are_disjoint(r.clone(), &[256, 512, 1024]);
        assert_eq!(r.stats().large_allocations, 0);
    });
}
