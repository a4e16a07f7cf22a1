//! Registry configuration: defaults, overridden by a JSON file, then by
//! `STREAMGUARD_*` environment variables (command-line flags are applied last by
//! the binary). Tokens are wrapped in [`Secret`] so they never reach logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::audience::AudienceConfig;
use crate::error::RegistryError;
use crate::wire::NewProvider;

/// A token that must never be printed: its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token itself; only for comparing against a presented credential.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Per-client request budget for unauthenticated routes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens added per second; 0 disables rate limiting.
    pub per_second: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

/// Providers created on the first start of a database.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seed {
    /// Nothing to seed.
    #[default]
    None,
    /// A JSON file shaped `{"providers": [ ...create bodies... ]}`.
    File(PathBuf),
    /// Providers given in code (for tests of other crates).
    Providers(Vec<NewProvider>),
}

/// Everything the registry needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The database: a SQLite file (`sqlite:PATH` or a plain path), `:memory:` for a
    /// throw-away one, or a PostgreSQL URL (`postgres://...`) for several instances on one
    /// database (see [`crate::store::Database`]).
    pub db_path: PathBuf,
    /// Bearer token for admin routes; admin routes are closed when unset.
    pub admin_token: Option<Secret>,
    /// Bearer token for create/delete (also accepted on admin routes).
    pub super_admin_token: Option<Secret>,
    /// Token that (like the admin tokens) may post session telemetry. Telemetry changes the
    /// stream counts every client's capacity decisions read, so it is never anonymous unless
    /// `open_telemetry` is set.
    pub telemetry_token: Option<Secret>,
    /// Accept session telemetry without a token (rate-limited). Off by default: anyone could
    /// otherwise make a provider look full to every client.
    pub open_telemetry: bool,
    /// Origins allowed by CORS, exact match; `*` allows any origin.
    pub cors_origins: Vec<String>,
    /// Time between background health rounds; zero turns the background checker off.
    pub health_interval: Duration,
    /// Time limit of one probe.
    pub health_timeout: Duration,
    /// Per-client rate limit of unauthenticated requests.
    pub rate_limit: RateLimitConfig,
    /// Largest accepted request body; bigger bodies get 413.
    pub max_body_bytes: usize,
    /// Providers to create on first start.
    pub seed: Seed,
    /// The `ffprobe` executable used by RTMP probes.
    pub ffprobe_path: PathBuf,
    /// Take the client address for rate limiting from `X-Forwarded-For`
    /// (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Recent checks kept per provider (288 = one day at 5-minute intervals).
    pub history_limit: usize,
    /// Failovers kept in the failover history.
    pub failover_history_limit: usize,
    /// Open event streams allowed at once; more get 503.
    pub max_event_subscribers: usize,
    /// Open event streams one client (address, see `trust_forwarded_for`) may hold; more get
    /// 429, so one client cannot take every slot of `max_event_subscribers`.
    pub max_event_subscribers_per_client: usize,
    /// Longest a client may take to send a request's headers, and longest a keep-alive
    /// connection may stay idle; then the connection is closed (slow-loris, idle sockets).
    pub header_read_timeout: Duration,
    /// Connections open at once; at the limit new clients wait in the listen backlog until one
    /// closes. Keep it below the process's file-descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// Connections one client address may hold; more are closed at once. Behind a proxy every
    /// client has the proxy's address: raise it there.
    pub max_connections_per_client: usize,
    /// A stream reported with a `clientId` stops counting when its client has not confirmed
    /// it (start, failover or keep-alive report) for this long: a client that died cannot hold
    /// a provider's slots for ever. Zero turns expiry off.
    pub session_ttl: Duration,
    /// How long an ended or expired stream placement is kept (it still fences old epochs and
    /// `GET` still answers it, `live: false`) before it is dropped. Swept with the sessions,
    /// so nothing is dropped while `session_ttl` is zero.
    pub placement_retention: Duration,
    /// When viewers' stall reports confirm an outage of a stream's provider (window, minimum
    /// count and share, per-source cap); see [`AudienceConfig`] for the defaults.
    pub audience: AudienceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8787)),
            db_path: PathBuf::from("streamguard-registry.db"),
            admin_token: None,
            super_admin_token: None,
            telemetry_token: None,
            open_telemetry: false,
            cors_origins: Vec::new(),
            health_interval: Duration::from_secs(300),
            health_timeout: Duration::from_secs(5),
            rate_limit: RateLimitConfig::default(),
            max_body_bytes: 64 * 1024,
            seed: Seed::None,
            ffprobe_path: PathBuf::from("ffprobe"),
            trust_forwarded_for: false,
            history_limit: 288,
            failover_history_limit: 500,
            session_ttl: Duration::from_secs(120),
            placement_retention: Duration::from_secs(3600),
            max_event_subscribers: 1000,
            max_event_subscribers_per_client: 16,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_client: 256,
            audience: AudienceConfig::default(),
        }
    }
}

/// The JSON config file; every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    db: Option<PathBuf>,
    admin_token: Option<Secret>,
    super_admin_token: Option<Secret>,
    telemetry_token: Option<Secret>,
    open_telemetry: Option<bool>,
    cors_origins: Option<Vec<String>>,
    health_interval_ms: Option<u64>,
    health_timeout_ms: Option<u64>,
    rate_limit: Option<RateLimitConfig>,
    max_body_bytes: Option<usize>,
    seed_file: Option<PathBuf>,
    ffprobe_path: Option<PathBuf>,
    trust_forwarded_for: Option<bool>,
    history_limit: Option<usize>,
    failover_history_limit: Option<usize>,
    max_event_subscribers: Option<usize>,
    max_event_subscribers_per_client: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    session_ttl_ms: Option<u64>,
    placement_retention_ms: Option<u64>,
    audience: Option<FileAudience>,
}

/// `audience` in the config file; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileAudience {
    window_ms: Option<u64>,
    min_stalled: Option<usize>,
    min_share: Option<f64>,
    per_source: Option<usize>,
}

impl Config {
    /// A configuration for tests: loopback on a free port, in-memory database,
    /// no background checks, no rate limit, and the given tokens.
    pub fn local_test(admin_token: &str, super_admin_token: &str) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db_path: PathBuf::from(crate::store::MEMORY_PATH),
            admin_token: Some(Secret::new(admin_token)),
            super_admin_token: Some(Secret::new(super_admin_token)),
            health_interval: Duration::ZERO,
            health_timeout: Duration::from_secs(2),
            rate_limit: RateLimitConfig {
                per_second: 0.0,
                burst: 1,
            },
            ..Self::default()
        }
    }

    /// Builds the configuration from defaults, an optional JSON file and the
    /// environment (read through `env`, so tests can pass a map).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RegistryError> {
        let mut config = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RegistryError::Config(format!("cannot read {}: {e}", path.display()))
            })?;
            let parsed: FileConfig = serde_json::from_str(&text)
                .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))?;
            config.apply_file(parsed);
        }
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_file(&mut self, f: FileConfig) {
        let c = self;
        set(&mut c.addr, f.addr);
        set(&mut c.db_path, f.db);
        set_secret(&mut c.admin_token, f.admin_token);
        set_secret(&mut c.super_admin_token, f.super_admin_token);
        set_secret(&mut c.telemetry_token, f.telemetry_token);
        set(&mut c.open_telemetry, f.open_telemetry);
        set(&mut c.cors_origins, f.cors_origins);
        set(
            &mut c.health_interval,
            f.health_interval_ms.map(Duration::from_millis),
        );
        set(
            &mut c.health_timeout,
            f.health_timeout_ms.map(Duration::from_millis),
        );
        set(&mut c.rate_limit, f.rate_limit);
        set(&mut c.max_body_bytes, f.max_body_bytes);
        set(&mut c.seed, f.seed_file.map(Seed::File));
        set(&mut c.ffprobe_path, f.ffprobe_path);
        set(&mut c.trust_forwarded_for, f.trust_forwarded_for);
        set(&mut c.history_limit, f.history_limit);
        set(&mut c.failover_history_limit, f.failover_history_limit);
        set(&mut c.max_event_subscribers, f.max_event_subscribers);
        set(
            &mut c.max_event_subscribers_per_client,
            f.max_event_subscribers_per_client,
        );
        set(
            &mut c.header_read_timeout,
            f.header_read_timeout_ms.map(Duration::from_millis),
        );
        set(&mut c.max_connections, f.max_connections);
        set(
            &mut c.max_connections_per_client,
            f.max_connections_per_client,
        );
        set(
            &mut c.session_ttl,
            f.session_ttl_ms.map(Duration::from_millis),
        );
        set(
            &mut c.placement_retention,
            f.placement_retention_ms.map(Duration::from_millis),
        );
        if let Some(a) = f.audience {
            let to = &mut c.audience;
            set(&mut to.window, a.window_ms.map(Duration::from_millis));
            set(&mut to.min_stalled, a.min_stalled);
            set(&mut to.min_share, a.min_share);
            set(&mut to.per_source, a.per_source);
        }
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), RegistryError> {
        // Empty variables count as unset, which is what `VAR= cmd` usually means.
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("STREAMGUARD_REGISTRY_ADDR") {
            self.addr = parse_var("STREAMGUARD_REGISTRY_ADDR", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_REGISTRY_DB") {
            self.db_path = PathBuf::from(v);
        }
        if let Some(v) = get("STREAMGUARD_ADMIN_TOKEN") {
            self.admin_token = Some(Secret(v));
        }
        if let Some(v) = get("STREAMGUARD_SUPER_ADMIN_TOKEN") {
            self.super_admin_token = Some(Secret(v));
        }
        if let Some(v) = get("STREAMGUARD_TELEMETRY_TOKEN") {
            self.telemetry_token = Some(Secret(v));
        }
        if let Some(v) = get("STREAMGUARD_CORS_ORIGINS") {
            self.cors_origins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("STREAMGUARD_HEALTH_INTERVAL_MS") {
            self.health_interval =
                Duration::from_millis(parse_var("STREAMGUARD_HEALTH_INTERVAL_MS", &v)?);
        }
        if let Some(v) = get("STREAMGUARD_HEALTH_TIMEOUT_MS") {
            self.health_timeout =
                Duration::from_millis(parse_var("STREAMGUARD_HEALTH_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("STREAMGUARD_RATE_LIMIT_PER_SEC") {
            self.rate_limit.per_second = parse_var("STREAMGUARD_RATE_LIMIT_PER_SEC", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_RATE_LIMIT_BURST") {
            self.rate_limit.burst = parse_var("STREAMGUARD_RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_REGISTRY_SEED") {
            self.seed = Seed::File(PathBuf::from(v));
        }
        if let Some(v) = get("STREAMGUARD_FFPROBE") {
            self.ffprobe_path = PathBuf::from(v);
        }
        if let Some(v) = get("STREAMGUARD_SESSION_TTL_MS") {
            self.session_ttl = Duration::from_millis(parse_var("STREAMGUARD_SESSION_TTL_MS", &v)?);
        }
        if let Some(v) = get("STREAMGUARD_PLACEMENT_RETENTION_MS") {
            self.placement_retention =
                Duration::from_millis(parse_var("STREAMGUARD_PLACEMENT_RETENTION_MS", &v)?);
        }
        if let Some(v) = get("STREAMGUARD_AUDIENCE_WINDOW_MS") {
            self.audience.window =
                Duration::from_millis(parse_var("STREAMGUARD_AUDIENCE_WINDOW_MS", &v)?);
        }
        if let Some(v) = get("STREAMGUARD_AUDIENCE_MIN_STALLED") {
            self.audience.min_stalled = parse_var("STREAMGUARD_AUDIENCE_MIN_STALLED", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_AUDIENCE_MIN_SHARE") {
            self.audience.min_share = parse_var("STREAMGUARD_AUDIENCE_MIN_SHARE", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_AUDIENCE_PER_SOURCE") {
            self.audience.per_source = parse_var("STREAMGUARD_AUDIENCE_PER_SOURCE", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_OPEN_TELEMETRY") {
            self.open_telemetry = parse_var("STREAMGUARD_OPEN_TELEMETRY", &v)?;
        }
        if let Some(v) = get("STREAMGUARD_TRUST_FORWARDED_FOR") {
            self.trust_forwarded_for = parse_var("STREAMGUARD_TRUST_FORWARDED_FOR", &v)?;
        }
        Ok(())
    }

    /// Rejects values the server cannot run with.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |m: &str| Err(RegistryError::Config(m.to_owned()));
        if self.health_timeout.is_zero() {
            return bad("health timeout must be greater than zero");
        }
        if !self.rate_limit.per_second.is_finite() || self.rate_limit.per_second < 0.0 {
            return bad("rate limit perSecond must be a number >= 0");
        }
        if self.rate_limit.burst == 0 {
            return bad("rate limit burst must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("maxBodyBytes must be at least 1");
        }
        if self.header_read_timeout.is_zero() {
            return bad("headerReadTimeoutMs must be at least 1");
        }
        if self.max_connections == 0
            || self.max_connections_per_client == 0
            || self.max_event_subscribers_per_client == 0
        {
            return bad("connection and event-stream limits must be at least 1");
        }
        if self.history_limit == 0 || self.failover_history_limit == 0 {
            return bad("history limits must be at least 1");
        }
        if let Some(problem) = self.audience.problem() {
            return bad(problem);
        }
        for origin in &self.cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(RegistryError::Config(format!(
                    "CORS origin '{origin}' must be '*' or start with http:// or https://"
                )));
            }
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_secret(slot: &mut Option<Secret>, value: Option<Secret>) {
    if let Some(v) = value.filter(|s| !s.0.trim().is_empty()) {
        *slot = Some(v);
    }
}

fn parse_var<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, RegistryError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| RegistryError::Config(format!("{name}={value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn debug_output_redacts_tokens() {
        let config = Config::local_test("admin-secret-value", "super-secret-value");
        let printed = format!("{config:?}");
        assert!(!printed.contains("admin-secret-value"));
        assert!(!printed.contains("super-secret-value"));
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("sg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.json");
        std::fs::write(
            &file,
            r#"{"addr":"127.0.0.1:9000","adminToken":"from-file","healthIntervalMs":1000,
                "rateLimit":{"perSecond":5,"burst":10},"corsOrigins":["https://a.example"]}"#,
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("STREAMGUARD_REGISTRY_ADDR", "127.0.0.1:0"),
                (
                    "STREAMGUARD_CORS_ORIGINS",
                    "https://b.example, http://c.example",
                ),
                ("STREAMGUARD_SUPER_ADMIN_TOKEN", ""),
            ]),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.addr.port(), 0);
        assert_eq!(config.admin_token, Some(Secret::new("from-file")));
        assert_eq!(config.super_admin_token, None);
        assert_eq!(config.health_interval, Duration::from_secs(1));
        assert_eq!(config.rate_limit.burst, 10);
        assert_eq!(
            config.cors_origins,
            vec!["https://b.example", "http://c.example"]
        );
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(Config::load(None, env(&[("STREAMGUARD_RATE_LIMIT_BURST", "-1")])).is_err());
        assert!(Config::load(None, env(&[("STREAMGUARD_CORS_ORIGINS", "evil.com")])).is_err());
        assert!(Config::load(None, env(&[("STREAMGUARD_REGISTRY_ADDR", "nope")])).is_err());
        assert!(Config::load(None, env(&[("STREAMGUARD_OPEN_TELEMETRY", "yes")])).is_err());
    }

    #[test]
    fn audience_settings_come_from_file_and_environment() {
        let dir = std::env::temp_dir().join(format!("sg-config-audience-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.json");
        std::fs::write(&file, r#"{"audience":{"windowMs":5000,"minShare":0.8}}"#).unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("STREAMGUARD_AUDIENCE_MIN_STALLED", "5"),
                ("STREAMGUARD_AUDIENCE_PER_SOURCE", "4"),
                ("STREAMGUARD_AUDIENCE_MIN_SHARE", "0.6"),
            ]),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let a = config.unwrap().audience;
        assert_eq!(
            (a.window, a.min_stalled, a.min_share, a.per_source),
            (Duration::from_secs(5), 5, 0.6, 4)
        );
        assert_eq!(Config::default().audience, AudienceConfig::default());
        for (var, value) in [
            ("STREAMGUARD_AUDIENCE_MIN_SHARE", "0"),
            ("STREAMGUARD_AUDIENCE_MIN_SHARE", "2"),
            ("STREAMGUARD_AUDIENCE_PER_SOURCE", "0"),
            ("STREAMGUARD_AUDIENCE_MIN_STALLED", "-1"),
            ("STREAMGUARD_AUDIENCE_WINDOW_MS", "0"),
        ] {
            assert!(
                Config::load(None, env(&[(var, value)])).is_err(),
                "{var}={value}"
            );
        }
    }

    #[test]
    fn telemetry_is_closed_unless_opened() {
        assert!(!Config::default().open_telemetry);
        let c = Config::load(None, env(&[("STREAMGUARD_OPEN_TELEMETRY", "true")])).unwrap();
        assert!(c.open_telemetry);
    }

    #[test]
    fn unknown_file_fields_are_rejected() {
        let dir = std::env::temp_dir().join(format!("sg-config-unknown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.json");
        std::fs::write(&file, r#"{"adminTokn":"typo"}"#).unwrap();
        let result = Config::load(Some(&file), env(&[]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(result.is_err());
    }
}
