//! Media quality as a health signal (pure policy, no I/O): the score of one quality sample,
//! the moving score of a provider, what a viewer's samples say about its player, whether a
//! viewer's stall is its own problem or its provider's, and whether a publisher's bad quality
//! is its own uplink.
//!
//! # The score
//! A sample covers `interval` and says how much of it the player (or the publisher's encoder)
//! was stalled, and where the SDK knows them, its round-trip time and packet loss:
//!
//! ```text
//! stall_share = min(1, stall / interval)            (1 when no frame arrived at all)
//! loss_pen    = clamp(loss_percent / 10, 0, 1)      (10 % loss or more: full penalty)
//! rtt_pen     = clamp((rtt_ms - 150) / 850, 0, 1)   (up to 150 ms free, 1 s or more: full)
//! score       = 100 × (1 − stall_share) × (1 − 0.5 × loss_pen) × (1 − 0.3 × rtt_pen)
//! ```
//!
//! so 100 is perfect, a stalled sample scores 0, 10 % loss alone halves it and a 1 s round trip
//! alone takes 30 % off. A provider's score is the exponentially weighted moving average of its
//! samples' scores with weight [`SCORE_ALPHA`] (0.3: the last three samples carry two thirds).
//! Stalls dominate because a stall is what the audience sees; loss and RTT only predict it.

use std::time::Duration;

/// Weight of the newest sample in a provider's moving score.
pub const SCORE_ALPHA: f64 = 0.3;

/// Samples a provider's score needs before it counts in provider choice (the hold: at the
/// usual one sample per second, three seconds of media).
pub const MIN_SAMPLES: u32 = 3;

/// A score older than this (since its last sample) is ignored in provider choice.
pub const SCORE_MAX_AGE: Duration = Duration::from_secs(60);

/// Among providers of equal priority, one is preferred over another only if its score is at
/// least this much higher (hysteresis against noise).
pub const MIN_GAIN: f64 = 10.0;

/// Band boundaries of the score: `Good` from 80, `Degraded` from 40, `Bad` below.
pub const GOOD_FROM: f64 = 80.0;
/// See [`GOOD_FROM`].
pub const DEGRADED_FROM: f64 = 40.0;

/// Other viewers of the same stream and provider that must be watching fine (per the
/// registry's audience view) before a viewer's stall counts as its own problem.
pub const MIN_OTHERS: u32 = 2;

/// Least time between two steps down of a session's quality level (`set_quality`), so one
/// bad second does not drop it to the lowest level at once.
pub const DEGRADE_HOLD: Duration = Duration::from_secs(5);

/// A share of the interval stalled at or above this makes a viewer's sample "stalled".
pub const STALLED_SHARE: f64 = 0.5;

/// What a player or publisher measured over its last interval. Only `interval` is required;
/// the SDK fills in what it knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QualitySample {
    /// The time the sample covers (usually about 1 s). Zero makes the sample invalid.
    pub interval: Duration,
    /// Frames received (viewer) or sent (publisher) in the interval.
    pub frames: u32,
    /// How long, within the interval, no media arrived (viewer) or could be sent (publisher).
    pub stall: Duration,
    /// Media bitrate over the interval, in kbit/s, if known.
    pub bitrate_kbps: Option<u32>,
    /// Round-trip time to the provider's edge, if the SDK knows it.
    pub rtt: Option<Duration>,
    /// Packet loss over the interval, in percent (0 to 100), if the SDK knows it.
    pub loss_percent: Option<f64>,
}

impl QualitySample {
    /// The share of the interval that was stalled, 0 to 1 (1 when no frame came at all).
    pub fn stall_share(&self) -> f64 {
        if self.frames == 0 || self.interval.is_zero() {
            return 1.0;
        }
        (self.stall.as_secs_f64() / self.interval.as_secs_f64()).clamp(0.0, 1.0)
    }

    /// The score of this sample alone, 0 to 100 (see the module docs for the formula).
    pub fn score(&self) -> f64 {
        let loss = self
            .loss_percent
            .map_or(0.0, |l| (l / 10.0).clamp(0.0, 1.0));
        let rtt = self.rtt.map_or(0.0, |r| {
            ((r.as_secs_f64() * 1000.0 - 150.0) / 850.0).clamp(0.0, 1.0)
        });
        100.0 * (1.0 - self.stall_share()) * (1.0 - 0.5 * loss) * (1.0 - 0.3 * rtt)
    }

    /// Check a sample from the host: a positive interval, stall within it, loss within 0–100.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("interval must be greater than zero".into());
        }
        if self.stall > self.interval {
            return Err("stall must not exceed interval".into());
        }
        if self
            .loss_percent
            .is_some_and(|l| !(0.0..=100.0).contains(&l))
        {
            return Err("loss_percent must be within 0 and 100".into());
        }
        Ok(())
    }
}

/// Where a score lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum QualityBand {
    /// 80 or more.
    Good,
    /// 40 to 80.
    Degraded,
    /// Below 40.
    Bad,
}

impl QualityBand {
    /// The band of `score`.
    pub fn of(score: f64) -> Self {
        if score >= GOOD_FROM {
            Self::Good
        } else if score >= DEGRADED_FROM {
            Self::Degraded
        } else {
            Self::Bad
        }
    }
}

/// A provider's moving score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    value: Option<f64>,
    samples: u32,
}

impl Score {
    /// Add a sample's score; returns the band change, if any, as (old, new).
    pub fn add(&mut self, sample: f64) -> Option<(Option<QualityBand>, QualityBand)> {
        let old = self.value;
        let new = match old {
            None => sample,
            Some(m) => m + SCORE_ALPHA * (sample - m),
        };
        self.value = Some(new);
        self.samples = self.samples.saturating_add(1);
        let (from, to) = (old.map(QualityBand::of), QualityBand::of(new));
        (from != Some(to)).then_some((from, to))
    }

    /// The moving score, 0 to 100; `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// The score if it may order providers: enough samples ([`MIN_SAMPLES`]) and fresh
    /// (`age` since the last sample within [`SCORE_MAX_AGE`]).
    pub fn usable(&self, age: Duration) -> Option<f64> {
        self.value
            .filter(|_| self.samples >= MIN_SAMPLES && age <= SCORE_MAX_AGE)
    }
}

/// Is `a` better than `b` by enough to be preferred (both usable scores; an unknown score is
/// never better nor worse)?
pub fn clearly_better(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a >= b + MIN_GAIN)
}

/// What a viewer's player reports to the registry about a stream (a few bytes per session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudienceState {
    /// Frames arrive.
    #[default]
    Ok,
    /// Frames arrive, but the score is below [`GOOD_FROM`] (stutter, loss, high RTT).
    Degraded,
    /// Half the interval or more without frames.
    Stalled,
}

impl AudienceState {
    /// The state a viewer's latest sample shows.
    pub fn of(sample: &QualitySample) -> Self {
        if sample.stall_share() >= STALLED_SHARE {
            Self::Stalled
        } else if sample.score() < GOOD_FROM {
            Self::Degraded
        } else {
            Self::Ok
        }
    }
}

/// What the registry said about a stream's audience on one provider (its `audience` event or
/// the `audience` entries of the placement read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceView {
    /// The stream.
    pub stream_id: String,
    /// The provider its viewers watch on.
    pub provider: String,
    /// Viewers reporting on that provider.
    pub viewers: u32,
    /// Of them, stalled now.
    pub stalled: u32,
    /// Of them, degraded now.
    pub degraded: u32,
    /// The registry confirmed an outage: enough viewers stalled (its minimum count and share).
    pub outage: bool,
}

/// Whose problem a viewer's own stall is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallCause {
    /// The rest of the audience on the provider watches fine: this viewer's own link or
    /// device. It degrades (`set_quality`) and never moves anyone.
    Local,
    /// The registry confirmed an outage of the provider for this stream.
    Provider,
    /// Not known (no audience view, or too few other viewers to tell).
    Unknown,
}

/// Decide whose problem a viewer's stall is from the audience view of its provider (`None`:
/// the registry said nothing). With at least `min_others` other viewers and none of them
/// stalled, it is local; a confirmed outage is the provider's.
pub fn stall_cause(view: Option<&AudienceView>, min_others: u32) -> StallCause {
    let Some(v) = view else {
        return StallCause::Unknown;
    };
    if v.outage {
        return StallCause::Provider;
    }
    // The view counts this viewer too (as stalled, once its report arrived).
    let others = v.viewers.saturating_sub(1);
    let others_stalled = v.stalled.saturating_sub(1);
    if others >= min_others && others_stalled == 0 {
        StallCause::Local
    } else {
        StallCause::Unknown
    }
}

/// Is a publisher's bad quality its own uplink? True when its quality was bad on the provider
/// it is on now and also on another provider within the hold time: moving again would not
/// help, degrading (`set_quality`) would. `scores`: each provider's (usable) score of this
/// publisher's own samples, in the order the provider was used, the current last.
pub fn uplink_is_the_problem(scores: &[(String, f64)]) -> bool {
    let bad = |s: f64| QualityBand::of(s) == QualityBand::Bad;
    match scores {
        [.., (a, sa), (b, sb)] => a != b && bad(*sa) && bad(*sb),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(frames: u32, stall_ms: u64, rtt_ms: Option<u64>, loss: Option<f64>) -> QualitySample {
        QualitySample {
            interval: Duration::from_secs(1),
            frames,
            stall: Duration::from_millis(stall_ms),
            bitrate_kbps: None,
            rtt: rtt_ms.map(Duration::from_millis),
            loss_percent: loss,
        }
    }

    #[test]
    fn sample_scores_follow_the_documented_formula() {
        // (sample, score)
        let table = [
            (sample(15, 0, None, None), 100.0),
            (sample(0, 0, None, None), 0.0),
            (sample(15, 1000, None, None), 0.0),
            (sample(15, 250, None, None), 75.0),
            (sample(15, 0, None, Some(10.0)), 50.0),
            (sample(15, 0, None, Some(50.0)), 50.0),
            (sample(15, 0, Some(150), None), 100.0),
            (sample(15, 0, Some(1000), None), 70.0),
            (sample(15, 0, Some(575), Some(5.0)), 100.0 * 0.75 * 0.85),
        ];
        for (s, want) in table {
            assert!(
                (s.score() - want).abs() < 1e-9,
                "{s:?}: {} != {want}",
                s.score()
            );
        }
    }

    #[test]
    fn invalid_samples_are_named() {
        let mut s = sample(1, 0, None, None);
        s.interval = Duration::ZERO;
        assert!(s.validate().unwrap_err().contains("interval"));
        let s = sample(1, 2000, None, None);
        assert!(s.validate().unwrap_err().contains("stall"));
        let s = sample(1, 0, None, Some(101.0));
        assert!(s.validate().unwrap_err().contains("loss"));
        sample(1, 0, None, Some(0.0)).validate().unwrap();
    }

    #[test]
    fn the_moving_score_announces_band_changes_only() {
        let mut s = Score::default();
        assert_eq!(s.add(100.0), Some((None, QualityBand::Good)));
        assert_eq!(s.add(100.0), None);
        // One stalled sample: 100 → 70 (degraded).
        assert_eq!(
            s.add(0.0),
            Some((Some(QualityBand::Good), QualityBand::Degraded))
        );
        assert!((s.value().unwrap() - 70.0).abs() < 1e-9);
        // 70 → 49 → 34.3 (bad).
        assert_eq!(s.add(0.0), None);
        assert_eq!(
            s.add(0.0),
            Some((Some(QualityBand::Degraded), QualityBand::Bad))
        );
    }

    #[test]
    fn a_score_orders_providers_only_when_held_and_fresh() {
        let mut s = Score::default();
        s.add(90.0);
        s.add(90.0);
        assert_eq!(s.usable(Duration::ZERO), None, "two samples are not enough");
        s.add(90.0);
        assert_eq!(s.usable(Duration::from_secs(1)), Some(90.0));
        assert_eq!(s.usable(SCORE_MAX_AGE + Duration::from_secs(1)), None);
    }

    #[test]
    fn preference_needs_the_minimum_gain() {
        // (a, b, a clearly better)
        let table = [
            (Some(90.0), Some(80.0), true),
            (Some(89.9), Some(80.0), false),
            (Some(80.0), Some(90.0), false),
            (Some(90.0), None, false),
            (None, Some(10.0), false),
        ];
        for (a, b, want) in table {
            assert_eq!(clearly_better(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn a_viewer_state_comes_from_its_latest_sample() {
        let table = [
            (sample(15, 0, None, None), AudienceState::Ok),
            (sample(15, 300, None, None), AudienceState::Degraded),
            (sample(15, 500, None, None), AudienceState::Stalled),
            (sample(0, 0, None, None), AudienceState::Stalled),
            (sample(15, 0, None, Some(8.0)), AudienceState::Degraded),
        ];
        for (s, want) in table {
            assert_eq!(AudienceState::of(&s), want, "{s:?}");
        }
    }

    #[test]
    fn a_stall_is_local_only_when_enough_others_watch_fine() {
        let view = |viewers, stalled, outage| AudienceView {
            stream_id: "s".into(),
            provider: "agora".into(),
            viewers,
            stalled,
            degraded: 0,
            outage,
        };
        // (view, min_others, cause)
        let table = [
            (None, 2, StallCause::Unknown),
            (Some(view(10, 6, true)), 2, StallCause::Provider),
            (Some(view(10, 1, false)), 2, StallCause::Local),
            (Some(view(10, 0, false)), 2, StallCause::Local),
            (Some(view(2, 1, false)), 2, StallCause::Unknown),
            (Some(view(10, 2, false)), 2, StallCause::Unknown),
        ];
        for (v, min, want) in table {
            assert_eq!(stall_cause(v.as_ref(), min), want, "{v:?}");
        }
    }

    #[test]
    fn the_uplink_is_the_problem_when_two_providers_were_bad() {
        let s = |p: &str, v: f64| (p.to_string(), v);
        // (history, uplink)
        let table = [
            (vec![], false),
            (vec![s("agora", 10.0)], false),
            (vec![s("agora", 10.0), s("zegocloud", 20.0)], true),
            (vec![s("agora", 90.0), s("zegocloud", 20.0)], false),
            (vec![s("agora", 10.0), s("agora", 20.0)], false),
            (vec![s("agora", 10.0), s("zegocloud", 50.0)], false),
        ];
        for (h, want) in table {
            assert_eq!(uplink_is_the_problem(&h), want, "{h:?}");
        }
    }
}
