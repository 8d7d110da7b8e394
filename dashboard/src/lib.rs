//! The master's dashboard: one web page (its HTML, JS and CSS are compiled into the binary, so
//! it works offline), a JSON API under `/api/`, server-sent events at `/api/events`, and
//! Prometheus metrics at `/metrics`, served by axum.
//!
//! A crate of its own so that `queuexec-core` does not compile an HTTP stack: the CLI and the
//! bindings depend on it; the core only answers the questions (`Master::job`, `overview`,
//! `dead_letters`, `workers`, `retry_dead`, `discard_dead`, `metrics_text`).
//!
//! Safe by default (see [`DashboardConfig`] and `auth.rs`): loopback only unless a token is
//! set; with a token every request must carry it (`Authorization: Bearer`, or the cookie the
//! page sets after `/?token=`); every `POST` is refused from other sites (`Origin`,
//! `Sec-Fetch-Site`) and needs the CSRF token of `GET /api/csrf` unless it carries the bearer
//! header.

mod auth;
mod routes;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use queuexec_core::{Error, Master, Result};
use tokio::sync::oneshot;

/// The environment variable a dashboard token is read from when none is given.
pub const TOKEN_ENV: &str = "QUEUEXEC_DASHBOARD_TOKEN";

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where and how to serve the dashboard.
#[derive(Debug, Clone, Default)]
pub struct DashboardConfig {
    /// `IP:PORT`, `localhost:PORT` or a bare `PORT` (loopback). Port 0 picks a free one.
    pub addr: String,
    /// The token every request must carry. Required for an address that is not loopback;
    /// `None` reads [`TOKEN_ENV`].
    pub token: Option<String>,
}

impl DashboardConfig {
    /// A dashboard on `addr`, token from [`TOKEN_ENV`] if set.
    pub fn new(addr: impl Into<String>) -> Self {
        DashboardConfig {
            addr: addr.into(),
            token: None,
        }
    }
}

/// A running dashboard. Stops when [`Dashboard::stop`] is called or when it is dropped.
pub struct Dashboard {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Parses a dashboard address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `PORT`.
pub fn parse_addr(addr: &str) -> Result<SocketAddr> {
    let addr = addr.trim();
    let bad = || {
        Error::Config(
            format!(
                "dashboard address {addr:?} is not IP:PORT, localhost:PORT or a port number \
                 (examples: 127.0.0.1:9090, [::1]:9090, 9090, 0.0.0.0:9090 with a token)"
            ),
            None,
        )
    };
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = addr.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    addr.parse::<SocketAddr>().map_err(|_| bad())
}

/// The token to use: the given one, else [`TOKEN_ENV`]; checked.
fn resolve_token(token: Option<&str>) -> Result<Option<String>> {
    let token = match token.filter(|t| !t.is_empty()) {
        Some(t) => Some(t.to_string()),
        None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
    };
    if let Some(t) = &token {
        if t.len() < MIN_TOKEN_LEN {
            return Err(Error::Config(
                format!(
                    "the dashboard token must be at least {MIN_TOKEN_LEN} characters (got {}); \
                     generate one, e.g. `openssl rand -hex 16`",
                    t.len()
                ),
                None,
            ));
        }
        if !t.chars().all(|c| c.is_ascii_graphic()) || t.contains(';') || t.contains(',') {
            return Err(Error::Config(
                "the dashboard token may hold only printable ASCII without spaces, `;` or `,` \
                 (it travels in a header and a cookie)"
                    .into(),
                None,
            ));
        }
    }
    Ok(token)
}

impl DashboardConfig {
    /// Checks the address and the token without listening (front ends call it before they
    /// start the master, so a bad option costs nothing).
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    fn resolve(&self) -> Result<(SocketAddr, Option<String>)> {
        let addr = parse_addr(&self.addr)?;
        let token = resolve_token(self.token.as_deref())?;
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(Error::Config(
                format!(
                    "the dashboard would listen on {addr}, which is not loopback, without a \
                     token: anyone who reaches it could retry and discard jobs. Give a token \
                     (--dashboard-token, the `dashboardToken` / `dashboard_token` option, or \
                     {TOKEN_ENV}) or listen on 127.0.0.1"
                ),
                None,
            ));
        }
        Ok((addr, token))
    }
}

impl Dashboard {
    /// Starts serving `master` on `config.addr`. Refuses an address that is not loopback
    /// unless a token is set.
    pub async fn start(master: Master, config: DashboardConfig) -> Result<Dashboard> {
        let (addr, token) = config.resolve()?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Network(
                format!("the dashboard cannot listen on {addr}: {e}"),
                Some(Box::new(e)),
            )
        })?;
        let local = listener.local_addr().map_err(|e| {
            Error::Network(
                format!("the dashboard's address is unknown: {e}"),
                Some(Box::new(e)),
            )
        })?;
        let state = Arc::new(routes::AppState {
            master,
            auth: auth::Auth::new(token, local.ip().is_loopback())?,
        });
        let app = routes::router(state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!("the dashboard stopped: {e}");
            }
        });
        tracing::info!("dashboard on http://{local}/");
        Ok(Dashboard {
            addr: local,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The address it listens on (with the port picked when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops serving; open event streams end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Event streams never end by themselves: give them a moment, then cut them.
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::debug!("the dashboard's open connections were cut");
            }
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_addr("9090").expect("port"),
            "127.0.0.1:9090".parse().expect("addr")
        );
        assert_eq!(
            parse_addr("localhost:0").expect("localhost"),
            "127.0.0.1:0".parse().expect("addr")
        );
        assert_eq!(
            parse_addr("[::1]:80").expect("v6"),
            "[::1]:80".parse().expect("addr")
        );
        let err = parse_addr("example.com:80").expect_err("a name is refused");
        assert!(err.to_string().contains("IP:PORT"), "{err}");
    }

    #[test]
    fn tokens_are_checked() {
        assert!(resolve_token(Some("short")).is_err());
        assert!(resolve_token(Some("has space in the middle")).is_err());
        assert_eq!(
            resolve_token(Some("0123456789abcdef")).expect("ok"),
            Some("0123456789abcdef".to_string())
        );
    }
}
