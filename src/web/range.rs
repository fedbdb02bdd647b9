//! The time-range picker shared by the trace list and the dashboard:
//! presets (`24h`, `7d`, ...) or a custom from/to in the reader's time zone,
//! resolved to milliseconds since the epoch.

use chrono::NaiveDateTime;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// (key, label, length)
pub const PRESETS: &[(&str, &str, i64)] = &[
    ("15m", "Last 15 minutes", 15 * MIN),
    ("1h", "Last hour", HOUR),
    ("6h", "Last 6 hours", 6 * HOUR),
    ("24h", "Last 24 hours", DAY),
    ("7d", "Last 7 days", 7 * DAY),
    ("30d", "Last 30 days", 30 * DAY),
    ("90d", "Last 90 days", 90 * DAY),
];

#[derive(Debug, Clone, PartialEq)]
pub struct TimeRange {
    /// The preset key, `custom`, or `all`.
    pub key: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// One choice in the picker's menu.
pub struct RangeOption {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// Menu entries; `all` is offered where an unbounded range makes sense.
pub fn options(selected: &str, with_all: bool) -> Vec<RangeOption> {
    let mut out: Vec<RangeOption> = PRESETS
        .iter()
        .map(|(k, l, _)| RangeOption {
            key: k,
            label: l,
            selected: *k == selected,
        })
        .collect();
    if with_all {
        out.push(RangeOption {
            key: "all",
            label: "All time",
            selected: selected == "all",
        });
    }
    out.push(RangeOption {
        key: "custom",
        label: "Custom range…",
        selected: selected == "custom",
    });
    out
}

/// A `datetime-local` value (`2026-11-25T10:30`, seconds optional) in a
/// zone `tz_offset_min` minutes behind UTC (JavaScript's
/// `getTimezoneOffset`), as UTC milliseconds.
fn parse_local(s: &str, tz_offset_min: i64) -> Option<i64> {
    let s = s.trim();
    let dt = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .ok()?;
    Some(dt.and_utc().timestamp_millis() + tz_offset_min * MIN)
}

/// Resolves the picker's URL parameters; unknown keys fall back to
/// `default`, a custom range that does not parse is an error to show.
pub fn resolve(
    key: &str,
    from: &str,
    to: &str,
    tz: &str,
    now_ms: i64,
    default: &str,
) -> Result<TimeRange, String> {
    let key = if key.is_empty() { default } else { key };
    if key == "all" {
        return Ok(TimeRange {
            key: "all".into(),
            from_ms: None,
            to_ms: None,
        });
    }
    if key == "custom" {
        let tz: i64 = tz.trim().parse().unwrap_or(0);
        let f = (!from.trim().is_empty())
            .then(|| parse_local(from, tz).ok_or(format!("'{from}' is not a date and time")))
            .transpose()?;
        let t = (!to.trim().is_empty())
            .then(|| parse_local(to, tz).ok_or(format!("'{to}' is not a date and time")))
            .transpose()?;
        if let (Some(f), Some(t)) = (f, t)
            && t <= f
        {
            return Err("the end of the range is before its start".into());
        }
        return Ok(TimeRange {
            key: "custom".into(),
            from_ms: f,
            to_ms: t,
        });
    }
    match PRESETS.iter().find(|(k, _, _)| *k == key) {
        Some((k, _, len)) => Ok(TimeRange {
            key: k.to_string(),
            from_ms: Some(now_ms - len),
            to_ms: None,
        }),
        None if key != default => resolve(default, from, to, tz, now_ms, default),
        None => Ok(TimeRange {
            key: "all".into(),
            from_ms: None,
            to_ms: None,
        }),
    }
}

impl TimeRange {
    /// The range as filter-grammar conditions, or `None` when unbounded.
    pub fn filter_clause(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(f) = self.from_ms {
            parts.push(format!("timestamp_ms >= {f}"));
        }
        if let Some(t) = self.to_ms {
            parts.push(format!("timestamp_ms < {t}"));
        }
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_custom_and_errors() {
        let now = 1_800_000_000_000;
        let r = resolve("24h", "", "", "", now, "all").unwrap();
        assert_eq!(r.from_ms, Some(now - DAY));
        assert_eq!(
            r.filter_clause().unwrap(),
            format!("timestamp_ms >= {}", now - DAY)
        );
        assert_eq!(resolve("", "", "", "", now, "7d").unwrap().key, "7d");
        assert_eq!(resolve("bogus", "", "", "", now, "all").unwrap().key, "all");
        let c = resolve(
            "custom",
            "2026-01-01T10:00",
            "2026-01-01T12:00",
            "-60",
            now,
            "all",
        )
        .unwrap();
        // 10:00 at UTC+1 is 09:00 UTC.
        assert_eq!(c.from_ms, Some(1_767_258_000_000));
        assert!(resolve("custom", "yesterday", "", "", now, "all").is_err());
        assert!(
            resolve(
                "custom",
                "2026-01-02T00:00",
                "2026-01-01T00:00",
                "",
                now,
                "all"
            )
            .is_err()
        );
        assert_eq!(
            resolve("all", "", "", "", now, "7d")
                .unwrap()
                .filter_clause(),
            None
        );
    }
}
