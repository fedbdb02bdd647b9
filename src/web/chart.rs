//! Server-rendered SVG charts: geometry computed here, markup in
//! `templates/chart.html`. Colours come from CSS classes (light and dark
//! themes), positions from SVG attributes (allowed by the strict CSP, which
//! forbids inline styles). Hovering a bucket shows a native tooltip.

use chrono::{DateTime, Utc};

pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 26.0;

fn f(v: f64) -> String {
    format!("{v:.1}")
}

pub struct Tick {
    pub pos: String,
    pub label: String,
}

pub struct Rect {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub class: &'static str,
}

pub struct Line {
    pub points: String,
    pub class: &'static str,
}

pub struct Dot {
    pub cx: String,
    pub cy: String,
    pub class: &'static str,
}

/// A full-height column over one bucket carrying its tooltip.
pub struct Hit {
    pub x: String,
    pub w: String,
    pub title: String,
}

pub struct Legend {
    pub label: &'static str,
    pub class: &'static str,
}

pub struct Chart {
    pub title: &'static str,
    /// One-line summary beside the title (`1,234 traces`).
    pub headline: String,
    pub width: String,
    pub height: String,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_bottom: String,
    /// Where y labels end and x labels sit.
    pub ylab_x: String,
    pub xlab_y: String,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub rects: Vec<Rect>,
    pub lines: Vec<Line>,
    pub dots: Vec<Dot>,
    pub hits: Vec<Hit>,
    pub legend: Vec<Legend>,
    pub empty: bool,
}

/// One series of a chart.
pub struct SeriesSpec<'a> {
    pub label: &'static str,
    pub class: &'static str,
    pub values: &'a [Option<f64>],
}

/// The top of a y axis with four round steps (1, 2 or 5 × 10^k each), so
/// tick labels read 0, 10, 20, 30, 40 rather than 0, 12.5, 25.
fn nice_ceil(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 4.0;
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= raw * 0.999_999 {
            return 4.0 * m * p;
        }
    }
    40.0 * p
}

fn time_label(t_ms: i64, bucket_ms: i64, span_ms: i64) -> String {
    let dt: DateTime<Utc> = DateTime::from_timestamp_millis(t_ms).unwrap_or_default();
    if bucket_ms >= 86_400_000 {
        dt.format("%b %-d").to_string()
    } else if span_ms > 86_400_000 {
        dt.format("%b %-d %H:%M").to_string()
    } else {
        dt.format("%H:%M").to_string()
    }
}

/// Tooltip heading for a bucket.
pub fn bucket_label(t_ms: i64, bucket_ms: i64) -> String {
    let dt: DateTime<Utc> = DateTime::from_timestamp_millis(t_ms).unwrap_or_default();
    if bucket_ms >= 86_400_000 {
        dt.format("%a %b %-d, %Y (UTC)").to_string()
    } else {
        let end: DateTime<Utc> =
            DateTime::from_timestamp_millis(t_ms + bucket_ms).unwrap_or_default();
        format!("{}–{} UTC", dt.format("%b %-d %H:%M"), end.format("%H:%M"))
    }
}

struct Frame {
    n: usize,
    y_max: f64,
}

impl Frame {
    fn plot_w(&self) -> f64 {
        WIDTH - LEFT - RIGHT
    }
    fn plot_h(&self) -> f64 {
        HEIGHT - TOP - BOTTOM
    }
    fn slot_w(&self) -> f64 {
        self.plot_w() / self.n.max(1) as f64
    }
    fn x(&self, i: usize) -> f64 {
        LEFT + i as f64 * self.slot_w()
    }
    fn y(&self, v: f64) -> f64 {
        TOP + self.plot_h() * (1.0 - (v / self.y_max).clamp(0.0, 1.0))
    }
}

fn base(
    title: &'static str,
    headline: String,
    starts: &[i64],
    bucket_ms: i64,
    y_max: f64,
    y_fmt: &dyn Fn(f64) -> String,
    titles: Vec<String>,
) -> (Chart, Frame) {
    let fr = Frame {
        n: starts.len(),
        y_max,
    };
    let y_ticks = (0..=4)
        .map(|i| {
            let v = y_max * i as f64 / 4.0;
            Tick {
                pos: f(fr.y(v)),
                label: y_fmt(v),
            }
        })
        .collect();
    let span = starts.last().map(|l| l - starts[0]).unwrap_or(0);
    let every = starts.len().div_ceil(6).max(1);
    let x_ticks = starts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, t)| Tick {
            pos: f(fr.x(i) + fr.slot_w() / 2.0),
            label: time_label(*t, bucket_ms, span),
        })
        .collect();
    let hits = titles
        .into_iter()
        .enumerate()
        .map(|(i, title)| Hit {
            x: f(fr.x(i)),
            w: f(fr.slot_w()),
            title,
        })
        .collect();
    (
        Chart {
            title,
            headline,
            width: f(WIDTH),
            height: f(HEIGHT),
            plot_left: f(LEFT),
            plot_right: f(WIDTH - RIGHT),
            plot_bottom: f(HEIGHT - BOTTOM),
            ylab_x: f(LEFT - 6.0),
            xlab_y: f(HEIGHT - 8.0),
            y_ticks,
            x_ticks,
            rects: Vec::new(),
            lines: Vec::new(),
            dots: Vec::new(),
            hits,
            legend: Vec::new(),
            empty: starts.is_empty(),
        },
        fr,
    )
}

/// Stacked bars, one stack per bucket.
#[allow(clippy::too_many_arguments)]
pub fn stacked_bars(
    title: &'static str,
    headline: String,
    starts: &[i64],
    bucket_ms: i64,
    series: &[SeriesSpec<'_>],
    y_fmt: &dyn Fn(f64) -> String,
    titles: Vec<String>,
) -> Chart {
    let totals: Vec<f64> = (0..starts.len())
        .map(|i| series.iter().map(|s| s.values[i].unwrap_or(0.0)).sum())
        .collect();
    let y_max = nice_ceil(totals.iter().cloned().fold(0.0, f64::max));
    let (mut c, fr) = base(title, headline, starts, bucket_ms, y_max, y_fmt, titles);
    let gap = (fr.slot_w() * 0.18).min(6.0);
    for i in 0..starts.len() {
        let mut acc = 0.0;
        for s in series {
            let v = s.values[i].unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let y0 = fr.y(acc);
            let y1 = fr.y(acc + v);
            acc += v;
            c.rects.push(Rect {
                x: f(fr.x(i) + gap / 2.0),
                y: f(y1),
                w: f((fr.slot_w() - gap).max(1.0)),
                h: f((y0 - y1).max(0.8)),
                class: s.class,
            });
        }
    }
    c.legend = series
        .iter()
        .map(|s| Legend {
            label: s.label,
            class: s.class,
        })
        .collect();
    c.empty = c.empty || totals.iter().all(|t| *t == 0.0);
    c
}

/// Lines with a dot per known value; gaps where a value is unknown.
#[allow(clippy::too_many_arguments)]
pub fn lines(
    title: &'static str,
    headline: String,
    starts: &[i64],
    bucket_ms: i64,
    series: &[SeriesSpec<'_>],
    y_fmt: &dyn Fn(f64) -> String,
    y_floor_max: f64,
    titles: Vec<String>,
) -> Chart {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .cloned()
        .fold(0.0, f64::max);
    let y_max = nice_ceil(max.max(y_floor_max));
    let (mut c, fr) = base(title, headline, starts, bucket_ms, y_max, y_fmt, titles);
    for s in series {
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, c: &mut Chart| {
            if run.len() > 1 {
                c.lines.push(Line {
                    points: run.join(" "),
                    class: s.class,
                });
            }
            run.clear();
        };
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let x = fr.x(i) + fr.slot_w() / 2.0;
                    let y = fr.y(*v);
                    run.push(format!("{},{}", f(x), f(y)));
                    c.dots.push(Dot {
                        cx: f(x),
                        cy: f(y),
                        class: s.class,
                    });
                }
                None => flush(&mut run, &mut c),
            }
        }
        flush(&mut run, &mut c);
    }
    c.legend = series
        .iter()
        .map(|s| Legend {
            label: s.label,
            class: s.class,
        })
        .collect();
    c.empty = c.empty || c.dots.is_empty();
    c
}

/// A tiny area chart for table rows.
pub struct Spark {
    pub line: String,
    pub area: String,
    pub empty: bool,
    pub title: String,
}

pub const SPARK_W: f64 = 120.0;
pub const SPARK_H: f64 = 24.0;

pub fn spark(values: &[u64]) -> Spark {
    let max = values.iter().cloned().max().unwrap_or(0) as f64;
    let n = values.len();
    let title = format!(
        "{} traces in the last {n} days",
        super::format::int(values.iter().sum::<u64>() as i64)
    );
    if max == 0.0 || n < 2 {
        return Spark {
            line: format!("0,{} {},{}", f(SPARK_H - 1.0), f(SPARK_W), f(SPARK_H - 1.0)),
            area: String::new(),
            empty: true,
            title,
        };
    }
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = SPARK_W * i as f64 / (n - 1) as f64;
            let y = 1.0 + (SPARK_H - 2.0) * (1.0 - *v as f64 / max);
            format!("{},{}", f(x), f(y))
        })
        .collect();
    let area = format!(
        "0,{} {} {},{}",
        f(SPARK_H),
        pts.join(" "),
        f(SPARK_W),
        f(SPARK_H)
    );
    Spark {
        line: pts.join(" "),
        area,
        empty: false,
        title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(7.0), 8.0);
        assert_eq!(nice_ceil(40.0), 40.0);
        assert_eq!(nice_ceil(180.0), 200.0);
        assert_eq!(nice_ceil(28_000.0), 40_000.0);
        assert!((nice_ceil(0.05) - 0.08).abs() < 1e-12);
    }

    #[test]
    fn bars_stack_and_stay_in_the_plot() {
        let starts = [0, 3_600_000, 7_200_000];
        let ok = [Some(3.0), Some(0.0), Some(5.0)];
        let err = [Some(1.0), None, Some(0.0)];
        let c = stacked_bars(
            "Volume",
            String::new(),
            &starts,
            3_600_000,
            &[
                SeriesSpec {
                    label: "OK",
                    class: "s-ok",
                    values: &ok,
                },
                SeriesSpec {
                    label: "Error",
                    class: "s-err",
                    values: &err,
                },
            ],
            &|v| format!("{v}"),
            vec!["a".into(), "b".into(), "c".into()],
        );
        assert_eq!(c.rects.len(), 3);
        assert_eq!(c.hits.len(), 3);
        for r in &c.rects {
            let y: f64 = r.y.parse().unwrap();
            let h: f64 = r.h.parse().unwrap();
            assert!(y >= TOP - 0.1 && y + h <= HEIGHT - BOTTOM + 0.1);
        }
        assert!(!c.empty);
    }

    #[test]
    fn lines_break_at_gaps() {
        let v = [Some(1.0), Some(2.0), None, Some(3.0), Some(1.0)];
        let c = lines(
            "Latency",
            String::new(),
            &[0, 1, 2, 3, 4],
            1,
            &[SeriesSpec {
                label: "p50",
                class: "s-p50",
                values: &v,
            }],
            &|v| format!("{v}"),
            0.0,
            vec![String::new(); 5],
        );
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.dots.len(), 4);
    }
}
