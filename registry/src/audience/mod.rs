//! The audience signal: viewers' engines report with their keep-alives whether their player is
//! stalled or degraded; this module keeps each viewer's latest report and tallies, per stream
//! and provider, how many viewers are known and how many of them are stalled or degraded, and
//! decides when that tally confirms an outage of the provider and when it is pushed.
//!
//! Pure and incremental: time comes in as arguments (a [`tokio::time::Instant`] for the window,
//! unix milliseconds for the `at` of a published tally), nothing here does I/O, and a report
//! costs the same whether its stream has ten viewers or ten thousand (counters per stream,
//! provider and source, and a queue of the moments stall reports go stale).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::wire::AudienceState;

pub(crate) mod hub;

pub use hub::{history_entry, AdminAudience, OUTAGE_REASON};

/// Least time between two pushes of one stream's tally for one provider while only its counts
/// change (a change of the outage verdict is pushed at once).
pub const PUSH_GAP: Duration = Duration::from_secs(1);

/// When a tally confirms an outage, and how far one host is trusted. Registry configuration
/// (`audience` in the config file, `STREAMGUARD_AUDIENCE_*` in the environment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudienceConfig {
    /// How long a `stalled` or `degraded` report counts; older ones without a newer report
    /// count as unknown (neither stalled nor a known viewer). Default 3 s; viewer engines
    /// repeat a stall every 1 s, so the default survives two lost reports.
    pub window: Duration,
    /// Least stalled viewers (after the per-source cap) that confirm an outage. Default 3.
    pub min_stalled: usize,
    /// Least share of the provider's known viewers of the stream that must be stalled, 0 to 1.
    /// Default 0.5.
    pub min_share: f64,
    /// Most stalled (and degraded) viewers counted per source address and stream and provider
    /// (IPv4 address, or IPv6 /64). Default 2: one host, whatever it claims, cannot confirm an
    /// outage alone with `min_stalled` 3. Viewers behind one carrier-grade NAT share a source,
    /// so a large audience behind few addresses needs more addresses to confirm.
    pub per_source: usize,
}

impl Default for AudienceConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3),
            min_stalled: 3,
            min_share: 0.5,
            per_source: 2,
        }
    }
}

impl AudienceConfig {
    /// Why the registry cannot run with these settings, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if self.window.is_zero() {
            Some("audience window must be greater than zero")
        } else if self.min_stalled == 0 {
            Some("audience minStalled must be at least 1")
        } else if !(self.min_share > 0.0 && self.min_share <= 1.0) {
            Some("audience minShare must be above 0 and at most 1")
        } else if self.per_source == 0 {
            Some("audience perSource must be at least 1")
        } else {
            None
        }
    }
}

/// The host a report is counted under: an IPv4 address, or the /64 prefix of an IPv6 address
/// (one host or home network gets a whole /64).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A viewer's state as counted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Watching normally (the default state of a live viewer session).
    Ok,
    /// A fresh `degraded` report.
    Degraded,
    /// A fresh `stalled` report.
    Stalled,
    /// Its last report was `degraded` or `stalled` and is older than the window: not counted.
    Unknown,
}

/// How a viewer whose latest report is `state`, made at `reported`, counts at `now`: a
/// `degraded` or `stalled` report counts while it is younger than `window`.
pub fn known(state: AudienceState, reported: Instant, now: Instant, window: Duration) -> Known {
    let fresh = now.saturating_duration_since(reported) < window;
    match state {
        AudienceState::Ok => Known::Ok,
        AudienceState::Degraded if fresh => Known::Degraded,
        AudienceState::Stalled if fresh => Known::Stalled,
        _ => Known::Unknown,
    }
}

/// The audience of one stream on one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Viewers whose state is known (ok, or a fresh degraded or stalled report).
    pub viewers: usize,
    /// Stalled viewers, at most `per_source` per source.
    pub stalled: usize,
    /// Degraded viewers, at most `per_source` per source.
    pub degraded: usize,
}

impl Tally {
    /// Stalled viewers over known viewers, 0 to 1, rounded to 3 decimals; 0 without viewers.
    pub fn stalled_share(&self) -> f64 {
        if self.viewers == 0 {
            return 0.0;
        }
        (self.stalled as f64 / self.viewers as f64 * 1000.0).round() / 1000.0
    }

    /// Whether the tally confirms an outage of the provider: at least `min_stalled` stalled
    /// viewers making at least `min_share` of the known ones.
    pub fn outage(&self, config: &AudienceConfig) -> bool {
        self.viewers > 0
            && self.stalled >= config.min_stalled
            && self.stalled as f64 >= config.min_share * self.viewers as f64
    }
}

/// When a group's tally is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Now.
    Now,
    /// Not before this moment (the counts changed within [`PUSH_GAP`] of the last push).
    At(Instant),
    /// Not at all: subscribers already have it.
    Never,
}

/// When to push `current` (tally and verdict), given the last pushed one and when it went out:
/// a changed verdict at once, changed counts at most once per `gap`, nothing unchanged, and
/// nothing for an audience that never had a viewer.
pub fn decide(
    last: Option<(Tally, bool)>,
    sent_at: Option<Instant>,
    current: (Tally, bool),
    now: Instant,
    gap: Duration,
) -> Push {
    match last {
        Some(last) if last == current => Push::Never,
        None if current.0.viewers == 0 => Push::Never,
        Some((_, outage)) if outage != current.1 => Push::Now,
        _ => match sent_at.map(|t| t + gap) {
            Some(next) if next > now => Push::At(next),
            _ => Push::Now,
        },
    }
}

/// The audience of one stream on one provider as the API shows it: `audience` events, the
/// `audience` array of `GET /api/streaming/streams/{streamId}` and `GET /api/admin/audience`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudienceView {
    /// The stream.
    pub stream_id: String,
    /// The provider these viewers watch it on.
    pub provider: String,
    /// Viewers whose state is known.
    pub viewers: usize,
    /// Stalled viewers (at most `perSource` per source address).
    pub stalled: usize,
    /// Degraded viewers (at most `perSource` per source address).
    pub degraded: usize,
    /// `stalled / viewers`, 0 to 1, rounded to 3 decimals.
    pub stalled_share: f64,
    /// Whether the viewers confirm an outage of the provider.
    pub outage: bool,
    /// When the tally last changed (unix milliseconds).
    pub at: i64,
}

/// A tally to publish, made by [`Audience::flush`].
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// What subscribers of the stream get.
    pub view: AudienceView,
    /// Whether this push starts an outage (it goes into the failover history).
    pub outage_started: bool,
}

#[derive(Debug)]
struct Viewer {
    provider: Arc<str>,
    source: IpAddr,
    state: AudienceState,
    reported: Instant,
    /// What it adds to its group's counters now.
    counted: Known,
}

/// Counters of one stream on one provider, and what was pushed of them.
#[derive(Debug, Default)]
struct Group {
    /// Viewers in the group, whatever their state.
    members: usize,
    known: usize,
    stalled_by_source: HashMap<IpAddr, usize>,
    degraded_by_source: HashMap<IpAddr, usize>,
    stalled: usize,
    degraded: usize,
    /// The tally as last flushed, and when it last changed (unix milliseconds).
    shown: (Tally, bool),
    shown_at: i64,
    pushed: Option<(Tally, bool)>,
    sent_at: Option<Instant>,
    due: Option<Instant>,
}

fn bump(by_source: &mut HashMap<IpAddr, usize>, total: &mut usize, source: IpAddr, cap: usize) {
    let n = by_source.entry(source).or_insert(0);
    if *n < cap {
        *total += 1;
    }
    *n += 1;
}

fn drop_one(by_source: &mut HashMap<IpAddr, usize>, total: &mut usize, source: IpAddr, cap: usize) {
    if let Some(n) = by_source.get_mut(&source) {
        *n -= 1;
        if *n < cap {
            *total -= 1;
        }
        if *n == 0 {
            by_source.remove(&source);
        }
    }
}

impl Group {
    fn count(&mut self, k: Known, source: IpAddr, cap: usize, add: bool) {
        let f = if add { bump } else { drop_one };
        match k {
            Known::Unknown => return,
            Known::Ok => {}
            Known::Stalled => f(&mut self.stalled_by_source, &mut self.stalled, source, cap),
            Known::Degraded => f(
                &mut self.degraded_by_source,
                &mut self.degraded,
                source,
                cap,
            ),
        }
        if add {
            self.known += 1;
        } else {
            self.known -= 1;
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            viewers: self.known,
            stalled: self.stalled,
            degraded: self.degraded,
        }
    }
}

/// A stream's groups by provider: a sorted vector, since a stream has a few providers at most
/// (a map's node would cost kilobytes for each of thousands of small streams).
#[derive(Debug, Default)]
struct Groups(Vec<(Arc<str>, Group)>);

impl Groups {
    fn find(&self, provider: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| (**p).cmp(provider))
    }

    fn get_key_value(&self, provider: &str) -> Option<(&Arc<str>, &Group)> {
        self.find(provider)
            .ok()
            .map(|i| (&self.0[i].0, &self.0[i].1))
    }

    fn get_mut(&mut self, provider: &str) -> Option<&mut Group> {
        self.find(provider).ok().map(|i| &mut self.0[i].1)
    }

    fn get_or_default(&mut self, provider: Arc<str>) -> &mut Group {
        let i = match self.find(&provider) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (provider, Group::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    fn remove(&mut self, provider: &str) {
        if let Ok(i) = self.find(provider) {
            self.0.remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Group)> {
        self.0.iter().map(|(p, g)| (p, g))
    }
}

#[derive(Debug, Default)]
struct Stream {
    viewers: HashMap<Arc<str>, Viewer>,
    groups: Groups,
}

type GroupKey = (Arc<str>, Arc<str>);

/// Every stream's viewers and their tallies.
#[derive(Debug)]
pub struct Audience {
    config: AudienceConfig,
    streams: HashMap<Arc<str>, Stream>,
    /// When each non-ok report goes stale, in report order (the window is fixed, so that is
    /// deadline order); an entry is checked against the viewer's latest report when it is due.
    stale_at: VecDeque<(Instant, Arc<str>, Arc<str>)>,
    /// Groups changed since the last flush.
    touched: HashSet<GroupKey>,
    /// Groups with a push due later, by when.
    waiting: BTreeSet<(Instant, Arc<str>, Arc<str>)>,
}

impl Audience {
    /// No viewers yet.
    pub fn new(config: AudienceConfig) -> Self {
        Self {
            config,
            streams: HashMap::new(),
            stale_at: VecDeque::new(),
            touched: HashSet::new(),
            waiting: BTreeSet::new(),
        }
    }

    /// Viewers tracked, over all streams.
    pub fn viewer_count(&self) -> usize {
        self.streams.values().map(|s| s.viewers.len()).sum()
    }

    fn arc(&self, stream_id: &str) -> Arc<str> {
        self.streams
            .get_key_value(stream_id)
            .map_or_else(|| Arc::from(stream_id), |(k, _)| Arc::clone(k))
    }

    /// A viewer's report from its keep-alive: `client_id` watches `stream_id` on `provider`
    /// in `state`, reported from `ip` at `now`.
    pub fn report(
        &mut self,
        stream_id: &str,
        client_id: &str,
        provider: &str,
        ip: IpAddr,
        state: AudienceState,
        now: Instant,
    ) {
        let cap = self.config.per_source;
        let window = self.config.window;
        let source = source_of(ip);
        let stream_key = self.arc(stream_id);
        let stream = self.streams.entry(Arc::clone(&stream_key)).or_default();
        let counted = known(state, now, now, window);
        let provider_key = stream
            .groups
            .get_key_value(provider)
            .map_or_else(|| Arc::from(provider), |(k, _)| Arc::clone(k));
        let client_key = match stream.viewers.get_key_value(client_id) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(client_id),
        };
        let previous = stream.viewers.insert(
            Arc::clone(&client_key),
            Viewer {
                provider: Arc::clone(&provider_key),
                source,
                state,
                reported: now,
                counted,
            },
        );
        if let Some(old) = previous {
            if let Some(g) = stream.groups.get_mut(&old.provider) {
                g.count(old.counted, old.source, cap, false);
                g.members -= 1;
            }
            if old.provider != provider_key {
                self.touched
                    .insert((Arc::clone(&stream_key), Arc::clone(&old.provider)));
            }
        }
        let group = stream.groups.get_or_default(Arc::clone(&provider_key));
        group.members += 1;
        group.count(counted, source, cap, true);
        self.touched.insert((Arc::clone(&stream_key), provider_key));
        if state != AudienceState::Ok {
            self.stale_at
                .push_back((now + window, stream_key, client_key));
        }
    }

    /// `client_id` no longer watches `stream_id` (its session ended, expired or is published).
    pub fn remove(&mut self, stream_id: &str, client_id: &str) {
        let cap = self.config.per_source;
        let Some(stream_key) = self
            .streams
            .get_key_value(stream_id)
            .map(|(k, _)| Arc::clone(k))
        else {
            return;
        };
        let stream = self.streams.get_mut(stream_id).expect("looked up above");
        let Some(old) = stream.viewers.remove(client_id) else {
            return;
        };
        if let Some(g) = stream.groups.get_mut(&old.provider) {
            g.count(old.counted, old.source, cap, false);
            g.members -= 1;
        }
        self.touched.insert((stream_key, old.provider));
    }

    /// Turns the `degraded` and `stalled` reports that went stale by `now` into unknown.
    pub fn expire(&mut self, now: Instant) {
        let cap = self.config.per_source;
        let window = self.config.window;
        while let Some((due, _, _)) = self.stale_at.front() {
            if *due > now {
                break;
            }
            let (_, stream_key, client) = self.stale_at.pop_front().expect("front exists");
            let Some(stream) = self.streams.get_mut(&stream_key) else {
                continue;
            };
            let Some(viewer) = stream.viewers.get_mut(&client) else {
                continue;
            };
            let now_known = known(viewer.state, viewer.reported, now, window);
            if now_known == viewer.counted {
                continue;
            }
            if let Some(g) = stream.groups.get_mut(&viewer.provider) {
                g.count(viewer.counted, viewer.source, cap, false);
                g.count(now_known, viewer.source, cap, true);
            }
            viewer.counted = now_known;
            self.touched
                .insert((stream_key, Arc::clone(&viewer.provider)));
        }
    }

    /// The next moment [`expire`](Self::expire) or [`flush`](Self::flush) has work, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stale = self.stale_at.front().map(|(t, _, _)| *t);
        let due = self.waiting.first().map(|(t, _, _)| *t);
        stale.into_iter().chain(due).min()
    }

    /// The tallies to publish now: of the groups changed since the last flush and of those
    /// whose push was held back until now (see [`decide`]). `now_ms` stamps changed tallies.
    pub fn flush(&mut self, now: Instant, now_ms: i64) -> Vec<Published> {
        let mut keys: Vec<GroupKey> = self.touched.drain().collect();
        while self.waiting.first().is_some_and(|(due, _, _)| *due <= now) {
            let (_, stream, provider) = self.waiting.pop_first().expect("first exists");
            keys.push((stream, provider));
        }
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for (stream_key, provider) in keys {
            // A group is dropped only without a push due, so a due key always has its group.
            let Some(stream) = self.streams.get_mut(&stream_key) else {
                continue;
            };
            let Some(group) = stream.groups.get_mut(&provider) else {
                continue;
            };
            if let Some(due) = group.due.take() {
                self.waiting
                    .remove(&(due, Arc::clone(&stream_key), Arc::clone(&provider)));
            }
            let tally = group.tally();
            let current = (tally, tally.outage(&self.config));
            if current != group.shown {
                group.shown = current;
                group.shown_at = now_ms;
            }
            match decide(group.pushed, group.sent_at, current, now, PUSH_GAP) {
                Push::Now => {
                    let started = current.1 && !group.pushed.is_some_and(|p| p.1);
                    group.pushed = Some(current);
                    group.sent_at = Some(now);
                    out.push(Published {
                        view: view(&stream_key, &provider, group),
                        outage_started: started,
                    });
                }
                Push::At(t) => {
                    group.due = Some(t);
                    self.waiting
                        .insert((t, Arc::clone(&stream_key), Arc::clone(&provider)));
                }
                Push::Never => {}
            }
            // Empty and told: forget the group, and the stream with its last group.
            if group.members == 0 && group.due.is_none() {
                stream.groups.remove(&provider);
                if stream.groups.is_empty() {
                    self.streams.remove(&stream_key);
                }
            }
        }
        out
    }

    /// The flushed tallies of `stream_id` that have viewers, by provider.
    pub fn views(&self, stream_id: &str) -> Vec<AudienceView> {
        let Some((key, stream)) = self.streams.get_key_value(stream_id) else {
            return Vec::new();
        };
        stream
            .groups
            .iter()
            .filter(|(_, g)| g.shown.0.viewers > 0)
            .map(|(p, g)| view(key, p, g))
            .collect()
    }

    /// The flushed tallies of every stream that have viewers, by stream and provider, at most
    /// `limit` of them, and how many there are.
    pub fn all_views(&self, limit: usize) -> (Vec<AudienceView>, usize) {
        let mut ids: Vec<&Arc<str>> = self.streams.keys().collect();
        ids.sort();
        let mut total = 0;
        let mut list = Vec::new();
        for id in ids {
            for v in self.views(id) {
                total += 1;
                if list.len() < limit {
                    list.push(v);
                }
            }
        }
        (list, total)
    }
}

fn view(stream_id: &str, provider: &str, group: &Group) -> AudienceView {
    let (tally, outage) = group.shown;
    AudienceView {
        stream_id: stream_id.to_owned(),
        provider: provider.to_owned(),
        viewers: tally.viewers,
        stalled: tally.stalled,
        degraded: tally.degraded,
        stalled_share: tally.stalled_share(),
        outage,
        at: group.shown_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AudienceState::{Degraded, Ok as Fine, Stalled};

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn tally(viewers: usize, stalled: usize, degraded: usize) -> Tally {
        Tally {
            viewers,
            stalled,
            degraded,
        }
    }

    #[test]
    fn a_report_counts_while_younger_than_the_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(3);
        let cases = [
            (Fine, 0, Known::Ok),
            (Fine, 60_000, Known::Ok),
            (Stalled, 0, Known::Stalled),
            (Stalled, 2_999, Known::Stalled),
            (Stalled, 3_000, Known::Unknown),
            (Degraded, 2_999, Known::Degraded),
            (Degraded, 3_000, Known::Unknown),
        ];
        for (state, age_ms, want) in cases {
            let now = t0 + Duration::from_millis(age_ms);
            assert_eq!(known(state, t0, now, w), want, "{state:?} aged {age_ms} ms");
        }
    }

    #[test]
    fn outage_needs_the_minimum_count_and_share() {
        let c = AudienceConfig::default();
        let cases = [
            // (viewers, stalled, outage)
            (0, 0, false),
            (2, 2, false), // every viewer stalled, but fewer than three
            (3, 3, true),
            (6, 3, true), // exactly half
            (7, 3, false),
            (100, 49, false),
            (100, 50, true),
        ];
        for (viewers, stalled, want) in cases {
            assert_eq!(
                tally(viewers, stalled, 0).outage(&c),
                want,
                "{stalled}/{viewers}"
            );
        }
        let strict = AudienceConfig {
            min_stalled: 1,
            min_share: 1.0,
            ..c
        };
        assert!(tally(1, 1, 0).outage(&strict));
        assert!(!tally(2, 1, 0).outage(&strict));
        assert_eq!(tally(3, 2, 0).stalled_share(), 0.667);
        assert_eq!(tally(0, 0, 0).stalled_share(), 0.0);
    }

    #[test]
    fn pushes_are_immediate_for_verdicts_and_paced_for_counts() {
        let t = Instant::now();
        let s = Duration::from_millis;
        let gap = PUSH_GAP;
        let ok5 = (tally(5, 0, 0), false);
        let ok6 = (tally(6, 0, 0), false);
        let down = (tally(5, 3, 0), true);
        let cases = [
            (None, None, (tally(0, 0, 0), false), t, Push::Never),
            (None, None, ok5, t, Push::Now),
            (Some(ok5), Some(t), ok5, t + s(10), Push::Never),
            (Some(ok5), Some(t), ok6, t + s(10), Push::At(t + gap)),
            (Some(ok5), Some(t), ok6, t + gap, Push::Now),
            (Some(ok5), Some(t), down, t + s(10), Push::Now),
            (Some(down), Some(t), ok5, t + s(10), Push::Now),
            (
                Some(down),
                Some(t),
                (tally(6, 4, 0), true),
                t + s(10),
                Push::At(t + gap),
            ),
        ];
        for (i, (last, sent, current, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(last, sent, current, now, gap), want, "case {i}");
        }
    }

    #[test]
    fn ipv6_hosts_count_per_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_of(mapped), ip(1));
    }

    fn flushed(a: &mut Audience, now: Instant) -> Vec<(String, usize, usize, usize, bool, bool)> {
        a.flush(now, 0)
            .into_iter()
            .map(|p| {
                let v = p.view;
                (
                    v.provider,
                    v.viewers,
                    v.stalled,
                    v.degraded,
                    v.outage,
                    p.outage_started,
                )
            })
            .collect()
    }

    #[test]
    fn three_stalled_of_five_confirm_an_outage_until_their_reports_go_stale() {
        let t = Instant::now();
        let mut a = Audience::new(AudienceConfig::default());
        for i in 0..5 {
            a.report("s", &format!("v{i}"), "agora", ip(i), Fine, t);
        }
        assert_eq!(
            flushed(&mut a, t),
            [("agora".into(), 5, 0, 0, false, false)]
        );
        a.report("s", "v0", "agora", ip(0), Stalled, t);
        a.report("s", "v1", "agora", ip(1), Stalled, t);
        // Counts changed within a second of the last push: held back.
        assert_eq!(flushed(&mut a, t), []);
        assert_eq!(a.next_deadline(), Some(t + PUSH_GAP));
        a.report("s", "v2", "agora", ip(2), Degraded, t);
        a.report("s", "v2", "agora", ip(2), Stalled, t);
        // The verdict changed: pushed at once, starting an outage.
        assert_eq!(flushed(&mut a, t), [("agora".into(), 5, 3, 0, true, true)]);
        // v0 repeats its stall; v1 and v2 go quiet and go stale after the window.
        let later = t + Duration::from_secs(2);
        a.report("s", "v0", "agora", ip(0), Stalled, later);
        a.expire(t + Duration::from_secs(3));
        assert_eq!(
            flushed(&mut a, t + Duration::from_secs(3)),
            [("agora".into(), 3, 1, 0, false, false)]
        );
        let v = &a.views("s")[0];
        assert_eq!((v.viewers, v.stalled, v.stalled_share), (3, 1, 0.333));
    }

    #[test]
    fn one_source_counts_at_most_per_source_stalled_viewers() {
        let t = Instant::now();
        let mut a = Audience::new(AudienceConfig::default());
        // One host fakes ten stalled viewers on every stream: two count, no outage anywhere.
        for stream in ["s1", "s2", "s3"] {
            for i in 0..10 {
                a.report(stream, &format!("fake{i}"), "agora", ip(66), Stalled, t);
            }
        }
        let out = flushed(&mut a, t);
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|o| *o == ("agora".into(), 10, 2, 0, false, false)));
        // A third host's stall on s1 completes the minimum: 3 of 11 is under half.
        a.report("s1", "real", "agora", ip(1), Stalled, t);
        a.flush(t, 0);
        let v = &a.views("s1")[0];
        assert_eq!((v.viewers, v.stalled, v.outage), (11, 3, false));
        // The fakes leave: the cap is undone exactly.
        for i in 0..10 {
            a.remove("s1", &format!("fake{i}"));
        }
        a.flush(t + PUSH_GAP, 0);
        let v = &a.views("s1")[0];
        assert_eq!((v.viewers, v.stalled), (1, 1));
    }

    #[test]
    fn viewers_move_between_providers_and_leave() {
        let t = Instant::now();
        let mut a = Audience::new(AudienceConfig::default());
        for i in 0..3 {
            a.report("s", &format!("v{i}"), "agora", ip(i), Stalled, t);
        }
        assert_eq!(flushed(&mut a, t), [("agora".into(), 3, 3, 0, true, true)]);
        // They follow the publisher to zego: agora's outage ends, zego has three viewers.
        for i in 0..3 {
            a.report("s", &format!("v{i}"), "zego", ip(i), Fine, t);
        }
        assert_eq!(
            flushed(&mut a, t),
            [
                ("agora".into(), 0, 0, 0, false, false),
                ("zego".into(), 3, 0, 0, false, false)
            ]
        );
        assert_eq!(a.views("s").len(), 1);
        for i in 0..3 {
            a.remove("s", &format!("v{i}"));
        }
        a.remove("s", "never-seen");
        assert_eq!(
            flushed(&mut a, t + PUSH_GAP),
            [("zego".into(), 0, 0, 0, false, false)]
        );
        assert!(a.views("s").is_empty());
        assert_eq!(a.viewer_count(), 0);
        assert!(
            a.streams.is_empty(),
            "nothing is kept for a stream without viewers"
        );
        assert_eq!(a.next_deadline(), Some(t + a.config.window));
        a.expire(t + a.config.window);
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn config_problems_are_named() {
        let c = AudienceConfig::default();
        assert_eq!(c.problem(), None);
        for bad in [
            AudienceConfig {
                window: Duration::ZERO,
                ..c
            },
            AudienceConfig {
                min_stalled: 0,
                ..c
            },
            AudienceConfig {
                min_share: 0.0,
                ..c
            },
            AudienceConfig {
                min_share: 1.5,
                ..c
            },
            AudienceConfig {
                min_share: f64::NAN,
                ..c
            },
            AudienceConfig { per_source: 0, ..c },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }
}
