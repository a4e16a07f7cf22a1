#![no_main]
//! `cargo fuzz run ffprobe`: see [`streamguard_fuzz::ffprobe`] for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| streamguard_fuzz::ffprobe(data));
