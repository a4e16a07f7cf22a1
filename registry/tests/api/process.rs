//! The binary: started as a process with environment configuration, it prints
//! its address, serves the seeded providers, and exits cleanly on SIGTERM.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use crate::common::{TempDir, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_streamguard-registry");

#[tokio::test]
async fn binary_prints_its_address_and_serves_the_seed() {
    let dir = TempDir::new("process");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/providers.json");
    let mut child = Command::new(BIN)
        .args(["--seed", seed])
        .env("STREAMGUARD_REGISTRY_ADDR", "127.0.0.1:0")
        .env("STREAMGUARD_REGISTRY_DB", dir.path().join("r.db"))
        .env("STREAMGUARD_ADMIN_TOKEN", "process-admin-token-01")
        .env("STREAMGUARD_SUPER_ADMIN_TOKEN", "process-super-token-01")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(WAIT, lines.next_line())
        .await
        .expect("address line in time")
        .unwrap()
        .expect("a line on stdout");
    let url = line
        .strip_prefix("streamguard-registry listening on ")
        .unwrap_or_else(|| panic!("unexpected line: {line}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with(":0"), "{url}");

    let body: Value = reqwest::get(format!("{url}/api/streaming/providers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = body["data"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agora", "zegocloud", "webrtc"]);
    assert!(body["data"]["providers"][0]["config"]
        .get("secret")
        .is_none());
    assert!(body["data"]["providers"][2]["config"]
        .get("_note")
        .is_none());

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn binary_rejects_bad_arguments_and_config() {
    let help = Command::new(BIN).arg("--help").output().await.unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));

    let bad = Command::new(BIN).arg("--bogus").output().await.unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let dir = TempDir::new("badcfg");
    let config = dir.path().join("registry.json");
    std::fs::write(&config, r#"{"adress": "127.0.0.1:0"}"#).unwrap();
    let bad_config = Command::new(BIN)
        .args(["--config".as_ref(), config.as_os_str()])
        .output()
        .await
        .unwrap();
    assert_eq!(bad_config.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_config.stderr).contains("unknown field"));
}
