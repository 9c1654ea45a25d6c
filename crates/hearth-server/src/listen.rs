//! The accept loop: HTTP/1.1 connections with a read timeout on request headers (which
//! also closes idle keep-alive connections), a write timeout (a client that stops reading
//! a response is dropped, which cancels its generation and frees its KV blocks), a cap on
//! open connections, and a graceful shutdown that waits for running responses but not for
//! idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutStream;

/// What one connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers (and, idle, the next request's).
    pub read_timeout: Duration,
    /// For a write to make progress: a client that reads nothing for this long is dropped.
    pub write_timeout: Duration,
    /// Open connections at most; past them, new connections are closed at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the open responses.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let Limits {
        read_timeout,
        write_timeout,
        max_connections,
    } = limits;
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|&s| s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait for connections to close.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max_connections, "too many open connections: one refused");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(write_timeout));
        let conn = builder.serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
