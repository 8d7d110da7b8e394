//! The routes: the page and its assets, `/metrics`, and the JSON API under `/api/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use queuexec_core::Master;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Auth};

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) master: Master,
    pub(crate) auth: Auth,
}

type St = State<Arc<AppState>>;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How often the event stream sends an update.
const UPDATE_EVERY: Duration = Duration::from_millis(500);
/// Dead letters sent with each update.
const DEAD_IN_UPDATE: usize = 50;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/metrics", get(metrics))
        .route("/api/csrf", get(csrf))
        .route("/api/info", get(info))
        .route("/api/overview", get(overview))
        .route("/api/workers", get(workers))
        .route("/api/jobs/{id}", get(job))
        .route("/api/dead", get(dead))
        .route("/api/dead/retry", post(retry_dead))
        .route("/api/dead/discard", post(discard_dead))
        .route("/api/events", get(events))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn closed(e: queuexec_core::Error) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: see the README's Dashboard section for the API",
    )
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

async fn metrics(State(s): St) -> Response {
    match s.master.metrics_text().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => closed(e),
    }
}

async fn csrf(State(s): St) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "csrf": s.auth.csrf(), "header": auth::CSRF_HEADER })),
    )
        .into_response()
}

async fn info(State(s): St) -> Response {
    Json(json!({
        "peer_id": s.master.peer_id(),
        "listen_addrs": s.master.listen_addrs(),
        "version": queuexec_core::VERSION,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct OverviewQuery {
    seconds: Option<u32>,
}

async fn overview(State(s): St, Query(q): Query<OverviewQuery>) -> Response {
    match s.master.overview(q.seconds.unwrap_or(120)).await {
        Ok(o) => Json(o).into_response(),
        Err(e) => closed(e),
    }
}

async fn workers(State(s): St) -> Response {
    match s.master.workers().await {
        Ok(w) => Json(w).into_response(),
        Err(e) => closed(e),
    }
}

async fn job(State(s): St, Path(id): Path<String>) -> Response {
    match s.master.job(&id).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no job {id:?}: the master knows queued, delayed and running jobs and the last \
                 10,000 finished since it started"
            ),
        ),
        Err(e) => closed(e),
    }
}

#[derive(Deserialize)]
struct DeadQuery {
    limit: Option<usize>,
}

async fn dead(State(s): St, Query(q): Query<DeadQuery>) -> Response {
    match s.master.dead_letters(q.limit.unwrap_or(100)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => closed(e),
    }
}

#[derive(Deserialize)]
struct JobRef {
    id: String,
}

/// The job id of an action's body, or why the body is wrong.
fn job_id(body: Result<Json<JobRef>, JsonRejection>) -> Result<String, String> {
    body.map(|Json(r)| r.id).map_err(|e| {
        format!(
            "the body must be JSON {{\"id\": \"<job id>\"}} with Content-Type: application/json ({e})"
        )
    })
}

async fn retry_dead(State(s): St, payload: Result<Json<JobRef>, JsonRejection>) -> Response {
    let id = match job_id(payload) {
        Ok(id) => id,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match s.master.retry_dead(&id).await {
        Ok(Some(key)) => Json(json!({ "retried": key })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no dead letter {id:?} (see GET /api/dead)"),
        ),
        Err(e) => closed(e),
    }
}

async fn discard_dead(State(s): St, payload: Result<Json<JobRef>, JsonRejection>) -> Response {
    let id = match job_id(payload) {
        Ok(id) => id,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match s.master.discard_dead(&id).await {
        Ok(Some(key)) => Json(json!({ "discarded": key })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no dead letter {id:?} (see GET /api/dead)"),
        ),
        Err(e) => closed(e),
    }
}

/// One update of the event stream: overview, workers and the newest dead letters.
async fn update(master: &Master) -> Option<String> {
    let overview = master.overview(120).await.ok()?;
    let workers = master.workers().await.ok()?;
    let dead = master.dead_letters(DEAD_IN_UPDATE).await.ok()?;
    Some(json!({ "overview": overview, "workers": workers, "dead": dead }).to_string())
}

async fn events(State(s): St) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let master = s.master.clone();
    let stream = futures::stream::unfold((master, true), |(master, first)| async move {
        if !first {
            tokio::time::sleep(UPDATE_EVERY).await;
        }
        let data = update(&master).await?;
        Some((
            Ok(Event::default().event("update").data(data)),
            (master, false),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
