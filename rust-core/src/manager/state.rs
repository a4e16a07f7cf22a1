//! The engine's data: the state behind the manager's mutex (sessions, provider records,
//! leases, lanes, the list read in flight) and the small types passed between the jobs.

use super::*;

/// Weight of the newest sample in latency moving averages.
pub(super) const EWMA_ALPHA: f64 = 0.2;

/// Session reports waiting to be sent; beyond this they are dropped (telemetry must never
/// hold up the engine).
pub(super) const REPORT_QUEUE: usize = 256;

/// How many finished sessions are remembered for `session()` before the oldest (the earliest
/// started, by generation) are dropped.
pub(super) const FINISHED_SESSIONS_KEPT: usize = 256;

pub(super) struct AdapterSlot {
    pub(super) adapter: Arc<dyn ProviderAdapter>,
    /// The provider entry the adapter was last initialized with. An async lock, held across
    /// `initialize`, so two sessions never initialize the same SDK at once.
    pub(super) initialized: tokio::sync::Mutex<Option<ProviderInfo>>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Ewma(Option<f64>);

impl Ewma {
    pub(super) fn add(&mut self, d: Duration) {
        let x = d.as_secs_f64();
        self.0 = Some(match self.0 {
            None => x,
            Some(m) => m + EWMA_ALPHA * (x - m),
        });
    }
    pub(super) fn get(&self) -> Option<Duration> {
        self.0.map(Duration::from_secs_f64)
    }
}

#[derive(Default)]
pub(super) struct ProviderRecord {
    pub(super) health: HealthTracker,
    pub(super) attempts: u64,
    pub(super) successes: u64,
    pub(super) failures: u64,
    pub(super) reported_errors: u64,
    pub(super) checks: u64,
    pub(super) failed_checks: u64,
    pub(super) last_check_at: Option<Instant>,
    pub(super) check_latency: Ewma,
    pub(super) connect_latency: Ewma,
    pub(super) next_check: Option<Instant>,
    pub(super) check_in_flight: bool,
    /// Starts on the provider while it is half-open (its trial) in flight: one, except in
    /// panic mode (nothing else left to try).
    pub(super) trials_in_flight: u32,
    /// Its media quality score from `record_quality` samples, and when the last came.
    pub(super) quality: Score,
    pub(super) quality_at: Option<Instant>,
}

pub(super) struct Session {
    pub(super) info: SessionInfo,
    /// Unique per manager, increasing: a new session of the same stream id gets a higher one.
    /// Work that outlives its session (an abandoned adapter call, a migration, a spawned
    /// finish) carries the generation it was started for and touches only that session.
    pub(super) gen: u64,
    /// Held by whoever operates on the session: start/join, migration, end.
    pub(super) op_lock: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled by `end_stream` (and, as a child of the manager's token, by shutdown).
    pub(super) cancel: CancellationToken,
    /// Publisher: the epoch of its last placement claim (0: none yet).
    pub(super) epoch: u64,
    /// Publisher: a claim that could not be made is retried with the next keep-alive round.
    pub(super) claim_pending: bool,
    /// Viewer: the placement it follows (boxed: most sessions have none).
    pub(super) placement: Option<Box<crate::placement::Placement>>,
    /// The capacity lease of the provider the stream runs on (during a make-before-break
    /// migration: of the provider it is leaving). `None` while it runs nowhere.
    pub(super) slot: Option<HeldSlot>,
    /// Publisher: its hot standby copies (`standby_providers`), best first, each with its slot.
    pub(super) standbys: Vec<StandbyLeg>,
    /// Publisher: the provider a standby is being started on now (one at a time), so a
    /// migration never starts the stream there a second time.
    pub(super) standby_starting: Option<String>,
    /// Publisher: a fill job (`standby.rs`) runs for this session.
    pub(super) standby_filling: bool,
    /// Viewer: `join_stream` waits for the stream to go live (`wait_for_live`); the push
    /// channel follows the stream meanwhile.
    pub(super) awaiting_live: bool,
    /// Media quality of this session, from its first `record_quality` sample on (boxed: most
    /// sessions of an app without samples never have one).
    pub(super) quality: Option<Box<SessionQuality>>,
}

/// What the engine knows about one session's media quality.
#[derive(Default)]
pub(super) struct SessionQuality {
    /// Viewer: its player's state, reported to the registry (`None` before its first sample:
    /// the first one is reported at once, so the registry counts the viewers that watch fine).
    pub(super) audience: Option<AudienceState>,
    /// Viewer: the registry's latest view of this stream's audience on its provider.
    pub(super) view: Option<AudienceView>,
    /// The level last asked of the adapter (`set_quality`); `None`: never lowered (High).
    pub(super) level: Option<QualityLevel>,
    pub(super) lowered_at: Option<Instant>,
    /// The adapter said `set_quality` is not supported: never asked again.
    pub(super) no_set_quality: bool,
    /// Publisher: the score of its own samples on each provider it used, oldest first (the
    /// last three), to tell its uplink from its providers.
    pub(super) uplink: Vec<(String, Score)>,
}

/// A hot standby copy of a publisher's stream on another provider.
pub(super) struct StandbyLeg {
    pub(super) provider: String,
    pub(super) slot: HeldSlot,
}

/// A capacity lease held by the engine, renewed by the lease keeper until released.
pub(super) struct HeldSlot {
    pub(super) lease: Arc<Lease>,
    /// Set by the keeper when the lease could not be kept.
    pub(super) lost: Arc<AtomicBool>,
}

/// The lease keeper's record of a held lease.
pub(super) struct Kept {
    /// Shared with the [`HeldSlot`]; its holder is the stream id.
    pub(super) lease: Arc<Lease>,
    pub(super) lost: Arc<AtomicBool>,
    /// Until when the last successful renewal (or the grant) keeps the lease alive.
    pub(super) valid_until: Instant,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) providers: Vec<ProviderInfo>,
    pub(super) list_known: bool,
    pub(super) list_etag: Option<String>,
    pub(super) list_fetched_at: Option<Instant>,
    pub(super) adapters: HashMap<String, Arc<AdapterSlot>>,
    pub(super) records: HashMap<String, ProviderRecord>,
    pub(super) sessions: HashMap<String, Session>,
    pub(super) next_refresh: Option<Instant>,
    pub(super) shut_down: bool,
    /// Every lease held, by lease id, for the lease keeper.
    pub(super) kept: HashMap<String, Kept>,
    /// The generation of the last session created.
    pub(super) last_gen: u64,
    /// The provider-list read in flight, if any (single flight: every caller that may use it
    /// waits for its outcome instead of sending its own request).
    pub(super) list_read: Option<ListRead>,
    /// Reads started so far, and the outcome of the last one finished (with its number).
    pub(super) list_reads: u64,
    pub(super) last_read: Option<(u64, ReadOutcome)>,
    /// Adapter calls per (provider, stream id) run one at a time, in order (see `lane.rs`).
    pub(super) lanes: Lanes,
    /// The registry answered that it has no placement directory.
    pub(super) placement_unsupported: bool,
}

/// The outcome of one provider-list read: whether the list changed, or why it failed.
pub(super) type ReadOutcome = Result<bool, StreamguardError>;

/// A provider-list read in flight.
pub(super) struct ListRead {
    /// Its number (1, 2, ...): a forced refresh may only use a read that started after it was
    /// asked for, so a change announced by push is never answered by an older read.
    pub(super) seq: u64,
    pub(super) done: watch::Receiver<Option<ReadOutcome>>,
}

impl State {
    pub(super) fn record(&mut self, name: &str) -> &mut ProviderRecord {
        self.records.entry(name.to_string()).or_default()
    }

    pub(super) fn is_cooling(&self, name: &str, now: Instant) -> bool {
        self.records
            .get(name)
            .is_some_and(|r| r.health.is_cooling(now))
    }

    pub(super) fn ranked(
        &self,
        now: Instant,
        excluded: &HashSet<String>,
        only_parallel: bool,
    ) -> Vec<String> {
        rank(&self.providers, |name| Standing {
            score: self.records.get(name).and_then(|r| {
                let age = r
                    .quality_at
                    .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
                r.quality
                    .usable(age)
                    .map(|s| s.round().clamp(0.0, 100.0) as u8)
            }),
            has_adapter: self
                .adapters
                .get(name)
                .is_some_and(|a| !only_parallel || a.adapter.supports_parallel_sessions()),
            cooling: self.is_cooling(name, now),
            excluded: excluded.contains(name),
            trial_busy: self.records.get(name).is_some_and(|r| {
                r.health.is_half_open(now) && (r.check_in_flight || r.trials_in_flight > 0)
            }),
        })
    }

    pub(super) fn session_role(&self, stream_id: &str) -> Option<Role> {
        self.sessions.get(stream_id).map(|s| s.info.role)
    }

    /// Is a standby of `stream_id` being started on `provider`?
    pub(super) fn standby_starting_on(&self, stream_id: &str, provider: &str) -> bool {
        self.sessions
            .get(stream_id)
            .is_some_and(|s| s.standby_starting.as_deref() == Some(provider))
    }

    /// The session of `stream_id` if it is still generation `gen`.
    pub(super) fn session(&self, stream_id: &str, gen: u64) -> Option<&Session> {
        self.sessions.get(stream_id).filter(|s| s.gen == gen)
    }

    pub(super) fn session_mut(&mut self, stream_id: &str, gen: u64) -> Option<&mut Session> {
        self.sessions.get_mut(stream_id).filter(|s| s.gen == gen)
    }

    /// Migration jobs for every live session on `provider`.
    pub(super) fn jobs_on(&self, provider: &str, reason: FailoverReason) -> Vec<MigrationJob> {
        self.jobs(planning::outage(provider, &self.placed(), reason))
    }

    /// Live sessions, as the planning policy sees them.
    pub(super) fn placed(&self) -> Vec<Placed<'_>> {
        self.sessions
            .values()
            .filter(|s| s.info.state == SessionState::Live)
            .filter_map(|s| {
                Some(Placed {
                    stream_id: &s.info.stream_id,
                    provider: s.info.provider.as_deref()?,
                })
            })
            .collect()
    }

    /// Planned moves as migration jobs of the sessions' current generations.
    pub(super) fn jobs(&self, moves: Vec<Move>) -> Vec<MigrationJob> {
        moves
            .into_iter()
            .filter_map(|m| {
                let gen = self.sessions.get(&m.stream_id)?.gen;
                Some(MigrationJob {
                    stream_id: m.stream_id,
                    gen,
                    from: m.from,
                    reason: m.reason,
                })
            })
            .collect()
    }

    /// `name` if it is listed, active and has an adapter: what an attempt on it needs.
    pub(super) fn usable(&self, name: &str) -> Option<Usable> {
        let info = self
            .providers
            .iter()
            .find(|i| i.name == name && i.is_active)?;
        let slot = self.adapters.get(name)?;
        Some((name.to_string(), info.clone(), slot.clone()))
    }

    /// A viewer session on `provider` whose known placement is live and elsewhere (neither
    /// the publisher's provider nor a standby): it must follow.
    pub(super) fn follows_elsewhere(&self, stream_id: &str, gen: u64, provider: &str) -> bool {
        self.session(stream_id, gen)
            .and_then(|s| s.placement.as_ref())
            .is_some_and(|p| p.live && !p.providers().any(|x| x == provider))
    }

    /// Is `provider` in the list and active? Sessions on any other provider must move off it.
    pub(super) fn is_listed_active(&self, provider: &str) -> bool {
        self.providers
            .iter()
            .any(|p| p.name == provider && p.is_active)
    }

    /// Reconciliation: every live session on a provider that is no longer listed or active.
    pub(super) fn misplaced(&self) -> Vec<MigrationJob> {
        self.jobs(planning::misplaced(&self.providers, &self.placed()))
    }

    /// Providers `ranked` leaves out only because the registry reports them at `max_streams`,
    /// best first: a capacity wait watches the list for them to free up.
    pub(super) fn reported_full(
        &self,
        excluded: &HashSet<String>,
        only_parallel: bool,
    ) -> Vec<String> {
        let mut full: Vec<&ProviderInfo> =
            self.providers
                .iter()
                .filter(|p| {
                    p.is_active
                        && !p.has_free_slot()
                        && !excluded.contains(&p.name)
                        && self.adapters.get(&p.name).is_some_and(|a| {
                            !only_parallel || a.adapter.supports_parallel_sessions()
                        })
                })
                .collect();
        full.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        full.into_iter().map(|p| p.name.clone()).collect()
    }

    pub(super) fn live_on(&self, provider: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                s.info.state == SessionState::Live && s.info.provider.as_deref() == Some(provider)
            })
            .map(|s| s.info.stream_id.clone())
            .collect();
        v.sort();
        v
    }

    /// Providers that need checks: those carrying live sessions or standbys and, with failback on, the
    /// preferred provider of every session that runs elsewhere.
    pub(super) fn monitored(&self, now: Instant, failback: bool) -> HashSet<String> {
        let mut set = HashSet::new();
        let ranked = if failback {
            self.ranked(now, &HashSet::new(), false)
        } else {
            Vec::new()
        };
        for s in self.sessions.values() {
            if s.info.state != SessionState::Live {
                continue;
            }
            let Some(p) = &s.info.provider else { continue };
            set.insert(p.clone());
            // A standby that failed unnoticed would be promoted into an outage.
            set.extend(s.standbys.iter().map(|l| l.provider.clone()));
            if let Some(best) = ranked.first() {
                if best != p {
                    set.insert(best.clone());
                }
            }
        }
        set
    }
}

/// A session that must move off `from`.
pub(super) struct MigrationJob {
    pub(super) stream_id: String,
    pub(super) gen: u64,
    pub(super) from: String,
    pub(super) reason: FailoverReason,
}

impl MigrationJob {
    pub(super) fn of(s: &Session, from: &str, reason: FailoverReason) -> Self {
        Self {
            stream_id: s.info.stream_id.clone(),
            gen: s.gen,
            from: from.to_string(),
            reason,
        }
    }
}

/// What one connect loop was asked to do.
pub(super) struct ConnectRequest<'a> {
    pub(super) stream_id: &'a str,
    pub(super) gen: u64,
    /// The operation's deadline (`operation_deadline` from its start); capacity waits extend it.
    pub(super) deadline: Instant,
    pub(super) role: Role,
    pub(super) operation: Operation,
    pub(super) exclude: HashSet<String>,
    pub(super) only_parallel: bool,
    /// Only these providers may be tried (a viewer: where the stream is placed), the first
    /// before the others.
    pub(super) only: Option<Vec<String>>,
    pub(super) cancel: &'a CancellationToken,
}

/// How a migration will go.
pub(super) struct MovePlan {
    pub(super) strategy: MigrationStrategy,
    /// Where it is expected to land.
    pub(super) target: Option<String>,
    /// A viewer following a placement: the only providers it may use.
    pub(super) only: Option<Vec<String>>,
}

/// What a migration's move did.
pub(super) struct Moved {
    pub(super) result: Result<(String, HeldSlot), StreamguardError>,
    /// The strategy used in the end (make-before-break may fall back to break-before-make).
    pub(super) strategy: MigrationStrategy,
    /// When the stream stopped running anywhere (break-before-make).
    pub(super) gap_start: Option<Instant>,
}

/// The state of one connect loop between attempts.
pub(super) struct Run {
    /// The operation's deadline, extended by the time spent queueing for a slot.
    pub(super) deadline: Instant,
    pub(super) waited: Duration,
    pub(super) attempts: Vec<Attempt>,
    /// Attempts per provider.
    pub(super) tries: HashMap<String, u32>,
    /// Providers this operation gave up on.
    pub(super) excluded: HashSet<String>,
    /// The provider to retry, after this backoff.
    pub(super) retry: Option<(String, Duration)>,
    /// The provider just given up on, and why: announced with the next choice.
    pub(super) left_behind: Option<(String, FailoverReason)>,
    /// Bumped by `network_changed()`: cuts a backoff wait short.
    pub(super) retry_rx: watch::Receiver<u64>,
}

/// A provider an attempt can use: its name, its list entry and its adapter.
pub(super) type Usable = (String, ProviderInfo, Arc<AdapterSlot>);

/// What [`Shared::create_session`] did.
pub(super) enum Opened {
    /// A new session of this generation, with its op lock.
    New(u64, Arc<tokio::sync::Mutex<()>>),
    /// Starting a live session again returns it unchanged.
    AlreadyLive(SessionInfo),
}

/// What [`Shared::choose`] found.
pub(super) enum Choice {
    /// Attempt this provider; its slot is held.
    Go(String, ProviderInfo, Arc<AdapterSlot>),
    /// No provider could be tried at all (none active with an adapter, or all given up on).
    NoneUsable,
    /// Every provider that could be tried is full, and waiting is off or ran out.
    Full(Vec<String>),
}

pub(super) enum Verdict {
    Good,
    Bad(String),
    Unknown,
}

pub(super) fn prune_finished(st: &mut State) {
    let finished = st
        .sessions
        .values()
        .filter(|s| s.info.state.is_finished())
        .count();
    if finished <= FINISHED_SESSIONS_KEPT {
        return;
    }
    if let Some(oldest) = st
        .sessions
        .values()
        .filter(|s| s.info.state.is_finished())
        .min_by_key(|s| s.gen)
        .map(|s| s.info.stream_id.clone())
    {
        st.sessions.remove(&oldest);
    }
}
