//! Who may use the dashboard.
//!
//! - **Token.** When one is set, every request carries it: `Authorization: Bearer <token>`, or
//!   the `queuexec_dashboard` cookie (HttpOnly, SameSite=Strict) that `GET /?token=<token>`
//!   sets before redirecting to `/` (so the token leaves the address bar and history).
//! - **Host.** Without a token the dashboard listens on loopback only, and a request must name
//!   a loopback host (`localhost`, `127.x.y.z`, `[::1]`): a web page whose domain an attacker
//!   points at 127.0.0.1 (DNS rebinding) is refused.
//! - **Cross-site requests.** A `POST` is refused when `Sec-Fetch-Site` says another site, or
//!   when `Origin` is not this dashboard's own; and it needs the `X-Queuexec-Csrf` header with
//!   the value `GET /api/csrf` returns (readable only by this origin), unless it carries the
//!   bearer header (which a browser never adds by itself).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use queuexec_core::{Error, Result};
use subtle::ConstantTimeEq;

use crate::routes::AppState;

/// The cookie the page's token travels in.
pub(crate) const COOKIE: &str = "queuexec_dashboard";
/// The header a `POST` carries its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-queuexec-csrf";

pub(crate) struct Auth {
    token: Option<String>,
    /// Listening on loopback: requests must name a loopback host (when there is no token).
    loopback: bool,
    csrf: String,
}

impl Auth {
    pub(crate) fn new(token: Option<String>, loopback: bool) -> Result<Auth> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Config(format!("no randomness for the CSRF token: {e}"), None))?;
        Ok(Auth {
            token,
            loopback,
            csrf: hex::encode(bytes),
        })
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            Some(t) => bool::from(t.as_bytes().ct_eq(given.as_bytes())),
            None => false,
        }
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": why }).to_string(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The host part of a `Host` header value (`[::1]:80` → `::1`, `localhost:80` → `localhost`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware in front of every route.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if auth.token.is_none() && auth.loopback && !is_loopback_host(&host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this dashboard has no token and answers only requests for a loopback host \
             (localhost, 127.0.0.1, [::1]); set a dashboard token to reach it by another name",
        );
    }
    let by_bearer = bearer(headers).is_some_and(|t| auth.token_matches(t));
    if auth.token.is_some() && !by_bearer {
        let by_cookie = cookie(headers, COOKIE).is_some_and(|t| auth.token_matches(t));
        if !by_cookie {
            // `/?token=...` logs the browser in: the token goes into a cookie, out of the URL.
            if req.method() == Method::GET && req.uri().path() == "/" {
                let given = req.uri().query().and_then(|q| {
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == "token")
                        .map(|(_, v)| v.to_string())
                });
                if let Some(given) = given {
                    if auth.token_matches(&given) {
                        return (
                            StatusCode::SEE_OTHER,
                            [
                                (header::LOCATION, "/".to_string()),
                                (
                                    header::SET_COOKIE,
                                    format!("{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict"),
                                ),
                                (header::REFERRER_POLICY, "no-referrer".to_string()),
                            ],
                        )
                            .into_response();
                    }
                    return refuse(StatusCode::UNAUTHORIZED, "wrong dashboard token");
                }
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: open /?token=<token> in a browser, or send \
                 `Authorization: Bearer <token>`",
            );
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && site != "same-origin"
            && site != "none"
        {
            return refuse(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Sec-Fetch-Site)",
            );
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(&host));
            if !ok {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "cross-site request refused (Origin is not this dashboard)",
                );
            }
        }
        if !by_bearer {
            let csrf_ok = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| bool::from(v.as_bytes().ct_eq(auth.csrf.as_bytes())));
            if !csrf_ok {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-Queuexec-Csrf header: take its value from GET /api/csrf \
                     (or authenticate with the bearer header)",
                );
            }
        }
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost:8080",
            "127.0.0.1:1",
            "127.3.4.5",
            "[::1]:9",
            "a.localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:80", "[2001:db8::1]:80", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; queuexec_dashboard=secret; b=2"
                .parse()
                .expect("header"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("secret"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
