//! The core's stream-ordered resources (the stream-ordered pool and the arena) on a device:
//! [`EventOrder`] for their cross-stream reuse, and retirement of destroyed streams.

use std::sync::Arc;

use strata_core::algo::{ArenaConfig, PoolConfig};
use strata_core::resources::{Arena, StreamOrderedPool};
use strata_core::{Error, StreamKey, StreamOrder, Upstream};

use crate::device::Device;
use crate::stream::{EventOrder, RetireStream, notify_on_stream_drop};

/// A stream-ordered pool retires each stream that goes away: its free blocks move to the
/// pool's shared stream (after ordering the shared stream after it), so none is stranded.
/// An error of the retirement (a failed event call) cannot be reported from a stream's drop;
/// the blocks then stay on the dead stream's list, unused but still owned by the pool, and go
/// back to the upstream when the pool drops.
impl<U, O, const N: usize, const P: usize> RetireStream for StreamOrderedPool<U, O, N, P>
where
    U: Upstream + Send,
    O: StreamOrder,
{
    fn retire_stream(&self, stream: StreamKey) {
        let _ = StreamOrderedPool::retire_stream(self, stream);
    }
}

/// An arena retires each stream that goes away: its sub-arena's free memory goes to the
/// arena's shared stream (after ordering the shared stream after it). As for the pool, an
/// error cannot be reported from a stream's drop; the memory then stays in the retired
/// sub-arena, owned by the arena, until the arena drops.
impl<U, O, const N: usize, const P: usize> RetireStream for Arena<U, O, N, P>
where
    U: Upstream + Send,
    O: StreamOrder,
{
    fn retire_stream(&self, stream: StreamKey) {
        let _ = Arena::retire_stream(self, stream);
    }
}

/// The core's [`StreamOrderedPool`] over a device upstream, ordered with CUDA events
/// ([`EventOrder`]) and registered to retire every [`Stream`](crate::Stream) that goes away
/// (see [`RetireStream`]).
///
/// A block freed on stream `S` is reused on `S` with no driver call; a block that another
/// stream `W` takes first costs one `cuEventRecord` on `S` and one `cuStreamWaitEvent` on `W`.
/// The pool's shared stream is the legacy default stream. Use streams made with
/// [`Stream::new`](crate::Stream::new) (or the legacy stream): the per-thread default streams
/// of all threads share one key (see [`Stream::per_thread`](crate::Stream::per_thread)).
///
/// # Errors
///
/// As [`StreamOrderedPool::new`]: the upstream's error when it cannot provide
/// `config.initial_size`, [`Error::LimitExceeded`] when that exceeds the maximum.
///
/// ```no_run
/// use strata_core::algo::PoolConfig;
/// use strata_core::MemoryResource;
/// use strata_driver::{stream_ordered_pool, Device, DeviceMemory, Stream};
/// let dev = Device::get(0)?;
/// let pool = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(64 << 20))?;
/// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
/// let p = pool.allocate(1 << 20, 256, a.key())?;
/// pool.deallocate(p, 1 << 20, 256, a.key())?;
/// let q = pool.allocate(1 << 20, 256, b.key())?; // b waits for a's work first
/// assert_eq!(p, q);
/// assert_eq!(pool.order().orders(), 1);
/// pool.deallocate(q, 1 << 20, 256, b.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stream_ordered_pool<U>(
    upstream: U,
    device: &Device,
    config: PoolConfig,
) -> Result<Arc<StreamOrderedPool<U, EventOrder>>, Error>
where
    U: Upstream + Send + 'static,
{
    let pool = Arc::new(StreamOrderedPool::new(
        upstream,
        EventOrder::new(device),
        config,
    )?);
    notify_on_stream_drop(&pool);
    Ok(pool)
}

/// The core's [`Arena`] over a device upstream (one upstream allocation of
/// `config.arena_size` bytes, a sub-arena per stream), ordered with CUDA events
/// ([`EventOrder`]) and registered to retire every [`Stream`](crate::Stream) that goes away.
///
/// The arena's shared stream is the legacy default stream; as for [`stream_ordered_pool`],
/// give each thread its own stream rather than the per-thread default stream.
///
/// # Errors
///
/// As [`Arena::new`]: [`Error::Unsupported`] for a bad configuration, the upstream's error
/// when it cannot provide the arena.
///
/// ```no_run
/// use strata_core::algo::ArenaConfig;
/// use strata_core::MemoryResource;
/// use strata_driver::{stream_ordered_arena, Device, DeviceMemory, Stream};
/// let dev = Device::get(0)?;
/// let arena = stream_ordered_arena(DeviceMemory::new(&dev), &dev, ArenaConfig::new(256 << 20))?;
/// let s = Stream::new(&dev)?;
/// let p = arena.allocate(4096, 256, s.key())?;
/// arena.deallocate(p, 4096, 256, s.key())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stream_ordered_arena<U>(
    upstream: U,
    device: &Device,
    config: ArenaConfig,
) -> Result<Arc<Arena<U, EventOrder>>, Error>
where
    U: Upstream + Send + 'static,
{
    let arena = Arc::new(Arena::new(upstream, EventOrder::new(device), config)?);
    notify_on_stream_drop(&arena);
    Ok(arena)
}
