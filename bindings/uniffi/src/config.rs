//! [`ManagerConfig`] as a record whose every field but `base_url` has the engine's default in
//! the generated code, so hosts write `ManagerConfig(base_url=...)` and override what they need.
//!
//! The struct, its defaults, its redacting `Debug`/`Display` and both conversions are defined
//! once for both bindings, in `streamguard-mirror`; [`default_manager_config`] returns the
//! engine's own defaults so the host tests can check that the two never drift apart.

use streamguard as sg;

streamguard_mirror::manager_config!(
    uniffi,
    #[derive(Clone, PartialEq, uniffi::Record)]
    // Exported so the hosts' toString()/__str__ use the redacting format instead of listing
    // every field, token included.
    #[uniffi::export(Display)]
);

/// The engine's defaults for everything but `base_url`: equal to `ManagerConfig(base_url)`
/// built with the generated defaults.
#[uniffi::export]
pub fn default_manager_config(base_url: String) -> ManagerConfig {
    sg::ManagerConfig::new(base_url).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_the_engine_type() {
        let mine = default_manager_config("https://api.example.com/api".into());
        let core: sg::ManagerConfig = mine.clone().try_into().unwrap();
        assert_eq!(core, sg::ManagerConfig::new("https://api.example.com/api"));
        assert!(ManagerConfig::from(core) == mine);
    }

    #[test]
    fn printing_never_shows_the_token() {
        let mut c = default_manager_config("https://api.example.com/api".into());
        c.auth_token = Some("s3cr3t-token".into());
        let shown = c.to_string();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("redacted") && shown.contains("max_attempts: 3"),
            "{shown}"
        );
        assert!(
            shown.contains("wait_for_capacity: false")
                && shown.contains("capacity_max_wait_ms: 600000")
                && shown.contains("capacity_lease_ttl_ms: 60000")
                && shown.contains("max_total_streams: None"),
            "{shown}"
        );
    }
}
