// tests/guide_snippets/buffer_on_two_streams.rs
use strata::driver::{Async, Device, DeviceBuffer, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    let mr = Async::new(&dev)?;
    let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);

    let src = DeviceBuffer::from_host(b"stream-ordered", &a, &mr)?;
    let mut dst = DeviceBuffer::new(src.len(), &b, &mr)?;
    dst.copy_from(&src)?; // b waits for a, copies on b, then a waits for the copy
    assert_eq!(dst.to_vec()?, b"stream-ordered");

    // From now on `src` is used on b: b waits for a's work, and the free happens on b.
    let mut src = src;
    src.set_stream(&b)?;
    assert_eq!(src.stream().key(), b.key());
    Ok(())
}
