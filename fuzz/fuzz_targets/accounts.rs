#![no_main]
//! `cargo fuzz run accounts`: see [`streamguard_fuzz::accounts`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::accounts(data));
