//! The dashboard of one experiment: trace volume, error rate, latency
//! p50/p95 and token use over a time range, optionally for the traces a
//! filter selects, as server-rendered SVG charts.

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::extract::{Path, Query, State};

use super::chart::{self, Chart, SeriesSpec};
use super::error::{WebError, WebResult};
use super::format;
use super::layout::Chrome;
use super::range::{self, RangeOption};
use super::session::Ctx;
use super::traces::{EXAMPLES, FilterError, ListQuery};
use crate::app::AppState;
use crate::domain::now_ms;
use crate::query::check_filter;
use crate::query::stats::StatsRequest;
use crate::store::stats::{Agg, HOUR_MS, Series};

const MIN_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Bucket width for a range: about 12–90 buckets whatever the range.
fn bucket_for(len_ms: i64) -> i64 {
    match len_ms {
        l if l <= 15 * MIN_MS => MIN_MS,
        l if l <= HOUR_MS => 5 * MIN_MS,
        l if l <= 6 * HOUR_MS => 15 * MIN_MS,
        l if l <= 2 * DAY_MS => HOUR_MS,
        _ => DAY_MS,
    }
}

pub struct Kpi {
    pub label: &'static str,
    pub value: String,
    pub note: String,
    /// `bad` highlights a worrying figure.
    pub class: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    chrome: Chrome,
    query: ListQuery,
    base: String,
    ranges: Vec<RangeOption>,
    custom_range: bool,
    range_error: Option<String>,
    filter_error: Option<FilterError>,
    examples: &'static [&'static str],
    kpis: Vec<Kpi>,
    charts: Vec<Chart>,
    period: String,
    traces_href: String,
    filtered: bool,
}

fn tooltip(t: i64, bucket_ms: i64, a: &Agg) -> String {
    let mut s = format!(
        "{}\n{} traces",
        chart::bucket_label(t, bucket_ms),
        format::int(a.traces as i64)
    );
    if a.traces > 0 {
        s.push_str(&format!(
            " · {} errors ({})",
            format::int(a.errors as i64),
            format::percent(a.error_rate().unwrap_or(0.0))
        ));
    }
    if let (Some(p50), Some(p95)) = (a.latency.quantile(0.5), a.latency.quantile(0.95)) {
        s.push_str(&format!(
            "\nlatency p50 {} · p95 {}",
            format::duration_ms(p50),
            format::duration_ms(p95)
        ));
    }
    if a.total_tokens > 0 {
        s.push_str(&format!(
            "\n{} tokens ({} in / {} out)",
            format::int(a.total_tokens),
            format::int(a.input_tokens),
            format::int(a.output_tokens)
        ));
    }
    s
}

fn charts(series: &Series) -> Vec<Chart> {
    let b = series.bucket_ms;
    let starts: Vec<i64> = series.points.iter().map(|(t, _)| *t).collect();
    let titles = || -> Vec<String> {
        series
            .points
            .iter()
            .map(|(t, a)| tooltip(*t, b, a))
            .collect()
    };
    let per = if b >= DAY_MS {
        "per day"
    } else if b >= HOUR_MS {
        "per hour"
    } else {
        "per bucket"
    };
    let total = series.total();
    let ok: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| Some((a.traces - a.errors) as f64))
        .collect();
    let err: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| Some(a.errors as f64))
        .collect();
    let rate: Vec<Option<f64>> = series.points.iter().map(|(_, a)| a.error_rate()).collect();
    let p50: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| a.latency.quantile(0.5))
        .collect();
    let p95: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| a.latency.quantile(0.95))
        .collect();
    let tin: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| Some(a.input_tokens as f64))
        .collect();
    let tout: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| Some(a.output_tokens as f64))
        .collect();
    let tother: Vec<Option<f64>> = series
        .points
        .iter()
        .map(|(_, a)| Some((a.total_tokens - a.input_tokens - a.output_tokens).max(0) as f64))
        .collect();
    let count_fmt = |v: f64| format::compact(v);
    vec![
        chart::stacked_bars(
            "Trace volume",
            format!("{} traces, {per}", format::int(total.traces as i64)),
            &starts,
            b,
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
            &count_fmt,
            titles(),
        ),
        chart::lines(
            "Error rate",
            total
                .error_rate()
                .map(|r| format!("{} overall", format::percent(r)))
                .unwrap_or_default(),
            &starts,
            b,
            &[SeriesSpec {
                label: "Errors / traces",
                class: "s-err",
                values: &rate,
            }],
            &|v| format::percent(v),
            0.05,
            titles(),
        ),
        chart::lines(
            "Latency",
            match (total.latency.quantile(0.5), total.latency.quantile(0.95)) {
                (Some(a), Some(c)) => format!(
                    "p50 {} · p95 {}",
                    format::duration_ms(a),
                    format::duration_ms(c)
                ),
                _ => String::new(),
            },
            &starts,
            b,
            &[
                SeriesSpec {
                    label: "p50",
                    class: "s-p50",
                    values: &p50,
                },
                SeriesSpec {
                    label: "p95",
                    class: "s-p95",
                    values: &p95,
                },
            ],
            &|v| format::duration_ms(v),
            10.0,
            titles(),
        ),
        chart::stacked_bars(
            "Tokens",
            format!(
                "{} tokens, {per}",
                format::compact(total.total_tokens as f64)
            ),
            &starts,
            b,
            &[
                SeriesSpec {
                    label: "Input",
                    class: "s-in",
                    values: &tin,
                },
                SeriesSpec {
                    label: "Output",
                    class: "s-out",
                    values: &tout,
                },
                SeriesSpec {
                    label: "Unsplit",
                    class: "s-other",
                    values: &tother,
                },
            ],
            &count_fmt,
            titles(),
        ),
    ]
}

fn kpis(total: &Agg) -> Vec<Kpi> {
    let rate = total.error_rate();
    vec![
        Kpi {
            label: "Traces",
            value: format::int(total.traces as i64),
            note: String::new(),
            class: "",
        },
        Kpi {
            label: "Error rate",
            value: rate.map(format::percent).unwrap_or_else(|| "—".into()),
            note: match total.errors {
                1 => "1 error".to_string(),
                n => format!("{} errors", format::int(n as i64)),
            },
            class: if rate.unwrap_or(0.0) >= 0.05 {
                "bad"
            } else {
                ""
            },
        },
        Kpi {
            label: "Latency p50",
            value: total
                .latency
                .quantile(0.5)
                .map(format::duration_ms)
                .unwrap_or_else(|| "—".into()),
            note: String::new(),
            class: "",
        },
        Kpi {
            label: "Latency p95",
            value: total
                .latency
                .quantile(0.95)
                .map(format::duration_ms)
                .unwrap_or_else(|| "—".into()),
            note: String::new(),
            class: "",
        },
        Kpi {
            label: "Tokens",
            value: format::compact(total.total_tokens as f64),
            note: if total.traces > 0 {
                format!(
                    "{} per trace",
                    format::compact((total.total_tokens as f64 / total.traces as f64).round())
                )
            } else {
                String::new()
            },
            class: "",
        },
    ]
}

pub async fn page(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    Query(query): Query<ListQuery>,
) -> WebResult<DashboardPage> {
    let chrome = Chrome::new(&app, &ctx, "Dashboard", "dashboard", Some(experiment_id)).await?;
    let base = format!("/experiments/{experiment_id}/dashboard");
    let now = now_ms();
    let (range, range_error) =
        match range::resolve(&query.range, &query.from, &query.to, &query.tz, now, "7d") {
            Ok(r) if r.key != "all" => (r, None),
            Ok(_) => (
                range::resolve("7d", "", "", "", now, "7d").map_err(WebError::bad_request)?,
                None,
            ),
            Err(e) => (
                range::resolve("7d", "", "", "", now, "7d").map_err(WebError::bad_request)?,
                Some(e),
            ),
        };
    let to = range.to_ms.unwrap_or(now);
    let from = range.from_ms.unwrap_or(to - 30 * DAY_MS);
    let bucket = bucket_for(to - from);
    let filter = query.filter.trim().to_string();
    let mut filter_error = None;
    if let Err(e) = check_filter(&filter) {
        filter_error = Some(FilterError::from_query(&filter, e)?);
    }
    let series = if filter_error.is_none() {
        let req = StatsRequest {
            experiment_id,
            filter: (!filter.is_empty()).then(|| filter.clone()),
            text: (!query.q.trim().is_empty()).then(|| query.q.trim().to_string()),
            from_ms: from,
            to_ms: to,
            bucket_ms: bucket,
        };
        match app.query.series(req).await {
            Ok(s) => Some(s),
            Err(
                e
                @ (crate::query::QueryError::Filter { .. } | crate::query::QueryError::Invalid(_)),
            ) => {
                filter_error = Some(FilterError::from_query(&filter, e)?);
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let series = series.unwrap_or(Series {
        bucket_ms: bucket,
        points: Vec::new(),
    });
    let total = series.total();
    let period = format!(
        "{} – {} UTC",
        chrono::DateTime::from_timestamp_millis(from)
            .unwrap_or_default()
            .format("%b %-d %H:%M"),
        chrono::DateTime::from_timestamp_millis(to)
            .unwrap_or_default()
            .format("%b %-d %H:%M"),
    );
    Ok(DashboardPage {
        chrome,
        ranges: range::options(&range.key, false),
        custom_range: range.key == "custom",
        range_error,
        filter_error,
        examples: EXAMPLES,
        kpis: kpis(&total),
        charts: charts(&series),
        period,
        traces_href: query.href(&format!("/experiments/{experiment_id}/traces"), &[]),
        filtered: !filter.is_empty() || !query.q.trim().is_empty(),
        base,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_scale_with_the_range() {
        assert_eq!(bucket_for(15 * MIN_MS), MIN_MS);
        assert_eq!(bucket_for(DAY_MS), HOUR_MS);
        assert_eq!(bucket_for(7 * DAY_MS), DAY_MS);
        assert_eq!(bucket_for(6 * HOUR_MS), 15 * MIN_MS);
    }
}
