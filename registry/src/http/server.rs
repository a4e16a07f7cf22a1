//! The accept loop: HTTP/1 connections with a bound on how many are open at once and on how
//! long a client may take to send a request's headers, which also closes idle keep-alive
//! connections. `axum::serve` has neither (it sets no timer, so hyper's header timeout never
//! runs): a slow-loris client trickling headers, or thousands of idle sockets, held the
//! registry's connections and file descriptors for as long as they liked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use super::per_client::PerClient;

/// Bounds on connections (see the registry README, "Limits").
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Longest a client may take to send a request's headers, and longest a keep-alive
    /// connection may stay idle between requests.
    pub header_read_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most connections one address may hold; more are closed at once.
    pub max_connections_per_client: usize,
}

/// Serves `app` on `listener` until `stop` turns true, then lets open requests finish (event
/// streams end when the registry closes them).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = PerClient::new(limits.max_connections_per_client);
    let graceful = GracefulShutdown::new();
    loop {
        // A free slot first: at the limit the loop stops accepting, so the kernel's backlog
        // holds new clients until a connection ends (idle ones end after the header timeout).
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a reset before accept: retry shortly.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        // Over its share, a client's connection is closed before anything is read.
        let Some(client_slot) = per_client.try_open(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this client");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop((slot, client_slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
