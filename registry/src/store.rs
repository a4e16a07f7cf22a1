//! Persistence: schema migrations, and one transaction per write so a change is stored whole
//! or not at all. Two backends behind one [`Store`], chosen by the database URL: SQLite (the
//! embedded default; calls run on tokio's blocking pool so the async workers never wait on
//! disk I/O) and PostgreSQL ([`postgres`], for several instances on one database, which also
//! carries their change notifications). Decisions that must hold across instances (session
//! counts, placement epochs and owners) are taken by the database inside the transaction.

pub mod postgres;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, Transaction};
use serde_json::{Map, Value};

// Re-exported so `store::StoreError` keeps naming the error the store functions return.
pub use crate::error::StoreError;
use crate::model::PlacementRecord;
use crate::model::{Metrics, ProviderRecord};
use crate::placement::store as placements;
use crate::placement::store::Release;
use crate::placement::Refusal;
use crate::sessions::{Delta, Key, RowChange, SessionBatch, Tracked};
use crate::wire::PlacementClaim;
use crate::wire::{CheckSample, FailoverEntry};

/// Path that selects a private in-memory database.
pub const MEMORY_PATH: &str = ":memory:";

/// Ordered migrations; entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE providers (
    name                 TEXT PRIMARY KEY NOT NULL,
    is_active            INTEGER NOT NULL,
    priority             INTEGER NOT NULL,
    config               TEXT NOT NULL,
    max_streams          INTEGER,
    monthly_cost         REAL NOT NULL DEFAULT 0,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    total_checks         INTEGER NOT NULL DEFAULT 0,
    failed_checks        INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_check_ms        INTEGER,
    last_ok              INTEGER,
    last_error           TEXT,
    last_latency_ms      REAL,
    avg_latency_ms       REAL,
    active_streams       INTEGER NOT NULL DEFAULT 0,
    total_streams        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE health_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    provider   TEXT NOT NULL REFERENCES providers(name) ON DELETE CASCADE,
    at_ms      INTEGER NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX health_history_by_provider ON health_history(provider, id);
CREATE TABLE failovers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    from_provider TEXT NOT NULL,
    to_provider   TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    reason        TEXT
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE sessions (
    client_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    provider  TEXT NOT NULL,
    seen_ms   INTEGER NOT NULL,
    PRIMARY KEY (client_id, stream_id)
);
"#,
    // Placements (see `crate::placement`): plain SQL that PostgreSQL accepts as it is.
    r#"
CREATE TABLE placements (
    stream_id     TEXT PRIMARY KEY NOT NULL,
    provider      TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    standby       TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    expires_at_ms BIGINT,
    ended_at_ms   BIGINT,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX placements_by_client ON placements(client_id);
CREATE INDEX placements_by_end ON placements(ended_at_ms);
"#,
];

/// Meta key set once the seed has been applied, so it is never applied twice.
const SEEDED_KEY: &str = "seeded";

/// Which database a [`Store`] opens, from the configured database string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (`sqlite:PATH`, or a plain path), or `:memory:`.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl Database {
    /// `postgres://...` and `postgresql://...` select PostgreSQL; `sqlite:PATH` and anything
    /// else a SQLite file.
    pub fn parse(db: &Path) -> Self {
        let text = db.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Database::Postgres(text.into_owned());
        }
        match text.strip_prefix("sqlite:") {
            Some(path) => Database::Sqlite(PathBuf::from(path.strip_prefix("//").unwrap_or(path))),
            None => Database::Sqlite(db.to_path_buf()),
        }
    }

    /// A description for logs, without the password of a PostgreSQL URL.
    pub fn redacted(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite:{}", path.display()),
            Database::Postgres(url) => postgres::redact(url),
        }
    }
}

/// New counter values of a provider after a session write.
pub type Counts = (String, u64, u64);

/// Shared handle to the database; cloning is cheap.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<postgres::Pg>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `db` ([`Database::parse`]).
    pub async fn open(db: &Path) -> Result<Self, StoreError> {
        match Database::parse(db) {
            Database::Sqlite(path) => {
                let conn = tokio::task::spawn_blocking(move || open_sqlite(&path))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                Ok(Self {
                    backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
                })
            }
            Database::Postgres(url) => Ok(Self {
                backend: Backend::Postgres(Arc::new(postgres::Pg::open(&url).await?)),
            }),
        }
    }

    /// The PostgreSQL backend, which carries change notifications between instances.
    pub(crate) fn postgres(&self) -> Option<&postgres::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    /// Runs `f` with the SQLite connection on the blocking pool.
    async fn sqlite<T, F>(conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Dispatches one store operation: `$sqlite` is a blocking closure over the connection,
/// `$pg` an async expression over the PostgreSQL backend.
macro_rules! dispatch {
    ($self:expr, |$c:ident| $sqlite:expr, |$pg:ident| $postgres:expr) => {
        match &$self.backend {
            Backend::Sqlite(conn) => Store::sqlite(conn, move |$c| $sqlite).await,
            Backend::Postgres($pg) => $postgres.await,
        }
    };
}

impl Store {
    /// Applies the seed if the database was never seeded, then reads every provider (with its
    /// `history_limit` most recent checks) and every placement.
    pub async fn seed_and_load(
        &self,
        seed: Vec<ProviderRecord>,
        history_limit: usize,
    ) -> Result<(usize, Vec<ProviderRecord>, Vec<PlacementRecord>), StoreError> {
        dispatch!(
            self,
            |c| {
                let inserted = seed_once(c, &seed)?;
                Ok((
                    inserted,
                    load_providers(c, history_limit)?,
                    placements::load(c)?,
                ))
            },
            |pg| pg.seed_and_load(&seed, history_limit)
        )
    }

    /// Every provider with its `history_limit` most recent checks.
    pub async fn providers(&self, history_limit: usize) -> Result<Vec<ProviderRecord>, StoreError> {
        dispatch!(self, |c| load_providers(c, history_limit), |pg| pg
            .load_providers(None, history_limit))
    }

    /// One provider with its `history_limit` most recent checks, if it exists.
    pub async fn provider(
        &self,
        name: &str,
        history_limit: usize,
    ) -> Result<Option<ProviderRecord>, StoreError> {
        let name = name.to_owned();
        dispatch!(
            self,
            |c| Ok(load_providers(c, history_limit)?
                .into_iter()
                .find(|r| r.name == name)),
            |pg| async move { Ok(pg.load_providers(Some(&name), history_limit).await?.pop()) }
        )
    }

    /// Inserts a new provider; [`StoreError::Duplicate`] if the name is taken.
    pub async fn insert_provider(&self, record: ProviderRecord) -> Result<(), StoreError> {
        dispatch!(self, |c| insert_provider(c, &record), |pg| pg
            .insert_provider(&record))
    }

    /// Stores what an administrator may change of an existing provider (not its counters).
    pub async fn update_settings(&self, record: ProviderRecord) -> Result<(), StoreError> {
        dispatch!(self, |c| update_settings(c, &record), |pg| pg
            .update_settings(&record))
    }

    /// Deletes a provider and its check history.
    pub async fn delete_provider(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        dispatch!(self, |c| delete_provider(c, &name), |pg| pg
            .delete_provider(&name))
    }

    /// Stores a check: the provider's check columns plus one history row, pruned to `limit`.
    pub async fn record_check(
        &self,
        record: ProviderRecord,
        sample: CheckSample,
        limit: usize,
    ) -> Result<(), StoreError> {
        dispatch!(self, |c| record_check(c, &record, &sample, limit), |pg| pg
            .record_check(&record, &sample, limit))
    }

    /// Applies session reports in one transaction (see [`SessionBatch::plan`]); returns the
    /// new counters of every provider whose counters changed and the sessions that ended.
    pub async fn record_sessions(
        &self,
        batch: SessionBatch,
        failover_limit: usize,
    ) -> Result<(Vec<Counts>, Vec<Key>), StoreError> {
        dispatch!(self, |c| record_sessions(c, &batch, failover_limit), |pg| {
            pg.record_sessions(&batch, failover_limit)
        })
    }

    /// The current stream counters of the providers named (those that exist).
    pub async fn counts(&self, names: Vec<String>) -> Result<Vec<Counts>, StoreError> {
        dispatch!(self, |c| counts(c, &names), |pg| pg.counts(&names))
    }

    /// Removes the sessions not confirmed since `cutoff_ms`; returns them and the new
    /// counters of their providers.
    pub async fn expire_sessions(
        &self,
        cutoff_ms: i64,
    ) -> Result<(Vec<Key>, Vec<Counts>), StoreError> {
        dispatch!(self, |c| expire_sessions(c, cutoff_ms), |pg| pg
            .expire_sessions(cutoff_ms))
    }

    /// Tracked sessions (client, stream) with their provider.
    pub async fn sessions(&self) -> Result<Vec<(Key, Tracked)>, StoreError> {
        dispatch!(self, |c| load_sessions(c), |pg| pg.load_sessions())
    }

    /// Failovers, newest first.
    pub async fn failovers(&self, limit: usize) -> Result<Vec<FailoverEntry>, StoreError> {
        dispatch!(self, |c| list_failovers(c, limit), |pg| pg
            .list_failovers(limit))
    }

    /// See [`placements::claim`].
    pub(crate) async fn claim(
        &self,
        stream_id: String,
        claim: PlacementClaim,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<Result<PlacementRecord, Refusal>, StoreError> {
        dispatch!(
            self,
            |c| placements::claim(c, &stream_id, &claim, now_ms, expires_at_ms),
            |pg| pg.claim(&stream_id, &claim, now_ms, expires_at_ms)
        )
    }

    /// See [`placements::release`].
    pub(crate) async fn release(
        &self,
        stream_id: String,
        client_id: String,
        now_ms: i64,
    ) -> Result<Release, StoreError> {
        dispatch!(
            self,
            |c| placements::release(c, &stream_id, &client_id, now_ms),
            |pg| pg.release(&stream_id, &client_id, now_ms)
        )
    }

    /// See [`placements::refresh`].
    pub(crate) async fn refresh(
        &self,
        client_id: String,
        stream_ids: Vec<String>,
        expires_at_ms: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(
            self,
            |c| placements::refresh(c, &client_id, &stream_ids, expires_at_ms),
            |pg| pg.refresh(&client_id, &stream_ids, expires_at_ms)
        )
    }

    /// See [`placements::expire`].
    pub(crate) async fn expire_placements(
        &self,
        now_ms: i64,
    ) -> Result<Vec<PlacementRecord>, StoreError> {
        dispatch!(self, |c| placements::expire(c, now_ms), |pg| pg
            .expire_placements(now_ms))
    }

    /// See [`placements::collect_garbage`].
    pub(crate) async fn collect_garbage(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, |c| placements::collect_garbage(c, cutoff_ms), |pg| pg
            .collect_garbage(cutoff_ms))
    }

    /// One stored placement.
    pub(crate) async fn placement(
        &self,
        stream_id: &str,
    ) -> Result<Option<PlacementRecord>, StoreError> {
        let id = stream_id.to_owned();
        dispatch!(self, |c| placements::select(c, &id), |pg| pg.placement(&id))
    }

    /// Every stored placement.
    pub(crate) async fn placements(&self) -> Result<Vec<PlacementRecord>, StoreError> {
        dispatch!(self, |c| placements::load(c), |pg| pg.placements())
    }
}

/// Opens and migrates a SQLite database; blocking.
fn open_sqlite(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = if path.as_os_str() == MEMORY_PATH {
        Connection::open_in_memory()?
    } else {
        Connection::open(path)?
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL lets readers (like an operator's sqlite3 shell) work during writes;
    // NORMAL sync is durable across application crashes, which is what matters here.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// The newest schema version this build creates.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies every migration newer than the stored version; safe to run on every start.
pub fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version       INTEGER PRIMARY KEY NOT NULL,
             applied_at_ms INTEGER NOT NULL
         );",
    )?;
    let current = schema_version(conn)?;
    if current > latest_version() {
        return Err(StoreError::TooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (?1, ?2)",
            params![index as i64 + 1, crate::now_ms()],
        )?;
        tx.commit()?;
    }
    schema_version(conn)
}

/// The schema version stored in the database (0 for a new file).
pub fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

const PROVIDER_COLUMNS: &str = "name, is_active, priority, config, max_streams, monthly_cost, \
    created_at_ms, updated_at_ms, total_checks, failed_checks, consecutive_failures, \
    last_check_ms, last_ok, last_error, last_latency_ms, avg_latency_ms, active_streams, \
    total_streams";

fn row_to_record(row: &Row<'_>) -> rusqlite::Result<(ProviderRecord, String)> {
    let config_json: String = row.get(3)?;
    let record = ProviderRecord {
        name: row.get(0)?,
        is_active: row.get(1)?,
        priority: row.get(2)?,
        config: Map::new(),
        max_streams: row.get(4)?,
        monthly_cost: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        metrics: Metrics {
            total_checks: row.get(8)?,
            failed_checks: row.get(9)?,
            consecutive_failures: row.get(10)?,
            last_check_ms: row.get(11)?,
            last_ok: row.get(12)?,
            last_error: row.get(13)?,
            last_latency_ms: row.get(14)?,
            avg_latency_ms: row.get(15)?,
            active_streams: row.get(16)?,
            total_streams: row.get(17)?,
        },
        history: VecDeque::new(),
    };
    Ok((record, config_json))
}

/// Reads every provider with its most recent `history_limit` checks.
pub fn load_providers(
    conn: &Connection,
    history_limit: usize,
) -> Result<Vec<ProviderRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY name"
    ))?;
    let rows = stmt.query_map([], row_to_record)?;
    let mut history_stmt = conn.prepare(
        "SELECT at_ms, ok, latency_ms FROM health_history
         WHERE provider = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (mut record, config_json) = row?;
        record.config = match serde_json::from_str(&config_json)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let samples = history_stmt.query_map(params![record.name, history_limit as i64], |r| {
            Ok(CheckSample {
                at: r.get(0)?,
                ok: r.get(1)?,
                latency_ms: r.get(2)?,
            })
        })?;
        let mut history = samples.collect::<Result<VecDeque<_>, _>>()?;
        history.make_contiguous().reverse();
        record.history = history;
        out.push(record);
    }
    Ok(out)
}

fn insert_record(tx: &Transaction<'_>, r: &ProviderRecord) -> Result<(), StoreError> {
    let m = &r.metrics;
    let result = tx.execute(
        &format!(
            "INSERT INTO providers ({PROVIDER_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ),
        params![
            r.name,
            r.is_active,
            r.priority,
            serde_json::to_string(&r.config)?,
            r.max_streams,
            r.monthly_cost,
            r.created_at_ms,
            r.updated_at_ms,
            m.total_checks,
            m.failed_checks,
            m.consecutive_failures,
            m.last_check_ms,
            m.last_ok,
            m.last_error,
            m.last_latency_ms,
            m.avg_latency_ms,
            m.active_streams,
            m.total_streams,
        ],
    );
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(StoreError::Duplicate(r.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

fn changed_one(changed: usize, name: &str) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// What an administrator may change. Counters are never written from a cached record: with
/// several instances the cache may be behind, and they change only by deltas
/// ([`record_sessions`]) and checks ([`update_checks`]).
fn update_settings_in(tx: &Transaction<'_>, r: &ProviderRecord) -> Result<(), StoreError> {
    let changed = tx.execute(
        "UPDATE providers SET is_active = ?2, priority = ?3, config = ?4, max_streams = ?5,
             monthly_cost = ?6, updated_at_ms = ?7
         WHERE name = ?1",
        params![
            r.name,
            r.is_active,
            r.priority,
            serde_json::to_string(&r.config)?,
            r.max_streams,
            r.monthly_cost,
            r.updated_at_ms,
        ],
    )?;
    changed_one(changed, &r.name)
}

/// The check columns (the verdict of the latest check, last writer wins).
fn update_checks(tx: &Transaction<'_>, r: &ProviderRecord) -> Result<(), StoreError> {
    let m = &r.metrics;
    let changed = tx.execute(
        "UPDATE providers SET total_checks = ?2, failed_checks = ?3,
             consecutive_failures = ?4, last_check_ms = ?5, last_ok = ?6, last_error = ?7,
             last_latency_ms = ?8, avg_latency_ms = ?9
         WHERE name = ?1",
        params![
            r.name,
            m.total_checks,
            m.failed_checks,
            m.consecutive_failures,
            m.last_check_ms,
            m.last_ok,
            m.last_error,
            m.last_latency_ms,
            m.avg_latency_ms,
        ],
    )?;
    changed_one(changed, &r.name)
}

/// Inserts a new provider; [`StoreError::Duplicate`] if the name is taken.
pub fn insert_provider(conn: &mut Connection, record: &ProviderRecord) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_record(&tx, record)?;
    tx.commit()?;
    Ok(())
}

/// Stores what an administrator may change of existing providers, in one transaction.
pub fn update_settings(conn: &mut Connection, record: &ProviderRecord) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    update_settings_in(&tx, record)?;
    tx.commit()?;
    Ok(())
}

/// Deletes a provider and its check history.
pub fn delete_provider(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let deleted = tx.execute("DELETE FROM providers WHERE name = ?1", params![name])?;
    if deleted == 0 {
        return Err(StoreError::NotFound(name.to_owned()));
    }
    tx.commit()?;
    Ok(())
}

/// Stores a check: the provider's new counters plus one history row, pruned to `history_limit`.
pub fn record_check(
    conn: &mut Connection,
    record: &ProviderRecord,
    sample: &CheckSample,
    history_limit: usize,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    update_checks(&tx, record)?;
    tx.execute(
        "INSERT INTO health_history (provider, at_ms, ok, latency_ms) VALUES (?1, ?2, ?3, ?4)",
        params![record.name, sample.at, sample.ok, sample.latency_ms],
    )?;
    tx.execute(
        "DELETE FROM health_history WHERE provider = ?1 AND id NOT IN
             (SELECT id FROM health_history WHERE provider = ?1 ORDER BY id DESC LIMIT ?2)",
        params![record.name, history_limit as i64],
    )?;
    tx.commit()?;
    Ok(())
}

/// Applies session reports in one transaction: reads the reported keys' rows, plans the
/// batch on them ([`SessionBatch::plan`]), writes the rows, adds the counter deltas and, for a
/// failover, one history row pruned to `failover_limit`. Returns the changed counters.
pub fn record_sessions(
    conn: &mut Connection,
    batch: &SessionBatch,
    failover_limit: usize,
) -> Result<(Vec<Counts>, Vec<Key>), StoreError> {
    let tx = conn.transaction()?;
    let mut current = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT provider, seen_ms FROM sessions WHERE client_id = ?1 AND stream_id = ?2",
        )?;
        for key in batch.keys() {
            let row = stmt
                .query_row(params![key.0, key.1], |r| {
                    Ok(Tracked {
                        provider: r.get(0)?,
                        seen_ms: r.get(1)?,
                    })
                })
                .optional()?;
            if let Some(t) = row {
                current.push((key, t));
            }
        }
    }
    let (outcome, add_failover) = batch.plan(current);
    for row in &outcome.rows {
        match row {
            RowChange::Upsert((client, stream), t) => tx.execute(
                "INSERT INTO sessions (client_id, stream_id, provider, seen_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (client_id, stream_id) DO UPDATE SET
                     provider = excluded.provider, seen_ms = excluded.seen_ms",
                params![client, stream, t.provider, t.seen_ms],
            )?,
            RowChange::Remove((client, stream)) => tx.execute(
                "DELETE FROM sessions WHERE client_id = ?1 AND stream_id = ?2",
                params![client, stream],
            )?,
        };
    }
    let counts = add_deltas(&tx, &outcome.deltas)?;
    if let Some(f) = batch.failover.as_ref().filter(|_| add_failover) {
        tx.execute(
            "INSERT INTO failovers (at_ms, from_provider, to_provider, stream_id, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.at, f.from, f.to, f.stream_id, f.reason],
        )?;
        tx.execute(
            "DELETE FROM failovers WHERE id NOT IN
                 (SELECT id FROM failovers ORDER BY id DESC LIMIT ?1)",
            params![failover_limit as i64],
        )?;
    }
    tx.commit()?;
    Ok((counts, outcome.ended()))
}

/// Adds counter deltas (in name order; a provider deleted since has none), returning the new
/// counters. `activeStreams` never goes below zero.
fn add_deltas(
    tx: &Transaction<'_>,
    deltas: &BTreeMap<String, Delta>,
) -> Result<Vec<Counts>, StoreError> {
    let mut stmt = tx.prepare(
        "UPDATE providers SET active_streams = MAX(0, active_streams + ?2),
             total_streams = total_streams + ?3
         WHERE name = ?1 RETURNING active_streams, total_streams",
    )?;
    let mut counts = Vec::new();
    for (name, d) in deltas {
        let row = stmt
            .query_row(params![name, d.active, d.total], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
            })
            .optional()?;
        if let Some((active, total)) = row {
            counts.push((name.clone(), active, total));
        }
    }
    Ok(counts)
}

/// The current stream counters of the providers named (those that exist).
pub fn counts(conn: &Connection, names: &[String]) -> Result<Vec<Counts>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT active_streams, total_streams FROM providers WHERE name = ?1")?;
    let mut out = Vec::new();
    for name in names {
        let row = stmt
            .query_row(params![name], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
            })
            .optional()?;
        if let Some((active, total)) = row {
            out.push((name.clone(), active, total));
        }
    }
    Ok(out)
}

/// Removes the sessions not confirmed since `cutoff_ms` and counts them off their providers.
pub fn expire_sessions(
    conn: &mut Connection,
    cutoff_ms: i64,
) -> Result<(Vec<Key>, Vec<Counts>), StoreError> {
    let tx = conn.transaction()?;
    let rows: Vec<(Key, String)> = {
        let mut stmt = tx.prepare(
            "DELETE FROM sessions WHERE seen_ms < ?1 RETURNING client_id, stream_id, provider",
        )?;
        let rows = stmt.query_map(params![cutoff_ms], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get(2)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let deltas = crate::sessions::expired_deltas(rows.iter().map(|(_, p)| p.as_str()));
    let counts = add_deltas(&tx, &deltas)?;
    tx.commit()?;
    Ok((rows.into_iter().map(|(k, _)| k).collect(), counts))
}

/// Every tracked session.
pub fn load_sessions(conn: &Connection) -> Result<Vec<(Key, Tracked)>, StoreError> {
    let mut stmt = conn.prepare("SELECT client_id, stream_id, provider, seen_ms FROM sessions")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?),
            Tracked {
                provider: r.get(2)?,
                seen_ms: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Failovers, newest first.
pub fn list_failovers(conn: &Connection, limit: usize) -> Result<Vec<FailoverEntry>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT at_ms, from_provider, to_provider, stream_id, reason
         FROM failovers ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok(FailoverEntry {
            at: r.get(0)?,
            from: r.get(1)?,
            to: r.get(2)?,
            stream_id: r.get(3)?,
            reason: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts the seed providers if this database has never been seeded; names
/// that already exist are kept as they are. Returns how many were inserted.
pub fn seed_once(conn: &mut Connection, records: &[ProviderRecord]) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let seeded: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![SEEDED_KEY],
            |r| r.get(0),
        )
        .optional()?;
    if seeded.is_some() {
        return Ok(0);
    }
    let mut inserted = 0;
    for record in records {
        match insert_record(&tx, record) {
            Ok(()) => inserted += 1,
            Err(StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e),
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        params![SEEDED_KEY, crate::now_ms().to_string()],
    )?;
    tx.commit()?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NewProvider;

    fn record(name: &str) -> ProviderRecord {
        NewProvider {
            name: name.into(),
            is_active: true,
            priority: 1,
            config: Map::new(),
            max_streams: Some(5),
            monthly_cost: 9.5,
        }
        .into_record(42)
        .unwrap()
    }

    fn memory() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn migrations_are_idempotent() {
        let mut conn = memory();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, latest_version());
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = memory();
        conn.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (999, 0)",
            [],
        )
        .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn round_trip_and_duplicates() {
        let mut conn = memory();
        let mut r = record("agora");
        insert_provider(&mut conn, &r).unwrap();
        assert!(matches!(
            insert_provider(&mut conn, &r),
            Err(StoreError::Duplicate(_))
        ));
        r.priority = 3;
        update_settings(&mut conn, &r).unwrap();
        // Counters are not settings: they change by deltas only.
        let mut counted = r.clone();
        counted.metrics.active_streams = 3;
        update_settings(&mut conn, &counted).unwrap();
        let loaded = load_providers(&conn, 10).unwrap();
        assert_eq!(loaded, vec![r]);
    }

    #[test]
    fn failed_transaction_leaves_nothing_behind() {
        let mut conn = memory();
        let a = record("a");
        insert_provider(&mut conn, &a).unwrap();
        let mut batch = SessionBatch {
            now_ms: 5,
            ..SessionBatch::default()
        };
        batch.tracked.push((
            ("c".into(), "s".into()),
            crate::sessions::Reported::Start("a".into()),
        ));
        // The failover row names a provider that does not exist: the whole batch rolls back.
        batch.failover = Some(FailoverEntry {
            at: 5,
            from: "a".into(),
            to: "a".into(),
            stream_id: "s".into(),
            reason: None,
        });
        conn.execute_batch("CREATE TRIGGER no_failovers BEFORE INSERT ON failovers BEGIN SELECT RAISE(ABORT, 'refused'); END;")
            .unwrap();
        assert!(record_sessions(&mut conn, &batch, 10).is_err());
        assert_eq!(
            load_providers(&conn, 10).unwrap()[0].metrics.active_streams,
            0
        );
        assert!(load_sessions(&conn).unwrap().is_empty());
    }

    #[test]
    fn history_is_bounded_and_ordered() {
        let mut conn = memory();
        let r = record("a");
        insert_provider(&mut conn, &r).unwrap();
        for i in 0..10 {
            let s = CheckSample {
                at: i,
                ok: i % 2 == 0,
                latency_ms: i as f64,
            };
            record_check(&mut conn, &r, &s, 4).unwrap();
        }
        let loaded = &load_providers(&conn, 4).unwrap()[0];
        let ats: Vec<i64> = loaded.history.iter().map(|s| s.at).collect();
        assert_eq!(ats, vec![6, 7, 8, 9]);
    }

    #[test]
    fn seed_applies_once() {
        let mut conn = memory();
        assert_eq!(
            seed_once(&mut conn, &[record("a"), record("b")]).unwrap(),
            2
        );
        delete_provider(&mut conn, "a").unwrap();
        assert_eq!(seed_once(&mut conn, &[record("a")]).unwrap(), 0);
        assert_eq!(load_providers(&conn, 1).unwrap().len(), 1);
    }
}
