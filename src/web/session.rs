//! UI sessions and CSRF protection.
//!
//! With `--auth-token`, `/login` takes the token as a password and starts a
//! session: a 256-bit random id in a `tracebox_session` cookie (HttpOnly,
//! SameSite=Strict, `Secure` when the request came over https through a
//! proxy that says so), kept server-side in [`Sessions`] so logout revokes
//! it. Sessions live in memory: a restart logs everyone out.
//!
//! Every UI form carries a CSRF token that must match: the session's own
//! random token when logged in, otherwise (auth off, or the login form) a
//! random `tracebox_csrf` cookie (double submit). Requests whose `Origin` is
//! another origin, or that the browser labels cross-site, are refused on top.
//! Requests authenticated with an `Authorization` header carry no ambient
//! credential and need no CSRF token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use parking_lot::Mutex;
use serde::Deserialize;

use super::assets::asset;
use super::error::WebError;
use crate::api::auth::constant_time_eq;
use crate::app::AppState;

pub const SESSION_COOKIE: &str = "tracebox_session";
pub const CSRF_COOKIE: &str = "tracebox_csrf";
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after login, used or not.
const ABSOLUTE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Beyond this many live sessions the least recently used are dropped, so
/// repeated logins cannot grow memory without bound.
const MAX_SESSIONS: usize = 10_000;
/// Slows password guessing; the token is at least 8 characters.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(400);

struct Session {
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Server-side session store. A `parking_lot::Mutex` around a map: held
/// only for a lookup or an insert, never across I/O or an `.await`.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 256 random bits from the operating system, as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS RNG failing is unrecoverable and must not yield a guessable id.
    getrandom::fill(&mut b).expect("operating system random number generator");
    hex::encode(b)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

impl Sessions {
    /// Starts a session; returns its id.
    pub fn create(&self) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The CSRF token of the live session named by the request's cookie.
    pub fn lookup(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut map = self.map.lock();
        let s = map.get_mut(id)?;
        if !alive(s, now) {
            map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.csrf.clone())
    }

    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.map.lock().remove(id);
        }
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

/// Whether the request reached us over https (as a TLS-terminating proxy
/// reports it); cookies then get `Secure`. Trusting the header is safe for
/// this purpose: a forged one only makes the cookie stricter.
fn is_https(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    h("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || h("forwarded").is_some_and(|f| f.to_ascii_lowercase().contains("proto=https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if is_https(headers) { "; Secure" } else { "" };
    let v = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// False when the browser tells us the request comes from another origin.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = h("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = h("origin") else {
        return true;
    };
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    // Behind a reverse proxy the Host header may be the upstream's; the
    // proxy's X-Forwarded-Host then names what the browser saw. A page on
    // another site cannot set that header on a victim's request (it is not
    // CORS-safelisted), so trusting it here opens nothing.
    let forwarded = h("x-forwarded-host").and_then(|v| v.split(',').next().map(str::trim));
    [h("host"), forwarded]
        .into_iter()
        .flatten()
        .any(|host| origin_host.eq_ignore_ascii_case(host))
}

/// Per-request UI context, put in the request's extensions by [`context`].
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Token forms must echo.
    pub csrf: String,
    /// Logged in with a session (a logout button makes sense).
    pub logged_in: bool,
    /// Authenticated by an `Authorization` header: no ambient credential.
    pub header_auth: bool,
    pub auth_enabled: bool,
}

impl Ctx {
    /// Checks a submitted form's token and the request's origin.
    pub fn verify(&self, headers: &HeaderMap, submitted: &str) -> Result<(), WebError> {
        if self.header_auth {
            return Ok(());
        }
        if !same_origin(headers) {
            return Err(WebError::forbidden(
                "This form was submitted from another site and was refused.",
            ));
        }
        if self.csrf.is_empty() || !constant_time_eq(self.csrf.as_bytes(), submitted.as_bytes()) {
            return Err(WebError::forbidden(
                "The form's security token is missing or stale. Reload the page and try again.",
            ));
        }
        Ok(())
    }
}

/// Middleware for UI routes: works out the CSRF token (setting the
/// pre-session cookie when there is none yet) and hands a [`Ctx`] to the
/// handler.
pub async fn context(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let header_auth = app.auth.enabled()
        && headers.contains_key(header::AUTHORIZATION)
        && app.auth.check_headers(headers);
    let session_csrf = app.login_sessions.lookup(headers);
    let mut new_cookie = None;
    let csrf = match (&session_csrf, cookie(headers, CSRF_COOKIE)) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            c.to_string()
        }
        (None, _) => {
            let t = random_token();
            new_cookie = Some(set_cookie(headers, CSRF_COOKIE, &t, ABSOLUTE));
            t
        }
    };
    let ctx = Ctx {
        csrf,
        logged_in: session_csrf.is_some(),
        header_auth,
        auth_enabled: app.auth.enabled(),
    };
    req.extensions_mut().insert(ctx);
    let mut resp = next.run(req).await;
    if let Some(c) = new_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Only local paths: never `//host` or `/\host`, which browsers treat as
/// other sites.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    csrf: String,
    error: Option<String>,
    css: String,
    js: String,
}

impl LoginPage {
    fn new(next: String, csrf: String, error: Option<String>) -> Self {
        LoginPage {
            next,
            csrf,
            error,
            css: asset("app.css"),
            js: asset("app.js"),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "bounce.html")]
struct Bounce {
    target: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    #[serde(default)]
    bounced: Option<String>,
}

pub async fn login_page(
    State(app): State<AppState>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if !app.auth.enabled() || ctx.logged_in {
        return Redirect::to(&next).into_response();
    }
    // Arriving from another site's link, the SameSite=Strict cookie was
    // withheld; one same-site hop lets the browser send it.
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site" || s == "same-site");
    if cross_site && q.bounced.is_none() {
        let target = format!(
            "/login?bounced=1&next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        return Bounce { target }.into_response();
    }
    LoginPage::new(next, ctx.csrf, None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    State(app): State<AppState>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if !app.auth.enabled() {
        return Redirect::to(&next).into_response();
    }
    if let Err(e) = ctx.verify(&headers, &form.csrf) {
        return e.into_response();
    }
    if form.token.is_empty() || !app.auth.token_matches(&form.token) {
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        let mut resp =
            LoginPage::new(next, ctx.csrf, Some("That token is not right.".into())).into_response();
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    // A fresh id at every login: a planted cookie cannot become a session.
    app.login_sessions.remove(&headers);
    let id = app.login_sessions.create();
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &id, ABSOLUTE),
    );
    resp
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(app): State<AppState>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Err(e) = ctx.verify(&headers, &form.csrf) {
        return e.into_response();
    }
    app.login_sessions.remove(&headers);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", Duration::ZERO),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn sessions_start_end_and_are_found_by_cookie() {
        let s = Sessions::default();
        let id = s.create();
        let h = headers(&[("cookie", &format!("a=b; {SESSION_COOKIE}={id}"))]);
        let csrf = s.lookup(&h).unwrap();
        assert_eq!(csrf.len(), 64);
        assert!(
            s.lookup(&headers(&[("cookie", "tracebox_session=nope")]))
                .is_none()
        );
        s.remove(&h);
        assert!(s.lookup(&h).is_none());
    }

    #[test]
    fn origin_checks() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:5000")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://127.0.0.1:5000")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("x-forwarded-host", "tracebox.example.com"),
            ("origin", "https://tracebox.example.com")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
    }

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/traces/tr-1")), "/traces/tr-1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
