//! Trace activity aggregates for the dashboard and the experiments list:
//! volume, errors, latency distribution and token sums per time bucket.
//!
//! Unfiltered views read hourly rollups (`stats_hourly`). Triggers from
//! migration 0004 (`ui_stats`) mark the (experiment, hour) buckets that any change to
//! `traces` touched; readers recompute those few buckets from `traces` in
//! their own snapshot and overlay them, then write them back in the
//! background (best effort: a failed write only means the next reader
//! recomputes again). Filtered views aggregate the matching traces
//! directly, streaming rows without collecting them.
//!
//! Latency percentiles come from a log-scale histogram (about 7% relative
//! error), which merges across hours where exact percentiles would not.
//! Knows SQL; does not know HTTP, the filter grammar or how charts look.

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};

use super::{Result, Store, StoreError};

pub const HOUR_MS: i64 = 3_600_000;

/// Growth factor between histogram buckets.
const BASE: f64 = 1.15;
/// Bucket 0 holds 0 ms; bucket i ≥ 1 holds [BASE^(i-1), BASE^i) ms. 200
/// buckets reach past 1.15^199 ms, far beyond any real trace.
const MAX_BUCKET: u16 = 200;

/// A latency distribution (milliseconds) on a fixed log scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHist {
    pub buckets: BTreeMap<u16, u64>,
    pub count: u64,
    pub sum_ms: i64,
}

fn bucket_of(ms: i64) -> u16 {
    if ms <= 0 {
        return 0;
    }
    let i = ((ms as f64).ln() / BASE.ln()).floor() as i64 + 1;
    i.clamp(1, MAX_BUCKET as i64) as u16
}

fn bucket_mid(i: u16) -> f64 {
    if i == 0 {
        return 0.0;
    }
    let lo = BASE.powi(i as i32 - 1);
    let hi = BASE.powi(i as i32);
    (lo * hi).sqrt()
}

impl LatencyHist {
    pub fn add(&mut self, ms: i64) {
        *self.buckets.entry(bucket_of(ms)).or_default() += 1;
        self.count += 1;
        self.sum_ms += ms.max(0);
    }

    pub fn merge(&mut self, other: &LatencyHist) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }

    /// The q-quantile (0..=1) in milliseconds, or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= target {
                return Some(bucket_mid(*b));
            }
        }
        self.buckets.keys().last().map(|b| bucket_mid(*b))
    }

    fn to_json(&self) -> String {
        let m: BTreeMap<String, u64> = self
            .buckets
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        serde_json::to_string(&m).unwrap_or_else(|_| "{}".into())
    }

    fn from_json(s: &str, count: u64, sum_ms: i64) -> Result<Self> {
        let m: BTreeMap<String, u64> = serde_json::from_str(s)
            .map_err(|e| StoreError::Corrupt(format!("latency histogram: {e}")))?;
        let mut buckets = BTreeMap::new();
        for (k, v) in m {
            let b: u16 = k
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("latency bucket '{k}'")))?;
            buckets.insert(b, v);
        }
        Ok(Self {
            buckets,
            count,
            sum_ms,
        })
    }
}

/// Activity of some traces: the unit every chart point is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    pub traces: u64,
    pub errors: u64,
    pub latency: LatencyHist,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
}

impl Agg {
    fn add_row(
        &mut self,
        error: bool,
        exec_ms: Option<i64>,
        tokens: (Option<i64>, Option<i64>, Option<i64>),
    ) {
        self.traces += 1;
        self.errors += error as u64;
        if let Some(ms) = exec_ms {
            self.latency.add(ms);
        }
        let (i, o, t) = tokens;
        self.input_tokens += i.unwrap_or(0);
        self.output_tokens += o.unwrap_or(0);
        self.total_tokens += t.unwrap_or(i.unwrap_or(0) + o.unwrap_or(0));
    }

    pub fn merge(&mut self, other: &Agg) {
        self.traces += other.traces;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
    }

    /// Errors as a fraction of traces.
    pub fn error_rate(&self) -> Option<f64> {
        (self.traces > 0).then(|| self.errors as f64 / self.traces as f64)
    }
}

/// Consecutive buckets of equal width; empty buckets are present.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub bucket_ms: i64,
    /// (bucket start in ms since the epoch, activity in it)
    pub points: Vec<(i64, Agg)>,
}

impl Series {
    fn empty(from_ms: i64, to_ms: i64, bucket_ms: i64) -> Series {
        let first = from_ms.div_euclid(bucket_ms) * bucket_ms;
        let mut points = Vec::new();
        let mut t = first;
        while t < to_ms {
            points.push((t, Agg::default()));
            t += bucket_ms;
        }
        Series { bucket_ms, points }
    }

    fn slot(&mut self, t_ms: i64) -> Option<&mut Agg> {
        let first = self.points.first()?.0;
        if t_ms < first {
            return None;
        }
        let i = ((t_ms - first) / self.bucket_ms) as usize;
        self.points.get_mut(i).map(|(_, a)| a)
    }

    pub fn total(&self) -> Agg {
        let mut a = Agg::default();
        for (_, p) in &self.points {
            a.merge(p);
        }
        a
    }
}

/// A dirty bucket recomputed from `traces`, with the mark it cleared.
#[derive(Debug, Clone)]
pub struct Recomputed {
    experiment_id: i64,
    hour: i64,
    mark: i64,
    agg: Agg,
}

const ROW_COLUMNS: &str = "t.request_time, t.state = 'ERROR', t.execution_time, t.input_tokens, \
     t.output_tokens, t.total_tokens";

type RowVals = (
    i64,
    bool,
    Option<i64>,
    (Option<i64>, Option<i64>, Option<i64>),
);

fn row_vals(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowVals> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        (r.get(3)?, r.get(4)?, r.get(5)?),
    ))
}

/// One hour of one experiment, straight from `traces`.
fn aggregate_hour(conn: &Connection, experiment_id: i64, hour: i64) -> Result<Agg> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM traces t
         WHERE t.experiment_id = ?1 AND t.request_time >= ?2 AND t.request_time < ?3"
    ))?;
    let mut q = stmt.query(params![experiment_id, hour * HOUR_MS, (hour + 1) * HOUR_MS])?;
    let mut agg = Agg::default();
    while let Some(r) = q.next()? {
        let (_, err, exec, tok) = row_vals(r)?;
        agg.add_row(err, exec, tok);
    }
    Ok(agg)
}

/// Marks the buckets of newly inserted traces for recompute, given their
/// `(experiment_id, request_time)`: once per bucket however many traces
/// fall in it. Every `INSERT INTO traces` must be followed by this (updates
/// and deletes are marked by triggers; see migration 0009 for why inserts
/// are not).
pub fn mark_inserted(conn: &Connection, traces: &[(i64, i64)]) -> Result<()> {
    let mut hours: Vec<(i64, i64)> = traces.iter().map(|&(e, t)| (e, t / HOUR_MS)).collect();
    hours.sort_unstable();
    hours.dedup();
    let mut mark = conn.prepare_cached(
        "INSERT INTO stats_dirty (experiment_id, hour) VALUES (?1, ?2)
         ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1",
    )?;
    for (e, h) in hours {
        mark.execute(params![e, h])?;
    }
    Ok(())
}

/// Recomputes the dirty buckets of one experiment (or all) in the caller's
/// snapshot.
pub fn recompute_dirty(conn: &Connection, experiment_id: Option<i64>) -> Result<Vec<Recomputed>> {
    let mut stmt = conn.prepare_cached(
        "SELECT experiment_id, hour, gen FROM stats_dirty
         WHERE ?1 IS NULL OR experiment_id = ?1",
    )?;
    let marks: Vec<(i64, i64, i64)> = stmt
        .query_map([experiment_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    marks
        .into_iter()
        .map(|(e, h, g)| {
            Ok(Recomputed {
                experiment_id: e,
                hour: h,
                mark: g,
                agg: aggregate_hour(conn, e, h)?,
            })
        })
        .collect()
}

/// Writes recomputed buckets and clears the marks they answered; a mark
/// bumped since (new data) stays.
pub fn store_recomputed(conn: &Connection, done: &[Recomputed]) -> Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO stats_hourly (experiment_id, hour, traces, errors, latency_count,
             latency_sum, latency_hist, input_tokens, output_tokens, total_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (experiment_id, hour) DO UPDATE SET traces = excluded.traces,
             errors = excluded.errors, latency_count = excluded.latency_count,
             latency_sum = excluded.latency_sum, latency_hist = excluded.latency_hist,
             input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
             total_tokens = excluded.total_tokens",
    )?;
    let mut remove =
        conn.prepare_cached("DELETE FROM stats_hourly WHERE experiment_id = ?1 AND hour = ?2")?;
    let mut clear = conn.prepare_cached(
        "DELETE FROM stats_dirty WHERE experiment_id = ?1 AND hour = ?2 AND gen = ?3",
    )?;
    for r in done {
        let a = &r.agg;
        if a.traces == 0 {
            remove.execute(params![r.experiment_id, r.hour])?;
        } else {
            upsert.execute(params![
                r.experiment_id,
                r.hour,
                a.traces as i64,
                a.errors as i64,
                a.latency.count as i64,
                a.latency.sum_ms,
                a.latency.to_json(),
                a.input_tokens,
                a.output_tokens,
                a.total_tokens
            ])?;
        }
        clear.execute(params![r.experiment_id, r.hour, r.mark])?;
    }
    Ok(())
}

/// Stored hourly rollups of one experiment in [from_hour, to_hour).
fn stored_hours(
    conn: &Connection,
    experiment_id: i64,
    from_hour: i64,
    to_hour: i64,
) -> Result<Vec<(i64, Agg)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hour, traces, errors, latency_count, latency_sum, latency_hist, input_tokens,
             output_tokens, total_tokens
         FROM stats_hourly WHERE experiment_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
    )?;
    let mut q = stmt.query(params![experiment_id, from_hour, to_hour])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let hist: String = r.get(5)?;
        out.push((
            r.get(0)?,
            Agg {
                traces: r.get::<_, i64>(1)? as u64,
                errors: r.get::<_, i64>(2)? as u64,
                latency: LatencyHist::from_json(&hist, r.get::<_, i64>(3)? as u64, r.get(4)?)?,
                input_tokens: r.get(6)?,
                output_tokens: r.get(7)?,
                total_tokens: r.get(8)?,
            },
        ));
    }
    Ok(out)
}

/// Hourly rollups with fresh values for dirty hours overlaid.
fn fresh_hours(
    conn: &Connection,
    experiment_id: i64,
    from_hour: i64,
    to_hour: i64,
    fresh: &[Recomputed],
) -> Result<BTreeMap<i64, Agg>> {
    let mut hours: BTreeMap<i64, Agg> = stored_hours(conn, experiment_id, from_hour, to_hour)?
        .into_iter()
        .collect();
    for r in fresh {
        if r.experiment_id == experiment_id && r.hour >= from_hour && r.hour < to_hour {
            hours.insert(r.hour, r.agg.clone());
        }
    }
    Ok(hours)
}

/// An unfiltered series from rollups; `bucket_ms` must be a whole number of
/// hours. The range is widened to whole hours.
pub fn rollup_series(
    conn: &Connection,
    experiment_id: i64,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    fresh: &[Recomputed],
) -> Result<Series> {
    let from_hour = from_ms.div_euclid(HOUR_MS);
    let to_hour = (to_ms + HOUR_MS - 1).div_euclid(HOUR_MS);
    let hours = fresh_hours(conn, experiment_id, from_hour, to_hour, fresh)?;
    let mut s = Series::empty(from_hour * HOUR_MS, to_hour * HOUR_MS, bucket_ms);
    for (h, a) in hours {
        if let Some(slot) = s.slot(h * HOUR_MS) {
            slot.merge(&a);
        }
    }
    Ok(s)
}

/// A series over the traces matching `cond` (a boolean SQL expression over
/// `traces t` whose parameters are `params`, numbered from ?1), aggregated
/// row by row.
pub fn filtered_series(
    conn: &Connection,
    cond: &str,
    cond_params: &[SqlValue],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Result<Series> {
    let n = cond_params.len();
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM traces t
         WHERE {cond} AND t.request_time >= ?{} AND t.request_time < ?{}",
        n + 1,
        n + 2
    );
    let mut all: Vec<SqlValue> = cond_params.to_vec();
    all.push(SqlValue::Integer(from_ms));
    all.push(SqlValue::Integer(to_ms));
    let mut stmt = conn.prepare(&sql)?;
    let mut q = stmt.query(rusqlite::params_from_iter(all.iter()))?;
    let mut s = Series::empty(from_ms, to_ms, bucket_ms);
    while let Some(r) = q.next()? {
        let (t, err, exec, tok) = row_vals(r)?;
        if let Some(slot) = s.slot(t) {
            slot.add_row(err, exec, tok);
        }
    }
    Ok(s)
}

/// One experiment's place in the experiments list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentActivity {
    pub experiment_id: i64,
    pub traces: u64,
    pub last_request_ms: Option<i64>,
    /// Traces per UTC day over the last `days` days, oldest first.
    pub daily: Vec<u64>,
}

/// Totals and recent daily volume of every experiment, from rollups.
pub fn activity(
    conn: &Connection,
    now_ms: i64,
    days: i64,
    fresh: &[Recomputed],
) -> Result<Vec<ExperimentActivity>> {
    let mut by_exp: HashMap<i64, ExperimentActivity> = HashMap::new();
    let day_ms = 24 * HOUR_MS;
    let today = now_ms.div_euclid(day_ms);
    let first_day = today - days + 1;
    let mut stmt = conn.prepare_cached("SELECT experiment_id, hour, traces FROM stats_hourly")?;
    let mut rows: HashMap<(i64, i64), u64> = stmt
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for f in fresh {
        rows.insert((f.experiment_id, f.hour), f.agg.traces);
    }
    for ((e, h), n) in rows {
        let a = by_exp.entry(e).or_insert_with(|| ExperimentActivity {
            experiment_id: e,
            daily: vec![0; days.max(0) as usize],
            ..Default::default()
        });
        a.traces += n;
        let day = (h * HOUR_MS).div_euclid(day_ms);
        if day >= first_day && day <= today {
            a.daily[(day - first_day) as usize] += n;
        }
    }
    let mut last =
        conn.prepare_cached("SELECT max(request_time) FROM traces WHERE experiment_id = ?1")?;
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT experiment_id FROM experiments")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut a = by_exp.remove(&id).unwrap_or_else(|| ExperimentActivity {
            experiment_id: id,
            daily: vec![0; days.max(0) as usize],
            ..Default::default()
        });
        // MAX on an indexed column is one index seek.
        a.last_request_ms = last.query_row([id], |r| r.get(0))?;
        out.push(a);
    }
    Ok(out)
}

impl Store {
    /// Writes recomputed buckets without making the caller wait for the
    /// commit; the data is derived, so losing this write costs only a
    /// recompute later.
    fn persist_recomputed(&self, fresh: Vec<Recomputed>) {
        if fresh.is_empty() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.write(move |c| store_recomputed(c, &fresh)).await {
                tracing::debug!(error = %e, "could not store recomputed rollups; will retry on next read");
            }
        });
    }

    /// An unfiltered activity series of one experiment from hourly rollups.
    pub async fn rollup_series(
        &self,
        experiment_id: i64,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Series> {
        if bucket_ms <= 0 || bucket_ms % HOUR_MS != 0 {
            return Err(StoreError::Invalid(
                "rollup buckets must be whole hours".into(),
            ));
        }
        let (series, fresh) = self
            .read(move |c| {
                let fresh = recompute_dirty(c, Some(experiment_id))?;
                let s = rollup_series(c, experiment_id, from_ms, to_ms, bucket_ms, &fresh)?;
                Ok((s, fresh))
            })
            .await?;
        self.persist_recomputed(fresh);
        Ok(series)
    }

    /// Totals and the last `days` days of volume for every experiment.
    pub async fn experiment_activity_summary(
        &self,
        now_ms: i64,
        days: i64,
    ) -> Result<Vec<ExperimentActivity>> {
        let (out, fresh) = self
            .read(move |c| {
                let fresh = recompute_dirty(c, None)?;
                Ok((activity(c, now_ms, days, &fresh)?, fresh))
            })
            .await?;
        self.persist_recomputed(fresh);
        Ok(out)
    }

    /// A series over the traces matching a planned condition.
    pub async fn filtered_series(
        &self,
        cond: String,
        cond_params: Vec<SqlValue>,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Series> {
        if bucket_ms <= 0 || to_ms <= from_ms || (to_ms - from_ms) / bucket_ms > 10_000 {
            return Err(StoreError::Invalid(
                "a series needs 1 to 10000 buckets".into(),
            ));
        }
        self.read(move |c| filtered_series(c, &cond, &cond_params, from_ms, to_ms, bucket_ms))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = LatencyHist::default();
        for ms in 1..=1000 {
            h.add(ms);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.08, "p50 {p50}");
        assert!((p95 - 950.0).abs() / 950.0 < 0.08, "p95 {p95}");
        let back = LatencyHist::from_json(&h.to_json(), h.count, h.sum_ms).unwrap();
        assert_eq!(back, h);
        assert_eq!(LatencyHist::default().quantile(0.5), None);
        let mut z = LatencyHist::default();
        z.add(0);
        assert_eq!(z.quantile(0.99), Some(0.0));
    }

    #[test]
    fn series_slots_cover_the_range() {
        let mut s = Series::empty(5 * HOUR_MS + 10, 8 * HOUR_MS, HOUR_MS);
        assert_eq!(s.points.len(), 3);
        assert_eq!(s.points[0].0, 5 * HOUR_MS);
        assert!(s.slot(8 * HOUR_MS).is_none());
        assert!(s.slot(4 * HOUR_MS).is_none());
        s.slot(7 * HOUR_MS + 5).unwrap().traces = 2;
        assert_eq!(s.total().traces, 2);
    }
}
