//! A scoped statistics profiler, like RMM's `rmm.statistics.profiler`: allocation statistics
//! per named scope of a program.
//!
//! [`Profiler`] wraps any [`MemoryResource`] and counts what passes through it. Entering a scope
//! ([`Profiler::scope`] or [`Profiler::profile`]) starts fresh counters; leaving it adds them to
//! the scope's record and folds them into the enclosing scope, so a scope's peak includes what
//! the scopes inside it allocated:
//!
//! - `calls`: how many times the scope was entered;
//! - `peak_bytes`: the most bytes allocated inside one entry of the scope and live at once,
//!   counted from its entry (the largest over all entries);
//! - `total_bytes`: all bytes allocated inside the scope, over all entries;
//! - `allocations`: all allocations inside the scope, over all entries.
//!
//! Bytes freed in a scope but allocated before it lower the scope's current count below zero,
//! as in RMM; the peak never goes below zero.
//!
//! Scopes on one profiler are one stack, shared by every thread that uses the resource (RMM's
//! counters are per resource too): enter and leave them in nested order.
//!
//! ```
//! use strata::profile::{Order, Profiler};
//! use strata::replay::SimDevice;
//! use strata::{MemoryResource, StreamKey};
//!
//! let mr = Profiler::new(SimDevice::new(1 << 30));
//! let s = StreamKey::DEFAULT;
//! mr.profile("load", || -> Result<(), strata::Error> {
//!     let a = mr.allocate(1000, 256, s)?;
//!     let b = mr.profile("parse", || mr.allocate(4000, 256, s))?;
//!     mr.deallocate(b, 4000, 256, s)?;
//!     mr.deallocate(a, 1000, 256, s)
//! })?;
//! let report = mr.report(Order::PeakBytes);
//! assert_eq!(report[0].name, "load");
//! assert_eq!((report[0].calls, report[0].peak_bytes, report[0].total_bytes), (1, 5000, 5000));
//! assert_eq!((report[1].name.as_str(), report[1].peak_bytes), ("parse", 4000));
//! println!("{}", strata::profile::format_report(&report));
//! # Ok::<(), strata::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use strata_core::{Error, MemoryResource, StreamKey};

/// Counters of one open scope (or of the whole program, at the bottom of the stack).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Frame {
    current: i128,
    peak: i128,
    total: u64,
    allocations: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Open scopes, innermost last, each with its name; the program's own frame is `base`.
    stack: Vec<(String, Frame)>,
    base: Frame,
    records: HashMap<String, ScopeRecord>,
}

impl State {
    fn top(&mut self) -> &mut Frame {
        match self.stack.last_mut() {
            Some((_, f)) => f,
            None => &mut self.base,
        }
    }
}

/// The statistics of one named scope.
///
/// ```
/// let r = strata::profile::ScopeRecord { name: "step".into(), calls: 2, peak_bytes: 512,
///                                        total_bytes: 1024, allocations: 4 };
/// assert_eq!(r.calls, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRecord {
    /// The scope's name.
    pub name: String,
    /// Times the scope was entered.
    pub calls: u64,
    /// The most bytes live at once within one entry, counted from the entry.
    pub peak_bytes: u64,
    /// Bytes allocated within the scope, over all entries.
    pub total_bytes: u64,
    /// Allocations within the scope, over all entries.
    pub allocations: u64,
}

/// How [`Profiler::report`] sorts its records (largest first; ties by name).
///
/// ```
/// assert_ne!(strata::profile::Order::PeakBytes, strata::profile::Order::Calls);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By peak bytes (RMM's default, `memory_peak`).
    PeakBytes,
    /// By total bytes.
    TotalBytes,
    /// By number of calls.
    Calls,
}

/// The whole program's statistics through a profiler, scopes or not.
///
/// ```
/// let t = strata::profile::Profiler::new(strata::replay::SimDevice::new(0)).totals();
/// assert_eq!((t.current_bytes, t.peak_bytes, t.total_bytes, t.allocations), (0, 0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes live now.
    pub current_bytes: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// Bytes ever allocated.
    pub total_bytes: u64,
    /// Allocations ever made.
    pub allocations: u64,
}

/// A resource adaptor that keeps allocation statistics per named scope; see the
/// [module docs](self).
///
/// ```
/// use strata::profile::Profiler;
/// use strata::{MemoryResource, StreamKey};
/// let mr = Profiler::new(strata::replay::SimDevice::new(1 << 20));
/// let a = mr.allocate(256, 256, StreamKey::DEFAULT)?;
/// assert_eq!(mr.totals().current_bytes, 256);
/// mr.deallocate(a, 256, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug)]
pub struct Profiler<R> {
    inner: R,
    state: Mutex<State>,
}

/// An open scope of a [`Profiler`]; leaving it (dropping the guard) records it.
///
/// ```
/// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(0));
/// {
///     let _scope = mr.scope("setup");
/// }
/// assert_eq!(mr.report(strata::profile::Order::Calls)[0].calls, 1);
/// ```
#[derive(Debug)]
#[must_use = "the scope ends when the guard is dropped"]
pub struct Scope<'a, R> {
    profiler: &'a Profiler<R>,
}

impl<R> Profiler<R> {
    /// Wraps `inner`.
    ///
    /// ```
    /// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(1 << 20));
    /// assert!(mr.report(strata::profile::Order::PeakBytes).is_empty());
    /// ```
    pub fn new(inner: R) -> Self {
        Profiler {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    /// The wrapped resource.
    ///
    /// ```
    /// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(7));
    /// assert_eq!(mr.inner().capacity(), 7);
    /// ```
    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is complete before the lock is released, so the state stays valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters the scope `name` until the returned guard is dropped.
    ///
    /// ```
    /// use strata::{MemoryResource, StreamKey};
    /// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(1 << 20));
    /// let a = {
    ///     let _s = mr.scope("init");
    ///     mr.allocate(512, 256, StreamKey::DEFAULT)?
    /// };
    /// assert_eq!(mr.report(strata::profile::Order::PeakBytes)[0].total_bytes, 512);
    /// # let _ = a;
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn scope(&self, name: impl Into<String>) -> Scope<'_, R> {
        self.state().stack.push((name.into(), Frame::default()));
        Scope { profiler: self }
    }

    /// Runs `f` inside the scope `name` and returns what it returns.
    ///
    /// ```
    /// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(0));
    /// assert_eq!(mr.profile("answer", || 42), 42);
    /// ```
    pub fn profile<T>(&self, name: impl Into<String>, f: impl FnOnce() -> T) -> T {
        let _scope = self.scope(name);
        f()
    }

    fn leave(&self) {
        let mut s = self.state();
        let Some((name, inner)) = s.stack.pop() else {
            return;
        };
        let outer = s.top();
        outer.peak = outer.peak.max(outer.current + inner.peak);
        outer.current += inner.current;
        outer.total = outer.total.saturating_add(inner.total);
        outer.allocations += inner.allocations;
        let record = s.records.entry(name.clone()).or_insert(ScopeRecord {
            name,
            calls: 0,
            peak_bytes: 0,
            total_bytes: 0,
            allocations: 0,
        });
        record.calls += 1;
        record.peak_bytes = record.peak_bytes.max(inner.peak.max(0) as u64);
        record.total_bytes = record.total_bytes.saturating_add(inner.total);
        record.allocations += inner.allocations;
    }

    /// The records of every scope left so far, sorted by `order`, largest first.
    ///
    /// ```
    /// use strata::profile::{Order, Profiler};
    /// let mr = Profiler::new(strata::replay::SimDevice::new(0));
    /// mr.profile("a", || {});
    /// mr.profile("b", || {});
    /// mr.profile("b", || {});
    /// let names: Vec<String> = mr.report(Order::Calls).into_iter().map(|r| r.name).collect();
    /// assert_eq!(names, ["b", "a"]);
    /// ```
    pub fn report(&self, order: Order) -> Vec<ScopeRecord> {
        let mut records: Vec<ScopeRecord> = self.state().records.values().cloned().collect();
        let key = |r: &ScopeRecord| match order {
            Order::PeakBytes => r.peak_bytes,
            Order::TotalBytes => r.total_bytes,
            Order::Calls => r.calls,
        };
        records.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        records
    }

    /// The whole program's statistics (every scope's allocations included, open or left).
    ///
    /// ```
    /// use strata::{MemoryResource, StreamKey};
    /// let mr = strata::profile::Profiler::new(strata::replay::SimDevice::new(1 << 20));
    /// let _s = mr.scope("open");
    /// mr.allocate(300, 256, StreamKey::DEFAULT)?;
    /// assert_eq!(mr.totals().peak_bytes, 300);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn totals(&self) -> Totals {
        let s = self.state();
        // Fold the open scopes into the base, innermost first, as leaving them would.
        let mut acc = Frame::default();
        for (_, f) in s.stack.iter().rev() {
            acc = Frame {
                peak: f.peak.max(f.current + acc.peak),
                current: f.current + acc.current,
                total: f.total + acc.total,
                allocations: f.allocations + acc.allocations,
            };
        }
        let b = s.base;
        Totals {
            current_bytes: (b.current + acc.current).max(0) as u64,
            peak_bytes: b.peak.max(b.current + acc.peak).max(0) as u64,
            total_bytes: b.total + acc.total,
            allocations: b.allocations + acc.allocations,
        }
    }
}

impl<R> Drop for Scope<'_, R> {
    fn drop(&mut self) {
        self.profiler.leave();
    }
}

/// Formats records as RMM's profiler report: columns `ncalls`, `memory_peak`,
/// `memory_total` and the scope's name, in the records' order.
///
/// ```
/// use strata::profile::{format_report, ScopeRecord};
/// let text = format_report(&[ScopeRecord { name: "step".into(), calls: 3, peak_bytes: 2048,
///                                          total_bytes: 6144, allocations: 3 }]);
/// assert!(text.lines().next().unwrap().contains("ncalls"));
/// assert!(text.lines().nth(1).unwrap().trim_end().ends_with("step"));
/// ```
pub fn format_report(records: &[ScopeRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>14} {:>14} {:>11}  name",
        "ncalls", "memory_peak", "memory_total", "allocations"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:>8} {:>14} {:>14} {:>11}  {}",
            r.calls, r.peak_bytes, r.total_bytes, r.allocations, r.name
        );
    }
    out
}

impl<R: MemoryResource> MemoryResource for Profiler<R> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let addr = self.inner.allocate(size, align, stream)?;
        let mut s = self.state();
        let f = s.top();
        f.current += i128::from(size);
        f.peak = f.peak.max(f.current);
        f.total = f.total.saturating_add(size);
        f.allocations += 1;
        Ok(addr)
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        self.inner.deallocate(addr, size, align, stream)?;
        self.state().top().current -= i128::from(size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::SimDevice;

    const S: StreamKey = StreamKey::DEFAULT;

    #[test]
    fn nested_peaks_fold_into_the_outer_scope() {
        let mr = Profiler::new(SimDevice::new(1 << 30));
        let outer = mr.scope("outer");
        let a = mr.allocate(100, 256, S).unwrap();
        for _ in 0..2 {
            let _inner = mr.scope("inner");
            let b = mr.allocate(1000, 256, S).unwrap();
            mr.deallocate(b, 1000, 256, S).unwrap();
        }
        mr.deallocate(a, 100, 256, S).unwrap();
        drop(outer);
        let r = mr.report(Order::TotalBytes);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            ScopeRecord {
                name: "outer".into(),
                calls: 1,
                peak_bytes: 1100,
                total_bytes: 2100,
                allocations: 3
            }
        );
        assert_eq!(
            (r[1].calls, r[1].peak_bytes, r[1].total_bytes),
            (2, 1000, 2000)
        );
        let t = mr.totals();
        assert_eq!(
            (t.current_bytes, t.peak_bytes, t.total_bytes),
            (0, 1100, 2100)
        );
    }

    #[test]
    fn freeing_older_memory_goes_negative_but_peaks_do_not() {
        let mr = Profiler::new(SimDevice::new(1 << 30));
        let a = mr.allocate(5000, 256, S).unwrap();
        mr.profile("cleanup", || {
            mr.deallocate(a, 5000, 256, S).unwrap();
            let b = mr.allocate(10, 256, S).unwrap();
            mr.deallocate(b, 10, 256, S).unwrap();
        });
        let r = &mr.report(Order::PeakBytes)[0];
        assert_eq!((r.peak_bytes, r.total_bytes), (0, 10));
        assert_eq!(mr.totals().peak_bytes, 5000);
        assert_eq!(mr.totals().current_bytes, 0);
    }

    #[test]
    fn failed_calls_are_not_counted() {
        let mr = Profiler::new(SimDevice::new(100));
        mr.profile("big", || assert!(mr.allocate(1000, 256, S).is_err()));
        assert!(mr.deallocate(0x1000, 10, 256, S).is_err());
        assert_eq!(mr.report(Order::Calls)[0].allocations, 0);
        assert_eq!(mr.totals().total_bytes, 0);
    }
}
