//! `strata profile`: a trace's allocation statistics per scope (stream or logging thread),
//! sorted like RMM's profiler report.

use std::collections::HashMap;
use std::io::Write;

use strata::profile::{ScopeRecord, format_report};
use strata::trace::{Action, Op, Trace};

use crate::cli::{OrderArg, ProfileArgs, ScopeBy};

/// Per-scope statistics of a trace: an allocation belongs to the scope it was made in, and its
/// free lowers that scope's live bytes wherever the free happens.
pub fn scope_records(trace: &Trace, by: ScopeBy) -> Result<(Vec<ScopeRecord>, u64), String> {
    let resolved = trace.resolve().map_err(|e| e.to_string())?;
    // `resolve` keeps the events other than failures, in order: pair each op with its event.
    let events = trace
        .events
        .iter()
        .filter(|e| e.action != Action::AllocateFailure);
    let scope_name = |thread: u32, stream: u64| match by {
        ScopeBy::Stream => format!("stream {stream:x}"),
        ScopeBy::Thread => format!("thread {thread}"),
    };
    let mut scopes: HashMap<String, (ScopeRecord, u64)> = HashMap::new();
    let mut owner: Vec<String> = Vec::with_capacity(resolved.sizes.len());
    for (op, event) in resolved.ops.iter().zip(events) {
        match *op {
            Op::Allocate { size, .. } => {
                let name = scope_name(event.thread, event.stream);
                let (rec, live) = scopes.entry(name.clone()).or_insert_with(|| {
                    (
                        ScopeRecord {
                            name: name.clone(),
                            calls: 0,
                            peak_bytes: 0,
                            total_bytes: 0,
                            allocations: 0,
                        },
                        0,
                    )
                });
                rec.calls += 1;
                rec.allocations += 1;
                rec.total_bytes += size;
                *live += size;
                rec.peak_bytes = rec.peak_bytes.max(*live);
                owner.push(name);
            }
            Op::Free { id, .. } => {
                if let Some((_, live)) = scopes.get_mut(&owner[id as usize]) {
                    *live -= resolved.sizes[id as usize];
                }
            }
        }
    }
    let records = scopes.into_values().map(|(r, _)| r).collect();
    Ok((records, resolved.logged_failures))
}

pub fn run(args: &ProfileArgs) -> Result<(), String> {
    let shown = args.trace.display();
    let trace = Trace::from_path(&args.trace).map_err(|e| match e {
        strata::trace::TraceError::Io(io) => format!("cannot read trace `{shown}`: {io}"),
        other => format!("{shown}: {other}"),
    })?;
    let (mut records, failures) =
        scope_records(&trace, args.by).map_err(|e| format!("{shown}: {e}"))?;
    let key = |r: &ScopeRecord| match args.order {
        OrderArg::Peak => r.peak_bytes,
        OrderArg::Total => r.total_bytes,
        OrderArg::Calls => r.calls,
    };
    records.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
    let mut out = std::io::stdout().lock();
    let written = write!(out, "{}", format_report(&records)).and_then(|()| {
        writeln!(
            out,
            "\n{} scope(s); ncalls = allocations made in the scope; {failures} logged allocation failure(s) skipped",
            records.len()
        )
    });
    written.map_err(|e| format!("cannot write the report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frees_count_against_the_allocating_scope() {
        let csv = "Thread,Time,Action,Pointer,Size,Stream\n\
                   1,t,allocate,0x100,100,a\n\
                   2,t,allocate,0x200,300,b\n\
                   2,t,free,0x100,100,b\n\
                   1,t,allocate,0x300,50,a\n\
                   1,t,allocate failure,(nil),9,a\n";
        let trace = Trace::parse(csv.as_bytes()).unwrap();
        let (mut recs, failures) = scope_records(&trace, ScopeBy::Stream).unwrap();
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(failures, 1);
        assert_eq!(recs[0].name, "stream a");
        assert_eq!(
            (recs[0].calls, recs[0].peak_bytes, recs[0].total_bytes),
            (2, 100, 150)
        );
        assert_eq!((recs[1].calls, recs[1].peak_bytes), (1, 300));
        let (by_thread, _) = scope_records(&trace, ScopeBy::Thread).unwrap();
        assert_eq!(by_thread.len(), 2);
    }
}
