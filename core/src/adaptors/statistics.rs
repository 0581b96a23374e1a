//! The statistics adaptor: current, peak and total bytes and allocation counts, with a stack of
//! nested counter frames (RMM's `push_counters` / `pop_counters`).

use crate::sync::Mutex;
use crate::{Error, MemoryResource, StreamKey};

/// One counter: its current value, the highest value it reached, and the sum of everything
/// ever added.
///
/// Values are signed: an inner frame (see [`Statistics::push_counters`]) that frees blocks
/// allocated before it was pushed goes negative, as in RMM.
///
/// ```
/// use strata_core::adaptors::Counter;
/// let c = Counter::default();
/// assert_eq!((c.value, c.peak, c.total), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Counter {
    /// The current value.
    pub value: i64,
    /// The highest value reached.
    pub peak: i64,
    /// The sum of all increments.
    pub total: i64,
}

impl Counter {
    #[inline]
    fn add(&mut self, n: i64) {
        self.value = self.value.saturating_add(n);
        self.total = self.total.saturating_add(n);
        self.peak = self.peak.max(self.value);
        debug_assert!(self.peak >= self.value);
    }

    #[inline]
    fn sub(&mut self, n: i64) {
        self.value = self.value.saturating_sub(n);
    }

    /// Folds a popped inner frame into this (outer) one: RMM's rule, the inner peak counts from
    /// the outer value at the time of the push.
    fn merge_inner(&mut self, inner: &Counter) {
        self.peak = self.peak.max(self.value.saturating_add(inner.peak));
        self.value = self.value.saturating_add(inner.value);
        self.total = self.total.saturating_add(inner.total);
        debug_assert!(self.peak >= self.value);
    }
}

/// The counters of one frame: bytes and number of allocations.
///
/// ```
/// use strata_core::adaptors::{Statistics, ThreadSafe};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let r = Statistics::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
/// let a = r.allocate(1000, 256, StreamKey::DEFAULT)?;
/// let s = r.stats();
/// assert_eq!((s.bytes.value, s.count.value), (1000, 1));
/// # r.deallocate(a, 1000, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Stats {
    /// Bytes.
    pub bytes: Counter,
    /// Number of allocations.
    pub count: Counter,
}

impl Stats {
    #[inline]
    fn add(&mut self, size: i64) {
        self.bytes.add(size);
        self.count.add(1);
    }

    #[inline]
    fn sub(&mut self, size: i64) {
        self.bytes.sub(size);
        self.count.sub(1);
    }
}

/// Counts what passes through it: current, peak and total bytes and allocations.
///
/// Frames nest: [`push_counters`](Self::push_counters) starts a fresh inner frame and
/// [`pop_counters`](Self::pop_counters) folds it back into the outer one, the outer peak
/// becoming `max(outer.peak, outer.value + inner.peak)`. At most `D` frames exist at once, the
/// base frame included.
///
/// Exactness under concurrency: an allocation is counted after the upstream returns it, a free
/// is counted *before* the upstream takes the block back, and both under one short lock. So the
/// counters follow a linearization of the calls in which no address is ever live twice, and the
/// peak is never overstated (counting a free after the upstream call, as RMM does, lets another
/// thread's allocation of the same block be counted first). If the upstream rejects a free, the
/// count is restored; a concurrent reader may have seen it lowered meanwhile.
///
/// ```
/// use strata_core::adaptors::{Statistics, ThreadSafe};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let r = Statistics::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
/// let s = StreamKey::DEFAULT;
/// let a = r.allocate(1000, 256, s)?;
/// r.push_counters()?;
/// let b = r.allocate(500, 256, s)?;
/// r.deallocate(b, 500, 256, s)?;
/// let inner = r.pop_counters().expect("one frame was pushed");
/// assert_eq!((inner.bytes.value, inner.bytes.peak, inner.bytes.total), (0, 500, 500));
/// let outer = r.stats();
/// assert_eq!((outer.bytes.value, outer.bytes.peak, outer.bytes.total), (1000, 1500, 1500));
/// r.deallocate(a, 1000, 256, s)?;
/// assert_eq!(r.stats().count.value, 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Statistics<R, const D: usize = 8> {
    upstream: R,
    /// The frame stack, base first. Invariant: never empty (the base frame is never popped).
    frames: Mutex<heapless::Vec<Stats, D>>,
}

/// Converts a byte count to the signed counter domain (saturating; no real block is that big).
#[inline]
fn signed(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

impl<R> Statistics<R> {
    /// Counts the traffic to `upstream`, with up to 8 nested frames.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.depth(), 1);
    /// ```
    pub fn new(upstream: R) -> Self {
        Self::with_depth(upstream)
    }
}

impl<R, const D: usize> Statistics<R, D> {
    /// Counts the traffic to `upstream`, with up to `D` frames (the base frame included).
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::<_, 2>::with_depth(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// r.push_counters()?;
    /// assert!(r.push_counters().is_err(), "only two frames fit");
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_depth(upstream: R) -> Self {
        const { assert!(D >= 1, "Statistics needs room for the base frame") };
        let mut frames = heapless::Vec::new();
        // D >= 1, so the base frame fits.
        let _ = frames.push(Stats::default());
        Self {
            upstream,
            frames: Mutex::new(frames),
        }
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.upstream().lock().capacity(), 1024);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// Unwraps the resource, dropping the counters.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// let inner = r.into_inner();
    /// assert_eq!(inner.lock().in_use(), 0);
    /// ```
    pub fn into_inner(self) -> R {
        self.upstream
    }

    /// The counters of the innermost (current) frame.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.stats(), Default::default());
    /// ```
    pub fn stats(&self) -> Stats {
        let frames = self.frames.lock();
        *frames.last().expect("the base frame is never popped")
    }

    /// Byte counters of the current frame (`stats().bytes`).
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Statistics::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// let a = r.allocate(300, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.bytes().value, 300);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn bytes(&self) -> Counter {
        self.stats().bytes
    }

    /// Allocation-count counters of the current frame (`stats().count`).
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Statistics::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// let a = r.allocate(300, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.counts().total, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn counts(&self) -> Counter {
        self.stats().count
    }

    /// How many frames exist (1 when none is pushed).
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// r.push_counters()?;
    /// assert_eq!(r.depth(), 2);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn depth(&self) -> usize {
        self.frames.lock().len()
    }

    /// Starts a new, zeroed inner frame; returns the counters of the frame that was current.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when `D` frames exist already; nothing changes then.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Statistics::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// let a = r.allocate(256, 256, StreamKey::DEFAULT)?;
    /// let outer = r.push_counters()?;
    /// assert_eq!(outer.bytes.value, 256);
    /// assert_eq!(r.bytes().value, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn push_counters(&self) -> Result<Stats, Error> {
        let mut frames = self.frames.lock();
        let current = *frames.last().expect("the base frame is never popped");
        frames
            .push(Stats::default())
            .map_err(|_| Error::MetadataExhausted { capacity: D })?;
        Ok(current)
    }

    /// Ends the innermost frame, folds it into the outer one and returns it; `None` (and no
    /// change) when only the base frame exists.
    ///
    /// ```
    /// use strata_core::adaptors::{Statistics, ThreadSafe};
    /// let r = Statistics::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert!(r.pop_counters().is_none());
    /// r.push_counters()?;
    /// assert!(r.pop_counters().is_some());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn pop_counters(&self) -> Option<Stats> {
        let mut frames = self.frames.lock();
        if frames.len() < 2 {
            return None;
        }
        let inner = frames.pop()?;
        let outer = frames.last_mut()?;
        outer.bytes.merge_inner(&inner.bytes);
        outer.count.merge_inner(&inner.count);
        Some(inner)
    }
}

impl<R: MemoryResource, const D: usize> MemoryResource for Statistics<R, D> {
    #[inline]
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let addr = self.upstream.allocate(size, align, stream)?;
        let mut frames = self.frames.lock();
        if let Some(top) = frames.last_mut() {
            top.add(signed(size));
        }
        Ok(addr)
    }

    #[inline]
    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        // Count the free first: once the upstream has the block back, another thread may be
        // handed the same block, and it must not be counted twice.
        if let Some(top) = self.frames.lock().last_mut() {
            top.sub(signed(size));
        }
        let result = self.upstream.deallocate(addr, size, align, stream);
        if result.is_err() {
            // The upstream kept the block: restore the count without touching peak or total.
            if let Some(top) = self.frames.lock().last_mut() {
                top.bytes.value = top.bytes.value.saturating_add(signed(size));
                top.count.value = top.count.value.saturating_add(1);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::ThreadSafe;

    const S: StreamKey = StreamKey::DEFAULT;

    fn stats() -> Statistics<ThreadSafe<SimUpstream<64>>, 4> {
        Statistics::with_depth(ThreadSafe::new(SimUpstream::with_slots(1 << 20)))
    }

    #[test]
    fn counts_bytes_and_allocations() {
        let r = stats();
        let a = r.allocate(100, 256, S).unwrap();
        let b = r.allocate(200, 256, S).unwrap();
        r.deallocate(a, 100, 256, S).unwrap();
        let c = r.allocate(50, 256, S).unwrap();
        let s = r.stats();
        assert_eq!(
            s.bytes,
            Counter {
                value: 250,
                peak: 300,
                total: 350
            }
        );
        assert_eq!(
            s.count,
            Counter {
                value: 2,
                peak: 2,
                total: 3
            }
        );
        r.deallocate(b, 200, 256, S).unwrap();
        r.deallocate(c, 50, 256, S).unwrap();
        assert_eq!(r.stats().bytes.value, 0);
        assert_eq!(r.stats().count.value, 0);
    }

    #[test]
    fn errors_are_forwarded_and_change_nothing() {
        let r = stats();
        let a = r.allocate(100, 256, S).unwrap();
        let before = r.stats();
        assert_eq!(r.allocate(0, 256, S), Err(Error::ZeroSize));
        assert!(matches!(
            r.allocate(1 << 30, 256, S),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(
            r.deallocate(a + 1, 100, 256, S),
            Err(Error::NotAllocated { addr: a + 1 })
        );
        assert_eq!(
            r.deallocate(a, 7, 256, S),
            Err(Error::SizeMismatch {
                addr: a,
                allocated: 100,
                given: 7
            })
        );
        assert_eq!(r.stats(), before);
    }

    #[test]
    fn nested_frames_merge_peaks_like_rmm() {
        let r = stats();
        let a = r.allocate(1000, 256, S).unwrap();
        r.deallocate(a, 1000, 256, S).unwrap();
        // Outer: value 0, peak 1000.
        let b = r.allocate(300, 256, S).unwrap();
        r.push_counters().unwrap();
        let c = r.allocate(800, 256, S).unwrap();
        // The inner frame frees a block of the outer one: negative is allowed.
        r.deallocate(b, 300, 256, S).unwrap();
        let inner = r.pop_counters().unwrap();
        assert_eq!(
            inner.bytes,
            Counter {
                value: 500,
                peak: 800,
                total: 800
            }
        );
        let outer = r.stats().bytes;
        // max(1000, 300 + 800) = 1100.
        assert_eq!(
            outer,
            Counter {
                value: 800,
                peak: 1100,
                total: 2100
            }
        );
        r.deallocate(c, 800, 256, S).unwrap();
    }

    #[test]
    fn negative_inner_counters_and_depth_limit() {
        let r = stats();
        let a = r.allocate(100, 256, S).unwrap();
        r.push_counters().unwrap();
        r.deallocate(a, 100, 256, S).unwrap();
        assert_eq!(r.bytes().value, -100);
        assert_eq!(r.counts().value, -1);
        r.push_counters().unwrap();
        r.push_counters().unwrap();
        assert_eq!(
            r.push_counters(),
            Err(Error::MetadataExhausted { capacity: 4 })
        );
        assert_eq!(r.depth(), 4);
        while r.pop_counters().is_some() {}
        assert_eq!(r.depth(), 1);
        assert_eq!(
            r.stats().bytes,
            Counter {
                value: 0,
                peak: 100,
                total: 100
            }
        );
    }

    #[test]
    fn usable_type_erased() {
        let base = ThreadSafe::new(SimUpstream::<8>::with_slots(4096));
        let dyn_base: &dyn MemoryResource = &base;
        let r = Statistics::new(dyn_base);
        let a = r.allocate(256, 256, S).unwrap();
        r.deallocate(a, 256, 256, S).unwrap();
        assert_eq!(r.counts().total, 1);
    }
}
