//! Where workers get the next stream to check: a local counter, or a Redis list shared by
//! every checker process of a run, so that each stream is checked by exactly one of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use streamguard_redis::redis;
use streamguard_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Queue keys live this long, so an abandoned run cleans itself up.
const RUN_TTL_SECS: u64 = 24 * 3600;

/// Fills the queue with `0..n` once per run: the first process to arrive does it atomically,
/// later ones find it done. Pushes in batches (Lua's `unpack` has a stack limit).
/// KEYS: init flag, queue. ARGV: n, ttl seconds. Returns 1 if this call filled the queue.
const INIT: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local n = tonumber(ARGV[1])
local batch = {}
for i = 0, n - 1 do
  batch[#batch + 1] = i
  if #batch == 1000 then redis.call('RPUSH', KEYS[2], unpack(batch)); batch = {} end
end
if #batch > 0 then redis.call('RPUSH', KEYS[2], unpack(batch)) end
if n > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"#;

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
    Redis {
        /// Connection (reconnects by itself; every call is bounded).
        conn: ConnectionManager,
        /// The list key.
        queue: String,
        /// Bound on one round trip.
        op_timeout: Duration,
    },
}

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
    /// and whether this process created the run.
    pub async fn redis(url: &str, run_id: &str, len: usize) -> Result<(Self, bool), String> {
        let op_timeout = Duration::from_secs(2);
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(2);
        let mut conn = tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "redis work queue: connect timed out".to_string())?
        .map_err(|e| format!("redis work queue: {e}"))?;
        let base = format!("{{streamguard}}:run:{run_id}");
        let queue = format!("{base}:queue");
        let created: i64 = redis::Script::new(INIT)
            .key(format!("{base}:init"))
            .key(&queue)
            .arg(len)
            .arg(RUN_TTL_SECS)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis work queue: {e}"))?;
        Ok((
            WorkSource::Redis {
                conn,
                queue,
                op_timeout,
            },
            created == 1,
        ))
    }

    /// The next stream index; `None` when the work is done.
    pub async fn next(&self) -> Result<Option<usize>, String> {
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
            WorkSource::Redis {
                conn,
                queue,
                op_timeout,
            } => {
                let mut conn = conn.clone();
                let cmd = redis::cmd("LPOP").arg(queue).to_owned();
                let pop = cmd.query_async::<Option<usize>>(&mut conn);
                tokio::time::timeout(*op_timeout, pop)
                    .await
                    .map_err(|_| "redis work queue: no answer".to_string())?
                    .map_err(|e| format!("redis work queue: {e}"))
            }
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
            WorkSource::Redis {
                conn,
                queue,
                op_timeout,
            } => {
                let mut conn = conn.clone();
                let cmd = redis::cmd("LPUSH").arg(queue).arg(index).to_owned();
                let push = cmd.exec_async(&mut conn);
                tokio::time::timeout(*op_timeout, push)
                    .await
                    .map_err(|_| "redis work queue: no answer".to_string())?
                    .map_err(|e| format!("redis work queue: {e}"))
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
            WorkSource::Redis {
                conn,
                queue,
                op_timeout,
            } => {
                let mut conn = conn.clone();
                let cmd = redis::cmd("LLEN").arg(queue).to_owned();
                let len = cmd.query_async::<usize>(&mut conn);
                tokio::time::timeout(*op_timeout, len).await.ok()?.ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_source_hands_out_each_index_once_and_takes_returns() {
        let s = WorkSource::local(3);
        assert_eq!(s.next().await.unwrap(), Some(0));
        assert_eq!(s.next().await.unwrap(), Some(1));
        s.give_back(1).await.unwrap();
        assert_eq!(s.remaining().await, Some(2));
        assert_eq!(s.next().await.unwrap(), Some(1));
        assert_eq!(s.next().await.unwrap(), Some(2));
        assert_eq!(s.next().await.unwrap(), None);
        assert_eq!(s.next().await.unwrap(), None);
        assert_eq!(s.remaining().await, Some(0));
    }
}
