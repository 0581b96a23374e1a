//! `--plot`: the memory timeline of a report as a self-contained SVG file.

use std::fmt::Write as _;

use strata::replay::{Report, TimelinePoint};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A step of 1, 2 or 5 times a power of ten such that about five steps span `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let m = raw / magnitude;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The binary unit in which `max` bytes reads best: (divisor, name).
fn byte_unit(max: u64) -> (f64, &'static str) {
    const UNITS: [(u32, &str); 5] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "B")];
    for (shift, name) in UNITS {
        if max >= 1u64 << shift {
            return ((1u64 << shift) as f64, name);
        }
    }
    (1.0, "B")
}

fn polyline(
    svg: &mut String,
    points: &[TimelinePoint],
    value: impl Fn(&TimelinePoint) -> u64,
    scale: (f64, f64),
    style: &str,
) {
    let (x_per_op, y_per_byte) = scale;
    let mut coords = format!("{LEFT:.1},{:.1}", HEIGHT - BOTTOM);
    for p in points {
        let x = LEFT + p.op as f64 * x_per_op;
        let y = HEIGHT - BOTTOM - value(p) as f64 * y_per_byte;
        let _ = write!(coords, " {x:.1},{y:.1}");
    }
    let _ = writeln!(svg, r#"<polyline fill="none" {style} points="{coords}"/>"#);
}

/// Draws live bytes (once: the trace's, from the first resource measured) and the bytes each
/// resource reserved from the device, over the operations of the trace.
pub fn timeline_svg(report: &Report) -> String {
    let series: Vec<(&str, &[TimelinePoint])> = report
        .resources
        .iter()
        .filter(|r| !r.timeline.points.is_empty())
        .map(|r| (r.name.as_str(), r.timeline.points.as_slice()))
        .collect();
    let ops = report.trace.ops.max(1) as f64;
    let max_bytes = series
        .iter()
        .flat_map(|(_, pts)| pts.iter())
        .map(|p| p.live_bytes.max(p.reserved_bytes))
        .max()
        .unwrap_or(0)
        .max(1);
    let (unit, unit_name) = byte_unit(max_bytes);
    let max_units = max_bytes as f64 / unit;
    let step = nice_step(max_units);
    let top_units = (max_units / step).ceil().max(1.0) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let scale = (plot_w / ops, plot_h / (top_units * unit));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="15">Memory timeline: {} on the {}</text>"#,
        escape(&report.trace.source),
        escape(&report.device.name)
    );
    // Horizontal grid and byte labels.
    let mut v = 0.0;
    while v <= top_units + step / 2.0 {
        let y = HEIGHT - BOTTOM - v * unit * scale.1;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} {unit_name}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            format_tick(v)
        );
        v += step;
    }
    // Operation ticks.
    let op_step = nice_step(ops);
    let mut o = 0.0;
    while o <= ops + op_step / 2.0 {
        let x = LEFT + o * scale.0;
        if x <= LEFT + plot_w + 0.5 {
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 5.0,
                HEIGHT - BOTTOM + 18.0,
                format_tick(o)
            );
        }
        o += op_step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">operations (allocations and frees)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 20.0
    );
    // Reserved bytes per resource, then live bytes on top.
    let legend_x = LEFT + plot_w + 16.0;
    let mut legend_y = TOP + 10.0;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        polyline(
            &mut svg,
            points,
            |p| p.reserved_bytes,
            scale,
            &format!(r#"stroke="{color}" stroke-width="1.5""#),
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} reserved</text>"#,
            legend_x + 22.0,
            legend_x + 28.0,
            legend_y + 4.0,
            escape(name)
        );
        legend_y += 20.0;
    }
    if let Some((_, points)) = series.first() {
        polyline(
            &mut svg,
            points,
            |p| p.live_bytes,
            scale,
            r##"stroke="#000" stroke-width="1.5" stroke-dasharray="5,3""##,
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="#000" stroke-width="2" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}">live</text>"##,
            legend_x + 22.0,
            legend_x + 28.0,
            legend_y + 4.0
        );
    } else {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no resource was measured</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A tick value without needless decimals.
fn format_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_five() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(40.0), 10.0);
        assert_eq!(nice_step(24.0), 5.0);
        assert_eq!(nice_step(7000.0), 2000.0);
        assert_eq!(byte_unit(3 << 30), ((1u64 << 30) as f64, "GiB"));
        assert_eq!(byte_unit(100), (1.0, "B"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
