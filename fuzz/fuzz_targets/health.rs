#![no_main]
//! `cargo fuzz run health`: see [`streamguard_fuzz::health`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::health(data));
