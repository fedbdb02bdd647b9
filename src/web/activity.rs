//! What the sessions and users pages share: the form above their lists (a
//! time range on last activity, and on the sessions list a user box),
//! assessment counts as chips and the share of positive feedback as a bar.
//!
//! Turns the store's aggregate numbers into text; reads nothing itself.

use super::format;
use super::range::{self, RangeOption, TimeRange};
use crate::store::sessions::{AssessmentCounts, Tokens};

/// The form above a list of sessions or users (`templates/list_form.html`).
pub struct ListForm {
    /// Where the form submits (the list itself).
    pub base: String,
    /// The user box and its value, on the sessions list only.
    pub user: Option<String>,
    pub ranges: Vec<RangeOption>,
    pub custom_range: bool,
    pub range_error: Option<String>,
    pub from: String,
    pub to: String,
    pub tz: String,
}

/// The picker's choice as a window on last activity, with the form that
/// shows it. A custom range that does not parse shows its error and lists
/// all time.
pub fn list_form(
    base: String,
    user: Option<String>,
    (key, from, to, tz): (&str, &str, &str, &str),
    now: i64,
) -> (ListForm, TimeRange) {
    let (range, range_error) = match range::resolve(key, from, to, tz, now, "all") {
        Ok(r) => (r, None),
        Err(e) => (
            TimeRange {
                key: "all".into(),
                from_ms: None,
                to_ms: None,
            },
            Some(e),
        ),
    };
    let form = ListForm {
        base,
        user,
        ranges: range::options(&range.key, true),
        custom_range: range.key == "custom",
        range_error,
        from: from.to_string(),
        to: to.to_string(),
        tz: tz.to_string(),
    };
    (form, range)
}

/// The store's inclusive last-activity bounds for a range (whose end is
/// exclusive).
pub fn bounds(r: &TimeRange) -> (Option<i64>, Option<i64>) {
    (r.from_ms, r.to_ms.map(|t| t - 1))
}

/// A count shown as a small coloured label (`3 ▲`, `2 expected`).
pub struct CountChip {
    pub class: &'static str,
    /// An icon from `macros.html` (`up`, `down`) or empty.
    pub icon: &'static str,
    pub label: String,
    pub title: String,
}

/// Assessment counts as chips: positive, negative, other feedback,
/// expectations, and how many judge the session as a whole.
pub fn count_chips(c: &AssessmentCounts, session_level: Option<i64>) -> Vec<CountChip> {
    let mut out = Vec::new();
    let by_people = |n: i64| {
        if n > 0 {
            format!(" ({} from people)", format::int(n))
        } else {
            String::new()
        }
    };
    if c.positive > 0 {
        out.push(CountChip {
            class: "pos",
            icon: "up",
            label: format::int(c.positive),
            title: format!(
                "{} positive{}",
                format::int(c.positive),
                by_people(c.human_positive)
            ),
        });
    }
    if c.negative > 0 {
        out.push(CountChip {
            class: "neg",
            icon: "down",
            label: format::int(c.negative),
            title: format!(
                "{} negative{}",
                format::int(c.negative),
                by_people(c.human_negative)
            ),
        });
    }
    let other = c.feedback - c.positive - c.negative;
    if other > 0 {
        out.push(CountChip {
            class: "neu",
            icon: "",
            label: format!("{} other", format::int(other)),
            title: "Feedback that is neither good nor bad (labels, 1-5 ratings, ...)".into(),
        });
    }
    if c.expectations > 0 {
        out.push(CountChip {
            class: "exp",
            icon: "",
            label: format!("{} expected", format::int(c.expectations)),
            title: format!(
                "{} expectations (ground truth)",
                format::int(c.expectations)
            ),
        });
    }
    if let Some(n) = session_level.filter(|n| *n > 0) {
        out.push(CountChip {
            class: "ses",
            icon: "",
            label: format!("{} on session", format::int(n)),
            title: format!(
                "{} assessments judge the conversation as a whole",
                format::int(n)
            ),
        });
    }
    out
}

/// The share of positive feedback, as a number and a bar.
pub struct Share {
    pub label: String,
    /// The bar's width out of 100 (an SVG attribute: CSP allows no inline style).
    pub width: String,
    /// `good`, `mid` or `bad`.
    pub tone: &'static str,
    pub title: String,
}

pub fn share(pos: i64, neg: i64, human_pos: i64, human_neg: i64) -> Option<Share> {
    if pos + neg == 0 {
        return None;
    }
    let f = pos as f64 / (pos + neg) as f64;
    let mut title = format!(
        "{} of {} rated feedback positive",
        format::int(pos),
        format::int(pos + neg)
    );
    if human_pos + human_neg > 0 {
        title.push_str(&format!(
            "; from people: {} of {}",
            format::int(human_pos),
            format::int(human_pos + human_neg)
        ));
    }
    Some(Share {
        label: format::percent(f),
        width: format!("{:.1}", f * 100.0),
        tone: if f >= 0.75 {
            "good"
        } else if f >= 0.5 {
            "mid"
        } else {
            "bad"
        },
        title,
    })
}

pub fn tokens_title(t: &Tokens) -> String {
    format!(
        "{} in · {} out",
        format::int(t.input),
        format::int(t.output)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_and_shares_read_the_counts() {
        let c = AssessmentCounts {
            feedback: 6,
            positive: 3,
            negative: 1,
            human_feedback: 2,
            human_positive: 1,
            human_negative: 1,
            expectations: 2,
        };
        let chips = count_chips(&c, Some(1));
        let labels: Vec<&str> = chips.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["3", "1", "2 other", "2 expected", "1 on session"]);
        assert!(chips[0].title.contains("1 from people"));
        assert!(count_chips(&AssessmentCounts::default(), Some(0)).is_empty());
        let s = share(3, 1, 1, 1).unwrap();
        assert_eq!(
            (s.label.as_str(), s.width.as_str(), s.tone),
            ("75%", "75.0", "good")
        );
        assert!(s.title.contains("from people: 1 of 2"));
        assert!(share(0, 0, 0, 0).is_none());
        assert_eq!(share(1, 3, 0, 0).unwrap().tone, "bad");
    }

    #[test]
    fn forms_resolve_ranges_and_keep_bad_ones_visible() {
        let now = 1_800_000_000_000;
        let (f, r) = list_form("/x".into(), None, ("24h", "", "", ""), now);
        assert_eq!(bounds(&r), (Some(now - 86_400_000), None));
        assert!(f.range_error.is_none() && !f.custom_range);
        let (f, r) = list_form("/x".into(), None, ("custom", "soon", "", ""), now);
        assert!(f.range_error.is_some());
        assert_eq!(bounds(&r), (None, None));
        let (_, r) = list_form(
            "/x".into(),
            None,
            ("custom", "2026-01-01T00:00", "2026-01-02T00:00", "0"),
            now,
        );
        assert_eq!(bounds(&r).1, Some(1_767_312_000_000 - 1));
    }
}
