//! Allocation logs in RMM's CSV format, written exactly as RMM's `logging_resource_adaptor`
//! writes them, so that RMM's tools and strata's [`trace`](crate::trace) reader (and
//! `strata replay`) read them alike.
//!
//! The file starts with the header `Thread,Time,Action,Pointer,Size,Stream`; each event is one
//! line `thread,HH:MM:SS.ffffff,action,pointer,size,stream`:
//!
//! - `thread`: the logging thread's OS id in decimal, as RMM writes it (on Linux; elsewhere a
//!   number per thread, 1, 2, … in order of first use: readers only compare it for equality);
//! - the time of day, UTC, to the microsecond (RMM's `%H:%M:%S.%f`; readers ignore it);
//! - the action: `allocate`, `allocate failure` or `free`;
//! - the pointer as `0x…` lower-case hex, `(nil)` for a failure (C's `%p`);
//! - the size in decimal bytes;
//! - the stream as lower-case hex without `0x` (`0` for the default stream).
//!
//! Like RMM, a multi-device program keeps one file per device, named by inserting `.dev<id>`
//! before the extension ([`device_log_path`]).
//!
//! ```
//! use strata::logging::CsvLog;
//! use strata::trace::{Action, Trace};
//! use strata::StreamKey;
//!
//! let log = CsvLog::new(Vec::new())?;
//! log.record(Action::Allocate, 0x7f00_0000_0100, 4096, StreamKey(0x5a));
//! log.record(Action::AllocateFailure, 0, 1 << 40, StreamKey(0x5a));
//! log.record(Action::Free, 0x7f00_0000_0100, 4096, StreamKey(0x5a));
//! let bytes = log.finish()?;
//! let text = String::from_utf8(bytes)?;
//! let lines: Vec<&str> = text.lines().collect();
//! assert_eq!(lines[0], "Thread,Time,Action,Pointer,Size,Stream");
//! assert!(lines[1].ends_with(",allocate,0x7f0000000100,4096,5a"));
//! assert!(lines[2].ends_with(",allocate failure,(nil),1099511627776,5a"));
//! // The log reads back as a trace.
//! let ops = Trace::parse(text.as_bytes())?.resolve()?;
//! assert_eq!((ops.ops.len(), ops.logged_failures), (2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_core::StreamKey;
use strata_core::adaptors::{self, EventSink};

use crate::trace::{Action, HEADER, Trace};

/// The path of device `device`'s log: `.dev<device>` inserted before the extension of `path`,
/// or appended when it has none (RMM's naming).
///
/// ```
/// use std::path::Path;
/// use strata::logging::device_log_path;
/// assert_eq!(device_log_path(Path::new("out/rmm_log.csv"), 1), Path::new("out/rmm_log.dev1.csv"));
/// assert_eq!(device_log_path(Path::new("log"), 0), Path::new("log.dev0"));
/// ```
pub fn device_log_path(path: &Path, device: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.dev{device}.{}", ext.to_string_lossy()),
        None => format!("{stem}.dev{device}"),
    };
    path.with_file_name(name)
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's OS id, as RMM writes it (Linux: the `tid` named by
/// `/proc/thread-self`), read once per thread; elsewhere a number per thread (1, 2, … in order
/// of first use).
fn thread_number() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse::<u64>().ok())
                .filter(|&tid| tid != 0);
            t.set(tid.unwrap_or_else(|| NEXT_THREAD.fetch_add(1, Ordering::Relaxed)));
        }
        t.get()
    })
}

/// Writes `HH:MM:SS.ffffff` for a time of day given in microseconds since midnight.
fn write_time(out: &mut impl Write, micros_of_day: u64) -> io::Result<()> {
    let secs = micros_of_day / 1_000_000;
    write!(
        out,
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        micros_of_day % 1_000_000
    )
}

fn now_micros_of_day() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_micros() % (86_400 * 1_000_000)) as u64
}

/// Writes one event line (without the thread and time columns' computation).
fn write_line(
    out: &mut impl Write,
    thread: u64,
    micros_of_day: u64,
    action: Action,
    pointer: u64,
    size: u64,
    stream: u64,
) -> io::Result<()> {
    write!(out, "{thread},")?;
    write_time(out, micros_of_day)?;
    let action = match action {
        Action::Allocate => "allocate",
        Action::AllocateFailure => "allocate failure",
        Action::Free => "free",
    };
    if action == "allocate failure" || pointer == 0 {
        writeln!(out, ",{action},(nil),{size},{stream:x}")
    } else {
        writeln!(out, ",{action},{pointer:#x},{size},{stream:x}")
    }
}

/// A sink that writes allocation events as RMM's CSV log, safe to share between threads.
///
/// Writing never fails an allocation: the first I/O error is kept, later events are dropped,
/// and [`CsvLog::flush`] or [`CsvLog::finish`] return it.
///
/// ```
/// let log = strata::logging::CsvLog::new(Vec::new())?;
/// log.record(strata::trace::Action::Allocate, 0x1000, 256, strata::StreamKey::DEFAULT);
/// assert_eq!(log.events(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct CsvLog<W: Write> {
    state: Mutex<LogState<W>>,
}

#[derive(Debug)]
struct LogState<W> {
    out: W,
    events: u64,
    error: Option<io::Error>,
}

impl CsvLog<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the header.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or written.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("strata-doc-create.csv");
    /// let log = strata::logging::CsvLog::create(&path)?;
    /// log.finish()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "Thread,Time,Action,Pointer,Size,Stream\n");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        CsvLog::new(BufWriter::new(File::create(path)?))
    }

    /// Creates device `device`'s log: the file named by [`device_log_path`].
    ///
    /// # Errors
    ///
    /// When the file cannot be created or written.
    ///
    /// ```
    /// let base = std::env::temp_dir().join("strata-doc-device.csv");
    /// strata::logging::CsvLog::for_device(&base, 2)?.finish()?;
    /// let path = std::env::temp_dir().join("strata-doc-device.dev2.csv");
    /// assert!(path.exists());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn for_device(path: impl AsRef<Path>, device: u32) -> io::Result<Self> {
        CsvLog::create(device_log_path(path.as_ref(), device))
    }
}

impl<W: Write> CsvLog<W> {
    /// A log writing to `out`; writes the header at once.
    ///
    /// # Errors
    ///
    /// When writing the header fails.
    ///
    /// ```
    /// let log = strata::logging::CsvLog::new(Vec::new())?;
    /// assert_eq!(log.finish()?, b"Thread,Time,Action,Pointer,Size,Stream\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(mut out: W) -> io::Result<Self> {
        writeln!(out, "{HEADER}")?;
        Ok(CsvLog {
            state: Mutex::new(LogState {
                out,
                events: 0,
                error: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState<W>> {
        // A panic while logging leaves at worst a partial line; the log stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs one event from the calling thread, stamped with the current time. `pointer` is
    /// ignored (written `(nil)`) for [`Action::AllocateFailure`].
    ///
    /// ```
    /// use strata::{logging::CsvLog, trace::Action, StreamKey};
    /// let log = CsvLog::new(Vec::new())?;
    /// log.record(Action::Free, 0xabc00, 512, StreamKey(0x10));
    /// let text = String::from_utf8(log.finish()?).unwrap();
    /// assert!(text.lines().nth(1).unwrap().ends_with(",free,0xabc00,512,10"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn record(&self, action: Action, pointer: u64, size: u64, stream: StreamKey) {
        let thread = thread_number();
        let time = now_micros_of_day();
        let mut s = self.state();
        if s.error.is_some() {
            return;
        }
        let result = write_line(&mut s.out, thread, time, action, pointer, size, stream.0);
        match result {
            Ok(()) => s.events += 1,
            Err(e) => s.error = Some(e),
        }
    }

    /// Events written so far.
    ///
    /// ```
    /// assert_eq!(strata::logging::CsvLog::new(Vec::new())?.events(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn events(&self) -> u64 {
        self.state().events
    }

    /// Flushes what is buffered.
    ///
    /// # Errors
    ///
    /// The first error met while logging, or the flush's own.
    ///
    /// ```
    /// strata::logging::CsvLog::new(Vec::new())?.flush()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&self) -> io::Result<()> {
        let mut s = self.state();
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.out.flush()
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    ///
    /// The first error met while logging, or the flush's own.
    ///
    /// ```
    /// let out = strata::logging::CsvLog::new(Vec::new())?.finish()?;
    /// assert!(out.starts_with(b"Thread,"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn finish(self) -> io::Result<W> {
        let mut s = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.out.flush()?;
        Ok(s.out)
    }
}

/// The sink of the core's [`Logging`](strata_core::adaptors::Logging) adaptor: each event
/// becomes one line. A refused free ([`adaptors::Action::FreeFailure`]) has no line in RMM's
/// format and is not written: the log then shows the `free` recorded just before it, as RMM's
/// would.
///
/// ```
/// use strata::adaptors::Logging;
/// use strata::logging::CsvLog;
/// use strata::replay::SimDevice;
/// use strata::{MemoryResource, StreamKey};
///
/// let mr = Logging::new(SimDevice::new(1 << 20), CsvLog::new(Vec::new())?);
/// let a = mr.allocate(1000, 256, StreamKey(0x30))?;
/// mr.deallocate(a, 1000, 256, StreamKey(0x30))?;
/// let (_, log) = mr.into_parts();
/// let text = String::from_utf8(log.finish()?)?;
/// assert_eq!(text.lines().count(), 3);
/// assert!(text.lines().nth(1).unwrap().ends_with(&format!(",allocate,{a:#x},1000,30")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<W: Write + Send> EventSink for CsvLog<W> {
    fn record(&self, event: &adaptors::Event) {
        let action = match event.action {
            adaptors::Action::Allocate => Action::Allocate,
            adaptors::Action::AllocateFailure => Action::AllocateFailure,
            adaptors::Action::Free => Action::Free,
            adaptors::Action::FreeFailure => return,
        };
        CsvLog::record(self, action, event.addr, event.size, event.stream);
    }
}

/// Writes a whole trace in RMM's format, with its own thread numbers and synthetic times (one
/// microsecond per event from midnight), e.g. to save a generated workload.
///
/// # Errors
///
/// When writing fails.
///
/// ```
/// use strata::replay::RandomAllocations;
/// use strata::trace::Trace;
/// let trace = RandomAllocations { count: 50, streams: 2, ..Default::default() }.generate();
/// let mut out = Vec::new();
/// strata::logging::write_trace(&trace, &mut out)?;
/// let back = Trace::parse(out.as_slice())?;
/// assert_eq!(back, trace);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_trace(trace: &Trace, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{HEADER}")?;
    for (i, e) in trace.events.iter().enumerate() {
        write_line(
            out,
            u64::from(e.thread),
            i as u64 + 1,
            e.action,
            e.pointer,
            e.size,
            e.stream,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_formatted_like_rmm() {
        let mut out = Vec::new();
        write_time(&mut out, ((13 * 60 + 4) * 60 + 5) * 1_000_000 + 42).unwrap();
        assert_eq!(out, b"13:04:05.000042");
    }

    #[test]
    fn lines_match_rmm_byte_for_byte() {
        let mut out = Vec::new();
        write_line(&mut out, 7, 1, Action::Allocate, 0x7f3a_0020_0000, 1024, 0).unwrap();
        write_line(&mut out, 7, 2, Action::AllocateFailure, 0, 9, 0x7f3a_b0c0).unwrap();
        write_line(&mut out, 8, 3, Action::Free, 0x7f3a_0020_0000, 1024, 0x1).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,00:00:00.000001,allocate,0x7f3a00200000,1024,0\n\
             7,00:00:00.000002,allocate failure,(nil),9,7f3ab0c0\n\
             8,00:00:00.000003,free,0x7f3a00200000,1024,1\n"
        );
    }

    #[test]
    fn threads_get_distinct_numbers() {
        let log = CsvLog::new(Vec::new()).unwrap();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| log.record(Action::Allocate, 0x100, 1, StreamKey::DEFAULT));
            }
        });
        let text = String::from_utf8(log.finish().unwrap()).unwrap();
        let mut threads: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        threads.sort();
        threads.dedup();
        assert_eq!(threads.len(), 3);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_thread_column_is_an_os_thread_id() {
        // A thread of this process has that id. (Looked up by name: a listing of
        // `/proc/self/task` taken while the other tests' threads exit can skip entries.)
        let tid = thread_number();
        assert!(
            std::path::Path::new(&format!("/proc/self/task/{tid}")).is_dir(),
            "no task {tid}"
        );
        // And it is this thread's: another thread gets another id.
        let other = std::thread::spawn(thread_number).join().unwrap();
        assert_ne!(tid, other);
    }

    #[test]
    fn write_errors_are_kept_and_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(CsvLog::new(Full).is_err());
        struct FailsAfterHeader(bool);
        impl Write for FailsAfterHeader {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 {
                    Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
                } else {
                    if b.ends_with(b"\n") {
                        self.0 = true;
                    }
                    Ok(b.len())
                }
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = CsvLog::new(FailsAfterHeader(false)).unwrap();
        log.record(Action::Allocate, 0x100, 1, StreamKey::DEFAULT);
        log.record(Action::Free, 0x100, 1, StreamKey::DEFAULT);
        assert_eq!(log.events(), 0);
        assert_eq!(log.flush().unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
