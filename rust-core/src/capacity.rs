//! Capacity leases: how many streams may run at once, in all and per account (a provider, or an
//! IPTV account profile). A [`SlotLedger`] hands out time-limited [`Lease`]s against both limits;
//! [`InMemoryLedger`] is the in-process one, shared backends (Redis) live in other crates.
//! [`TwoPhaseSelection`] picks the candidate to try next: free ones first, then the full ones.
//!
//! A lease has a time to live so that a holder that dies without releasing cannot keep its
//! slot for ever; a live holder renews it ([`SlotLedger::renew`], or a [`Heartbeat`]). Waiting
//! for a slot is event-driven: a release hands the slot to the first waiter at once.

use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

/// Lease time to live when the caller has no better number: long enough that a renewal every
/// third of it survives a slow backend, short enough that a dead holder's slot comes back soon.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// Longest wait for a slot by default (the seed checker's `phase2_max_wait`).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(600);

/// Why a slot could not be had. Every backend maps its failures onto these, and callers must
/// treat [`CapacityError::Unavailable`] as "no slot" (fail closed), never as "go ahead".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The backend could not be asked (connection refused, timed out, script error). No lease
    /// was granted, and any lease held may be lost: stop the work it covers.
    #[error("capacity backend unavailable: {0}")]
    Unavailable(String),
    /// No slot freed up within the allowed wait.
    #[error("no free slot on {accounts:?} within {waited:?}")]
    Timeout {
        /// How long was waited in all.
        waited: Duration,
        /// The accounts that were waited for.
        accounts: Vec<String>,
    },
    /// The lease expired (its holder did not renew it in time) or was already released.
    #[error("lease {lease} on {account:?} was lost")]
    LeaseLost {
        /// The account of the lease.
        account: String,
        /// The lease id.
        lease: String,
    },
    /// The request itself is wrong (no candidates, empty names, zero TTL...).
    #[error("invalid capacity request: {0}")]
    Invalid(String),
}

/// One account a slot may be taken on, with its own limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The account (pool of slots) name: a provider name, or `account/profile` for IPTV.
    pub account: String,
    /// Concurrent slots the account allows; `None` or `Some(0)` means unlimited, as in the
    /// registry's `maxStreams` and the seed checker's `max_streams`.
    pub max_streams: Option<u32>,
}

impl Candidate {
    /// A candidate account with an optional limit (0 = unlimited).
    pub fn new(account: impl Into<String>, max_streams: Option<u32>) -> Self {
        Self {
            account: account.into(),
            max_streams,
        }
    }

    /// The effective limit: `None` when unlimited.
    pub fn limit(&self) -> Option<u32> {
        self.max_streams.filter(|&m| m > 0)
    }
}

/// A request for one slot on the first of several candidate accounts that has room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    /// Who will hold the lease (a stream id, a worker): for logs and diagnostics.
    pub holder: String,
    /// How long the lease lives without renewal.
    pub ttl: Duration,
    /// The accounts to take a slot on, best first. Names must be unique.
    pub candidates: Vec<Candidate>,
}

impl SlotRequest {
    /// A request from `holder` for a lease of `ttl` on one of `candidates` (best first).
    pub fn new(holder: impl Into<String>, ttl: Duration, candidates: Vec<Candidate>) -> Self {
        Self {
            holder: holder.into(),
            ttl,
            candidates,
        }
    }

    /// Rejects requests no backend can serve: empty holder or account names, no candidates,
    /// duplicate accounts, or a TTL under a millisecond (the resolution of shared backends).
    pub fn validate(&self) -> Result<(), CapacityError> {
        if self.holder.is_empty() {
            return Err(CapacityError::Invalid("empty holder".into()));
        }
        if self.ttl < Duration::from_millis(1) {
            return Err(CapacityError::Invalid(format!(
                "lease ttl {:?} is under 1 ms",
                self.ttl
            )));
        }
        if self.candidates.is_empty() {
            return Err(CapacityError::Invalid("no candidate accounts".into()));
        }
        let mut seen = HashSet::new();
        for c in &self.candidates {
            if c.account.is_empty() {
                return Err(CapacityError::Invalid("empty account name".into()));
            }
            if !seen.insert(c.account.as_str()) {
                return Err(CapacityError::Invalid(format!(
                    "account {:?} listed twice",
                    c.account
                )));
            }
        }
        Ok(())
    }

    fn accounts(&self) -> Vec<String> {
        self.candidates.iter().map(|c| c.account.clone()).collect()
    }
}

/// A granted slot. Release it when the work ends; renew it while the work runs longer than
/// its `ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Unique id of this lease within its ledger.
    pub id: String,
    /// The account the slot was taken on.
    pub account: String,
    /// The holder named in the request.
    pub holder: String,
    /// Time to live, restarted by every renewal.
    pub ttl: Duration,
}

/// The answer of [`SlotLedger::try_acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A slot was taken on `lease.account`: the best candidate that had room.
    Leased(Lease),
    /// Nothing was taken. `with_room` holds the indexes (into the request's candidates) of the
    /// accounts that had room of their own but were blocked by the global limit; empty when
    /// every candidate account is at its own limit.
    Full {
        /// Candidates blocked only by the global limit.
        with_room: Vec<usize>,
    },
}

/// Slots in use right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Live leases in the whole ledger.
    pub global: usize,
    /// Live leases on the account asked about.
    pub account: usize,
}

/// A shared count of running work, limited globally and per account, handed out as leases.
///
/// Implementations are atomic: a lease is only granted when both the global limit (a property
/// of the ledger) and the candidate account's own limit have room, however many tasks or
/// processes ask at once. On any backend failure they return [`CapacityError::Unavailable`]
/// and grant nothing.
#[async_trait]
pub trait SlotLedger: Send + Sync + 'static {
    /// Take a slot now on the best candidate with room, without waiting.
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError>;

    /// Take a slot on whichever candidate frees up first (the best one if several have room),
    /// waiting at most `max_wait`. The wait is woken by releases and expiries, not by polling
    /// (shared backends may add a bounded poll as a fallback). Dropping the future gives up
    /// the place in the queue and never leaks a lease.
    async fn acquire(
        &self,
        request: &SlotRequest,
        max_wait: Duration,
    ) -> Result<Lease, CapacityError>;

    /// Give the slot back. `Ok(false)` if the lease was no longer held (expired or released).
    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError>;

    /// Restart the lease's time to live. [`CapacityError::LeaseLost`] if it already expired:
    /// the holder must stop the work it covers, as its slot may have gone to someone else.
    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError>;

    /// Live leases in all and on `account`.
    async fn usage(&self, account: &str) -> Result<Usage, CapacityError>;

    /// The global limit (`None` = unlimited).
    fn global_limit(&self) -> Option<u32>;
}

// ---------------------------------------------------------------------------------------------
// In-memory ledger

/// The in-process [`SlotLedger`]: one mutex-protected table, FIFO-fair waiters served by
/// direct hand-off, and lease expiry on `tokio::time` (so paused-time tests drive it).
///
/// Waiters are served in arrival order; a waiter that cannot use the slot that freed (its
/// accounts are still full) does not block the ones behind it. Cheap to clone; clones share
/// the ledger.
#[derive(Clone)]
pub struct InMemoryLedger {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Woken when a lease with an earlier expiry than any before appears, so sleeping waiters
    /// re-arm their expiry timer. Defensive: a lease that blocks a waiter exists before the
    /// waiter queues (a later one would have served it first), but the timer must never be
    /// late if that reasoning breaks in a future change.
    schedule: Notify,
}

struct State {
    global_limit: Option<u32>,
    next_id: u64,
    leases: HashMap<String, Held>,
    /// (expiry, lease id), earliest first.
    expiries: BTreeSet<(Instant, String)>,
    per_account: HashMap<String, usize>,
    next_waiter: u64,
    waiters: VecDeque<Waiter>,
}

struct Held {
    account: String,
    expires: Instant,
}

struct Waiter {
    id: u64,
    holder: String,
    ttl: Duration,
    candidates: Vec<Candidate>,
    tx: oneshot::Sender<Lease>,
}

impl State {
    fn global_full(&self) -> bool {
        self.global_limit
            .filter(|&g| g > 0)
            .is_some_and(|g| self.leases.len() >= g as usize)
    }

    fn has_room(&self, c: &Candidate) -> bool {
        c.limit()
            .is_none_or(|l| self.per_account.get(&c.account).copied().unwrap_or(0) < l as usize)
    }

    /// Records a new lease; true when it expires before every other one (waiters must re-arm).
    fn insert(
        &mut self,
        holder: &str,
        account: &str,
        ttl: Duration,
        now: Instant,
    ) -> (Lease, bool) {
        self.next_id += 1;
        let id = format!("mem-{}", self.next_id);
        let expires = now + ttl;
        let earliest = self.expiries.first().is_none_or(|(t, _)| expires < *t);
        self.expiries.insert((expires, id.clone()));
        self.leases.insert(
            id.clone(),
            Held {
                account: account.to_string(),
                expires,
            },
        );
        *self.per_account.entry(account.to_string()).or_default() += 1;
        let lease = Lease {
            id,
            account: account.to_string(),
            holder: holder.to_string(),
            ttl,
        };
        (lease, earliest)
    }

    fn remove(&mut self, id: &str) -> Option<Held> {
        let held = self.leases.remove(id)?;
        self.expiries.remove(&(held.expires, id.to_string()));
        if let Some(n) = self.per_account.get_mut(&held.account) {
            *n -= 1;
            if *n == 0 {
                self.per_account.remove(&held.account);
            }
        }
        Some(held)
    }

    /// Drops every lease whose time is up (its holder stopped renewing).
    fn purge(&mut self, now: Instant) {
        while let Some((t, id)) = self.expiries.first().cloned() {
            if t > now {
                break;
            }
            self.remove(&id);
        }
    }

    /// Hands free slots to waiters in arrival order, skipping (not stopping at) waiters whose
    /// accounts are all full. Returns true when a new lease expires before all others.
    fn serve(&mut self, now: Instant) -> bool {
        let mut earliest = false;
        let mut i = 0;
        while i < self.waiters.len() && !self.global_full() {
            if self.waiters[i].tx.is_closed() {
                self.waiters.remove(i);
                continue;
            }
            let pick = self.waiters[i]
                .candidates
                .iter()
                .position(|c| self.has_room(c));
            let Some(k) = pick else {
                i += 1;
                continue;
            };
            let w = self.waiters.remove(i).expect("index is in range");
            let (lease, e) = self.insert(&w.holder, &w.candidates[k].account, w.ttl, now);
            earliest |= e;
            if let Err(lease) = w.tx.send(lease) {
                // The waiter gave up between our check and the send.
                self.remove(&lease.id);
            }
        }
        earliest
    }

    fn take(&mut self, request: &SlotRequest, now: Instant) -> (Grant, bool) {
        let global_full = self.global_full();
        let mut with_room = Vec::new();
        for (i, c) in request.candidates.iter().enumerate() {
            if !self.has_room(c) {
                continue;
            }
            if global_full {
                with_room.push(i);
            } else {
                let (lease, e) = self.insert(&request.holder, &c.account, request.ttl, now);
                return (Grant::Leased(lease), e);
            }
        }
        (Grant::Full { with_room }, false)
    }
}

impl InMemoryLedger {
    /// A ledger with a global limit (`None` or `Some(0)` = unlimited).
    pub fn new(global_limit: Option<u32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    global_limit,
                    next_id: 0,
                    leases: HashMap::new(),
                    expiries: BTreeSet::new(),
                    per_account: HashMap::new(),
                    next_waiter: 0,
                    waiters: VecDeque::new(),
                }),
                schedule: Notify::new(),
            }),
        }
    }

    /// Tasks waiting in [`SlotLedger::acquire`] right now.
    pub fn waiters(&self) -> usize {
        self.inner.lock().waiters.len()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent counts (every mutation is
        // a few statements without await), so keep going rather than poison every caller.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state after expiring old leases and serving waiters, and wakes sleeping
    /// waiters if their expiry timer must move earlier.
    fn with_state<T>(&self, f: impl FnOnce(&mut State, Instant) -> (T, bool)) -> T {
        let now = Instant::now();
        let (out, earliest) = {
            let mut st = self.lock();
            st.purge(now);
            let mut earliest = st.serve(now);
            let (out, e) = f(&mut st, now);
            earliest |= e;
            earliest |= st.serve(now);
            (out, earliest)
        };
        if earliest {
            self.schedule.notify_waiters();
        }
        out
    }
}

/// Keeps a waiter's place in the queue; dropping it (cancellation, timeout) leaves the queue
/// and gives back a slot that was handed over but never received.
struct WaitGuard {
    inner: Arc<Inner>,
    id: u64,
    rx: oneshot::Receiver<Lease>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let earliest = {
            let mut st = self.inner.lock();
            st.waiters.retain(|w| w.id != self.id);
            match self.rx.try_recv() {
                Ok(lease) => {
                    st.remove(&lease.id);
                    st.serve(Instant::now())
                }
                Err(_) => false,
            }
        };
        if earliest {
            self.inner.schedule.notify_waiters();
        }
    }
}

#[async_trait]
impl SlotLedger for InMemoryLedger {
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError> {
        request.validate()?;
        Ok(self.inner.with_state(|st, now| st.take(request, now)))
    }

    async fn acquire(
        &self,
        request: &SlotRequest,
        max_wait: Duration,
    ) -> Result<Lease, CapacityError> {
        request.validate()?;
        let start = Instant::now();
        let deadline = start + max_wait;
        let queued = self
            .inner
            .with_state(|st, now| match st.take(request, now) {
                (Grant::Leased(lease), e) => (Ok(lease), e),
                (Grant::Full { .. }, _) => {
                    let (tx, rx) = oneshot::channel();
                    st.next_waiter += 1;
                    let id = st.next_waiter;
                    st.waiters.push_back(Waiter {
                        id,
                        holder: request.holder.clone(),
                        ttl: request.ttl,
                        candidates: request.candidates.clone(),
                        tx,
                    });
                    (Err((id, rx)), false)
                }
            });
        let (id, rx) = match queued {
            Ok(lease) => return Ok(lease),
            Err(q) => q,
        };
        let mut guard = WaitGuard {
            inner: self.inner.clone(),
            id,
            rx,
        };
        loop {
            // Armed before reading the schedule so a lease added in between still wakes us.
            let notified = self.inner.schedule.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_expiry = self.inner.lock().expiries.first().map(|(t, _)| *t);
            let wake = next_expiry.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                biased;
                got = &mut guard.rx => {
                    return got.map_err(|_| {
                        CapacityError::Unavailable("ledger dropped a waiter".into())
                    });
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {
                    // Expire what is due; that may hand us a slot through the channel.
                    self.inner.with_state(|_, _| ((), false));
                    if Instant::now() >= deadline {
                        return guard.rx.try_recv().map_err(|_| CapacityError::Timeout {
                            waited: Instant::now() - start,
                            accounts: request.accounts(),
                        });
                    }
                }
            }
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError> {
        Ok(self.inner.with_state(|st, _| {
            let held = st
                .leases
                .get(&lease.id)
                .is_some_and(|h| h.account == lease.account);
            if held {
                st.remove(&lease.id);
            }
            (held, false)
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError> {
        self.inner.with_state(|st, now| {
            let Some(held) = st.leases.get_mut(&lease.id) else {
                return (
                    Err(CapacityError::LeaseLost {
                        account: lease.account.clone(),
                        lease: lease.id.clone(),
                    }),
                    false,
                );
            };
            let old = held.expires;
            held.expires = now + lease.ttl;
            let new = held.expires;
            st.expiries.remove(&(old, lease.id.clone()));
            st.expiries.insert((new, lease.id.clone()));
            (Ok(()), false)
        })
    }

    async fn usage(&self, account: &str) -> Result<Usage, CapacityError> {
        Ok(self.inner.with_state(|st, _| {
            let u = Usage {
                global: st.leases.len(),
                account: st.per_account.get(account).copied().unwrap_or(0),
            };
            (u, false)
        }))
    }

    fn global_limit(&self) -> Option<u32> {
        self.inner.lock().global_limit.filter(|&g| g > 0)
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeat

/// Renews a lease every third of its TTL in a background task until dropped, and reports the
/// first failure, so the holder can stop work whose slot is no longer guaranteed.
pub struct Heartbeat {
    lost: watch::Receiver<Option<CapacityError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing `lease` on `ledger`. Must be called inside a tokio runtime.
    pub fn start(ledger: Arc<dyn SlotLedger>, lease: Lease) -> Self {
        Self::spawn(ledger, lease, false)
    }

    /// Like [`start`](Self::start), but rides out a backend that cannot be reached: a renewal
    /// failing with [`CapacityError::Unavailable`] is retried (every ninth of the TTL) while
    /// the lease is still valid by its last successful renewal, and only reported once another
    /// try would come too late. A renewal still unanswered when the lease may expire counts as
    /// failed. The lease was just granted.
    pub fn start_riding_out(ledger: Arc<dyn SlotLedger>, lease: Lease) -> Self {
        Self::spawn(ledger, lease, true)
    }

    fn spawn(ledger: Arc<dyn SlotLedger>, lease: Lease, ride_out: bool) -> Self {
        let every = (lease.ttl / 3).max(Duration::from_millis(1));
        let retry = (every / 3).max(Duration::from_millis(1));
        let (tx, lost) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut valid_until = Instant::now() + lease.ttl;
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let asked = Instant::now();
                let renewed = if ride_out {
                    tokio::time::timeout_at(valid_until, ledger.renew(&lease))
                        .await
                        .unwrap_or_else(|_| {
                            Err(CapacityError::Unavailable(
                                "no answer to a renewal before the lease could expire".into(),
                            ))
                        })
                } else {
                    ledger.renew(&lease).await
                };
                match renewed {
                    Ok(()) => {
                        valid_until = asked + lease.ttl;
                        wait = every;
                    }
                    Err(CapacityError::Unavailable(_))
                        if ride_out && Instant::now() + retry < valid_until =>
                    {
                        wait = retry;
                    }
                    Err(e) => {
                        let _ = tx.send(Some(e));
                        return;
                    }
                }
            }
        });
        Self { lost, task }
    }

    /// Resolves with the error of the first failed renewal; pending for ever while renewals
    /// succeed. Use it in a `select!` against the work the lease covers.
    pub async fn lost(&self) -> CapacityError {
        let mut rx = self.lost.clone();
        let lost = rx.wait_for(Option::is_some).await.map(|e| e.clone());
        match lost {
            Ok(e) => e.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Two-phase selection

/// How [`TwoPhaseSelection`] treats candidates that are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectionPolicy {
    /// Phase 2: once no candidate has room, wait for the full ones and take whichever frees
    /// first. Off: full candidates are reported as [`Pick::AllFull`] instead.
    pub wait_for_full: bool,
    /// Bound on all waiting of one selection together (global-limit waits included).
    pub max_wait: Duration,
}

impl Default for SelectionPolicy {
    fn default() -> Self {
        Self {
            wait_for_full: true,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// How a candidate was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Phase 1: it had a free slot when asked.
    Available,
    /// Phase 2 (or a wait for the global limit): the slot was handed over when it freed.
    Waited,
}

/// The answer of [`TwoPhaseSelection::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Try this candidate (`lease.account`) now; release the lease when done with it.
    Leased {
        /// The slot taken.
        lease: Lease,
        /// Whether it was free at once or waited for.
        phase: Phase,
    },
    /// Every remaining candidate is at its own limit and phase 2 is off.
    AllFull {
        /// The full candidates, best first.
        accounts: Vec<String>,
    },
    /// Every candidate has been handed out once.
    Exhausted,
}

/// Which candidates a selection should wait for after `try_acquire` found nothing: all the
/// remaining ones in phase 2, otherwise only those blocked by the global limit alone (they are
/// "free" as far as their own account goes). Pure, for unit tests.
pub fn wait_set(
    remaining: &[Candidate],
    with_room: &[usize],
    wait_for_full: bool,
) -> Vec<Candidate> {
    if wait_for_full {
        return remaining.to_vec();
    }
    with_room
        .iter()
        .filter_map(|&i| remaining.get(i).cloned())
        .collect()
}

/// Profile / provider failover over a ledger, the seed checker's two phases without its blind
/// polling. Each [`next`](Self::next) hands out the best remaining candidate with a lease on
/// it: first those with a free slot now, in priority order (phase 1); then, if allowed, it
/// waits for the full ones and takes whichever frees first (phase 2). Each candidate is handed
/// out at most once; all waits of one selection together are bounded by `max_wait`.
#[derive(Debug, Clone)]
pub struct TwoPhaseSelection {
    holder: String,
    ttl: Duration,
    remaining: Vec<Candidate>,
    policy: SelectionPolicy,
    deadline: Option<Instant>,
}

impl TwoPhaseSelection {
    /// A selection for `holder` over `candidates`, best first (e.g. in
    /// [`ordering::rank`](crate::ordering::rank) order), with leases of `ttl`.
    pub fn new(
        holder: impl Into<String>,
        ttl: Duration,
        candidates: Vec<Candidate>,
        policy: SelectionPolicy,
    ) -> Result<Self, CapacityError> {
        let holder = holder.into();
        SlotRequest::new(holder.clone(), ttl, candidates.clone()).validate()?;
        Ok(Self {
            holder,
            ttl,
            remaining: candidates,
            policy,
            deadline: None,
        })
    }

    /// The candidates not handed out yet, best first.
    pub fn remaining(&self) -> &[Candidate] {
        &self.remaining
    }

    /// The next candidate to try, with a slot held on it. A wait that passes the selection's
    /// `max_wait` is a [`CapacityError::Timeout`] naming the candidates waited for.
    pub async fn next(&mut self, ledger: &dyn SlotLedger) -> Result<Pick, CapacityError> {
        if self.remaining.is_empty() {
            return Ok(Pick::Exhausted);
        }
        let request = SlotRequest::new(self.holder.clone(), self.ttl, self.remaining.clone());
        let with_room = match ledger.try_acquire(&request).await? {
            Grant::Leased(lease) => return Ok(self.hand_out(lease, Phase::Available)),
            Grant::Full { with_room } => with_room,
        };
        let wait_on = wait_set(&self.remaining, &with_room, self.policy.wait_for_full);
        if wait_on.is_empty() {
            return Ok(Pick::AllFull {
                accounts: self.remaining.iter().map(|c| c.account.clone()).collect(),
            });
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.policy.max_wait);
        let left = deadline.saturating_duration_since(now);
        let request = SlotRequest::new(self.holder.clone(), self.ttl, wait_on);
        match ledger.acquire(&request, left).await {
            Ok(lease) => Ok(self.hand_out(lease, Phase::Waited)),
            Err(CapacityError::Timeout { accounts, .. }) => Err(CapacityError::Timeout {
                waited: self.policy.max_wait,
                accounts,
            }),
            Err(e) => Err(e),
        }
    }

    fn hand_out(&mut self, lease: Lease, phase: Phase) -> Pick {
        self.remaining.retain(|c| c.account != lease.account);
        Pick::Leased { lease, phase }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TTL: Duration = Duration::from_secs(60);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn req(holder: &str, cands: &[(&str, u32)]) -> SlotRequest {
        SlotRequest::new(
            holder,
            TTL,
            cands
                .iter()
                .map(|(a, m)| Candidate::new(*a, Some(*m)))
                .collect(),
        )
    }

    async fn take(l: &InMemoryLedger, holder: &str, cands: &[(&str, u32)]) -> Lease {
        match l.try_acquire(&req(holder, cands)).await.unwrap() {
            Grant::Leased(lease) => lease,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    /// Lets spawned tasks run until `n` of them wait in the ledger (bounded: yields only).
    async fn until_waiting(l: &InMemoryLedger, n: usize) {
        for _ in 0..1000 {
            if l.waiters() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("expected {n} waiters, have {}", l.waiters());
    }

    #[tokio::test]
    async fn account_and_global_limits_hold_and_zero_means_unlimited() {
        let l = InMemoryLedger::new(Some(3));
        let a1 = take(&l, "h1", &[("a", 2)]).await;
        take(&l, "h2", &[("a", 2)]).await;
        // `a` is full: the next candidate is used.
        let b = take(&l, "h3", &[("a", 2), ("b", 0)]).await;
        assert_eq!(b.account, "b");
        // Global limit 3 reached: `c` has room of its own but is blocked globally.
        let g = l
            .try_acquire(&req("h4", &[("a", 2), ("c", 0)]))
            .await
            .unwrap();
        assert_eq!(g, Grant::Full { with_room: vec![1] });
        assert_eq!(
            l.usage("a").await.unwrap(),
            Usage {
                global: 3,
                account: 2
            }
        );
        assert!(l.release(&a1).await.unwrap());
        assert!(!l.release(&a1).await.unwrap(), "second release is a no-op");
        assert_eq!(
            l.usage("a").await.unwrap(),
            Usage {
                global: 2,
                account: 1
            }
        );

        let unlimited = InMemoryLedger::new(None);
        for i in 0..100 {
            take(&unlimited, &format!("h{i}"), &[("x", 0)]).await;
        }
        assert_eq!(unlimited.usage("x").await.unwrap().account, 100);
        assert_eq!(unlimited.global_limit(), None);
        assert_eq!(InMemoryLedger::new(Some(0)).global_limit(), None);
    }

    #[tokio::test]
    async fn bad_requests_are_rejected() {
        let l = InMemoryLedger::new(None);
        let bad = [
            SlotRequest::new("", TTL, vec![Candidate::new("a", None)]),
            SlotRequest::new("h", Duration::ZERO, vec![Candidate::new("a", None)]),
            SlotRequest::new("h", TTL, vec![]),
            SlotRequest::new("h", TTL, vec![Candidate::new("", None)]),
            SlotRequest::new(
                "h",
                TTL,
                vec![Candidate::new("a", None), Candidate::new("a", Some(1))],
            ),
        ];
        for r in bad {
            assert!(
                matches!(l.try_acquire(&r).await, Err(CapacityError::Invalid(_))),
                "{r:?}"
            );
            assert!(matches!(
                l.acquire(&r, TTL).await,
                Err(CapacityError::Invalid(_))
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_account_is_taken_the_moment_a_slot_frees() {
        let l = InMemoryLedger::new(None);
        let held = take(&l, "h1", &[("a", 1)]).await;
        let start = Instant::now();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                let lease = l.acquire(&req("h2", &[("a", 1)]), DEFAULT_MAX_WAIT).await;
                (lease, Instant::now() - start)
            })
        };
        until_waiting(&l, 1).await;
        tokio::time::sleep(secs(3.7)).await;
        l.release(&held).await.unwrap();
        let (lease, waited) = waiter.await.unwrap();
        assert_eq!(lease.unwrap().account, "a");
        // Exactly when released: no poll interval in between.
        assert_eq!(waited, secs(3.7));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_first_come_first_served() {
        let l = InMemoryLedger::new(None);
        let mut held = vec![take(&l, "h0", &[("a", 1)]).await];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 1..=4 {
            let (l2, tx) = (l.clone(), tx.clone());
            tokio::spawn(async move {
                let lease = l2
                    .acquire(&req(&format!("w{i}"), &[("a", 1)]), DEFAULT_MAX_WAIT)
                    .await
                    .unwrap();
                tx.send(lease).unwrap();
            });
            until_waiting(&l, i).await;
        }
        // A newcomer does not jump the queue.
        assert!(matches!(
            l.try_acquire(&req("late", &[("a", 1)])).await.unwrap(),
            Grant::Full { .. }
        ));
        let mut order = Vec::new();
        for _ in 0..4 {
            l.release(&held.pop().unwrap()).await.unwrap();
            let lease = rx.recv().await.unwrap();
            order.push(lease.holder.clone());
            held.push(lease);
        }
        assert_eq!(order, ["w1", "w2", "w3", "w4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_cannot_use_the_slot_does_not_block_others() {
        let l = InMemoryLedger::new(Some(2));
        let _a = take(&l, "h1", &[("a", 1)]).await;
        let b = take(&l, "h2", &[("b", 5)]).await;
        let first = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&req("w1", &[("a", 1)]), DEFAULT_MAX_WAIT).await })
        };
        until_waiting(&l, 1).await;
        let second = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&req("w2", &[("b", 5)]), DEFAULT_MAX_WAIT).await })
        };
        until_waiting(&l, 2).await;
        l.release(&b).await.unwrap();
        assert_eq!(second.await.unwrap().unwrap().account, "b");
        assert_eq!(l.waiters(), 1, "w1 still waits for `a`");
        first.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_holders_lease_expires_after_its_ttl() {
        let l = InMemoryLedger::new(None);
        let r = SlotRequest::new("dies", secs(5.0), vec![Candidate::new("a", Some(1))]);
        let Grant::Leased(_forgotten) = l.try_acquire(&r).await.unwrap() else {
            panic!("free ledger");
        };
        let start = Instant::now();
        let lease = l
            .acquire(&req("next", &[("a", 1)]), DEFAULT_MAX_WAIT)
            .await
            .unwrap();
        assert_eq!(lease.holder, "next");
        assert_eq!(Instant::now() - start, secs(5.0));
    }

    #[tokio::test(start_paused = true)]
    async fn churn_elsewhere_does_not_delay_a_waiter_for_an_expiring_lease() {
        let l = InMemoryLedger::new(Some(3));
        let dead = SlotRequest::new("dies", secs(5.0), vec![Candidate::new("b", Some(1))]);
        assert!(matches!(
            l.try_acquire(&dead).await.unwrap(),
            Grant::Leased(_)
        ));
        let churn = {
            let l = l.clone();
            tokio::spawn(async move {
                // Short leases on another account come and go (some die) while `w` waits.
                for i in 0..40 {
                    let r = SlotRequest::new(
                        format!("c{i}"),
                        secs(0.3),
                        vec![Candidate::new("c", None)],
                    );
                    if let Grant::Leased(lease) = l.try_acquire(&r).await.unwrap() {
                        tokio::time::sleep(secs(0.1)).await;
                        if i % 3 != 0 {
                            l.release(&lease).await.unwrap();
                        }
                    }
                    tokio::time::sleep(secs(0.1)).await;
                }
            })
        };
        let start = Instant::now();
        let lease = l
            .acquire(&req("w", &[("b", 1)]), DEFAULT_MAX_WAIT)
            .await
            .unwrap();
        assert_eq!(lease.account, "b");
        assert_eq!(Instant::now() - start, secs(5.0));
        churn.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_keeps_a_lease_and_an_expired_one_is_lost() {
        let l = InMemoryLedger::new(None);
        let r = SlotRequest::new("h", secs(5.0), vec![Candidate::new("a", Some(1))]);
        let Grant::Leased(lease) = l.try_acquire(&r).await.unwrap() else {
            panic!("free");
        };
        tokio::time::sleep(secs(4.0)).await;
        l.renew(&lease).await.unwrap();
        tokio::time::sleep(secs(4.0)).await;
        assert_eq!(
            l.usage("a").await.unwrap().account,
            1,
            "renewed at 4 s: lives to 9 s"
        );
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(l.usage("a").await.unwrap().account, 0);
        assert!(matches!(
            l.renew(&lease).await,
            Err(CapacityError::LeaseLost { .. })
        ));
        assert!(!l.release(&lease).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_keeps_the_lease_and_reports_its_loss() {
        let l = InMemoryLedger::new(None);
        let ledger: Arc<dyn SlotLedger> = Arc::new(l.clone());
        let r = SlotRequest::new("h", secs(3.0), vec![Candidate::new("a", Some(1))]);
        let Grant::Leased(lease) = l.try_acquire(&r).await.unwrap() else {
            panic!("free");
        };
        let hb = Heartbeat::start(ledger, lease.clone());
        tokio::time::sleep(secs(30.0)).await;
        assert_eq!(
            l.usage("a").await.unwrap().account,
            1,
            "still held after 10 TTLs"
        );
        // Someone else releases it (an operator reset): the next renewal reports the loss.
        l.release(&lease).await.unwrap();
        let start = Instant::now();
        let e = tokio::time::timeout(secs(5.0), hb.lost()).await.unwrap();
        assert!(matches!(e, CapacityError::LeaseLost { .. }));
        assert!(Instant::now() - start <= secs(1.0));
        drop(hb);
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_ends_in_a_timeout_error() {
        let l = InMemoryLedger::new(None);
        let _held = take(&l, "h", &[("a", 1)]).await;
        let start = Instant::now();
        let e = l
            .acquire(&req("w", &[("a", 1)]), secs(10.0))
            .await
            .unwrap_err();
        assert_eq!(Instant::now() - start, secs(10.0));
        assert_eq!(
            e,
            CapacityError::Timeout {
                waited: secs(10.0),
                accounts: vec!["a".into()]
            }
        );
        assert_eq!(l.waiters(), 0, "a timed-out waiter leaves the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaks_nothing() {
        let l = InMemoryLedger::new(None);
        let held = take(&l, "h", &[("a", 1)]).await;
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&req("w", &[("a", 1)]), DEFAULT_MAX_WAIT).await })
        };
        until_waiting(&l, 1).await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(l.waiters(), 0);
        l.release(&held).await.unwrap();
        assert_eq!(l.usage("a").await.unwrap(), Usage::default());

        // A slot handed over to a waiter that is dropped before it runs comes back too.
        let held = take(&l, "h", &[("a", 1)]).await;
        let fut = {
            let l = l.clone();
            async move { l.acquire(&req("w", &[("a", 1)]), DEFAULT_MAX_WAIT).await }
        };
        let mut fut = Box::pin(fut);
        assert!(futures_poll_once(&mut fut).await.is_none());
        l.release(&held).await.unwrap();
        assert_eq!(
            l.usage("a").await.unwrap().account,
            1,
            "handed to the waiter"
        );
        drop(fut);
        assert_eq!(l.usage("a").await.unwrap(), Usage::default());
    }

    /// Polls a future once; `None` if it is pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn limits_hold_under_many_concurrent_tasks() {
        let l = InMemoryLedger::new(Some(7));
        let limits = [("a", 2u32), ("b", 3), ("c", 0)];
        let held: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
        let peak: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let (l, held, peak) = (l.clone(), held.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let mut seed = t.wrapping_mul(6364136223846793005).wrapping_add(1);
                let mut next = move || {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as usize
                };
                for _ in 0..40 {
                    let first = next() % 3;
                    let cands: Vec<Candidate> = (0..3)
                        .map(|k| limits[(first + k) % 3])
                        .take(1 + next() % 3)
                        .map(|(a, m)| Candidate::new(a, Some(m)))
                        .collect();
                    let r = SlotRequest::new(format!("t{t}"), TTL, cands);
                    let lease = if next() % 2 == 0 {
                        l.acquire(&r, DEFAULT_MAX_WAIT).await.unwrap()
                    } else {
                        match l.try_acquire(&r).await.unwrap() {
                            Grant::Leased(lease) => lease,
                            Grant::Full { .. } => continue,
                        }
                    };
                    let k = limits
                        .iter()
                        .position(|(a, _)| *a == lease.account)
                        .unwrap();
                    for i in [k, 3] {
                        let now = held[i].fetch_add(1, Ordering::SeqCst) + 1;
                        peak[i].fetch_max(now, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1 + next() as u64 % 50)).await;
                    held[k].fetch_sub(1, Ordering::SeqCst);
                    held[3].fetch_sub(1, Ordering::SeqCst);
                    assert!(l.release(&lease).await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let peaks: Vec<usize> = peak.iter().map(|p| p.load(Ordering::SeqCst)).collect();
        assert!(peaks[0] <= 2 && peaks[1] <= 3 && peaks[3] <= 7, "{peaks:?}");
        assert_eq!(
            peaks[3], 7,
            "the global limit was reached: the test had contention"
        );
        assert_eq!(l.usage("a").await.unwrap(), Usage::default());
        assert_eq!(l.waiters(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Try(usize),
        Release(usize),
        Renew(usize),
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..4).prop_map(Op::Try),
            (0usize..64).prop_map(Op::Release),
            (0usize..64).prop_map(Op::Renew),
            (1u8..20).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a plain model: counts match live, unexpired leases, and never exceed limits.
        #[test]
        fn ledger_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..80), global in 1u32..6) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let l = InMemoryLedger::new(Some(global));
                let limits = [1u32, 2, 3, 0];
                let ttl = Duration::from_secs(10);
                // Model: (lease, expires).
                let mut model: Vec<(Lease, Instant)> = Vec::new();
                for op in ops {
                    let now = Instant::now();
                    model.retain(|(_, e)| *e > now);
                    match op {
                        Op::Try(a) => {
                            let account = format!("acct{a}");
                            let r = SlotRequest::new("p", ttl, vec![Candidate::new(account.clone(), Some(limits[a]))]);
                            let on_acct = model.iter().filter(|(x, _)| x.account == account).count();
                            let room = (limits[a] == 0 || on_acct < limits[a] as usize) && model.len() < global as usize;
                            match l.try_acquire(&r).await.unwrap() {
                                Grant::Leased(lease) => { prop_assert!(room); model.push((lease, now + ttl)); }
                                Grant::Full { .. } => prop_assert!(!room),
                            }
                        }
                        Op::Release(i) if !model.is_empty() => {
                            let (lease, _) = model.remove(i % model.len());
                            prop_assert!(l.release(&lease).await.unwrap());
                        }
                        Op::Renew(i) if !model.is_empty() => {
                            let k = i % model.len();
                            l.renew(&model[k].0).await.unwrap();
                            model[k].1 = now + ttl;
                        }
                        Op::Advance(s) => tokio::time::advance(Duration::from_secs(s.into())).await,
                        _ => {}
                    }
                    let now = Instant::now();
                    model.retain(|(_, e)| *e > now);
                    for (a, limit) in limits.iter().enumerate() {
                        let u = l.usage(&format!("acct{a}")).await.unwrap();
                        let m = model.iter().filter(|(x, _)| x.account == format!("acct{a}")).count();
                        prop_assert_eq!(u.account, m);
                        prop_assert_eq!(u.global, model.len());
                        prop_assert!(u.global <= global as usize);
                        prop_assert!(*limit == 0 || u.account <= *limit as usize);
                    }
                }
                Ok(())
            })?;
        }
    }

    // ----- two-phase selection

    fn cands(list: &[(&str, u32)]) -> Vec<Candidate> {
        list.iter()
            .map(|(a, m)| Candidate::new(*a, Some(*m)))
            .collect()
    }

    #[test]
    fn wait_set_is_everything_in_phase_2_else_only_globally_blocked() {
        let r = cands(&[("a", 1), ("b", 1), ("c", 1)]);
        assert_eq!(wait_set(&r, &[2], true), r);
        assert_eq!(wait_set(&r, &[2], false), vec![r[2].clone()]);
        assert!(wait_set(&r, &[], false).is_empty());
        assert!(wait_set(&r, &[9], false).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn phase_1_takes_free_candidates_in_priority_order_then_phase_2_waits() {
        let l = InMemoryLedger::new(None);
        let full_a = take(&l, "other", &[("a", 1)]).await;
        let mut sel = TwoPhaseSelection::new(
            "s1",
            TTL,
            cands(&[("a", 1), ("b", 1), ("c", 2)]),
            SelectionPolicy::default(),
        )
        .unwrap();
        let Pick::Leased { lease: b, phase } = sel.next(&l).await.unwrap() else {
            panic!()
        };
        assert_eq!((b.account.as_str(), phase), ("b", Phase::Available));
        let Pick::Leased { lease: c, phase } = sel.next(&l).await.unwrap() else {
            panic!()
        };
        assert_eq!((c.account.as_str(), phase), ("c", Phase::Available));
        l.release(&b).await.unwrap();
        l.release(&c).await.unwrap();
        // Phase 2: `a` is full; it is taken the moment it frees.
        let start = Instant::now();
        let releaser = {
            let l = l.clone();
            tokio::spawn(async move {
                tokio::time::sleep(secs(42.0)).await;
                l.release(&full_a).await.unwrap();
            })
        };
        let Pick::Leased { lease: a, phase } = sel.next(&l).await.unwrap() else {
            panic!()
        };
        assert_eq!((a.account.as_str(), phase), ("a", Phase::Waited));
        assert_eq!(Instant::now() - start, secs(42.0));
        releaser.await.unwrap();
        assert_eq!(sel.next(&l).await.unwrap(), Pick::Exhausted);
    }

    #[tokio::test(start_paused = true)]
    async fn phase_2_takes_whichever_full_candidate_frees_first() {
        let l = InMemoryLedger::new(None);
        let a = take(&l, "x", &[("a", 1)]).await;
        let b = take(&l, "y", &[("b", 1)]).await;
        let mut sel = TwoPhaseSelection::new(
            "s",
            TTL,
            cands(&[("a", 1), ("b", 1)]),
            SelectionPolicy::default(),
        )
        .unwrap();
        let l2 = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(secs(5.0)).await;
            l2.release(&b).await.unwrap();
            tokio::time::sleep(secs(5.0)).await;
            l2.release(&a).await.unwrap();
        });
        let Pick::Leased { lease, .. } = sel.next(&l).await.unwrap() else {
            panic!()
        };
        assert_eq!(lease.account, "b", "b freed first although a is preferred");
        assert_eq!(sel.remaining(), &cands(&[("a", 1)])[..]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_phase_2_full_candidates_are_reported_not_waited_for() {
        let l = InMemoryLedger::new(None);
        let _a = take(&l, "x", &[("a", 1)]).await;
        let policy = SelectionPolicy {
            wait_for_full: false,
            max_wait: secs(10.0),
        };
        let mut sel = TwoPhaseSelection::new("s", TTL, cands(&[("a", 1)]), policy).unwrap();
        let start = Instant::now();
        assert_eq!(
            sel.next(&l).await.unwrap(),
            Pick::AllFull {
                accounts: vec!["a".into()]
            }
        );
        assert_eq!(Instant::now(), start, "no wait at all");
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_limit_is_waited_for_even_without_phase_2() {
        let l = InMemoryLedger::new(Some(1));
        let other = take(&l, "x", &[("z", 0)]).await;
        let policy = SelectionPolicy {
            wait_for_full: false,
            max_wait: secs(100.0),
        };
        let mut sel = TwoPhaseSelection::new("s", TTL, cands(&[("a", 1)]), policy).unwrap();
        let l2 = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(secs(3.0)).await;
            l2.release(&other).await.unwrap();
        });
        let Pick::Leased { lease, phase } = sel.next(&l).await.unwrap() else {
            panic!()
        };
        assert_eq!((lease.account.as_str(), phase), ("a", Phase::Waited));
    }

    #[tokio::test(start_paused = true)]
    async fn phase_2_gives_up_after_max_wait_with_a_clear_error() {
        let policy = SelectionPolicy {
            wait_for_full: true,
            max_wait: secs(600.0),
        };
        // The holder keeps renewing, so the wait runs its full bound, then names the accounts.
        let l = InMemoryLedger::new(None);
        let ledger: Arc<dyn SlotLedger> = Arc::new(l.clone());
        let a = take(&l, "x", &[("a", 1)]).await;
        let _hb = Heartbeat::start(ledger, a);
        let mut sel = TwoPhaseSelection::new("s", TTL, cands(&[("a", 1)]), policy).unwrap();
        let start = Instant::now();
        let e = sel.next(&l).await.unwrap_err();
        assert_eq!(Instant::now() - start, secs(600.0));
        assert_eq!(
            e,
            CapacityError::Timeout {
                waited: secs(600.0),
                accounts: vec!["a".into()]
            }
        );
        assert!(e.to_string().contains("no free slot"), "{e}");
    }

    #[test]
    fn a_selection_needs_valid_candidates() {
        assert!(TwoPhaseSelection::new("s", TTL, vec![], SelectionPolicy::default()).is_err());
        assert!(
            TwoPhaseSelection::new("", TTL, cands(&[("a", 1)]), SelectionPolicy::default())
                .is_err()
        );
    }
}
