#![no_main]
//! `cargo fuzz run playlist`: see [`streamguard_fuzz::playlist`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::playlist(data));
