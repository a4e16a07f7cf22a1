#![no_main]
//! `cargo fuzz run registry_body`: see [`streamguard_fuzz::registry_body`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::registry_body(data));
