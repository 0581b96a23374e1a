//! The tracking adaptor: every outstanding allocation, with an optional tag, and a leak report
//! (feature `alloc`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::sync::Mutex;
use crate::{Error, MemoryResource, StreamKey};

/// One outstanding allocation, as the [`Tracking`] adaptor saw it.
///
/// ```
/// use strata_core::adaptors::{Tracking, ThreadSafe};
/// use strata_core::{SimUpstream, StreamKey};
/// let r = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
/// let a = r.allocate_tagged(100, 256, StreamKey(2), "weights")?;
/// let out = r.outstanding();
/// assert_eq!((out[0].addr, out[0].size, out[0].stream), (a, 100, StreamKey(2)));
/// assert_eq!(out[0].tag, Some("weights"));
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation<T> {
    /// The address.
    pub addr: u64,
    /// The size asked for.
    pub size: u64,
    /// The alignment asked for.
    pub align: u64,
    /// The stream it was allocated on.
    pub stream: StreamKey,
    /// The caller's tag, if it gave one.
    pub tag: Option<T>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    size: u64,
    align: u64,
    stream: StreamKey,
    tag: Option<T>,
}

#[derive(Debug)]
struct Book<T> {
    live: BTreeMap<u64, Entry<T>>,
    /// Invariant: the sum of `size` over `live`.
    bytes: u64,
}

impl<T> Book<T> {
    fn check(&self) {
        debug_assert_eq!(
            self.bytes,
            self.live.values().map(|e| e.size).sum::<u64>(),
            "tracking: byte total out of step with the map"
        );
    }
}

/// Records every allocation made through it until it is freed: address, size, alignment,
/// stream and an optional caller-supplied tag of type `T` (a `&'static str` by default, e.g. the
/// name of the component that asked).
///
/// A free of a tracked address with the wrong size is refused with [`Error::SizeMismatch`]
/// before the upstream sees it. A free of an address the adaptor never saw (allocated before it
/// was put in place, say) goes to the upstream as is. The entry is removed *before* the upstream
/// call (so that another thread handed the same block at once can record it) and put back if
/// the upstream refuses the free.
///
/// ```
/// use strata_core::adaptors::{Tracking, ThreadSafe};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let r = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
/// let s = StreamKey::DEFAULT;
/// let a = r.allocate_tagged(4096, 256, s, "activations")?;
/// let b = r.allocate(256, 256, s)?;
/// r.deallocate(b, 256, 256, s)?;
/// let report = r.leak_report();
/// assert_eq!((report.count(), report.bytes()), (1, 4096));
/// assert!(report.to_string().contains("activations"));
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Tracking<R, T = &'static str> {
    upstream: R,
    book: Mutex<Book<T>>,
}

impl<R, T> Tracking<R, T> {
    /// Tracks the allocations made through `upstream`.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.outstanding_count(), 0);
    /// ```
    pub fn new(upstream: R) -> Self {
        Self {
            upstream,
            book: Mutex::new(Book {
                live: BTreeMap::new(),
                bytes: 0,
            }),
        }
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.upstream().lock().capacity(), 1024);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// Bytes outstanding (the sum of the sizes asked for).
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// r.allocate(100, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.allocated_bytes(), 100);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn allocated_bytes(&self) -> u64 {
        self.book.lock().bytes
    }

    /// How many allocations are outstanding.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// r.allocate(100, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(r.outstanding_count(), 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn outstanding_count(&self) -> usize {
        self.book.lock().live.len()
    }
}

impl<R, T: Clone> Tracking<R, T> {
    /// The outstanding allocations, in address order.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// use strata_core::{MemoryResource, SimUpstream, StreamKey};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// let a = r.allocate(100, 256, StreamKey::DEFAULT)?;
    /// let b = r.allocate(100, 256, StreamKey::DEFAULT)?;
    /// let addrs: Vec<u64> = r.outstanding().iter().map(|x| x.addr).collect();
    /// assert_eq!(addrs, vec![a.min(b), a.max(b)]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn outstanding(&self) -> Vec<Allocation<T>> {
        let book = self.book.lock();
        book.live
            .iter()
            .map(|(&addr, e)| Allocation {
                addr,
                size: e.size,
                align: e.align,
                stream: e.stream,
                tag: e.tag.clone(),
            })
            .collect()
    }

    /// A report of everything still outstanding (call it at teardown: what it lists leaked).
    /// It prints one line per allocation.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let r = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// r.allocate_tagged(512, 256, StreamKey(1), "cache")?;
    /// let text = r.leak_report().to_string();
    /// assert!(text.starts_with("1 outstanding allocation(s), 512 B"));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn leak_report(&self) -> LeakReport<T> {
        LeakReport {
            allocations: self.outstanding(),
        }
    }
}

impl<R: MemoryResource, T: Send> Tracking<R, T> {
    /// Allocates like [`MemoryResource::allocate`] and records `tag` with the allocation.
    ///
    /// # Errors
    ///
    /// The upstream's error, unchanged; nothing is recorded then.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// use strata_core::{SimUpstream, StreamKey};
    /// let r = Tracking::<_, u32>::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
    /// r.allocate_tagged(64, 256, StreamKey::DEFAULT, 42)?;
    /// assert_eq!(r.outstanding()[0].tag, Some(42));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn allocate_tagged(
        &self,
        size: u64,
        align: u64,
        stream: StreamKey,
        tag: T,
    ) -> Result<u64, Error> {
        self.allocate_with(size, align, stream, Some(tag))
    }

    fn allocate_with(
        &self,
        size: u64,
        align: u64,
        stream: StreamKey,
        tag: Option<T>,
    ) -> Result<u64, Error> {
        let addr = self.upstream.allocate(size, align, stream)?;
        let mut book = self.book.lock();
        let previous = book.live.insert(
            addr,
            Entry {
                size,
                align,
                stream,
                tag,
            },
        );
        debug_assert!(
            previous.is_none(),
            "tracking: upstream handed out live address {addr:#x} twice"
        );
        book.bytes += size;
        book.check();
        Ok(addr)
    }
}

impl<R: MemoryResource, T: Send> MemoryResource for Tracking<R, T> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        self.allocate_with(size, align, stream, None)
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        let removed = {
            let mut book = self.book.lock();
            match book.live.get(&addr) {
                Some(e) if e.size != size => {
                    return Err(Error::SizeMismatch {
                        addr,
                        allocated: e.size,
                        given: size,
                    });
                }
                Some(_) => {
                    let e = book.live.remove(&addr);
                    book.bytes -= size;
                    book.check();
                    e
                }
                None => None,
            }
        };
        let result = self.upstream.deallocate(addr, size, align, stream);
        if result.is_err()
            && let Some(e) = removed
        {
            let mut book = self.book.lock();
            book.bytes += e.size;
            book.live.insert(addr, e);
            book.check();
        }
        result
    }
}

/// The outstanding allocations of a [`Tracking`] adaptor at one moment, printable.
///
/// ```
/// use strata_core::adaptors::{Tracking, ThreadSafe};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
/// let r: Tracking<_> = Tracking::new(ThreadSafe::new(SimUpstream::new(1 << 20)));
/// assert!(r.leak_report().is_empty());
/// r.allocate(10, 256, StreamKey::DEFAULT)?;
/// assert_eq!(r.leak_report().allocations().len(), 1);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReport<T> {
    allocations: Vec<Allocation<T>>,
}

impl<T> LeakReport<T> {
    /// The outstanding allocations, in address order.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert!(r.leak_report().allocations().is_empty());
    /// ```
    pub fn allocations(&self) -> &[Allocation<T>] {
        &self.allocations
    }

    /// How many allocations are outstanding.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.leak_report().count(), 0);
    /// ```
    pub fn count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether nothing is outstanding.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert!(r.leak_report().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// Bytes outstanding.
    ///
    /// ```
    /// use strata_core::adaptors::{Tracking, ThreadSafe};
    /// let r: Tracking<_> = Tracking::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)));
    /// assert_eq!(r.leak_report().bytes(), 0);
    /// ```
    pub fn bytes(&self) -> u64 {
        self.allocations.iter().map(|a| a.size).sum()
    }
}

/// One header line (`N outstanding allocation(s), B B`), then one line per allocation:
/// `  0xADDR  SIZE B  align A  stream S  [tag]`.
impl<T: fmt::Display> fmt::Display for LeakReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} outstanding allocation(s), {} B",
            self.count(),
            self.bytes()
        )?;
        for a in &self.allocations {
            write!(
                f,
                "  {:#x}  {} B  align {}  stream {:#x}",
                a.addr, a.size, a.align, a.stream.0
            )?;
            if let Some(tag) = &a.tag {
                write!(f, "  [{tag}]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::ThreadSafe;
    use alloc::string::ToString;

    const S: StreamKey = StreamKey::DEFAULT;

    #[test]
    fn bad_frees_change_nothing() {
        let r: Tracking<_> = Tracking::new(ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)));
        let a = r.allocate_tagged(300, 256, S, "x").unwrap();
        let before = r.outstanding();
        assert_eq!(
            r.deallocate(a, 299, 256, S),
            Err(Error::SizeMismatch {
                addr: a,
                allocated: 300,
                given: 299
            })
        );
        assert_eq!(
            r.deallocate(a + 256, 300, 256, S),
            Err(Error::NotAllocated { addr: a + 256 })
        );
        assert_eq!(r.outstanding(), before);
        assert_eq!(r.allocated_bytes(), 300);
        assert_eq!(r.upstream().lock().in_use(), 300);
        r.deallocate(a, 300, 256, S).unwrap();
        assert!(r.leak_report().is_empty());
    }

    #[test]
    fn upstream_refusal_restores_the_entry() {
        // A free that tracking accepts but the upstream refuses: the entry comes back.
        let inner = ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20));
        let r: Tracking<_> = Tracking::new(&inner);
        let a = r.allocate_tagged(512, 256, S, "t").unwrap();
        // Free it behind the adaptor's back, then through it: the upstream refuses.
        inner.deallocate(a, 512, 256, S).unwrap();
        assert_eq!(
            r.deallocate(a, 512, 256, S),
            Err(Error::NotAllocated { addr: a })
        );
        assert_eq!(r.outstanding_count(), 1);
        assert_eq!(r.outstanding()[0].tag, Some("t"));
        assert_eq!(r.allocated_bytes(), 512);
    }

    #[test]
    fn untracked_frees_are_forwarded() {
        let inner = ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20));
        let a = inner.allocate(256, 256, S).unwrap();
        let r: Tracking<_> = Tracking::new(&inner);
        r.deallocate(a, 256, 256, S).unwrap();
        assert_eq!(inner.lock().in_use(), 0);
        assert_eq!(r.allocated_bytes(), 0);
    }

    #[test]
    fn report_lists_every_leak() {
        let r = Tracking::new(ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)));
        let a = r
            .allocate_tagged(100, 256, StreamKey(0xab), "first")
            .unwrap();
        let b = r.allocate(200, 512, S).unwrap();
        let text = r.leak_report().to_string();
        assert!(text.starts_with("2 outstanding allocation(s), 300 B\n"));
        assert!(text.contains(&alloc::format!(
            "{a:#x}  100 B  align 256  stream 0xab  [first]"
        )));
        assert!(text.contains(&alloc::format!("{b:#x}  200 B  align 512  stream 0x0\n")));
    }
}
