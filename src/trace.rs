//! Allocation traces in RMM's CSV log format, and their resolution into replayable operations.
//!
//! The format is the one RMM's `logging_resource_adaptor` writes (and strata's logging adaptor
//! too): a header `Thread,Time,Action,Pointer,Size,Stream`, then one line per event. Actions are
//! `allocate`, `allocate failure` and `free`. Pointers are hex (`0x…`, or `(nil)` on a failure);
//! the stream is hex, with or without `0x`. The `Time` column is informational and ignored: its
//! format differs between writers, and a replay must not depend on it.
//!
//! Addresses are reused after a free, so [`Trace::resolve`] maps every free to the allocation
//! live at that pointer, and refuses (with the line number) a free of a pointer that is not
//! live, rather than guess.
//!
//! ```
//! use strata::trace::{Trace, Op};
//! let csv = "Thread,Time,Action,Pointer,Size,Stream\n\
//!            1,00:00:00.000001,allocate,0x1000,512,0\n\
//!            1,00:00:00.000002,free,0x1000,512,0\n\
//!            1,00:00:00.000003,allocate,0x1000,256,0\n";
//! let trace = Trace::parse(csv.as_bytes())?;
//! let ops = trace.resolve()?;
//! assert_eq!(ops.ops.len(), 3);
//! assert_eq!(ops.peak_live_bytes, 512);
//! assert!(matches!(ops.ops[2], Op::Allocate { id: 1, size: 256, .. }));
//! # Ok::<(), strata::trace::TraceError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

/// What one line of a trace records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A successful allocation.
    Allocate,
    /// An allocation the logged resource failed to serve.
    AllocateFailure,
    /// A deallocation.
    Free,
}

/// One parsed line of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The 1-based line number in the file (the header is line 1).
    pub line: usize,
    /// The logging thread, interned: 0 for the first distinct thread id seen, 1 for the next…
    pub thread: u32,
    /// What happened.
    pub action: Action,
    /// The pointer (0 for `(nil)`).
    pub pointer: u64,
    /// The size in bytes.
    pub size: u64,
    /// The stream's value as logged.
    pub stream: u64,
}

/// A parsed trace: its events in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The events, in file order.
    pub events: Vec<Event>,
}

/// A replayable operation: allocations are numbered in order, frees name the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes on `stream` (an index into [`ResolvedTrace::streams`]); the
    /// allocation is known as `id` from now on.
    Allocate {
        /// The allocation's number (0, 1, 2… in trace order).
        id: u32,
        /// Bytes.
        size: u64,
        /// Index into [`ResolvedTrace::streams`].
        stream: u32,
    },
    /// Free allocation `id`, on `stream` (an index into [`ResolvedTrace::streams`]).
    Free {
        /// The allocation's number.
        id: u32,
        /// Index into [`ResolvedTrace::streams`].
        stream: u32,
    },
}

/// A trace resolved into operations, with what a replayer needs to size itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedTrace {
    /// The operations, in trace order (failures skipped).
    pub ops: Vec<Op>,
    /// The distinct stream values, in order of first appearance.
    pub streams: Vec<u64>,
    /// The size of each allocation, by id.
    pub sizes: Vec<u64>,
    /// The most bytes live at once.
    pub peak_live_bytes: u64,
    /// `allocate failure` lines, counted and skipped.
    pub logged_failures: u64,
    /// Allocations never freed by the end of the trace.
    pub leaked: u64,
}

/// Why a trace could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceError {
    /// Reading failed.
    Io(std::io::Error),
    /// The header lacks a column the replay needs.
    MissingColumn {
        /// The column's name.
        column: &'static str,
    },
    /// A line could not be understood.
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A free of a pointer that is not live at that point of the trace.
    FreeOfUnknownPointer {
        /// 1-based line number.
        line: usize,
        /// The pointer.
        pointer: u64,
    },
    /// An allocation at a pointer that is still live.
    PointerStillLive {
        /// 1-based line number.
        line: usize,
        /// The pointer.
        pointer: u64,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io(e) => write!(f, "reading the trace failed: {e}"),
            TraceError::MissingColumn { column } => {
                write!(f, "the trace header has no `{column}` column")
            }
            TraceError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            TraceError::FreeOfUnknownPointer { line, pointer } => {
                write!(
                    f,
                    "line {line}: free of {pointer:#x}, which is not live at that point"
                )
            }
            TraceError::PointerStillLive { line, pointer } => {
                write!(
                    f,
                    "line {line}: allocation at {pointer:#x}, which is still live"
                )
            }
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TraceError {
    fn from(e: std::io::Error) -> Self {
        TraceError::Io(e)
    }
}

/// The header every trace starts with.
pub const HEADER: &str = "Thread,Time,Action,Pointer,Size,Stream";

fn parse_hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

struct Columns {
    thread: usize,
    action: usize,
    pointer: usize,
    size: usize,
    stream: usize,
    count: usize,
}

impl Columns {
    fn from_header(header: &str) -> Result<Self, TraceError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |column: &'static str| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(column))
                .ok_or(TraceError::MissingColumn { column })
        };
        Ok(Columns {
            thread: find("Thread")?,
            action: find("Action")?,
            pointer: find("Pointer")?,
            size: find("Size")?,
            stream: find("Stream")?,
            count: names.len(),
        })
    }
}

impl Trace {
    /// Parses a trace from any reader.
    ///
    /// # Errors
    ///
    /// [`TraceError::Io`] when reading fails, [`TraceError::MissingColumn`] for a header without
    /// the needed columns, [`TraceError::Malformed`] (with the line number) for a line that is
    /// not a valid event.
    ///
    /// ```
    /// use strata::trace::{Trace, TraceError};
    /// let bad = "Thread,Time,Action,Pointer,Size,Stream\n1,t,allocate,0x10,lots,0\n";
    /// let err = Trace::parse(bad.as_bytes()).unwrap_err();
    /// assert!(matches!(err, TraceError::Malformed { line: 2, .. }));
    /// ```
    pub fn parse<R: BufRead>(reader: R) -> Result<Trace, TraceError> {
        let mut lines = reader.lines();
        let header = loop {
            match lines.next() {
                Some(line) => {
                    let line = line?;
                    if !line.trim().is_empty() {
                        break line;
                    }
                }
                None => return Err(TraceError::MissingColumn { column: "Thread" }),
            }
        };
        let header = header.trim_start_matches('\u{feff}');
        let cols = Columns::from_header(header)?;
        let mut threads: HashMap<String, u32> = HashMap::new();
        let mut events = Vec::new();
        for (i, line) in lines.enumerate() {
            let line_no = i + 2;
            let line = line?;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != cols.count {
                return Err(TraceError::Malformed {
                    line: line_no,
                    reason: format!("{} fields, the header has {}", fields.len(), cols.count),
                });
            }
            let malformed = |reason: String| TraceError::Malformed {
                line: line_no,
                reason,
            };
            let action = match fields[cols.action] {
                "allocate" => Action::Allocate,
                "allocate failure" => Action::AllocateFailure,
                "free" => Action::Free,
                other => return Err(malformed(format!("unknown action `{other}`"))),
            };
            let pointer = match fields[cols.pointer] {
                "(nil)" | "0" => 0,
                p => parse_hex(p).ok_or_else(|| malformed(format!("pointer `{p}` is not hex")))?,
            };
            if pointer == 0 && action != Action::AllocateFailure {
                return Err(malformed("null pointer on a successful action".into()));
            }
            let size_field = fields[cols.size];
            let size: u64 = size_field
                .parse()
                .map_err(|_| malformed(format!("size `{size_field}` is not a decimal integer")))?;
            if size == 0 && action != Action::AllocateFailure {
                return Err(malformed("size 0".into()));
            }
            let stream_field = fields[cols.stream];
            let stream = parse_hex(stream_field)
                .ok_or_else(|| malformed(format!("stream `{stream_field}` is not hex")))?;
            let next_thread = threads.len() as u32;
            let thread = *threads
                .entry(fields[cols.thread].to_owned())
                .or_insert(next_thread);
            events.push(Event {
                line: line_no,
                thread,
                action,
                pointer,
                size,
                stream,
            });
        }
        Ok(Trace { events })
    }

    /// Reads and parses the trace at `path`.
    ///
    /// # Errors
    ///
    /// As [`Trace::parse`]; [`TraceError::Io`] when the file cannot be opened.
    ///
    /// ```no_run
    /// let trace = strata::trace::Trace::from_path("examples/traces/sample.csv")?;
    /// # Ok::<(), strata::trace::TraceError>(())
    /// ```
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Trace, TraceError> {
        let file = std::fs::File::open(path)?;
        Trace::parse(std::io::BufReader::new(file))
    }

    /// Resolves the events into operations: every free is matched with the allocation live at
    /// its pointer; `allocate failure` lines are counted and skipped.
    ///
    /// # Errors
    ///
    /// [`TraceError::FreeOfUnknownPointer`] and [`TraceError::PointerStillLive`], with the line;
    /// [`TraceError::Malformed`] where the live bytes would exceed `u64::MAX`, or the trace has
    /// more than 2^32 allocations or distinct streams (a replay numbers them in 32 bits).
    ///
    /// ```
    /// use strata::trace::{Trace, TraceError};
    /// let csv = "Thread,Time,Action,Pointer,Size,Stream\n1,t,free,0x1000,512,0\n";
    /// let trace = Trace::parse(csv.as_bytes())?;
    /// assert!(matches!(trace.resolve(), Err(TraceError::FreeOfUnknownPointer { line: 2, .. })));
    /// # Ok::<(), TraceError>(())
    /// ```
    pub fn resolve(&self) -> Result<ResolvedTrace, TraceError> {
        let mut out = ResolvedTrace::default();
        let mut stream_index: HashMap<u64, u32> = HashMap::new();
        let mut live: HashMap<u64, u32> = HashMap::new();
        let mut live_bytes = 0u64;
        for e in &self.events {
            let too_large = |what: &str| TraceError::Malformed {
                line: e.line,
                reason: what.into(),
            };
            let stream = match stream_index.get(&e.stream) {
                Some(&s) => s,
                None => {
                    let next = u32::try_from(stream_index.len())
                        .map_err(|_| too_large("more than 2^32 distinct streams"))?;
                    stream_index.insert(e.stream, next);
                    out.streams.push(e.stream);
                    next
                }
            };
            match e.action {
                Action::AllocateFailure => out.logged_failures += 1,
                Action::Allocate => {
                    let id = u32::try_from(out.sizes.len())
                        .map_err(|_| too_large("more than 2^32 allocations"))?;
                    live_bytes = live_bytes
                        .checked_add(e.size)
                        .ok_or_else(|| too_large("the live bytes exceed 2^64 - 1"))?;
                    if live.insert(e.pointer, id).is_some() {
                        return Err(TraceError::PointerStillLive {
                            line: e.line,
                            pointer: e.pointer,
                        });
                    }
                    out.sizes.push(e.size);
                    out.peak_live_bytes = out.peak_live_bytes.max(live_bytes);
                    out.ops.push(Op::Allocate {
                        id,
                        size: e.size,
                        stream,
                    });
                }
                Action::Free => {
                    let id = live
                        .remove(&e.pointer)
                        .ok_or(TraceError::FreeOfUnknownPointer {
                            line: e.line,
                            pointer: e.pointer,
                        })?;
                    live_bytes -= out.sizes[id as usize];
                    out.ops.push(Op::Free { id, stream });
                }
            }
        }
        out.leaked = live.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Thread,Time,Action,Pointer,Size,Stream\n\
        140,12:00:00.1,allocate,0x7f0000100000,1024,0\n\
        140,12:00:00.2,allocate failure,(nil),99999999,7f00aa\n\
        141,12:00:00.3,allocate,0x7f0000200000,2048,0x7f00aa\n\
        140,12:00:00.4,free,0x7f0000100000,1024,0\n\
        141,12:00:00.5,allocate,0x7f0000100000,512,7f00aa\n";

    #[test]
    fn parses_rmm_lines_and_resolves_reused_pointers() {
        let trace = Trace::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(trace.events.len(), 5);
        assert_eq!(trace.events[1].action, Action::AllocateFailure);
        assert_eq!(trace.events[2].stream, 0x7f00aa);
        assert_eq!(trace.events[2].thread, 1);
        let r = trace.resolve().unwrap();
        assert_eq!(r.streams, vec![0, 0x7f00aa]);
        assert_eq!(r.logged_failures, 1);
        assert_eq!(r.leaked, 2);
        assert_eq!(r.peak_live_bytes, 3072);
        assert_eq!(
            r.ops,
            vec![
                Op::Allocate {
                    id: 0,
                    size: 1024,
                    stream: 0
                },
                Op::Allocate {
                    id: 1,
                    size: 2048,
                    stream: 1
                },
                Op::Free { id: 0, stream: 0 },
                Op::Allocate {
                    id: 2,
                    size: 512,
                    stream: 1
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            ("1,t,allocate,0x10,12,0,extra", "fields"),
            ("1,t,alloc,0x10,12,0", "unknown action"),
            ("1,t,allocate,zz,12,0", "not hex"),
            ("1,t,allocate,0x10,-3,0", "not a decimal"),
            ("1,t,allocate,0x10,0,0", "size 0"),
            ("1,t,allocate,0x10,12,stream", "stream"),
        ];
        for (line, what) in cases {
            let text = format!("{HEADER}\n1,t,allocate,0x20,4,0\n{line}\n");
            match Trace::parse(text.as_bytes()) {
                Err(TraceError::Malformed { line: 3, reason }) => {
                    assert!(reason.contains(what), "{reason} should mention {what}")
                }
                other => panic!("{line}: expected a malformed line 3, got {other:?}"),
            }
        }
    }

    #[test]
    fn header_is_required_and_double_allocation_is_refused() {
        assert!(matches!(
            Trace::parse("Thread,Time,Action,Pointer,Size\n".as_bytes()),
            Err(TraceError::MissingColumn { column: "Stream" })
        ));
        assert!(matches!(
            Trace::parse("".as_bytes()),
            Err(TraceError::MissingColumn { .. })
        ));
        let text = format!("{HEADER}\n1,t,allocate,0x20,4,0\n1,t,allocate,0x20,4,0\n");
        let trace = Trace::parse(text.as_bytes()).unwrap();
        assert!(matches!(
            trace.resolve(),
            Err(TraceError::PointerStillLive {
                line: 3,
                pointer: 0x20
            })
        ));
    }

    #[test]
    fn live_bytes_beyond_u64_are_an_error_not_an_overflow() {
        let half = 1u64 << 63;
        let text = format!("{HEADER}\n1,t,allocate,0x100,{half},0\n1,t,allocate,0x200,{half},0\n");
        let trace = Trace::parse(text.as_bytes()).unwrap();
        match trace.resolve() {
            Err(TraceError::Malformed { line: 3, reason }) => assert!(reason.contains("2^64")),
            other => panic!("expected a malformed line 3, got {other:?}"),
        }
        // Freed in between, the same sizes are fine.
        let text = format!(
            "{HEADER}\n1,t,allocate,0x100,{half},0\n1,t,free,0x100,{half},0\n\
             1,t,allocate,0x200,{half},0\n"
        );
        let r = Trace::parse(text.as_bytes()).unwrap().resolve().unwrap();
        assert_eq!(r.peak_live_bytes, half);
    }
}

/// Property tests: whatever the text, parsing and resolving return a value or a typed error,
/// never a panic; and a trace written by [`crate::logging::write_trace`] reads back the same.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A field that is sometimes valid, sometimes not.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("(nil)".to_owned()),
            Just("0".to_owned()),
            Just("allocate".to_owned()),
            Just("allocate failure".to_owned()),
            Just("free".to_owned()),
            Just("18446744073709551615".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("0x".to_owned()),
            (0u64..1 << 12).prop_map(|v| format!("0x{v:x}")),
            any::<u64>().prop_map(|v| v.to_string()),
            "[ -~]{0,12}",
            "\\PC{0,4}",
        ]
    }

    /// A line of 4 to 8 such fields (the header has 6).
    fn line() -> impl Strategy<Value = String> {
        prop::collection::vec(field(), 4..=8).prop_map(|f| f.join(","))
    }

    /// A line that parses: an allocation, a free or a failure at one of a few pointers.
    fn good_line() -> impl Strategy<Value = String> {
        (0u8..3, 1u64..9, 1u64..1 << 40, 0u64..3).prop_map(|(action, p, size, stream)| {
            let (action, pointer) = match action {
                0 => ("allocate", format!("0x{:x}", p << 8)),
                1 => ("free", format!("0x{:x}", p << 8)),
                _ => ("allocate failure", "(nil)".to_owned()),
            };
            format!("7,12:00:00.1,{action},{pointer},{size},{stream:x}")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_parses_and_resolves_or_says_why(
            lines in prop::collection::vec(prop_oneof![line(), good_line()], 0..40),
            header in prop_oneof![Just(HEADER.to_owned()), line()],
        ) {
            let text = core::iter::once(header).chain(lines).collect::<Vec<_>>().join("\n");
            // Neither call may panic; what they return must hang together.
            if let Ok(trace) = Trace::parse(text.as_bytes())
                && let Ok(r) = trace.resolve()
            {
                // Every free matches an allocation; the peak bounds every allocation.
                let allocs = r.ops.iter().filter(|o| matches!(o, Op::Allocate { .. })).count();
                let frees = r.ops.len() - allocs;
                prop_assert_eq!(allocs as u64, frees as u64 + r.leaked);
                prop_assert!(r.sizes.iter().all(|&s| s <= r.peak_live_bytes));
            }
        }

        #[test]
        fn a_written_trace_reads_back(lines in prop::collection::vec(good_line(), 0..40)) {
            let text = core::iter::once(HEADER.to_owned()).chain(lines).collect::<Vec<_>>().join("\n");
            let trace = Trace::parse(text.as_bytes()).unwrap();
            let mut out = Vec::new();
            crate::logging::write_trace(&trace, &mut out).unwrap();
            prop_assert_eq!(Trace::parse(out.as_slice()).unwrap(), trace);
        }
    }
}
