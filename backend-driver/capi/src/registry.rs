//! The handle registry: C handles are (slot index, generation) pairs, never pointers, so a
//! destroyed or made-up handle is detected instead of dereferenced.
//!
//! A handle's bits: bit 63 set (so 0, small integers and ordinary pointers are never valid),
//! the slot's generation in bits 31..=62, the slot index in bits 0..=30. Destroying a handle
//! empties its slot and bumps the generation, so the old handle no longer matches even when the
//! slot is reused. A slot whose generation would wrap is retired for good.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("strata-capi encodes handles in 64-bit pointers");

const TAG: usize = 1 << 63;
const INDEX_BITS: u32 = 31;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<Arc<T>>,
}

#[derive(Debug)]
struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots that can be reused.
    free: Vec<u32>,
    /// Live values.
    live: usize,
}

/// A table of shared values addressed by generation-checked handles (`usize` bit patterns).
#[derive(Debug)]
pub(crate) struct Registry<T> {
    inner: RwLock<Slots<T>>,
}

/// Why a handle does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Not a handle's bit pattern at all (null, an ordinary pointer, a small integer).
    Malformed,
    /// A handle's shape, but no live value has it (destroyed, or never made).
    Stale,
}

fn encode(index: u32, generation: u32) -> usize {
    TAG | (generation as usize) << INDEX_BITS | index as usize
}

fn decode(handle: usize) -> Option<(u32, u32)> {
    if handle & TAG == 0 {
        return None;
    }
    let index = (handle & INDEX_MASK) as u32;
    let generation = ((handle & !TAG) >> INDEX_BITS) as u32;
    Some((index, generation))
}

impl<T> Registry<T> {
    pub(crate) const fn new() -> Self {
        Registry {
            inner: RwLock::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
                live: 0,
            }),
        }
    }

    // The registry's state is consistent between statements, so a panic elsewhere (none is
    // expected) leaves it usable: take the lock even if poisoned.
    fn read(&self) -> RwLockReadGuard<'_, Slots<T>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Slots<T>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `value`; returns its handle, or `None` when all 2^31 slots are taken.
    pub(crate) fn insert(&self, value: Arc<T>) -> Option<usize> {
        let mut s = self.write();
        let index = match s.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(s.slots.len())
                    .ok()
                    .filter(|&i| i as usize <= INDEX_MASK)?;
                s.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                i
            }
        };
        let slot = &mut s.slots[index as usize];
        debug_assert!(slot.value.is_none());
        slot.value = Some(value);
        let generation = slot.generation;
        s.live += 1;
        Some(encode(index, generation))
    }

    /// The value of `handle`.
    pub(crate) fn get(&self, handle: usize) -> Result<Arc<T>, Lookup> {
        let (index, generation) = decode(handle).ok_or(Lookup::Malformed)?;
        let s = self.read();
        match s.slots.get(index as usize) {
            Some(Slot {
                generation: g,
                value: Some(v),
            }) if *g == generation => Ok(Arc::clone(v)),
            _ => Err(Lookup::Stale),
        }
    }

    /// Removes `handle`'s value if `keep` allows it; returns it (the caller drops it outside
    /// the registry's lock). `keep` returning an error leaves the value in place.
    pub(crate) fn remove_if<E>(
        &self,
        handle: usize,
        check: impl FnOnce(&T) -> Result<(), E>,
    ) -> Result<Result<Arc<T>, E>, Lookup> {
        let (index, generation) = decode(handle).ok_or(Lookup::Malformed)?;
        let mut s = self.write();
        let slot = match s.slots.get_mut(index as usize) {
            Some(slot) if slot.generation == generation && slot.value.is_some() => slot,
            _ => return Err(Lookup::Stale),
        };
        if let Some(v) = &slot.value
            && let Err(e) = check(v)
        {
            return Ok(Err(e));
        }
        let value = slot.value.take().ok_or(Lookup::Stale)?;
        let retire = slot.generation == u32::MAX;
        slot.generation = slot.generation.wrapping_add(1);
        s.live -= 1;
        if !retire {
            s.free.push(index);
        }
        Ok(Ok(value))
    }

    /// How many values are stored.
    pub(crate) fn len(&self) -> usize {
        self.read().live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remove(r: &Registry<u32>, h: usize) -> Result<Arc<u32>, Lookup> {
        r.remove_if(h, |_| Ok::<(), ()>(())).map(|v| v.unwrap())
    }

    #[test]
    fn stale_and_malformed_handles_are_detected() {
        let r = Registry::new();
        let a = r.insert(Arc::new(1u32)).unwrap();
        assert_eq!(*r.get(a).unwrap(), 1);
        assert_eq!(r.get(0).unwrap_err(), Lookup::Malformed);
        assert_eq!(r.get(0x1000).unwrap_err(), Lookup::Malformed);
        assert_eq!(r.get(a + 1).unwrap_err(), Lookup::Stale, "no slot 1");
        assert_eq!(*remove(&r, a).unwrap(), 1);
        assert_eq!(r.get(a).unwrap_err(), Lookup::Stale, "destroyed");
        assert_eq!(remove(&r, a).unwrap_err(), Lookup::Stale, "destroyed twice");
        // The slot is reused with a new generation: the old handle stays dead.
        let b = r.insert(Arc::new(2u32)).unwrap();
        assert_ne!(a, b);
        assert_eq!(b & INDEX_MASK, a & INDEX_MASK);
        assert_eq!(r.get(a).unwrap_err(), Lookup::Stale);
        assert_eq!(*r.get(b).unwrap(), 2);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_refused_removal_keeps_the_value() {
        let r = Registry::new();
        let a = r.insert(Arc::new(7u32)).unwrap();
        assert_eq!(
            r.remove_if(a, |v| if *v == 7 { Err("pinned") } else { Ok(()) })
                .unwrap()
                .unwrap_err(),
            "pinned"
        );
        assert_eq!(*r.get(a).unwrap(), 7);
    }

    #[test]
    fn a_slot_whose_generation_would_wrap_is_retired() {
        let r = Registry::new();
        let a = r.insert(Arc::new(1u32)).unwrap();
        r.write().slots[0].generation = u32::MAX;
        let a_max = encode(0, u32::MAX);
        assert!(r.get(a).is_err());
        remove(&r, a_max).unwrap();
        let b = r.insert(Arc::new(2u32)).unwrap();
        assert_eq!(b & INDEX_MASK, 1, "slot 0 is not reused");
        assert_eq!(r.get(encode(0, 0)).unwrap_err(), Lookup::Stale);
    }

    #[test]
    fn handles_round_trip() {
        for (i, g) in [(0, 0), (1, 1), (INDEX_MASK as u32, u32::MAX), (12345, 678)] {
            assert_eq!(decode(encode(i, g)), Some((i, g)));
            assert_ne!(encode(i, g), 0);
        }
    }
}
