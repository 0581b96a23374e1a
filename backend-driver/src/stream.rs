//! Streams, events, the registry of live streams, and stream order implemented with events.

use std::collections::HashMap;
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use strata_core::{Error, StreamKey, StreamOrder};

use crate::checked;
use crate::device::Device;
use crate::error::DriverError;
use crate::sys::{CUevent, CUevent_flags, CUstream, CUstream_flags};

/// A stream handle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawStream(pub(crate) CUstream);

// SAFETY: a CUstream is an opaque driver handle that the thread-safe driver API accepts from
// any thread; strata never dereferences it.
unsafe impl Send for RawStream {}
// SAFETY: as for Send: shared use only passes the handle value to driver calls.
unsafe impl Sync for RawStream {}

/// An event handle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawEvent(pub(crate) CUevent);

// SAFETY: a CUevent is an opaque driver handle that the thread-safe driver API accepts from
// any thread; strata never dereferences it.
unsafe impl Send for RawEvent {}
// SAFETY: as for Send: shared use only passes the handle value to driver calls.
unsafe impl Sync for RawEvent {}

/// The key of `CU_STREAM_LEGACY`, the legacy default stream named explicitly.
const LEGACY_KEY: u64 = 1;
/// The key of `CU_STREAM_PER_THREAD`, the calling thread's default stream.
const PER_THREAD_KEY: u64 = 2;

/// The live streams strata knows, by handle value, with how many [`Stream`] values refer to
/// each. A [`StreamKey`] is usable by the resources only while its handle is here (or is one of
/// the special handles 0, 1, 2, which are always valid). Resources hold the read lock across
/// each driver call that uses a stream, and a stream is removed (under the write lock) before it
/// is destroyed, so no driver call ever sees a destroyed stream.
static STREAMS: RwLock<Option<HashMap<u64, usize>>> = RwLock::new(None);

/// Resources to tell when a stream goes away.
static RETIRE: Mutex<Vec<Weak<dyn RetireStream>>> = Mutex::new(Vec::new());

fn is_special(key: u64) -> bool {
    matches!(key, 0 | LEGACY_KEY | PER_THREAD_KEY)
}

fn special_handle(key: u64) -> CUstream {
    ptr::without_provenance_mut(key as usize)
}

/// Runs `f` with the driver handle of the stream `key`, holding the registry so that the
/// stream cannot be destroyed meanwhile.
///
/// # Errors
///
/// [`Error::UnknownStream`] for a key that is neither a special handle nor a live [`Stream`];
/// otherwise what `f` returns.
pub(crate) fn with_stream<T>(
    key: StreamKey,
    f: impl FnOnce(CUstream) -> Result<T, Error>,
) -> Result<T, Error> {
    if is_special(key.0) {
        return f(special_handle(key.0));
    }
    let reg = STREAMS.read().unwrap_or_else(|p| p.into_inner());
    if reg.as_ref().is_some_and(|m| m.contains_key(&key.0)) {
        f(key.0 as usize as CUstream)
    } else {
        Err(Error::UnknownStream { stream: key.0 })
    }
}

/// As [`with_stream`], for two streams at once (one registry lock, never nested).
pub(crate) fn with_streams<T>(
    a: StreamKey,
    b: StreamKey,
    f: impl FnOnce(CUstream, CUstream) -> Result<T, Error>,
) -> Result<T, Error> {
    let reg = STREAMS.read().unwrap_or_else(|p| p.into_inner());
    let resolve = |k: StreamKey| {
        if is_special(k.0) {
            Ok(special_handle(k.0))
        } else if reg.as_ref().is_some_and(|m| m.contains_key(&k.0)) {
            Ok(k.0 as usize as CUstream)
        } else {
            Err(Error::UnknownStream { stream: k.0 })
        }
    };
    let (sa, sb) = (resolve(a)?, resolve(b)?);
    f(sa, sb)
}

fn register(handle: u64) {
    let mut reg = STREAMS.write().unwrap_or_else(|p| p.into_inner());
    *reg.get_or_insert_with(HashMap::new)
        .entry(handle)
        .or_insert(0) += 1;
}

/// Drops one reference; returns whether it was the last.
fn unregister(handle: u64) -> bool {
    let mut reg = STREAMS.write().unwrap_or_else(|p| p.into_inner());
    let Some(map) = reg.as_mut() else {
        return true;
    };
    match map.get_mut(&handle) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        _ => {
            map.remove(&handle);
            true
        }
    }
}

fn refs(handle: u64) -> usize {
    let reg = STREAMS.read().unwrap_or_else(|p| p.into_inner());
    reg.as_ref()
        .and_then(|m| m.get(&handle).copied())
        .unwrap_or(0)
}

/// Something that keeps per-stream state (free lists keyed by [`StreamKey`]) and must hear when
/// a stream goes away, so that blocks freed on it are not stranded.
///
/// Register it with [`notify_on_stream_drop`]. When the last [`Stream`] value of a stream drops,
/// strata first waits for the stream's work to finish (`cuStreamSynchronize`), then calls
/// [`RetireStream::retire_stream`] on every registered listener that is still alive, and only
/// then destroys the stream: a block freed on it is idle by then, and may go to any stream.
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use strata_core::StreamKey;
/// use strata_driver::{notify_on_stream_drop, Device, RetireStream, Stream};
///
/// #[derive(Default)]
/// struct Seen(Mutex<Vec<StreamKey>>);
/// impl RetireStream for Seen {
///     fn retire_stream(&self, stream: StreamKey) {
///         self.0.lock().unwrap().push(stream);
///     }
/// }
/// let seen = Arc::new(Seen::default());
/// notify_on_stream_drop(&seen);
/// let s = Stream::new(&Device::get(0)?)?;
/// let key = s.key();
/// drop(s);
/// assert!(seen.0.lock().unwrap().contains(&key));
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub trait RetireStream: Send + Sync {
    /// The stream `stream` is going away; all work enqueued on it has finished.
    fn retire_stream(&self, stream: StreamKey);
}

/// Registers `listener` to hear about every stream that goes away, for as long as it lives
/// (strata keeps only a weak reference).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use strata_driver::{notify_on_stream_drop, RetireStream};
/// # struct Nop;
/// # impl RetireStream for Nop { fn retire_stream(&self, _: strata_core::StreamKey) {} }
/// let listener = Arc::new(Nop);
/// notify_on_stream_drop(&listener);
/// ```
pub fn notify_on_stream_drop<L: RetireStream + 'static>(listener: &Arc<L>) {
    let weak: Weak<dyn RetireStream> = Arc::downgrade(listener) as Weak<dyn RetireStream>;
    let mut list = RETIRE.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|w| w.strong_count() > 0);
    list.push(weak);
}

fn retire(key: StreamKey) {
    let live: Vec<Arc<dyn RetireStream>> = {
        let mut list = RETIRE.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    for l in live {
        l.retire_stream(key);
    }
}

struct StreamInner {
    device: Device,
    handle: RawStream,
    /// Whether strata created the stream (and destroys it when the last clone drops). A stream
    /// adopted with [`Stream::from_raw`] belongs to its creator. Special handles (null, legacy,
    /// per-thread) are never registered, retired or destroyed.
    owned: bool,
}

/// A CUDA stream of a device.
///
/// Cheap to clone (an `Arc`); the stream lives until the last clone drops. Then strata waits
/// for the work enqueued on it, tells every [`RetireStream`] listener (the stream-ordered
/// pools, so that blocks freed on it go back to everyone), and destroys it. Containers keep a
/// clone of their stream, so a buffer's stream outlives the buffer's stream-ordered free.
///
/// [`Stream::key`] is the [`StreamKey`] the resources take: the handle's value (0 for the
/// legacy default stream).
///
/// ```no_run
/// use strata_driver::{Device, Stream};
/// let dev = Device::get(0)?;
/// let s = Stream::new(&dev)?;
/// assert_ne!(s.key(), strata_core::StreamKey::DEFAULT);
/// s.synchronize()?;
/// assert!(s.is_idle()?);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
#[derive(Clone)]
pub struct Stream(Arc<StreamInner>);

impl Stream {
    /// Creates a stream on `device` that does not synchronise with the legacy default stream
    /// (`CU_STREAM_NON_BLOCKING`).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuStreamCreate` (or the context switch).
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::new(&strata_driver::Device::get(0)?)?;
    /// # let _ = s;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Result<Stream, DriverError> {
        let _g = device.enter()?;
        let handle = checked::stream_create(CUstream_flags::CU_STREAM_NON_BLOCKING as u32)?;
        register(handle as usize as u64);
        Ok(Stream(Arc::new(StreamInner {
            device: device.clone(),
            handle: RawStream(handle),
            owned: true,
        })))
    }

    /// The legacy default stream of `device`'s primary context (key 0).
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::legacy(&strata_driver::Device::get(0)?);
    /// assert_eq!(s.key(), strata_core::StreamKey::DEFAULT);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn legacy(device: &Device) -> Stream {
        Self::special(device, 0)
    }

    /// The calling thread's default stream (`CU_STREAM_PER_THREAD`, key 2) of `device`.
    ///
    /// Every thread's per-thread stream has the same key, so a resource that keeps free lists
    /// per stream (the core's stream-ordered pool, [`stream_ordered_pool`](crate::stream_ordered_pool))
    /// cannot tell them apart and would hand a block freed on one thread's stream to another's
    /// without ordering: give each thread its own [`Stream::new`] for those. The driver's pools
    /// ([`Async`](crate::Async)) and [`DeviceMemory`](crate::DeviceMemory) handle it correctly.
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::per_thread(&strata_driver::Device::get(0)?);
    /// assert_eq!(s.key(), strata_core::StreamKey(2));
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn per_thread(device: &Device) -> Stream {
        Self::special(device, PER_THREAD_KEY)
    }

    fn special(device: &Device, key: u64) -> Stream {
        Stream(Arc::new(StreamInner {
            device: device.clone(),
            handle: RawStream(special_handle(key)),
            owned: false,
        }))
    }

    /// Adopts a stream created elsewhere (by another library) without taking ownership: strata
    /// never destroys it, but makes its key known to the resources while a `Stream` of it lives
    /// and retires it (waiting for its work) when the last one drops.
    ///
    /// # Safety
    ///
    /// `handle` is a live stream of `device`'s primary context (or a special handle: null,
    /// `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`), and stays alive until every `Stream` made
    /// from it has dropped.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Stream};
    /// let dev = Device::get(0)?;
    /// let owner = Stream::new(&dev)?;
    /// // SAFETY: `owner` outlives `borrowed`.
    /// let borrowed = unsafe { Stream::from_raw(&dev, owner.raw()) };
    /// assert_eq!(borrowed.key(), owner.key());
    /// drop(borrowed);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub unsafe fn from_raw(device: &Device, handle: CUstream) -> Stream {
        let key = handle as usize as u64;
        if is_special(key) {
            return Self::special(device, key);
        }
        register(key);
        Stream(Arc::new(StreamInner {
            device: device.clone(),
            handle: RawStream(handle),
            owned: false,
        }))
    }

    /// The stream's key for the resources: the handle's value.
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::new(&strata_driver::Device::get(0)?)?;
    /// assert_eq!(s.key().0, s.raw() as u64);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn key(&self) -> StreamKey {
        StreamKey(self.0.handle.0 as usize as u64)
    }

    /// The raw `CUstream` handle (valid while this `Stream` lives).
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::new(&strata_driver::Device::get(0)?)?;
    /// assert!(!s.raw().is_null());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn raw(&self) -> CUstream {
        self.0.handle.0
    }

    /// The device the stream belongs to.
    ///
    /// ```no_run
    /// let dev = strata_driver::Device::get(0)?;
    /// assert_eq!(strata_driver::Stream::new(&dev)?.device(), &dev);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// Waits until all work enqueued on the stream has finished.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuStreamSynchronize`: an asynchronous error of earlier
    /// work.
    ///
    /// ```no_run
    /// strata_driver::Stream::new(&strata_driver::Device::get(0)?)?.synchronize()?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn synchronize(&self) -> Result<(), DriverError> {
        let _g = self.0.device.enter()?;
        // SAFETY: the handle is live (or special) while `self` lives.
        unsafe { checked::stream_synchronize(self.0.handle.0) }
    }

    /// Whether all work enqueued on the stream has finished (`cuStreamQuery`).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuStreamQuery`.
    ///
    /// ```no_run
    /// let s = strata_driver::Stream::new(&strata_driver::Device::get(0)?)?;
    /// assert!(s.is_idle()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn is_idle(&self) -> Result<bool, DriverError> {
        let _g = self.0.device.enter()?;
        // SAFETY: the handle is live (or special) while `self` lives.
        unsafe { checked::stream_query(self.0.handle.0) }
    }

    /// Makes work enqueued later on this stream wait for `event`'s last recorded work.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuStreamWaitEvent`.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Event, Stream};
    /// let dev = Device::get(0)?;
    /// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// let e = Event::new(&dev)?;
    /// e.record(&a)?;
    /// b.wait_event(&e)?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn wait_event(&self, event: &Event) -> Result<(), DriverError> {
        let _g = self.0.device.enter()?;
        // SAFETY: both handles are live while `self` and `event` live.
        unsafe { checked::stream_wait_event(self.0.handle.0, event.handle.0) }
    }

    /// Makes work enqueued later on this stream wait for all work enqueued so far on `other`
    /// (an event recorded on `other`, waited on here). No host synchronisation.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming the event call that failed.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Stream};
    /// let dev = Device::get(0)?;
    /// let (producer, consumer) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// consumer.wait_for(&producer)?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn wait_for(&self, other: &Stream) -> Result<(), DriverError> {
        if self.raw() == other.raw() {
            return Ok(());
        }
        let e = Event::new(&other.0.device)?;
        e.record(other)?;
        self.wait_event(&e)
    }
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        let key = self.handle.0 as usize as u64;
        if is_special(key) {
            return;
        }
        let guard = self.device.enter();
        let last = refs(key) <= 1;
        if guard.is_ok() && (self.owned || last) {
            // Blocks freed on this stream become idle here; errors (an earlier asynchronous
            // failure) cannot be reported from a drop, and the retire must happen regardless.
            // SAFETY: the handle is still live: it is destroyed only below.
            let _ = unsafe { checked::stream_synchronize(self.handle.0) };
            retire(StreamKey(key));
        }
        unregister(key);
        // Without its context the stream cannot be destroyed; it is leaked then.
        if self.owned && guard.is_ok() {
            // SAFETY: strata created this stream, this is the last `Stream` of it, and it left
            // the registry above, so no resource call can use it any more.
            let _ = unsafe { checked::stream_destroy(self.handle.0) };
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("device", &self.0.device.ordinal())
            .field("key", &format_args!("{:#x}", self.key().0))
            .finish()
    }
}

impl From<&Stream> for StreamKey {
    fn from(s: &Stream) -> StreamKey {
        s.key()
    }
}

/// A CUDA event without timing (`cuEventCreate` with `CU_EVENT_DISABLE_TIMING`), for ordering
/// streams and waiting on the host; destroyed on drop.
///
/// ```no_run
/// use strata_driver::{Device, Event, Stream};
/// let dev = Device::get(0)?;
/// let s = Stream::new(&dev)?;
/// let done = Event::new(&dev)?;
/// done.record(&s)?;
/// done.synchronize()?;
/// assert!(done.is_complete()?);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub struct Event {
    device: Device,
    handle: RawEvent,
}

impl Event {
    /// A new event of `device`'s primary context.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuEventCreate`.
    ///
    /// ```no_run
    /// let e = strata_driver::Event::new(&strata_driver::Device::get(0)?)?;
    /// assert!(e.is_complete()?); // never recorded
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> Result<Event, DriverError> {
        let _g = device.enter()?;
        let handle = checked::event_create(CUevent_flags::CU_EVENT_DISABLE_TIMING as u32)?;
        Ok(Event {
            device: device.clone(),
            handle: RawEvent(handle),
        })
    }

    /// Records the work enqueued so far on `stream`.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuEventRecord`.
    ///
    /// ```no_run
    /// use strata_driver::{Device, Event, Stream};
    /// let dev = Device::get(0)?;
    /// let e = Event::new(&dev)?;
    /// e.record(&Stream::new(&dev)?)?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn record(&self, stream: &Stream) -> Result<(), DriverError> {
        let _g = self.device.enter()?;
        // SAFETY: both handles are live while `self` and `stream` live.
        unsafe { checked::event_record(self.handle.0, stream.raw()) }
    }

    /// Waits on the host until the recorded work has finished.
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuEventSynchronize`.
    ///
    /// ```no_run
    /// let e = strata_driver::Event::new(&strata_driver::Device::get(0)?)?;
    /// e.synchronize()?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn synchronize(&self) -> Result<(), DriverError> {
        let _g = self.device.enter()?;
        // SAFETY: the handle is live while `self` lives.
        unsafe { checked::event_synchronize(self.handle.0) }
    }

    /// Whether the recorded work has finished (true for an event never recorded).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuEventQuery`.
    ///
    /// ```no_run
    /// assert!(strata_driver::Event::new(&strata_driver::Device::get(0)?)?.is_complete()?);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn is_complete(&self) -> Result<bool, DriverError> {
        let _g = self.device.enter()?;
        // SAFETY: the handle is live while `self` lives.
        unsafe { checked::event_query(self.handle.0) }
    }

    /// The raw `CUevent` handle (valid while this `Event` lives).
    ///
    /// ```no_run
    /// let e = strata_driver::Event::new(&strata_driver::Device::get(0)?)?;
    /// assert!(!e.raw().is_null());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn raw(&self) -> CUevent {
        self.handle.0
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let Ok(_g) = self.device.enter() else {
            return;
        };
        // SAFETY: strata created the event and this is its only owner.
        let _ = unsafe { checked::event_destroy(self.handle.0) };
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("device", &self.device.ordinal())
            .finish()
    }
}

/// Stream order for the core's stream-ordered resources, implemented with CUDA events.
///
/// [`StreamOrder::order_after`]`(waiter, signaller)` takes an event from a reusable pool,
/// records it on `signaller` and makes `waiter` wait on it (`cuEventRecord` +
/// `cuStreamWaitEvent`), then returns the event to the pool at once: a wait captures the
/// event's state when it is enqueued, so re-recording the event later does not affect it. The
/// core calls this only when a block crosses streams (a steal), never on a plain free. No host
/// synchronisation happens. Events are created on demand (one per concurrent steal at most)
/// and destroyed when the `EventOrder` drops.
///
/// ```no_run
/// use strata_core::StreamOrder;
/// use strata_driver::{Device, EventOrder, Stream};
/// let dev = Device::get(0)?;
/// let order = EventOrder::new(&dev);
/// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
/// order.order_after(b.key(), a.key())?; // b waits for a's work so far
/// assert_eq!(order.orders(), 1);
/// assert_eq!(order.events_created(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventOrder {
    device: Device,
    /// Idle events of `device`'s primary context, ready to record; each is owned by this pool
    /// while it is in the vector, and by exactly one `order_after` call while it is out.
    idle: Mutex<Vec<RawEvent>>,
    created: AtomicU64,
    orders: AtomicU64,
}

impl EventOrder {
    /// An event-based stream order for streams of `device`.
    ///
    /// ```no_run
    /// let order = strata_driver::EventOrder::new(&strata_driver::Device::get(0)?);
    /// assert_eq!(order.events_created(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(device: &Device) -> EventOrder {
        EventOrder {
            device: device.clone(),
            idle: Mutex::new(Vec::new()),
            created: AtomicU64::new(0),
            orders: AtomicU64::new(0),
        }
    }

    /// The device.
    ///
    /// ```no_run
    /// let dev = strata_driver::Device::get(0)?;
    /// assert_eq!(strata_driver::EventOrder::new(&dev).device(), &dev);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How many events the pool has created (its peak number of concurrent steals).
    ///
    /// ```no_run
    /// let order = strata_driver::EventOrder::new(&strata_driver::Device::get(0)?);
    /// assert_eq!(order.events_created(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn events_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// How many cross-stream orderings (record + wait pairs) were enqueued.
    ///
    /// ```no_run
    /// let order = strata_driver::EventOrder::new(&strata_driver::Device::get(0)?);
    /// assert_eq!(order.orders(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn orders(&self) -> u64 {
        self.orders.load(Ordering::Relaxed)
    }

    fn take_event(&self) -> Result<RawEvent, DriverError> {
        if let Some(e) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(e);
        }
        let e = checked::event_create(CUevent_flags::CU_EVENT_DISABLE_TIMING as u32)?;
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(RawEvent(e))
    }
}

impl StreamOrder for EventOrder {
    fn order_after(&self, waiter: StreamKey, signaller: StreamKey) -> Result<(), Error> {
        if waiter == signaller {
            return Ok(());
        }
        with_streams(waiter, signaller, |w, s| {
            let _g = self.device.enter()?;
            let ev = self.take_event()?;
            // SAFETY: the event is owned by this call (taken from the pool or just created);
            // both streams are live: the registry lock is held.
            let r = unsafe { checked::event_record(ev.0, s) }
                // SAFETY: as above.
                .and_then(|()| unsafe { checked::stream_wait_event(w, ev.0) });
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(ev);
            r?;
            self.orders.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}

impl Drop for EventOrder {
    fn drop(&mut self) {
        let events = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        let Ok(_g) = self.device.enter() else {
            return;
        };
        for e in events {
            // SAFETY: every event in the pool is idle and owned by the pool, which is dropping.
            let _ = unsafe { checked::event_destroy(e.0) };
        }
    }
}

impl fmt::Debug for EventOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventOrder")
            .field("device", &self.device.ordinal())
            .field("events_created", &self.events_created())
            .field("orders", &self.orders())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_without_touching_the_driver() {
        let bogus = StreamKey(0xdead_0000);
        assert_eq!(
            with_stream(bogus, |_| Ok(())),
            Err(Error::UnknownStream {
                stream: 0xdead_0000
            })
        );
        assert_eq!(
            with_streams(StreamKey::DEFAULT, bogus, |_, _| Ok(())),
            Err(Error::UnknownStream {
                stream: 0xdead_0000
            })
        );
    }

    #[test]
    fn special_keys_are_always_valid() {
        for k in [0, LEGACY_KEY, PER_THREAD_KEY] {
            let h = with_stream(StreamKey(k), |s| Ok(s as usize as u64)).unwrap();
            assert_eq!(h, k);
        }
    }

    #[test]
    fn registry_counts_references() {
        let h = 0x7000_0000_u64;
        register(h);
        register(h);
        assert_eq!(refs(h), 2);
        assert!(with_stream(StreamKey(h), |_| Ok(())).is_ok());
        assert!(!unregister(h));
        assert!(unregister(h));
        assert_eq!(refs(h), 0);
        assert!(with_stream(StreamKey(h), |_| Ok(())).is_err());
    }

    #[test]
    fn retire_reaches_live_listeners_only() {
        struct Count(AtomicU64);
        impl RetireStream for Count {
            fn retire_stream(&self, _: StreamKey) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let a = Arc::new(Count(AtomicU64::new(0)));
        let b = Arc::new(Count(AtomicU64::new(0)));
        notify_on_stream_drop(&a);
        notify_on_stream_drop(&b);
        drop(b);
        retire(StreamKey(0x1234_5600));
        assert!(a.0.load(Ordering::Relaxed) >= 1);
    }
}
