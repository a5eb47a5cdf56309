//! The HTTP endpoint on `metrics-port`: Prometheus metrics, this node's view
//! of the cluster as JSON, and the dashboard that draws it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | OpenMetrics text ([`crate::metrics::Metrics::encode`]) |
//! | `GET /api/cluster` | JSON ([`crate::cluster_view`]) |
//! | `GET /` | the dashboard page; its script and style under `/assets/` |
//!
//! HTTP/1.1 through hyper, on `bind:metrics-port`. Only GET and HEAD are
//! answered (anything else gets 405); request heads are bounded by hyper's
//! defaults (100 headers, ~400 KB buffer) and must arrive within
//! [`HEADER_TIMEOUT`], which also closes idle keep-alive connections; at
//! most [`MAX_CONNECTIONS`] are served at once. The dashboard's files are
//! compiled in: nothing is fetched from anywhere else.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch, sync::Semaphore};
use tracing::{debug, info, warn};

use crate::state::ServerState;

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head (or stay idle between
/// requests on a keep-alive connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for a response in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Serves HTTP on `metrics-port` until shutdown. Logs and returns if the
/// port cannot be bound: the node keeps serving clients without it.
pub async fn serve(state: Arc<ServerState>, mut shutdown: watch::Receiver<bool>) {
    let config = state.config();
    let address = format!("{}:{}", config.bind, config.metrics_port);
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!(%address, "cannot listen for HTTP (metrics, dashboard): {e}; serving without it");
            return;
        }
    };
    info!(%address, "HTTP endpoint listening: /metrics, /api/cluster, dashboard at /");
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        debug!(%peer, "HTTP connection refused: {MAX_CONNECTIONS} already open");
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let state = state.clone();
                    let builder = builder.clone();
                    let mut shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(respond(&state, &request)) }
                        });
                        let connection = builder.serve_connection(TokioIo::new(socket), service);
                        tokio::pin!(connection);
                        tokio::select! {
                            result = connection.as_mut() => {
                                if let Err(e) = result {
                                    debug!(%peer, "HTTP connection ended: {e}");
                                }
                            }
                            _ = shutdown.changed() => {
                                connection.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                            }
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    debug!("HTTP endpoint stopped");
}

/// The answer to one request (hyper leaves the body out for HEAD).
fn respond<B>(state: &ServerState, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD are allowed\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => no_store(reply(
            StatusCode::OK,
            OPENMETRICS,
            state.metrics.encode(state),
        )),
        "/api/cluster" => no_store(reply(
            StatusCode::OK,
            JSON,
            crate::cluster_view::to_json(state),
        )),
        "/" | "/index.html" => reply(StatusCode::OK, HTML, INDEX_HTML),
        "/assets/app.js" => reply(StatusCode::OK, JS, APP_JS),
        "/assets/style.css" => reply(StatusCode::OK, CSS, STYLE_CSS),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /, /metrics or /api/cluster\n",
        ),
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Live data: never cached.
fn no_store(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("a request")
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a full body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    fn content_type(response: &Response<Full<Bytes>>) -> &str {
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ASCII")
    }

    #[tokio::test]
    async fn routes() {
        let state = crate::cluster_view::tests::single_node();
        let page = respond(&state, &request(Method::GET, "/"));
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(content_type(&page), HTML);
        assert!(body(page).await.contains("/assets/app.js"));
        for (path, kind) in [("/assets/app.js", JS), ("/assets/style.css", CSS)] {
            let asset = respond(&state, &request(Method::GET, path));
            assert_eq!(asset.status(), StatusCode::OK, "{path}");
            assert_eq!(content_type(&asset), kind);
        }
        let metrics = respond(&state, &request(Method::GET, "/metrics"));
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(content_type(&metrics), OPENMETRICS);
        let api = respond(&state, &request(Method::HEAD, "/api/cluster?x=1"));
        assert_eq!(api.status(), StatusCode::OK);
        assert_eq!(content_type(&api), JSON);
        assert_eq!(api.headers()[header::CACHE_CONTROL], "no-store");
        let json: serde_json::Value = serde_json::from_str(&body(api).await).expect("JSON");
        assert_eq!(json["node"]["mode"], "single-node");
        assert_eq!(
            respond(&state, &request(Method::GET, "/nothing")).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn only_get_and_head() {
        let state = crate::cluster_view::tests::single_node();
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let response = respond(&state, &request(method.clone(), "/metrics"));
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        }
    }
}
