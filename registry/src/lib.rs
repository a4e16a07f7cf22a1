//! Reference provider-registry server for Streamguard live-streaming clients.
//!
//! It stores streaming providers (name, priority, config, capacity) in SQLite,
//! probes them in the background, and serves the list, cached health, a change
//! feed (server-sent events), admin routes and session telemetry over HTTP.
//!
//! Start it in-process with [`serve`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), streamguard_registry::RegistryError> {
//! let config = streamguard_registry::Config::local_test("admin-token", "super-token");
//! let registry = streamguard_registry::serve(config).await?;
//! println!("registry at {}", registry.url());
//! registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod audience;
pub mod config;
pub mod error;
mod fanout;
pub mod health;
mod http;
pub mod model;
mod placement;
pub mod rate_limit;
pub mod sessions;
mod state;
pub mod status;
pub mod store;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use audience::AudienceConfig;
pub use config::{Config, RateLimitConfig, Secret, Seed};
pub use error::{ApiError, RegistryError};
pub use status::{HealthStatus, PublicStatus};
pub use wire::NewProvider;

use crate::health::Prober;
use crate::model::ProviderRecord;
use crate::rate_limit::RateLimiter;
use crate::state::Registry;
use crate::store::Store;
use crate::wire::SeedFile;

/// How long [`RunningRegistry::shutdown`] lets open requests finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tokens shorter than this get a startup warning.
const MIN_TOKEN_LEN: usize = 16;

/// Wall-clock time in unix milliseconds, used for stored timestamps only.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A registry serving requests; stops on [`shutdown`](Self::shutdown) or when dropped.
#[derive(Debug)]
pub struct RunningRegistry {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    checker: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    fanout: Option<JoinHandle<()>>,
    audience: Option<JoinHandle<()>>,
    registry: Arc<Registry>,
}

impl RunningRegistry {
    /// The address the server is bound to (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn signal_stop(&self) {
        let _ = self.shutdown.send(true);
        self.registry.close_events();
    }

    /// Serves until `signal` completes (or the server fails), then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl Future<Output = ()>,
    ) -> Result<(), RegistryError> {
        if let Some(server) = self.server.as_mut() {
            tokio::select! {
                _ = signal => {}
                result = server => {
                    self.server = None;
                    self.signal_stop();
                    return match result {
                        Ok(io) => io.map_err(RegistryError::Io),
                        Err(e) => Err(RegistryError::Io(std::io::Error::other(e))),
                    };
                }
            }
        }
        self.shutdown().await
    }

    /// Stops accepting connections, ends event streams and the health checker,
    /// and waits (at most a few seconds) for open requests to finish.
    pub async fn shutdown(mut self) -> Result<(), RegistryError> {
        self.signal_stop();
        if let Some(checker) = self.checker.take() {
            // It has been told to stop; aborting only bounds a probe still in flight.
            checker.abort();
            let _ = checker.await;
        }
        for task in [
            self.sweeper.take(),
            self.fanout.take(),
            self.audience.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
            let _ = task.await;
        }
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(result)) => result.map_err(RegistryError::Io),
            Ok(Err(e)) => Err(RegistryError::Io(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; closing them");
                server.abort();
                let _ = server.await;
                Ok(())
            }
        }
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn seed_records(config: &Config) -> Result<Vec<ProviderRecord>, RegistryError> {
    let providers = match &config.seed {
        Seed::None => return Ok(Vec::new()),
        Seed::Providers(list) => list.clone(),
        Seed::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RegistryError::Seed(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str::<SeedFile>(&text)
                .map_err(|e| RegistryError::Seed(format!("{}: {e}", path.display())))?
                .providers
        }
    };
    let now = now_ms();
    providers
        .into_iter()
        .map(|p| {
            let name = p.name.clone();
            p.into_record(now)
                .map_err(|e| RegistryError::Seed(format!("provider '{name}': {}", e.message)))
        })
        .collect()
}

fn warn_about_tokens(config: &Config) {
    let tokens = [
        ("admin", &config.admin_token),
        ("super-admin", &config.super_admin_token),
        ("telemetry", &config.telemetry_token),
    ];
    for (role, token) in tokens {
        match token {
            None if role != "telemetry" => {
                tracing::warn!("no {role} token configured: {role} routes are closed")
            }
            None if !config.open_telemetry => tracing::warn!(
                "no telemetry token configured: session telemetry needs an admin token"
            ),
            Some(t) if t.expose().len() < MIN_TOKEN_LEN => {
                tracing::warn!("the {role} token is shorter than {MIN_TOKEN_LEN} characters")
            }
            _ => {}
        }
    }
}

/// Opens the database (migrating and seeding it), binds the listener and starts
/// serving plus the background health checker.
pub async fn serve(config: Config) -> Result<RunningRegistry, RegistryError> {
    config.validate()?;
    warn_about_tokens(&config);
    let config = Arc::new(config);
    let seed = seed_records(&config)?;
    let store = Store::open(&config.db_path).await?;
    let (inserted, records, placements) = store.seed_and_load(seed, config.history_limit).await?;
    if inserted > 0 {
        tracing::info!(inserted, "seeded providers");
    }

    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let prober = Prober::new(config.health_timeout, config.ffprobe_path.clone())?;
    let registry = Arc::new(Registry::new(
        Arc::clone(&config),
        store,
        records,
        placements,
        prober,
    ));
    let app = http::router(http::AppState {
        registry: Arc::clone(&registry),
        config: Arc::clone(&config),
        limiter: Arc::new(RateLimiter::new(
            config.rate_limit.per_second,
            config.rate_limit.burst,
        )),
    });

    let (shutdown, stop) = watch::channel(false);
    let limits = http::ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        max_connections_per_client: config.max_connections_per_client,
    };
    let server = tokio::spawn(http::serve_connections(listener, app, limits, stop.clone()));
    let fanout = fanout::start(&registry, stop.clone());
    let sweeper = (!config.session_ttl.is_zero()).then(|| {
        tokio::spawn(sweep_sessions(
            Arc::clone(&registry),
            config.session_ttl,
            stop.clone(),
        ))
    });
    let audience = {
        let registry = Arc::clone(&registry);
        let stop = stop.clone();
        tokio::spawn(async move { registry.audience.run(stop).await })
    };
    let checker = (!config.health_interval.is_zero()).then(|| {
        let registry = Arc::clone(&registry);
        tokio::spawn(health::run_checker(
            config.health_interval,
            stop,
            move || {
                let registry = Arc::clone(&registry);
                async move {
                    registry.check_all(true).await;
                }
            },
        ))
    });
    let db = store::Database::parse(&config.db_path).redacted();
    tracing::info!(%addr, %db, "registry started");
    Ok(RunningRegistry {
        addr,
        shutdown,
        server: Some(server),
        checker,
        sweeper,
        fanout,
        audience: Some(audience),
        registry,
    })
}

/// Expires unconfirmed sessions and placement claims a few times per TTL, so a dead client's
/// streams stop counting (and its placements stop being live) at most a quarter TTL late.
async fn sweep_sessions(
    registry: Arc<Registry>,
    ttl: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (ttl / 4).max(std::time::Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = registry.expire_sessions().await {
            tracing::warn!(error = %e, "session expiry failed; retrying at the next sweep");
        }
        if let Err(e) = registry.placements.sweep().await {
            tracing::warn!(error = %e, "placement expiry failed; retrying at the next sweep");
        }
    }
}
