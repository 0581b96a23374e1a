// tests/guide_snippets/grow_first_pool.rs
use std::sync::Arc;
use strata::MemoryResource;
use strata::algo::PoolConfig;
use strata::driver::{Device, DeviceMemory, EventOrder, Stream, notify_on_stream_drop};
use strata::resources::{Reuse, StreamOrderedPool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    // As stream_ordered_pool does, with room for 256 streams and each stream growing first.
    let pool = StreamOrderedPool::<_, _>::with_streams(
        DeviceMemory::new(&dev),
        EventOrder::new(&dev),
        PoolConfig::new(0),
        256,
    )?
    .with_reuse(Reuse::GrowFirst);
    let pool = Arc::new(pool);
    notify_on_stream_drop(&pool); // retire each stream that goes away

    let s = Stream::new(&dev)?;
    let p = pool.allocate(1 << 20, 256, s.key())?;
    pool.deallocate(p, 1 << 20, 256, s.key())?;
    assert_eq!(pool.reuse(), Reuse::GrowFirst);
    Ok(())
}
