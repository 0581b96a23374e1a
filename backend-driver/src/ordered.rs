//! The core's stream-ordered pool on a device: [`EventOrder`] for its steals, and retirement of
//! destroyed streams.

use std::sync::Arc;

use strata_core::algo::PoolConfig;
use strata_core::resources::StreamOrderedPool;
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
