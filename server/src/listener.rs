//! The accept loop, background work and graceful shutdown.
//!
//! SIGINT / SIGTERM / SHUTDOWN: stop accepting, let every connection finish the batch
//! it is executing, flush storage, exit 0.

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, info, warn};

use crate::{client_socket::ClientSocket, connection, state::ServerState, stats::ServerStats};

/// How long a client may take to finish the TLS handshake (a stalled
/// handshake must not hold a task and a socket for ever).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to finish their batch.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys the expiry purge examines per tick.
const PURGE_BATCH: usize = 256;

/// Serves clients until a shutdown signal.
pub async fn serve(state: Arc<ServerState>) -> Result<(), String> {
    let config = state.config();
    let address = format!("{}:{}", config.bind, config.port);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let tls = crate::tls::acceptor(&config)?;
    let tls_listener = match &tls {
        Some(_) => {
            let tls_address = format!("{}:{}", config.bind, config.tls_port);
            let listener = TcpListener::bind(&tls_address)
                .await
                .map_err(|e| format!("cannot listen on {tls_address} (tls-port): {e}"))?;
            info!(address = %tls_address, "TLS port ready");
            Some(listener)
        }
        None => None,
    };
    info!(%address, node_id = format!("{:016x}", state.coordinator.node_id()), engine = state.coordinator.engine().name(), "ready to accept connections");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let purge = tokio::spawn(purge_expired(state.clone(), shutdown_rx.clone()));
    tokio::spawn(sample_latency(state.clone(), shutdown_rx.clone()));
    if config.metrics_port != 0 {
        tokio::spawn(crate::http::serve(state.clone(), shutdown_rx.clone()));
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = state.shutdown_requested.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    ServerStats::bump(&state.stats.connections_received);
                    let socket = ClientSocket::Plain(socket);
                    tokio::spawn(connection::serve(state.clone(), socket, peer, shutdown_rx.clone()));
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_on(tls_listener.as_ref()) => match (accepted, &tls) {
                (Ok((socket, peer)), Some(acceptor)) => {
                    ServerStats::bump(&state.stats.connections_received);
                    let (state, acceptor, shutdown) = (state.clone(), acceptor.clone(), shutdown_rx.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                            Ok(Ok(stream)) => {
                                let socket = ClientSocket::Tls(Box::new(stream));
                                connection::serve(state, socket, peer, shutdown).await;
                            }
                            Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                (Ok(_), None) => {}
                (Err(e), _) => accept_failed(e).await,
            },
        }
    }
    info!("shutting down: no new connections; draining");
    drop(listener);
    drop(tls_listener);
    let _ = shutdown_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while state.clients.connected() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = purge.await;
    state
        .coordinator
        .flush()
        .map_err(|e| format!("final flush failed: {e}"))?;
    info!("storage flushed; bye");
    Ok(())
}

/// Out of file descriptors and the like: log, and back off briefly.
async fn accept_failed(error: std::io::Error) {
    warn!("accept failed: {error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The next connection on `listener`; never, without one.
async fn accept_on(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}

/// Closes a second of the latency history every second.
async fn sample_latency(state: Arc<ServerState>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => state.metrics.tick(crate::state::now_ms()),
            _ = shutdown.changed() => return,
        }
    }
}

/// Removes expired versions in the background, a small batch per tick, so
/// the purge never holds the runtime for long.
async fn purge_expired(state: Arc<ServerState>, mut shutdown: watch::Receiver<bool>) {
    let mut cursor = 0;
    loop {
        let interval = Duration::from_millis(state.config().expiry_purge_interval_ms);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        match state
            .coordinator
            .purge_expired_step(cursor, PURGE_BATCH, crate::state::now_ms())
        {
            Ok(next) => cursor = next,
            Err(e) => {
                warn!("expiry purge failed: {e}");
                cursor = 0;
            }
        }
    }
}
