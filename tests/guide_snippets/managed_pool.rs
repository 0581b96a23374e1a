// tests/guide_snippets/managed_pool.rs
use strata::MemoryResource;
use strata::algo::PoolConfig;
use strata::driver::{Device, Managed, Prefetch, Stream, stream_ordered_pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    // One cuMemAllocManaged per chunk (256 MiB to start), not one per block; at most 4 GiB.
    let config = PoolConfig::new(256 << 20).with_maximum(4 << 30);
    let pool = stream_ordered_pool(Managed::new(&dev), &dev, config)?;
    // Every block is also prefetched to the device, on the stream it is allocated on.
    let mr = Prefetch::new(pool, &dev);

    let s = Stream::new(&dev)?;
    let p = mr.allocate(1 << 20, 256, s.key())?;
    // ... work enqueued on s finds the block's pages on the device ...
    mr.deallocate(p, 1 << 20, 256, s.key())?;
    assert_eq!(mr.upstream().stats().pool_size, 256 << 20);
    Ok(())
}
