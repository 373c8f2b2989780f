//! The dashboard's HTTP server: the page, its assets, the JSON API and the
//! server-sent events that tell the page a checkpoint committed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::pipeline::PipelineView;
use crate::config::{ChartKind, DashboardSection, PIPELINE_PANEL, Panel};
use crate::store::Reader;

/// At most one update event per this long: a burst of commits (every lane
/// checkpoints on the same interval) becomes one refresh of the page.
const COALESCE: Duration = Duration::from_millis(250);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const ECHARTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echarts.min.js"));
/// Whether the build found ECharts (see `host/build.rs`).
pub const CHARTS_AVAILABLE: bool = matches!(env!("APIARY_ECHARTS").as_bytes(), b"yes");

/// What the handlers share.
pub struct Dashboard {
    /// The page's heading.
    pub title: String,
    /// The configured panels.
    pub panels: Vec<Panel>,
    /// Where their queries run.
    pub reader: Reader,
    /// The bearer token the API requires, if any.
    pub token: Option<String>,
    /// The built-in pipeline panel.
    pub pipeline: Arc<PipelineView>,
    /// Changes whenever a lane commits.
    pub commits: watch::Receiver<u64>,
}

impl Dashboard {
    /// A dashboard for `section` over `reader`.
    pub fn new(
        section: &DashboardSection,
        reader: Reader,
        pipeline: Arc<PipelineView>,
        commits: watch::Receiver<u64>,
    ) -> Self {
        Self {
            title: section.title.clone(),
            panels: section.panels.clone(),
            reader,
            token: section.token.clone(),
            pipeline,
            commits,
        }
    }

    /// Binds `listen` and serves until the process ends; returns the bound
    /// address.
    pub async fn serve(self, listen: &str) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve the dashboard on {listen}: {e}"))?;
        let address = listener.local_addr()?;
        let dash = Arc::new(self);
        // The API and the events need the token; the page and its assets,
        // which hold no data, do not.
        let api = axum::Router::new()
            .route("/api/dashboard", get(about))
            .route("/api/panels", get(list))
            .route("/api/panels/{id}", get(panel))
            .route("/api/events", get(events))
            .route_layer(middleware::from_fn_with_state(dash.clone(), require_token));
        let app = axum::Router::new()
            .route("/", get(page))
            .route("/assets/dashboard.js", get(script))
            .route("/assets/echarts.min.js", get(echarts))
            .merge(api)
            .with_state(dash);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("dashboard server stopped: {e}");
            }
        });
        Ok(address)
    }

    /// A 401 response unless the request carries the token, as
    /// `Authorization: Bearer` or `?token=`.
    fn denied(&self, headers: &HeaderMap, query: &TokenQuery) -> Option<Response> {
        let token = self.token.as_ref()?;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or(query.token.as_deref());
        if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return None;
        }
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(
                    json!({"error": "this dashboard needs its token: open the page with ?token=…"}),
                ),
            )
                .into_response(),
        )
    }
}

/// Lets a request through to the API only with the dashboard's token.
async fn require_token(
    State(dash): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(token): Query<TokenQuery>,
    request: Request,
    next: Next,
) -> Response {
    match dash.denied(&headers, &token) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `?token=` of a request.
#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// An entry of `GET /api/panels`.
#[derive(Debug, Serialize)]
struct PanelInfo<'a> {
    id: &'a str,
    title: &'a str,
    chart: ChartKind,
    x: Option<&'a str>,
    y: &'a [String],
    series: Option<&'a str>,
    unit: Option<&'a str>,
    total: bool,
    span: u8,
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

async fn echarts() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        ECHARTS,
    )
}

async fn list(State(dash): State<Arc<Dashboard>>) -> Response {
    let mut panels: Vec<PanelInfo> = dash
        .panels
        .iter()
        .map(|p| PanelInfo {
            id: &p.id,
            title: &p.title,
            chart: p.chart,
            x: p.x.as_deref(),
            y: &p.y,
            series: p.series.as_deref(),
            unit: p.unit.as_deref(),
            total: p.total,
            span: p.span,
        })
        .collect();
    panels.push(PanelInfo {
        id: PIPELINE_PANEL,
        title: "Pipeline",
        chart: ChartKind::Pipeline,
        x: None,
        y: &[],
        series: None,
        unit: None,
        total: false,
        span: 4,
    });
    Json(panels).into_response()
}

/// `GET /api/dashboard`: the page's heading and whether charts can be
/// drawn.
async fn about(State(dash): State<Arc<Dashboard>>) -> Response {
    Json(json!({"title": dash.title, "charts": CHARTS_AVAILABLE})).into_response()
}

async fn panel(State(dash): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    if id == PIPELINE_PANEL {
        return Json(dash.pipeline.table()).into_response();
    }
    let Some(panel) = dash.panels.iter().find(|p| p.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no panel `{id}`")})),
        )
            .into_response();
    };
    // A failing query is the panel's state, not the server's: 200 with
    // the error, so the page shows it in the panel.
    match dash.reader.query(&panel.query).await {
        Ok(table) => match missing_column(panel, &table.columns) {
            Some(message) => Json(json!({"error": message})).into_response(),
            None => Json(table).into_response(),
        },
        // sqlx repeats the database message as its own cause: once is enough.
        Err(e) => Json(json!({"error": e.to_string()})).into_response(),
    }
}

/// The first column a panel's options name that its result lacks.
fn missing_column(panel: &Panel, columns: &[String]) -> Option<String> {
    if columns.is_empty() {
        return None;
    }
    let named = [("x", panel.x.as_ref()), ("series", panel.series.as_ref())]
        .into_iter()
        .filter_map(|(k, c)| c.map(|c| (k, c)))
        .chain(panel.y.iter().map(|c| ("y", c)));
    for (option, column) in named {
        if !columns.iter().any(|c| c == column) {
            return Some(format!(
                "panel option {option} names column `{column}`, which the query does not return \
                 (it returns {})",
                columns.join(", ")
            ));
        }
    }
    None
}

async fn events(State(dash): State<Arc<Dashboard>>) -> Response {
    let mut commits = dash.commits.clone();
    commits.borrow_and_update();
    let ready = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("0"))
    });
    let updates =
        futures_util::stream::unfold((commits, true), |(mut commits, first)| async move {
            if !first {
                tokio::time::sleep(COALESCE).await;
            }
            commits.changed().await.ok()?;
            let n = *commits.borrow_and_update();
            let event = Event::default().event("commit").data(n.to_string());
            Some((Ok::<_, Infallible>(event), (commits, false)))
        });
    Sse::new(futures_util::StreamExt::chain(ready, updates))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_column_the_options_do_not_find() {
        let panel: Panel = toml::from_str(
            "id = \"p\"\ntitle = \"P\"\nquery = \"SELECT 1\"\nchart = \"heatmap\"\n\
             x = \"province\"\nseries = \"grade\"\ny = \"members\"\n",
        )
        .unwrap();
        let columns = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            missing_column(&panel, &columns(&["province", "grade", "members"])),
            None
        );
        let message = missing_column(&panel, &columns(&["province", "level", "members"])).unwrap();
        assert!(
            message.contains("series") && message.contains("`grade`"),
            "{message}"
        );
        // No rows, no columns to check.
        assert_eq!(missing_column(&panel, &[]), None);
    }

    #[test]
    fn compares_tokens_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
