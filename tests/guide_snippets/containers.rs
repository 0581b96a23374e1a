// tests/guide_snippets/containers.rs
use std::sync::Arc;
use strata::algo::PoolConfig;
use strata::driver::{
    Device, DeviceBuffer, DeviceMemory, DeviceScalar, DeviceVec, Stream, stream_ordered_pool,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    let s = Stream::new(&dev)?;
    let pool = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(64 << 20))?;

    // The resource borrowed...
    let mut v = DeviceVec::<f32, _>::zeroed(1000, &s, &*pool)?;
    v.set(10, 2.5)?;
    v.resize(2000, &s)?; // reallocates in stream order and keeps the contents
    assert_eq!((v.len(), v.get(10)?), (2000, 2.5));

    // ...or shared: the container keeps the resource alive.
    let mut count = DeviceScalar::new(41u64, &s, Arc::clone(&pool))?;
    count.set_value(count.value()? + 1)?;
    assert_eq!(count.value()?, 42);

    let bytes = DeviceBuffer::from_host(b"raw bytes", &s, pool.clone())?;
    assert_eq!(bytes.to_vec()?, b"raw bytes");
    Ok(())
}
