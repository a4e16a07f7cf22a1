//! RTMP provider adapter (feature `rtmp`, on by default): publishes a source to a provider's
//! RTMP ingest by supervising an `ffmpeg` child process, verifies playback and probes the
//! provider's output with a tuned `ffprobe`. For desktop publishers, restreamers and real-media
//! tests; mobile apps use their vendor SDKs instead.
//!
//! A publisher process never outlives its session: it is stopped on `leave_stream`, on the
//! manager's shutdown (which leaves every session), and killed when the adapter is dropped.
//! An ffmpeg that exits on its own is reported through the error sink (wire it to
//! `StreamingProviderManager::record_error`): a killed server is noticed at once. A frozen
//! server is not noticed by ffmpeg for 90+ s, so `probe()` checks the output itself.

use crate::error::ProviderError;
use crate::provider::{ProviderAdapter, ProviderInfo};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod process;

use process::Proc;
pub use process::{ProcessKind, StopOutcome, StopReport};

/// What an [`RtmpAdapter`] publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum RtmpSource {
    /// ffmpeg's `testsrc` pattern.
    TestPattern {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frames per second (also the keyframe interval, so new viewers start within 1 s).
        fps: u32,
    },
    /// A media file, looped forever.
    File(PathBuf),
    /// Raw ffmpeg input arguments (a capture device, a network source...).
    Input(Vec<String>),
}

/// Settings of an [`RtmpAdapter`].
#[derive(Debug, Clone)]
pub struct RtmpSettings {
    /// The ffmpeg executable.
    pub ffmpeg: PathBuf,
    /// The ffprobe executable.
    pub ffprobe: PathBuf,
    /// What to publish.
    pub source: RtmpSource,
    /// Bound on one ffprobe run.
    pub probe_timeout: Duration,
    /// How long `start_stream` waits for the published stream to become playable.
    pub start_timeout: Duration,
    /// How long a stopping ffmpeg gets to quit cleanly (after the `q` keystroke on its stdin)
    /// before it is killed. Default 2 s: a healthy ffmpeg quits in about 30 ms; one blocked
    /// writing to a frozen server cannot read the keystroke and is killed at the grace.
    pub stop_grace: Duration,
    /// Allow make-before-break migrations (two publishers to two servers at once).
    pub parallel: bool,
}

impl Default for RtmpSettings {
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            source: RtmpSource::TestPattern {
                width: 320,
                height: 240,
                fps: 15,
            },
            probe_timeout: Duration::from_secs(4),
            start_timeout: Duration::from_secs(8),
            stop_grace: Duration::from_secs(2),
            parallel: true,
        }
    }
}

pub use crate::provider::ErrorSink;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Urls {
    ingest: String,
    playback: String,
}

struct Publisher {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<StopReport>,
}

/// How many stop reports an adapter keeps (newest first) for [`RtmpAdapter::last_stop`].
const STOP_HISTORY: usize = 32;

/// A [`ProviderAdapter`] for an RTMP provider. The provider's registry config names its URLs:
/// `{"ingestUrl": "rtmp://host:1935/live", "playbackUrl": "rtmp://host:1935/live"}`
/// (`playbackUrl` defaults to `ingestUrl`); the stream id is appended to both.
pub struct RtmpAdapter {
    settings: RtmpSettings,
    urls: Mutex<Option<Urls>>,
    publishers: Mutex<HashMap<String, Publisher>>,
    viewers: Mutex<Vec<String>>,
    /// One probe at a time against this provider's output.
    probe_gate: tokio::sync::Mutex<()>,
    sink: Mutex<Option<ErrorSink>>,
    stops: Mutex<VecDeque<(String, StopReport)>>,
}

impl RtmpAdapter {
    /// An adapter with `settings`.
    pub fn new(settings: RtmpSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            urls: Mutex::new(None),
            publishers: Mutex::new(HashMap::new()),
            viewers: Mutex::new(Vec::new()),
            probe_gate: tokio::sync::Mutex::new(()),
            sink: Mutex::new(None),
            stops: Mutex::new(VecDeque::new()),
        })
    }

    /// How the last stopped process of `kind` for `stream_id` ended (clean quit or kill, and
    /// how long the stop took), among the last 32 stops of this adapter.
    pub fn last_stop(&self, stream_id: &str, kind: ProcessKind) -> Option<StopReport> {
        self.stops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(id, r)| id == stream_id && r.kind == kind)
            .map(|(_, r)| *r)
    }

    fn record_stop(&self, stream_id: &str, report: StopReport) {
        let mut stops = self.stops.lock().unwrap_or_else(|e| e.into_inner());
        stops.push_front((stream_id.to_string(), report));
        stops.truncate(STOP_HISTORY);
    }

    /// Where to report a publisher that exits on its own (usually `record_error`).
    pub fn set_error_sink(&self, sink: ErrorSink) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Streams this adapter is publishing now.
    pub fn publishing(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock_publishers().keys().cloned().collect();
        v.sort();
        v
    }

    fn lock_publishers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Publisher>> {
        self.publishers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn urls(&self) -> Result<Urls, ProviderError> {
        self.urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ProviderError::internal("RTMP adapter used before initialize"))
    }

    fn source_args(&self) -> Vec<String> {
        match &self.settings.source {
            RtmpSource::TestPattern { width, height, fps } => vec![
                "-re".into(),
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("testsrc=size={width}x{height}:rate={fps}"),
            ],
            RtmpSource::File(p) => vec![
                "-re".into(),
                "-stream_loop".into(),
                "-1".into(),
                "-i".into(),
                p.display().to_string(),
            ],
            RtmpSource::Input(args) => args.clone(),
        }
    }

    fn keyframe_interval(&self) -> u32 {
        match self.settings.source {
            RtmpSource::TestPattern { fps, .. } => fps.max(1),
            _ => 30,
        }
    }

    /// Run ffprobe against `url`; Ok if it found a stream.
    pub async fn probe_url(&self, url: &str) -> Result<(), ProviderError> {
        let _one_at_a_time = self.probe_gate.lock().await;
        probe(&self.settings.ffprobe, url, self.settings.probe_timeout).await
    }

    fn spawn_publisher(&self, stream_id: &str, url: &str) -> Result<Proc, ProviderError> {
        let mut cmd = Command::new(&self.settings.ffmpeg);
        cmd.args(["-hide_banner", "-loglevel", "warning", "-nostats"])
            .args(self.source_args())
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-pix_fmt", "yuv420p", "-g"])
            .arg(self.keyframe_interval().to_string())
            .args(["-f", "flv", url])
            .stdout(Stdio::null());
        Proc::spawn(cmd, ProcessKind::Publisher, stream_id)
    }
}

/// ffprobe options that make it answer fast: about 1.5 s for a live RTMP stream and 1.6 s for
/// a dead one, instead of about 6 s with its defaults (TOOLCHAIN.md, measured on loopback).
/// Output options are the caller's.
pub const FFPROBE_FAST_ARGS: &[&str] = &[
    "-v",
    "error",
    "-analyzeduration",
    "500000",
    "-probesize",
    "32768",
    "-rw_timeout",
    "1000000",
];

/// Probe `url` with the tuned ffprobe.
async fn probe(ffprobe: &PathBuf, url: &str, timeout: Duration) -> Result<(), ProviderError> {
    let mut cmd = Command::new(ffprobe);
    cmd.args(FFPROBE_FAST_ARGS)
        .args(["-show_streams", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| ProviderError::internal(format!("cannot run {}: {e}", ffprobe.display())))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(ProviderError::timeout(format!(
            "ffprobe of {url} timed out after {timeout:?}"
        ))),
        Ok(Err(e)) => Err(ProviderError::internal(format!("ffprobe failed: {e}"))),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && stdout.contains("codec_type=") {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("no stream").trim().to_string();
                Err(ProviderError::network(format!(
                    "{url} not playable: {last}"
                )))
            }
        }
    }
}

/// Own a publisher process: report an unexpected exit through the sink, and on `stop` ask it
/// to quit (`q` on stdin), then kill it after the grace period.
async fn supervise(
    mut proc: Proc,
    stream_id: String,
    stop: CancellationToken,
    grace: Duration,
    sink: Option<ErrorSink>,
) -> StopReport {
    tokio::select! {
        status = proc.exited() => {
            warn!(stream_id, ?status, "ffmpeg publisher exited on its own");
            if let Some(sink) = sink {
                sink(&stream_id, ProviderError::network(format!(
                    "RTMP publisher exited: {}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())
                )));
            }
            proc.stop(grace).await
        }
        _ = stop.cancelled() => proc.stop(grace).await,
    }
}

fn parse_urls(provider: &ProviderInfo) -> Result<Urls, ProviderError> {
    let get = |k: &str| provider.config.get(k).and_then(|v| v.as_str());
    let ingest = get("ingestUrl").ok_or_else(|| {
        ProviderError::not_supported(format!(
            "provider {} has no config.ingestUrl for RTMP",
            provider.name
        ))
    })?;
    if !ingest.starts_with("rtmp://") && !ingest.starts_with("rtmps://") {
        return Err(ProviderError::not_supported(format!(
            "config.ingestUrl of {} is not an rtmp:// URL",
            provider.name
        )));
    }
    let playback = get("playbackUrl").unwrap_or(ingest);
    Ok(Urls {
        ingest: ingest.trim_end_matches('/').to_string(),
        playback: playback.trim_end_matches('/').to_string(),
    })
}

#[async_trait]
impl ProviderAdapter for RtmpAdapter {
    async fn initialize(&self, provider: &ProviderInfo) -> Result<(), ProviderError> {
        let urls = parse_urls(provider)?;
        info!(provider = %provider.name, ingest = %urls.ingest, "RTMP provider initialized");
        *self.urls.lock().unwrap_or_else(|e| e.into_inner()) = Some(urls);
        Ok(())
    }

    async fn start_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        let urls = self.urls()?;
        if self.lock_publishers().contains_key(stream_id) {
            return Ok(());
        }
        let ingest = format!("{}/{stream_id}", urls.ingest);
        let playback = format!("{}/{stream_id}", urls.playback);
        let mut proc = self.spawn_publisher(stream_id, &ingest)?;
        // Verified playable before it counts as started: make-before-break relies on it.
        let deadline = tokio::time::Instant::now() + self.settings.start_timeout;
        loop {
            if let Some(status) = proc.exit_status() {
                return Err(ProviderError::network(format!(
                    "ffmpeg could not publish to {ingest}: {status}"
                )));
            }
            let last = match self.probe_url(&playback).await {
                Ok(()) => break,
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                // Never verified: nothing of it is worth a clean stop.
                proc.kill().await;
                return Err(ProviderError::timeout(format!(
                    "{playback} not playable within {:?}: {}",
                    self.settings.start_timeout, last.message
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let stop = CancellationToken::new();
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let done = tokio::spawn(supervise(
            proc,
            stream_id.to_string(),
            stop.clone(),
            self.settings.stop_grace,
            sink,
        ));
        self.lock_publishers()
            .insert(stream_id.to_string(), Publisher { stop, done });
        Ok(())
    }

    async fn join_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        let urls = self.urls()?;
        self.probe_url(&format!("{}/{stream_id}", urls.playback))
            .await?;
        self.viewers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream_id.to_string());
        Ok(())
    }

    async fn leave_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        let publisher = self.lock_publishers().remove(stream_id);
        if let Some(p) = publisher {
            p.stop.cancel();
            if let Ok(report) = p.done.await {
                self.record_stop(stream_id, report);
            }
        }
        self.viewers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|v| v != stream_id);
        Ok(())
    }

    async fn probe(&self) -> Result<(), ProviderError> {
        let urls = self.urls()?;
        // The provider's output of a stream we carry; with none, there is nothing to look at.
        let target = self
            .publishing()
            .into_iter()
            .next()
            .or_else(|| {
                self.viewers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .first()
                    .cloned()
            })
            .ok_or_else(|| ProviderError::not_supported("no stream to probe"))?;
        self.probe_url(&format!("{}/{target}", urls.playback)).await
    }

    fn supports_parallel_sessions(&self) -> bool {
        // Two publishers to two different servers coexist fine, unless turned off.
        self.settings.parallel
    }
}

impl Drop for RtmpAdapter {
    fn drop(&mut self) {
        // Supervisors own the children; cancelling makes them stop the processes. If the
        // runtime is gone, dropping the tasks drops the children, which kills them.
        for (_, p) in self.lock_publishers().drain() {
            p.stop.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_from_the_provider_config() {
        let mut p = ProviderInfo::new("primary", 1);
        assert_eq!(
            parse_urls(&p).unwrap_err().kind,
            crate::ProviderErrorKind::NotSupported
        );
        p.config
            .insert("ingestUrl".into(), "rtmp://127.0.0.1:1935/live/".into());
        let u = parse_urls(&p).unwrap();
        assert_eq!(u.ingest, "rtmp://127.0.0.1:1935/live");
        assert_eq!(u.playback, u.ingest);
        p.config
            .insert("playbackUrl".into(), "rtmp://127.0.0.1:1936/play".into());
        assert_eq!(
            parse_urls(&p).unwrap().playback,
            "rtmp://127.0.0.1:1936/play"
        );
        p.config.insert("ingestUrl".into(), "http://x/".into());
        assert!(parse_urls(&p).is_err());
    }

    #[tokio::test]
    async fn a_missing_ffprobe_is_a_typed_error_not_a_panic() {
        let r = probe(
            &PathBuf::from("/nonexistent/ffprobe"),
            "rtmp://127.0.0.1:1/live/x",
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r.unwrap_err().kind, crate::ProviderErrorKind::Internal);
    }

    #[tokio::test]
    async fn probe_without_streams_is_not_supported() {
        let a = RtmpAdapter::new(RtmpSettings::default());
        let mut p = ProviderInfo::new("primary", 1);
        p.config
            .insert("ingestUrl".into(), "rtmp://127.0.0.1:1/live".into());
        a.initialize(&p).await.unwrap();
        assert_eq!(
            a.probe().await.unwrap_err().kind,
            crate::ProviderErrorKind::NotSupported
        );
    }
}
