//! One check run: workers take streams from the work source, pick a profile through the
//! capacity ledger (free profiles first, then wait for full ones), probe it with retries while
//! a lease keeper renews the lease, release it, and record the result. Ctrl-C, or a capacity
//! backend unreachable for longer than the backend grace, stops every worker cleanly; what was
//! checked is kept. A shorter outage pauses the run: nothing new starts, running probes finish
//! while their leases are valid, and every backend call is retried with backoff.

use crate::accounts::{Accounts, Route};
use crate::backend::{Backoff, Outage, Stop};
use crate::m3u::Entry;
use crate::probe::{self, Outcome, StreamInfo};
use crate::queue::WorkSource;
use crate::report::{self, Report, Status, StreamResult, Summary};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::capacity::{
    CapacityError, Heartbeat, Lease, Pick, SelectionPolicy, SlotLedger, TwoPhaseSelection,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How to check.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Global limit on probes running at once (also the number of workers).
    pub concurrency: u32,
    /// The ffprobe program (or a stand-in taking the same arguments).
    pub probe_program: String,
    /// Bound on one probe; the child is killed after it.
    pub probe_timeout: Duration,
    /// Extra probes on the same profile after a failure.
    pub retries: u32,
    /// Pause before each retry (the slot stays held).
    pub retry_delay: Duration,
    /// Phase 2 on or off, and the bound on waiting for slots.
    pub policy: SelectionPolicy,
    /// Lease time to live; a heartbeat renews it every third of that.
    pub lease_ttl: Duration,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Longest the backend (Redis) may stay unreachable before the run stops.
    pub backend_grace: Duration,
}

/// What a run works on.
pub struct Job {
    /// The playlist.
    pub playlist: Vec<Entry>,
    /// Accounts and profiles.
    pub accounts: Accounts,
    /// The capacity ledger (in memory, or shared through Redis).
    pub ledger: Arc<dyn SlotLedger>,
    /// Where stream indexes come from.
    pub source: WorkSource,
    /// The shared run id in Redis mode.
    pub run_id: Option<String>,
}

struct Ctx {
    settings: Settings,
    job: Job,
    holder_prefix: String,
    cancel: CancellationToken,
    outage: Outage,
    /// This process's share is done; it waits for the rest of the run.
    lingering: AtomicBool,
    interrupted: AtomicBool,
    error: Mutex<Option<String>>,
    results: Mutex<Vec<StreamResult>>,
    done: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl Ctx {
    /// Stops the run on an error no stream can get past (fail closed).
    fn fail(&self, message: String) {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(message);
        }
        self.cancel.cancel();
    }

    fn record(&self, r: StreamResult) {
        if let Some(q) = self.job.source.redis_queue() {
            q.finished(r.index);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        if r.status == Status::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }
}

/// A handle to stop a run from outside (Ctrl-C).
#[derive(Clone)]
pub struct Stopper {
    ctx: Arc<Ctx>,
}

impl Stopper {
    /// Stops the run: workers give back the streams they hold and leave; the report is partial.
    pub fn interrupt(&self) {
        self.ctx.interrupted.store(true, Ordering::SeqCst);
        self.ctx.cancel.cancel();
    }
}

/// A run, ready to start.
pub struct Run {
    ctx: Arc<Ctx>,
}

enum Checked {
    Done(Box<StreamResult>),
    /// The lease was given up while the backend was unreachable: check the stream again.
    Again,
    /// A finished check whose slot could not be given back: keep the result, stop the run.
    DoneThenFatal(Box<StreamResult>, String),
    Interrupted,
    Fatal(String),
}

enum ProbeEnd {
    Alive(StreamInfo),
    Failed(Status, String),
    Interrupted,
    LeaseLost(CapacityError),
    Fatal(String),
}

impl Run {
    /// Prepares a run of `job` with `settings`.
    pub fn new(settings: Settings, job: Job) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                outage: Outage::new(settings.backend_grace),
                settings,
                job,
                holder_prefix: format!("pid{}", std::process::id()),
                cancel: CancellationToken::new(),
                lingering: AtomicBool::new(false),
                interrupted: AtomicBool::new(false),
                error: Mutex::new(None),
                results: Mutex::new(Vec::new()),
                done: AtomicUsize::new(0),
                ok: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
            }),
        }
    }

    /// A handle that can interrupt the run.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            ctx: self.ctx.clone(),
        }
    }

    /// Runs every worker to the end (or to an interruption) and returns the report.
    pub async fn execute(self) -> Report {
        let start = Instant::now();
        let ctx = self.ctx;
        let workers = (ctx.settings.concurrency.max(1) as usize).min(ctx.job.playlist.len());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let ctx = ctx.clone();
            tasks.spawn(async move { worker(&ctx).await });
        }
        // Notices a Redis that came back without the run (and registers this process's streams
        // with the rebuilt run) even while every worker is busy probing or waiting for a slot.
        let keeper = ctx.job.source.redis_queue().is_some().then(|| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let q = ctx.job.source.redis_queue().expect("checked");
                loop {
                    match q.sync().await {
                        Ok(()) => ctx.outage.recovered(),
                        // Seen by a lingering process (its workers no longer ask Redis).
                        Err(e) => {
                            let _ = ctx.outage.failed(&e);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        });
        let progress = ctx.settings.progress.then(|| {
            let ctx = ctx.clone();
            tokio::spawn(async move { progress(&ctx, start).await })
        });
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                ctx.fail(format!("a worker crashed: {e}"));
            }
        }
        if let Some(q) = ctx.job.source.redis_queue() {
            q.stop_working();
            let stopped = ctx.cancel.is_cancelled();
            if !stopped {
                ctx.lingering.store(true, Ordering::Relaxed);
                linger(&ctx, q).await;
            }
        }
        if let Some(k) = keeper {
            k.abort();
            let _ = k.await;
        }
        if let Some(p) = progress {
            p.abort();
            let _ = p.await;
            print_progress(&ctx, start, ctx.job.source.remaining().await, true);
        }
        let mut streams =
            std::mem::take(&mut *ctx.results.lock().unwrap_or_else(|e| e.into_inner()));
        streams.sort_by_key(|r| r.index);
        let error = ctx.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Report {
            summary: Summary {
                playlist_streams: ctx.job.playlist.len(),
                checked: streams.len(),
                counts: report::count(&streams),
                concurrency: ctx.settings.concurrency,
                run_id: ctx.job.run_id.clone(),
                elapsed_ms: start.elapsed().as_millis() as u64,
                interrupted: ctx.interrupted.load(Ordering::SeqCst),
                error,
                unique_urls: streams.len(),
                groups: report::count_by_group(&streams),
            },
            streams,
            playlist: None,
        }
    }
}

impl Ctx {
    /// After a failed backend call: backs off and returns `Ok` (retry), or stops the run
    /// once the backend has been unreachable for longer than the grace.
    async fn pause(&self, backoff: &mut Backoff, message: &str) -> Result<(), Stop> {
        let r = self.outage.pause(backoff, &self.cancel, message).await;
        if let Err(Stop::PastGrace(m)) = &r {
            self.fail(m.clone());
        }
        r
    }

    /// The next stream index, retried (same pop token, so a lost reply loses no index) while
    /// the backend is unreachable; `None` when the work is done or the run stops.
    async fn next_index(&self) -> Option<usize> {
        let token = self.job.source.token();
        let mut backoff = Backoff::default();
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                n = self.job.source.next(&token) => n,
            };
            match next {
                Ok(n) => {
                    self.outage.recovered();
                    return n;
                }
                Err(e) => self.pause(&mut backoff, &e).await.ok()?,
            }
        }
    }

    /// Gives a lease back, retried (by lease id: a retry after a lost reply frees exactly one
    /// slot) while the backend is unreachable. `Err` once past the grace; a stopped run gives
    /// up at once (the lease expires after its TTL).
    async fn release(&self, lease: &Lease) -> Result<(), String> {
        let mut backoff = Backoff::default();
        loop {
            match self.job.ledger.release(lease).await {
                Ok(_) => {
                    self.outage.recovered();
                    return Ok(());
                }
                Err(CapacityError::Unavailable(m)) => match self.pause(&mut backoff, &m).await {
                    Ok(()) => {}
                    Err(Stop::Cancelled) => return Ok(()),
                    Err(Stop::PastGrace(m)) => return Err(m),
                },
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// How long no process may be seen working (outside a rebuild) before a lingering process
/// concludes the rest of the run died with its streams.
const NOBODY_WORKING_FOR: Duration = Duration::from_secs(2);

/// Once this process's share is done, waits until every stream of the run is done (by any
/// process), while the keeper registers this process's streams again should Redis lose the
/// run: so a restart of Redis cannot have them checked twice. Ends early when no process has
/// been working for [`NOBODY_WORKING_FOR`] (one died with streams in hand), when Redis has
/// been unreachable for longer than the grace, or on Ctrl-C.
async fn linger(ctx: &Ctx, q: &crate::queue::RedisQueue) {
    let mut nobody_since: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if ctx
            .outage
            .down_for()
            .is_some_and(|d| d > ctx.outage.grace())
        {
            return;
        }
        let Some(state) = q.run_state() else {
            continue;
        };
        if state.done >= q.len() {
            return;
        }
        if state.working == 0 && !state.rebuilding {
            if nobody_since.get_or_insert_with(Instant::now).elapsed() >= NOBODY_WORKING_FOR {
                return;
            }
        } else {
            nobody_since = None;
        }
    }
}

async fn worker(ctx: &Ctx) {
    loop {
        let Some(index) = ctx.next_index().await else {
            return;
        };
        let Some(entry) = ctx.job.playlist.get(index) else {
            // Only possible when processes sharing a run id read different playlists.
            return ctx.fail(format!(
                "work queue handed out stream {index}, but the playlist has {}: \
                 processes of one run must check the same playlist",
                ctx.job.playlist.len()
            ));
        };
        let mut checked = check_stream(ctx, entry).await;
        while let Checked::Again = checked {
            checked = check_stream(ctx, entry).await;
        }
        match checked {
            Checked::Again => unreachable!("checked again above"),
            Checked::Done(r) => ctx.record(*r),
            Checked::DoneThenFatal(r, m) => {
                ctx.record(*r);
                return ctx.fail(m);
            }
            Checked::Interrupted => {
                let _ = ctx.job.source.give_back(index).await;
                return;
            }
            Checked::Fatal(m) => {
                ctx.fail(m);
                let _ = ctx.job.source.give_back(index).await;
                return;
            }
        }
    }
}

async fn check_stream(ctx: &Ctx, entry: &Entry) -> Checked {
    let start = Instant::now();
    let s = &ctx.settings;
    let routes = ctx.job.accounts.routes(&entry.url);
    let mut result = StreamResult::new(entry);
    if let Some(why) = &entry.unsupported {
        result.status = Status::Unsupported;
        result.error = Some(why.clone());
        return Checked::Done(Box::new(result));
    }
    let holder = format!("{}-s{}", ctx.holder_prefix, entry.index);
    let candidates = routes.iter().map(Route::candidate).collect();
    let mut selection = match TwoPhaseSelection::new(holder, s.lease_ttl, candidates, s.policy) {
        Ok(sel) => sel,
        Err(e) => return Checked::Fatal(e.to_string()),
    };
    let mut failure: Option<(Status, String)> = None;
    let mut backoff = Backoff::default();
    loop {
        let pick = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Checked::Interrupted,
            p = selection.next(&*ctx.job.ledger) => p,
        };
        match &pick {
            // Nothing starts without a slot: wait for the backend, within the grace.
            Err(CapacityError::Unavailable(m)) => match ctx.pause(&mut backoff, m).await {
                Ok(()) => continue,
                Err(Stop::Cancelled) => return Checked::Interrupted,
                Err(Stop::PastGrace(m)) => return Checked::Fatal(m),
            },
            _ => ctx.outage.recovered(),
        }
        let lease = match pick {
            Ok(Pick::Leased { lease, .. }) => lease,
            Ok(Pick::Exhausted) => break,
            Ok(Pick::AllFull { accounts }) => {
                failure.get_or_insert((
                    Status::NoSlot,
                    format!("every profile left is full: {}", accounts.join(", ")),
                ));
                break;
            }
            Err(e @ CapacityError::Timeout { .. }) => {
                failure.get_or_insert((Status::NoSlot, e.to_string()));
                break;
            }
            Err(e) => {
                failure = Some((Status::Error, e.to_string()));
                break;
            }
        };
        let route = routes
            .iter()
            .find(|r| r.key == lease.account)
            .expect("the ledger leases one of the candidates");
        result.profiles_tried.push(route.key.clone());
        result.profile = Some(route.key.clone());
        result.probed_url = Some(route.url.clone());
        let end = probe_route(ctx, entry, route, &lease, &mut result.attempts).await;
        // Released on every path (retried while the backend is unreachable); past the grace
        // the lease expires on its own, and the run stops (fail closed), keeping a result
        // that is already final.
        let released = ctx.release(&lease).await;
        let last_profile = selection.remaining().is_empty();
        match end {
            ProbeEnd::Alive(info) => {
                result.status = Status::Ok;
                result.resolution = info.width.zip(info.height).map(|(w, h)| format!("{w}x{h}"));
                result.info = info;
                result.elapsed_ms = start.elapsed().as_millis() as u64;
                return match released {
                    Ok(_) => Checked::Done(Box::new(result)),
                    Err(m) => Checked::DoneThenFatal(Box::new(result), m),
                };
            }
            ProbeEnd::Failed(status, m) if released.is_err() && last_profile => {
                result.status = status;
                result.error = Some(m);
                result.elapsed_ms = start.elapsed().as_millis() as u64;
                return Checked::DoneThenFatal(Box::new(result), released.unwrap_err());
            }
            // Other profiles could still be tried, which needs the backend.
            _ if released.is_err() => return Checked::Fatal(released.unwrap_err()),
            ProbeEnd::Failed(status, m) => failure = Some((status, m)),
            ProbeEnd::Interrupted => return Checked::Interrupted,
            // Stopped because the lease may have expired while the backend was unreachable:
            // the stream is checked again from the start once a slot can be had.
            ProbeEnd::LeaseLost(CapacityError::Unavailable(_)) => return Checked::Again,
            ProbeEnd::LeaseLost(e) => failure = Some((Status::Error, e.to_string())),
            ProbeEnd::Fatal(m) => return Checked::Fatal(m),
        }
    }
    let (status, message) =
        failure.unwrap_or((Status::Error, "no profile could be tried".to_string()));
    result.status = status;
    result.error = Some(message);
    result.elapsed_ms = start.elapsed().as_millis() as u64;
    Checked::Done(Box::new(result))
}

/// Probes one profile up to `1 + retries` times while holding its lease. Stops at once when
/// the run is cancelled or the lease is lost (the slot may belong to someone else by then).
async fn probe_route(
    ctx: &Ctx,
    entry: &Entry,
    route: &Route,
    lease: &Lease,
    attempts: &mut u32,
) -> ProbeEnd {
    let s = &ctx.settings;
    let heartbeat = Heartbeat::start_riding_out(ctx.job.ledger.clone(), lease.clone());
    let mut last = ProbeEnd::Failed(Status::Dead, "not probed".into());
    for attempt in 0..=s.retries {
        if attempt > 0 {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return ProbeEnd::Interrupted,
                e = heartbeat.lost() => return ProbeEnd::LeaseLost(e),
                _ = tokio::time::sleep(s.retry_delay) => {}
            }
        }
        *attempts += 1;
        let outcome = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return ProbeEnd::Interrupted,
            e = heartbeat.lost() => return ProbeEnd::LeaseLost(e),
            o = probe::probe(&s.probe_program, &route.url, &entry.options, s.probe_timeout) => o,
        };
        last = match outcome {
            Err(m) => return ProbeEnd::Fatal(m),
            Ok(Outcome::Alive(info)) => return ProbeEnd::Alive(info),
            Ok(Outcome::Dead(m)) => ProbeEnd::Failed(Status::Dead, m),
            Ok(Outcome::Stalled(m)) => ProbeEnd::Failed(Status::Timeout, m),
            Ok(Outcome::TimedOut) => ProbeEnd::Failed(
                Status::Timeout,
                format!("no answer within {:?}", s.probe_timeout),
            ),
        };
    }
    last
}

async fn progress(ctx: &Ctx, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let remaining = ctx.job.source.remaining().await;
        print_progress(ctx, start, remaining, false);
    }
}

/// The progress line's note on a paused run (empty while it runs).
fn pause_note(down_for: Option<Duration>, grace: Duration, rebuilding: bool) -> String {
    match down_for {
        Some(d) => format!(
            " | PAUSED: Redis unreachable for {:.0}s (grace {:.0}s)",
            d.as_secs_f64(),
            grace.as_secs_f64()
        ),
        None if rebuilding => " | PAUSED: rebuilding the run after Redis lost it".to_string(),
        None => String::new(),
    }
}

/// One `\r`-refreshed status line: counts, rate and time left.
fn print_progress(ctx: &Ctx, start: Instant, remaining: Option<usize>, last: bool) {
    let done = ctx.done.load(Ordering::Relaxed);
    let ok = ctx.ok.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let total = ctx.job.playlist.len();
    let left = match (&ctx.job.source, remaining) {
        (WorkSource::Local { .. }, _) => total.saturating_sub(done),
        (_, Some(r)) => r,
        (_, None) => 0,
    };
    let eta = if rate > 0.0 && left > 0 {
        let s = (left as f64 / rate).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        "-".to_string()
    };
    let scope = if ctx.job.run_id.is_some() {
        format!("{done} checked here, {left} left in the run")
    } else {
        format!("{done}/{total} checked")
    };
    let rebuilding = ctx.job.source.redis_queue().is_some_and(|q| q.rebuilding());
    let mut pause = pause_note(ctx.outage.down_for(), ctx.outage.grace(), rebuilding);
    if pause.is_empty() && ctx.lingering.load(Ordering::Relaxed) {
        pause = " | done here, waiting for the other processes".to_string();
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[streamguard] {scope} | ok {ok} | failed {failed} | {rate:.1}/s | ETA {eta}{pause}   "
    );
    if last {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_a_pause() {
        let grace = Duration::from_secs(60);
        assert_eq!(pause_note(None, grace, false), "");
        assert_eq!(
            pause_note(Some(Duration::from_millis(4400)), grace, false),
            " | PAUSED: Redis unreachable for 4s (grace 60s)"
        );
        assert_eq!(
            pause_note(None, grace, true),
            " | PAUSED: rebuilding the run after Redis lost it"
        );
    }
}
