//! The operator HTTP endpoint: `GET /metrics` (Prometheus text exposition of [`crate::metrics`]), `GET /healthz`
//! (liveness) and `GET /readyz` (readiness, see [`crate::health`] for what ready means).
//!
//! It runs on the pipeline's tokio runtime as one small task; rendering the registry is a few microseconds per
//! metric family, so it never needs a blocking section. Unready answers are 503 with a one-line reason, so a
//! `curl` tells an operator why.

use crate::health::Health;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot bind the metrics endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running endpoint. Dropping it stops the server.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The routes, separate from the listener so that they can be served anywhere.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Binds `addr` and serves the endpoint until the returned handle is shut down or dropped.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<HttpServer, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(health);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(HttpServer {
        addr: bound,
        stop: Some(stop),
        task: Some(task),
    })
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        crate::metrics::render(),
    )
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.is_live() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n".to_string())
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Phase;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 GET: (status, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let status = buf
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_follow_the_pipeline_phases() {
        let health = Arc::new(Health::new(Duration::from_millis(300)));
        let server = serve("127.0.0.1:0".parse().unwrap(), health.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        assert_eq!(
            get(addr, "/readyz").await,
            (
                503,
                "starting: connecting to Kafka and the catalog\n".into()
            )
        );
        health.set_phase(Phase::Recovering);
        assert_eq!(
            get(addr, "/readyz").await,
            (503, "recovering from the last checkpoint\n".into())
        );
        health.set_phase(Phase::Consuming);
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));

        // No checkpoint within the 300 ms bound: stalled.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(
            body.starts_with("checkpoints stalled: last progress "),
            "{body}"
        );
        assert!(
            body.ends_with("(bound 300 ms, last checkpoint None)\n"),
            "{body}"
        );
        health.checkpoint_completed(4);
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));

        crate::metrics::source_lag("http-test-topic", 3, 120, 100);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(
                "ledgerstream_source_lag_records{partition=\"3\",topic=\"http-test-topic\"} 20\n"
            ),
            "{body}"
        );
        assert!(body.contains("# TYPE ledgerstream_checkpoint_duration_seconds histogram\n"));
        assert_eq!(get(addr, "/nope").await.0, 404);

        health.set_phase(Phase::Stopped);
        assert_eq!(get(addr, "/healthz").await, (503, "stopped\n".into()));
        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
