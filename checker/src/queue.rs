//! Where workers get the next stream to check: a local counter, or a Redis list shared by
//! every checker process of a run, so that each stream is checked by exactly one of them.
//!
//! In Redis, a run is: an init key holding the run's *generation* (a random token), the list
//! of indexes not yet handed out, the set of indexes taken (handed out or finished), a table of
//! pop tokens (so a pop retried after a lost reply gets the same index, and no index is lost),
//! and, after a rebuild, a window during which nothing is handed out. If Redis loses the run
//! (restart, failover), the first process to notice creates a new generation with every index
//! queued again and starts the window; during it every live process adds the indexes it took
//! (finished or in flight) to the taken set, and pops skip taken indexes.
//!
//! Every process also adds the streams it finished to the run's done set and, while its
//! workers run, keeps a liveness entry in the run's working set. A process whose share is done
//! stays (and keeps registering its streams after a rebuild) until every stream of the run is
//! done, or no process is working any more.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use streamguard_redis::redis;
use streamguard_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Queue keys live this long, so an abandoned run cleans itself up.
const RUN_TTL_SECS: u64 = 24 * 3600;

/// Creates the run's state if it is missing (first process of a run, or Redis lost it).
/// Pushes in batches (Lua's `unpack` has a stack limit). Indexes already in the list stay
/// (pops skip taken ones).
/// KEYS: init, queue, rebuild flag. ARGV: n, ttl seconds, new generation, window ms (0 = none).
/// Returns {generation, 1 if this call created it}.
static SYNC: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local g = redis.call('GET', KEYS[1])
if g then return {g, 0} end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
local n = tonumber(ARGV[1])
local batch = {}
for i = 0, n - 1 do
  batch[#batch + 1] = i
  if #batch == 1000 then redis.call('RPUSH', KEYS[2], unpack(batch)); batch = {} end
end
if #batch > 0 then redis.call('RPUSH', KEYS[2], unpack(batch)) end
if n > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[4]) end
return {ARGV[3], 1}
"#,
    )
});

/// KEYS: init, queue, taken set, pop tokens, rebuild flag. ARGV: pop token, generation the
/// caller registered with, ttl seconds. Returns {index} or {-1, ms left of the rebuild window},
/// {-2} (the run's generation is not the caller's: sync first), {-3} (nothing left).
static POP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {-2} end
local c = redis.call('HGET', KEYS[4], ARGV[1])
if c then return {tonumber(c)} end
local left = redis.call('PTTL', KEYS[5])
if left > 0 then return {-1, left} end
while true do
  local i = redis.call('LPOP', KEYS[2])
  if not i then return {-3} end
  if redis.call('SADD', KEYS[3], i) == 1 then
    redis.call('HSET', KEYS[4], ARGV[1], i)
    redis.call('EXPIRE', KEYS[3], ARGV[3])
    redis.call('EXPIRE', KEYS[4], ARGV[3])
    return {tonumber(i)}
  end
end
"#,
    )
});

/// KEYS: done set, working set, rebuild flag. ARGV: this process's member name, liveness ms
/// (0 = not working any more), ttl seconds, then indexes this process finished.
/// Returns {streams done, processes working, ms left of the rebuild window}.
static BEAT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = tonumber(ARGV[2])
if live > 0 then
  redis.call('ZADD', KEYS[2], now + live, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if #ARGV > 3 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 4))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {redis.call('SCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  redis.call('PTTL', KEYS[3])}
"#,
    )
});

/// A process's working entry lives this long without a refresh (the keeper refreshes it
/// every 250 ms).
const WORKING_LIVENESS_MS: u64 = 3000;

/// At most this many indexes per done-set update (Lua's `unpack` has a stack limit).
const DONE_BATCH: usize = 1000;

/// KEYS: taken set, queue. ARGV: index. Hands a taken index back, at the front.
static GIVE_BACK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"#,
    )
});

/// The work of one process.
pub enum WorkSource {
    /// Every stream of the playlist, in order.
    Local {
        /// Next index to hand out.
        next: AtomicUsize,
        /// Playlist length.
        len: usize,
        /// Indexes handed back by interrupted workers.
        returned: Mutex<Vec<usize>>,
    },
    /// The run's shared Redis list.
    Redis(Box<RedisQueue>),
}

/// A run's work queue in Redis (see the module docs).
pub struct RedisQueue {
    /// Connection (reconnects by itself, with backoff; every call is bounded).
    conn: ConnectionManager,
    init: String,
    queue: String,
    taken: String,
    tokens: String,
    rebuild: String,
    done: String,
    working: String,
    /// This process's name in the working set.
    member: String,
    len: usize,
    op_timeout: Duration,
    /// Rebuild window started by this process if it finds the run gone.
    window: Duration,
    nonce: u64,
    counter: AtomicU64,
    /// The generation this process's indexes are registered with.
    generation: Mutex<Option<String>>,
    /// Every index this process took and did not give back (in flight or finished).
    mine: Mutex<BTreeSet<usize>>,
    /// Last pop found the run in its rebuild window (for the progress line).
    rebuilding: AtomicBool,
    /// The streams this process finished, and those not yet added to the done set.
    finished: Mutex<Finished>,
    /// This process's workers still run.
    at_work: AtomicBool,
    /// The run as the last beat saw it.
    state: Mutex<Option<RunState>>,
}

/// The streams a process finished, and those not yet added to the run's done set.
#[derive(Default)]
struct Finished {
    all: BTreeSet<usize>,
    unsent: Vec<usize>,
    /// Bumped whenever `unsent` is refilled (the run was rebuilt), so a beat that was under
    /// way does not take off what it did not send.
    refills: u64,
}

/// A run's progress across its processes, as last seen in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunState {
    /// Streams finished by any process.
    pub done: usize,
    /// Processes whose workers still run.
    pub working: usize,
    /// The run is being rebuilt after Redis lost it.
    pub rebuilding: bool,
}

/// A pop's identity: reused when the pop is retried, so a lost reply loses no index.
#[derive(Debug, Clone, Default)]
pub struct PopToken(String);

impl WorkSource {
    /// All of `len` streams for this process alone.
    pub fn local(len: usize) -> Self {
        WorkSource::Local {
            next: AtomicUsize::new(0),
            len,
            returned: Mutex::new(Vec::new()),
        }
    }

    /// Joins (or starts) run `run_id` of `len` streams on Redis at `url`. Returns the source
    /// and whether this process created the run. `window` is the rebuild window this process
    /// starts if it later finds the run's state gone from Redis.
    pub async fn redis(
        url: &str,
        run_id: &str,
        len: usize,
        window: Duration,
    ) -> Result<(Self, bool), String> {
        let op_timeout = Duration::from_secs(1);
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "redis work queue: connect: no answer".to_string())?
        .map_err(|e| format!("redis work queue: {e}"))?;
        let base = format!("{{streamguard}}:run:{run_id}");
        let q = RedisQueue {
            conn,
            init: format!("{base}:init"),
            queue: format!("{base}:queue"),
            taken: format!("{base}:taken"),
            tokens: format!("{base}:tokens"),
            rebuild: format!("{base}:rebuild"),
            done: format!("{base}:done"),
            working: format!("{base}:working"),
            member: format!("{:016x}-{}", rand_nonce(), std::process::id()),
            len,
            op_timeout,
            window,
            nonce: rand_nonce(),
            counter: AtomicU64::new(0),
            generation: Mutex::new(None),
            mine: Mutex::new(BTreeSet::new()),
            rebuilding: AtomicBool::new(false),
            finished: Mutex::default(),
            at_work: AtomicBool::new(true),
            state: Mutex::new(None),
        };
        let created = q.sync_with(Duration::ZERO).await?;
        Ok((WorkSource::Redis(Box::new(q)), created))
    }

    /// A fresh pop token.
    pub fn token(&self) -> PopToken {
        match self {
            WorkSource::Local { .. } => PopToken::default(),
            WorkSource::Redis(q) => {
                let n = q.counter.fetch_add(1, Ordering::Relaxed);
                PopToken(format!("{:016x}-{n}", q.nonce))
            }
        }
    }

    /// The next stream index; `None` when the work is done. `Err` when Redis could not be
    /// asked: retry with the same `token` (the index a lost reply took comes back). Waits
    /// while the run is being rebuilt after Redis lost it.
    pub async fn next(&self, token: &PopToken) -> Result<Option<usize>, String> {
        match self {
            WorkSource::Local {
                next,
                len,
                returned,
            } => {
                if let Some(i) = returned.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                    return Ok(Some(i));
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                Ok((i < *len).then_some(i))
            }
            WorkSource::Redis(q) => q.next(token).await,
        }
    }

    /// Puts back a stream that was taken but not checked (Ctrl-C), at the front, so another
    /// process of the run checks it.
    pub async fn give_back(&self, index: usize) -> Result<(), String> {
        match self {
            WorkSource::Local { returned, .. } => {
                returned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(index);
                Ok(())
            }
            WorkSource::Redis(q) => {
                let mut conn = q.conn.clone();
                let mut inv = GIVE_BACK.prepare_invoke();
                inv.key(&q.taken).key(&q.queue).arg(index);
                q.bounded(inv.invoke_async::<i64>(&mut conn)).await?;
                q.mine
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&index);
                Ok(())
            }
        }
    }

    /// Streams not yet handed out (to any process), for the progress line.
    pub async fn remaining(&self) -> Option<usize> {
        match self {
            WorkSource::Local {
                next,
                len,
                returned,
            } => {
                let back = returned.lock().unwrap_or_else(|e| e.into_inner()).len();
                Some(len.saturating_sub(next.load(Ordering::Relaxed)) + back)
            }
            WorkSource::Redis(q) => {
                let mut conn = q.conn.clone();
                let cmd = redis::cmd("SCARD").arg(&q.taken).to_owned();
                let taken = q.bounded(cmd.query_async::<usize>(&mut conn)).await.ok()?;
                Some(q.len.saturating_sub(taken))
            }
        }
    }

    /// The shared queue, if any.
    pub fn redis_queue(&self) -> Option<&RedisQueue> {
        match self {
            WorkSource::Local { .. } => None,
            WorkSource::Redis(q) => Some(q),
        }
    }
}

impl RedisQueue {
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        tokio::time::timeout(self.op_timeout, call)
            .await
            .map_err(|_| format!("redis work queue: no answer within {:?}", self.op_timeout))?
            .map_err(|e| format!("redis work queue: {e}"))
    }

    /// Checks that the run's state is still in Redis, rebuilding it (and starting the rebuild
    /// window) if it is gone, and registers this process's indexes with a generation it has
    /// not registered with yet. Call it regularly: this is how a process notices a Redis that
    /// came back empty even while none of its workers asks for work.
    pub async fn sync(&self) -> Result<(), String> {
        self.sync_with(self.window).await?;
        self.beat().await
    }

    /// Stream `index` was checked by this process (its result is final).
    pub fn finished(&self, index: usize) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if f.all.insert(index) {
            f.unsent.push(index);
        }
    }

    /// This process's workers are done; it no longer counts as working.
    pub fn stop_working(&self) {
        self.at_work.store(false, Ordering::SeqCst);
    }

    /// The run as the last [`sync`](Self::sync) saw it.
    pub fn run_state(&self) -> Option<RunState> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Playlist length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the playlist is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Refreshes this process's working entry, adds what it finished to the done set, and
    /// reads the run's state.
    async fn beat(&self) -> Result<(), String> {
        let (batch, refills): (Vec<usize>, u64) = {
            let f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            let batch = f.unsent.iter().take(DONE_BATCH).copied().collect();
            (batch, f.refills)
        };
        let live = if self.at_work.load(Ordering::SeqCst) {
            WORKING_LIVENESS_MS
        } else {
            0
        };
        let mut conn = self.conn.clone();
        let mut inv = BEAT.prepare_invoke();
        inv.key(&self.done)
            .key(&self.working)
            .key(&self.rebuild)
            .arg(&self.member)
            .arg(live)
            .arg(RUN_TTL_SECS);
        for i in &batch {
            inv.arg(*i);
        }
        let (done, working, rebuild) = self
            .bounded(inv.invoke_async::<(usize, usize, i64)>(&mut conn))
            .await?;
        {
            let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            if f.refills == refills {
                let sent = batch.len().min(f.unsent.len());
                f.unsent.drain(..sent);
            }
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(RunState {
            done,
            working,
            rebuilding: rebuild > 0,
        });
        Ok(())
    }

    /// Returns whether this call created the run's state.
    async fn sync_with(&self, window: Duration) -> Result<bool, String> {
        let fresh = format!("{:016x}", rand_nonce());
        let mut conn = self.conn.clone();
        let mut inv = SYNC.prepare_invoke();
        inv.key(&self.init)
            .key(&self.queue)
            .key(&self.rebuild)
            .arg(self.len)
            .arg(RUN_TTL_SECS)
            .arg(&fresh)
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let (generation, created) = self
            .bounded(inv.invoke_async::<(String, i64)>(&mut conn))
            .await?;
        let known = self
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if known.as_deref() != Some(generation.as_str()) {
            let mine: Vec<usize> = self
                .mine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied()
                .collect();
            if !mine.is_empty() {
                let mut conn = self.conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .sadd(&self.taken, &mine)
                    .ignore()
                    .expire(&self.taken, RUN_TTL_SECS as i64)
                    .ignore();
                self.bounded(pipe.exec_async(&mut conn)).await?;
            }
            // What this process finished goes into the new done set too (at the next beats).
            {
                let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
                f.unsent = f.all.iter().copied().collect();
                f.refills += 1;
            }
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = Some(generation);
        }
        Ok(created == 1)
    }

    async fn next(&self, token: &PopToken) -> Result<Option<usize>, String> {
        loop {
            let generation = self
                .generation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            let mut conn = self.conn.clone();
            let mut inv = POP.prepare_invoke();
            inv.key(&self.init)
                .key(&self.queue)
                .key(&self.taken)
                .key(&self.tokens)
                .key(&self.rebuild)
                .arg(&token.0)
                .arg(&generation)
                .arg(RUN_TTL_SECS);
            let reply = self
                .bounded(inv.invoke_async::<Vec<i64>>(&mut conn))
                .await?;
            let code = reply.first().copied().unwrap_or(-3);
            self.rebuilding.store(code == -1, Ordering::Relaxed);
            match code {
                i if i >= 0 => {
                    let i = i as usize;
                    self.mine
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(i);
                    return Ok(Some(i));
                }
                -1 => {
                    let left = reply.get(1).copied().unwrap_or(0).max(1) as u64;
                    tokio::time::sleep(Duration::from_millis(left).min(Duration::from_millis(250)))
                        .await;
                }
                -2 => self.sync().await?,
                _ => return Ok(None),
            }
        }
    }

    /// The last pop found the run being rebuilt after Redis lost it.
    pub fn rebuilding(&self) -> bool {
        self.rebuilding.load(Ordering::Relaxed)
    }
}

fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_source_hands_out_each_index_once_and_takes_returns() {
        let s = WorkSource::local(3);
        let t = s.token();
        assert_eq!(s.next(&t).await.unwrap(), Some(0));
        assert_eq!(s.next(&t).await.unwrap(), Some(1));
        s.give_back(1).await.unwrap();
        assert_eq!(s.remaining().await, Some(2));
        assert_eq!(s.next(&t).await.unwrap(), Some(1));
        assert_eq!(s.next(&t).await.unwrap(), Some(2));
        assert_eq!(s.next(&t).await.unwrap(), None);
        assert_eq!(s.next(&t).await.unwrap(), None);
        assert_eq!(s.remaining().await, Some(0));
    }
}
