//! The aligned adaptor: any power-of-two alignment over an upstream that guarantees less
//! (feature `alloc`).

use alloc::collections::BTreeMap;

use crate::sync::Mutex;
use crate::{DEFAULT_ALIGNMENT, Error, MemoryResource, StreamKey, align_up, check_alignment};

#[derive(Debug, Clone, Copy)]
struct Original {
    /// The address the upstream returned.
    addr: u64,
    /// The size asked of the upstream.
    upstream_size: u64,
    /// The size the caller asked for.
    size: u64,
}

/// Serves any power-of-two alignment from an upstream that guarantees `upstream_alignment`
/// (256 bytes, like every device resource, unless said otherwise).
///
/// RMM's scheme: a request whose alignment the upstream already guarantees passes through; a
/// larger one allocates `align_up(size, upstream_alignment) + (align - upstream_alignment)`
/// bytes, returns the first `align`-aligned address inside, and remembers which upstream
/// address it came from, so that the free gives back exactly what was taken.
///
/// ```
/// use strata_core::adaptors::{Aligned, ThreadSafe};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let r = Aligned::new(ThreadSafe::new(SimUpstream::new(1 << 30)));
/// let s = StreamKey::DEFAULT;
/// let a = r.allocate(1000, 1 << 16, s)?;
/// assert_eq!(a % (1 << 16), 0);
/// r.deallocate(a, 1000, 1 << 16, s)?;
/// assert_eq!(r.upstream().lock().in_use(), 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Aligned<R> {
    upstream: R,
    upstream_alignment: u64,
    /// Over-aligned live blocks: the address handed out → what the upstream gave.
    /// Invariant: every entry's `addr <= key` and `key + size <= addr + upstream_size`.
    over_aligned: Mutex<BTreeMap<u64, Original>>,
}

impl<R> Aligned<R> {
    /// Over an upstream that aligns every block to 256 bytes.
    ///
    /// ```
    /// use strata_core::adaptors::{Aligned, ThreadSafe};
    /// let r = Aligned::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(r.upstream_alignment(), 256);
    /// ```
    pub fn new(upstream: R) -> Self {
        Self {
            upstream,
            upstream_alignment: DEFAULT_ALIGNMENT,
            over_aligned: Mutex::new(BTreeMap::new()),
        }
    }

    /// Over an upstream that aligns every block to `upstream_alignment` (a power of two).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAlignment`] when `upstream_alignment` is not a power of two.
    ///
    /// ```
    /// use strata_core::adaptors::{Aligned, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Aligned::with_upstream_alignment(ThreadSafe::new(SimUpstream::new(1 << 20)), 8)?;
    /// let a = r.allocate(1, 4096, StreamKey::DEFAULT)?;
    /// assert_eq!(a % 4096, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_upstream_alignment(upstream: R, upstream_alignment: u64) -> Result<Self, Error> {
        check_alignment(upstream_alignment)?;
        Ok(Self {
            upstream,
            upstream_alignment,
            over_aligned: Mutex::new(BTreeMap::new()),
        })
    }

    /// The alignment the upstream guarantees.
    ///
    /// ```
    /// use strata_core::adaptors::{Aligned, ThreadSafe};
    /// let r = Aligned::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(r.upstream_alignment(), strata_core::DEFAULT_ALIGNMENT);
    /// ```
    pub fn upstream_alignment(&self) -> u64 {
        self.upstream_alignment
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Aligned, ThreadSafe};
    /// let r = Aligned::new(ThreadSafe::new(strata_core::SimUpstream::new(1 << 20)));
    /// assert_eq!(r.upstream().lock().in_use(), 0);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// How many over-aligned blocks are live (those that needed an address mapping).
    ///
    /// ```
    /// use strata_core::adaptors::{Aligned, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r = Aligned::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// r.allocate(10, 256, StreamKey::DEFAULT)?;
    /// r.allocate(10, 1024, StreamKey::DEFAULT)?;
    /// assert_eq!(r.over_aligned_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn over_aligned_count(&self) -> usize {
        self.over_aligned.lock().len()
    }
}

impl<R: MemoryResource> MemoryResource for Aligned<R> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        check_alignment(align)?;
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let base = self.upstream_alignment;
        if align <= base {
            return self.upstream.allocate(size, base.max(align), stream);
        }
        let upstream_size = align_up(size, base)
            .and_then(|s| s.checked_add(align - base))
            .ok_or(Error::SizeOverflow { requested: size })?;
        let addr = self.upstream.allocate(upstream_size, base, stream)?;
        // An upstream that aligns to `base` leaves at most `align - base` bytes before the
        // first `align`-aligned address, so `aligned + size <= addr + upstream_size`. The
        // arithmetic cannot overflow: the upstream block itself fits in the address space.
        let aligned = align_up(addr, align).ok_or(Error::SizeOverflow { requested: size })?;
        if aligned + size > addr + upstream_size {
            // Only an upstream that broke its alignment promise gets here: give its block back
            // rather than hand out memory past its end.
            self.upstream
                .deallocate(addr, upstream_size, base, stream)?;
            return Err(Error::Unsupported {
                what: "upstream returned a block below its promised alignment",
            });
        }
        let previous = self.over_aligned.lock().insert(
            aligned,
            Original {
                addr,
                upstream_size,
                size,
            },
        );
        debug_assert!(
            previous.is_none(),
            "aligned address {aligned:#x} live twice"
        );
        Ok(aligned)
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        check_alignment(align)?;
        let base = self.upstream_alignment;
        if align <= base {
            return self
                .upstream
                .deallocate(addr, size, base.max(align), stream);
        }
        let original = {
            let mut map = self.over_aligned.lock();
            match map.get(&addr) {
                None => return Err(Error::NotAllocated { addr }),
                Some(o) if o.size != size => {
                    return Err(Error::SizeMismatch {
                        addr,
                        allocated: o.size,
                        given: size,
                    });
                }
                Some(&o) => {
                    map.remove(&addr);
                    o
                }
            }
        };
        let result = self
            .upstream
            .deallocate(original.addr, original.upstream_size, base, stream);
        if result.is_err() {
            self.over_aligned.lock().insert(addr, original);
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

    #[test]
    fn every_power_of_two_alignment_is_honoured() {
        let r = Aligned::new(ThreadSafe::new(SimUpstream::<64>::with_slots(1 << 30)));
        let mut live = alloc::vec::Vec::new();
        for shift in 0..=20 {
            let align = 1u64 << shift;
            let size = 1000 + shift;
            let a = r.allocate(size, align, S).unwrap();
            assert_eq!(a % align, 0, "alignment {align}");
            live.push((a, size, align));
        }
        for w in live.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0 || w[1].0 + w[1].1 <= w[0].0);
        }
        for (a, size, align) in live {
            r.deallocate(a, size, align, S).unwrap();
        }
        assert_eq!(r.over_aligned_count(), 0);
        assert_eq!(r.upstream().lock().in_use(), 0);
    }

    #[test]
    fn bad_calls_change_nothing() {
        let r = Aligned::new(ThreadSafe::new(SimUpstream::<64>::with_slots(1 << 30)));
        assert_eq!(r.allocate(0, 4096, S), Err(Error::ZeroSize));
        assert_eq!(
            r.allocate(10, 3000, S),
            Err(Error::InvalidAlignment { align: 3000 })
        );
        assert_eq!(
            r.allocate(u64::MAX - 10, 4096, S),
            Err(Error::SizeOverflow {
                requested: u64::MAX - 10
            })
        );
        let a = r.allocate(100, 4096, S).unwrap();
        let in_use = r.upstream().lock().in_use();
        assert_eq!(
            r.deallocate(a + 4096, 100, 4096, S),
            Err(Error::NotAllocated { addr: a + 4096 })
        );
        assert_eq!(
            r.deallocate(a, 99, 4096, S),
            Err(Error::SizeMismatch {
                addr: a,
                allocated: 100,
                given: 99
            })
        );
        assert_eq!(r.upstream().lock().in_use(), in_use);
        assert_eq!(r.over_aligned_count(), 1);
        r.deallocate(a, 100, 4096, S).unwrap();
        assert_eq!(r.upstream().lock().in_use(), 0);
    }

    #[test]
    fn an_upstream_that_breaks_its_alignment_promise_is_caught() {
        use crate::adaptors::CallbackResource;
        use crate::sync::{AtomicU64, Ordering};
        let live = AtomicU64::new(0);
        // Promises 256 but hands out addresses that are only 16-aligned.
        let sloppy = CallbackResource::new(
            |_: u64, _: u64, _: StreamKey| {
                live.fetch_add(1, Ordering::Relaxed);
                Ok(0x1_0010)
            },
            |addr: u64, _: u64, _: u64, _: StreamKey| {
                assert_eq!(addr, 0x1_0010);
                live.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            },
        );
        let r = Aligned::new(&sloppy);
        assert!(matches!(
            r.allocate(256, 4096, S),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(live.load(Ordering::Relaxed), 0, "the block went back");
        assert_eq!(r.over_aligned_count(), 0);
    }

    #[test]
    fn upstream_errors_are_forwarded() {
        let r = Aligned::new(ThreadSafe::new(SimUpstream::<8>::with_slots(4096)));
        assert!(matches!(
            r.allocate(4096, 4096, S),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(r.over_aligned_count(), 0);
        assert!(r.allocate(4096, 256, S).is_ok());
    }
}
