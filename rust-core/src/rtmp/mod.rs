//! RTMP provider adapter (feature `rtmp`, on by default): publishes a source to a provider's
//! RTMP ingest by supervising an `ffmpeg` child process, watches a stream as a real viewer (a
//! second supervised ffmpeg pulling it and counting its frames), and probes the provider's
//! output with a tuned `ffprobe`. For desktop publishers, restreamers, monitoring viewers and
//! real-media tests; mobile apps use their vendor SDKs instead.
//!
//! A process never outlives its session: it is stopped on `leave_stream`, on the manager's
//! shutdown (which leaves every session), and killed when the adapter is dropped. Stopping is
//! the `q` keystroke, then a kill after `stop_grace` ([`StopReport`] says which it took).
//! A publisher or viewer ffmpeg that exits on its own, and a viewer that receives no frames for
//! `stall_timeout`, are reported through the error sink (wire it to
//! `StreamingProviderManager::record_error`): a killed server is noticed at once by both; a
//! frozen server is not noticed by a publishing ffmpeg for 90+ s, so `probe()` checks the
//! output itself, and a viewer notices it from its own frames.

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
mod viewer;

use process::Proc;
pub use process::{ProcessKind, StopOutcome, StopReport};
use viewer::{SharedTimeline, Timeline};
pub use viewer::{ViewerStats, FROZEN_AFTER};

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
    /// How long `start_stream` waits for the published stream to become playable, and
    /// `join_stream` for the viewer's first frame. Default 8 s.
    pub start_timeout: Duration,
    /// How long a stopping ffmpeg gets to quit cleanly (after the `q` keystroke on its stdin)
    /// before it is killed. Default 2 s: a healthy ffmpeg quits in about 30 ms; one blocked
    /// writing to a frozen server cannot read the keystroke and is killed at the grace.
    pub stop_grace: Duration,
    /// Allow make-before-break migrations (two publishers, or two viewers, on two servers at
    /// once).
    pub parallel: bool,
    /// A viewer that receives no new media for this long reports a stall through the error
    /// sink (a transient `Timeout`, once per stall). Default 2 s: twice the keyframe interval
    /// of the adapter's own publisher (1 s), twenty progress reports, so arrival jitter and a
    /// keyframe burst never trip it, while a frozen server is reported in about 2 s instead of
    /// the 3 failed health checks (about 8 s with 3 s checks) it otherwise takes.
    pub stall_timeout: Duration,
    /// How often the viewer's ffmpeg reports its progress (`-stats_period`, ffmpeg 4.4 or
    /// newer), which is the resolution of the viewer's frame timeline ([`ViewerStats`]).
    /// Default 100 ms (ffmpeg's own default is 500 ms): ten short reports a second per viewer.
    pub progress_period: Duration,
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
            stall_timeout: Duration::from_secs(2),
            progress_period: Duration::from_millis(100),
        }
    }
}

pub use crate::provider::{ErrorSink, QualitySink};

/// How often an RTMP viewer sends a quality sample of its own frames to the quality sink.
pub const QUALITY_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Urls {
    ingest: String,
    playback: String,
}

/// A supervised process: its stop token and the supervisor that reports how it stopped.
struct Supervised {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<StopReport>,
}

impl Supervised {
    async fn stop(self) -> Option<StopReport> {
        self.stop.cancel();
        self.done.await.ok()
    }
}

struct Viewer {
    process: Supervised,
    timeline: SharedTimeline,
    pid: Option<u32>,
}

/// How many stop reports an adapter keeps (newest first) for [`RtmpAdapter::last_stop`].
const STOP_HISTORY: usize = 32;

/// A [`ProviderAdapter`] for an RTMP provider. The provider's registry config names its URLs:
/// `{"ingestUrl": "rtmp://host:1935/live", "playbackUrl": "rtmp://host:1935/live"}`
/// (`playbackUrl` defaults to `ingestUrl`); the stream id is appended to both.
pub struct RtmpAdapter {
    settings: RtmpSettings,
    urls: Mutex<Option<Urls>>,
    publishers: Mutex<HashMap<String, Supervised>>,
    viewers: Mutex<HashMap<String, Viewer>>,
    /// Timelines of viewers that ended, newest first, for [`RtmpAdapter::viewer_stats`].
    ended_viewers: Mutex<VecDeque<(String, SharedTimeline)>>,
    /// One probe at a time against this provider's output.
    probe_gate: tokio::sync::Mutex<()>,
    sink: Mutex<Option<ErrorSink>>,
    quality: Mutex<Option<QualitySink>>,
    stops: Mutex<VecDeque<(String, StopReport)>>,
}

impl RtmpAdapter {
    /// An adapter with `settings`.
    pub fn new(settings: RtmpSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            urls: Mutex::new(None),
            publishers: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
            ended_viewers: Mutex::new(VecDeque::new()),
            probe_gate: tokio::sync::Mutex::new(()),
            sink: Mutex::new(None),
            quality: Mutex::new(None),
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

    /// Where to report a publisher or viewer that exits on its own, and a viewer that stalls
    /// (usually the manager's `error_sink()`, which calls `record_error`).
    pub fn set_error_sink(&self, sink: ErrorSink) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Where every viewer (frames received) and publisher (frames sent) sends a quality
    /// sample of its own media each [`QUALITY_PERIOD`] (usually the manager's
    /// `quality_sink()`, which calls `record_quality`).
    pub fn set_quality_sink(&self, sink: QualitySink) {
        *self.quality.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Streams this adapter is publishing now.
    pub fn publishing(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock_publishers().keys().cloned().collect();
        v.sort();
        v
    }

    /// Streams this adapter is watching now.
    pub fn viewing(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock_viewers().keys().cloned().collect();
        v.sort();
        v
    }

    /// The frame timeline of the viewer of `stream_id`: the running one, else the last that
    /// ended (among the last 32 ended viewers of this adapter). Take two snapshots and
    /// [`ViewerStats::sample_since`] for the frames, bitrate and stall of an interval;
    /// compare `last_frame_at` of the old provider's viewer with `first_frame_at` of the new
    /// one for the gap a viewer saw across a migration.
    pub fn viewer_stats(&self, stream_id: &str) -> Option<ViewerStats> {
        let now = std::time::Instant::now();
        if let Some(v) = self.lock_viewers().get(stream_id) {
            return Some(viewer::lock(&v.timeline).snapshot(now));
        }
        self.ended_viewers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(id, _)| id == stream_id)
            .map(|(_, t)| viewer::lock(t).snapshot(now))
    }

    /// The process id of the running viewer of `stream_id` (tests pause it to play a viewer
    /// whose own link is broken).
    pub fn viewer_pid(&self, stream_id: &str) -> Option<u32> {
        self.lock_viewers().get(stream_id).and_then(|v| v.pid)
    }

    /// With a quality sink set, send quality samples of `timeline` (a viewer's or a
    /// publisher's own frames) until `stop`.
    fn sample(&self, timeline: &SharedTimeline, stream_id: &str, stop: &CancellationToken) {
        let sink = self
            .quality
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(sink) = sink {
            tokio::spawn(sample_quality(
                timeline.clone(),
                stream_id.to_string(),
                stop.clone(),
                sink,
            ));
        }
    }

    fn lock_publishers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Supervised>> {
        self.publishers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_viewers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Viewer>> {
        self.viewers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sink(&self) -> Option<ErrorSink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
            // Its progress (frames sent) becomes the publisher's quality samples.
            .args(["-progress", "pipe:1", "-stats_period"])
            .arg(format!(
                "{:.3}",
                self.settings.progress_period.as_secs_f64().max(0.001)
            ))
            .args(["-f", "flv", url])
            .stdout(Stdio::piped());
        Proc::spawn(cmd, ProcessKind::Publisher, stream_id)
    }

    /// ffmpeg pulling `url` and throwing the media away: remuxed (no decoding, so it costs
    /// little) to FLV into the null device, which makes ffmpeg count bytes as well as frames;
    /// its progress reports go to stdout.
    fn spawn_viewer(&self, stream_id: &str, url: &str) -> Result<Proc, ProviderError> {
        let null = if cfg!(windows) { "NUL" } else { "/dev/null" };
        let mut cmd = Command::new(&self.settings.ffmpeg);
        cmd.args(["-hide_banner", "-loglevel", "warning", "-nostats"])
            .args(["-progress", "pipe:1", "-stats_period"])
            .arg(format!(
                "{:.3}",
                self.settings.progress_period.as_secs_f64().max(0.001)
            ))
            // Start on the first packets instead of analysing 5 s of stream: the viewer only
            // counts media, so 100 ms / 4 KB of probing is enough (measured on loopback: first
            // frame after about 350 ms, against about 870 ms with 500 ms / 32 KB). A stream
            // whose audio starts later than that is counted by its video alone.
            .args(["-analyzeduration", "100000", "-probesize", "4096"])
            .args(["-i", url])
            .args(["-map", "0:v?", "-map", "0:a?", "-c", "copy"])
            .args(["-f", "flv", "-y", null])
            .stdout(Stdio::piped());
        Proc::spawn(cmd, ProcessKind::Viewer, stream_id)
    }

    /// Start a viewer of `url` and return once its first frame arrived.
    async fn start_viewer(&self, stream_id: &str, url: &str) -> Result<Viewer, ProviderError> {
        let timeline = Timeline::new(std::time::Instant::now());
        let mut proc = self.spawn_viewer(stream_id, url)?;
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| ProviderError::internal("ffmpeg viewer without stdout"))?;
        let (tick, mut ticks) = tokio::sync::watch::channel(());
        tokio::spawn(viewer::read_progress(
            stdout,
            timeline.clone(),
            tick,
            stream_id.to_string(),
        ));
        let deadline = tokio::time::Instant::now() + self.settings.start_timeout;
        let mut reports = true;
        while !viewer::lock(&timeline).playing() {
            tokio::select! {
                status = proc.exited() => {
                    return Err(ProviderError::network(format!(
                        "ffmpeg could not play {url}: {}",
                        status.map_or_else(|e| e.to_string(), |s| s.to_string())
                    )));
                }
                changed = ticks.changed(), if reports => reports = changed.is_ok(),
                _ = tokio::time::sleep_until(deadline) => {
                    // No frame yet: nothing of it is worth a clean stop.
                    proc.kill().await;
                    return Err(ProviderError::timeout(format!(
                        "no frame from {url} within {:?}",
                        self.settings.start_timeout
                    )));
                }
            }
        }
        let watch = StallWatch {
            timeline: timeline.clone(),
            stall_timeout: self.settings.stall_timeout,
            ticks,
            url: url.to_string(),
        };
        let pid = proc.pid();
        let process = self.supervised(proc, stream_id, Some(watch));
        self.sample(&timeline, stream_id, &process.stop);
        Ok(Viewer {
            process,
            timeline,
            pid,
        })
    }

    /// Hand a verified process to its supervisor.
    fn supervised(&self, proc: Proc, stream_id: &str, watch: Option<StallWatch>) -> Supervised {
        let stop = CancellationToken::new();
        let done = tokio::spawn(supervise(
            proc,
            stream_id.to_string(),
            stop.clone(),
            self.settings.stop_grace,
            self.sink(),
            watch,
        ));
        Supervised { stop, done }
    }

    async fn stop_viewer(&self, stream_id: &str) {
        let Some(v) = self.lock_viewers().remove(stream_id) else {
            return;
        };
        if let Some(report) = v.process.stop().await {
            self.record_stop(stream_id, report);
        }
        viewer::lock(&v.timeline).end(std::time::Instant::now());
        let mut ended = self.ended_viewers.lock().unwrap_or_else(|e| e.into_inner());
        ended.retain(|(id, _)| id != stream_id);
        ended.push_front((stream_id.to_string(), v.timeline));
        ended.truncate(STOP_HISTORY);
    }

    async fn stop_publisher(&self, stream_id: &str) {
        let publisher = self.lock_publishers().remove(stream_id);
        if let Some(report) = match publisher {
            Some(p) => p.stop().await,
            None => None,
        } {
            self.record_stop(stream_id, report);
        }
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

/// What a viewer's supervisor watches for a stall.
struct StallWatch {
    timeline: SharedTimeline,
    stall_timeout: Duration,
    /// Bumped after every progress report: ends the wait of a stalled viewer.
    ticks: tokio::sync::watch::Receiver<()>,
    url: String,
}

/// Own a publisher or viewer process: report an unexpected exit, and a viewer's stall, through
/// the sink; on `stop` ask it to quit (`q` on stdin), then kill it after the grace period. A
/// stalled viewer is killed at once: ffmpeg reads its keystrokes between packets, and one
/// blocked reading from a frozen server never gets to it (measured: `q` is ignored until the
/// server resumes).
async fn supervise(
    mut proc: Proc,
    stream_id: String,
    stop: CancellationToken,
    grace: Duration,
    sink: Option<ErrorSink>,
    mut watch: Option<StallWatch>,
) -> StopReport {
    let kind = if watch.is_some() {
        "viewer"
    } else {
        "publisher"
    };
    let report = |error: ProviderError| {
        if let Some(sink) = &sink {
            sink(&stream_id, error);
        }
    };
    let mut ticking = true;
    loop {
        let (deadline, stalled) = match &watch {
            Some(w) => {
                let t = viewer::lock(&w.timeline);
                (t.stall_deadline(w.stall_timeout), t.stalled())
            }
            None => (None, false),
        };
        tokio::select! {
            status = proc.exited() => {
                warn!(stream_id, ?status, "ffmpeg {kind} exited on its own");
                if let Some(w) = &watch {
                    viewer::lock(&w.timeline).end(std::time::Instant::now());
                }
                report(ProviderError::network(format!(
                    "RTMP {kind} exited: {}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())
                )));
                return proc.stop(grace).await;
            }
            _ = stop.cancelled() => {
                // A viewer whose media stopped (a frozen server, or a publisher that left)
                // cannot read `q`: waiting out the grace would only delay the move.
                let frozen = watch
                    .as_ref()
                    .is_some_and(|w| viewer::lock(&w.timeline).frozen_at(std::time::Instant::now()));
                return proc.stop(if stalled || frozen { Duration::ZERO } else { grace }).await;
            }
            _ = sleep_until_some(deadline) => {
                let Some(w) = &watch else { continue };
                let stall_timeout = w.stall_timeout;
                if viewer::lock(&w.timeline).check_stall(std::time::Instant::now(), stall_timeout) {
                    warn!(stream_id, url = %w.url, ?stall_timeout, "RTMP viewer stalled");
                    report(ProviderError::timeout(format!(
                        "RTMP viewer stalled: no frames from {} for {stall_timeout:?}",
                        w.url
                    )));
                }
            }
            changed = next_tick(&mut watch), if stalled && ticking => ticking = changed,
        }
    }
}

/// Send a quality sample of a viewer's (or publisher's) own frames every [`QUALITY_PERIOD`]
/// until it stops. The first sample comes one period after the first frame.
async fn sample_quality(
    timeline: SharedTimeline,
    stream_id: String,
    stop: CancellationToken,
    sink: QualitySink,
) {
    let mut last = viewer::lock(&timeline).snapshot(std::time::Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(QUALITY_PERIOD) => {}
            _ = stop.cancelled() => return,
        }
        let now = viewer::lock(&timeline).snapshot(std::time::Instant::now());
        if now.ended_at.is_some() {
            return;
        }
        sink(&stream_id, now.sample_since(&last));
        last = now;
    }
}

async fn sleep_until_some(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The next progress report of a watched viewer; false once there will be none.
async fn next_tick(watch: &mut Option<StallWatch>) -> bool {
    match watch {
        Some(w) => w.ticks.changed().await.is_ok(),
        None => std::future::pending().await,
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
        // Its progress is read from the start (a full pipe would block ffmpeg); the frames it
        // sends are the publisher's quality samples.
        let timeline = Timeline::new(std::time::Instant::now());
        if let Some(stdout) = proc.take_stdout() {
            let (tick, _) = tokio::sync::watch::channel(());
            tokio::spawn(viewer::read_progress(
                stdout,
                timeline.clone(),
                tick,
                stream_id.to_string(),
            ));
        }
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
        let publisher = self.supervised(proc, stream_id, None);
        self.sample(&timeline, stream_id, &publisher.stop);
        self.lock_publishers()
            .insert(stream_id.to_string(), publisher);
        Ok(())
    }

    /// Watch `stream_id`: a supervised ffmpeg pulls it from the playback URL; Ok once its first
    /// frame arrived (within `start_timeout`). From then on a stall (no new media for
    /// `stall_timeout`) and an exit of that ffmpeg are reported through the error sink, and
    /// [`RtmpAdapter::viewer_stats`] has its frame timeline.
    async fn join_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        let urls = self.urls()?;
        if self.lock_viewers().contains_key(stream_id) {
            return Ok(());
        }
        let url = format!("{}/{stream_id}", urls.playback);
        let viewer = self.start_viewer(stream_id, &url).await?;
        let replaced = self.lock_viewers().insert(stream_id.to_string(), viewer);
        if let Some(old) = replaced {
            // Two joins of one stream raced: keep the newer viewer.
            old.process.stop().await;
        }
        Ok(())
    }

    /// Stop the publisher and the viewer of `stream_id` (clean quit, kill after `stop_grace`).
    async fn leave_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        tokio::join!(self.stop_publisher(stream_id), self.stop_viewer(stream_id));
        Ok(())
    }

    async fn probe(&self) -> Result<(), ProviderError> {
        let urls = self.urls()?;
        // The provider's output of a stream we carry; with none, there is nothing to look at.
        let target = self
            .publishing()
            .into_iter()
            .next()
            .or_else(|| self.viewing().into_iter().next())
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
        for (_, v) in self.lock_viewers().drain() {
            v.process.stop.cancel();
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
