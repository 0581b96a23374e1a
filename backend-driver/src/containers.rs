//! Device containers: an untyped [`DeviceBuffer`], a typed [`DeviceVec`] of plain data, and a
//! single-value [`DeviceScalar`]. Each takes its memory resource explicitly and keeps the
//! stream of its last use, on which it frees itself when dropped.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{MaybeUninit, size_of};

use strata_core::{DEFAULT_ALIGNMENT, Error, MemoryResource};

use crate::checked;
use crate::error::DriverError;
use crate::stream::Stream;

/// Plain data that may be copied to and from the device as bytes.
///
/// # Safety
///
/// Implement it only for types with no padding bytes (every byte of a value is initialised)
/// and for which every bit pattern of the right size is a valid value: integers, floats,
/// arrays of them, `#[repr(C)]` structs of them without padding. Not `bool`, `char`,
/// references, enums or anything with a destructor.
///
/// ```
/// use strata_driver::DevicePod;
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Pair { a: u32, b: f32 } // no padding, any bits valid
/// // SAFETY: two 4-byte plain fields, no padding.
/// unsafe impl DevicePod for Pair {}
/// fn bytes<T: DevicePod>() -> usize { std::mem::size_of::<T>() }
/// assert_eq!(bytes::<Pair>(), 8);
/// ```
pub unsafe trait DevicePod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive number: no padding, every bit pattern valid.
        unsafe impl DevicePod for $t {}
    )*};
}
pod!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);
// SAFETY: an array of plain data has no padding between elements and every bit pattern of it
// is an array of valid elements.
unsafe impl<T: DevicePod, const N: usize> DevicePod for [T; N] {}

fn as_bytes<T: DevicePod>(s: &[T]) -> &[u8] {
    // SAFETY: `T: DevicePod` has no padding, so all `size_of_val(s)` bytes are initialised;
    // u8 has alignment 1; the borrow keeps `s` alive.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), size_of_val(s)) }
}

fn as_bytes_mut<T: DevicePod>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; writing any bytes leaves valid `T`s (`DevicePod`), and the
    // exclusive borrow makes this the only view.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), size_of_val(s)) }
}

/// Untyped, uninitialised device memory from an explicit resource, in stream order: RMM's
/// `device_buffer`.
///
/// A buffer has a size and a capacity (what is allocated, at least the size), and a stream,
/// the stream of its last use: its allocation, copies, fills and reallocations are enqueued
/// there, and its memory is freed there when it drops (`deallocate(…, stream)`: for
/// [`Async`](crate::Async) a stream-ordered free, for [`DeviceMemory`](crate::DeviceMemory) a
/// free after the stream's work). The buffer keeps a clone of its [`Stream`], so the stream
/// outlives that free. [`set_stream`](DeviceBuffer::set_stream) moves the buffer to another
/// stream, ordering the new stream after the old one.
///
/// The host copies ([`copy_from_host`](DeviceBuffer::copy_from_host),
/// [`copy_to_host`](DeviceBuffer::copy_to_host)) are enqueued on the buffer's stream and wait
/// for it to finish before returning, so the host slice is free again at once.
///
/// `R` is the resource, by value: pass `&mr` to borrow one, or an `Arc`.
///
/// ```no_run
/// use strata_driver::{Async, Device, DeviceBuffer, Stream};
/// let dev = Device::get(0)?;
/// let (mr, s) = (Async::new(&dev)?, Stream::new(&dev)?);
/// let mut buf = DeviceBuffer::from_host(b"hello", &s, &mr)?;
/// buf.resize(3, &s)?; // shrinks the size, keeps the capacity
/// assert_eq!((buf.len(), buf.capacity()), (3, 5));
/// buf.shrink_to_fit(&s)?;
/// assert_eq!(buf.to_vec()?, b"hel");
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub struct DeviceBuffer<R: MemoryResource> {
    /// The allocation's address; 0 exactly when `capacity` is 0 (nothing allocated).
    ptr: u64,
    /// Bytes in use, at most `capacity`.
    size: u64,
    /// Bytes allocated from `mr` (with alignment [`DEFAULT_ALIGNMENT`]), owned by this buffer.
    capacity: u64,
    /// The stream of last use: all work on the memory is ordered on it.
    stream: Stream,
    mr: R,
}

impl<R: MemoryResource> DeviceBuffer<R> {
    /// A buffer of `size` uninitialised bytes, allocated from `mr` on `stream`.
    ///
    /// # Errors
    ///
    /// The resource's errors (e.g. [`Error::OutOfMemory`] in [`DriverError::Core`]).
    ///
    /// ```no_run
    /// use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// let dev = Device::get(0)?;
    /// let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::new(1 << 20, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.len(), 1 << 20);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(size: u64, stream: &Stream, mr: R) -> Result<Self, DriverError> {
        let ptr = if size > 0 {
            mr.allocate(size, DEFAULT_ALIGNMENT, stream.key())?
        } else {
            0
        };
        Ok(DeviceBuffer {
            ptr,
            size,
            capacity: size,
            stream: stream.clone(),
            mr,
        })
    }

    /// A buffer of `size` zero bytes (the memset is enqueued on `stream`).
    ///
    /// # Errors
    ///
    /// The resource's errors; a [`DriverError::Call`] naming `cuMemsetD8Async`.
    ///
    /// ```no_run
    /// use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// let dev = Device::get(0)?;
    /// let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::zeroed(16, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.to_vec()?, vec![0u8; 16]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn zeroed(size: u64, stream: &Stream, mr: R) -> Result<Self, DriverError> {
        let mut b = Self::new(size, stream, mr)?;
        b.fill(0)?;
        Ok(b)
    }

    /// A buffer holding a copy of `data`.
    ///
    /// # Errors
    ///
    /// The resource's errors; a [`DriverError::Call`] naming the copy.
    ///
    /// ```no_run
    /// use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// let dev = Device::get(0)?;
    /// let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::from_host(&[1, 2, 3], &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn from_host(data: &[u8], stream: &Stream, mr: R) -> Result<Self, DriverError> {
        let mut b = Self::new(data.len() as u64, stream, mr)?;
        b.copy_from_host(data)?;
        Ok(b)
    }

    /// The size in bytes.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::new(10, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.len(), 10);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the size is 0.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// assert!(DeviceBuffer::new(0, &Stream::new(&dev)?, &mr)?.is_empty());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The bytes allocated (at least [`len`](DeviceBuffer::len)).
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut buf = DeviceBuffer::new(10, &s, &mr)?;
    /// buf.reserve(100, &s)?;
    /// assert_eq!((buf.len(), buf.capacity()), (10, 100));
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The device address (0 for a buffer with no capacity). Work that uses it belongs on
    /// [`stream`](DeviceBuffer::stream), or must be ordered with it.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::new(10, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.as_ptr() % 256, 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn as_ptr(&self) -> u64 {
        self.ptr
    }

    /// The stream of last use.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let s = Stream::new(&dev)?;
    /// assert_eq!(DeviceBuffer::new(10, &s, &mr)?.stream().key(), s.key());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The resource the memory comes from.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::new(10, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.resource().allocated_bytes(), 10);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn resource(&self) -> &R {
        &self.mr
    }

    /// Makes `stream` the buffer's stream, after making it wait for the work enqueued so far
    /// on the old one (an event; no host synchronisation).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming the event call that failed; the stream is unchanged then.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// let mut buf = DeviceBuffer::zeroed(10, &a, &mr)?;
    /// buf.set_stream(&b)?; // b waits for the memset on a
    /// assert_eq!(buf.stream().key(), b.key());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set_stream(&mut self, stream: &Stream) -> Result<(), DriverError> {
        if stream.raw() != self.stream.raw() || stream.device() != self.stream.device() {
            stream.wait_for(&self.stream)?;
            self.stream = stream.clone();
        }
        Ok(())
    }

    /// Sets the size to `new_size` bytes, on `stream` (which becomes the buffer's stream).
    /// Within the capacity only the size changes; beyond it the buffer reallocates exactly
    /// `new_size` bytes and copies its contents (stream-ordered). New bytes are uninitialised.
    ///
    /// # Errors
    ///
    /// The resource's errors (the buffer is unchanged then), or a failed copy or event call.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut buf = DeviceBuffer::from_host(&[1, 2], &s, &mr)?;
    /// buf.resize(1000, &s)?;
    /// assert_eq!((buf.len(), buf.capacity()), (1000, 1000));
    /// assert_eq!(buf.to_vec()?[..2], [1, 2]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn resize(&mut self, new_size: u64, stream: &Stream) -> Result<(), DriverError> {
        self.set_stream(stream)?;
        if new_size > self.capacity {
            self.reallocate(new_size)?;
        }
        self.size = new_size;
        Ok(())
    }

    /// Makes the capacity at least `capacity` bytes, on `stream` (which becomes the buffer's
    /// stream); never shrinks.
    ///
    /// # Errors
    ///
    /// As for [`resize`](DeviceBuffer::resize).
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut buf = DeviceBuffer::new(0, &s, &mr)?;
    /// buf.reserve(4096, &s)?;
    /// assert_eq!((buf.len(), buf.capacity()), (0, 4096));
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn reserve(&mut self, capacity: u64, stream: &Stream) -> Result<(), DriverError> {
        self.set_stream(stream)?;
        if capacity > self.capacity {
            self.reallocate(capacity)?;
        }
        Ok(())
    }

    /// Reallocates to exactly the size when the capacity is larger, on `stream` (which becomes
    /// the buffer's stream). A buffer of size 0 frees its memory.
    ///
    /// # Errors
    ///
    /// As for [`resize`](DeviceBuffer::resize).
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut buf = DeviceBuffer::new(100, &s, &mr)?;
    /// buf.resize(10, &s)?;
    /// buf.shrink_to_fit(&s)?;
    /// assert_eq!(buf.capacity(), 10);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn shrink_to_fit(&mut self, stream: &Stream) -> Result<(), DriverError> {
        self.set_stream(stream)?;
        if self.capacity > self.size {
            self.reallocate(self.size)?;
        }
        Ok(())
    }

    /// Moves the contents (`size` bytes, at most `new_capacity`) into a new allocation of
    /// exactly `new_capacity` bytes, all on the buffer's stream.
    fn reallocate(&mut self, new_capacity: u64) -> Result<(), DriverError> {
        let key = self.stream.key();
        let new = if new_capacity > 0 {
            self.mr.allocate(new_capacity, DEFAULT_ALIGNMENT, key)?
        } else {
            0
        };
        let keep = self.size.min(new_capacity);
        if keep > 0 {
            let r = usize_of(keep).and_then(|n| {
                let _g = self.stream.device().enter()?;
                // SAFETY: both allocations are live and hold at least `keep` bytes; the
                // buffer's stream is live while `self.stream` lives.
                unsafe { checked::memcpy_dtod_async(new, self.ptr, n, self.stream.raw()) }
            });
            if let Err(e) = r {
                let _ = self
                    .mr
                    .deallocate(new, new_capacity, DEFAULT_ALIGNMENT, key);
                return Err(e);
            }
        }
        let (old, old_capacity) = (self.ptr, self.capacity);
        self.ptr = new;
        self.capacity = new_capacity;
        self.size = keep;
        if old_capacity > 0 {
            // The old block is freed in stream order, after the copy above.
            self.mr
                .deallocate(old, old_capacity, DEFAULT_ALIGNMENT, key)?;
        }
        Ok(())
    }

    /// Sets every byte to `value`, enqueued on the buffer's stream (no host synchronisation).
    ///
    /// # Errors
    ///
    /// A [`DriverError::Call`] naming `cuMemsetD8Async`.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut buf = DeviceBuffer::new(4, &Stream::new(&dev)?, &mr)?;
    /// buf.fill(0xab)?;
    /// assert_eq!(buf.to_vec()?, [0xab; 4]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn fill(&mut self, value: u8) -> Result<(), DriverError> {
        if self.size == 0 {
            return Ok(());
        }
        let n = usize_of(self.size)?;
        let _g = self.stream.device().enter()?;
        // SAFETY: `size <= capacity` bytes of the live allocation; the stream is live.
        unsafe { checked::memset_d8_async(self.ptr, value, n, self.stream.raw()) }
    }

    /// Copies `src` into the buffer (whose size must equal `src.len()`), on the buffer's
    /// stream, and waits for the stream to finish.
    ///
    /// # Errors
    ///
    /// [`DriverError::LengthMismatch`] when the lengths differ (nothing is copied); a
    /// [`DriverError::Call`] naming the copy or the synchronisation.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut buf = DeviceBuffer::new(3, &Stream::new(&dev)?, &mr)?;
    /// buf.copy_from_host(&[7, 8, 9])?;
    /// assert!(buf.copy_from_host(&[1]).is_err());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn copy_from_host(&mut self, src: &[u8]) -> Result<(), DriverError> {
        self.check_len(src.len())?;
        self.copy_in(0, src)
    }

    /// Copies the buffer into `dst` (whose length must equal the size), on the buffer's
    /// stream, and waits for the stream to finish.
    ///
    /// # Errors
    ///
    /// [`DriverError::LengthMismatch`] when the lengths differ; a [`DriverError::Call`] naming
    /// the copy or the synchronisation.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::from_host(&[7, 8, 9], &Stream::new(&dev)?, &mr)?;
    /// let mut out = [0u8; 3];
    /// buf.copy_to_host(&mut out)?;
    /// assert_eq!(out, [7, 8, 9]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<(), DriverError> {
        self.check_len(dst.len())?;
        self.copy_out(0, dst)
    }

    /// The buffer's bytes, copied to a new vector (waits for the buffer's stream).
    ///
    /// # Errors
    ///
    /// As for [`copy_to_host`](DeviceBuffer::copy_to_host).
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceBuffer::from_host(b"abc", &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(buf.to_vec()?, b"abc");
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<u8>, DriverError> {
        let mut v = vec![0u8; usize_of(self.size)?];
        self.copy_out(0, &mut v)?;
        Ok(v)
    }

    /// Copies another buffer's contents (of the same size) into this one, device to device.
    /// This buffer's stream first waits for `src`'s, and `src`'s stream then waits for the
    /// copy, so neither buffer's later work (or free) overtakes it. No host synchronisation.
    ///
    /// # Errors
    ///
    /// [`DriverError::LengthMismatch`] when the sizes differ; a [`DriverError::Call`] naming
    /// the copy or an event call.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceBuffer, DeviceMemory, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// let src = DeviceBuffer::from_host(b"xyz", &a, &mr)?;
    /// let mut dst = DeviceBuffer::new(3, &b, &mr)?;
    /// dst.copy_from(&src)?;
    /// assert_eq!(dst.to_vec()?, b"xyz");
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn copy_from<R2: MemoryResource>(
        &mut self,
        src: &DeviceBuffer<R2>,
    ) -> Result<(), DriverError> {
        if src.size != self.size {
            return Err(DriverError::LengthMismatch {
                device: self.size,
                host: src.size,
            });
        }
        if self.size == 0 {
            return Ok(());
        }
        self.stream.wait_for(&src.stream)?;
        {
            let _g = self.stream.device().enter()?;
            // SAFETY: both allocations are live and hold `size` bytes; the stream is live; the
            // wait above orders the copy after `src`'s earlier work.
            unsafe {
                checked::memcpy_dtod_async(
                    self.ptr,
                    src.ptr,
                    usize_of(self.size)?,
                    self.stream.raw(),
                )
            }?;
        }
        src.stream.wait_for(&self.stream)
    }

    fn check_len(&self, host: usize) -> Result<(), DriverError> {
        if host as u64 == self.size {
            Ok(())
        } else {
            Err(DriverError::LengthMismatch {
                device: self.size,
                host: host as u64,
            })
        }
    }

    /// Copies `src` to `offset` (with `offset + src.len() <= size`) and waits.
    fn copy_in(&mut self, offset: u64, src: &[u8]) -> Result<(), DriverError> {
        if src.is_empty() {
            return Ok(());
        }
        debug_assert!(offset + src.len() as u64 <= self.size);
        let _g = self.stream.device().enter()?;
        let s = self.stream.raw();
        // SAFETY: the device range lies inside the live allocation; `src` is borrowed until
        // the synchronisation below, after which the copy has finished reading it.
        let r = unsafe {
            checked::memcpy_htod_async(self.ptr + offset, src.as_ptr().cast(), src.len(), s)
        };
        // Synchronise even after a failed enqueue, so that nothing can still read `src`.
        // SAFETY: the stream is live while `self.stream` lives.
        let sync = unsafe { checked::stream_synchronize(s) };
        r.and(sync)
    }

    /// Copies `dst.len()` bytes from `offset` into `dst` and waits.
    fn copy_out(&self, offset: u64, dst: &mut [u8]) -> Result<(), DriverError> {
        if dst.is_empty() {
            return Ok(());
        }
        debug_assert!(offset + dst.len() as u64 <= self.size);
        let _g = self.stream.device().enter()?;
        let s = self.stream.raw();
        // SAFETY: the device range lies inside the live allocation; `dst` is exclusively
        // borrowed until the synchronisation below, after which the copy has finished.
        let r = unsafe {
            checked::memcpy_dtoh_async(dst.as_mut_ptr().cast(), self.ptr + offset, dst.len(), s)
        };
        // SAFETY: the stream is live while `self.stream` lives.
        let sync = unsafe { checked::stream_synchronize(s) };
        r.and(sync)
    }
}

fn usize_of(n: u64) -> Result<usize, DriverError> {
    usize::try_from(n).map_err(|_| DriverError::Core(Error::SizeOverflow { requested: n }))
}

impl<R: MemoryResource> Drop for DeviceBuffer<R> {
    fn drop(&mut self) {
        if self.capacity > 0 {
            // A failure cannot be reported from a drop; the resource keeps its books.
            let _ = self.mr.deallocate(
                self.ptr,
                self.capacity,
                DEFAULT_ALIGNMENT,
                self.stream.key(),
            );
        }
    }
}

impl<R: MemoryResource> fmt::Debug for DeviceBuffer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("size", &self.size)
            .field("capacity", &self.capacity)
            .field("stream", &self.stream)
            .finish()
    }
}

fn bytes_for<T>(len: usize) -> Result<u64, DriverError> {
    len.checked_mul(size_of::<T>())
        .map(|b| b as u64)
        .ok_or(DriverError::Core(Error::SizeOverflow {
            requested: len as u64,
        }))
}

/// A typed device vector of plain data, in stream order: RMM's `device_uvector`.
///
/// A [`DeviceBuffer`] of `len × size_of::<T>()` bytes with the same stream rules; new
/// elements are uninitialised (any bit pattern is a valid [`DevicePod`]).
///
/// ```no_run
/// use strata_driver::{Async, Device, DeviceVec, Stream};
/// let dev = Device::get(0)?;
/// let (mr, s) = (Async::new(&dev)?, Stream::new(&dev)?);
/// let mut v = DeviceVec::from_slice(&[1.0f32, 2.0, 3.0], &s, &mr)?;
/// v.set(1, 20.0)?;
/// assert_eq!(v.get(1)?, 20.0);
/// assert_eq!(v.to_vec()?, [1.0, 20.0, 3.0]);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub struct DeviceVec<T: DevicePod, R: MemoryResource> {
    /// Holds `len` elements; its size is `len * size_of::<T>()`.
    buf: DeviceBuffer<R>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: DevicePod, R: MemoryResource> DeviceVec<T, R> {
    /// `len` uninitialised elements, allocated from `mr` on `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::SizeOverflow`] when the byte size overflows; the resource's errors.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::<u64, _>::new(1000, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.len(), 1000);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(len: usize, stream: &Stream, mr: R) -> Result<Self, DriverError> {
        Ok(DeviceVec {
            buf: DeviceBuffer::new(bytes_for::<T>(len)?, stream, mr)?,
            len,
            _t: PhantomData,
        })
    }

    /// `len` elements with every byte zero.
    ///
    /// # Errors
    ///
    /// As for [`new`](DeviceVec::new), and a failed memset.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::<i32, _>::zeroed(4, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.to_vec()?, [0; 4]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn zeroed(len: usize, stream: &Stream, mr: R) -> Result<Self, DriverError> {
        let mut v = Self::new(len, stream, mr)?;
        v.buf.fill(0)?;
        Ok(v)
    }

    /// A copy of `data` on the device.
    ///
    /// # Errors
    ///
    /// As for [`new`](DeviceVec::new), and a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::from_slice(&[1u16, 2, 3], &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn from_slice(data: &[T], stream: &Stream, mr: R) -> Result<Self, DriverError> {
        let mut v = Self::new(data.len(), stream, mr)?;
        v.buf.copy_in(0, as_bytes(data))?;
        Ok(v)
    }

    /// The number of elements.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// assert_eq!(DeviceVec::<u8, _>::new(3, &Stream::new(&dev)?, &mr)?.len(), 3);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// assert!(DeviceVec::<u8, _>::new(0, &Stream::new(&dev)?, &mr)?.is_empty());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many elements fit without reallocating.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut v = DeviceVec::<u32, _>::new(0, &s, &mr)?;
    /// v.reserve(10, &s)?;
    /// assert_eq!(v.capacity(), 10);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        match size_of::<T>() {
            0 => usize::MAX,
            n => (self.buf.capacity() / n as u64) as usize,
        }
    }

    /// The device address of the first element.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::<u8, _>::new(3, &Stream::new(&dev)?, &mr)?;
    /// assert_ne!(v.as_ptr(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn as_ptr(&self) -> u64 {
        self.buf.as_ptr()
    }

    /// The stream of last use.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let s = Stream::new(&dev)?;
    /// assert_eq!(DeviceVec::<u8, _>::new(3, &s, &mr)?.stream().key(), s.key());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn stream(&self) -> &Stream {
        self.buf.stream()
    }

    /// Moves the vector to `stream`, ordered after its old stream (see
    /// [`DeviceBuffer::set_stream`]).
    ///
    /// # Errors
    ///
    /// A failed event call; the stream is unchanged then.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// let mut v = DeviceVec::<u8, _>::zeroed(3, &a, &mr)?;
    /// v.set_stream(&b)?;
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set_stream(&mut self, stream: &Stream) -> Result<(), DriverError> {
        self.buf.set_stream(stream)
    }

    /// Copies `src` (of the same length) to the device and waits.
    ///
    /// # Errors
    ///
    /// [`DriverError::LengthMismatch`] (in bytes) when the lengths differ; a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut v = DeviceVec::<u32, _>::new(2, &Stream::new(&dev)?, &mr)?;
    /// v.copy_from_slice(&[5, 6])?;
    /// assert_eq!(v.to_vec()?, [5, 6]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn copy_from_slice(&mut self, src: &[T]) -> Result<(), DriverError> {
        self.buf.copy_from_host(as_bytes(src))
    }

    /// Copies the vector into `dst` (of the same length) and waits.
    ///
    /// # Errors
    ///
    /// [`DriverError::LengthMismatch`] (in bytes) when the lengths differ; a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::from_slice(&[5u32, 6], &Stream::new(&dev)?, &mr)?;
    /// let mut out = [0u32; 2];
    /// v.copy_to_slice(&mut out)?;
    /// assert_eq!(out, [5, 6]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<(), DriverError> {
        self.buf.copy_to_host(as_bytes_mut(dst))
    }

    /// The elements, copied to a new vector (waits for the stream).
    ///
    /// # Errors
    ///
    /// A failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::from_slice(&[1i8, -1], &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.to_vec()?, [1, -1]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, DriverError> {
        let mut out: Vec<T> = Vec::with_capacity(self.len);
        let bytes = self.len * size_of::<T>();
        // SAFETY: the spare capacity holds `len` elements; viewing it as bytes for writing is
        // fine (u8 has alignment 1, nothing reads it before it is written).
        let spare = unsafe {
            std::slice::from_raw_parts_mut(
                out.spare_capacity_mut().as_mut_ptr().cast::<u8>(),
                bytes,
            )
        };
        self.buf.copy_out(0, spare)?;
        // SAFETY: the copy wrote all `len * size_of::<T>()` bytes, and any bytes are a valid
        // `T` (`DevicePod`).
        unsafe { out.set_len(self.len) };
        Ok(out)
    }

    /// The element at `index`, copied to the host (waits for the stream).
    ///
    /// # Errors
    ///
    /// [`DriverError::OutOfBounds`]; a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::from_slice(&[10u64, 20], &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.get(1)?, 20);
    /// assert!(v.get(2).is_err());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<T, DriverError> {
        self.check_index(index)?;
        let mut value = MaybeUninit::<T>::uninit();
        // SAFETY: a `T`-sized, writable byte view of `value`; nothing reads it before the copy.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>())
        };
        self.buf.copy_out((index * size_of::<T>()) as u64, bytes)?;
        // SAFETY: the copy wrote all its bytes, and any bytes are a valid `T` (`DevicePod`).
        Ok(unsafe { value.assume_init() })
    }

    /// Writes `value` at `index` (waits for the stream).
    ///
    /// # Errors
    ///
    /// [`DriverError::OutOfBounds`]; a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut v = DeviceVec::<u64, _>::zeroed(2, &Stream::new(&dev)?, &mr)?;
    /// v.set(0, 7)?;
    /// assert_eq!(v.to_vec()?, [7, 0]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set(&mut self, index: usize, value: T) -> Result<(), DriverError> {
        self.check_index(index)?;
        self.buf.copy_in(
            (index * size_of::<T>()) as u64,
            as_bytes(std::slice::from_ref(&value)),
        )
    }

    fn check_index(&self, index: usize) -> Result<(), DriverError> {
        if index < self.len {
            Ok(())
        } else {
            Err(DriverError::OutOfBounds {
                index,
                len: self.len,
            })
        }
    }

    /// Sets every byte of every element to zero, enqueued on the stream.
    ///
    /// # Errors
    ///
    /// A failed memset.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut v = DeviceVec::from_slice(&[3u8; 5], &Stream::new(&dev)?, &mr)?;
    /// v.fill_zero()?;
    /// assert_eq!(v.to_vec()?, [0; 5]);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn fill_zero(&mut self) -> Result<(), DriverError> {
        self.buf.fill(0)
    }

    /// Changes the length to `len` on `stream` (see [`DeviceBuffer::resize`]); new elements
    /// are uninitialised.
    ///
    /// # Errors
    ///
    /// As for [`DeviceBuffer::resize`], and [`Error::SizeOverflow`].
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut v = DeviceVec::from_slice(&[1u32, 2], &s, &mr)?;
    /// v.resize(100, &s)?;
    /// assert_eq!((v.len(), v.get(1)?), (100, 2));
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn resize(&mut self, len: usize, stream: &Stream) -> Result<(), DriverError> {
        self.buf.resize(bytes_for::<T>(len)?, stream)?;
        self.len = len;
        Ok(())
    }

    /// Makes room for at least `capacity` elements on `stream` (see
    /// [`DeviceBuffer::reserve`]).
    ///
    /// # Errors
    ///
    /// As for [`DeviceBuffer::reserve`], and [`Error::SizeOverflow`].
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut v = DeviceVec::<f64, _>::new(1, &s, &mr)?;
    /// v.reserve(64, &s)?;
    /// assert!(v.capacity() >= 64);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn reserve(&mut self, capacity: usize, stream: &Stream) -> Result<(), DriverError> {
        self.buf.reserve(bytes_for::<T>(capacity)?, stream)
    }

    /// Gives back capacity beyond the length, on `stream` (see
    /// [`DeviceBuffer::shrink_to_fit`]).
    ///
    /// # Errors
    ///
    /// As for [`DeviceBuffer::shrink_to_fit`].
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// # let s = Stream::new(&dev)?;
    /// let mut v = DeviceVec::<f64, _>::new(100, &s, &mr)?;
    /// v.resize(1, &s)?;
    /// v.shrink_to_fit(&s)?;
    /// assert_eq!(v.capacity(), 1);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn shrink_to_fit(&mut self, stream: &Stream) -> Result<(), DriverError> {
        self.buf.shrink_to_fit(stream)
    }

    /// The underlying buffer.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let v = DeviceVec::<u32, _>::new(4, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(v.as_buffer().len(), 16);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn as_buffer(&self) -> &DeviceBuffer<R> {
        &self.buf
    }

    /// Unwraps the vector into its buffer.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceVec, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let buf = DeviceVec::<u32, _>::new(4, &Stream::new(&dev)?, &mr)?.into_buffer();
    /// assert_eq!(buf.len(), 16);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn into_buffer(self) -> DeviceBuffer<R> {
        self.buf
    }
}

impl<T: DevicePod, R: MemoryResource> fmt::Debug for DeviceVec<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceVec")
            .field("len", &self.len)
            .field("buf", &self.buf)
            .finish()
    }
}

/// One value of plain data on the device, in stream order: RMM's `device_scalar`.
///
/// ```no_run
/// use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
/// let dev = Device::get(0)?;
/// let mr = DeviceMemory::new(&dev);
/// let mut x = DeviceScalar::new(41u32, &Stream::new(&dev)?, &mr)?;
/// x.set_value(x.value()? + 1)?;
/// assert_eq!(x.value()?, 42);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub struct DeviceScalar<T: DevicePod, R: MemoryResource>(DeviceVec<T, R>);

impl<T: DevicePod, R: MemoryResource> DeviceScalar<T, R> {
    /// A device copy of `value`, allocated from `mr` on `stream`.
    ///
    /// # Errors
    ///
    /// The resource's errors; a failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let x = DeviceScalar::new(1.5f64, &Stream::new(&dev)?, &mr)?;
    /// assert_eq!(x.value()?, 1.5);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn new(value: T, stream: &Stream, mr: R) -> Result<Self, DriverError> {
        Ok(DeviceScalar(DeviceVec::from_slice(
            std::slice::from_ref(&value),
            stream,
            mr,
        )?))
    }

    /// The value, copied to the host (waits for the stream).
    ///
    /// # Errors
    ///
    /// A failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// assert_eq!(DeviceScalar::new(7i64, &Stream::new(&dev)?, &mr)?.value()?, 7);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn value(&self) -> Result<T, DriverError> {
        self.0.get(0)
    }

    /// Writes `value` (waits for the stream).
    ///
    /// # Errors
    ///
    /// A failed copy.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let mut x = DeviceScalar::new(0u8, &Stream::new(&dev)?, &mr)?;
    /// x.set_value(9)?;
    /// assert_eq!(x.value()?, 9);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set_value(&mut self, value: T) -> Result<(), DriverError> {
        self.0.set(0, value)
    }

    /// The device address of the value.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// assert_ne!(DeviceScalar::new(0u8, &Stream::new(&dev)?, &mr)?.as_ptr(), 0);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn as_ptr(&self) -> u64 {
        self.0.as_ptr()
    }

    /// The stream of last use.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let s = Stream::new(&dev)?;
    /// assert_eq!(DeviceScalar::new(0u8, &s, &mr)?.stream().key(), s.key());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn stream(&self) -> &Stream {
        self.0.stream()
    }

    /// Moves the value to `stream`, ordered after its old stream.
    ///
    /// # Errors
    ///
    /// A failed event call; the stream is unchanged then.
    ///
    /// ```no_run
    /// # use strata_driver::{Device, DeviceMemory, DeviceScalar, Stream};
    /// # let dev = Device::get(0)?;
    /// # let mr = DeviceMemory::new(&dev);
    /// let (a, b) = (Stream::new(&dev)?, Stream::new(&dev)?);
    /// let mut x = DeviceScalar::new(0u8, &a, &mr)?;
    /// x.set_stream(&b)?;
    /// assert_eq!(x.stream().key(), b.key());
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn set_stream(&mut self, stream: &Stream) -> Result<(), DriverError> {
        self.0.set_stream(stream)
    }
}

impl<T: DevicePod, R: MemoryResource> fmt::Debug for DeviceScalar<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeviceScalar").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_bytes_round_trip() {
        let v = [1u32, 0x0102_0304];
        assert_eq!(as_bytes(&v).len(), 8);
        let mut w = [0u32; 2];
        as_bytes_mut(&mut w).copy_from_slice(as_bytes(&v));
        assert_eq!(v, w);
        let pairs = [[1.0f32, 2.0]; 3];
        assert_eq!(as_bytes(&pairs).len(), 24);
    }

    #[test]
    fn byte_sizes_overflow_into_errors() {
        assert_eq!(bytes_for::<u64>(3).unwrap(), 24);
        assert!(matches!(
            bytes_for::<u64>(usize::MAX),
            Err(DriverError::Core(Error::SizeOverflow { .. }))
        ));
        assert_eq!(bytes_for::<[u8; 0]>(usize::MAX).unwrap(), 0);
    }
}
