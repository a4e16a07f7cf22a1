//! Stopping the RTMP adapter's supervised ffmpeg (issue 12, item 8): a publisher asked to stop
//! quits by itself on the `q` keystroke, well under the grace period; only one that does not
//! quit is killed, at the grace. Real nginx-rtmp on a free loopback port, real ffmpeg.

use std::time::Duration;
use streamguard::rtmp::{ProcessKind, RtmpSettings, StopOutcome};
use streamguard::ProviderAdapter;
use streamguard_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_publisher_quits_by_itself_well_under_the_grace() {
    let _one = serial().await;
    let server = Nginx::start("stop");
    let settings = RtmpSettings::default();
    let grace = settings.stop_grace;
    let adapter = adapter_for(&server, settings).await;
    let mut took = vec![];
    for i in 0..5 {
        let id = format!("cam{i}");
        adapter.start_stream(&id).await.unwrap();
        assert_eq!(publishers_to(server.port), 1);
        adapter.leave_stream(&id).await.unwrap();
        let r = adapter.last_stop(&id, ProcessKind::Publisher).unwrap();
        // Before the fix: Killed after the whole grace (2 s), every time.
        assert_eq!(r.outcome, StopOutcome::Quit, "{r:?}");
        assert!(r.took < grace / 4, "{r:?}");
        assert_eq!(publishers_to(server.port), 0, "no ffmpeg left");
        took.push(r.took);
    }
    println!(
        "publisher clean stop: {} (grace {grace:?})",
        median_ms(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_ignores_the_keystroke_is_killed_at_the_grace() {
    let _one = serial().await;
    let server = Nginx::start("deaf");
    // A real ffmpeg that does not read its stdin, so `q` never reaches it.
    let dir = std::env::temp_dir().join(format!("sg-deaf-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deaf = dir.join("ffmpeg");
    std::fs::write(&deaf, "#!/bin/sh\nexec ffmpeg -nostdin \"$@\"\n").unwrap();
    let mut perms = std::fs::metadata(&deaf).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&deaf, perms).unwrap();
    let grace = Duration::from_secs(1);
    let adapter = adapter_for(
        &server,
        RtmpSettings {
            ffmpeg: deaf,
            stop_grace: grace,
            ..RtmpSettings::default()
        },
    )
    .await;
    adapter.start_stream("cam").await.unwrap();
    adapter.leave_stream("cam").await.unwrap();
    let r = adapter.last_stop("cam", ProcessKind::Publisher).unwrap();
    println!("deaf publisher stop: {r:?}");
    assert_eq!(r.outcome, StopOutcome::Killed, "{r:?}");
    assert!(
        r.took >= grace && r.took < grace + Duration::from_millis(500),
        "{r:?}"
    );
    assert_eq!(publishers_to(server.port), 0, "no ffmpeg left");
    let _ = std::fs::remove_dir_all(&dir);
}
