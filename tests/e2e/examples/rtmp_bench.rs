//! RTMP failover benchmark: runs the real-media scenarios of `tests/rtmp.rs` several times and
//! prints detection time, recovery time and planned-migration gaps (median and range).
//! `cargo run --release -p streamguard-e2e --example rtmp_bench -- [runs]` (default 5).

use streamguard_e2e::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let (mut kd, mut kp, mut fd, mut fp, mut bbb, mut mbb) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        eprintln!("run {}/{runs}", i + 1);
        let k = scenario_killed().await;
        kd.push(k.detected);
        kp.push(k.playable);
        let f = scenario_frozen().await;
        fd.push(f.detected);
        fp.push(f.playable);
        bbb.push(scenario_planned(false).await.0);
        mbb.push(scenario_planned(true).await.0);
    }
    println!("| scenario ({runs} runs, median (min–max)) | detection (fault → failover decision) | recovery (fault → playable on backup) | target |");
    println!("|---|---|---|---|");
    println!(
        "| primary killed (SIGKILL) | {} | {} | detected < 2 s |",
        median_ms(kd),
        median_ms(kp)
    );
    println!(
        "| primary frozen (SIGSTOP), 3 s checks | {} | {} | detected < 10 s |",
        median_ms(fd),
        median_ms(fp)
    );
    println!();
    println!("| planned migration (admin priority switch) | gap without a provider |  target |");
    println!("|---|---|---|");
    println!("| break-before-make | {} | |", median_ms(bbb));
    println!("| make-before-break | {} | < 1 s |", median_ms(mbb));
}
