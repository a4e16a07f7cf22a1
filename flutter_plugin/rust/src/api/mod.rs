//! Everything flutter_rust_bridge exposes to Dart (`rust_input: crate::api`): the records and
//! enums in [`types`], the engine handle in [`manager`] and the library's init hook.

pub mod manager;
pub mod types;

/// Runs once when Dart loads the library (`RustLib.init()`): the engine's `tracing` events go
/// to the platform log (logcat, os_log, stdout) at info level and above.
#[flutter_rust_bridge::frb(init)]
pub fn init_app() {
    flutter_rust_bridge::setup_default_user_utils();
    log::set_max_level(log::LevelFilter::Info);
}
