//! # streamguard-mirror
//!
//! The plain-data mirror of the engine's public types, written once for both bindings: the
//! UniFFI crate (`streamguard-ffi`: Python, Kotlin, Swift) and the flutter_rust_bridge crate
//! (`streamguard_flutter`: Dart). Durations cross as whole milliseconds, the provider config as
//! a JSON string, enums as flat enums.
//!
//! Each binding expands the macros of this crate in its own crate ([`manager_config!`],
//! [`plain_enums!`], [`plain_records!`]), passing its binding tool's attributes
//! (`uniffi::Record`, `#[frb(non_opaque)]`...). So every field, default, doc comment and
//! conversion is written here once, yet each binding owns its types: the code generators see
//! them as local types, and the generated Python/Kotlin/Swift/Dart keep their module layout.
//! (UniFFI's external types would put them in a second generated module per language, and
//! flutter_rust_bridge's `mirror` needs every field declared again.)
//!
//! The conversions are driven by the field types through [`FromCore`] (engine to host) and
//! [`IntoCore`] (host to engine), so a field added here needs no conversion code unless its
//! unit is new.

#![warn(missing_docs)]

use std::time::Duration;

/// The engine, for the macros' generated code (`$crate::sg::...`).
pub use streamguard as sg;

/// Whole milliseconds, saturating (no duration the engine reports comes near the limit).
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds with their fraction, for averages that are often below one millisecond.
pub fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A host-side value made from an engine value (milliseconds from a `Duration`, a flat enum
/// from the engine's...). Identity for values that cross as they are.
pub trait FromCore<C> {
    /// The host-side value.
    fn from_core(core: C) -> Self;
}

impl<T> FromCore<T> for T {
    fn from_core(core: T) -> Self {
        core
    }
}

impl FromCore<Duration> for u64 {
    fn from_core(core: Duration) -> Self {
        ms(core)
    }
}

impl FromCore<Duration> for f64 {
    fn from_core(core: Duration) -> Self {
        ms_f64(core)
    }
}

impl FromCore<Option<Duration>> for Option<u64> {
    fn from_core(core: Option<Duration>) -> Self {
        core.map(ms)
    }
}

impl FromCore<Option<Duration>> for Option<f64> {
    fn from_core(core: Option<Duration>) -> Self {
        core.map(ms_f64)
    }
}

impl FromCore<usize> for u64 {
    fn from_core(core: usize) -> Self {
        core as u64
    }
}

impl FromCore<usize> for u32 {
    // Only the event buffer is a usize crossing as u32: anything above would be a
    // misconfiguration, so saturating is enough.
    fn from_core(core: usize) -> Self {
        u32::try_from(core).unwrap_or(u32::MAX)
    }
}

/// An engine value made from a host-side value; `field` names it in the error when the value
/// does not fit (a `u64` byte count on a 32-bit platform).
pub trait IntoCore<C> {
    /// The engine value, or `InvalidConfig` naming `field`.
    fn into_core(self, field: &str) -> Result<C, sg::StreamguardError>;
}

impl<T> IntoCore<T> for T {
    fn into_core(self, _field: &str) -> Result<T, sg::StreamguardError> {
        Ok(self)
    }
}

impl IntoCore<Duration> for u64 {
    fn into_core(self, _field: &str) -> Result<Duration, sg::StreamguardError> {
        Ok(Duration::from_millis(self))
    }
}

impl IntoCore<Option<Duration>> for Option<u64> {
    fn into_core(self, _field: &str) -> Result<Option<Duration>, sg::StreamguardError> {
        Ok(self.map(Duration::from_millis))
    }
}

impl IntoCore<usize> for u64 {
    fn into_core(self, field: &str) -> Result<usize, sg::StreamguardError> {
        usize::try_from(self).map_err(|_| too_large(field))
    }
}

impl IntoCore<usize> for u32 {
    fn into_core(self, field: &str) -> Result<usize, sg::StreamguardError> {
        usize::try_from(self).map_err(|_| too_large(field))
    }
}

fn too_large(field: &str) -> sg::StreamguardError {
    sg::StreamguardError::InvalidConfig(format!("{field} is too large for this platform"))
}

/// The provider config as the JSON object text hosts receive.
pub fn config_json(config: serde_json::Map<String, serde_json::Value>) -> String {
    // A JSON map always serializes.
    serde_json::Value::Object(config).to_string()
}

/// Defines `ManagerConfig` in the calling crate: the engine's configuration with durations in
/// whole milliseconds, every field but `base_url` carrying the engine's default for the
/// binding tool (`#[uniffi(default = ..)]` or `#[frb(default = ..)]`), a `Debug`/`Display`
/// that never shows the `auth_token`, and both conversions (`TryFrom<ManagerConfig> for
/// streamguard::ManagerConfig`, whose error is the engine's `InvalidConfig`, and
/// `From<streamguard::ManagerConfig>`).
///
/// `manager_config!(uniffi, #[derive(..)] ...)` or `manager_config!(frb, ...)`: the tool name
/// and the attributes of the struct.
///
/// A new engine setting is one row here: doc, name, type, default, engine field name. The
/// engine's struct is built with a struct literal, so a setting missing here fails to compile.
#[macro_export]
macro_rules! manager_config {
    ($tool:ident, $(#[$attr:meta])*) => {
        $crate::__manager_config! { @rows $tool [$(#[$attr])*] {
            /// Attempts per start/join/migration, across all providers.
            max_attempts: u32 = (3) => max_attempts,
            /// Attempts on one provider before failing over to the next.
            attempts_per_provider: u32 = (2) => attempts_per_provider,
            /// Check interval of a healthy provider that has live sessions.
            health_check_interval_ms: u64 = (30000) => health_check_interval,
            /// Consecutive failures that confirm an outage.
            failure_threshold: u32 = (3) => failure_threshold,
            /// First re-check of a suspect provider; doubles per failure up to the interval.
            suspect_recheck_delay_ms: u64 = (1000) => suspect_recheck_delay,
            /// Second outage trigger: failing with no success in between for this long. Absent
            /// (null) turns it off.
            max_unhealthy_for_ms: Option<u64> = (Some(30000)) => max_unhealthy_for,
            /// Timeout of every registry request.
            request_timeout_ms: u64 = (5000) => request_timeout,
            /// Bound on every adapter call: a hanging adapter fails the attempt, not the manager.
            adapter_timeout_ms: u64 = (10000) => adapter_timeout,
            /// Ceiling of the first retry's jittered wait.
            backoff_base_ms: u64 = (300) => backoff_base,
            /// Largest retry wait.
            backoff_cap_ms: u64 = (7000) => backoff_cap,
            /// Bound on a whole start/join/migration including waits.
            operation_deadline_ms: u64 = (45000) => operation_deadline,
            /// How often the provider list is re-read while sessions are live.
            provider_refresh_interval_ms: u64 = (30000) => provider_refresh_interval,
            /// A list younger than this is reused by a new start/join instead of re-read.
            provider_list_max_age_ms: u64 = (5000) => provider_list_max_age,
            /// Cool-down after a provider's first ejection; multiplied by the ejection count.
            cooldown_base_ms: u64 = (30000) => cooldown_base,
            /// Longest cool-down.
            cooldown_max_ms: u64 = (300000) => cooldown_max,
            /// Move sessions back to a preferred provider once it has been healthy for
            /// `failback_stability_ms`. Off by default: no flapping unless asked for.
            failback: bool = (false) => failback,
            /// How long a preferred provider must stay healthy before failback.
            failback_stability_ms: u64 = (120000) => failback_stability,
            /// Largest registry response accepted, in bytes.
            max_response_bytes: u64 = (1048576) => max_response_bytes,
            /// Allow `http://` to a non-loopback registry.
            allow_insecure_http: bool = (false) => allow_insecure_http,
            /// Events buffered per listener before the slowest one starts losing the oldest.
            event_buffer: u32 = (1024) => event_buffer,
            /// Follow the registry's push channel (Server-Sent Events) while sessions are live;
            /// polling continues as the fallback.
            push_updates: bool = (true) => push_updates,
            /// Report session start, end and failover to the registry (session telemetry).
            report_sessions: bool = (false) => report_sessions,
            /// Phase 2 of provider selection: when every candidate provider is at its
            /// `max_streams` limit, wait for a slot and take whichever provider frees one first
            /// (first come, first served), instead of failing at once with `NoCapacity`. Off by
            /// default: a live stream usually wants an answer now; checkers and IPTV profiles
            /// want to wait.
            wait_for_capacity: bool = (false) => wait_for_capacity,
            /// Longest wait for a slot in one start/join/migration, on top of
            /// `operation_deadline_ms` (the deadline bounds the attempts, not the queueing).
            capacity_max_wait_ms: u64 = (600000) => capacity_max_wait,
            /// Time to live of a stream's slot lease, renewed every third of it while the
            /// stream runs, so that a process that dies without ending its streams frees their
            /// slots on a shared ledger. At least 30 ms.
            capacity_lease_ttl_ms: u64 = (60000) => capacity_lease_ttl,
            /// Limit on this manager's concurrent streams over all providers. Absent (null) =
            /// unlimited; `0` is rejected.
            max_total_streams: Option<u32> = (None) => max_total_streams,
            /// Publishers: hot standby copies of each stream on the next healthy
            /// parallel-capable providers (0 to 3; 0 = off). Listed in the placement so viewers
            /// switch to one at once; promoted when the primary fails. Each standby is a full
            /// publish and holds a capacity slot on its provider.
            standby_providers: u32 = (0) => standby_providers,
            /// Viewers: how long `join_stream` waits for a stream that is not live yet (woken
            /// by the placement push, re-read every second); 0 = `StreamNotLive` at once.
            wait_for_live_ms: u64 = (0) => wait_for_live,
        }}
    };
}

/// The expansion of [`manager_config!`]: not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __manager_config {
    (@rows $tool:ident $attrs:tt { $($rows:tt)* }) => {
        $crate::__manager_config! { @field $tool $attrs [] $($rows)* }
        $crate::__manager_config! { @impls $($rows)* }
    };

    // One row at a time into the struct body, with the tool's spelling of its default: UniFFI
    // writes `Some(x)`/`None` for optional fields, flutter_rust_bridge the Dart value (`x`, or
    // nothing for null).
    (@field uniffi $attrs:tt [$($body:tt)*]
        $(#[$doc:meta])* $name:ident : $ty:ty = ($($default:tt)*) => $core:ident, $($rest:tt)*) => {
        $crate::__manager_config! { @field uniffi $attrs [$($body)*
            $(#[$doc])* #[uniffi(default = $($default)*)] pub $name: $ty,
        ] $($rest)* }
    };
    (@field frb $attrs:tt [$($body:tt)*]
        $(#[$doc:meta])* $name:ident : $ty:ty = (None) => $core:ident, $($rest:tt)*) => {
        $crate::__manager_config! { @field frb $attrs [$($body)*
            $(#[$doc])* pub $name: $ty,
        ] $($rest)* }
    };
    (@field frb $attrs:tt [$($body:tt)*]
        $(#[$doc:meta])* $name:ident : $ty:ty = (Some($default:literal)) => $core:ident, $($rest:tt)*) => {
        $crate::__manager_config! { @field frb $attrs [$($body)*
            $(#[$doc])* #[frb(default = $default)] pub $name: $ty,
        ] $($rest)* }
    };
    (@field frb $attrs:tt [$($body:tt)*]
        $(#[$doc:meta])* $name:ident : $ty:ty = ($default:literal) => $core:ident, $($rest:tt)*) => {
        $crate::__manager_config! { @field frb $attrs [$($body)*
            $(#[$doc])* #[frb(default = $default)] pub $name: $ty,
        ] $($rest)* }
    };
    (@field uniffi [$(#[$attr:meta])*] [$($body:tt)*]) => {
        $crate::__manager_config! { @struct [$(#[$attr])*] [
            /// Bearer token sent to the registry. Never logged.
            #[uniffi(default = None)]
            pub auth_token: Option<String>,
            $($body)*
        ] }
    };
    (@field frb [$(#[$attr:meta])*] [$($body:tt)*]) => {
        $crate::__manager_config! { @struct [$(#[$attr])*] [
            /// Bearer token sent to the registry. Never logged.
            pub auth_token: Option<String>,
            $($body)*
        ] }
    };
    (@struct [$(#[$attr:meta])*] [$($body:tt)*]) => {
        /// Everything a `StreamingProviderManager` can be tuned by. Every field but `base_url`
        /// has the engine's default in the generated code, and `default_manager_config`
        /// returns the engine's own defaults so tests can check that the two agree. Durations
        /// are whole milliseconds. Validated when the manager is created. Printing it never
        /// shows the `auth_token`.
        $(#[$attr])*
        pub struct ManagerConfig {
            /// Base URL of the provider registry; `/streaming/providers` is appended. `https`
            /// is required unless the host is loopback or `allow_insecure_http` is set.
            pub base_url: String,
            $($body)*
        }
    };

    (@impls $($(#[$doc:meta])* $name:ident : $ty:ty = ($($default:tt)*) => $core:ident,)*) => {
        // Hand-written so the token can never reach a log line, here or in a host.
        impl ::std::fmt::Debug for ManagerConfig {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("ManagerConfig")
                    .field("base_url", &self.base_url)
                    .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
                    $(.field(stringify!($name), &self.$name))*
                    .finish()
            }
        }

        impl ::std::fmt::Display for ManagerConfig {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self, f)
            }
        }

        impl ::std::convert::TryFrom<ManagerConfig> for $crate::sg::ManagerConfig {
            type Error = $crate::sg::StreamguardError;

            fn try_from(c: ManagerConfig) -> ::std::result::Result<Self, Self::Error> {
                Ok($crate::sg::ManagerConfig {
                    base_url: c.base_url,
                    auth_token: c.auth_token,
                    $($core: $crate::IntoCore::into_core(c.$name, stringify!($name))?,)*
                })
            }
        }

        impl ::std::convert::From<$crate::sg::ManagerConfig> for ManagerConfig {
            fn from(c: $crate::sg::ManagerConfig) -> Self {
                Self {
                    base_url: c.base_url,
                    auth_token: c.auth_token,
                    $($name: $crate::FromCore::from_core(c.$core),)*
                }
            }
        }
    };
}

/// Defines the engine's fieldless enums in the calling crate, variant for variant, with their
/// conversions (both ways for `ProviderErrorKind`, which hosts also send). `$attr`: the
/// attributes of every enum (derives, the tool's `uniffi::Enum`).
#[macro_export]
macro_rules! plain_enums {
    ($(#[$attr:meta])*) => {
        $crate::__plain_enum! { [$(#[$attr])*] both
            /// What kind of failure a provider error is; the kind, not the text, decides what
            /// the engine does next.
            ProviderErrorKind {
                /// The call did not finish in time (also used when an adapter hangs past
                /// `adapter_timeout_ms`). Transient: retried on the same provider.
                Timeout,
                /// A network error between the device and the provider. Transient.
                Network,
                /// The provider answered but is temporarily unable to serve. Transient.
                Unavailable,
                /// Credentials were refused. Provider-fatal: the next provider is tried at once.
                Unauthorized,
                /// The provider's quota or capacity is exhausted. Provider-fatal.
                QuotaExceeded,
                /// The request itself is invalid (unknown or banned stream). Request-fatal: no
                /// other provider is tried.
                InvalidStream,
                /// The adapter does not implement this operation (the answer of `probe` when
                /// there is no local health check). Provider-fatal.
                NotSupported,
                /// The adapter failed in an unexpected way (an unknown exception).
                /// Provider-fatal.
                Internal,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// Lifecycle of one session (one stream id on this device).
            SessionState {
                /// Created, no attempt made yet.
                Idle,
                /// A start or join is running (attempts, backoff waits).
                Connecting,
                /// Running on a provider.
                Live,
                /// Moving to another provider.
                Migrating,
                /// Every option was exhausted; the stream is not running anywhere.
                Failed,
                /// Ended by `end_stream` or `shutdown`.
                Ended,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// Which side of a stream a session is.
            Role {
                /// Broadcaster: `start_stream`.
                Publisher,
                /// Viewer: `join_stream`.
                Viewer,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// What an attempt was for.
            Operation {
                /// `start_stream`.
                Start,
                /// `join_stream`.
                Join,
                /// Moving a live session to another provider.
                Migrate,
                /// A publisher starting a hot standby copy of its stream.
                Standby,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// Why the engine moved away from a provider.
            FailoverReason {
                /// An operation used up `attempts_per_provider` on it.
                RetriesExhausted,
                /// It returned a provider-fatal error (unauthorized, quota...).
                ProviderRejected,
                /// Health checks confirmed an outage.
                HealthCheckFailed,
                /// The vendor SDK reported an error that was confirmed (or was provider-fatal).
                ErrorReported,
                /// The registry disabled or removed it.
                ProviderDisabled,
                /// The registry made another provider preferred.
                PriorityChanged,
                /// A preferred provider has been healthy long enough to move back to it.
                Failback,
                /// The stream's capacity lease could not be renewed (it expired, or the shared
                /// ledger was unreachable for longer than its time to live): its slot may
                /// belong to someone else now.
                CapacityLost,
                /// A viewer follows its publisher, which moved to another provider (the
                /// placement directory's new epoch).
                PlacementChanged,
                /// The registry confirmed that the stream's viewers on the provider are
                /// stalled (its minimum count and share reached).
                AudienceStalled,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// Where a media quality score (0 to 100) lies.
            QualityBand {
                /// 80 or more.
                Good,
                /// 40 to 80.
                Degraded,
                /// Below 40.
                Bad,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] both
            /// A media quality level asked of an adapter (`set_quality`); what each means is
            /// the SDK's choice.
            QualityLevel {
                /// The stream's normal quality.
                High,
                /// A lighter variant (a lower simulcast layer, half the bitrate).
                Medium,
                /// The lightest the SDK offers (the lowest layer, or audio only).
                Low,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// How a migration was carried out.
            MigrationStrategy {
                /// Leave the old provider, then start on the new one (the default).
                BreakBeforeMake,
                /// Start on the new provider, then leave the old (both adapters support
                /// parallel sessions).
                MakeBeforeBreak,
            }
        }
        $crate::__plain_enum! { [$(#[$attr])*] from_core
            /// What the engine currently believes about a provider.
            HealthStatus {
                /// Never checked or used.
                Unknown,
                /// The last signal was good.
                Healthy,
                /// Failed recently, below the threshold: re-checked quickly to confirm or clear.
                Suspect,
                /// Failure confirmed: sessions were moved away and it is cooling down.
                Unhealthy,
            }
        }
    };
}

/// One enum of [`plain_enums!`]: not for direct use. The match lists every variant, so a new
/// engine variant fails to compile here instead of being mapped silently.
#[doc(hidden)]
#[macro_export]
macro_rules! __plain_enum {
    ([$(#[$attr:meta])*] $dir:ident
        $(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident,)+ }) => {
        $(#[$doc])*
        $(#[$attr])*
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl ::std::convert::From<$crate::sg::$name> for $name {
            fn from(v: $crate::sg::$name) -> Self {
                match v {
                    $($crate::sg::$name::$variant => Self::$variant,)+
                }
            }
        }

        // For the records' fields that hold this enum.
        impl $crate::FromCore<$crate::sg::$name> for $name {
            fn from_core(core: $crate::sg::$name) -> Self {
                core.into()
            }
        }

        $crate::__plain_enum! { @into_core $dir $name $($variant)+ }
    };
    (@into_core from_core $name:ident $($variant:ident)+) => {};
    (@into_core both $name:ident $($variant:ident)+) => {
        impl ::std::convert::From<$name> for $crate::sg::$name {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => Self::$variant,)+
                }
            }
        }
    };
}

/// Defines the plain records in the calling crate: `ProviderInfo`, `SessionInfo` and
/// `ProviderStats`, with their conversions from the engine's types. `latency = f64` or `u64`:
/// the type of the two average latencies in `ProviderStats` (whole milliseconds in the UniFFI
/// API, fractional in Dart, as each API has always had them). `$attr`: the attributes of every
/// record. Needs the enums of [`plain_enums!`] in scope.
#[macro_export]
macro_rules! plain_records {
    (latency = $latency:ty, $(#[$attr:meta])*) => {
        /// A streaming provider as listed by the registry.
        $(#[$attr])*
        pub struct ProviderInfo {
            /// Unique name, e.g. `"agora"`; also the key its adapter is registered under.
            pub name: String,
            /// Inactive providers are never chosen.
            pub is_active: bool,
            /// Lower number = preferred. Ties break by name.
            pub priority: u32,
            /// The registry's raw provider configuration (app ids, regions...) as a JSON
            /// object.
            pub config_json: String,
            /// Concurrent stream limit, if the registry declares one (`0` means unlimited).
            pub max_streams: Option<u32>,
            /// Streams currently running on the provider, if the registry reports it.
            pub active_streams: Option<u32>,
        }

        // Destructured without `..`: a field added to the engine's struct fails to compile
        // until the bindings carry it too.
        impl ::std::convert::From<$crate::sg::ProviderInfo> for ProviderInfo {
            fn from(p: $crate::sg::ProviderInfo) -> Self {
                let $crate::sg::ProviderInfo {
                    name,
                    is_active,
                    priority,
                    config,
                    max_streams,
                    active_streams,
                } = p;
                Self {
                    name,
                    is_active,
                    priority,
                    config_json: $crate::config_json(config),
                    max_streams,
                    active_streams,
                }
            }
        }

        $crate::__plain_record! { [$(#[$attr])*]
            /// A snapshot of one session.
            SessionInfo {
                /// Its stream id.
                stream_id: String => stream_id,
                /// Publisher or viewer.
                role: Role => role,
                /// The provider carrying it now, if any.
                provider: Option<String> => provider,
                /// Lifecycle state.
                state: SessionState => state,
                /// Attempts made for it so far (all operations).
                attempts: u32 => attempts,
                /// Completed migrations.
                migrations: u32 => migrations,
                /// The last error seen, if any.
                last_error: Option<String> => last_error,
                /// Publisher: providers carrying hot standby copies of it, best first.
                standby: Vec<String> => standby,
            }
        }

        $crate::__plain_record! { [$(#[$attr])*]
            /// Statistics of one provider, as seen by this manager.
            ProviderStats {
                /// Provider name.
                provider: String => provider,
                /// Current health status.
                status: HealthStatus => status,
                /// Start/join/migration attempts on it.
                attempts: u64 => attempts,
                /// Attempts that succeeded.
                successes: u64 => successes,
                /// Attempts that failed.
                failures: u64 => failures,
                /// Errors reported through `record_error`.
                reported_errors: u64 => reported_errors,
                /// Failures (of any kind) since its last success.
                consecutive_failures: u32 => consecutive_failures,
                /// Health checks run.
                health_checks: u64 => health_checks,
                /// Health checks that failed.
                failed_health_checks: u64 => failed_health_checks,
                /// When it was last checked, in milliseconds since the manager was created.
                last_check_at_ms: Option<u64> => last_check_at,
                /// Moving average of health-check round trips, in milliseconds.
                avg_check_latency_ms: Option<$latency> => avg_check_latency,
                /// Moving average of successful start/join calls, in milliseconds.
                avg_connect_latency_ms: Option<$latency> => avg_connect_latency,
                /// Share of health checks that passed, in percent; absent (null) before the
                /// first check.
                uptime_percent: Option<f64> => uptime_percent,
                /// Sessions live on it now (primaries only).
                live_sessions: u32 => live_sessions,
                /// Hot standby copies of publishers' streams on it now (each holds a slot).
                standby_sessions: u32 => standby_sessions,
                /// Its media quality score, 0 to 100 (moving average of `record_quality`
                /// samples); absent (null) before the first sample.
                quality_score: Option<f64> => quality_score,
                /// Times it was ejected (cooled down).
                times_ejected: u32 => times_ejected,
                /// Milliseconds left in its cool-down.
                cooling_for_ms: Option<u64> => cooling_for,
            }
        }

    };
}

/// One record of [`plain_records!`]: not for direct use. The engine's struct is destructured
/// without `..`, so a field added to it fails to compile until the row is added here.
#[doc(hidden)]
#[macro_export]
macro_rules! __plain_record {
    ([$(#[$attr:meta])*]
        $(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty => $core:ident,)+ }) => {
        $(#[$doc])*
        $(#[$attr])*
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)+
        }

        impl ::std::convert::From<$crate::sg::$name> for $name {
            fn from(v: $crate::sg::$name) -> Self {
                let $crate::sg::$name { $($core,)+ } = v;
                Self {
                    $($field: $crate::FromCore::from_core($core),)+
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_cross_as_milliseconds() {
        assert_eq!(u64::from_core(Duration::from_micros(250_900)), 250);
        assert_eq!(f64::from_core(Duration::from_micros(1_500)), 1.5);
        assert_eq!(Option::<u64>::from_core(None::<Duration>), None);
        assert_eq!(
            IntoCore::<Duration>::into_core(1500_u64, "x").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn a_value_that_does_not_fit_names_its_field() {
        if usize::BITS < 64 {
            let e = IntoCore::<usize>::into_core(u64::MAX, "max_response_bytes").unwrap_err();
            assert!(e.to_string().contains("max_response_bytes"), "{e}");
        }
        assert_eq!(u32::from_core(usize::MAX), u32::MAX);
    }

    #[test]
    fn provider_config_crosses_as_json() {
        let mut p = sg::ProviderInfo::new("agora", 1);
        p.config.insert("appId".into(), "abc".into());
        assert_eq!(config_json(p.config), r#"{"appId":"abc"}"#);
    }
}
