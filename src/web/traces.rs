//! The trace list of one experiment: filter (MLflow's grammar, with parse
//! errors pointed at), full-text search (`q`, the API's `text`), time range,
//! sort and keyset pagination, all carried in the URL so a view can be
//! shared as a link. Full-text matches are highlighted in the previews and
//! shown as snippets from the spans that matched (`QueryEngine::snippets`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::error::{WebError, WebResult};
use super::format;
use super::layout::Chrome;
use super::paging;
use super::range::{self, RangeOption};
use super::session::Ctx;
use super::sessions::session_href;
use super::users::user_href;
use crate::app::AppState;
use crate::domain::{Assessment, AssessmentKind, TraceInfo, TraceState, now_ms};
use crate::query::{QueryError, SearchRequest, Snippet, check_filter, text_fragment};

/// Rows per page: what fits a laptop screen twice over.
pub const PAGE_SIZE: usize = 50;

/// The list's URL parameters; every one is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub filter: String,
    pub q: String,
    pub range: String,
    pub from: String,
    pub to: String,
    pub tz: String,
    pub sort: String,
    pub dir: String,
    pub page_token: String,
    pub trail: String,
}

impl ListQuery {
    fn params(&self) -> [(&'static str, &str); 10] {
        [
            ("filter", &self.filter),
            ("q", &self.q),
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
            ("sort", &self.sort),
            ("dir", &self.dir),
            ("page_token", &self.page_token),
            ("trail", &self.trail),
        ]
    }

    /// This view's URL with some parameters replaced (see [`paging::href`]).
    pub fn href(&self, base: &str, set: &[(&str, &str)]) -> String {
        paging::href(base, &self.params(), set)
    }
}

/// A filter error, split around the place it points at.
pub struct FilterError {
    pub message: String,
    /// A likely fix, for the common mistakes.
    pub hint: Option<String>,
    pub position: Option<usize>,
    pub before: String,
    pub at: String,
    pub after: String,
}

impl FilterError {
    pub fn from_query(filter: &str, e: QueryError) -> Result<FilterError, WebError> {
        match e {
            QueryError::Filter {
                message,
                position,
                token,
            } => {
                let chars: Vec<char> = filter.chars().collect();
                let pos = position.min(chars.len());
                let len = if token == "<end of filter>" {
                    0
                } else {
                    token.chars().count().min(chars.len() - pos)
                };
                Ok(FilterError {
                    hint: hint(&message),
                    message,
                    position: Some(position),
                    before: chars[..pos].iter().collect(),
                    at: chars[pos..pos + len].iter().collect(),
                    after: chars[pos + len..].iter().collect(),
                })
            }
            QueryError::Invalid(message) => Ok(FilterError {
                hint: hint(&message),
                message,
                position: None,
                before: String::new(),
                at: String::new(),
                after: String::new(),
            }),
            other => Err(other.into()),
        }
    }

    pub fn at_end(&self) -> bool {
        self.at.is_empty()
    }
}

/// Advice for the mistakes people make most with the grammar.
fn hint(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("Invalid attribute key '") {
        let key = rest.split('\'').next().unwrap_or_default();
        return Some(format!(
            "Tags and metadata need their prefix: tags.{key} or metadata.{key} \
             (back-quote keys with dots: tags.`a.b`)."
        ));
    }
    if message.contains("not quoted") {
        return Some("Put string values in quotes: name = 'chat'.".into());
    }
    None
}

/// An assessment as a small coloured label.
pub struct Chip {
    pub name: String,
    pub value: String,
    /// `pos`, `neg`, `neu`, `exp` (expectation) or `err`.
    pub class: &'static str,
    pub title: String,
}

/// How an assessment's value reads in a chip.
pub fn chip(a: &Assessment) -> Chip {
    use serde_json::Value;
    let value = match &a.value {
        _ if a.error.is_some() && a.value.is_none() => "error".to_string(),
        None | Some(Value::Null) => "—".to_string(),
        Some(Value::Bool(true)) => "yes".into(),
        Some(Value::Bool(false)) => "no".into(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => format::truncate(s, 24),
        Some(other) => format::truncate(&other.to_string(), 24),
    };
    let class = if a.error.is_some() && a.value.is_none() {
        "err"
    } else if a.kind == AssessmentKind::Expectation {
        "exp"
    } else {
        match a.is_positive() {
            Some(true) => "pos",
            Some(false) => "neg",
            None => "neu",
        }
    };
    let mut title = format!(
        "{} ({}, {})",
        a.name,
        a.kind.as_str(),
        a.source.source_type.as_str()
    );
    if let Some(r) = &a.rationale {
        title.push_str(": ");
        title.push_str(&format::truncate(r, 200));
    }
    Chip {
        name: format::truncate(&a.name, 24),
        value,
        class,
        title,
    }
}

/// Status as a badge: (css class, label).
pub fn status(state: TraceState) -> (&'static str, &'static str) {
    match state {
        TraceState::Ok => ("ok", "OK"),
        TraceState::Error => ("error", "Error"),
        TraceState::InProgress => ("running", "Running"),
        TraceState::Unspecified => ("unknown", "—"),
    }
}

/// A link to the list filtered on a tag or metadata value.
pub struct FacetLink {
    pub label: String,
    pub href: String,
}

/// Filter-grammar string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The list of `experiment_id` filtered to traces whose `key` (a tag, or
/// else metadata) equals `value`.
pub fn facet(info: &TraceInfo, key: &str, value: &str) -> FacetLink {
    let entity = if info.tags.contains_key(key) {
        "tags"
    } else {
        "metadata"
    };
    let filter = format!("{entity}.`{key}` = {}", quote(value));
    let q = ListQuery {
        filter,
        ..Default::default()
    };
    FacetLink {
        label: format::truncate(value, 32),
        href: q.href(&format!("/experiments/{}/traces", info.experiment_id), &[]),
    }
}

/// Where a full-text query matched inside a trace: one span field.
pub struct Hit {
    /// Which field (`name`, `inputs`, `outputs`, `exception`).
    pub field: String,
    /// The trace page with that span selected.
    pub href: String,
    pub parts: Vec<format::Part>,
}

pub struct Row {
    pub href: String,
    pub trace_id: String,
    pub time_iso: String,
    pub time_label: String,
    pub name: String,
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub latency: String,
    pub tokens: String,
    pub user: Option<FacetLink>,
    pub session: Option<FacetLink>,
    pub request: Vec<format::Part>,
    pub response: Vec<format::Part>,
    pub chips: Vec<Chip>,
    pub more_chips: usize,
    /// Full-text matches in the trace's spans (empty without `q`).
    pub hits: Vec<Hit>,
}

/// Characters of request/response shown per row.
const PREVIEW_CHARS: usize = 160;

/// A preview as one line, around the first match of the full-text query
/// `q` (highlighted by the index's analyzer, so it marks what matched), or
/// its start.
fn preview_parts(raw: &str, is_request: bool, q: &str) -> Vec<format::Part> {
    let text = format::preview_text(raw, is_request);
    match (!q.is_empty()).then(|| text_fragment(&text, q)).flatten() {
        Some((fragment, marks)) => format::marked(&fragment, &marks),
        None => format::marked(&format::truncate(&text, PREVIEW_CHARS), &[]),
    }
}

fn row(info: &TraceInfo, q: &str, snippets: Vec<Snippet>) -> Row {
    let href = format!("/traces/{}", urlencode(&info.trace_id));
    let hits = snippets
        .into_iter()
        .map(|s| Hit {
            href: format!("{href}?span={}", s.span_id),
            parts: format::marked(&s.fragment, &s.highlights),
            field: s.field,
        })
        .collect();
    let (status_class, status_label) = status(info.state);
    let valid: Vec<&Assessment> = info.assessments.iter().filter(|a| a.valid).collect();
    let chips: Vec<Chip> = valid.iter().take(3).map(|a| chip(a)).collect();
    let user = info.user_id().map(|u| FacetLink {
        label: format::truncate(u, 32),
        href: user_href(info.experiment_id, u),
    });
    let session = info.session_id().map(|s| FacetLink {
        label: format::truncate(s, 32),
        href: session_href(info.experiment_id, s),
    });
    Row {
        href,
        trace_id: info.trace_id.clone(),
        time_iso: format::iso(info.request_time_ms),
        time_label: format::datetime(info.request_time_ms),
        name: info.name().unwrap_or("(unnamed)").to_string(),
        status_class,
        status_label,
        latency: info
            .execution_time_ms
            .map(|ms| format::duration_ms(ms as f64))
            .unwrap_or_default(),
        tokens: info
            .tokens
            .total_or_sum()
            .map(format::int)
            .unwrap_or_default(),
        user,
        session,
        request: info
            .request_preview
            .as_deref()
            .map(|p| preview_parts(p, true, q))
            .unwrap_or_default(),
        response: info
            .response_preview
            .as_deref()
            .map(|p| preview_parts(p, false, q))
            .unwrap_or_default(),
        more_chips: valid.len().saturating_sub(chips.len()),
        chips,
        hits,
    }
}

/// A path segment, percent-encoded (trace ids are client-chosen strings).
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub struct SortHeader {
    pub label: &'static str,
    pub class: &'static str,
    pub href: String,
    /// `ascending`, `descending` or `none` (for `aria-sort`).
    pub aria: &'static str,
}

/// Sortable columns: URL key, MLflow order-by key, label.
const SORTS: &[(&str, &str, &str)] = &[
    ("time", "timestamp_ms", "Time"),
    ("name", "name", "Name"),
    ("status", "status", "Status"),
    ("latency", "execution_time_ms", "Latency"),
];

/// Example filters shown under the filter box.
pub const EXAMPLES: &[&str] = &[
    "status = 'ERROR'",
    "execution_time_ms > 2000",
    "name LIKE '%chat%'",
    "tags.`mlflow.trace.user` = 'alice'",
    "metadata.`mlflow.trace.session` = 's-1'",
];

#[derive(Template, WebTemplate)]
#[template(path = "traces.html")]
pub struct TracesPage {
    chrome: Chrome,
    experiment_id: i64,
    query: ListQuery,
    base: String,
    ranges: Vec<RangeOption>,
    custom_range: bool,
    range_error: Option<String>,
    filter_error: Option<FilterError>,
    notice: Option<String>,
    rows: Vec<Row>,
    headers: Vec<SortHeader>,
    first_index: usize,
    last_index: usize,
    next_href: Option<String>,
    prev_href: Option<String>,
    first_href: Option<String>,
    clear_href: String,
    examples: &'static [&'static str],
    filtered: bool,
    server_url: String,
    dashboard_href: String,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    Query(mut query): Query<ListQuery>,
    headers: HeaderMap,
) -> WebResult<TracesPage> {
    let chrome = Chrome::new(&app, &ctx, "Traces", "traces", Some(experiment_id)).await?;
    let base = format!("/experiments/{experiment_id}/traces");
    let now = now_ms();
    let (range, range_error) =
        match range::resolve(&query.range, &query.from, &query.to, &query.tz, now, "all") {
            Ok(r) => (r, None),
            Err(e) => (
                range::resolve("all", "", "", "", now, "all").map_err(WebError::bad_request)?,
                Some(e),
            ),
        };
    let user_filter = query.filter.trim().to_string();
    let mut filter_error = None;
    if let Err(e) = check_filter(&user_filter) {
        filter_error = Some(FilterError::from_query(&user_filter, e)?);
    }
    let filter = match (user_filter.is_empty(), range.filter_clause()) {
        (true, r) => r,
        (false, None) => Some(user_filter.clone()),
        (false, Some(r)) => Some(format!("({user_filter}) AND {r}")),
    };
    let (sort_key, desc) = {
        let key = SORTS
            .iter()
            .find(|(k, _, _)| *k == query.sort)
            .unwrap_or(&SORTS[0]);
        let desc = match query.dir.as_str() {
            "asc" => false,
            "desc" => true,
            _ => key.0 == "time" || key.0 == "latency",
        };
        (key, desc)
    };
    let mut notice = None;
    let mut rows = Vec::new();
    let mut next_token = None;
    if filter_error.is_none() {
        let text = (!query.q.trim().is_empty()).then(|| query.q.trim().to_string());
        let req = |page_token: Option<String>| SearchRequest {
            experiment_ids: vec![experiment_id],
            filter: filter.clone(),
            order_by: vec![format!(
                "{} {}",
                sort_key.1,
                if desc { "DESC" } else { "ASC" }
            )],
            max_results: PAGE_SIZE,
            page_token,
            text: text.clone(),
        };
        let token = (!query.page_token.is_empty()).then(|| query.page_token.clone());
        let result = match app.query.search(req(token)).await {
            Err(QueryError::PageToken(_)) => {
                notice = Some(
                    "That page link belongs to another view of the list; showing the first page."
                        .to_string(),
                );
                query.page_token.clear();
                query.trail.clear();
                app.query.search(req(None)).await
            }
            other => other,
        };
        match result {
            Ok(page) => {
                let q = query.q.trim();
                let mut snippets = match &text {
                    Some(t) if !page.rows.is_empty() => {
                        app.query.snippets(page.rows.clone(), t.clone()).await?
                    }
                    _ => Default::default(),
                };
                rows = page
                    .traces
                    .iter()
                    .zip(&page.rows)
                    .map(|(t, id)| row(t, q, snippets.remove(id).unwrap_or_default()))
                    .collect();
                next_token = page.next_page_token;
            }
            Err(e @ (QueryError::Filter { .. } | QueryError::Invalid(_))) => {
                filter_error = Some(FilterError::from_query(&user_filter, e)?);
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Paging: the trail holds the tokens of the pages before this one.
    let pager = paging::pager(
        &query.trail,
        &query.page_token,
        next_token.as_deref(),
        |t, trail| query.href(&base, &[("page_token", t), ("trail", trail)]),
    );
    let headers_view = SORTS
        .iter()
        .map(|(k, _, label)| {
            let active = *k == sort_key.0;
            let next_dir = if active {
                if desc { "asc" } else { "desc" }
            } else if *k == "time" || *k == "latency" {
                "desc"
            } else {
                "asc"
            };
            SortHeader {
                label,
                class: if *k == "latency" { "num" } else { "" },
                href: query.href(&base, &[("sort", k), ("dir", next_dir)]),
                aria: match (active, desc) {
                    (false, _) => "none",
                    (true, true) => "descending",
                    (true, false) => "ascending",
                },
            }
        })
        .collect();
    let first_index = pager.first_row(PAGE_SIZE);
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:5000");
    Ok(TracesPage {
        chrome,
        experiment_id,
        ranges: range::options(&range.key, true),
        custom_range: range.key == "custom",
        range_error,
        filter_error,
        notice,
        last_index: first_index + rows.len().saturating_sub(1),
        first_index,
        rows,
        headers: headers_view,
        next_href: pager.next_href,
        prev_href: pager.prev_href,
        first_href: pager.first_href,
        clear_href: base.clone(),
        examples: EXAMPLES,
        filtered: !user_filter.is_empty() || !query.q.trim().is_empty() || range.key != "all",
        server_url: format!("http://{host}"),
        dashboard_href: ListQuery {
            filter: query.filter.clone(),
            q: query.q.clone(),
            range: query.range.clone(),
            from: query.from.clone(),
            to: query.to.clone(),
            tz: query.tz.clone(),
            ..Default::default()
        }
        .href(&format!("/experiments/{experiment_id}/dashboard"), &[]),
        base,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_keep_the_view_and_reset_paging() {
        let q = ListQuery {
            filter: "status = 'OK'".into(),
            page_token: "abc".into(),
            trail: "0".into(),
            ..Default::default()
        };
        assert_eq!(q.href("/x", &[]), "/x?filter=status+%3D+%27OK%27");
        assert_eq!(
            q.href("/x", &[("page_token", "t2"), ("trail", "0.abc")]),
            "/x?filter=status+%3D+%27OK%27&page_token=t2&trail=0.abc"
        );
    }

    #[test]
    fn parse_errors_are_split_at_their_position() {
        let f = "status = 'OK' AND foo = 1";
        let e = FilterError::from_query(f, check_filter(f).unwrap_err()).unwrap();
        assert_eq!(e.before, "status = 'OK' AND ");
        assert_eq!(e.at, "foo");
        assert_eq!(e.position, Some(18));
        assert!(e.hint.unwrap().contains("tags.foo"));
        let f = "status = ";
        let e = FilterError::from_query(f, check_filter(f).unwrap_err()).unwrap();
        assert!(e.at_end());
        assert_eq!(e.before, f);
    }

    #[test]
    fn quotes_double_up() {
        assert_eq!(quote("o'neil"), "'o''neil'");
    }
}
