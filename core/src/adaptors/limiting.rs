//! The limiting adaptor: an atomic byte budget.

use crate::sync::{AtomicU64, Ordering};
use crate::{DEFAULT_ALIGNMENT, Error, MemoryResource, StreamKey, align_up, check_alignment};

/// Refuses allocations that would take the bytes live through it above a limit.
///
/// Each allocation is charged its size rounded up to a granularity (256 bytes unless
/// [`with_granularity`](Self::with_granularity) says otherwise), as RMM's
/// `limiting_resource_adaptor` does. The budget is one atomic counter: an allocation reserves
/// its charge with a compare-and-swap *before* calling the upstream (and gives it back if the
/// upstream fails); a free gives the charge back *after* the upstream took the block. So the
/// bytes live through the adaptor never exceed the limit, at any instant, whatever the
/// interleaving.
///
/// ```
/// use strata_core::adaptors::{Limiting, ThreadSafe};
/// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
///
/// let r = Limiting::new(ThreadSafe::new(SimUpstream::new(1 << 30)), 1024);
/// let s = StreamKey::DEFAULT;
/// let a = r.allocate(1000, 256, s)?; // charged 1024
/// assert_eq!(
///     r.allocate(1, 256, s),
///     Err(Error::LimitExceeded { requested: 1, allocated: 1024, limit: 1024 })
/// );
/// r.deallocate(a, 1000, 256, s)?;
/// assert_eq!(r.allocated_bytes(), 0);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct Limiting<R> {
    upstream: R,
    limit: u64,
    granularity: u64,
    /// Bytes charged for live blocks (and for allocations in flight). Invariant: `<= limit`.
    allocated: AtomicU64,
}

impl<R> Limiting<R> {
    /// Limits `upstream` to `limit` bytes, charged in units of 256 bytes.
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// let r = Limiting::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)), 4096);
    /// assert_eq!(r.limit(), 4096);
    /// ```
    pub fn new(upstream: R, limit: u64) -> Self {
        Self {
            upstream,
            limit,
            granularity: DEFAULT_ALIGNMENT,
            allocated: AtomicU64::new(0),
        }
    }

    /// Limits `upstream` to `limit` bytes, charging each allocation its size rounded up to
    /// `granularity` (a power of two; 1 charges exact sizes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAlignment`] when `granularity` is not a power of two.
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Limiting::with_granularity(ThreadSafe::new(SimUpstream::new(1 << 20)), 100, 1)?;
    /// let a = r.allocate(100, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.allocated_bytes(), 100);
    /// assert!(Limiting::with_granularity(ThreadSafe::new(SimUpstream::new(1)), 1, 3).is_err());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_granularity(upstream: R, limit: u64, granularity: u64) -> Result<Self, Error> {
        check_alignment(granularity)?;
        Ok(Self {
            upstream,
            limit,
            granularity,
            allocated: AtomicU64::new(0),
        })
    }

    /// The budget in bytes.
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// let r = Limiting::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)), 77);
    /// assert_eq!(r.limit(), 77);
    /// ```
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now (live blocks, rounded, plus allocations in flight).
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Limiting::new(ThreadSafe::new(SimUpstream::new(1 << 20)), 1 << 20);
    /// r.allocate(1, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.allocated_bytes(), 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// let r = Limiting::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)), 1);
    /// assert_eq!(r.upstream().lock().in_use(), 0);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// Unwraps the resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Limiting, ThreadSafe};
    /// let r = Limiting::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)), 1);
    /// assert_eq!(r.into_inner().lock().capacity(), 1 << 20);
    /// ```
    pub fn into_inner(self) -> R {
        self.upstream
    }

    #[inline]
    fn charge(&self, size: u64) -> Result<u64, Error> {
        align_up(size, self.granularity).ok_or(Error::SizeOverflow { requested: size })
    }
}

impl<R: MemoryResource> MemoryResource for Limiting<R> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let charge = self.charge(size)?;
        // One atomic location: relaxed read-modify-writes are totally ordered on it, which is
        // all the budget needs (it guards no other memory).
        let reserved = self
            .allocated
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(charge).filter(|&after| after <= self.limit)
            });
        if let Err(now) = reserved {
            return Err(Error::LimitExceeded {
                requested: size,
                allocated: now,
                limit: self.limit,
            });
        }
        match self.upstream.allocate(size, align, stream) {
            Ok(addr) => Ok(addr),
            Err(e) => {
                let before = self.allocated.fetch_sub(charge, Ordering::Relaxed);
                debug_assert!(before >= charge, "budget underflow");
                Err(e)
            }
        }
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        let charge = self.charge(size)?;
        self.upstream.deallocate(addr, size, align, stream)?;
        let before = self.allocated.fetch_sub(charge, Ordering::Relaxed);
        debug_assert!(
            before >= charge,
            "budget underflow: a free charged more than live"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::ThreadSafe;

    const S: StreamKey = StreamKey::DEFAULT;

    #[test]
    fn upstream_errors_release_the_reservation() {
        let r = Limiting::new(ThreadSafe::new(SimUpstream::<8>::with_slots(512)), 4096);
        assert!(matches!(
            r.allocate(1024, 256, S),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(r.allocated_bytes(), 0);
        assert_eq!(r.allocate(0, 256, S), Err(Error::ZeroSize));
        assert_eq!(
            r.allocate(1, 3, S),
            Err(Error::InvalidAlignment { align: 3 })
        );
        assert_eq!(r.allocated_bytes(), 0);
    }

    #[test]
    fn bad_frees_change_nothing() {
        let r = Limiting::new(ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)), 4096);
        let a = r.allocate(300, 256, S).unwrap();
        assert_eq!(r.allocated_bytes(), 512);
        assert_eq!(
            r.deallocate(a + 256, 300, 256, S),
            Err(Error::NotAllocated { addr: a + 256 })
        );
        assert_eq!(
            r.deallocate(a, u64::MAX, 256, S),
            Err(Error::SizeOverflow {
                requested: u64::MAX
            })
        );
        assert_eq!(r.allocated_bytes(), 512);
        r.deallocate(a, 300, 256, S).unwrap();
        assert_eq!(r.allocated_bytes(), 0);
    }

    #[test]
    fn overflowing_sizes_are_refused() {
        let r = Limiting::new(
            ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)),
            u64::MAX,
        );
        assert_eq!(
            r.allocate(u64::MAX - 3, 256, S),
            Err(Error::SizeOverflow {
                requested: u64::MAX - 3
            })
        );
        assert_eq!(r.allocated_bytes(), 0);
    }

    #[test]
    fn the_budget_is_exact_up_to_the_limit() {
        let r = Limiting::new(ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)), 1024);
        let blocks: [u64; 4] = core::array::from_fn(|_| r.allocate(256, 256, S).unwrap());
        assert_eq!(
            r.allocate(1, 256, S),
            Err(Error::LimitExceeded {
                requested: 1,
                allocated: 1024,
                limit: 1024
            })
        );
        for b in blocks {
            r.deallocate(b, 256, 256, S).unwrap();
        }
        assert_eq!(r.allocated_bytes(), 0);
    }
}
