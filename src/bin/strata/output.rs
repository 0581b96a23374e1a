//! Reports as a table, JSON or CSV, and the progress bar.

use std::io::{self, Write};

use indicatif::{ProgressBar, ProgressStyle};
use strata::replay::{Report, ResourceReport};

use crate::units::Human;

/// A progress bar on stderr when it is a terminal; nothing at all in pipes and CI.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(on_terminal: bool, runs: u64) -> Progress {
        let bar = if on_terminal {
            let bar = ProgressBar::new(runs);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {msg:<12} [{bar:30}] {pos}/{len} replays")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    pub fn set_message(&self, message: &'static str) {
        self.bar.set_message(message);
    }

    /// One planned replay done.
    pub fn tick(&self) {
        self.bar.inc(1);
    }

    /// One replay done that was not planned (a capacity-search probe).
    pub fn tick_extra(&self) {
        self.bar.inc_length(1);
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn min_capacity_text(r: &ResourceReport) -> String {
    match (r.min_capacity_bytes, r.min_capacity_ratio) {
        (Some(bytes), Some(ratio)) => format!("{} ({ratio:.3}x)", Human(bytes)),
        (Some(bytes), None) => Human(bytes).to_string(),
        _ => "-".into(),
    }
}

/// The report for people, with `notes` (how resources were set up) below it.
pub fn table(report: &Report, notes: &[String], out: &mut impl Write) -> io::Result<()> {
    let t = &report.trace;
    let device = if report.device.note.is_empty() {
        report.device.name.clone()
    } else {
        format!("{} ({})", report.device.name, report.device.note)
    };
    writeln!(out, "trace     {}", t.source)?;
    writeln!(
        out,
        "          {} ops: {} allocations, {} frees, {} stream{}; peak live {}; {} logged failures skipped; {} never freed",
        t.ops,
        t.allocations,
        t.frees,
        t.streams,
        if t.streams == 1 { "" } else { "s" },
        Human(t.peak_live_bytes),
        t.logged_failures,
        t.leaked
    )?;
    writeln!(out, "device    {device}")?;
    writeln!(
        out,
        "replays   capacity {}; ns/op is the median of {} timed replays after 1 warm-up",
        Human(report.capacity_bytes),
        report.repeats
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:>9} {:>21} {:>11} {:>13} {:>22} {:>7}",
        "resource", "ns/op", "(min .. max)", "peak live", "peak reserved", "min capacity", "failed"
    )?;
    for r in &report.resources {
        if let Some(error) = &r.error {
            writeln!(out, "{:<12} {error}", r.name)?;
            continue;
        }
        writeln!(
            out,
            "{:<12} {:>9.1} {:>21} {:>11} {:>13} {:>22} {:>7}",
            r.name,
            r.ns_per_op_median,
            format!("({:.1} .. {:.1})", r.ns_per_op_min, r.ns_per_op_max),
            Human(r.peak_live_bytes),
            Human(r.peak_reserved_bytes),
            min_capacity_text(r),
            r.failed_allocations
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "min capacity: the smallest device capacity that replays with no failed allocation (simulated device), as a multiple of the peak live bytes"
    )?;
    for note in notes {
        writeln!(out, "{note}")?;
    }
    Ok(())
}

/// The report as one JSON object (schema `strata-replay/1`).
pub fn json(report: &Report, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::other)?;
    writeln!(out)
}

/// The header of the CSV report.
pub const CSV_HEADER: &str = "tool,resource,device,trace,ops,ns_per_op_median,ns_per_op_min,ns_per_op_max,peak_live_bytes,peak_reserved_bytes,min_capacity_bytes,min_capacity_ratio,failed_allocations,ok,error";

/// Quotes a CSV field when it needs it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report as CSV: a header, then one line per resource (comparable with the lines of
/// RMM's replayer: resource, trace, ops, median/min/max ns per operation, ok).
pub fn csv(report: &Report, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    let trace = std::path::Path::new(&report.trace.source)
        .file_name()
        .map_or(report.trace.source.clone(), |n| {
            n.to_string_lossy().into_owned()
        });
    for r in &report.resources {
        let ok = r.error.is_none() && r.failed_allocations == 0;
        writeln!(
            out,
            "strata,{},{},{},{},{:.1},{:.1},{:.1},{},{},{},{},{},{},{}",
            field(&r.name),
            report.device.kind,
            field(&trace),
            report.trace.ops,
            r.ns_per_op_median,
            r.ns_per_op_min,
            r.ns_per_op_max,
            r.peak_live_bytes,
            r.peak_reserved_bytes,
            r.min_capacity_bytes
                .map_or(String::new(), |b| b.to_string()),
            r.min_capacity_ratio
                .map_or(String::new(), |x| format!("{x:.4}")),
            r.failed_allocations,
            u8::from(ok),
            field(r.error.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}
