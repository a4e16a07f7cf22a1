//! Health probes (HTTP, TCP, RTMP via `ffprobe`) and the background loop that
//! checks every active provider on an interval. Each probe is bounded by the
//! configured timeout; an RTMP child process is killed when it runs over.

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::RegistryError;
use crate::wire::Probe;

/// Result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// Whether the target answered as expected.
    pub ok: bool,
    /// Time from start to result (the timeout, when it ran over).
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// Runs probes with a shared HTTP client and a fixed timeout.
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
    timeout: Duration,
    ffprobe: PathBuf,
}

impl Prober {
    /// A prober whose every probe gives up after `timeout`.
    pub fn new(timeout: Duration, ffprobe: PathBuf) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("streamguard-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Config(format!("http client: {e}")))?;
        Ok(Self {
            http,
            timeout,
            ffprobe,
        })
    }

    /// Probes `target` once.
    pub async fn probe(&self, target: &Probe) -> ProbeOutcome {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.run(target)).await {
            Ok(result) => result,
            // Dropping the probe future here also kills an ffprobe child (kill_on_drop).
            Err(_) => Err(format!("timed out after {} ms", self.timeout.as_millis())),
        };
        ProbeOutcome {
            ok: result.is_ok(),
            latency: start.elapsed(),
            error: result.err(),
        }
    }

    async fn run(&self, target: &Probe) -> Result<(), String> {
        match target {
            Probe::Http { url } => {
                let response = self.http.get(url).send().await.map_err(|e| describe(&e))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
            Probe::Tcp { address } => TcpStream::connect(address.as_str())
                .await
                .map(drop)
                .map_err(|e| format!("tcp connect to {address}: {e}")),
            Probe::Rtmp { url } => self.ffprobe(url).await,
        }
    }

    async fn ffprobe(&self, url: &str) -> Result<(), String> {
        let child = Command::new(&self.ffprobe)
            .args([
                "-v",
                "error",
                "-analyzeduration",
                "500000",
                "-probesize",
                "32768",
            ])
            .args(["-rw_timeout", "1000000", "-show_streams", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "ffprobe not found".to_owned(),
                _ => format!("cannot run ffprobe: {e}"),
            })?;
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| format!("ffprobe: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && stdout.contains("[STREAM]") {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        // ffprobe's last line names the URL and the final cause; earlier lines are per-layer detail.
        let reason = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| match output.status.code() {
                Some(0) => "no stream found".to_owned(),
                Some(code) => format!("ffprobe exited with status {code}"),
                None => "ffprobe was killed".to_owned(),
            });
        Err(reason.chars().take(300).collect())
    }
}

/// Joins an error with its sources, since reqwest's top-level message alone
/// ("error sending request") does not say what went wrong.
fn describe(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Runs a check `round` now and then every `interval`, until `shutdown` turns true (a round
/// in progress is dropped then). The server's round checks every active provider; taking it
/// as a closure keeps this loop free of the registry state.
pub(crate) async fn run_checker<F, Fut>(
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    // A slow round must not be followed by a burst of catch-up rounds.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = round() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
