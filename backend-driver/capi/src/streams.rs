//! Streams that C callers pass as `void*` (`CUstream` / `cudaStream_t`).
//!
//! strata's driver resources accept a stream only while it is known to strata (see
//! `strata_driver::Stream::from_raw`). A stream created by the caller (PyTorch, CuPy, plain
//! CUDA code) is therefore *adopted* the first time it is passed with a CUDA resource, and
//! stays adopted until `strata_stream_release`: strata never destroys it, and the caller must
//! not destroy it while it is adopted. The null stream (0), `cudaStreamLegacy` (1) and
//! `cudaStreamPerThread` (2) need no adoption.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::RwLock;

use strata_core::StreamKey;
use strata_driver::sys::CUstream;
use strata_driver::{Device, Stream};

/// Adopted streams, by handle value.
static ADOPTED: RwLock<Option<HashMap<u64, Stream>>> = RwLock::new(None);

/// The key of the special handles, which are never adopted.
fn is_special(key: u64) -> bool {
    key <= 2
}

/// The stream key of `stream` for a resource of `device` (`None`: the simulated device, where
/// any value is a key). A CUDA stream is adopted on first use.
///
/// # Safety
///
/// For a CUDA resource, `stream` is a special handle or a live stream of `device`'s primary
/// context that stays alive until it is released with [`release`].
pub(crate) unsafe fn key_for(device: Option<&Device>, stream: *mut c_void) -> StreamKey {
    let key = stream as usize as u64;
    let Some(device) = device else {
        return StreamKey(key);
    };
    if is_special(key) {
        return StreamKey(key);
    }
    {
        let adopted = ADOPTED.read().unwrap_or_else(|p| p.into_inner());
        if adopted.as_ref().is_some_and(|m| m.contains_key(&key)) {
            return StreamKey(key);
        }
    }
    let mut adopted = ADOPTED.write().unwrap_or_else(|p| p.into_inner());
    adopted
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| {
            // SAFETY: the caller guarantees that `stream` is a live stream of `device`'s primary
            // context that outlives its adoption (until `release`).
            unsafe { Stream::from_raw(device, stream as CUstream) }
        });
    StreamKey(key)
}

/// Forgets an adopted stream: strata waits for its work, retires it from the stream-ordered
/// resources (their blocks freed on it go to their shared stream), and no longer uses it.
/// Returns whether it was adopted.
pub(crate) fn release(stream: *mut c_void) -> bool {
    let key = stream as usize as u64;
    let removed = {
        let mut adopted = ADOPTED.write().unwrap_or_else(|p| p.into_inner());
        adopted.as_mut().and_then(|m| m.remove(&key))
    };
    // Dropped outside the lock: the drop synchronises the stream and calls the resources.
    removed.is_some()
}

/// How many streams are adopted now.
#[cfg(test)]
pub(crate) fn adopted_count() -> usize {
    let adopted = ADOPTED.read().unwrap_or_else(|p| p.into_inner());
    adopted.as_ref().map_or(0, HashMap::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_streams_are_plain_keys() {
        // SAFETY: no device: the value is only a key.
        let k = unsafe { key_for(None, 0x1234 as *mut c_void) };
        assert_eq!(k, StreamKey(0x1234));
        assert_eq!(adopted_count(), 0);
        assert!(!release(0x1234 as *mut c_void));
    }
}
