//! Building a manager: the config checked, the registry, ledger and jitter chosen, the
//! engine's long-lived jobs started.

use super::*;

/// Builds a [`StreamingProviderManager`] with a custom registry, capacity ledger or jitter
/// source.
pub struct ManagerBuilder {
    pub(super) config: ManagerConfig,
    pub(super) registry: Option<Arc<dyn ProviderRegistry>>,
    pub(super) ledger: Option<Arc<dyn SlotLedger>>,
    pub(super) jitter: Option<Box<dyn JitterSource>>,
}

impl ManagerBuilder {
    /// Use `registry` instead of the HTTP client of `config.base_url`.
    pub fn registry(mut self, registry: Arc<dyn ProviderRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Count streams on `ledger` instead of a private in-memory one: every stream holds a
    /// lease on its provider's account while it runs, so managers (or checkers) sharing one
    /// ledger, e.g. `streamguard-redis`, share each provider's `max_streams` and the ledger's
    /// global limit. `config.max_total_streams` must then be `None`.
    pub fn capacity(mut self, ledger: Arc<dyn SlotLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Use `jitter` for backoff samples (tests pass a seeded RNG).
    pub fn jitter(mut self, jitter: Box<dyn JitterSource>) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Validate the config and start the engine.
    pub fn build(self) -> Result<StreamingProviderManager, StreamguardError> {
        self.config.validate()?;
        let ledger = ledger(self.ledger, self.config.max_total_streams)?;
        let registry = match self.registry {
            Some(r) => r,
            None => http_registry(&self.config)?,
        };
        let jitter = self
            .jitter
            .unwrap_or_else(|| Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()));
        let (reports, reports_rx) = if self.config.report_sessions {
            let (tx, rx) = tokio::sync::mpsc::channel(REPORT_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let shared = Arc::new(shared(self.config, registry, ledger, jitter, reports));
        start_jobs(&shared, reports_rx);
        info!(config = ?shared.config, "streamguard manager started");
        Ok(StreamingProviderManager {
            _lifetime: Arc::new(Lifetime {
                shared: shared.clone(),
            }),
            shared,
        })
    }
}

/// The ledger passed to `capacity()`, or the built-in one with `max_total_streams`.
fn ledger(
    given: Option<Arc<dyn SlotLedger>>,
    max_total: Option<u32>,
) -> Result<Arc<dyn SlotLedger>, StreamguardError> {
    match (given, max_total) {
        (Some(_), Some(_)) => Err(StreamguardError::InvalidConfig(
            "max_total_streams applies to the built-in ledger only; set the global limit on the ledger passed to capacity()".into(),
        )),
        (Some(l), None) => Ok(l),
        (None, limit) => Ok(Arc::new(InMemoryLedger::new(limit))),
    }
}

fn http_registry(config: &ManagerConfig) -> Result<Arc<dyn ProviderRegistry>, StreamguardError> {
    let registry = HttpRegistry::new(
        &config.base_url,
        config.auth_token.clone(),
        config.request_timeout,
        config.max_response_bytes,
    )
    .map_err(|e| StreamguardError::InvalidConfig(e.to_string()))?;
    Ok(Arc::new(registry))
}

fn shared(
    config: ManagerConfig,
    registry: Arc<dyn ProviderRegistry>,
    ledger: Arc<dyn SlotLedger>,
    jitter: Box<dyn JitterSource>,
    reports: Option<tokio::sync::mpsc::Sender<SessionReport>>,
) -> Shared {
    use rand::{Rng, SeedableRng};
    Shared {
        policy: config.health_policy(),
        attempts: AttemptPolicy {
            max_attempts: config.max_attempts,
            attempts_per_provider: config.attempts_per_provider,
        },
        lane_turn: watch::channel(0).0,
        backoff: Backoff {
            base: config.backoff_base,
            cap: config.backoff_cap,
        },
        events: broadcast::channel(config.event_buffer).0,
        config,
        registry,
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        push_wake: Notify::new(),
        reports,
        telemetry_done: CancellationToken::new(),
        retry_now: watch::channel(0u64).0,
        placement_news: watch::channel(0u64).0,
        audience_wake: Notify::new(),
        list_version: watch::channel(0u64).0,
        ledger,
        lease_wake: Notify::new(),
        client_id: format!(
            "sg-{:032x}",
            rand::rngs::StdRng::from_os_rng().random::<u128>()
        ),
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
        epoch: Instant::now(),
        jitter: Mutex::new(jitter),
    }
}

/// The long-lived jobs: the monitor, the reporter (with `report_sessions`), the push channel
/// (with `push_updates`), the lease keeper and the audience reporter.
fn start_jobs(
    shared: &Arc<Shared>,
    reports_rx: Option<tokio::sync::mpsc::Receiver<SessionReport>>,
) {
    let me = shared.clone();
    shared.tracker.spawn(async move { me.monitor().await });
    if let Some(rx) = reports_rx {
        let me = shared.clone();
        shared.tracker.spawn(async move { me.reporter(rx).await });
    }
    if shared.config.push_updates {
        let me = shared.clone();
        shared.tracker.spawn(async move { me.push_loop().await });
    }
    let me = shared.clone();
    shared.tracker.spawn(async move { me.lease_keeper().await });
    let me = shared.clone();
    shared
        .tracker
        .spawn(async move { me.audience_reporter().await });
}
