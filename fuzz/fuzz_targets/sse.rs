#![no_main]
//! `cargo fuzz run sse`: see [`streamguard_fuzz::sse`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::sse(data));
