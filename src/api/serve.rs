//! The HTTP server loop: what `axum::serve` does, plus the one thing it cannot be told.
//! `axum::serve` builds every connection without a timer, so hyper's header read timeout
//! never runs: a client that opened a connection and sent part of a request — or
//! nothing, or nothing more after its last answer — held the connection, its task and a
//! file descriptor for good, and a few thousand such clients (slowloris) used up the
//! process's descriptors, which uploads and database connections need too.
//!
//! Here each connection has `HTTP_HEADER_TIMEOUT_SECS` to send each request's head,
//! counted from when it opens or from the end of its previous answer: a keep-alive
//! connection idle that long is closed too (hyper has one timer for both). Once a head is
//! in, this limit is over: bodies have their own idle limit (60 s without a byte) and
//! answers — downloads, event streams — none.
//!
//! HTTP/1.1 only, as the crate's `axum` features (no `http2`) always meant: HTTP/2 is the
//! TLS-terminating proxy's, and telling it apart reads the first bytes with no timer at
//! all (hyper-util's protocol detection), which is the hole this closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Serves `router` on `listener` until `stop`, then lets the open connections finish
/// their requests (as `axum::serve(..).with_graceful_shutdown(..)` did).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let service: Result<_, Infallible> = make_service.call(remote).await;
        let Ok(service) = service;
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client gone, a broken request, a head not sent in time: that connection
            // is over, nothing more to do.
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// As `axum::serve` (after hyper 0.14's server): a connection that failed before it was
/// accepted is the client's business; anything else — most likely `EMFILE`, out of file
/// descriptors — is logged, and accepting pauses a second for descriptors to be freed.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
