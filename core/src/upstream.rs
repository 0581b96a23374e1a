//! Upstreams: where the algorithms get their big ranges from.

use crate::{Error, Range, align_up, check_alignment};

/// A source of big ranges (the pool's chunks, the arena's global arena, binning's large
/// requests).
///
/// The algorithms own their upstream and call it rarely: when they grow, and when they give a
/// wholly free chunk back.
///
/// ```
/// use strata_core::{SimUpstream, Upstream};
/// fn grab<U: Upstream>(u: &mut U) -> strata_core::Range {
///     u.allocate(1 << 16, 256).expect("room")
/// }
/// let mut sim = SimUpstream::new(1 << 20);
/// let r = grab(&mut sim);
/// sim.deallocate(r)?;
/// # Ok::<(), strata_core::Error>(())
/// ```
pub trait Upstream {
    /// Allocates a range of exactly `size` bytes aligned to `align`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfMemory`] when the upstream has no room; [`Error::ZeroSize`] and
    /// [`Error::InvalidAlignment`] for bad requests; a backend error from a device upstream.
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error>;

    /// Gives back a range obtained from [`Upstream::allocate`], whole.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] or [`Error::SizeMismatch`] for a range this upstream did not
    /// hand out as such; nothing changes then.
    fn deallocate(&mut self, range: Range) -> Result<(), Error>;
}

impl<U: Upstream + ?Sized> Upstream for &mut U {
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        (**self).allocate(size, align)
    }
    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        (**self).deallocate(range)
    }
}

/// A simulated device: a virtual address space with a byte capacity, and no memory behind it.
///
/// Like `cuMemAlloc` it limits the bytes *in use* (the capacity), not the layout of the
/// address space: addresses come from a large virtual window, first fit, so the simulated
/// device itself never fails through fragmentation. Used by tests, benchmarks and the CLI when
/// there is no GPU. It keeps its books in `N` fixed slots (no heap): `N` bounds the number of
/// live ranges and of free gaps between them; past that, allocation returns
/// [`Error::MetadataExhausted`].
///
/// ```
/// use strata_core::{SimUpstream, Upstream, Error};
/// let mut sim = SimUpstream::new(1024);
/// let a = sim.allocate(768, 256)?;
/// assert!(matches!(sim.allocate(512, 256), Err(Error::OutOfMemory { .. })));
/// sim.deallocate(a)?;
/// assert_eq!(sim.in_use(), 0);
/// assert_eq!(sim.peak_in_use(), 768);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct SimUpstream<const N: usize = 1024> {
    capacity: u64,
    in_use: u64,
    peak_in_use: u64,
    allocations: u64,
    /// Live ranges, sorted by start, pairwise disjoint.
    live: heapless::Vec<Range, N>,
    /// Free gaps of the virtual window, sorted by start, disjoint, none adjacent to another
    /// (they are merged on free), and disjoint from every live range.
    free: heapless::Vec<Range, N>,
}

/// The first simulated address (nothing is ever handed out at or near 0).
pub const SIM_BASE: u64 = 1 << 40;
/// The size of the simulated virtual window (64 TiB), independent of the capacity.
pub const SIM_WINDOW: u64 = 1 << 46;

impl SimUpstream {
    /// A simulated device with `capacity` bytes and the default 1024 metadata slots.
    ///
    /// ```
    /// let sim = strata_core::SimUpstream::new(1 << 30);
    /// assert_eq!(sim.capacity(), 1 << 30);
    /// ```
    pub fn new(capacity: u64) -> Self {
        Self::with_slots(capacity)
    }
}

impl<const N: usize> SimUpstream<N> {
    /// A simulated device with `capacity` bytes and `N` metadata slots.
    ///
    /// ```
    /// let sim = strata_core::SimUpstream::<64>::with_slots(1 << 30);
    /// assert_eq!(sim.capacity(), 1 << 30);
    /// ```
    pub fn with_slots(capacity: u64) -> Self {
        let mut free = heapless::Vec::new();
        if N > 0 {
            // N > 0, so the first push fits.
            let _ = free.push(Range::new(SIM_BASE, SIM_WINDOW));
        }
        Self {
            capacity,
            in_use: 0,
            peak_in_use: 0,
            allocations: 0,
            live: heapless::Vec::new(),
            free,
        }
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Changes the capacity (ranges already in use stay valid even above it).
    ///
    /// ```
    /// use strata_core::{SimUpstream, Upstream};
    /// let mut sim = SimUpstream::<64>::with_slots(0);
    /// assert!(sim.allocate(256, 256).is_err());
    /// sim.set_capacity(256);
    /// assert!(sim.allocate(256, 256).is_ok());
    /// ```
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Bytes currently handed out.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The most bytes ever handed out at once.
    pub fn peak_in_use(&self) -> u64 {
        self.peak_in_use
    }

    /// How many successful allocations were made, in all.
    pub fn allocation_count(&self) -> u64 {
        self.allocations
    }

    /// How many ranges are live now.
    pub fn live_ranges(&self) -> usize {
        self.live.len()
    }

    fn out_of_memory(&self, requested: u64) -> Error {
        let total_free = self.capacity.saturating_sub(self.in_use);
        Error::OutOfMemory {
            requested,
            largest_free: total_free,
            total_free,
        }
    }
}

impl<const N: usize> Upstream for SimUpstream<N> {
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        check_alignment(align)?;
        if size > self.capacity.saturating_sub(self.in_use) {
            return Err(self.out_of_memory(size));
        }
        let live_at = |live: &heapless::Vec<Range, N>, start: u64| {
            live.binary_search_by_key(&start, |r| r.start)
                .unwrap_or_else(|i| i)
        };
        for i in 0..self.free.len() {
            let gap = self.free[i];
            let Some(start) = align_up(gap.start, align) else {
                continue;
            };
            if start.checked_add(size).is_none_or(|end| end > gap.end()) {
                continue;
            }
            let head = Range::new(gap.start, start - gap.start);
            let tail = Range::new(start + size, gap.end() - (start + size));
            // The gap becomes up to two gaps; check room before changing anything.
            let extra_gaps = usize::from(head.len > 0) + usize::from(tail.len > 0);
            if self.live.is_full() || (extra_gaps == 2 && self.free.is_full()) {
                return Err(Error::MetadataExhausted { capacity: N });
            }
            match (head.len > 0, tail.len > 0) {
                (false, false) => {
                    self.free.remove(i);
                }
                (true, false) => self.free[i] = head,
                (false, true) => self.free[i] = tail,
                (true, true) => {
                    self.free[i] = head;
                    // Room checked above.
                    let _ = self.free.insert(i + 1, tail);
                }
            }
            let range = Range::new(start, size);
            let at = live_at(&self.live, start);
            // Room checked above.
            let _ = self.live.insert(at, range);
            self.in_use += size;
            self.peak_in_use = self.peak_in_use.max(self.in_use);
            self.allocations += 1;
            return Ok(range);
        }
        Err(self.out_of_memory(size))
    }

    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        let Ok(at) = self.live.binary_search_by_key(&range.start, |r| r.start) else {
            return Err(Error::NotAllocated { addr: range.start });
        };
        let live = self.live[at];
        if live.len != range.len {
            return Err(Error::SizeMismatch {
                addr: range.start,
                allocated: live.len,
                given: range.len,
            });
        }
        let i = self.free.partition_point(|g| g.start < range.start);
        let merges_prev = i > 0 && self.free[i - 1].is_followed_by(&range);
        let merges_next = i < self.free.len() && range.is_followed_by(&self.free[i]);
        match (merges_prev, merges_next) {
            (true, true) => {
                let next = self.free.remove(i);
                self.free[i - 1].len += range.len + next.len;
            }
            (true, false) => self.free[i - 1].len += range.len,
            (false, true) => {
                self.free[i].start = range.start;
                self.free[i].len += range.len;
            }
            (false, false) => {
                if self.free.insert(i, range).is_err() {
                    return Err(Error::MetadataExhausted { capacity: N });
                }
            }
        }
        self.live.remove(at);
        self.in_use -= range.len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_rejects_bad_frees_without_changing_state() {
        let mut sim = SimUpstream::<16>::with_slots(1 << 20);
        let a = sim.allocate(4096, 256).unwrap();
        assert_eq!(
            sim.deallocate(Range::new(a.start + 256, 4096)),
            Err(Error::NotAllocated {
                addr: a.start + 256
            })
        );
        assert_eq!(
            sim.deallocate(Range::new(a.start, 256)),
            Err(Error::SizeMismatch {
                addr: a.start,
                allocated: 4096,
                given: 256
            })
        );
        assert_eq!(sim.in_use(), 4096);
        sim.deallocate(a).unwrap();
        assert_eq!(
            sim.deallocate(a),
            Err(Error::NotAllocated { addr: a.start })
        );
        assert_eq!(sim.in_use(), 0);
    }

    #[test]
    fn sim_merges_gaps_and_reuses_addresses() {
        let mut sim = SimUpstream::<16>::with_slots(1 << 20);
        let a = sim.allocate(1024, 256).unwrap();
        let b = sim.allocate(1024, 256).unwrap();
        let c = sim.allocate(1024, 256).unwrap();
        sim.deallocate(a).unwrap();
        sim.deallocate(c).unwrap();
        sim.deallocate(b).unwrap();
        assert_eq!(sim.free.len(), 1, "all gaps merged back into one window");
        assert_eq!(sim.allocate(3072, 256).unwrap().start, a.start);
    }

    #[test]
    fn sim_honours_alignment_and_metadata_limit() {
        let mut sim = SimUpstream::<4>::with_slots(1 << 30);
        let small = sim.allocate(100, 256).unwrap();
        let big = sim.allocate(4096, 1 << 20).unwrap();
        assert_eq!(big.start % (1 << 20), 0);
        assert!(!small.overlaps(&big));
        assert_eq!(sim.allocate(0, 256), Err(Error::ZeroSize));
        assert_eq!(
            sim.allocate(1, 3),
            Err(Error::InvalidAlignment { align: 3 })
        );
        let mut n = 2;
        loop {
            match sim.allocate(256, 1 << 20) {
                Ok(_) => n += 1,
                Err(e) => {
                    assert_eq!(e, Error::MetadataExhausted { capacity: 4 });
                    break;
                }
            }
        }
        assert!(n <= 4);
    }
}
