//! A simulated stream executor that checks the stream-order rule (feature `alloc`).
//!
//! [`SimStreams`] models streams of work with vector clocks and is itself a [`StreamOrder`], so
//! a stream-ordered resource under test calls it for its `order_after`. Tests route their
//! allocations and frees through [`SimStreams::allocate`] and [`SimStreams::deallocate`], and
//! the executor checks, on **every** allocation, the rule that makes stream-ordered reuse safe:
//!
//! > no byte freed on stream `S` is handed to stream `W` unless `W` was ordered after `S` at or
//! > after the free (through `order_after(W, S)`, a chain of such calls, or a host
//! > [`synchronize`](SimStreams::synchronize) of `S` before `W`'s work was enqueued).
//!
//! It checks by address, whatever the resource did in between (splitting, coalescing blocks of
//! several streams, moving free lists), and it also flags two live blocks that overlap. It
//! trusts nothing the resource says about itself.
//!
//! The model: each stream `i` has a vector clock `c[i]`; `c[i][j]` is the latest time of stream
//! `j` that stream `i`'s next work is ordered after. A free on `S` is an event on `S` at time
//! `t = ++c[S][S]`; `order_after(W, S)` joins `c[S]` into `c[W]`; `synchronize(S)` joins `c[S]`
//! into the host clock, which every later operation on any stream joins first. A block freed on
//! `S` at `t` may go to `W` if and only if `c[W][S] >= t`.
//!
//! ```
//! use strata_core::adaptors::ThreadSafe;
//! use strata_core::sim_stream::{SimStreams, Violation};
//! use strata_core::{SimUpstream, StreamKey};
//!
//! // A resource that knows nothing of streams: it hands a block freed on stream 1 straight to
//! // stream 2, with no ordering. The executor catches it.
//! let naive = ThreadSafe::new(SimUpstream::new(1 << 20));
//! let streams = SimStreams::new();
//! let (s1, s2) = (StreamKey(1), StreamKey(2));
//! let a = streams.allocate(&naive, 4096, 256, s1)?;
//! streams.deallocate(&naive, a, 4096, 256, s1)?;
//! let b = streams.allocate(&naive, 4096, 256, s2)?;
//! assert_eq!(a, b);
//! assert!(matches!(streams.violations()[0], Violation::Unordered { .. }));
//! # Ok::<(), strata_core::Error>(())
//! ```

use alloc::vec::Vec;

use crate::sync::Mutex;
use crate::{Error, MemoryResource, Range, StreamKey, StreamOrder};

/// A breach of the stream-order rule (or of block disjointness) seen by [`SimStreams`].
///
/// ```
/// use strata_core::sim_stream::Violation;
/// use strata_core::{Range, StreamKey};
/// let v = Violation::Unordered {
///     block: Range::new(0x1000, 256),
///     freed_on: StreamKey(1),
///     freed_at: 3,
///     handed_to: StreamKey(2),
///     ordered_until: 0,
/// };
/// assert!(matches!(v, Violation::Unordered { freed_at: 3, .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Bytes freed on `freed_on` at its time `freed_at` were handed to `handed_to`, which was
    /// ordered after `freed_on` only up to `ordered_until < freed_at`.
    Unordered {
        /// The bytes concerned (the part of the new block that overlaps the freed block).
        block: Range,
        /// The stream that freed them.
        freed_on: StreamKey,
        /// Its clock at the free.
        freed_at: u64,
        /// The stream they were handed to.
        handed_to: StreamKey,
        /// The latest time of `freed_on` that `handed_to` was ordered after.
        ordered_until: u64,
    },
    /// A block was handed out while it overlapped another live block.
    Overlap {
        /// The new block.
        block: Range,
        /// The stream it was handed to.
        stream: StreamKey,
        /// The live block it overlaps.
        live: Range,
        /// The stream that live block was allocated on.
        live_stream: StreamKey,
    },
}

/// A freed byte range and the event that freed it.
#[derive(Debug, Clone, Copy)]
struct Freed {
    range: Range,
    stream: usize,
    time: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Stream index → key.
    keys: Vec<StreamKey>,
    /// `clocks[i][j]`: the time of stream `j` that stream `i` is ordered after.
    /// Invariant: every row has `keys.len()` entries.
    clocks: Vec<Vec<u64>>,
    /// What the host has seen complete (joined into every stream before it acts).
    host: Vec<u64>,
    /// Freed, not yet reused ranges. Invariant: pairwise disjoint, and disjoint from `live`.
    freed: Vec<Freed>,
    /// Live blocks and the stream index they were allocated on.
    live: Vec<(Range, usize)>,
    violations: Vec<Violation>,
    order_calls: u64,
}

impl State {
    fn index(&mut self, key: StreamKey) -> usize {
        if let Some(i) = self.keys.iter().position(|&k| k == key) {
            return i;
        }
        self.keys.push(key);
        for row in &mut self.clocks {
            row.push(0);
        }
        self.host.push(0);
        // A new stream's work follows everything the host has seen complete.
        self.clocks.push(self.host.clone());
        debug_assert!(self.clocks.iter().all(|r| r.len() == self.keys.len()));
        self.keys.len() - 1
    }

    fn join_host(&mut self, i: usize) {
        for (c, h) in self.clocks[i].iter_mut().zip(&self.host) {
            *c = (*c).max(*h);
        }
    }

    /// An event on stream `i`; returns its time.
    fn tick(&mut self, i: usize) -> u64 {
        self.join_host(i);
        self.clocks[i][i] += 1;
        self.clocks[i][i]
    }

    fn join(&mut self, waiter: usize, signaller: usize) {
        if waiter == signaller {
            return;
        }
        let src = self.clocks[signaller].clone();
        for (c, s) in self.clocks[waiter].iter_mut().zip(src) {
            *c = (*c).max(s);
        }
    }

    /// Checks and records the hand-out of `block` to stream `w`.
    fn hand_out(&mut self, block: Range, w: usize) {
        self.join_host(w);
        for &(live, ls) in &self.live {
            if live.overlaps(&block) {
                self.violations.push(Violation::Overlap {
                    block,
                    stream: self.keys[w],
                    live,
                    live_stream: self.keys[ls],
                });
            }
        }
        let mut kept = Vec::with_capacity(self.freed.len() + 1);
        for f in core::mem::take(&mut self.freed) {
            if !f.range.overlaps(&block) {
                kept.push(f);
                continue;
            }
            let start = f.range.start.max(block.start);
            let end = f.range.end().min(block.end());
            let ordered_until = self.clocks[w][f.stream];
            if ordered_until < f.time {
                self.violations.push(Violation::Unordered {
                    block: Range::new(start, end - start),
                    freed_on: self.keys[f.stream],
                    freed_at: f.time,
                    handed_to: self.keys[w],
                    ordered_until,
                });
            }
            // The parts of the freed range outside the block stay freed.
            if f.range.start < start {
                kept.push(Freed {
                    range: Range::new(f.range.start, start - f.range.start),
                    ..f
                });
            }
            if end < f.range.end() {
                kept.push(Freed {
                    range: Range::new(end, f.range.end() - end),
                    ..f
                });
            }
        }
        self.freed = kept;
        self.live.push((block, w));
    }
}

/// A simulated stream executor: a [`StreamOrder`] that records every ordering and checks
/// every block hand-out against it. See the [module documentation](self) for the model.
///
/// It is `Sync`: the threads of a test (or of a loom model) share one executor, usually by
/// reference, with the resource under test holding `&SimStreams` as its stream order.
///
/// ```
/// use strata_core::adaptors::ThreadSafe;
/// use strata_core::sim_stream::SimStreams;
/// use strata_core::{SimUpstream, StreamKey, StreamOrder};
///
/// let naive = ThreadSafe::new(SimUpstream::new(1 << 20));
/// let streams = SimStreams::new();
/// let (s1, s2) = (StreamKey(1), StreamKey(2));
/// let a = streams.allocate(&naive, 4096, 256, s1)?;
/// streams.deallocate(&naive, a, 4096, 256, s1)?;
/// // What a stream-ordered resource does on a steal: order the taker after the freer.
/// streams.order_after(s2, s1)?;
/// streams.allocate(&naive, 4096, 256, s2)?;
/// assert!(streams.violations().is_empty());
/// assert_eq!(streams.order_calls(), 1);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct SimStreams {
    state: Mutex<State>,
}

impl SimStreams {
    /// An executor with no streams yet (streams appear when first named).
    ///
    /// ```
    /// let s = strata_core::sim_stream::SimStreams::new();
    /// assert!(s.violations().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates from `resource` on `stream`, then checks the block: it must not overlap a live
    /// block, and every part of it that was freed on a stream `S` must be ordered (for
    /// `stream`) after that free. A breach is recorded in [`violations`](Self::violations);
    /// the block is returned either way.
    ///
    /// # Errors
    ///
    /// The resource's error, unchanged; nothing is recorded then.
    ///
    /// ```
    /// use strata_core::adaptors::ThreadSafe;
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::{SimUpstream, StreamKey};
    /// let r = ThreadSafe::new(SimUpstream::new(1 << 20));
    /// let streams = SimStreams::new();
    /// let a = streams.allocate(&r, 256, 256, StreamKey(4))?;
    /// assert_eq!(streams.live_blocks(), 1);
    /// # streams.deallocate(&r, a, 256, 256, StreamKey(4))?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn allocate<R: MemoryResource + ?Sized>(
        &self,
        resource: &R,
        size: u64,
        align: u64,
        stream: StreamKey,
    ) -> Result<u64, Error> {
        let addr = resource.allocate(size, align, stream)?;
        let mut st = self.state.lock();
        let w = st.index(stream);
        st.hand_out(Range::new(addr, size), w);
        Ok(addr)
    }

    /// Frees a block to `resource` on `stream`, recording the free as an event on `stream`
    /// (before the resource sees the block, so that no other thread can be handed it first).
    ///
    /// # Errors
    ///
    /// The resource's error, unchanged; the free is then unrecorded and the block stays live.
    ///
    /// ```
    /// use strata_core::adaptors::ThreadSafe;
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::{SimUpstream, StreamKey};
    /// let r = ThreadSafe::new(SimUpstream::new(1 << 20));
    /// let streams = SimStreams::new();
    /// let a = streams.allocate(&r, 256, 256, StreamKey(4))?;
    /// assert!(streams.deallocate(&r, a, 512, 256, StreamKey(4)).is_err());
    /// streams.deallocate(&r, a, 256, 256, StreamKey(4))?;
    /// assert_eq!(streams.live_blocks(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn deallocate<R: MemoryResource + ?Sized>(
        &self,
        resource: &R,
        addr: u64,
        size: u64,
        align: u64,
        stream: StreamKey,
    ) -> Result<(), Error> {
        let block = Range::new(addr, size);
        let removed_live = {
            let mut st = self.state.lock();
            let s = st.index(stream);
            let time = st.tick(s);
            let pos = st.live.iter().position(|&(r, _)| r == block);
            let removed = pos.map(|p| st.live.swap_remove(p));
            st.freed.push(Freed {
                range: block,
                stream: s,
                time,
            });
            removed
        };
        let result = resource.deallocate(addr, size, align, stream);
        if result.is_err() {
            let mut st = self.state.lock();
            if let Some(p) = st.freed.iter().rposition(|f| f.range == block) {
                st.freed.swap_remove(p);
            }
            if let Some(live) = removed_live {
                st.live.push(live);
            }
        }
        result
    }

    /// Simulates work enqueued on `stream` (a kernel launch): advances its clock.
    ///
    /// ```
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::StreamKey;
    /// let s = SimStreams::new();
    /// s.enqueue(StreamKey(1));
    /// assert_eq!(s.clock(StreamKey(1)), 1);
    /// ```
    pub fn enqueue(&self, stream: StreamKey) {
        let mut st = self.state.lock();
        let i = st.index(stream);
        st.tick(i);
    }

    /// Simulates a host synchronize of `stream`: all its work so far is complete, so work
    /// enqueued afterwards on any stream is ordered after it.
    ///
    /// ```
    /// use strata_core::adaptors::ThreadSafe;
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::{SimUpstream, StreamKey};
    /// let r = ThreadSafe::new(SimUpstream::new(1 << 20));
    /// let streams = SimStreams::new();
    /// let a = streams.allocate(&r, 256, 256, StreamKey(1))?;
    /// streams.deallocate(&r, a, 256, 256, StreamKey(1))?;
    /// streams.synchronize(StreamKey(1));
    /// streams.allocate(&r, 256, 256, StreamKey(2))?; // safe: the free completed
    /// assert!(streams.violations().is_empty());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn synchronize(&self, stream: StreamKey) {
        let mut st = self.state.lock();
        let i = st.index(stream);
        let done = st.clocks[i].clone();
        for (h, d) in st.host.iter_mut().zip(done) {
            *h = (*h).max(d);
        }
    }

    /// The own clock of `stream`: how many events (frees, [`enqueue`](Self::enqueue)s) it has
    /// had; 0 for a stream never seen.
    ///
    /// ```
    /// let s = strata_core::sim_stream::SimStreams::new();
    /// assert_eq!(s.clock(strata_core::StreamKey(9)), 0);
    /// ```
    pub fn clock(&self, stream: StreamKey) -> u64 {
        let st = self.state.lock();
        match st.keys.iter().position(|&k| k == stream) {
            Some(i) => st.clocks[i][i],
            None => 0,
        }
    }

    /// How many times [`StreamOrder::order_after`] was called (with two distinct streams).
    ///
    /// ```
    /// use strata_core::sim_stream::SimStreams;
    /// use strata_core::{StreamKey, StreamOrder};
    /// let s = SimStreams::new();
    /// s.order_after(StreamKey(1), StreamKey(2))?;
    /// s.order_after(StreamKey(1), StreamKey(1))?; // a stream is always ordered after itself
    /// assert_eq!(s.order_calls(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn order_calls(&self) -> u64 {
        self.state.lock().order_calls
    }

    /// Every breach seen so far, in order.
    ///
    /// ```
    /// assert!(strata_core::sim_stream::SimStreams::new().violations().is_empty());
    /// ```
    pub fn violations(&self) -> Vec<Violation> {
        self.state.lock().violations.clone()
    }

    /// How many blocks handed out through [`allocate`](Self::allocate) are live.
    ///
    /// ```
    /// assert_eq!(strata_core::sim_stream::SimStreams::new().live_blocks(), 0);
    /// ```
    pub fn live_blocks(&self) -> usize {
        self.state.lock().live.len()
    }
}

impl StreamOrder for SimStreams {
    /// Joins `signaller`'s clock into `waiter`'s. Never fails.
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), Error> {
        if waiter == signaller {
            return Ok(());
        }
        let mut st = self.state.lock();
        let w = st.index(waiter);
        let s = st.index(signaller);
        st.join(w, s);
        st.order_calls += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::{CallbackResource, ThreadSafe};

    const S1: StreamKey = StreamKey(1);
    const S2: StreamKey = StreamKey(2);
    const S3: StreamKey = StreamKey(3);

    fn naive() -> ThreadSafe<SimUpstream<64>> {
        ThreadSafe::new(SimUpstream::with_slots(1 << 20))
    }

    #[test]
    fn reuse_on_the_freeing_stream_needs_no_order() {
        let r = naive();
        let st = SimStreams::new();
        for _ in 0..3 {
            let a = st.allocate(&r, 1024, 256, S1).unwrap();
            st.enqueue(S1);
            st.deallocate(&r, a, 1024, 256, S1).unwrap();
        }
        assert!(st.violations().is_empty());
        assert_eq!(st.order_calls(), 0);
    }

    #[test]
    fn an_order_made_before_the_free_does_not_count() {
        let r = naive();
        let st = SimStreams::new();
        let a = st.allocate(&r, 1024, 256, S1).unwrap();
        st.order_after(S2, S1).unwrap(); // too early: the free comes later
        st.deallocate(&r, a, 1024, 256, S1).unwrap();
        let b = st.allocate(&r, 1024, 256, S2).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            st.violations(),
            [Violation::Unordered {
                block: Range::new(a, 1024),
                freed_on: S1,
                freed_at: 1,
                handed_to: S2,
                ordered_until: 0,
            }]
        );
    }

    #[test]
    fn order_is_transitive_and_host_sync_orders_everyone() {
        let r = naive();
        let st = SimStreams::new();
        let a = st.allocate(&r, 1024, 256, S1).unwrap();
        st.deallocate(&r, a, 1024, 256, S1).unwrap();
        st.order_after(S2, S1).unwrap();
        st.order_after(S3, S2).unwrap();
        st.allocate(&r, 1024, 256, S3).unwrap();
        let b = st.allocate(&r, 2048, 256, S2).unwrap();
        st.deallocate(&r, b, 2048, 256, S2).unwrap();
        st.synchronize(S2);
        st.allocate(&r, 2048, 256, StreamKey(4)).unwrap();
        assert!(st.violations().is_empty(), "{:?}", st.violations());
    }

    #[test]
    fn partial_reuse_checks_each_freed_piece() {
        let r = naive();
        let st = SimStreams::new();
        // Two neighbouring blocks freed on two streams, reused as one block on S3, which was
        // ordered after S1 only: the S2 half is flagged.
        let a = st.allocate(&r, 1024, 256, S1).unwrap();
        let b = st.allocate(&r, 1024, 256, S2).unwrap();
        assert_eq!(b, a + 1024);
        st.deallocate(&r, a, 1024, 256, S1).unwrap();
        st.deallocate(&r, b, 1024, 256, S2).unwrap();
        st.order_after(S3, S1).unwrap();
        let c = st.allocate(&r, 2048, 256, S3).unwrap();
        assert_eq!(c, a);
        let v = st.violations();
        assert_eq!(v.len(), 1);
        assert!(matches!(
            v[0],
            Violation::Unordered { block, freed_on: S2, handed_to: S3, .. } if block == Range::new(b, 1024)
        ));
    }

    #[test]
    fn overlapping_live_blocks_are_flagged() {
        // A broken resource that always returns the same address.
        let broken = CallbackResource::new(
            |_: u64, _: u64, _: StreamKey| Ok(0x4000),
            |_: u64, _: u64, _: u64, _: StreamKey| Ok(()),
        );
        let st = SimStreams::new();
        st.allocate(&broken, 512, 256, S1).unwrap();
        st.allocate(&broken, 256, 256, S1).unwrap();
        assert!(matches!(
            st.violations()[..],
            [Violation::Overlap { live, .. }] if live == Range::new(0x4000, 512)
        ));
    }

    #[test]
    fn a_refused_free_is_unrecorded() {
        let r = naive();
        let st = SimStreams::new();
        let a = st.allocate(&r, 1024, 256, S1).unwrap();
        assert!(st.deallocate(&r, a, 512, 256, S1).is_err());
        assert_eq!(st.live_blocks(), 1);
        st.deallocate(&r, a, 1024, 256, S1).unwrap();
        st.order_after(S2, S1).unwrap();
        st.allocate(&r, 1024, 256, S2).unwrap();
        assert!(st.violations().is_empty());
    }
}
