//! The seed checker's optimistic scheme (WATCH the counters, read them, MULTI/EXEC the update,
//! start over when another client got in between), kept to measure against the Lua scripts.
//! Unlike the seed it gives up after a bounded number of conflicts and fails closed.

use crate::{is_transient, new_nonce, ttl_ms, unavailable, Keys};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use streamguard::capacity::{CapacityError, Grant, Lease, SlotLedger, SlotRequest, Usage};
use tokio::time::Instant;

/// A [`SlotLedger`] built on WATCH/MULTI transactions over the same key layout as
/// [`RedisLedger`](crate::RedisLedger). For benchmarks: every acquire costs four round trips
/// and is retried from scratch on every conflicting write, and waiters poll.
pub struct WatchMultiLedger {
    client: redis::Client,
    keys: Keys,
    global_limit: Option<u32>,
    max_conflicts: u32,
    poll_interval: Duration,
    op_timeout: Duration,
    /// WATCH state belongs to a connection, so each operation borrows a connection of its own.
    pool: Mutex<Vec<MultiplexedConnection>>,
    conflicts: AtomicU64,
    nonce: u64,
    counter: AtomicU64,
}

enum Outcome<T> {
    Done(T),
    Conflict,
}

impl WatchMultiLedger {
    /// A ledger on `url` with `prefix`, giving up after `max_conflicts` aborted transactions
    /// in a row; waiters poll every `poll_interval`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        global_limit: Option<u32>,
        max_conflicts: u32,
        poll_interval: Duration,
    ) -> Result<Self, CapacityError> {
        let client = redis::Client::open(url)
            .map_err(|e| CapacityError::Invalid(format!("redis url {url:?}: {e}")))?;
        let ledger = Self {
            client,
            keys: Keys {
                prefix: prefix.to_string(),
            },
            global_limit,
            max_conflicts,
            poll_interval,
            op_timeout: Duration::from_secs(2),
            pool: Mutex::new(Vec::new()),
            conflicts: AtomicU64::new(0),
            nonce: new_nonce(),
            counter: AtomicU64::new(0),
        };
        let con = ledger.checkout().await?;
        ledger.checkin(con);
        Ok(ledger)
    }

    /// Transactions aborted by a concurrent write so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    async fn checkout(&self) -> Result<MultiplexedConnection, CapacityError> {
        if let Some(c) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| unavailable("connect", e))
    }

    fn checkin(&self, con: MultiplexedConnection) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(con);
    }

    /// Files one attempt's result: `Some` to return (the connection goes back to the pool
    /// unless the attempt failed, so no WATCH is left behind), `None` to retry after a
    /// conflict.
    fn settle<T>(
        &self,
        what: &str,
        con: &mut Option<MultiplexedConnection>,
        result: redis::RedisResult<Outcome<T>>,
    ) -> Option<Result<T, CapacityError>> {
        match result {
            Ok(Outcome::Done(v)) => {
                if let Some(c) = con.take() {
                    self.checkin(c);
                }
                Some(Ok(v))
            }
            Ok(Outcome::Conflict) => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                con.take();
                let kind = if is_transient(&e) {
                    "connection"
                } else {
                    "command"
                };
                Some(Err(unavailable(what, format!("{kind} error: {e}"))))
            }
        }
    }

    fn gave_up<T>(
        &self,
        what: &str,
        con: Option<MultiplexedConnection>,
    ) -> Result<T, CapacityError> {
        if let Some(c) = con {
            self.checkin(c);
        }
        Err(unavailable(
            what,
            format!(
                "gave up after {} WATCH conflicts in a row",
                self.max_conflicts + 1
            ),
        ))
    }

    async fn acquire_once(
        &self,
        con: &mut MultiplexedConnection,
        request: &SlotRequest,
        id: &str,
    ) -> redis::RedisResult<Outcome<Grant>> {
        let global_key = self.keys.global();
        let account_keys: Vec<String> = request
            .candidates
            .iter()
            .map(|c| self.keys.account(&c.account))
            .collect();
        redis::cmd("WATCH")
            .arg(&global_key)
            .arg(&account_keys)
            .exec_async(&mut *con)
            .await?;
        let now = server_ms(con).await?;
        let mut counts = redis::pipe();
        counts.zcount(&global_key, format!("({now}"), "+inf");
        for k in &account_keys {
            counts.zcount(k, format!("({now}"), "+inf");
        }
        let counts: Vec<usize> = counts.query_async(&mut *con).await?;
        let glimit = self.global_limit.unwrap_or(0) as usize;
        let global_full = glimit > 0 && counts[0] >= glimit;
        let mut with_room = Vec::new();
        let mut pick = None;
        for (i, c) in request.candidates.iter().enumerate() {
            let room = c.limit().is_none_or(|l| counts[i + 1] < l as usize);
            if room && !global_full {
                pick = Some(i);
                break;
            }
            if room {
                with_room.push(i);
            }
        }
        let Some(i) = pick else {
            redis::cmd("UNWATCH").exec_async(&mut *con).await?;
            return Ok(Outcome::Done(Grant::Full { with_room }));
        };
        let exp = now + ttl_ms(request.ttl);
        let done: Option<redis::Value> = redis::pipe()
            .atomic()
            .zrembyscore(&global_key, "-inf", now)
            .ignore()
            .zrembyscore(&account_keys[i], "-inf", now)
            .ignore()
            .zadd(&global_key, id, exp)
            .ignore()
            .zadd(&account_keys[i], id, exp)
            .ignore()
            .query_async(&mut *con)
            .await?;
        Ok(match done {
            None => Outcome::Conflict,
            Some(_) => Outcome::Done(Grant::Leased(Lease {
                id: id.to_string(),
                account: request.candidates[i].account.clone(),
                holder: request.holder.clone(),
                ttl: request.ttl,
            })),
        })
    }

    async fn renew_once(
        &self,
        con: &mut MultiplexedConnection,
        lease: &Lease,
    ) -> redis::RedisResult<Outcome<bool>> {
        let account_key = self.keys.account(&lease.account);
        redis::cmd("WATCH")
            .arg(&account_key)
            .exec_async(&mut *con)
            .await?;
        let now = server_ms(con).await?;
        let score: Option<u64> = redis::cmd("ZSCORE")
            .arg(&account_key)
            .arg(&lease.id)
            .query_async(&mut *con)
            .await?;
        if score.is_none_or(|s| s <= now) {
            redis::cmd("UNWATCH").exec_async(&mut *con).await?;
            return Ok(Outcome::Done(false));
        }
        let exp = now + ttl_ms(lease.ttl);
        let done: Option<redis::Value> = redis::pipe()
            .atomic()
            .zadd(self.keys.global(), &lease.id, exp)
            .ignore()
            .zadd(&account_key, &lease.id, exp)
            .ignore()
            .query_async(&mut *con)
            .await?;
        Ok(match done {
            None => Outcome::Conflict,
            Some(_) => Outcome::Done(true),
        })
    }
}

async fn server_ms(con: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(con).await?;
    Ok(s * 1000 + us / 1000)
}

#[async_trait]
impl SlotLedger for WatchMultiLedger {
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError> {
        request.validate()?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}-{n}:{}", self.nonce, request.holder);
        let mut con = Some(self.checkout().await?);
        for _ in 0..=self.max_conflicts {
            let c = con.as_mut().expect("kept until settled");
            let result = self.acquire_once(c, request, &id).await;
            if let Some(done) = self.settle("acquire", &mut con, result) {
                return done;
            }
        }
        self.gave_up("acquire", con)
    }

    async fn acquire(
        &self,
        request: &SlotRequest,
        max_wait: Duration,
    ) -> Result<Lease, CapacityError> {
        // The seed's phase 2: poll until a slot is free or the time is up.
        let start = Instant::now();
        loop {
            if let Grant::Leased(lease) = self.try_acquire(request).await? {
                return Ok(lease);
            }
            let waited = start.elapsed();
            if waited >= max_wait {
                return Err(CapacityError::Timeout {
                    waited,
                    accounts: request
                        .candidates
                        .iter()
                        .map(|c| c.account.clone())
                        .collect(),
                });
            }
            tokio::time::sleep(self.poll_interval.min(max_wait - waited)).await;
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError> {
        let mut con = self.checkout().await?;
        let (removed, _): (i64, i64) = redis::pipe()
            .atomic()
            .zrem(self.keys.account(&lease.account), &lease.id)
            .zrem(self.keys.global(), &lease.id)
            .query_async(&mut con)
            .await
            .map_err(|e| unavailable("release", e))?;
        if removed == 1 {
            // Same channel as the Lua ledger, so mixed deployments still wake each other.
            let _: i64 = redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(&lease.account)
                .query_async(&mut con)
                .await
                .map_err(|e| unavailable("release", e))?;
        }
        self.checkin(con);
        Ok(removed == 1)
    }

    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError> {
        let mut con = Some(self.checkout().await?);
        for _ in 0..=self.max_conflicts {
            let c = con.as_mut().expect("kept until settled");
            let result = self.renew_once(c, lease).await;
            match self.settle("renew", &mut con, result) {
                Some(Ok(true)) => return Ok(()),
                Some(Ok(false)) => {
                    return Err(CapacityError::LeaseLost {
                        account: lease.account.clone(),
                        lease: lease.id.clone(),
                    })
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        self.gave_up("renew", con)
    }

    async fn usage(&self, account: &str) -> Result<Usage, CapacityError> {
        let mut con = self.checkout().await?;
        let now = server_ms(&mut con)
            .await
            .map_err(|e| unavailable("usage", e))?;
        let (global, account): (usize, usize) = redis::pipe()
            .zcount(self.keys.global(), format!("({now}"), "+inf")
            .zcount(self.keys.account(account), format!("({now}"), "+inf")
            .query_async(&mut con)
            .await
            .map_err(|e| unavailable("usage", e))?;
        self.checkin(con);
        Ok(Usage { global, account })
    }

    fn global_limit(&self) -> Option<u32> {
        self.global_limit.filter(|&g| g > 0)
    }
}
