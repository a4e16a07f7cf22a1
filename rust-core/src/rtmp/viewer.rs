//! The RTMP viewer's frame timeline: ffmpeg's `-progress` reports parsed into counters, the
//! stall rule, and plain snapshots ([`ViewerStats`]) and interval samples ([`ViewerStats::sample_since`])
//! for measurements and, later, the engine's quality samples.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;
use tracing::info;

/// A gap between two arrivals of new media longer than this counts as frozen picture in
/// [`ViewerStats::frozen`]: 500 ms is five progress reports without a frame at the default
/// `progress_period` (100 ms), well above the arrival jitter of a healthy loopback or LAN
/// stream, and long enough for a player to show a visibly frozen picture.
pub const FROZEN_AFTER: Duration = Duration::from_millis(500);

/// A snapshot of one viewer's frame timeline. Instants are those at which ffmpeg's progress
/// reports arrived, so their resolution is the adapter's `progress_period` (100 ms by default).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerStats {
    /// When this snapshot was taken (or, for a viewer that ended, when it ended).
    pub at: Instant,
    /// When the viewer process was started (`join_stream` was called).
    pub started_at: Instant,
    /// When the first frame arrived; `join_stream` returns right after it.
    pub first_frame_at: Option<Instant>,
    /// When the last progress report that brought new media (frames or bytes) arrived.
    pub last_frame_at: Option<Instant>,
    /// Video frames received (ffmpeg's `frame`; stays 0 for an audio-only stream).
    pub frames: u64,
    /// Bytes of media received, as remuxed to FLV (ffmpeg's `total_size`).
    pub bytes: u64,
    /// Media time received, from the stream's own timestamps (ffmpeg's `out_time_us`).
    pub media_time: Duration,
    /// Stalls reported through the error sink so far.
    pub stalls: u32,
    /// Whether a stall is going on: no new media for `stall_timeout`.
    pub stalled: bool,
    /// Longest time between two arrivals of new media, the one going on at `at` included.
    pub longest_gap: Duration,
    /// Total time of gaps between arrivals of new media longer than [`FROZEN_AFTER`] (the
    /// whole gap counts), the one going on at `at` included.
    pub frozen: Duration,
    /// When the viewer ended (left, or its ffmpeg exited), if it has.
    pub ended_at: Option<Instant>,
}

impl ViewerStats {
    /// The time without new media at `at` (`None` before the first frame).
    pub fn silent_for(&self) -> Option<Duration> {
        self.last_frame_at
            .map(|t| self.at.saturating_duration_since(t))
    }
}

impl ViewerStats {
    /// The quality sample of what this viewer received since an `earlier` snapshot of it
    /// (see [`crate::quality`]): frames, stall (frozen time in the interval, the whole
    /// interval once it is stalled) and bitrate. The SDK-level figures RTT and loss are not
    /// known to an ffmpeg viewer.
    pub fn sample_since(&self, earlier: &ViewerStats) -> crate::quality::QualitySample {
        let interval = self.at.saturating_duration_since(earlier.at);
        let frames = self.frames.saturating_sub(earlier.frames);
        let bytes = self.bytes.saturating_sub(earlier.bytes);
        let secs = interval.as_secs_f64();
        let mut stall = self.frozen.saturating_sub(earlier.frozen).min(interval);
        if self.stalled || self.ended_at.is_some() {
            stall = interval;
        }
        crate::quality::QualitySample {
            interval,
            frames: u32::try_from(frames).unwrap_or(u32::MAX),
            stall,
            bitrate_kbps: (secs > 0.0).then(|| (bytes as f64 * 8.0 / secs / 1000.0) as u32),
            rtt: None,
            loss_percent: None,
        }
    }
}

/// The live counters behind [`ViewerStats`].
#[derive(Debug)]
pub(crate) struct Timeline {
    started_at: Instant,
    first_frame_at: Option<Instant>,
    last_frame_at: Option<Instant>,
    frames: u64,
    bytes: u64,
    media_time: Duration,
    stalls: u32,
    stalled: bool,
    longest_gap: Duration,
    frozen_closed: Duration,
    ended_at: Option<Instant>,
}

pub(crate) type SharedTimeline = Arc<Mutex<Timeline>>;

pub(crate) fn lock(t: &SharedTimeline) -> std::sync::MutexGuard<'_, Timeline> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

impl Timeline {
    pub(crate) fn new(started_at: Instant) -> SharedTimeline {
        Arc::new(Mutex::new(Self {
            started_at,
            first_frame_at: None,
            last_frame_at: None,
            frames: 0,
            bytes: 0,
            media_time: Duration::ZERO,
            stalls: 0,
            stalled: false,
            longest_gap: Duration::ZERO,
            frozen_closed: Duration::ZERO,
            ended_at: None,
        }))
    }

    /// Whether a frame (or, for audio only, media time) has arrived: playback verified.
    pub(crate) fn playing(&self) -> bool {
        self.first_frame_at.is_some()
    }

    /// One progress report. Returns true if it ended a stall.
    fn report(&mut self, now: Instant, p: &Progress) -> bool {
        let new_media = p.frames > self.frames || p.bytes > self.bytes;
        self.frames = self.frames.max(p.frames);
        self.bytes = self.bytes.max(p.bytes);
        self.media_time = self.media_time.max(p.media_time);
        if !new_media {
            return false;
        }
        if self.first_frame_at.is_none() && (self.frames > 0 || !self.media_time.is_zero()) {
            self.first_frame_at = Some(now);
        }
        if let Some(last) = self.last_frame_at {
            let gap = now.saturating_duration_since(last);
            self.longest_gap = self.longest_gap.max(gap);
            if gap > FROZEN_AFTER {
                self.frozen_closed += gap;
            }
        }
        if self.first_frame_at.is_some() {
            self.last_frame_at = Some(now);
        }
        std::mem::replace(&mut self.stalled, false)
    }

    /// When the viewer counts as stalled if nothing new arrives: `None` before the first
    /// frame, after it ended, or while a stall is already going on.
    pub(crate) fn stall_deadline(&self, stall_timeout: Duration) -> Option<Instant> {
        if self.stalled || self.ended_at.is_some() {
            return None;
        }
        self.last_frame_at.map(|t| t + stall_timeout)
    }

    /// Whether it is stalled at `now`; marks a new stall (returns true once per stall).
    pub(crate) fn check_stall(&mut self, now: Instant, stall_timeout: Duration) -> bool {
        match self.stall_deadline(stall_timeout) {
            Some(deadline) if now >= deadline => {
                self.stalled = true;
                self.stalls += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn stalled(&self) -> bool {
        self.stalled
    }

    /// No new media for longer than [`FROZEN_AFTER`] (or stalled): ffmpeg is blocked reading
    /// the network and will not read its quit keystroke until media flows again.
    pub(crate) fn frozen_at(&self, now: Instant) -> bool {
        self.stalled
            || self
                .last_frame_at
                .is_some_and(|t| now.saturating_duration_since(t) > FROZEN_AFTER)
    }

    pub(crate) fn end(&mut self, now: Instant) {
        self.ended_at.get_or_insert(now);
    }

    pub(crate) fn snapshot(&self, now: Instant) -> ViewerStats {
        let at = self.ended_at.unwrap_or(now);
        let open = self
            .last_frame_at
            .map_or(Duration::ZERO, |t| at.saturating_duration_since(t));
        ViewerStats {
            at,
            started_at: self.started_at,
            first_frame_at: self.first_frame_at,
            last_frame_at: self.last_frame_at,
            frames: self.frames,
            bytes: self.bytes,
            media_time: self.media_time,
            stalls: self.stalls,
            stalled: self.stalled,
            longest_gap: self.longest_gap.max(open),
            frozen: self.frozen_closed
                + if open > FROZEN_AFTER {
                    open
                } else {
                    Duration::ZERO
                },
            ended_at: self.ended_at,
        }
    }
}

/// One block of ffmpeg's `-progress` output (`key=value` lines ending with `progress=...`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Progress {
    frames: u64,
    bytes: u64,
    media_time: Duration,
}

impl Progress {
    /// Take one line; true when it ends a block.
    fn line(&mut self, line: &str) -> bool {
        let Some((key, value)) = line.trim().split_once('=') else {
            return false;
        };
        let num = || value.trim().parse::<i64>().ok().map(|n| n.max(0) as u64);
        match key {
            "frame" => self.frames = num().unwrap_or(self.frames),
            "total_size" => self.bytes = num().unwrap_or(self.bytes),
            "out_time_us" => {
                if let Some(us) = num() {
                    self.media_time = Duration::from_micros(us);
                }
            }
            "progress" => return true,
            _ => {}
        }
        false
    }
}

/// Read ffmpeg's progress reports into `timeline` until its stdout closes; `tick` is bumped
/// after every report (the join waits on it for the first frame, the supervisor for the end
/// of a stall).
pub(crate) async fn read_progress(
    stdout: ChildStdout,
    timeline: SharedTimeline,
    tick: tokio::sync::watch::Sender<()>,
    stream_id: String,
) {
    let mut lines = BufReader::new(stdout).lines();
    let mut block = Progress::default();
    while let Ok(Some(line)) = lines.next_line().await {
        if block.line(&line) {
            let recovered = lock(&timeline).report(Instant::now(), &block);
            if recovered {
                info!(stream_id, "RTMP viewer receives frames again after a stall");
            }
            tick.send_replace(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(lines: &str) -> Vec<Progress> {
        let mut out = vec![];
        let mut p = Progress::default();
        for l in lines.lines() {
            if p.line(l) {
                out.push(p.clone());
            }
        }
        out
    }

    #[test]
    fn progress_blocks_are_parsed_and_na_keeps_the_last_value() {
        let blocks = progress(
            "frame=0\nbitrate=N/A\ntotal_size=N/A\nout_time_us=N/A\nprogress=continue\n\
             frame=12\ntotal_size=9312\nout_time_us=800000\nprogress=continue\n\
             frame=14\ntotal_size=N/A\nout_time_us=-5\nprogress=end\n",
        );
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0], Progress::default());
        assert_eq!(blocks[1].frames, 12);
        assert_eq!(blocks[1].media_time, Duration::from_millis(800));
        assert_eq!(blocks[2].bytes, 9312);
        assert_eq!(blocks[2].media_time, Duration::ZERO);
    }

    #[test]
    fn stalls_gaps_and_samples_follow_the_frames() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let tl = Timeline::new(t0);
        let mut t = lock(&tl);
        let p = |frames, bytes| Progress {
            frames,
            bytes,
            media_time: Duration::ZERO,
        };
        assert!(!t.report(ms(100), &p(0, 0)));
        assert!(!t.playing());
        assert_eq!(t.stall_deadline(Duration::from_secs(2)), None);
        t.report(ms(1000), &p(1, 9000));
        assert!(t.playing());
        t.report(ms(1100), &p(3, 9500));
        let a = t.snapshot(ms(1100));
        assert_eq!(a.first_frame_at, Some(ms(1000)));
        assert_eq!(a.last_frame_at, Some(ms(1100)));
        let timeout = Duration::from_secs(2);
        assert!(!t.check_stall(ms(3000), timeout));
        assert!(t.check_stall(ms(3100), timeout));
        assert!(!t.check_stall(ms(3200), timeout), "reported once");
        assert!(t.report(ms(3600), &p(5, 10500)), "recovered");
        let b = t.snapshot(ms(4100));
        assert_eq!((b.stalls, b.stalled), (1, false));
        assert_eq!(b.longest_gap, Duration::from_millis(2500));
        assert_eq!(b.frozen, Duration::from_millis(2500));
        let s = b.sample_since(&a);
        assert_eq!(s.interval, Duration::from_secs(3));
        assert_eq!(s.frames, 2);
        assert_eq!(s.bitrate_kbps, Some(8000 / 3 / 1000));
        assert_eq!(s.stall, Duration::from_millis(2500));
        t.end(ms(5000));
        let c = t.snapshot(ms(9000));
        assert_eq!(c.at, ms(5000));
        assert_eq!(c.silent_for(), Some(Duration::from_millis(1400)));
        assert_eq!(t.stall_deadline(timeout), None);
    }
}
