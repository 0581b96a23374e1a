//! loom models of the adaptors: counters, budgets and records stay exact in every interleaving.
#![cfg(loom)]

use std::collections::HashMap;
use std::sync::Arc;

use loom::thread;
use strata_core::adaptors::{
    Action, Aligned, Limiting, Logging, Statistics, ThreadSafe, Tracking, VecSink,
};
use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
use strata_loom_tests::model;

const S: StreamKey = StreamKey::DEFAULT;

type Base = ThreadSafe<SimUpstream<16>>;

fn base(capacity: u64) -> Base {
    ThreadSafe::new(SimUpstream::with_slots(capacity))
}

/// Runs `work(i, size)` for each size on a thread of its own, and joins them.
fn on_threads<T, F>(sizes: &[u64], work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, u64) -> T + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let handles: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let work = work.clone();
            thread::spawn(move || work(i, size))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn statistics_peaks_are_exact() {
    model::exhaustive(|| {
        let r = Arc::new(Statistics::new(base(1 << 20)));
        let (a, b) = (256i64, 1024i64);
        let r2 = r.clone();
        on_threads(&[a as u64, b as u64], move |_, size| {
            let x = r2.allocate(size, 256, S).unwrap();
            r2.deallocate(x, size, 256, S).unwrap();
        });
        let s = r.stats();
        assert_eq!((s.bytes.value, s.bytes.total), (0, a + b));
        assert_eq!((s.count.value, s.count.total), (0, 2));
        // Either both blocks were live at once (in the order the counters saw), or not: the
        // byte peak and the count peak tell the same story.
        match s.count.peak {
            2 => assert_eq!(s.bytes.peak, a + b),
            1 => assert_eq!(s.bytes.peak, b),
            p => panic!("count peak {p}"),
        }
    });
}

#[test]
fn statistics_frames_race_allocations() {
    model::exhaustive(|| {
        let r = Arc::new(Statistics::new(base(1 << 20)));
        let frames = {
            let r = r.clone();
            thread::spawn(move || {
                r.push_counters().unwrap();
                r.pop_counters().unwrap()
            })
        };
        let user = {
            let r = r.clone();
            thread::spawn(move || {
                let x = r.allocate(512, 256, S).unwrap();
                r.deallocate(x, 512, 256, S).unwrap();
            })
        };
        let inner = frames.join().unwrap();
        user.join().unwrap();
        // Whichever frame saw the allocation and the free, the base frame ends exact.
        let s = r.stats();
        assert_eq!(r.depth(), 1);
        assert_eq!((s.bytes.value, s.bytes.peak, s.bytes.total), (0, 512, 512));
        assert_eq!((s.count.value, s.count.peak, s.count.total), (0, 1, 1));
        assert!(inner.bytes.value == 0 || inner.bytes.value.abs() == 512);
    });
}

#[test]
fn statistics_three_threads_bounded() {
    model::bounded(2, || {
        let r = Arc::new(Statistics::new(base(1 << 20)));
        let r2 = r.clone();
        on_threads(&[256, 256, 256], move |_, size| {
            let x = r2.allocate(size, 256, S).unwrap();
            r2.deallocate(x, size, 256, S).unwrap();
        });
        let s = r.stats();
        assert_eq!((s.count.value, s.count.total), (0, 3));
        assert_eq!(s.bytes.peak, 256 * s.count.peak);
    });
}

#[test]
fn limiting_budget_holds_exactly() {
    model::exhaustive(|| {
        // The upstream holds exactly the budget: if the adaptor ever let more than the limit be
        // live (say, by giving the charge back before the upstream took the block), the upstream
        // would run out first and report OutOfMemory.
        let r = Arc::new(Limiting::new(base(4096), 4096));
        let r2 = r.clone();
        let got = on_threads(&[3072, 2048], move |_, size| {
            match r2.allocate(size, 256, S) {
                Ok(x) => {
                    assert!(r2.allocated_bytes() <= 4096);
                    r2.deallocate(x, size, 256, S).unwrap();
                    true
                }
                Err(Error::LimitExceeded { limit: 4096, .. }) => false,
                Err(e) => panic!("unexpected {e}"),
            }
        });
        assert!(got.iter().any(|&ok| ok));
        assert_eq!(r.allocated_bytes(), 0);
        assert_eq!(r.upstream().lock().in_use(), 0);
    });
}

#[test]
fn limiting_three_threads_bounded() {
    model::bounded(3, || {
        let r = Arc::new(Limiting::new(base(512), 512));
        let r2 = r.clone();
        on_threads(&[256, 256, 256], move |_, size| {
            if let Ok(x) = r2.allocate(size, 256, S) {
                assert!(r2.allocated_bytes() <= 512);
                r2.deallocate(x, size, 256, S).unwrap();
            }
        });
        assert_eq!(r.allocated_bytes(), 0);
    });
}

#[test]
fn tracking_records_every_outstanding_allocation() {
    model::exhaustive(|| {
        let r: Arc<Tracking<Base>> = Arc::new(Tracking::new(base(1 << 20)));
        let r2 = r.clone();
        let kept = on_threads(&[256, 512], move |i, size| {
            let tag = if i == 0 { "freed" } else { "kept" };
            let x = r2.allocate_tagged(size, 256, S, tag).unwrap();
            if i == 0 {
                r2.deallocate(x, size, 256, S).unwrap();
                None
            } else {
                Some(x)
            }
        });
        let out = r.outstanding();
        assert_eq!(out.len(), 1);
        assert_eq!(
            (Some(out[0].addr), out[0].size, out[0].tag),
            (kept[1], 512, Some("kept"))
        );
        assert_eq!(r.allocated_bytes(), 512);
    });
}

#[test]
fn aligned_maps_stay_exact() {
    model::exhaustive(|| {
        let r = Arc::new(Aligned::new(base(1 << 20)));
        let r2 = r.clone();
        on_threads(&[4096, 1 << 14], move |_, align| {
            let x = r2.allocate(300, align, S).unwrap();
            assert_eq!(x % align, 0);
            r2.deallocate(x, 300, align, S).unwrap();
        });
        assert_eq!(r.over_aligned_count(), 0);
        assert_eq!(r.upstream().lock().in_use(), 0);
    });
}

#[test]
fn logging_never_shows_a_reuse_before_its_free() {
    model::exhaustive(|| {
        let sink = Arc::new(VecSink::new());
        let r = Arc::new(Logging::new(base(1 << 20), sink.clone()));
        let r2 = r.clone();
        on_threads(&[256, 256], move |_, size| {
            let x = r2.allocate(size, 256, S).unwrap();
            r2.deallocate(x, size, 256, S).unwrap();
        });
        // Per address, the log alternates allocate / free, starting with allocate.
        let mut live: HashMap<u64, bool> = HashMap::new();
        for e in sink.events() {
            let was_live = live.insert(e.addr, e.action == Action::Allocate);
            match e.action {
                Action::Allocate => {
                    assert_ne!(was_live, Some(true), "{:#x} reused before its free", e.addr)
                }
                Action::Free => assert_eq!(was_live, Some(true)),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
}
