// tests/guide_snippets/first_gpu_program.rs
use strata::driver::{Async, Device, DeviceVec, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?; // loads libcuda; an error, not a panic, if there is none
    let mr = Async::new(&dev)?; // cuMemAllocAsync on a pool of its own
    let stream = Stream::new(&dev)?;
    let v = DeviceVec::from_slice(&[1.0f32, 2.0, 3.0], &stream, &mr)?;
    assert_eq!(v.to_vec()?, [1.0, 2.0, 3.0]);
    Ok(()) // `v` is freed on `stream`, then the pool and the stream go
}
