//! Capacity leases shared through Redis, so that several processes (checker workers, app
//! servers) respect one global limit and each account's `max_streams`. [`RedisLedger`]
//! implements the core's [`SlotLedger`] with Lua scripts: one atomic round trip per acquire,
//! release or renewal. [`WatchMultiLedger`] reproduces the seed checker's WATCH/MULTI scheme,
//! for the benchmark only.
//!
//! Layout (all keys share the hash tag of `prefix`, so a cluster keeps them in one slot): one
//! sorted set per account and one for all leases, member = lease id, score = expiry in Redis
//! server milliseconds. Expired members are purged inside the scripts before counting, so a
//! holder that died stops counting once its TTL is up. Releases are announced on a pub/sub
//! channel that wakes waiters in every process; a bounded poll covers lost messages and expiries.
//!
//! Every Redis failure is a [`CapacityError::Unavailable`] after a few bounded retries: the
//! ledger fails closed and never lets work start without a slot.

#![warn(missing_docs)]

mod watch_multi;

pub use redis;
pub use watch_multi::WatchMultiLedger;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
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
    /// Wait before the first retry; doubles with each one.
    pub retry_delay: Duration,
    /// A waiter re-checks at least this often, in case a release message was lost.
    pub poll_interval: Duration,
}

impl RedisLedgerConfig {
    /// Defaults for `url`: prefix [`DEFAULT_PREFIX`], no global limit, 2 s per round trip,
    /// 2 retries from 50 ms, a 1 s poll fallback.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            global_limit: None,
            op_timeout: Duration::from_secs(2),
            retries: 2,
            retry_delay: Duration::from_millis(50),
            poll_interval: Duration::from_secs(1),
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
}

/// Redis server time in ms; the one clock every process agrees on. Shared by every script.
const NOW_MS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// KEYS: global set, then one set per candidate (best first).
/// ARGV: lease id, ttl ms, global limit (0 = none), then one limit per candidate (0 = none).
/// Returns {granted candidate (1-based, 0 = none), ms until the earliest blocking lease
/// expires (-1 = unknown), candidates blocked only by the global limit...}.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r#"
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local glimit = tonumber(ARGV[3])
-- A retried call whose first try went through: report the lease it already took.
for i = 2, #KEYS do
  local s = redis.call('ZSCORE', KEYS[i], id)
  if s and tonumber(s) > now then return {i - 1, -1} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gfull = glimit > 0 and redis.call('ZCARD', KEYS[1]) >= glimit
local wake = -1
local function earliest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local w = tonumber(first[2]) - now
    if wake < 0 or w < wake then wake = w end
  end
end
local room = {}
for i = 2, #KEYS do
  local limit = tonumber(ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if limit == 0 or redis.call('ZCARD', KEYS[i]) < limit then
    if not gfull then
      redis.call('ZADD', KEYS[1], now + ttl, id)
      redis.call('ZADD', KEYS[i], now + ttl, id)
      return {i - 1, -1}
    end
    table.insert(room, i - 1)
  else
    earliest(KEYS[i])
  end
end
if gfull then earliest(KEYS[1]) end
local out = {0, wake}
for _, r in ipairs(room) do table.insert(out, r) end
return out
"#
    ))
});

/// KEYS: global set, account set. ARGV: lease id, channel, account name. Returns 1 if held.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
"#,
    )
});

/// KEYS: global set, account set. ARGV: lease id, ttl ms. Returns 1 if renewed, 0 if lost.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r#"
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not s) or tonumber(s) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('ZADD', KEYS[2], exp, ARGV[1])
return 1
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
    /// Wakes local waiters when any process announces a release.
    released: Arc<Notify>,
    listener: Mutex<Option<Listener>>,
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
        Ok(Self {
            shared: Arc::new(Shared {
                keys: Keys {
                    prefix: config.prefix.clone(),
                },
                config,
                client,
                conn,
                released: Arc::new(Notify::new()),
                listener: Mutex::new(None),
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
            delay = delay.saturating_mul(2);
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
    ) -> Result<(Grant, Option<Duration>), CapacityError> {
        let keys = &self.shared.keys;
        let global = self.shared.config.global_limit.unwrap_or(0);
        let reply: Vec<i64> = self
            .run("acquire", |mut conn| {
                let mut inv = ACQUIRE.prepare_invoke();
                inv.key(keys.global());
                for c in &request.candidates {
                    inv.key(keys.account(&c.account));
                }
                inv.arg(id).arg(ttl_ms(request.ttl)).arg(global);
                for c in &request.candidates {
                    inv.arg(c.limit().unwrap_or(0));
                }
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        let bad = || unavailable("acquire", format!("unexpected script reply {reply:?}"));
        let (&granted, rest) = reply.split_first().ok_or_else(bad)?;
        let (&wake, room) = rest.split_first().ok_or_else(bad)?;
        if granted > 0 {
            let c = request
                .candidates
                .get(granted as usize - 1)
                .ok_or_else(bad)?;
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

/// Follows the release channel and wakes local waiters on every message, reconnecting after
/// `pause` when the connection drops. Holds no reference to the ledger, so dropping the
/// ledger (which aborts this task) is never blocked by it.
async fn listen(
    client: redis::Client,
    channel: String,
    released: Arc<Notify>,
    subscribed: watch::Sender<bool>,
    connect_timeout: Duration,
    pause: Duration,
) {
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(mut pubsub)) => {
                subscribed.send_replace(true);
                // Releases may have happened while we were not listening.
                released.notify_waiters();
                let mut messages = pubsub.on_message();
                while messages.next().await.is_some() {
                    released.notify_waiters();
                }
                subscribed.send_replace(false);
                debug!("redis release channel closed; polling until it is back");
            }
            Ok(Err(e)) => debug!(error = %e, "redis release channel unavailable"),
            Err(_) => debug!("redis release channel: connect timed out"),
        }
        tokio::time::sleep(pause).await;
    }
}

#[async_trait]
impl SlotLedger for RedisLedger {
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError> {
        request.validate()?;
        let id = self.new_id(&request.holder);
        Ok(self.try_with_id(request, &id).await?.0)
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
            let (grant, wake) = self.try_with_id(request, &id).await?;
            if let Grant::Leased(lease) = grant {
                return Ok(lease);
            }
            let now = Instant::now();
            if now >= deadline {
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
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError> {
        let keys = &self.shared.keys;
        let removed: i64 = self
            .run("release", |mut conn| {
                let mut inv = RELEASE.prepare_invoke();
                inv.key(keys.global())
                    .key(keys.account(&lease.account))
                    .arg(&lease.id)
                    .arg(keys.channel())
                    .arg(&lease.account);
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(removed == 1)
    }

    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError> {
        let keys = &self.shared.keys;
        let renewed: i64 = self
            .run("renew", |mut conn| {
                let mut inv = RENEW.prepare_invoke();
                inv.key(keys.global())
                    .key(keys.account(&lease.account))
                    .arg(&lease.id)
                    .arg(ttl_ms(lease.ttl));
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
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
