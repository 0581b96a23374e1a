//! The logging adaptor: every allocation and free, as an [`Event`] handed to an [`EventSink`].
//!
//! The core knows nothing of files, clocks or threads: the sink does. The `strata` facade
//! provides a sink that writes RMM's CSV log (`Thread,Time,Action,Pointer,Size,Stream`), adding
//! the thread and the time itself.

use crate::{Error, MemoryResource, StreamKey};

/// What happened.
///
/// ```
/// use strata_core::adaptors::Action;
/// assert_ne!(Action::Allocate, Action::Free);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A block was handed out (RMM's `allocate`).
    Allocate,
    /// An allocation failed; the event's `addr` is 0 (RMM's `allocate failure`).
    AllocateFailure,
    /// A block is being given back (RMM's `free`). Recorded *before* the upstream takes it, so a
    /// log never shows an address handed out again before its free.
    Free,
    /// The upstream refused the free recorded just before for the same address: the block is
    /// still live. (RMM's log has no such line; a CSV sink may skip or mark it.)
    FreeFailure,
}

/// One allocation event.
///
/// ```
/// use strata_core::adaptors::{Action, Event};
/// use strata_core::StreamKey;
/// let e = Event { action: Action::Allocate, addr: 0x1000, size: 256, stream: StreamKey(7) };
/// assert_eq!(e.stream, StreamKey(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The block's address (0 for [`Action::AllocateFailure`]).
    pub addr: u64,
    /// The size asked for.
    pub size: u64,
    /// The stream of the call.
    pub stream: StreamKey,
}

/// Where the [`Logging`] adaptor sends its events.
///
/// `record` is called from whichever thread made the call, while the call is in progress, so
/// the order in which a sink sees the events of one block is the order in which they happened.
/// It must not call back into the resource it logs. It should be quick: it is on every
/// allocation's path.
///
/// ```
/// use strata_core::adaptors::{Event, EventSink};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts events and keeps nothing else.
/// struct CountingSink(AtomicU64);
/// impl EventSink for CountingSink {
///     fn record(&self, _event: &Event) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// # let _ = CountingSink(AtomicU64::new(0));
/// ```
pub trait EventSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: &Event);
}

impl<S: EventSink + ?Sized> EventSink for &S {
    #[inline]
    fn record(&self, event: &Event) {
        (**self).record(event);
    }
}

#[cfg(feature = "alloc")]
impl<S: EventSink + ?Sized> EventSink for alloc::sync::Arc<S> {
    #[inline]
    fn record(&self, event: &Event) {
        (**self).record(event);
    }
}

/// A sink that keeps every event in memory (feature `alloc`), for tests and small tools.
///
/// ```
/// use strata_core::adaptors::{Action, Logging, ThreadSafe, VecSink};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let sink = VecSink::new();
/// let r = Logging::new(ThreadSafe::new(SimUpstream::new(1 << 20)), &sink);
/// let a = r.allocate(512, 256, StreamKey(3))?;
/// r.deallocate(a, 512, 256, StreamKey(3))?;
/// let actions: Vec<Action> = sink.events().iter().map(|e| e.action).collect();
/// assert_eq!(actions, [Action::Allocate, Action::Free]);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct VecSink {
    events: crate::sync::Mutex<alloc::vec::Vec<Event>>,
}

#[cfg(feature = "alloc")]
impl VecSink {
    /// An empty sink.
    ///
    /// ```
    /// assert!(strata_core::adaptors::VecSink::new().events().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events recorded so far, in order.
    ///
    /// ```
    /// use strata_core::adaptors::{Action, Event, EventSink, VecSink};
    /// use strata_core::StreamKey;
    /// let sink = VecSink::new();
    /// sink.record(&Event { action: Action::Free, addr: 1, size: 2, stream: StreamKey(0) });
    /// assert_eq!(sink.events().len(), 1);
    /// ```
    pub fn events(&self) -> alloc::vec::Vec<Event> {
        self.events.lock().clone()
    }

    /// Takes the events recorded so far out of the sink.
    ///
    /// ```
    /// use strata_core::adaptors::{Action, Event, EventSink, VecSink};
    /// use strata_core::StreamKey;
    /// let sink = VecSink::new();
    /// sink.record(&Event { action: Action::Free, addr: 1, size: 2, stream: StreamKey(0) });
    /// assert_eq!(sink.take().len(), 1);
    /// assert!(sink.events().is_empty());
    /// ```
    pub fn take(&self) -> alloc::vec::Vec<Event> {
        core::mem::take(&mut *self.events.lock())
    }
}

#[cfg(feature = "alloc")]
impl EventSink for VecSink {
    fn record(&self, event: &Event) {
        self.events.lock().push(*event);
    }
}

/// Sends an [`Event`] to a sink for every allocation, failed allocation and free.
///
/// Errors pass through unchanged; a failed allocation is recorded as
/// [`Action::AllocateFailure`], a free the upstream refuses as [`Action::Free`] followed by
/// [`Action::FreeFailure`] (see [`Action`] for why the free is recorded first).
///
/// ```
/// use strata_core::adaptors::{Action, Logging, ThreadSafe, VecSink};
/// use strata_core::{MemoryResource, SimUpstream, StreamKey};
///
/// let sink = VecSink::new();
/// let r = Logging::new(ThreadSafe::new(SimUpstream::new(1024)), &sink);
/// assert!(r.allocate(4096, 256, StreamKey::DEFAULT).is_err());
/// let e = sink.events()[0];
/// assert_eq!((e.action, e.addr, e.size), (Action::AllocateFailure, 0, 4096));
/// ```
#[derive(Debug)]
pub struct Logging<R, S> {
    upstream: R,
    sink: S,
}

impl<R, S> Logging<R, S> {
    /// Logs the traffic to `upstream` into `sink`.
    ///
    /// ```
    /// use strata_core::adaptors::{Logging, ThreadSafe, VecSink};
    /// let r = Logging::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)), VecSink::new());
    /// assert!(r.sink().events().is_empty());
    /// ```
    pub fn new(upstream: R, sink: S) -> Self {
        Self { upstream, sink }
    }

    /// The sink.
    ///
    /// ```
    /// use strata_core::adaptors::{Logging, ThreadSafe, VecSink};
    /// let r = Logging::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)), VecSink::new());
    /// assert!(r.sink().take().is_empty());
    /// ```
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{Logging, ThreadSafe, VecSink};
    /// let r = Logging::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)), VecSink::new());
    /// assert_eq!(r.upstream().lock().capacity(), 1024);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }

    /// Unwraps the resource and the sink.
    ///
    /// ```
    /// use strata_core::adaptors::{Logging, ThreadSafe, VecSink};
    /// let r = Logging::new(ThreadSafe::new(strata_core::SimUpstream::new(1024)), VecSink::new());
    /// let (_upstream, sink) = r.into_parts();
    /// assert!(sink.events().is_empty());
    /// ```
    pub fn into_parts(self) -> (R, S) {
        (self.upstream, self.sink)
    }
}

impl<R: MemoryResource, S: EventSink> MemoryResource for Logging<R, S> {
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let result = self.upstream.allocate(size, align, stream);
        let (action, addr) = match result {
            Ok(addr) => (Action::Allocate, addr),
            Err(_) => (Action::AllocateFailure, 0),
        };
        self.sink.record(&Event {
            action,
            addr,
            size,
            stream,
        });
        result
    }

    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        let mut event = Event {
            action: Action::Free,
            addr,
            size,
            stream,
        };
        self.sink.record(&event);
        let result = self.upstream.deallocate(addr, size, align, stream);
        if result.is_err() {
            event.action = Action::FreeFailure;
            self.sink.record(&event);
        }
        result
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::ThreadSafe;

    #[test]
    fn refused_free_is_logged_as_free_then_failure() {
        let sink = VecSink::new();
        let r = Logging::new(
            ThreadSafe::new(SimUpstream::<8>::with_slots(1 << 20)),
            &sink,
        );
        let s = StreamKey(0x5);
        let a = r.allocate(300, 256, s).unwrap();
        assert_eq!(
            r.deallocate(a, 200, 256, s),
            Err(Error::SizeMismatch {
                addr: a,
                allocated: 300,
                given: 200
            })
        );
        r.deallocate(a, 300, 256, s).unwrap();
        let got: alloc::vec::Vec<(Action, u64, u64)> = sink
            .take()
            .iter()
            .map(|e| {
                assert_eq!(e.stream, s);
                (e.action, e.addr, e.size)
            })
            .collect();
        assert_eq!(
            got,
            [
                (Action::Allocate, a, 300),
                (Action::Free, a, 200),
                (Action::FreeFailure, a, 200),
                (Action::Free, a, 300),
            ]
        );
    }
}
