//! GPU tests of the driver backend. They need a CUDA GPU and are ignored elsewhere; on the GPU
//! machine they run with `--include-ignored`, and there a missing driver is a failure.
//!
//! Data is written and checked with copies and memsets only (no kernels).

use std::sync::Arc;

use strata_core::adaptors::{
    Aligned, AsUpstream, CallbackResource, FailureRetry, Limiting, Logging, Statistics, ThreadSafe,
    Tracking, UpstreamResource, VecSink,
};
use strata_core::algo::{Arena, ArenaConfig, FixedConfig, Heap, PoolConfig};
use strata_core::resources::{Binning, FixedSize, Pool};
use strata_core::{Error, MemoryResource, Range, StreamKey, Upstream};
use strata_driver::sys::{self, CUresult};
use strata_driver::{
    Advice, Async, AsyncOptions, AsyncView, Device, DeviceBuffer, DeviceMemory, DeviceScalar,
    DeviceVec, DriverError, Event, IpcHandle, Location, Managed, PinnedHost, Prefetch, Stream,
    default_resource, set_default_resource, stream_ordered_arena, stream_ordered_pool,
};

const MIB: u64 = 1 << 20;
const PIB: u64 = 1 << 50;

fn dev() -> Device {
    Device::get(0).expect("a CUDA device (on the GPU machine a missing driver is a failure)")
}

/// compute-sanitizer counts every failed driver call as an error, deliberate ones too; the
/// few checks that make the driver fail on purpose run only in the plain pass (the GPU runner
/// sets `SANITIZE=1` for the sanitizer pass).
fn under_sanitizer() -> bool {
    std::env::var_os("SANITIZE").is_some_and(|v| v == "1")
}

fn ok(r: CUresult) {
    assert_eq!(r, CUresult::CUDA_SUCCESS);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Writes a pattern to `len` bytes at `addr` on `s`, reads it back, checks it; then memsets
/// the range and checks that too. Raw driver calls, outside strata.
fn check_rw(dev: &Device, s: &Stream, addr: u64, len: usize, seed: u8) {
    let host = pattern(len, seed);
    let mut back = vec![0u8; len];
    // SAFETY: `addr` holds `len` device-accessible bytes owned by the caller; the host
    // buffers outlive the synchronisation.
    unsafe {
        ok(sys::cuCtxSetCurrent(dev.raw_context()));
        ok(sys::cuMemcpyHtoDAsync_v2(
            addr,
            host.as_ptr().cast(),
            len,
            s.raw(),
        ));
        ok(sys::cuMemcpyDtoHAsync_v2(
            back.as_mut_ptr().cast(),
            addr,
            len,
            s.raw(),
        ));
        ok(sys::cuStreamSynchronize(s.raw()));
    }
    assert!(back == host, "pattern read back differs at {addr:#x}");
    // SAFETY: as above.
    unsafe {
        ok(sys::cuMemsetD8Async(addr, seed ^ 0x5a, len, s.raw()));
        ok(sys::cuMemcpyDtoHAsync_v2(
            back.as_mut_ptr().cast(),
            addr,
            len,
            s.raw(),
        ));
        ok(sys::cuStreamSynchronize(s.raw()));
    }
    assert!(
        back.iter().all(|&b| b == seed ^ 0x5a),
        "memset read back differs"
    );
}

/// Allocates, writes, reads back and frees a few sizes through `mr` on `s`.
fn exercise(dev: &Device, s: &Stream, mr: &dyn MemoryResource) {
    for (i, size) in [1u64, 255, 4096, 100_000, 3 * MIB].into_iter().enumerate() {
        let p = mr.allocate(size, 256, s.key()).expect("allocate");
        assert_eq!(p % 256, 0, "256-byte alignment");
        check_rw(dev, s, p, size as usize, i as u8);
        mr.deallocate(p, size, 256, s.key()).expect("deallocate");
    }
    // several live at once never overlap
    let blocks: Vec<(u64, u64)> = (1..=8u64)
        .map(|i| (mr.allocate(i * 1000, 256, s.key()).unwrap(), i * 1000))
        .collect();
    for (i, &(a, n)) in blocks.iter().enumerate() {
        for &(b, m) in &blocks[i + 1..] {
            assert!(a + n <= b || b + m <= a, "overlapping blocks");
        }
        check_rw(dev, s, a, n as usize, i as u8);
    }
    for (a, n) in blocks {
        mr.deallocate(a, n, 256, s.key()).unwrap();
    }
}

fn pointer_ordinal(addr: u64) -> i32 {
    let mut ordinal: i32 = -1;
    // SAFETY: the out-pointer is a live i32, the size this attribute takes.
    unsafe {
        ok(sys::cuPointerGetAttribute(
            (&mut ordinal as *mut i32).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            addr,
        ));
    }
    ordinal
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn driver_and_device_queries() {
    let d = strata_driver::driver().expect("driver");
    assert!(d.version() >= strata_driver::MIN_DRIVER_VERSION);
    assert_eq!(Device::count().unwrap(), d.device_count());
    for dev in Device::all().unwrap() {
        let name = dev.name().unwrap();
        let info = dev.memory_info().unwrap();
        assert!(!name.is_empty());
        assert!(info.free > 0 && info.free <= info.total);
        assert_eq!(dev.total_memory(), info.total);
        assert!(dev.supports_memory_pools().unwrap());
        assert!(dev.supports_managed_memory().unwrap());
        assert!(dev.multiprocessor_count().unwrap() > 0);
        assert!(dev.compute_capability().unwrap().0 >= 7);
        assert_eq!(Device::get(dev.ordinal()).unwrap(), dev);
        dev.synchronize().unwrap();
        println!(
            "device {}: {name}, cc {:?}, {} MiB free of {}, concurrent managed {}, posix-fd pools {}, driver {}",
            dev.ordinal(),
            dev.compute_capability().unwrap(),
            info.free >> 20,
            info.total >> 20,
            dev.supports_concurrent_managed_access().unwrap(),
            dev.supports_posix_fd_pools().unwrap(),
            d.version()
        );
    }
    let n = Device::count().unwrap();
    assert_eq!(
        Device::get(n).unwrap_err(),
        DriverError::InvalidDevice {
            ordinal: n,
            count: n
        }
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn device_memory_allocates_writes_reads_and_frees() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = DeviceMemory::new(&dev);
    exercise(&dev, &s, &mr);
    exercise(&dev, &Stream::legacy(&dev), &mr);
    exercise(&dev, &Stream::per_thread(&dev), &mr);
    assert_eq!((mr.allocated_bytes(), mr.allocation_count()), (0, 0));
    // over-aligned requests
    for align in [512u64, 4096, 1 << 21] {
        let p = mr.allocate(1000, align, s.key()).unwrap();
        assert_eq!(p % align, 0);
        check_rw(&dev, &s, p, 1000, 3);
        mr.deallocate(p, 1000, align, s.key()).unwrap();
    }
    // as a core Upstream
    let mut up = DeviceMemory::new(&dev);
    let r: Range = Upstream::allocate(&mut up, 8 * MIB, 256).unwrap();
    assert_eq!(r.len, 8 * MIB);
    check_rw(&dev, &s, r.start, r.len as usize, 9);
    Upstream::deallocate(&mut up, r).unwrap();
    assert_eq!(
        Upstream::deallocate(&mut up, r),
        Err(Error::NotAllocated { addr: r.start })
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn bad_requests_are_typed_errors() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = DeviceMemory::new(&dev);
    let k = s.key();
    assert_eq!(mr.allocate(0, 256, k), Err(Error::ZeroSize));
    assert_eq!(
        mr.allocate(64, 3, k),
        Err(Error::InvalidAlignment { align: 3 })
    );
    assert_eq!(
        mr.allocate(64, 256, StreamKey(0xbad0_0000)),
        Err(Error::UnknownStream {
            stream: 0xbad0_0000
        })
    );
    let p = mr.allocate(4096, 256, k).unwrap();
    assert_eq!(
        mr.deallocate(p + 256, 4096, 256, k),
        Err(Error::NotAllocated { addr: p + 256 })
    );
    assert_eq!(
        mr.deallocate(p, 100, 256, k),
        Err(Error::SizeMismatch {
            addr: p,
            allocated: 4096,
            given: 100
        })
    );
    mr.deallocate(p, 4096, 256, k).unwrap();
    assert_eq!(
        mr.deallocate(p, 4096, 256, k),
        Err(Error::NotAllocated { addr: p })
    );
    // a stream that is gone is unknown
    let gone = Stream::new(&dev).unwrap();
    let gk = gone.key();
    drop(gone);
    match mr.allocate(256, 256, gk) {
        Err(Error::UnknownStream { stream }) => assert_eq!(stream, gk.0),
        // the driver may already have reused the handle for a live stream of another test
        Ok(p) => mr.deallocate(p, 256, 256, gk).unwrap(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn out_of_memory_is_an_error_with_the_devices_free_memory() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let total = dev.memory_info().unwrap().total;
    let check = |r: Result<u64, Error>| match r {
        Err(Error::OutOfMemory {
            requested,
            total_free,
            ..
        }) => {
            assert_eq!(requested, PIB);
            assert!(total_free > 0 && total_free <= total, "{total_free}");
        }
        other => panic!("expected out of memory, got {other:?}"),
    };
    check(DeviceMemory::new(&dev).allocate(PIB, 256, s.key()));
    check(Async::new(&dev).unwrap().allocate(PIB, 256, s.key()));
    check(
        AsyncView::default_pool(&dev)
            .unwrap()
            .allocate(PIB, 256, s.key()),
    );
    let pool = Pool::new(DeviceMemory::new(&dev), PoolConfig::new(0)).unwrap();
    assert!(matches!(
        pool.allocate(PIB, 256, s.key()),
        Err(Error::OutOfMemory { .. } | Error::LimitExceeded { .. })
    ));
    // a request the device could hold, but not now: the driver's own out-of-memory answer,
    // with the free memory at that moment (other tests run beside this one and allocate and
    // free, so it is compared with the request, not with an earlier reading)
    if !under_sanitizer() {
        let r = DeviceMemory::new(&dev).allocate(total - MIB, 256, s.key());
        assert!(
            matches!(r, Err(Error::OutOfMemory { requested, total_free, .. })
                if requested == total - MIB && total_free < requested),
            "{r:?}"
        );
    }
    // a DeviceBuffer reports it too
    let mr = Async::new(&dev).unwrap();
    assert!(matches!(
        DeviceBuffer::new(PIB, &s, &mr),
        Err(DriverError::Core(Error::OutOfMemory { requested: PIB, .. }))
    ));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn async_pool_allocates_and_reports_its_attributes() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = Async::new(&dev).unwrap();
    assert_eq!(
        mr.release_threshold().unwrap(),
        u64::MAX,
        "keeps memory, like RMM"
    );
    assert_ne!(
        mr.raw(),
        AsyncView::default_pool(&dev).unwrap().raw(),
        "a private pool"
    );
    exercise(&dev, &s, &mr);

    let p = mr.allocate(64 * MIB, 256, s.key()).unwrap();
    assert!(mr.used_current().unwrap() >= 64 * MIB);
    assert_eq!(pointer_ordinal(p), dev.ordinal() as i32);
    mr.deallocate(p, 64 * MIB, 256, s.key()).unwrap();
    s.synchronize().unwrap();
    assert_eq!(mr.used_current().unwrap(), 0);
    assert!(mr.used_high().unwrap() >= 64 * MIB);
    assert!(
        mr.reserved_current().unwrap() >= 64 * MIB,
        "kept after sync"
    );
    assert!(mr.reserved_high().unwrap() >= 64 * MIB);
    mr.trim_to(0).unwrap();
    assert_eq!(mr.reserved_current().unwrap(), 0, "trimmed");
    mr.reset_high_watermarks().unwrap();
    assert_eq!(mr.reserved_high().unwrap(), 0);
    assert_eq!(mr.used_high().unwrap(), 0);

    // threshold 0: unused memory goes back at the next synchronisation
    mr.set_release_threshold(0).unwrap();
    assert_eq!(mr.release_threshold().unwrap(), 0);
    let p = mr.allocate(32 * MIB, 256, s.key()).unwrap();
    mr.deallocate(p, 32 * MIB, 256, s.key()).unwrap();
    s.synchronize().unwrap();
    assert_eq!(mr.reserved_current().unwrap(), 0, "released at sync");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn async_pool_options_priming_maximum_and_ipc() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let primed = Async::with_options(
        &dev,
        AsyncOptions {
            initial_pool_size: Some(64 * MIB),
            ..AsyncOptions::default()
        },
    )
    .unwrap();
    assert!(primed.reserved_current().unwrap() >= 64 * MIB, "primed");
    assert_eq!(primed.used_current().unwrap(), 0);

    let capped = Async::with_options(
        &dev,
        AsyncOptions {
            max_pool_size: Some(64 * MIB),
            ..AsyncOptions::default()
        },
    )
    .unwrap();
    let a = capped.allocate(32 * MIB, 256, s.key()).unwrap();
    if !under_sanitizer() {
        assert!(matches!(
            capped.allocate(48 * MIB, 256, s.key()),
            Err(Error::OutOfMemory {
                requested: 50331648,
                ..
            })
        ));
    }
    capped.deallocate(a, 32 * MIB, 256, s.key()).unwrap();
    s.synchronize().unwrap();
    capped.trim_to(0).unwrap();
    let b = capped.allocate(48 * MIB, 256, s.key()).unwrap();
    capped.deallocate(b, 48 * MIB, 256, s.key()).unwrap();

    assert_eq!(
        Async::with_options(
            &dev,
            AsyncOptions {
                initial_pool_size: Some(2 * MIB),
                max_pool_size: Some(MIB),
                ..AsyncOptions::default()
            }
        )
        .unwrap_err(),
        DriverError::Core(Error::TooLarge {
            requested: 2 * MIB,
            max: MIB
        })
    );

    let plain = Async::new(&dev).unwrap();
    assert!(matches!(
        plain.export_posix_fd(),
        Err(DriverError::Core(Error::Unsupported { .. }))
    ));
    let ipc = Async::with_options(
        &dev,
        AsyncOptions {
            ipc: IpcHandle::PosixFd,
            ..AsyncOptions::default()
        },
    );
    if dev.supports_posix_fd_pools().unwrap() {
        let ipc = ipc.unwrap();
        let fd = ipc.export_posix_fd().unwrap();
        use std::os::fd::AsRawFd;
        assert!(fd.as_raw_fd() >= 0);
        exercise(&dev, &s, &ipc);
    } else {
        assert!(matches!(
            ipc,
            Err(DriverError::Core(Error::Unsupported { .. }))
        ));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn async_views_of_the_default_pool_and_a_foreign_pool() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let default = AsyncView::default_pool(&dev).unwrap();
    exercise(&dev, &s, &default);
    let owner = Async::new(&dev).unwrap();
    // SAFETY: `owner` outlives `view`.
    let view = unsafe { AsyncView::from_raw(&dev, owner.raw()) };
    let p = view.allocate(MIB, 256, s.key()).unwrap();
    check_rw(&dev, &s, p, MIB as usize, 1);
    assert!(
        owner.used_current().unwrap() >= MIB,
        "allocated from the owner's pool"
    );
    view.deallocate(p, MIB, 256, s.key()).unwrap();
    // a view frees what it still holds when it drops
    let q = view.allocate(MIB, 256, s.key()).unwrap();
    assert_ne!(q, 0);
    drop(view);
    assert_eq!(owner.used_current().unwrap(), 0);
}

/// The kernel-free cross-stream check. A long host-to-device copy into a block runs on stream
/// `a`; the block is freed on `a` (no driver call) and taken by stream `b`, which memsets it
/// and reads it back. Without ordering, the fast memset would finish while the slow copy is
/// still writing, and the copy's bytes would show through; with it, only the memset's do.
/// Returns, per round, how many bytes showed through.
fn cross_stream_reuse(
    dev: &Device,
    mr: &dyn MemoryResource,
    expect_same_block: bool,
) -> Vec<usize> {
    const N: u64 = 256 * MIB;
    let pinned = PinnedHost::new(dev);
    let src = pinned.allocate(N, 256, StreamKey::DEFAULT).unwrap();
    // SAFETY: N live bytes of pinned host memory, owned here.
    unsafe { std::slice::from_raw_parts_mut(src as *mut u8, N as usize) }.fill(0xaa);
    let (a, b) = (Stream::new(dev).unwrap(), Stream::new(dev).unwrap());
    let mut out = vec![0u8; N as usize];
    let mut bad = Vec::new();
    for _round in 0..3 {
        let x = mr.allocate(N, 256, a.key()).unwrap();
        // SAFETY: `x` holds N device bytes, `src` N pinned bytes that live until the end.
        unsafe {
            ok(sys::cuCtxSetCurrent(dev.raw_context()));
            ok(sys::cuMemcpyHtoDAsync_v2(
                x,
                src as *const _,
                N as usize,
                a.raw(),
            ));
        }
        mr.deallocate(x, N, 256, a.key()).unwrap();
        let y = mr.allocate(N, 256, b.key()).unwrap();
        if expect_same_block {
            assert_eq!(x, y, "the block freed on a is reused on b");
        }
        // SAFETY: `y` holds N device bytes; `out` lives past the synchronisation.
        unsafe {
            ok(sys::cuMemsetD8Async(y, 0x55, N as usize, b.raw()));
            ok(sys::cuMemcpyDtoHAsync_v2(
                out.as_mut_ptr().cast(),
                y,
                N as usize,
                b.raw(),
            ));
            ok(sys::cuStreamSynchronize(b.raw()));
        }
        bad.push(out.iter().filter(|&&v| v != 0x55).count());
        mr.deallocate(y, N, 256, b.key()).unwrap();
        a.synchronize().unwrap();
        b.synchronize().unwrap();
    }
    pinned.deallocate(src, N, 256, StreamKey::DEFAULT).unwrap();
    bad
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cross_stream_check_detects_a_missing_order() {
    // The control: the core's pool with no ordering at all. The earlier copy must show
    // through in some round, or the check above could not tell ordered from unordered.
    if under_sanitizer() {
        return; // the sanitizer serialises work, which hides the race this control needs
    }
    let dev = dev();
    let pool = strata_core::resources::StreamOrderedPool::new(
        DeviceMemory::new(&dev),
        strata_core::resources::NoOrdering,
        PoolConfig::new(0),
    )
    .unwrap();
    let bad = cross_stream_reuse(&dev, &pool, true);
    assert!(
        bad.iter().any(|&n| n > 0),
        "no round showed the race: {bad:?}"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cross_stream_reuse_is_ordered_in_the_stream_ordered_pool() {
    let dev = dev();
    let pool = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(0)).unwrap();
    assert_eq!(
        cross_stream_reuse(&dev, &*pool, true),
        [0, 0, 0],
        "bytes of the copy showed through"
    );
    // each round crosses streams at least once (b takes a's block); each crossing (and each
    // retirement of a stream with free blocks) costs one record + wait, and nothing else does
    let st = pool.stats();
    let orders = pool.order().orders();
    assert!(orders >= 3, "{orders} orderings, {st:?}");
    assert!(
        orders <= st.steals + st.merges + st.retired,
        "{orders} orderings, {st:?}"
    );
    assert!(pool.order().events_created() >= 1);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cross_stream_reuse_is_ordered_in_the_arena() {
    let dev = dev();
    let arena =
        stream_ordered_arena(DeviceMemory::new(&dev), &dev, ArenaConfig::new(512 * MIB)).unwrap();
    assert_eq!(cross_stream_reuse(&dev, &*arena, false), [0, 0, 0]);
    // each round's large block went back to the global arena and out again, in stream order
    assert!(arena.stats().returns >= 3, "{:?}", arena.stats());
    arena.audit().unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_destroyed_stream_does_not_strand_arena_memory() {
    const N: u64 = 512 << 10; // a small block, inside a superblock
    let dev = dev();
    let arena =
        stream_ordered_arena(DeviceMemory::new(&dev), &dev, ArenaConfig::new(4 * MIB)).unwrap();
    let c = Stream::new(&dev).unwrap();
    let x = arena.allocate(N, 256, c.key()).unwrap();
    check_rw(&dev, &c, x, N as usize, 1);
    arena.deallocate(x, N, 256, c.key()).unwrap();
    assert!(arena.stats().superblocks >= 1);
    drop(c); // retired: its free superblocks go back to the global arena
    assert_eq!(arena.stats().superblocks, 0, "{:?}", arena.stats());
    // the whole arena is usable by a new stream: nothing stranded
    let d = Stream::new(&dev).unwrap();
    let all = arena.allocate(4 * MIB, 256, d.key()).unwrap();
    check_rw(&dev, &d, all, 4 * MIB as usize, 2);
    arena.deallocate(all, 4 * MIB, 256, d.key()).unwrap();
    arena.audit().unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cross_stream_reuse_is_ordered_in_the_async_pools() {
    let dev = dev();
    let mr = Async::new(&dev).unwrap();
    assert_eq!(cross_stream_reuse(&dev, &mr, false), [0, 0, 0]);
    let mr = AsyncView::default_pool(&dev).unwrap();
    assert_eq!(cross_stream_reuse(&dev, &mr, false), [0, 0, 0]);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_destroyed_stream_does_not_strand_its_blocks() {
    const N: u64 = 64 * MIB;
    let dev = dev();
    let pool = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(0)).unwrap();
    let pinned = PinnedHost::new(&dev);
    let src = pinned.allocate(N, 256, StreamKey::DEFAULT).unwrap();
    // SAFETY: N live pinned bytes, owned here.
    unsafe { std::slice::from_raw_parts_mut(src as *mut u8, N as usize) }.fill(0xaa);
    let c = Stream::new(&dev).unwrap();
    let x = pool.allocate(N, 256, c.key()).unwrap();
    // SAFETY: as in `cross_stream_reuse`.
    unsafe {
        ok(sys::cuCtxSetCurrent(dev.raw_context()));
        ok(sys::cuMemcpyHtoDAsync_v2(
            x,
            src as *const _,
            N as usize,
            c.raw(),
        ));
    }
    pool.deallocate(x, N, 256, c.key()).unwrap();
    assert_eq!(pool.free_bytes_on(c.key()), N);
    drop(c); // waits for the copy, retires the stream, destroys it
    let st = pool.stats();
    assert_eq!(st.retired, 1);
    assert_eq!(
        pool.free_bytes_on(StreamKey::DEFAULT),
        N,
        "moved to the shared stream"
    );
    let d = Stream::new(&dev).unwrap();
    let y = pool.allocate(N, 256, d.key()).unwrap();
    assert_eq!(x, y, "reused, not stranded");
    check_rw(&dev, &d, y, N as usize, 4);
    pool.deallocate(y, N, 256, d.key()).unwrap();
    pinned.deallocate(src, N, 256, StreamKey::DEFAULT).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn managed_memory_with_advice_and_prefetch() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = Managed::new(&dev);
    exercise(&dev, &s, &mr);
    const N: u64 = 16 * MIB;
    let p = mr.allocate(N, 256, s.key()).unwrap();
    // host writes
    // SAFETY: N live managed bytes, no device work on them now.
    let host = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, N as usize) };
    host.copy_from_slice(&pattern(N as usize, 7));
    mr.advise(
        p,
        N,
        Advice::PreferredLocation(Location::Device(dev.ordinal())),
    )
    .unwrap();
    mr.advise(p, N, Advice::AccessedBy(Location::Device(dev.ordinal())))
        .unwrap();
    if dev.supports_concurrent_managed_access().unwrap() {
        mr.prefetch(p, N, Location::Device(dev.ordinal()), &s)
            .unwrap();
        s.synchronize().unwrap();
        assert_eq!(
            last_prefetch(p, N),
            (1, dev.ordinal() as i32),
            "on the device"
        );
        mr.prefetch(p, N, Location::Host, &s).unwrap();
        s.synchronize().unwrap();
        assert_eq!(last_prefetch(p, N).0, 2, "on the host");
    }
    assert!(
        host == pattern(N as usize, 7).as_slice(),
        "data survives migration"
    );
    mr.advise(p, N, Advice::ReadMostly).unwrap();
    mr.advise(p, N, Advice::UnsetReadMostly).unwrap();
    mr.advise(p, N, Advice::UnsetPreferredLocation).unwrap();
    mr.deallocate(p, N, 256, s.key()).unwrap();

    // prefetching memory that is not managed is an error, not a fault
    if !under_sanitizer() {
        let plain = DeviceMemory::new(&dev);
        let q = plain.allocate(4096, 256, s.key()).unwrap();
        assert!(matches!(
            strata_driver::prefetch(q, 4096, Location::Host, &s),
            Err(DriverError::Call {
                call: "cuMemPrefetchAsync_v2",
                ..
            })
        ));
        plain.deallocate(q, 4096, 256, s.key()).unwrap();
    }

    // the prefetching adaptor, over managed memory and over a pool of it
    if dev.supports_concurrent_managed_access().unwrap() {
        let pf = Prefetch::new(Managed::new(&dev), &dev);
        let p = pf.allocate(N, 256, s.key()).unwrap();
        s.synchronize().unwrap();
        assert_eq!(last_prefetch(p, N), (1, dev.ordinal() as i32));
        check_rw(&dev, &s, p, N as usize, 8);
        pf.deallocate(p, N, 256, s.key()).unwrap();
        let pooled = Prefetch::new(
            Pool::new(Managed::new(&dev), PoolConfig::new(32 * MIB)).unwrap(),
            &dev,
        );
        exercise(&dev, &s, &pooled);
        assert!(matches!(
            pf.allocate(N, 256, StreamKey(0xbad0_0000)),
            Err(Error::UnknownStream { .. })
        ));
        assert_eq!(pf.upstream().allocated_bytes(), 0);
    }
}

/// (location type, id) of the last prefetch of a managed range.
fn last_prefetch(p: u64, n: u64) -> (i32, i32) {
    let (mut ty, mut id) = (0i32, -9i32);
    // SAFETY: the out-pointers are live i32s, the size these attributes take.
    unsafe {
        ok(sys::cuMemRangeGetAttribute(
            (&mut ty as *mut i32).cast(),
            4,
            sys::CUmem_range_attribute::CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE,
            p,
            n as usize,
        ));
        ok(sys::cuMemRangeGetAttribute(
            (&mut id as *mut i32).cast(),
            4,
            sys::CUmem_range_attribute::CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID,
            p,
            n as usize,
        ));
    }
    (ty, id)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn pinned_host_memory() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = PinnedHost::new(&dev);
    exercise(&dev, &s, &mr); // the device reaches it through unified addressing
    let p = mr.allocate(MIB, 256, s.key()).unwrap();
    // SAFETY: MIB live pinned bytes, owned here; no device work on them.
    let host = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, MIB as usize) };
    host.copy_from_slice(&pattern(MIB as usize, 3));
    let dmr = DeviceMemory::new(&dev);
    let buf = DeviceBuffer::from_host(host, &s, &dmr).unwrap();
    assert!(buf.to_vec().unwrap() == host);
    mr.deallocate(p, MIB, 256, s.key()).unwrap();
    let mut up = PinnedHost::new(&dev);
    let r = Upstream::allocate(&mut up, 4096, 256).unwrap();
    Upstream::deallocate(&mut up, r).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn device_buffer_like_rmm() {
    let dev = dev();
    let (a, b) = (Stream::new(&dev).unwrap(), Stream::new(&dev).unwrap());
    let mr = Async::new(&dev).unwrap();
    let data = pattern(10_000, 1);
    let mut buf = DeviceBuffer::from_host(&data, &a, &mr).unwrap();
    assert_eq!((buf.len(), buf.capacity()), (10_000, 10_000));
    assert_eq!(buf.stream().key(), a.key());
    let p0 = buf.as_ptr();
    buf.resize(5_000, &b).unwrap(); // within capacity: same memory, new stream
    assert_eq!(
        (buf.len(), buf.capacity(), buf.as_ptr()),
        (5_000, 10_000, p0)
    );
    assert_eq!(buf.stream().key(), b.key());
    assert!(buf.to_vec().unwrap() == data[..5_000]);
    buf.resize(20_000, &a).unwrap(); // beyond: reallocate exactly, copy the contents
    assert_eq!((buf.len(), buf.capacity()), (20_000, 20_000));
    assert!(buf.to_vec().unwrap()[..5_000] == data[..5_000]);
    buf.reserve(100_000, &a).unwrap();
    assert_eq!((buf.len(), buf.capacity()), (20_000, 100_000));
    buf.reserve(10, &a).unwrap();
    assert_eq!(buf.capacity(), 100_000, "reserve never shrinks");
    buf.shrink_to_fit(&b).unwrap();
    assert_eq!((buf.len(), buf.capacity()), (20_000, 20_000));
    assert!(buf.to_vec().unwrap()[..5_000] == data[..5_000]);
    buf.fill(0x11).unwrap();
    assert!(buf.to_vec().unwrap().iter().all(|&x| x == 0x11));
    assert!(matches!(
        buf.copy_from_host(&[1, 2, 3]),
        Err(DriverError::LengthMismatch {
            device: 20_000,
            host: 3
        })
    ));
    let mut other = DeviceBuffer::new(20_000, &a, &mr).unwrap();
    other.copy_from(&buf).unwrap();
    assert!(other.to_vec().unwrap().iter().all(|&x| x == 0x11));
    let mut out = vec![0u8; 20_000];
    other.copy_to_host(&mut out).unwrap();
    assert!(out.iter().all(|&x| x == 0x11));
    buf.resize(0, &b).unwrap();
    buf.shrink_to_fit(&b).unwrap();
    assert_eq!((buf.len(), buf.capacity(), buf.as_ptr()), (0, 0, 0));
    let empty = DeviceBuffer::new(0, &a, &mr).unwrap();
    assert!(empty.is_empty() && empty.to_vec().unwrap().is_empty());
    let z = DeviceBuffer::zeroed(777, &a, &mr).unwrap();
    assert!(z.to_vec().unwrap().iter().all(|&x| x == 0));
    // freed on the last stream when dropped
    drop((buf, other, empty, z));
    a.synchronize().unwrap();
    b.synchronize().unwrap();
    assert_eq!(mr.used_current().unwrap(), 0);
    assert_eq!(mr.allocation_count(), 0);
    // a buffer keeps its stream alive until its stream-ordered free
    let c = Stream::new(&dev).unwrap();
    let buf = DeviceBuffer::from_host(&data, &c, &mr).unwrap();
    drop(c);
    assert!(buf.to_vec().unwrap() == data);
    drop(buf);
    assert_eq!(mr.allocation_count(), 0);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn device_vec_and_scalar() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    let mr = DeviceMemory::new(&dev);
    let xs: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
    let mut v = DeviceVec::from_slice(&xs, &s, &mr).unwrap();
    assert_eq!(v.len(), 1000);
    assert_eq!(v.to_vec().unwrap(), xs);
    assert_eq!(v.get(999).unwrap(), 499.5);
    v.set(0, -1.0).unwrap();
    assert_eq!(v.get(0).unwrap(), -1.0);
    assert_eq!(
        v.get(1000).unwrap_err(),
        DriverError::OutOfBounds {
            index: 1000,
            len: 1000
        }
    );
    v.resize(5000, &s).unwrap();
    assert_eq!(v.get(999).unwrap(), 499.5);
    v.resize(10, &s).unwrap();
    v.shrink_to_fit(&s).unwrap();
    assert_eq!((v.len(), v.capacity()), (10, 10));
    v.reserve(64, &s).unwrap();
    assert!(v.capacity() >= 64);
    let mut out = [0.0; 10];
    v.copy_to_slice(&mut out).unwrap();
    assert_eq!(out[1], 0.5);
    v.fill_zero().unwrap();
    assert_eq!(v.to_vec().unwrap(), [0.0; 10]);
    let triples = DeviceVec::from_slice(&[[1u16, 2, 3], [4, 5, 6]], &s, &mr).unwrap();
    assert_eq!(triples.get(1).unwrap(), [4, 5, 6]);
    assert_eq!(triples.as_buffer().len(), 12);
    let z = DeviceVec::<i64, _>::zeroed(33, &s, &mr).unwrap();
    assert_eq!(z.to_vec().unwrap(), vec![0; 33]);
    let mut x = DeviceScalar::new(41u64, &s, &mr).unwrap();
    x.set_value(x.value().unwrap() + 1).unwrap();
    assert_eq!(x.value().unwrap(), 42);
    let t = Stream::new(&dev).unwrap();
    x.set_stream(&t).unwrap();
    assert_eq!(x.value().unwrap(), 42);
    drop((v, triples, z, x));
    assert_eq!(mr.allocated_bytes(), 0);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn core_resources_and_adaptors_over_device_upstreams() {
    let dev = dev();
    let s = Stream::new(&dev).unwrap();
    // pools over each upstream
    let pool = Pool::new(DeviceMemory::new(&dev), PoolConfig::new(16 * MIB)).unwrap();
    exercise(&dev, &s, &pool);
    let managed_pool = Pool::new(Managed::new(&dev), PoolConfig::new(16 * MIB)).unwrap();
    exercise(&dev, &s, &managed_pool);
    let pinned_pool = Pool::new(PinnedHost::new(&dev), PoolConfig::new(16 * MIB)).unwrap();
    exercise(&dev, &s, &pinned_pool);
    // a pool over the async resource, through AsUpstream
    let over_async = Pool::new(
        AsUpstream::new(Async::new(&dev).unwrap()),
        PoolConfig::new(0),
    )
    .unwrap();
    exercise(&dev, &s, &over_async);
    // fixed-size blocks
    let fixed: FixedSize<_, Heap> = FixedSize::new(
        DeviceMemory::new(&dev),
        FixedConfig::new(4 * MIB, 8).unwrap(),
    );
    exercise(&dev, &s, &fixed);
    // bins of 256 B .. 1 MiB, larger requests straight to the device
    let binning: Binning<_, Heap> =
        Binning::with_exponents(DeviceMemory::new(&dev), 8, 20).unwrap();
    exercise(&dev, &s, &binning);
    let big = binning.allocate(8 * MIB, 256, s.key()).unwrap();
    check_rw(&dev, &s, big, 8 * MIB as usize, 6);
    binning.deallocate(big, 8 * MIB, 256, s.key()).unwrap();
    assert_eq!(binning.stats().live_blocks, 0);
    // the arena algorithm over device and managed memory (two sub-arenas)
    let mut arena: Arena<_, 2> =
        Arena::new(DeviceMemory::new(&dev), ArenaConfig::new(64 * MIB)).unwrap();
    let small = arena.allocate(0, 4096, 256).unwrap();
    let other = arena.allocate(1, 100_000, 256).unwrap();
    let large = arena.allocate(0, 8 * MIB, 256).unwrap();
    for (i, r) in [small, other, large].into_iter().enumerate() {
        check_rw(&dev, &s, r.start, r.len as usize, i as u8);
    }
    arena.deallocate(0, small.start, 4096).unwrap();
    arena.deallocate(1, other.start, 100_000).unwrap();
    arena.deallocate(0, large.start, 8 * MIB).unwrap();
    let mut managed_arena: Arena<_, 1> =
        Arena::new(Managed::new(&dev), ArenaConfig::new(16 * MIB)).unwrap();
    let r = managed_arena.allocate(0, MIB, 256).unwrap();
    check_rw(&dev, &s, r.start, MIB as usize, 5);
    managed_arena.deallocate(0, r.start, MIB).unwrap();
    // the arena resource over device and managed memory
    let arena =
        stream_ordered_arena(DeviceMemory::new(&dev), &dev, ArenaConfig::new(128 * MIB)).unwrap();
    exercise(&dev, &s, &*arena);
    let managed_arena =
        stream_ordered_arena(Managed::new(&dev), &dev, ArenaConfig::new(32 * MIB)).unwrap();
    exercise(&dev, &s, &*managed_arena);
    // the stream-ordered pool
    let sop = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(8 * MIB)).unwrap();
    exercise(&dev, &s, &*sop);
    // a stack of adaptors over the async resource
    let base = Async::new(&dev).unwrap();
    let sink = VecSink::new();
    let stack = Statistics::new(Limiting::new(
        Tracking::<_, ()>::new(Aligned::new(Logging::new(&base, &sink))),
        1 << 30,
    ));
    exercise(&dev, &s, &stack);
    let p = stack.allocate(MIB, 1 << 16, s.key()).unwrap();
    assert_eq!(p % (1 << 16), 0);
    check_rw(&dev, &s, p, MIB as usize, 2);
    assert_eq!(stack.bytes().value, MIB as i64);
    stack.deallocate(p, MIB, 1 << 16, s.key()).unwrap();
    assert_eq!(stack.bytes().value, 0);
    assert!(stack.upstream().upstream().leak_report().is_empty());
    assert!(!sink.events().is_empty());
    assert!(matches!(
        stack.allocate(2 << 30, 256, s.key()),
        Err(Error::LimitExceeded { .. })
    ));
    // a device upstream behind the thread-safe adaptor, and callbacks over the async pool
    let locked = ThreadSafe::new(UpstreamResource(DeviceMemory::new(&dev)));
    exercise(&dev, &s, &locked);
    let calls = CallbackResource::new(
        |size: u64, align: u64, stream: StreamKey| base.allocate(size, align, stream),
        |addr: u64, size: u64, align: u64, stream: StreamKey| {
            base.deallocate(addr, size, align, stream)
        },
    );
    exercise(&dev, &s, &calls);
    // failure-retry: out of memory calls back (which trims), then gives up
    let pool = Arc::new(Async::new(&dev).unwrap());
    let calls = std::sync::atomic::AtomicU32::new(0);
    let retry = FailureRetry::new(&*pool, |e: &Error, attempt: u32| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        matches!(e, Error::OutOfMemory { .. }) && attempt < 2 && pool.trim_to(0).is_ok()
    });
    assert!(matches!(
        retry.allocate(PIB, 256, s.key()),
        Err(Error::OutOfMemory { .. })
    ));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "one retry"
    );
    exercise(&dev, &s, &retry);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn many_threads_allocate_at_once() {
    let dev = dev();
    let dm = DeviceMemory::new(&dev);
    let asy = Async::new(&dev).unwrap();
    let sop =
        stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(64 * MIB)).unwrap();
    let pool = Pool::new(DeviceMemory::new(&dev), PoolConfig::new(64 * MIB)).unwrap();
    let resources: [&dyn MemoryResource; 4] = [&dm, &asy, &*sop, &pool];
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            let dev = dev.clone();
            scope.spawn(move || {
                let s = Stream::new(&dev).unwrap();
                let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for mr in resources {
                    let mut live: Vec<(u64, u64)> = Vec::new();
                    for i in 0..200 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if live.len() < 8 && rng % 4 != 0 {
                            let size = 256 + rng % (256 * 1024);
                            let p = mr.allocate(size, 256, s.key()).unwrap();
                            if i % 50 == 0 {
                                check_rw(&dev, &s, p, size as usize, (t + i) as u8);
                            }
                            live.push((p, size));
                        } else if let Some((p, size)) = live.pop() {
                            mr.deallocate(p, size, 256, s.key()).unwrap();
                        }
                    }
                    for (p, size) in live {
                        mr.deallocate(p, size, 256, s.key()).unwrap();
                    }
                    s.synchronize().unwrap();
                }
            });
        }
    });
    assert_eq!(dm.allocation_count(), 0);
    assert_eq!(asy.allocation_count(), 0);
    assert_eq!(sop.stats().live_bytes, 0);
    assert_eq!(pool.lock().live_bytes(), 0);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_device_allocates_on_itself_and_contexts_are_restored() {
    let all = Device::all().unwrap();
    // SAFETY: no context current on this thread.
    unsafe { ok(sys::cuCtxSetCurrent(std::ptr::null_mut())) };
    for dev in &all {
        let s = Stream::new(dev).unwrap();
        for mr in [
            Box::new(DeviceMemory::new(dev)) as Box<dyn MemoryResource>,
            Box::new(Async::new(dev).unwrap()),
        ] {
            let p = mr.allocate(MIB, 256, s.key()).unwrap();
            assert_eq!(pointer_ordinal(p), dev.ordinal() as i32);
            mr.deallocate(p, MIB, 256, s.key()).unwrap();
        }
        let mut cur = std::ptr::null_mut();
        // SAFETY: the out-pointer is a live local.
        unsafe { ok(sys::cuCtxGetCurrent(&mut cur)) };
        assert!(
            cur.is_null(),
            "strata restored the thread's (empty) context"
        );
        let mr = DeviceMemory::new(dev);
        let v = DeviceVec::from_slice(&[dev.ordinal() as u32; 16], &s, &mr).unwrap();
        assert_eq!(pointer_ordinal(v.as_ptr()), dev.ordinal() as i32);
        assert_eq!(v.get(3).unwrap(), dev.ordinal() as u32);
    }
    // with another device's context current, allocations still land on their own device
    if let [d0, d1, ..] = &all[..] {
        // SAFETY: d1's primary context is retained for the life of the process.
        unsafe { ok(sys::cuCtxSetCurrent(d1.raw_context())) };
        let mr = DeviceMemory::new(d0);
        let p = mr.allocate(MIB, 256, StreamKey::DEFAULT).unwrap();
        assert_eq!(pointer_ordinal(p), 0);
        mr.deallocate(p, MIB, 256, StreamKey::DEFAULT).unwrap();
        let mut cur = std::ptr::null_mut();
        // SAFETY: the out-pointer is a live local.
        unsafe { ok(sys::cuCtxGetCurrent(&mut cur)) };
        assert_eq!(cur, d1.raw_context());
    }
    println!("{} device(s) checked", all.len());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn default_resource_is_set_once() {
    let dev = dev();
    let mr = default_resource(&dev);
    let p = mr.allocate(4096, 256, StreamKey::DEFAULT).unwrap();
    mr.deallocate(p, 4096, 256, StreamKey::DEFAULT).unwrap();
    assert!(Arc::ptr_eq(&mr, &default_resource(&dev)));
    assert_eq!(
        set_default_resource(&dev, Arc::new(Async::new(&dev).unwrap())).unwrap_err(),
        DriverError::DefaultAlreadySet {
            ordinal: dev.ordinal()
        }
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn streams_and_events() {
    let dev = dev();
    let (a, b) = (Stream::new(&dev).unwrap(), Stream::new(&dev).unwrap());
    let e = Event::new(&dev).unwrap();
    assert!(e.is_complete().unwrap());
    let mr = DeviceMemory::new(&dev);
    let buf = DeviceBuffer::zeroed(64 * MIB, &a, &mr).unwrap();
    e.record(&a).unwrap();
    b.wait_event(&e).unwrap();
    b.wait_for(&a).unwrap();
    e.synchronize().unwrap();
    assert!(e.is_complete().unwrap());
    a.synchronize().unwrap();
    assert!(a.is_idle().unwrap());
    drop(buf);
    // a borrowed stream is known while it lives
    // SAFETY: `a` outlives `borrowed`.
    let borrowed = unsafe { Stream::from_raw(&dev, a.raw()) };
    assert_eq!(borrowed.key(), a.key());
    let asy = Async::new(&dev).unwrap();
    let p = asy.allocate(4096, 256, borrowed.key()).unwrap();
    asy.deallocate(p, 4096, 256, borrowed.key()).unwrap();
    drop(borrowed);
    let p = asy.allocate(4096, 256, a.key()).unwrap(); // still known through `a`
    asy.deallocate(p, 4096, 256, a.key()).unwrap();
    // the special streams are always valid keys
    for s in [Stream::legacy(&dev), Stream::per_thread(&dev)] {
        let p = asy.allocate(4096, 256, s.key()).unwrap();
        asy.deallocate(p, 4096, 256, s.key()).unwrap();
        s.synchronize().unwrap();
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn several_devices_interleaved_from_one_thread_and_from_many() {
    let all = Device::all().unwrap();
    struct PerDevice {
        dev: Device,
        s: Stream,
        asy: Async,
        sop:
            Arc<strata_core::resources::StreamOrderedPool<DeviceMemory, strata_driver::EventOrder>>,
    }
    let per: Vec<PerDevice> = all
        .iter()
        .map(|d| PerDevice {
            dev: d.clone(),
            s: Stream::new(d).unwrap(),
            asy: Async::new(d).unwrap(),
            sop: stream_ordered_pool(DeviceMemory::new(d), d, PoolConfig::new(0)).unwrap(),
        })
        .collect();
    // one thread, devices interleaved; each free runs with another device's context current
    let mut live: Vec<(usize, u64, u64, bool)> = Vec::new();
    for i in 0..40u64 {
        let k = (i as usize) % per.len();
        let p = &per[k];
        let size = MIB + i * 4096;
        let use_pool = i % 2 == 0;
        let mr: &dyn MemoryResource = if use_pool { &*p.sop } else { &p.asy };
        let a = mr.allocate(size, 256, p.s.key()).unwrap();
        assert_eq!(pointer_ordinal(a), p.dev.ordinal() as i32);
        if i % 8 == 0 {
            check_rw(&p.dev, &p.s, a, size as usize, i as u8);
        }
        let other = &per[(k + 1) % per.len()].dev;
        // SAFETY: the other device's primary context is retained for the process.
        unsafe { ok(sys::cuCtxSetCurrent(other.raw_context())) };
        live.push((k, a, size, use_pool));
        if live.len() > 3 {
            let (k, a, size, use_pool) = live.remove(0);
            let p = &per[k];
            let mr: &dyn MemoryResource = if use_pool { &*p.sop } else { &p.asy };
            mr.deallocate(a, size, 256, p.s.key()).unwrap();
        }
    }
    for (k, a, size, use_pool) in live {
        let p = &per[k];
        let mr: &dyn MemoryResource = if use_pool { &*p.sop } else { &p.asy };
        mr.deallocate(a, size, 256, p.s.key()).unwrap();
    }
    // containers of every device side by side
    let vs: Vec<_> = per
        .iter()
        .map(|p| DeviceVec::from_slice(&[p.dev.ordinal() as u64; 1000], &p.s, &p.asy).unwrap())
        .collect();
    for (p, v) in per.iter().zip(&vs) {
        assert_eq!(pointer_ordinal(v.as_ptr()), p.dev.ordinal() as i32);
        assert!(
            v.to_vec()
                .unwrap()
                .iter()
                .all(|&x| x == p.dev.ordinal() as u64)
        );
    }
    drop(vs);
    // one thread per device, at once
    std::thread::scope(|scope| {
        for p in &per {
            scope.spawn(move || {
                let s2 = Stream::new(&p.dev).unwrap();
                for i in 0..50u64 {
                    let s = if i % 2 == 0 { &p.s } else { &s2 };
                    let a = p.sop.allocate(MIB, 256, s.key()).unwrap();
                    if i % 10 == 0 {
                        check_rw(&p.dev, s, a, MIB as usize, i as u8);
                    }
                    p.sop.deallocate(a, MIB, 256, s.key()).unwrap();
                }
            });
        }
    });
    for p in &per {
        p.s.synchronize().unwrap();
        assert_eq!(p.sop.stats().live_bytes, 0);
        assert_eq!(p.asy.allocation_count(), 0);
        let d = default_resource(&p.dev);
        let a = d.allocate(4096, 256, p.s.key()).unwrap();
        assert_eq!(pointer_ordinal(a), p.dev.ordinal() as i32);
        d.deallocate(a, 4096, 256, p.s.key()).unwrap();
    }
    println!("{} device(s) interleaved", per.len());
}
