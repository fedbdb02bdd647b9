//! Judge verdicts over time for the dashboard: per judge and time bucket,
//! how many evaluations passed out of those with a pass/fail verdict.
//!
//! Unfiltered views read hourly rollups (`judge_stats_hourly`) kept by the
//! dirty-mark scheme of `stats` (triggers from migration 0008,
//! `judge_stats`): readers recompute the few marked (experiment, hour)
//! buckets from the task tables in their own snapshot, overlay them, and
//! write them back in the background. Filtered views join the traces a
//! planner-built condition selects with their evaluations, row by row.
//!
//! A trace judge's verdict belongs to its trace's request hour; a session
//! judge's to the hour of the session's last activity (filters select
//! traces, so filtered views show trace judges only).
//! Knows SQL; does not know HTTP, the filter grammar or how charts look.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};

use super::stats::HOUR_MS;
use super::{Result, Store, StoreError};

/// Passing verdicts out of all pass/fail verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub verdicts: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.verdicts += other.verdicts;
    }
    pub fn rate(&self) -> Option<f64> {
        (self.verdicts > 0).then(|| self.passed as f64 / self.verdicts as f64)
    }
}

/// One judge's tallies, one per bucket of the series.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeLine {
    pub scorer_id: String,
    pub name: String,
    pub points: Vec<Tally>,
}

impl JudgeLine {
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for p in &self.points {
            t.add(*p);
        }
        t
    }
}

/// Consecutive buckets of equal width (empty ones present), one line per
/// judge that has a verdict in the range, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSeries {
    pub bucket_ms: i64,
    pub starts: Vec<i64>,
    pub judges: Vec<JudgeLine>,
}

/// Accumulates (time, scorer, tally) into buckets.
struct Builder {
    bucket_ms: i64,
    starts: Vec<i64>,
    by_scorer: BTreeMap<String, Vec<Tally>>,
}

impl Builder {
    fn new(from_ms: i64, to_ms: i64, bucket_ms: i64) -> Builder {
        let first = from_ms.div_euclid(bucket_ms) * bucket_ms;
        let mut starts = Vec::new();
        let mut t = first;
        while t < to_ms {
            starts.push(t);
            t += bucket_ms;
        }
        Builder {
            bucket_ms,
            starts,
            by_scorer: BTreeMap::new(),
        }
    }

    fn add(&mut self, t_ms: i64, scorer_id: &str, tally: Tally) {
        let Some(first) = self.starts.first().copied() else {
            return;
        };
        if t_ms < first {
            return;
        }
        let i = ((t_ms - first) / self.bucket_ms) as usize;
        if i >= self.starts.len() {
            return;
        }
        let n = self.starts.len();
        let line = self
            .by_scorer
            .entry(scorer_id.to_string())
            .or_insert_with(|| vec![Tally::default(); n]);
        line[i].add(tally);
    }

    /// Lines named from the scorer registry (verdicts of judges deleted
    /// since are left out: their tasks went with them).
    fn finish(self, conn: &Connection, experiment_id: i64) -> Result<JudgeSeries> {
        let mut stmt =
            conn.prepare_cached("SELECT scorer_id, name FROM scorers WHERE experiment_id = ?1")?;
        let names: BTreeMap<String, String> = stmt
            .query_map([experiment_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut judges: Vec<JudgeLine> = self
            .by_scorer
            .into_iter()
            .filter_map(|(id, points)| {
                let name = names.get(&id)?.clone();
                Some(JudgeLine {
                    scorer_id: id,
                    name,
                    points,
                })
            })
            .filter(|l| l.total().verdicts > 0)
            .collect();
        judges.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(JudgeSeries {
            bucket_ms: self.bucket_ms,
            starts: self.starts,
            judges,
        })
    }
}

/// A dirty bucket recomputed from the task tables, with the mark it cleared.
#[derive(Debug, Clone)]
pub struct Recomputed {
    experiment_id: i64,
    hour: i64,
    mark: i64,
    /// scorer id → tally
    tallies: Vec<(String, Tally)>,
}

fn tally_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<(String, Tally)>> {
    Ok(stmt
        .query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                Tally {
                    passed: r.get::<_, i64>(1)? as u64,
                    verdicts: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// One hour of one experiment, straight from the task tables.
fn aggregate_hour(
    conn: &Connection,
    experiment_id: i64,
    hour: i64,
) -> Result<Vec<(String, Tally)>> {
    let (from, to) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
    let mut traces = conn.prepare_cached(
        "SELECT jt.scorer_id, sum(jt.verdict), count(*)
         FROM traces t JOIN judge_tasks jt ON jt.trace = t.id
         WHERE t.experiment_id = ?1 AND t.request_time >= ?2 AND t.request_time < ?3
           AND jt.state = 'done' AND jt.verdict IS NOT NULL
         GROUP BY jt.scorer_id",
    )?;
    let mut out = tally_rows(&mut traces, params![experiment_id, from, to])?;
    let mut sessions = conn.prepare_cached(
        "SELECT scorer_id, sum(verdict), count(*) FROM judge_session_tasks
         WHERE experiment_id = ?1 AND last_activity >= ?2 AND last_activity < ?3
           AND state = 'done' AND verdict IS NOT NULL
         GROUP BY scorer_id",
    )?;
    out.extend(tally_rows(&mut sessions, params![experiment_id, from, to])?);
    Ok(out)
}

/// Recomputes the dirty buckets of one experiment in the caller's snapshot.
pub fn recompute_dirty(conn: &Connection, experiment_id: i64) -> Result<Vec<Recomputed>> {
    let mut stmt =
        conn.prepare_cached("SELECT hour, gen FROM judge_stats_dirty WHERE experiment_id = ?1")?;
    let marks: Vec<(i64, i64)> = stmt
        .query_map([experiment_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    marks
        .into_iter()
        .map(|(hour, mark)| {
            Ok(Recomputed {
                experiment_id,
                hour,
                mark,
                tallies: aggregate_hour(conn, experiment_id, hour)?,
            })
        })
        .collect()
}

/// Writes recomputed buckets and clears the marks they answered; a mark
/// bumped since (new verdicts) stays.
pub fn store_recomputed(conn: &Connection, done: &[Recomputed]) -> Result<()> {
    let mut remove = conn
        .prepare_cached("DELETE FROM judge_stats_hourly WHERE experiment_id = ?1 AND hour = ?2")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO judge_stats_hourly (experiment_id, hour, scorer_id, passed, verdicts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut clear = conn.prepare_cached(
        "DELETE FROM judge_stats_dirty WHERE experiment_id = ?1 AND hour = ?2 AND gen = ?3",
    )?;
    for r in done {
        remove.execute(params![r.experiment_id, r.hour])?;
        for (scorer, t) in &r.tallies {
            insert.execute(params![
                r.experiment_id,
                r.hour,
                scorer,
                t.passed as i64,
                t.verdicts as i64
            ])?;
        }
        clear.execute(params![r.experiment_id, r.hour, r.mark])?;
    }
    Ok(())
}

/// An unfiltered series from rollups with fresh values for dirty hours
/// overlaid; `bucket_ms` must be a whole number of hours and the range is
/// widened to whole hours.
pub fn rollup_series(
    conn: &Connection,
    experiment_id: i64,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    fresh: &[Recomputed],
) -> Result<JudgeSeries> {
    let from_hour = from_ms.div_euclid(HOUR_MS);
    let to_hour = (to_ms + HOUR_MS - 1).div_euclid(HOUR_MS);
    let mut b = Builder::new(from_hour * HOUR_MS, to_hour * HOUR_MS, bucket_ms);
    let fresh_hours: std::collections::HashSet<i64> = fresh.iter().map(|r| r.hour).collect();
    let mut stmt = conn.prepare_cached(
        "SELECT hour, scorer_id, passed, verdicts FROM judge_stats_hourly
         WHERE experiment_id = ?1 AND hour >= ?2 AND hour < ?3",
    )?;
    let mut q = stmt.query(params![experiment_id, from_hour, to_hour])?;
    while let Some(r) = q.next()? {
        let hour: i64 = r.get(0)?;
        if fresh_hours.contains(&hour) {
            continue;
        }
        let scorer: String = r.get(1)?;
        let t = Tally {
            passed: r.get::<_, i64>(2)? as u64,
            verdicts: r.get::<_, i64>(3)? as u64,
        };
        b.add(hour * HOUR_MS, &scorer, t);
    }
    for r in fresh {
        if r.hour >= from_hour && r.hour < to_hour {
            for (scorer, t) in &r.tallies {
                b.add(r.hour * HOUR_MS, scorer, *t);
            }
        }
    }
    b.finish(conn, experiment_id)
}

/// A series over the trace evaluations of the traces matching `cond` (a
/// boolean SQL expression over `traces t` whose parameters are
/// `cond_params`, numbered from ?1); with `sessions`, session judges'
/// verdicts of the experiment in the range too (for unfiltered views with
/// buckets shorter than an hour).
#[allow(clippy::too_many_arguments)]
pub fn filtered_series(
    conn: &Connection,
    experiment_id: i64,
    cond: &str,
    cond_params: &[SqlValue],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    sessions: bool,
) -> Result<JudgeSeries> {
    let n = cond_params.len();
    let sql = format!(
        "SELECT t.request_time, jt.scorer_id, jt.verdict
         FROM traces t JOIN judge_tasks jt ON jt.trace = t.id
         WHERE {cond} AND t.request_time >= ?{} AND t.request_time < ?{}
           AND jt.state = 'done' AND jt.verdict IS NOT NULL",
        n + 1,
        n + 2
    );
    let mut all: Vec<SqlValue> = cond_params.to_vec();
    all.push(SqlValue::Integer(from_ms));
    all.push(SqlValue::Integer(to_ms));
    let mut b = Builder::new(from_ms, to_ms, bucket_ms);
    let one = |pass: bool| Tally {
        passed: pass as u64,
        verdicts: 1,
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut q = stmt.query(rusqlite::params_from_iter(all.iter()))?;
    while let Some(r) = q.next()? {
        let scorer: String = r.get(1)?;
        b.add(r.get(0)?, &scorer, one(r.get(2)?));
    }
    if sessions {
        let mut stmt = conn.prepare_cached(
            "SELECT last_activity, scorer_id, verdict FROM judge_session_tasks
             WHERE experiment_id = ?1 AND last_activity >= ?2 AND last_activity < ?3
               AND state = 'done' AND verdict IS NOT NULL",
        )?;
        let mut q = stmt.query(params![experiment_id, from_ms, to_ms])?;
        while let Some(r) = q.next()? {
            let scorer: String = r.get(1)?;
            b.add(r.get(0)?, &scorer, one(r.get(2)?));
        }
    }
    b.finish(conn, experiment_id)
}

impl Store {
    /// An unfiltered judge series of one experiment from hourly rollups.
    pub async fn judge_rollup_series(
        &self,
        experiment_id: i64,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<JudgeSeries> {
        if bucket_ms <= 0 || bucket_ms % HOUR_MS != 0 || to_ms <= from_ms {
            return Err(StoreError::Invalid(
                "rollup buckets must be whole hours over a non-empty range".into(),
            ));
        }
        let (series, fresh) = self
            .read(move |c| {
                let fresh = recompute_dirty(c, experiment_id)?;
                let s = rollup_series(c, experiment_id, from_ms, to_ms, bucket_ms, &fresh)?;
                Ok((s, fresh))
            })
            .await?;
        if !fresh.is_empty() {
            // Derived data: losing this write costs only a recompute later.
            let store = self.clone();
            tokio::spawn(async move {
                if let Err(e) = store.write(move |c| store_recomputed(c, &fresh)).await {
                    tracing::debug!(error = %e, "could not store judge rollups; will retry on next read");
                }
            });
        }
        Ok(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_and_drop_outsiders() {
        let mut b = Builder::new(5 * HOUR_MS + 10, 8 * HOUR_MS, HOUR_MS);
        assert_eq!(b.starts.len(), 3);
        let pass = Tally {
            passed: 1,
            verdicts: 1,
        };
        let fail = Tally {
            passed: 0,
            verdicts: 1,
        };
        b.add(5 * HOUR_MS, "a", pass);
        b.add(5 * HOUR_MS + 1, "a", fail);
        b.add(7 * HOUR_MS, "a", pass);
        b.add(8 * HOUR_MS, "a", pass); // past the end
        b.add(4 * HOUR_MS, "a", pass); // before the start
        let line = &b.by_scorer["a"];
        assert_eq!(
            line[0],
            Tally {
                passed: 1,
                verdicts: 2
            }
        );
        assert_eq!(line[1], Tally::default());
        assert_eq!(line[2], pass);
        assert_eq!(line[0].rate(), Some(0.5));
        assert_eq!(line[1].rate(), None);
    }
}
