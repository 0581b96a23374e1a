//! Helpers shared by the resource test files.

use strata_core::sim_stream::SimStreams;
use strata_core::{Error, MemoryResource, StreamKey, StreamOrder};

/// One thread's random walk on stream `StreamKey(t)` through `resource`, every call routed
/// through the stream-order checker `st`: 3000 steps of allocate (a size from `size_of`, at most
/// `max_live` blocks live; out of memory is allowed) or free of a random live block, a seventh
/// of the frees on another stream (ordered after this one first); at the end everything left is
/// freed. Any other error fails the test.
pub fn random_stream_walk<R: MemoryResource + ?Sized>(
    st: &SimStreams,
    resource: &R,
    t: u64,
    max_live: usize,
    size_of: impl Fn(u64) -> u64,
) {
    let me = StreamKey(t);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if live.len() < max_live && (!x.is_multiple_of(3) || live.is_empty()) {
            let size = size_of(x);
            match st.allocate(resource, size, 256, me) {
                Ok(addr) => live.push((addr, size)),
                Err(Error::OutOfMemory { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        } else {
            let (addr, size) = live.swap_remove((x % live.len() as u64) as usize);
            let on = if x.is_multiple_of(7) {
                StreamKey(1 + t % 4)
            } else {
                me
            };
            if on != me {
                st.order_after(on, me).unwrap();
            }
            st.deallocate(resource, addr, size, 256, on).unwrap();
        }
    }
    for (addr, size) in live {
        st.deallocate(resource, addr, size, 256, me).unwrap();
    }
}
