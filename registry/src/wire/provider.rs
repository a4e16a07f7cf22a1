//! Provider bodies: what `POST`/`PUT /api/streaming/providers` and seed files carry, the
//! probe a config names, the public part of a config, and the checks on names, priorities and
//! costs.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::Invalid;

/// Longest provider name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Names that would collide with fixed routes under `/api/streaming/providers/`.
pub const RESERVED_NAMES: [&str; 4] = ["admin", "events", "failovers", "health-check-all"];

/// Top-level config keys that never leave the server on public routes.
const PRIVATE_CONFIG_KEYS: [&str; 3] = ["secret", "private", "probe"];

/// Checks that a provider name matches `[a-z0-9_-]{1,64}` and is not reserved.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(Invalid::new(
            "invalid_name",
            "provider name must match [a-z0-9_-]{1,64}",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Invalid::new(
            "reserved_name",
            format!("provider name '{name}' is reserved"),
        ));
    }
    Ok(())
}

/// How the health checker reaches a provider, read from `config.probe`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// `GET url`; healthy on a 2xx answer (redirects are followed).
    Http {
        /// Absolute `http://` or `https://` URL.
        url: String,
    },
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port` to connect to.
        address: String,
    },
    /// `ffprobe` reads stream information from an RTMP URL.
    Rtmp {
        /// `rtmp://` or `rtmps://` URL.
        url: String,
    },
}

impl Probe {
    /// Reads the probe from a provider config; `Ok(None)` when none is configured.
    pub fn from_config(config: &Map<String, Value>) -> Result<Option<Probe>, Invalid> {
        let Some(raw) = config.get("probe") else {
            return Ok(None);
        };
        let probe: Probe = serde_json::from_value(raw.clone())
            .map_err(|e| Invalid::new("invalid_probe", format!("config.probe: {e}")))?;
        let valid = match &probe {
            Probe::Http { url } => url.starts_with("http://") || url.starts_with("https://"),
            Probe::Tcp { address } => address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            }),
            Probe::Rtmp { url } => url.starts_with("rtmp://") || url.starts_with("rtmps://"),
        };
        if !valid {
            return Err(Invalid::new(
                "invalid_probe",
                "config.probe: http needs an http(s):// url, tcp a host:port address, rtmp an rtmp(s):// url",
            ));
        }
        Ok(Some(probe))
    }
}

/// The config as public clients see it: without the `secret`, `private` and
/// `probe` keys at the top level, and without any key starting with `_` at any depth.
pub fn public_config(config: &Map<String, Value>) -> Value {
    fn strip(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !k.starts_with('_'))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    Value::Object(
        config
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !PRIVATE_CONFIG_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), strip(v)))
            .collect(),
    )
}

/// Body of `POST /api/streaming/providers` and an entry of a seed file.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewProvider {
    /// Unique name, `[a-z0-9_-]{1,64}`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    /// Defaults to true.
    #[serde(default = "default_true")]
    pub is_active: bool,
    /// Defaults to 100; must be >= 0.
    #[serde(default = "default_priority")]
    #[schema(minimum = 0, maximum = 4294967295_i64)]
    pub priority: i64,
    /// Defaults to `{}`.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Defaults to unlimited.
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// Defaults to 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub monthly_cost: f64,
}

fn default_true() -> bool {
    true
}

fn default_priority() -> i64 {
    100
}

/// Body of `PUT /api/streaming/providers/{name}`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderUpdate {
    /// New active flag.
    pub is_active: Option<bool>,
    /// New priority, must be >= 0.
    #[schema(minimum = 0, maximum = 4294967295_i64)]
    pub priority: Option<i64>,
    /// Replaces the whole config.
    pub config: Option<Map<String, Value>>,
    /// `Some(None)` (JSON `null`) makes the provider unlimited.
    #[serde(default, deserialize_with = "present_or_null")]
    pub max_streams: Option<Option<u32>>,
    /// New monthly cost, must be >= 0.
    #[schema(minimum = 0)]
    pub monthly_cost: Option<f64>,
}

/// Tells an explicit `null` (`Some(None)`) apart from an absent field (`None`).
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Checks a priority from a request body.
pub fn validate_priority(priority: i64) -> Result<u32, Invalid> {
    u32::try_from(priority).map_err(|_| {
        Invalid::new(
            "invalid_priority",
            "priority must be an integer between 0 and 4294967295",
        )
    })
}

/// Checks a monthly cost from a request body.
pub fn validate_cost(cost: f64) -> Result<f64, Invalid> {
    if cost.is_finite() && cost >= 0.0 {
        Ok(cost)
    } else {
        Err(Invalid::new(
            "invalid_monthly_cost",
            "monthlyCost must be a number >= 0",
        ))
    }
}

/// Seed file contents: `{"providers": [ ... ]}` with entries shaped like the create body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Providers to create on first start.
    pub providers: Vec<NewProvider>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn names() {
        for ok in ["agora", "a", "web-rtc_2", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Agora",
            "a b",
            "ä",
            "a/b",
            &"x".repeat(65),
            "admin",
            "events",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_config_strips_private_parts() {
        let config = map(json!({
            "appId": "abc",
            "secret": {"key": "s"},
            "private": 1,
            "probe": {"type": "tcp", "address": "10.0.0.1:80"},
            "_token": "t",
            "nested": {"ok": 1, "_hidden": 2, "list": [{"_x": 1, "y": 2}]}
        }));
        assert_eq!(
            public_config(&config),
            json!({"appId": "abc", "nested": {"ok": 1, "list": [{"y": 2}]}})
        );
    }

    #[test]
    fn probes_parse_and_validate() {
        let ok = [
            json!({"probe": {"type": "http", "url": "http://127.0.0.1:1/x"}}),
            json!({"probe": {"type": "tcp", "address": "localhost:443"}}),
            json!({"probe": {"type": "rtmp", "url": "rtmp://h/live/k"}}),
            json!({}),
        ];
        for c in ok {
            assert!(Probe::from_config(&map(c.clone())).is_ok(), "{c}");
        }
        let bad = [
            json!({"probe": {"type": "ftp", "url": "ftp://x"}}),
            json!({"probe": {"type": "http", "url": "file:///etc/passwd"}}),
            json!({"probe": {"type": "tcp", "address": "nohost"}}),
            json!({"probe": {"type": "tcp", "address": "h:0"}}),
            json!({"probe": {"type": "http", "url": "http://x", "extra": 1}}),
            json!({"probe": "http://x"}),
        ];
        for c in bad {
            assert!(Probe::from_config(&map(c.clone())).is_err(), "{c}");
        }
    }

    #[test]
    fn update_distinguishes_null_from_absent() {
        let u: ProviderUpdate = serde_json::from_value(json!({"maxStreams": null})).unwrap();
        assert_eq!(u.max_streams, Some(None));
        let u: ProviderUpdate = serde_json::from_value(json!({})).unwrap();
        assert_eq!(u.max_streams, None);
        assert!(serde_json::from_value::<ProviderUpdate>(json!({"bogus": 1})).is_err());
    }
}
