//! The `streamguard` command line: argument parsing, wiring of ledger and work source (local
//! or Redis), Ctrl-C, report writing and exit codes (0 done, 2 error, 130 interrupted).

use crate::accounts::Accounts;
use crate::backend::{Backoff, Outage, Stop};
use crate::m3u;
use crate::plan::Plan;
use crate::queue::WorkSource;
use crate::report;
use crate::run::{Job, Run, Settings};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use streamguard::capacity::{CapacityError, InMemoryLedger, SelectionPolicy, SlotLedger};
use streamguard_redis::{RedisLedger, RedisLedgerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "streamguard", version, about = "Streamguard tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every stream of an M3U playlist with ffprobe and write a JSON and a CSV report.
    Check(CheckArgs),
}

/// Options of `streamguard check`. Durations take `500ms`, `1.5s`, `2m` or plain seconds.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// M3U playlist: `#EXTINF` lines with attributes, per-stream options (`#EXTVLCOPT`,
    /// `#KODIPROP`, `URL|User-Agent=...`), UTF-8 or Windows-1252. An HLS media playlist is
    /// refused.
    #[arg(long)]
    pub playlist: PathBuf,
    /// Accounts and profiles (JSON; see the crate docs). Without it every stream is probed as
    /// written, limited only by --concurrency.
    #[arg(long)]
    pub accounts: Option<PathBuf>,
    /// Report path without extension: OUT.json and OUT.csv are written.
    #[arg(long)]
    pub report: PathBuf,
    /// Share limits and split the work with other checker processes through this Redis
    /// (`redis://127.0.0.1:6379/`).
    #[arg(long)]
    pub redis: Option<String>,
    /// Global limit on probes running at once (shared by all processes with --redis).
    #[arg(long, default_value_t = 100)]
    pub concurrency: u32,
    /// The ffprobe program, or a stand-in that takes the same arguments.
    #[arg(long, env = "STREAMGUARD_PROBE_CMD", default_value = "ffprobe")]
    pub probe_cmd: String,
    /// Bound on one probe; the probe is killed after it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Extra probes on the same profile after a failure.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Pause before each retry.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Longest wait for a free slot per stream.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Skip profiles that are full instead of waiting for them (phase 1 only).
    #[arg(long)]
    pub no_wait_for_full: bool,
    /// Lease time to live (renewed every third of it while a probe runs). Also how long new
    /// probes wait after Redis came back empty, while the run and its leases are rebuilt.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// How long Redis may stay unreachable (down, stalled, dropping connections) before the
    /// run stops with its partial report; meanwhile nothing new starts and running probes
    /// finish.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub backend_grace: Duration,
    /// Run id shared by the processes that split one playlist (--redis). Default: derived
    /// from the playlist and accounts files; pass a new one to check the same files again.
    #[arg(long)]
    pub run_id: Option<String>,
    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// `500ms`, `1.5s`, `2m`, `10` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 500ms, 1.5s, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// A failure worth retrying (the backend could not be asked).
struct Retry(String);

/// Runs `op` until it succeeds, retrying with backoff while it fails with [`Retry`], for at
/// most `grace`.
async fn within_grace<T, F, Fut>(grace: Duration, mut op: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Retry>>,
{
    let outage = Outage::new(grace);
    let mut backoff = Backoff::default();
    let never = CancellationToken::new();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Retry(m)) => {
                if let Err(Stop::PastGrace(m)) = outage.pause(&mut backoff, &never, &m).await {
                    return Err(m);
                }
            }
        }
    }
}

/// FNV-1a over the inputs: processes given the same files agree on a run id without talking.
pub fn default_run_id(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("streamguard: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check(args) => runtime.block_on(check(args)),
    }
}

/// `streamguard check`.
pub async fn check(args: CheckArgs) -> ExitCode {
    match check_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("streamguard: {e}");
            ExitCode::from(2)
        }
    }
}

async fn check_inner(args: CheckArgs) -> Result<ExitCode, String> {
    let playlist_text = read_bounded(&args.playlist, MAX_PLAYLIST_BYTES)
        .map_err(|e| format!("cannot read playlist {}: {e}", args.playlist.display()))?;
    let read = m3u::read(&playlist_text)
        .map_err(|e| format!("playlist {}: {e}", args.playlist.display()))?;
    let playlist_info = report::PlaylistInfo::of(&read);
    print_warnings(&playlist_info.warnings);
    let plan = Plan::new(read.entries);
    let playlist = plan.targets().to_vec();
    let (accounts, accounts_text) = match &args.accounts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read accounts {}: {e}", path.display()))?;
            (Accounts::from_json(&text)?, text)
        }
        None => (Accounts::default(), String::new()),
    };
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let settings = Settings {
        concurrency: args.concurrency,
        probe_program: args.probe_cmd.clone(),
        probe_timeout: args.probe_timeout,
        retries: args.retries,
        retry_delay: args.retry_delay,
        policy: SelectionPolicy {
            wait_for_full: !args.no_wait_for_full,
            max_wait: args.max_wait,
        },
        lease_ttl: args.lease_ttl,
        progress: !args.no_progress,
        backend_grace: args.backend_grace,
    };
    let (ledger, source, run_id): (Arc<dyn SlotLedger>, WorkSource, Option<String>) =
        match &args.redis {
            None => (
                Arc::new(InMemoryLedger::new(Some(args.concurrency))),
                WorkSource::local(playlist.len()),
                None,
            ),
            Some(url) => {
                let run_id = args
                    .run_id
                    .clone()
                    .unwrap_or_else(|| default_run_id(&[&playlist_text, accounts_text.as_bytes()]));
                let mut config = RedisLedgerConfig::new(url.clone());
                config.global_limit = Some(args.concurrency);
                config.rebuild_window = args.lease_ttl;
                // A stalled Redis is reported (and the backend grace starts) within ~2 s; the
                // run's own retries take over from there.
                config.op_timeout = Duration::from_secs(1);
                config.retries = 1;
                // A Redis that is down or stalled at start is waited for, within the grace.
                let grace = args.backend_grace;
                let ledger = within_grace(grace, || async {
                    match RedisLedger::connect(config.clone()).await {
                        Err(CapacityError::Unavailable(m)) => Err(Retry(m)),
                        other => Ok(other.map_err(|e| e.to_string())),
                    }
                })
                .await??;
                let (source, created) = within_grace(grace, || async {
                    WorkSource::redis(url, &run_id, playlist.len(), args.lease_ttl)
                        .await
                        .map_err(Retry)
                })
                .await?;
                if !created && source.remaining().await == Some(0) {
                    eprintln!(
                        "streamguard: run {run_id} has no streams left (already checked?); \
                         pass a new --run-id to check again"
                    );
                }
                (Arc::new(ledger), source, Some(run_id))
            }
        };
    let run = Run::new(
        settings,
        Job {
            playlist,
            accounts,
            ledger,
            source,
            run_id,
        },
    );
    let stopper = run.stopper();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstreamguard: interrupted; finishing the report (Ctrl-C again to quit now)"
            );
            stopper.interrupt();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut report = plan.expand(run.execute().await);
    report.playlist = Some(playlist_info);
    signals.abort();
    let (json, csv) = report::write(&report, &args.report)
        .map_err(|e| format!("cannot write report {}: {e}", args.report.display()))?;
    let s = &report.summary;
    eprintln!(
        "streamguard: {} checked, {} distinct URLs ({}); report: {} and {}",
        s.checked,
        s.unique_urls,
        s.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        json.display(),
        csv.display()
    );
    if let Some(e) = &s.error {
        eprintln!("streamguard: stopped early: {e}");
        return Ok(ExitCode::from(2));
    }
    if s.interrupted {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest playlist read (the largest public IPTV playlists are a few tens of MiB).
pub const MAX_PLAYLIST_BYTES: u64 = 256 << 20;

/// Reads a file of at most `max` bytes; a larger one is an error, not a memory hog.
pub fn read_bounded(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// At most this many playlist warnings are printed; all of them are in the JSON report.
const PRINTED_WARNINGS: usize = 20;

/// Prints the playlist's warnings on stderr (line numbers and reasons, never whole lines).
fn print_warnings(warnings: &[report::PlaylistWarning]) {
    for w in warnings.iter().take(PRINTED_WARNINGS) {
        eprintln!("streamguard: playlist line {}: {}", w.line, w.message);
    }
    if warnings.len() > PRINTED_WARNINGS {
        eprintln!(
            "streamguard: {} more playlist warnings in the JSON report",
            warnings.len() - PRINTED_WARNINGS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn files_over_the_bound_are_refused() {
        let path = std::env::temp_dir().join(format!("sg-bounded-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"0123456789");
        let e = read_bounded(&path, 9).unwrap_err();
        assert_eq!(e.to_string(), "larger than 9 bytes");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn run_ids_depend_on_every_input() {
        let a = default_run_id(&[b"p", b"a"]);
        assert_eq!(a, default_run_id(&[b"p", b"a"]));
        assert_ne!(a, default_run_id(&[b"pa", b""]));
        assert_ne!(a, default_run_id(&[b"p", b"b"]));
    }

    #[test]
    fn the_cli_parses_the_documented_command() {
        let cli = Cli::try_parse_from([
            "streamguard",
            "check",
            "--playlist",
            "list.m3u",
            "--accounts",
            "accounts.json",
            "--report",
            "out",
            "--redis",
            "redis://127.0.0.1:6379",
            "--concurrency",
            "100",
        ])
        .unwrap();
        let Command::Check(a) = cli.command;
        assert_eq!(a.concurrency, 100);
        assert_eq!(a.max_wait, Duration::from_secs(600));
        assert_eq!(a.backend_grace, Duration::from_secs(60));
        assert_eq!(a.redis.as_deref(), Some("redis://127.0.0.1:6379"));
    }
}
