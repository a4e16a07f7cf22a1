//! Runs every committed corpus file through its target's function with plain `cargo test`
//! (no sanitizer, no libFuzzer), so the targets and their properties cannot rot.

use std::path::Path;

/// A target's name (its corpus directory) and body.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_corpus_file_passes_its_target() {
    let targets: [Target; 7] = [
        ("provider_list", streamguard_fuzz::provider_list),
        ("health", streamguard_fuzz::health),
        ("sse", streamguard_fuzz::sse),
        ("playlist", streamguard_fuzz::playlist),
        ("accounts", streamguard_fuzz::accounts),
        ("ffprobe", streamguard_fuzz::ffprobe),
        ("registry_body", streamguard_fuzz::registry_body),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in targets {
        let dir = root.join(name);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{name}: {} fails", path.display());
            }
            files += 1;
        }
        assert!(files > 0, "{name} has an empty corpus");
    }
}
