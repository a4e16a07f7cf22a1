//! Capacity leases shared through Redis, so that several processes (checker workers, app
//! servers) respect one global limit and each account's `max_streams`. [`RedisLedger`]
//! implements the core's [`SlotLedger`] with Lua scripts: one atomic round trip per acquire,
//! release or renewal. [`WatchMultiLedger`] reproduces the seed checker's WATCH/MULTI scheme,
//! for the benchmark only.
//!
//! Layout (all keys share the hash tag of `prefix`, so a cluster keeps them in one slot): one
//! sorted set per account and one for all leases, member = lease id, score = expiry in Redis
//! server milliseconds. Expired members are purged inside the scripts before counting, so a
//! holder that died stops counting once its TTL is up.
//!
//! Waiters are served first come, first served across processes: they queue in a sorted set
//! (score = arrival time) with a table of their candidate accounts and a liveness deadline they
//! refresh at every poll. A slot goes to the earliest waiter that can use it; a newcomer never
//! takes a slot a waiter is owed; a waiter whose process died drops out when its liveness runs
//! out. A release publishes, on a pub/sub channel, the ids of the waiters that will now get a
//! slot, so exactly those wake up; a bounded poll covers lost messages and expiries. The
//! scripts also read the account sets of the waiters ahead (same hash tag, so same cluster
//! slot, but not declared in `KEYS`).
//!
//! Every Redis failure is a [`CapacityError::Unavailable`] after a few bounded retries: the
//! ledger fails closed and never lets work start without a slot. The connection reconnects by
//! itself (with backoff) on the next call, so a caller that retries rides out an outage.
//!
//! Releases and renewals name the lease id, so a release retried after a lost reply frees
//! exactly one slot, and an acquire retried after a lost reply reports the lease its first try
//! took. An acquire that returns no lease (it failed, or its caller stopped waiting) releases
//! in the background, by id, whatever Redis may have granted it, as soon as Redis answers; at
//! the latest such a lease expires after its TTL.
//!
//! **Redis coming back empty** (a restart without persistence, a failover to a replica that
//! had not got the keys): an epoch key, set when a ledger connects, disappears with the rest.
//! The first script call that misses it starts a *rebuild window* of `rebuild_window` (set it
//! to the longest lease TTL in use): during it no new lease is granted (waiters wait, `try`
//! answers "blocked by the global limit"), while holders that renew a lease this ledger
//! granted and Redis no longer has take it back (*reclaim*), within every limit. A holder
//! renews every third of its TTL, so by the end of the window every live holder has
//! reclaimed its slot and counting is exact again.

#![warn(missing_docs)]

mod watch_multi;

pub use redis;
pub use watch_multi::WatchMultiLedger;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use streamguard::capacity::{CapacityError, Grant, Lease, SlotLedger, SlotRequest, Usage};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// The default key prefix. The braces are a cluster hash tag: every key of a ledger lands in
/// one slot, which multi-key scripts need.
pub const DEFAULT_PREFIX: &str = "{streamguard}:cap";

/// How long a waiter gives a fresh pub/sub subscription to come up before it relies on polling.
const SUBSCRIBE_GRACE: Duration = Duration::from_millis(500);

/// Settings of a [`RedisLedger`].
#[derive(Debug, Clone)]
pub struct RedisLedgerConfig {
    /// `redis://host:port/db` of the shared Redis.
    pub url: String,
    /// Key prefix; ledgers with the same prefix share their slots. Every process sharing a
    /// prefix must use the same `global_limit`.
    pub prefix: String,
    /// Global limit over every account (`None` or `Some(0)` = unlimited).
    pub global_limit: Option<u32>,
    /// Bound on one Redis round trip (connect included).
    pub op_timeout: Duration,
    /// Extra attempts after a connection error or timeout, before failing closed.
    pub retries: u32,
    /// Wait before the first retry; doubles with each one, up to `op_timeout`.
    pub retry_delay: Duration,
    /// A waiter re-checks at least this often, in case a release message was lost.
    pub poll_interval: Duration,
    /// After Redis lost its keys (restart, failover), no new lease is granted for this long,
    /// while live holders reclaim theirs at their next renewal. Must be at least the longest
    /// lease TTL used on this prefix (a holder renews every third of it).
    pub rebuild_window: Duration,
}

impl RedisLedgerConfig {
    /// Defaults for `url`: prefix [`DEFAULT_PREFIX`], no global limit, 2 s per round trip,
    /// 2 retries from 50 ms, a 1 s poll fallback, a rebuild window of the default lease TTL
    /// (60 s).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            global_limit: None,
            op_timeout: Duration::from_secs(2),
            retries: 2,
            retry_delay: Duration::from_millis(50),
            poll_interval: Duration::from_secs(1),
            rebuild_window: streamguard::capacity::DEFAULT_LEASE_TTL,
        }
    }
}

/// Redis key names of one ledger.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn global(&self) -> String {
        format!("{}:global", self.prefix)
    }
    pub(crate) fn account(&self, account: &str) -> String {
        format!("{}:acct:{}", self.prefix, account)
    }
    pub(crate) fn channel(&self) -> String {
        format!("{}:released", self.prefix)
    }
    pub(crate) fn account_prefix(&self) -> String {
        format!("{}:acct:", self.prefix)
    }
    pub(crate) fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }
    pub(crate) fn waiters(&self) -> String {
        format!("{}:waiters", self.prefix)
    }
    /// Exists while Redis has this ledger's state; gone after a restart that lost it.
    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    /// Lives for the rebuild window after the state was found lost.
    pub(crate) fn rebuild(&self) -> String {
        format!("{}:rebuild", self.prefix)
    }
}

/// Redis server time in ms; the one clock every process agrees on. Shared by every script.
const NOW_MS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// Lua: `rebuilding(kepoch, krebuild, window)` returns the ms left of the rebuild window (0 if
/// none). A missing epoch key means Redis lost this ledger's state: it is set again and the
/// window starts.
const REBUILDING: &str = r#"
local function rebuilding(kepoch, krebuild, window)
  if redis.call('EXISTS', kepoch) == 0 then
    redis.call('SET', kepoch, '1')
    redis.call('SET', krebuild, '1', 'PX', window)
    return window
  end
  local left = redis.call('PTTL', krebuild)
  if left > 0 then return left end
  return 0
end
"#;

/// Lua: `promise(...)` walks the live waiters in queue order (up to `stop_id`, exclusive),
/// giving each the first of its accounts that still has room after those before it, while
/// global room lasts, as the in-memory ledger's hand-off would. Returns the slots so promised
/// per account and in all. With `publish`, it wakes every waiter promised a slot (one message
/// each, whichever process it runs in), so releases wake exactly the waiters that will get a
/// slot. Drops waiters whose liveness ran out. Needs `now` and `MAX_AHEAD`.
const PROMISE: &str = r#"
local function promise(kglobal, kqueue, kwaiters, glimit, acct_prefix, channel, stop_id, publish)
  local taken = {}
  local total = 0
  local gused = redis.call('ZCOUNT', kglobal, '(' .. now, '+inf')
  local counts = {}
  local function used(a)
    if counts[a] == nil then
      counts[a] = redis.call('ZCOUNT', acct_prefix .. a, '(' .. now, '+inf')
    end
    return counts[a]
  end
  for _, wid in ipairs(redis.call('ZRANGE', kqueue, 0, MAX_AHEAD)) do
    if wid == stop_id then break end
    if glimit > 0 and gused + total >= glimit then break end
    local v = redis.call('HGET', kwaiters, wid)
    local w = v and cjson.decode(v)
    if w and tonumber(w.exp) > now then
      for _, c in ipairs(w.c) do
        local a, lim = c[1], tonumber(c[2])
        if lim == 0 or used(a) + (taken[a] or 0) < lim then
          taken[a] = (taken[a] or 0) + 1
          total = total + 1
          if publish then redis.call('PUBLISH', channel, wid) end
          break
        end
      end
    else
      redis.call('ZREM', kqueue, wid)
      redis.call('HDEL', kwaiters, wid)
    end
  end
  return taken, total
end
"#;

/// Earlier waiters an acquire looks at. Fairness is exact among the first this many waiters
/// of a ledger and approximate behind them; it bounds the work of one script call.
const MAX_AHEAD: usize = 100;

/// KEYS: global set, waiter queue, waiter table, epoch, rebuild flag, then one set per candidate
/// (best first). ARGV: lease id, ttl ms, global limit (0 = none), mode (`try` or `wait`), waiter
/// liveness ms, account key prefix, release channel, the candidates as JSON
/// `[[name, limit], ...]`, rebuild window ms, then one limit per candidate (0 = none).
///
/// Waiters queue in arrival order (score = Redis time in µs). A slot is taken only if it is
/// left over after the earlier live waiters have been promised theirs (`promise`), so a
/// release goes to the first waiter that can use it, in whichever process it runs, and a
/// newcomer (`try`) never takes a slot a waiter could use. A waiter that stops calling (its
/// process died) drops out after its liveness runs out.
///
/// During a rebuild window nothing is granted: a waiter queues, a `try` reports every
/// candidate as blocked by the global limit, and the wake-up time is the window's end.
///
/// Returns {granted candidate (1-based, 0 = none), ms until the earliest blocking lease
/// expires (-1 = unknown), candidates blocked only by the global limit...}.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}local MAX_AHEAD = {MAX_AHEAD}\n{REBUILDING}{PROMISE}{}",
        r#"
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local glimit = tonumber(ARGV[3])
local wait = ARGV[4] == 'wait'
local live_ms = tonumber(ARGV[5])
local acct_prefix = ARGV[6]
local channel = ARGV[7]
local nc = #KEYS - 5
local window = tonumber(ARGV[9])
local function leave_queue()
  if redis.call('ZREM', KEYS[2], id) == 1 then
    redis.call('HDEL', KEYS[3], id)
    -- Slots left over (a second free one, or ones it was promised elsewhere) go to the next.
    promise(KEYS[1], KEYS[2], KEYS[3], glimit, acct_prefix, channel, nil, true)
  end
end
-- A retried call whose first try went through: report the lease it already took.
for i = 1, nc do
  local s = redis.call('ZSCORE', KEYS[i + 5], id)
  if s and tonumber(s) > now then
    if wait then leave_queue() end
    return {i, -1}
  end
end
if wait then
  if not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), id)
  end
  redis.call('HSET', KEYS[3], id, cjson.encode({exp = now + live_ms, c = cjson.decode(ARGV[8])}))
end
local rebuild_left = rebuilding(KEYS[4], KEYS[5], window)
if rebuild_left > 0 then
  local out = {0, rebuild_left}
  if not wait then
    for i = 1, nc do table.insert(out, i) end
  end
  return out
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gcount = redis.call('ZCARD', KEYS[1])
local used = {}
local any_room = false
for i = 1, nc do
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 5], '-inf', now)
  used[i] = redis.call('ZCARD', KEYS[i + 5])
  local limit = tonumber(ARGV[i + 9])
  if limit == 0 or used[i] < limit then any_room = true end
end
-- The slots promised to the live waiters ahead of this caller (all of them, for a newcomer).
-- Only worth working out when there is a slot this caller could take at all.
local ahead, ahead_total = {}, 0
if any_room and (glimit == 0 or gcount < glimit) then
  ahead, ahead_total = promise(KEYS[1], KEYS[2], KEYS[3], glimit, acct_prefix, channel, id, false)
end
local gfull = glimit > 0 and gcount + ahead_total >= glimit
local wake = -1
local function earliest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local w = tonumber(first[2]) - now
    if wake < 0 or w < wake then wake = w end
  end
end
local room = {}
for i = 1, nc do
  local key = KEYS[i + 5]
  local limit = tonumber(ARGV[i + 9])
  local taken = used[i] + (ahead[string.sub(key, #acct_prefix + 1)] or 0)
  if limit == 0 or taken < limit then
    if not gfull then
      redis.call('ZADD', KEYS[1], now + ttl, id)
      redis.call('ZADD', key, now + ttl, id)
      if wait then leave_queue() end
      return {i, -1}
    end
    table.insert(room, i)
  else
    earliest(key)
  end
end
if gfull then earliest(KEYS[1]) end
local out = {0, wake}
for _, r in ipairs(room) do table.insert(out, r) end
return out
"#
    ))
});

/// KEYS: global set, waiter queue, waiter table. ARGV: waiter id, release channel, global
/// limit, account key prefix. A waiter gives up; the next one that can use a slot is woken.
static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}local MAX_AHEAD = {MAX_AHEAD}\n{PROMISE}{}",
        r#"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  promise(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), ARGV[4], ARGV[2], nil, true)
end
return 1
"#
    ))
});

/// KEYS: global set, account set, waiter queue, waiter table. ARGV: lease id, channel, global
/// limit, account key prefix. Returns 1 if held; then wakes the first waiter that can use a
/// slot now.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}local MAX_AHEAD = {MAX_AHEAD}\n{PROMISE}{}",
        r#"
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then
  promise(KEYS[1], KEYS[3], KEYS[4], tonumber(ARGV[3]), ARGV[4], ARGV[2], nil, true)
end
return removed
"#
    ))
});

/// KEYS: global set, account set, epoch, rebuild flag. ARGV: lease id, ttl ms, the account's
/// limit if the lease may be reclaimed (-1 = not), global limit, rebuild window ms.
///
/// Returns 1 if renewed, 2 if reclaimed, 0 if lost. A lease Redis no longer has (it lost its
/// keys, or the lease expired while Redis was stalled and its holder's renewals queued) is
/// reclaimed under the same id if its account and the global count leave room for it, waiters
/// notwithstanding: its holder never stopped using the slot.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{REBUILDING}{}",
        r#"
rebuilding(KEYS[3], KEYS[4], tonumber(ARGV[5]))
local exp = now + tonumber(ARGV[2])
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if s and tonumber(s) > now then
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
  redis.call('ZADD', KEYS[2], exp, ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local limit, glimit = tonumber(ARGV[3]), tonumber(ARGV[4])
if limit < 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if (limit == 0 or redis.call('ZCARD', KEYS[2]) < limit)
    and (glimit == 0 or redis.call('ZCARD', KEYS[1]) < glimit) then
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
  redis.call('ZADD', KEYS[2], exp, ARGV[1])
  return 2
end
return 0
"#
    ))
});

/// KEYS: global set, account set. Returns {live leases in all, live leases on the account}.
static USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r#"
local after = '(' .. now
return {redis.call('ZCOUNT', KEYS[1], after, '+inf'), redis.call('ZCOUNT', KEYS[2], after, '+inf')}
"#
    ))
});

/// A [`SlotLedger`] in Redis, shared by every process that uses the same URL and prefix.
/// Cheap to clone. Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct RedisLedger {
    shared: Arc<Shared>,
}

struct Shared {
    config: RedisLedgerConfig,
    keys: Keys,
    client: redis::Client,
    conn: ConnectionManager,
    /// Wakes every local waiter (the release channel came back: anything may have changed).
    released: Arc<Notify>,
    /// This process's waiters by id: a release wakes only the one it names.
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    listener: Mutex<Option<Listener>>,
    /// Leases granted here and not released, with their account's limit (0 = none): what a
    /// renewal needs to reclaim a lease Redis lost.
    held: Mutex<HashMap<String, u32>>,
    /// Makes lease ids unique across processes without a round trip.
    nonce: u64,
    counter: AtomicU64,
}

struct Listener {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            l.task.abort();
        }
    }
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> CapacityError {
    CapacityError::Unavailable(format!("redis {what}: {e}"))
}

/// Connection trouble is worth a retry; anything else (a script error, a wrong server) is not.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn new_nonce() -> u64 {
    use rand::{RngCore, SeedableRng};
    rand::rngs::StdRng::from_os_rng().next_u64()
}

impl RedisLedger {
    /// Connects to `config.url` (bounded by `op_timeout`). Fails with
    /// [`CapacityError::Unavailable`] if Redis cannot be reached.
    pub async fn connect(config: RedisLedgerConfig) -> Result<Self, CapacityError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| CapacityError::Invalid(format!("redis url {:?}: {e}", config.url)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(config.retries as usize)
            .set_min_delay(config.retry_delay)
            .set_max_delay(config.op_timeout);
        let conn = tokio::time::timeout(
            config.op_timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| unavailable("connect", "timed out"))?
        .map_err(|e| unavailable("connect", e))?;
        let keys = Keys {
            prefix: config.prefix.clone(),
        };
        // Marks the state as present. (A Redis that lost its keys before this first call is
        // indistinguishable from a new one: see the crate docs.)
        let mut c = conn.clone();
        let cmd = redis::cmd("SET")
            .arg(keys.epoch())
            .arg(1)
            .arg("NX")
            .to_owned();
        let set = cmd.exec_async(&mut c);
        tokio::time::timeout(config.op_timeout, set)
            .await
            .map_err(|_| unavailable("connect", "timed out"))?
            .map_err(|e| unavailable("connect", e))?;
        Ok(Self {
            shared: Arc::new(Shared {
                keys,
                config,
                client,
                conn,
                released: Arc::new(Notify::new()),
                waiting: Arc::default(),
                listener: Mutex::new(None),
                held: Mutex::default(),
                nonce: new_nonce(),
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// The settings this ledger runs with.
    pub fn config(&self) -> &RedisLedgerConfig {
        &self.shared.config
    }

    /// Runs one Redis operation with the bounded-retry policy: each try bounded by
    /// `op_timeout`, transient failures retried `retries` times with doubling delays, and
    /// anything left over reported as `Unavailable`.
    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, CapacityError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let cfg = &self.shared.config;
        let mut delay = cfg.retry_delay;
        let mut attempt = 0;
        loop {
            let result = tokio::time::timeout(cfg.op_timeout, op(self.shared.conn.clone())).await;
            let (message, transient) = match result {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if e.is_timeout() => {
                    (format!("no answer within {:?}", cfg.op_timeout), true)
                }
                Ok(Err(e)) => (e.to_string(), is_transient(&e)),
                Err(_) => (format!("no answer within {:?}", cfg.op_timeout), true),
            };
            if !transient || attempt >= cfg.retries {
                warn!(what, error = %message, "redis capacity ledger failed closed");
                return Err(unavailable(what, message));
            }
            attempt += 1;
            debug!(what, attempt, error = %message, "retrying redis");
            tokio::time::sleep(delay).await;
            // Backoff capped at one round trip's bound: the connection reconnects by itself.
            delay = delay
                .saturating_mul(2)
                .min(cfg.op_timeout.max(cfg.retry_delay));
        }
    }

    fn new_id(&self, holder: &str) -> String {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n}:{holder}", self.shared.nonce)
    }

    /// One acquire script call with a given lease id (reused across retries and polls, which
    /// makes a retried call idempotent). Also returns when the earliest blocking lease expires.
    async fn try_with_id(
        &self,
        request: &SlotRequest,
        id: &str,
        mode: Mode,
    ) -> Result<(Grant, Option<Duration>), CapacityError> {
        let keys = &self.shared.keys;
        let cfg = &self.shared.config;
        let global = cfg.global_limit.unwrap_or(0);
        // A waiter refreshes its place at every poll; three missed polls and it is presumed dead.
        let liveness = ttl_ms(cfg.poll_interval * 3 + cfg.op_timeout);
        let candidates = serde_json::to_string(
            &request
                .candidates
                .iter()
                .map(|c| (c.account.as_str(), c.limit().unwrap_or(0)))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| CapacityError::Invalid(e.to_string()))?;
        // Until a reply is in hand, Redis may have granted a lease nobody will know of (the
        // reply was lost, the caller gave up, or a stalled Redis runs the call later): if this
        // call does not return a lease, that one is given back in the background.
        let mut orphan = Orphan {
            ledger: self.clone(),
            id: id.to_string(),
            accounts: request
                .candidates
                .iter()
                .map(|c| c.account.clone())
                .collect(),
            ttl: request.ttl,
            armed: true,
        };
        let reply: Vec<i64> = self
            .run("acquire", |mut conn| {
                let mut inv = ACQUIRE.prepare_invoke();
                inv.key(keys.global())
                    .key(keys.queue())
                    .key(keys.waiters())
                    .key(keys.epoch())
                    .key(keys.rebuild());
                for c in &request.candidates {
                    inv.key(keys.account(&c.account));
                }
                inv.arg(id)
                    .arg(ttl_ms(request.ttl))
                    .arg(global)
                    .arg(mode.as_str())
                    .arg(liveness)
                    .arg(keys.account_prefix())
                    .arg(keys.channel())
                    .arg(&candidates)
                    .arg(ttl_ms(cfg.rebuild_window));
                for c in &request.candidates {
                    inv.arg(c.limit().unwrap_or(0));
                }
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        let bad = || unavailable("acquire", format!("unexpected script reply {reply:?}"));
        // Answered: whatever Redis holds under this id, the reply says.
        orphan.armed = false;
        let (&granted, rest) = reply.split_first().ok_or_else(bad)?;
        let (&wake, room) = rest.split_first().ok_or_else(bad)?;
        if granted > 0 {
            let c = request
                .candidates
                .get(granted as usize - 1)
                .ok_or_else(bad)?;
            self.shared
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), c.limit().unwrap_or(0));
            return Ok((
                Grant::Leased(Lease {
                    id: id.to_string(),
                    account: c.account.clone(),
                    holder: request.holder.clone(),
                    ttl: request.ttl,
                }),
                None,
            ));
        }
        let with_room = room.iter().map(|&i| (i - 1) as usize).collect();
        // +1 ms: Redis counts a lease as expired only once its score is strictly in the past.
        let wake = (wake >= 0).then(|| Duration::from_millis(wake as u64 + 1));
        Ok((Grant::Full { with_room }, wake))
    }

    /// Starts (or restarts, if it died) the pub/sub listener; returns its "subscribed" flag.
    fn ensure_listener(&self) -> watch::Receiver<bool> {
        let mut slot = self
            .shared
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(l) = slot.as_ref().filter(|l| !l.task.is_finished()) {
            return l.subscribed.clone();
        }
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(listen(
            self.shared.client.clone(),
            self.shared.keys.channel(),
            self.shared.released.clone(),
            self.shared.waiting.clone(),
            tx,
            self.shared.config.op_timeout,
            self.shared.config.poll_interval,
        ));
        *slot = Some(Listener {
            task,
            subscribed: rx.clone(),
        });
        rx
    }
}

/// Follows the release channel, where each message names the waiter that may take a slot now,
/// and wakes that waiter if it is one of ours; reconnects with backoff (50 ms doubling up to
/// `pause`) when the connection drops (waking every local waiter once back, for what was
/// missed). Holds no reference to
/// the ledger, so dropping the ledger (which aborts this task) is never blocked by it.
async fn listen(
    client: redis::Client,
    channel: String,
    released: Arc<Notify>,
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    subscribed: watch::Sender<bool>,
    connect_timeout: Duration,
    pause: Duration,
) {
    let mut backoff = RECONNECT_FIRST;
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(mut pubsub)) => {
                subscribed.send_replace(true);
                backoff = RECONNECT_FIRST;
                // Releases may have happened while we were not listening.
                released.notify_waiters();
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(id) = message.get_payload::<String>() else {
                        continue;
                    };
                    let waiter = waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .cloned();
                    // A stored permit: the waiter sees it even if it is busy asking Redis.
                    if let Some(w) = waiter {
                        w.notify_one();
                    }
                }
                subscribed.send_replace(false);
                debug!("redis release channel closed; polling until it is back");
            }
            Ok(Err(e)) => debug!(error = %e, "redis release channel unavailable"),
            Err(_) => debug!("redis release channel: connect timed out"),
        }
        tokio::time::sleep(backoff.min(pause)).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// First wait before the release channel reconnects.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);

/// How an acquire call asks: once (phase 1), or as a queued waiter.
#[derive(Clone, Copy)]
enum Mode {
    Try,
    Wait,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Try => "try",
            Self::Wait => "wait",
        }
    }
}

/// A lease an acquire may have taken although its caller never learnt of it. When dropped
/// armed, it is released in the background (on every candidate account, by id, so a lease
/// that was never taken costs nothing), retried with backoff while it could still be alive:
/// such a slot is free again as soon as Redis answers, not only when its TTL runs out.
struct Orphan {
    ledger: RedisLedger,
    id: String,
    accounts: Vec<String>,
    ttl: Duration,
    armed: bool,
}

impl Drop for Orphan {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // No runtime (the process is going down): the lease expires with its TTL instead.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let leases: Vec<Lease> = self
            .accounts
            .drain(..)
            .map(|account| Lease {
                id: self.id.clone(),
                account,
                holder: String::new(),
                ttl: self.ttl,
            })
            .collect();
        let ledger = self.ledger.clone();
        let deadline = Instant::now() + self.ttl;
        rt.spawn(async move {
            let cfg = &ledger.shared.config;
            let mut delay = cfg.retry_delay;
            let mut left = leases;
            while !left.is_empty() && Instant::now() < deadline {
                let mut failed = Vec::new();
                for lease in left {
                    if ledger.release(&lease).await.is_err() {
                        failed.push(lease);
                    }
                }
                left = failed;
                if !left.is_empty() {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(cfg.poll_interval);
                }
            }
        });
    }
}

/// A waiter's entry in this process's table of waiters, removed when dropped.
struct Registered {
    table: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    id: String,
}

impl Registered {
    fn new(table: &Arc<Mutex<HashMap<String, Arc<Notify>>>>, id: &str, wake: Arc<Notify>) -> Self {
        table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), wake);
        Self {
            table: table.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// A waiter's place in the shared queue, given up when dropped while still queued.
struct QueuePlace {
    ledger: RedisLedger,
    id: String,
    queued: bool,
}

impl QueuePlace {
    async fn leave(&mut self) {
        if std::mem::take(&mut self.queued) {
            leave_queue(&self.ledger, &self.id).await;
        }
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.queued) {
            return;
        }
        // No runtime (the process is going down): the place's liveness runs out instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (ledger, id) = (self.ledger.clone(), std::mem::take(&mut self.id));
            rt.spawn(async move { leave_queue(&ledger, &id).await });
        }
    }
}

/// Takes waiter `id` out of the queue and wakes the ones behind it.
async fn leave_queue(ledger: &RedisLedger, id: &str) {
    let keys = &ledger.shared.keys;
    let left: Result<i64, _> = ledger
        .run("leave queue", |mut conn| {
            let mut inv = LEAVE.prepare_invoke();
            inv.key(keys.global())
                .key(keys.queue())
                .key(keys.waiters())
                .arg(id)
                .arg(keys.channel())
                .arg(ledger.shared.config.global_limit.unwrap_or(0))
                .arg(keys.account_prefix());
            async move { inv.invoke_async(&mut conn).await }
        })
        .await;
    if let Err(e) = left {
        // Its liveness runs out instead.
        debug!(error = %e, "could not leave the waiter queue");
    }
}

#[async_trait]
impl SlotLedger for RedisLedger {
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError> {
        request.validate()?;
        let id = self.new_id(&request.holder);
        Ok(self.try_with_id(request, &id, Mode::Try).await?.0)
    }

    async fn acquire(
        &self,
        request: &SlotRequest,
        max_wait: Duration,
    ) -> Result<Lease, CapacityError> {
        request.validate()?;
        let start = Instant::now();
        let deadline = start + max_wait;
        let id = self.new_id(&request.holder);
        // Leaves the queue however this ends (a dropped future included), so a waiter that
        // gave up never holds back the ones behind it.
        let mut place = QueuePlace {
            ledger: self.clone(),
            id: id.clone(),
            queued: false,
        };
        let my_turn = Arc::new(Notify::new());
        let _registered = Registered::new(&self.shared.waiting, &id, my_turn.clone());
        let mut subscribed = self.ensure_listener();
        if !*subscribed.borrow() {
            // A release announced before the subscription is live would be missed; give it a
            // moment, then rely on the poll fallback.
            let _ =
                tokio::time::timeout(SUBSCRIBE_GRACE.min(max_wait), subscribed.wait_for(|s| *s))
                    .await;
        }
        loop {
            // Armed before asking Redis, so a release between the answer and the wait counts.
            let notified = self.shared.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            place.queued = true;
            let (grant, wake) = self.try_with_id(request, &id, Mode::Wait).await?;
            if let Grant::Leased(lease) = grant {
                // The script took it out of the queue.
                place.queued = false;
                return Ok(lease);
            }
            let now = Instant::now();
            if now >= deadline {
                place.leave().await;
                return Err(CapacityError::Timeout {
                    waited: now - start,
                    accounts: request
                        .candidates
                        .iter()
                        .map(|c| c.account.clone())
                        .collect(),
                });
            }
            let mut nap = self.shared.config.poll_interval.min(deadline - now);
            if let Some(w) = wake {
                nap = nap.min(w);
            }
            tokio::select! {
                _ = my_turn.notified() => {}
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError> {
        // Not to be reclaimed any more, whatever the outcome: a release that fails is retried
        // by id, or the lease expires.
        self.shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease.id);
        let keys = &self.shared.keys;
        let global = self.shared.config.global_limit.unwrap_or(0);
        let removed: i64 = self
            .run("release", |mut conn| {
                let mut inv = RELEASE.prepare_invoke();
                inv.key(keys.global())
                    .key(keys.account(&lease.account))
                    .key(keys.queue())
                    .key(keys.waiters())
                    .arg(&lease.id)
                    .arg(keys.channel())
                    .arg(global)
                    .arg(keys.account_prefix());
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(removed == 1)
    }

    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError> {
        let keys = &self.shared.keys;
        let cfg = &self.shared.config;
        let reclaim_limit = self
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&lease.id)
            .map_or(-1, |&l| i64::from(l));
        let renewed: i64 = self
            .run("renew", |mut conn| {
                let mut inv = RENEW.prepare_invoke();
                inv.key(keys.global())
                    .key(keys.account(&lease.account))
                    .key(keys.epoch())
                    .key(keys.rebuild())
                    .arg(&lease.id)
                    .arg(ttl_ms(lease.ttl))
                    .arg(reclaim_limit)
                    .arg(cfg.global_limit.unwrap_or(0))
                    .arg(ttl_ms(cfg.rebuild_window));
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        if renewed == 2 {
            warn!(account = %lease.account, lease = %lease.id, "lease missing from redis (restart or stall); reclaimed");
        }
        if renewed >= 1 {
            Ok(())
        } else {
            self.shared
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&lease.id);
            Err(CapacityError::LeaseLost {
                account: lease.account.clone(),
                lease: lease.id.clone(),
            })
        }
    }

    async fn usage(&self, account: &str) -> Result<Usage, CapacityError> {
        let keys = &self.shared.keys;
        let (global, account): (usize, usize) = self
            .run("usage", |mut conn| {
                let mut inv = USAGE.prepare_invoke();
                inv.key(keys.global()).key(keys.account(account));
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(Usage { global, account })
    }

    fn global_limit(&self) -> Option<u32> {
        self.shared.config.global_limit.filter(|&g| g > 0)
    }
}
