//! `uniffi-bindgen`: generates the Python, Kotlin and Swift sources of `streamguard-ffi` from the
//! built library's metadata. Kept in this workspace so its UniFFI version always matches the
//! library's (a mismatch fails the checksum checks at load time).

fn main() {
    uniffi::uniffi_bindgen_main()
}
