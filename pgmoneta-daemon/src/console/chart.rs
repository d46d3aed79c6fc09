//! Charts drawn as inline SVG by the daemon: a line chart over time and a bar chart. Colours
//! come from the page's CSS classes, so the charts follow the light and dark themes.

use std::fmt::Write as _;

use super::page::esc;

/// How values read on an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, in powers of 1024.
    Bytes,
    /// Seconds.
    Seconds,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;

/// A value with its unit, short: `1.5 GB`, `3.2 s`, `2 h`.
pub fn format(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => {
            const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
            let (mut v, mut i) = (v, 0);
            while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
                v /= 1024.0;
                i += 1;
            }
            if i == 0 || v >= 100.0 || v.fract() == 0.0 {
                format!("{v:.0} {}", UNITS[i])
            } else {
                format!("{v:.1} {}", UNITS[i])
            }
        }
        Unit::Seconds => match v {
            v if v < 1.0 && v > 0.0 => format!("{:.0} ms", v * 1000.0),
            v if v < 120.0 => format!("{v:.1} s").replace(".0 s", " s"),
            v if v < 7200.0 => format!("{:.0} min", v / 60.0),
            v => format!("{:.1} h", v / 3600.0),
        },
    }
}

/// The value axis: a step of 1, 2 or 5 times a power of ten (of the unit's size: 1024 for
/// bytes) and the top, a whole number of steps (at most five) at or above `max`.
fn axis(unit: Unit, max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 1.0);
    }
    let base = match unit {
        Unit::Bytes => {
            let mut b = 1.0;
            while max / b >= 1024.0 {
                b *= 1024.0;
            }
            b
        }
        Unit::Seconds => 1.0,
    };
    let scaled = max / base;
    let mut power = 10f64.powf((scaled / 5.0).log10().floor());
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = power * m;
            if scaled / step <= 5.0 {
                let top = (scaled / step).ceil().max(1.0) * step;
                return (top * base, step * base);
            }
        }
        power *= 10.0;
    }
}

fn frame(out: &mut String, title: &str, unit: Unit, (top, step): (f64, f64)) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = esc(title)
    );
    let ticks = (top / step).round() as u32;
    for i in 0..=ticks {
        let v = step * f64::from(i);
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = W - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            label = esc(&format(unit, v)),
        );
    }
}

fn empty(title: &str, why: &str) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title><rect class=\"empty\" x=\"1\" y=\"1\" \
         width=\"{w}\" height=\"{h}\" rx=\"6\"/><text class=\"axis\" x=\"{cx}\" y=\"{cy}\" \
         text-anchor=\"middle\">{why}</text></svg>",
        t = esc(title),
        w = W - 2.0,
        h = H - 2.0,
        cx = W / 2.0,
        cy = H / 2.0,
        why = esc(why),
    )
}

/// `HH:MM` of a Unix time at `offset` seconds east of UTC.
fn clock(at: f64, offset: i32) -> String {
    let t = pgmoneta_core::CivilDateTime::from_unix(at as i64, offset);
    format!("{:02}:{:02}", t.hour, t.minute)
}

/// A line chart of `series` (`(unix time, value)` points, CSS class) over `[from, to]`.
pub fn line_chart(
    title: &str,
    unit: Unit,
    series: &[(&str, Vec<(f64, f64)>)],
    from: f64,
    to: f64,
    offset: i32,
) -> String {
    if series.iter().all(|(_, p)| p.len() < 2) || to <= from {
        return empty(title, "not enough samples yet (one a minute)");
    }
    let max = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0, f64::max);
    let (top, step) = axis(unit, max);
    let mut out = String::new();
    frame(&mut out, title, unit, (top, step));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t - from) / (to - from) * plot_w;
    let y = |v: f64| TOP + plot_h * (1.0 - v / top);
    for i in 0..=4 {
        let t = from + (to - from) * f64::from(i) / 4.0;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            H - BOTTOM + 18.0,
            clock(t, offset)
        );
    }
    for (class, points) in series {
        let mut d = String::new();
        for (i, (t, v)) in points.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(*t), y(*v));
        }
        let _ = write!(out, "<path class=\"line {}\" d=\"{d}\"/>", esc(class));
        if let Some((t, v)) = points.last() {
            let _ = write!(
                out,
                "<circle class=\"dot {}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}</title></circle>",
                esc(class),
                x(*t),
                y(*v),
                esc(&format(unit, *v))
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A bar chart: one bar per `(label, value, CSS class)`, in order, each with its value as a
/// tooltip; at most a dozen labels are written under the bars.
pub fn bar_chart(title: &str, unit: Unit, bars: &[(String, f64, &str)]) -> String {
    if bars.is_empty() {
        return empty(title, "no backups yet");
    }
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let (top, step) = axis(unit, max);
    let mut out = String::new();
    frame(&mut out, title, unit, (top, step));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / bars.len() as f64;
    let width = (slot * 0.7).clamp(1.0, 48.0);
    let every = bars.len().div_ceil(12);
    for (i, (label, value, class)) in bars.iter().enumerate() {
        let h = plot_h * (value / top).clamp(0.0, 1.0);
        let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
        let _ = write!(
            out,
            "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" rx=\"2\">\
             <title>{}: {}</title></rect>",
            esc(class),
            TOP + plot_h - h,
            esc(label),
            esc(&format(unit, *value))
        );
        if i % every == 0 {
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + width / 2.0,
                H - BOTTOM + 18.0,
                esc(label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values_and_axes() {
        assert_eq!(format(Unit::Bytes, 0.0), "0 B");
        assert_eq!(format(Unit::Bytes, 1536.0), "1.5 kB");
        assert_eq!(format(Unit::Bytes, 16.0 * 1024.0 * 1024.0), "16 MB");
        assert_eq!(format(Unit::Seconds, 2.0), "2 s");
        assert_eq!(format(Unit::Seconds, 0.25), "250 ms");
        assert_eq!(format(Unit::Seconds, 5400.0), "90 min");
        assert_eq!(axis(Unit::Seconds, 3.2), (4.0, 1.0));
        assert_eq!(axis(Unit::Seconds, 2.6), (3.0, 1.0));
        assert_eq!(axis(Unit::Seconds, 12.0), (15.0, 5.0));
        let mb = 1024.0 * 1024.0;
        assert_eq!(axis(Unit::Bytes, 4.1 * mb), (5.0 * mb, 1.0 * mb));
        assert_eq!(axis(Unit::Bytes, 300.0 * mb), (300.0 * mb, 100.0 * mb));
        assert_eq!(axis(Unit::Bytes, 301.0 * mb), (400.0 * mb, 100.0 * mb));
        assert_eq!(axis(Unit::Bytes, 0.0), (1.0, 1.0));
    }

    #[test]
    fn draws_well_formed_svg() {
        let line = line_chart(
            "WAL lag <now>",
            Unit::Bytes,
            &[("lag", vec![(0.0, 0.0), (60.0, 2048.0), (120.0, 1024.0)])],
            0.0,
            120.0,
            0,
        );
        assert!(line.starts_with("<svg") && line.ends_with("</svg>"));
        assert!(line.contains("WAL lag &lt;now&gt;") && line.contains("<path class=\"line lag\" d=\"M"));
        assert!(line.contains(">2 kB<"), "{line}");
        let bars = bar_chart("sizes", Unit::Bytes, &[("a".into(), 10.0, "full"), ("b".into(), 5.0, "incremental")]);
        assert_eq!(bars.matches("<rect class=\"bar").count(), 2);
        assert!(line_chart("x", Unit::Bytes, &[("l", vec![(0.0, 1.0)])], 0.0, 60.0, 0).contains("not enough samples"));
        assert!(bar_chart("x", Unit::Seconds, &[]).contains("no backups yet"));
    }
}
