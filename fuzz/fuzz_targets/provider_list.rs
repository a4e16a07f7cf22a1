#![no_main]
//! `cargo fuzz run provider_list`: see [`streamguard_fuzz::provider_list`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::provider_list(data));
