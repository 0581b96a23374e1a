//! The stream table shared by the per-stream resources: stream key → a value behind its own
//! lock, found with atomic loads only.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::{Error, StreamKey};

/// Slot states. A slot goes `EMPTY → READY`, then `READY → RETIRED → READY` (re-keyed), never
/// back to `EMPTY`, so a probe sequence never gets shorter under a reader.
const EMPTY: u32 = 0;
const READY: u32 = 1;
const RETIRED: u32 = 2;

/// One entry, alone on its cache lines so that the locks of different streams share none.
#[derive(Debug)]
#[repr(align(128))]
struct Slot<T> {
    /// [`EMPTY`], [`READY`] or [`RETIRED`]; stored with `Release` after `key`.
    state: AtomicU32,
    /// The stream (meaningful when `READY`); changed only with the insert lock and `value`'s
    /// lock held.
    key: AtomicU64,
    /// A number the resource keeps about the value, readable without its lock (the stream
    /// pool: the free bytes of the heap, to pick whom to take memory from). Only a hint: no
    /// decision that matters for correctness reads it, so it is a `core` atomic even under
    /// loom, which need not explore its values (any value is correct).
    hint: core::sync::atomic::AtomicU64,
    value: Mutex<T>,
}

/// Open addressing with linear probing over a power-of-two table at least twice the bound on
/// streams, so that a probe always meets an `EMPTY` or reusable slot.
///
/// Lookups take no lock. Inserting a stream (its first call) and retiring one take the insert
/// lock, then the slot's lock: the lock order of every user is *insert lock, then a slot, then
/// anything else*, and no one holds two slots at once.
#[derive(Debug)]
pub(crate) struct StreamTable<T> {
    slots: Box<[Slot<T>]>,
    max_streams: usize,
    /// Serialises insertions and retirements; holds how many slots are `READY`.
    /// Invariant: `<= max_streams`.
    insert: Mutex<usize>,
}

#[inline]
fn hash(key: StreamKey, mask: usize) -> usize {
    // Fibonacci hashing: stream handles are pointers, whose low bits are poor.
    (key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl<T> StreamTable<T> {
    /// A table for up to `max_streams` streams at once, every slot's value made by `init`.
    pub(crate) fn new(max_streams: usize, mut init: impl FnMut() -> T) -> Result<Self, Error> {
        if max_streams == 0 {
            return Err(Error::Unsupported {
                what: "a per-stream resource for no stream",
            });
        }
        let len = max_streams
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or(Error::SizeOverflow {
                requested: max_streams as u64,
            })?;
        let slots: Vec<Slot<T>> = (0..len)
            .map(|_| Slot {
                state: AtomicU32::new(EMPTY),
                key: AtomicU64::new(0),
                hint: core::sync::atomic::AtomicU64::new(0),
                value: Mutex::new(init()),
            })
            .collect();
        Ok(Self {
            slots: slots.into_boxed_slice(),
            max_streams,
            insert: Mutex::new(0),
        })
    }

    /// The slot of `stream`, if it has one.
    #[inline]
    pub(crate) fn lookup(&self, stream: StreamKey) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash(stream, mask);
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.state.load(Ordering::Acquire) {
                READY if slot.key.load(Ordering::Relaxed) == stream.0 => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
        None
    }

    /// Locks slot `i`'s value.
    #[inline]
    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, T> {
        self.slots[i].value.lock()
    }

    /// Slot `i`'s hint (see [`set_hint`](Self::set_hint)); no lock.
    #[inline]
    pub(crate) fn hint(&self, i: usize) -> u64 {
        self.slots[i]
            .hint
            .load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Sets slot `i`'s hint: a number about its value that others read without its lock.
    #[inline]
    pub(crate) fn set_hint(&self, i: usize, value: u64) {
        self.slots[i]
            .hint
            .store(value, core::sync::atomic::Ordering::Relaxed);
    }

    /// The number of slots (twice the bound on streams, rounded up to a power of two).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether slot `i` belongs to a retired stream.
    pub(crate) fn is_retired(&self, i: usize) -> bool {
        self.slots[i].state.load(Ordering::Acquire) == RETIRED
    }

    /// The slots that hold or held a stream (their values may hold memory), in table order.
    pub(crate) fn used(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        (0..self.slots.len()).filter(|&i| self.slots[i].state.load(Ordering::Acquire) != EMPTY)
    }

    /// How many streams have a slot now.
    pub(crate) fn streams(&self) -> usize {
        *self.insert.lock()
    }

    /// The slot of `stream`, made if needed: an `EMPTY` slot, or a `RETIRED` one whose value
    /// `reusable` accepts; `adopt` prepares the value for `stream` before the slot is published.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when `max_streams` streams have a slot; `adopt`'s error
    /// (which must leave the value as it was). Nothing changes then.
    #[cold]
    pub(crate) fn insert(
        &self,
        stream: StreamKey,
        reusable: impl Fn(&T) -> bool,
        adopt: impl FnOnce(&mut T) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mut ready = self.insert.lock();
        if let Some(i) = self.lookup(stream) {
            return Ok(i);
        }
        if *ready >= self.max_streams {
            return Err(Error::MetadataExhausted {
                capacity: self.max_streams,
            });
        }
        let mask = self.slots.len() - 1;
        let mut i = hash(stream, mask);
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            let state = slot.state.load(Ordering::Acquire);
            if state == EMPTY || state == RETIRED {
                let mut value = slot.value.lock();
                if state == EMPTY || reusable(&value) {
                    adopt(&mut value)?;
                    slot.key.store(stream.0, Ordering::Relaxed);
                    slot.state.store(READY, Ordering::Release);
                    *ready += 1;
                    debug_assert!(*ready <= self.max_streams);
                    return Ok(i);
                }
            }
            i = (i + 1) & mask;
        }
        // Unreachable while the table has twice `max_streams` slots; reported, not panicked.
        Err(Error::MetadataExhausted {
            capacity: self.max_streams,
        })
    }

    /// Retires `stream`: runs `f` on its value (with the insert lock and the slot's lock held),
    /// then marks the slot retired. Returns whether the stream had a slot.
    ///
    /// # Errors
    ///
    /// `f`'s error; the slot is then left as it was.
    pub(crate) fn retire(
        &self,
        stream: StreamKey,
        f: impl FnOnce(&mut T) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let mut ready = self.insert.lock();
        let Some(i) = self.lookup(stream) else {
            return Ok(false);
        };
        let slot = &self.slots[i];
        let mut value = slot.value.lock();
        f(&mut value)?;
        slot.state.store(RETIRED, Ordering::Release);
        *ready -= 1;
        Ok(true)
    }

    /// Checks that the stream count matches the table; for audits.
    pub(crate) fn audit(&self) -> Result<(), &'static str> {
        let ready = self
            .slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == READY)
            .count();
        if ready != *self.insert.lock() {
            return Err("the stream count does not match the table");
        }
        Ok(())
    }
}
