//! loom models of the arena: sub-arenas on their own locks, the global arena behind another,
//! and the lock-free stream table in front of them.
#![cfg(loom)]

// `StreamOrder` is implemented for the standard `Arc`; loom need not model reference counts.
use std::sync::Arc;

use loom::thread;
use strata_core::algo::ArenaConfig;
use strata_core::resources::Arena;
use strata_core::sim_stream::SimStreams;
use strata_core::{Error, SimUpstream, StreamKey, StreamOrder};
use strata_loom_tests::model;

const MIB: u64 = 1 << 20;
const S1: StreamKey = StreamKey(1);
const S2: StreamKey = StreamKey(2);
const S3: StreamKey = StreamKey(3);

type SimArena = Arena<SimUpstream<16>, Arc<SimStreams>>;

/// An arena of `superblocks` superblocks of 1 MiB, for at most `streams` streams.
fn setup(superblocks: u64, streams: usize) -> (Arc<SimStreams>, Arc<SimArena>) {
    let order = Arc::new(SimStreams::new());
    let upstream = SimUpstream::<16>::with_slots(1 << 30);
    let config = ArenaConfig::new(superblocks * MIB);
    let arena = Arena::with_streams(upstream, order.clone(), config, streams).unwrap();
    (order, Arc::new(arena))
}

/// Spawns a thread that runs `f(&streams, &arena)`.
fn spawn<T: Send + 'static>(
    streams: &Arc<SimStreams>,
    arena: &Arc<SimArena>,
    f: impl FnOnce(&SimStreams, &SimArena) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let (streams, arena) = (streams.clone(), arena.clone());
    thread::spawn(move || f(&streams, &arena))
}

#[test]
fn two_streams_take_superblocks_from_the_global_arena_at_once() {
    model::exhaustive(|| {
        let (streams, arena) = setup(2, 2);
        let handles: Vec<_> = [S1, S2]
            .into_iter()
            .map(|s| {
                spawn(&streams, &arena, move |st, a| {
                    let x = st.allocate(a, 4096, 256, s).unwrap();
                    st.deallocate(a, x, 4096, 256, s).unwrap();
                    x
                })
            })
            .collect();
        let blocks: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Two sub-arenas, two superblocks: the blocks lie a superblock apart.
        assert!(blocks[0].abs_diff(blocks[1]) >= MIB);
        let s = arena.stats();
        assert_eq!((s.streams, s.superblocks), (2, 2));
        assert!(streams.violations().is_empty());
        arena.audit().unwrap();
    });
}

#[test]
fn a_large_request_races_a_superblock() {
    model::exhaustive(|| {
        // Three superblocks' room: a 2 MiB block and a superblock fit side by side.
        let (streams, arena) = setup(3, 2);
        let large = spawn(&streams, &arena, |st, a| {
            let x = st.allocate(a, 2 * MIB, 256, S1).unwrap();
            st.deallocate(a, x, 2 * MIB, 256, S1).unwrap();
        });
        let small = spawn(&streams, &arena, |st, a| {
            let x = st.allocate(a, 256, 256, S2).unwrap();
            st.deallocate(a, x, 256, 256, S2).unwrap();
        });
        large.join().unwrap();
        small.join().unwrap();
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        let s = arena.stats();
        assert_eq!((s.large_bytes, s.returns), (0, 1));
        arena.audit().unwrap();
    });
}

#[test]
fn pending_large_frees_race_another_streams_take() {
    model::exhaustive(|| {
        // Room for two 2 MiB blocks, one per stream: each stream frees its own and takes one
        // again, which may be the other's (then the shared stream must have been ordered after
        // its freer, whose free may still be pending).
        let (streams, arena) = setup(4, 2);
        let handles: Vec<_> = [S1, S2]
            .into_iter()
            .map(|s| {
                let x = streams.allocate(&*arena, 2 * MIB, 256, s).unwrap();
                spawn(&streams, &arena, move |st, a| {
                    st.deallocate(a, x, 2 * MIB, 256, s).unwrap();
                    st.allocate(a, 2 * MIB, 256, s).unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        assert_eq!(arena.stats().returns, 2);
        arena.audit().unwrap();
    });
}

#[test]
fn a_cross_stream_free_races_the_owner() {
    model::exhaustive(|| {
        let (streams, arena) = setup(2, 2);
        let x = streams.allocate(&*arena, 4096, 256, S1).unwrap();
        // The block was used last on S2 (S2 waited for S1), and is freed there.
        streams.order_after(S2, S1).unwrap();
        let freer = spawn(&streams, &arena, move |st, a| {
            st.deallocate(a, x, 4096, 256, S2).unwrap();
        });
        let owner = spawn(&streams, &arena, |st, a| {
            st.allocate(a, 4096, 256, S1).unwrap()
        });
        freer.join().unwrap();
        let y = owner.join().unwrap();
        // Whether the owner got the freed block back or another one, the reuse was ordered.
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        streams.deallocate(&*arena, y, 4096, 256, S1).unwrap();
        arena.audit().unwrap();
    });
}

#[test]
fn reclaim_races_reuse() {
    model::exhaustive(|| {
        // Two superblocks: S1 holds one, wholly free; S2 holds the other, in use. S3 needs a
        // superblock (S1's must be reclaimed) while S1 reuses its own.
        let (streams, arena) = setup(2, 3);
        let x = streams.allocate(&*arena, MIB, 256, S1).unwrap();
        let kept = streams.allocate(&*arena, MIB, 256, S2).unwrap();
        streams.deallocate(&*arena, x, MIB, 256, S1).unwrap();
        let taker = spawn(&streams, &arena, |st, a| {
            match st.allocate(a, MIB, 256, S3) {
                Ok(y) => Some(y),
                Err(Error::OutOfMemory { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            }
        });
        let reuser = spawn(&streams, &arena, |st, a| {
            match st.allocate(a, 256, 256, S1) {
                Ok(y) => Some(y),
                Err(Error::OutOfMemory { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            }
        });
        let took = taker.join().unwrap();
        let reused = reuser.join().unwrap();
        assert!(took.is_some() || reused.is_some());
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        for (b, size, s) in [(took, MIB, S3), (reused, 256, S1), (Some(kept), MIB, S2)] {
            if let Some(b) = b {
                streams.deallocate(&*arena, b, size, 256, s).unwrap();
            }
        }
        arena.audit().unwrap();
    });
}

#[test]
fn two_threads_on_one_new_stream_share_one_sub_arena() {
    model::exhaustive(|| {
        let (streams, arena) = setup(2, 1);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                spawn(&streams, &arena, |st, a| {
                    let x = st.allocate(a, 256, 256, S1).unwrap();
                    st.deallocate(a, x, 256, 256, S1).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // The table holds the stream once (a second slot would not fit: one stream at most).
        assert_eq!(arena.stats().streams, 1);
        assert_eq!(arena.stats().superblocks, 1);
        arena.audit().unwrap();
    });
}

#[test]
fn retiring_a_stream_races_a_new_one() {
    model::exhaustive(|| {
        // Room for one stream: S2 gets a slot only once S1's is retired and empty.
        let (streams, arena) = setup(2, 1);
        let x = streams.allocate(&*arena, 4096, 256, S1).unwrap();
        streams.deallocate(&*arena, x, 4096, 256, S1).unwrap();
        let retirer = spawn(&streams, &arena, |_, a| a.retire_stream(S1).unwrap());
        let newcomer = spawn(&streams, &arena, |st, a| {
            match st.allocate(a, 4096, 256, S2) {
                Ok(y) => {
                    st.deallocate(a, y, 4096, 256, S2).unwrap();
                    true
                }
                Err(Error::MetadataExhausted { capacity: 1 }) => false,
                Err(e) => panic!("unexpected {e}"),
            }
        });
        retirer.join().unwrap();
        let _ = newcomer.join().unwrap();
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        assert!(arena.stats().streams <= 1);
        arena.audit().unwrap();
    });
}

#[test]
fn three_streams_bounded() {
    model::bounded(2, || {
        let (streams, arena) = setup(3, 3);
        let handles: Vec<_> = [S1, S2, S3]
            .into_iter()
            .map(|s| {
                spawn(&streams, &arena, move |st, a| {
                    let x = st.allocate(a, 4096, 256, s).unwrap();
                    st.deallocate(a, x, 4096, 256, s).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(streams.violations().is_empty());
        assert_eq!(arena.stats().superblocks, 3);
        arena.audit().unwrap();
    });
}

#[test]
fn two_streams_free_each_others_blocks() {
    model::exhaustive(|| {
        // Each stream allocates, then frees the other's block (after waiting for it): two
        // cross-stream frees racing two allocations.
        let (streams, arena) = setup(2, 2);
        let a = streams.allocate(&*arena, 4096, 256, S1).unwrap();
        let b = streams.allocate(&*arena, 4096, 256, S2).unwrap();
        streams.order_after(S1, S2).unwrap();
        streams.order_after(S2, S1).unwrap();
        let handles: Vec<_> = [(S1, b), (S2, a)]
            .into_iter()
            .map(|(s, theirs)| {
                spawn(&streams, &arena, move |st, ar| {
                    st.deallocate(ar, theirs, 4096, 256, s).unwrap();
                    let mine = st.allocate(ar, 4096, 256, s).unwrap();
                    st.deallocate(ar, mine, 4096, 256, s).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            streams.violations().is_empty(),
            "{:?}",
            streams.violations()
        );
        arena.audit().unwrap();
    });
}
