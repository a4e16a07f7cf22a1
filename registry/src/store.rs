//! SQLite persistence: schema migrations, and one transaction per write so a
//! change is stored whole or not at all. Calls run on tokio's blocking pool
//! ([`Store::call`]) so the async workers never wait on disk I/O.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, Transaction};
use serde_json::{Map, Value};

// Re-exported so `store::StoreError` keeps naming the error the store functions return.
pub use crate::error::StoreError;
use crate::model::{Metrics, ProviderRecord};
use crate::sessions::{Key, RowChange, Tracked};
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

/// Shared handle to the database; cloning is cheap.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database; blocking.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
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

fn update_record(tx: &Transaction<'_>, r: &ProviderRecord) -> Result<(), StoreError> {
    let m = &r.metrics;
    let changed = tx.execute(
        "UPDATE providers SET is_active = ?2, priority = ?3, config = ?4, max_streams = ?5,
             monthly_cost = ?6, updated_at_ms = ?7, total_checks = ?8, failed_checks = ?9,
             consecutive_failures = ?10, last_check_ms = ?11, last_ok = ?12, last_error = ?13,
             last_latency_ms = ?14, avg_latency_ms = ?15, active_streams = ?16,
             total_streams = ?17
         WHERE name = ?1",
        params![
            r.name,
            r.is_active,
            r.priority,
            serde_json::to_string(&r.config)?,
            r.max_streams,
            r.monthly_cost,
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
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound(r.name.clone()));
    }
    Ok(())
}

/// Inserts a new provider; [`StoreError::Duplicate`] if the name is taken.
pub fn insert_provider(conn: &mut Connection, record: &ProviderRecord) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_record(&tx, record)?;
    tx.commit()?;
    Ok(())
}

/// Stores every column of existing providers in one transaction.
pub fn update_providers(
    conn: &mut Connection,
    records: &[ProviderRecord],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for record in records {
        update_record(&tx, record)?;
    }
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
    update_record(&tx, record)?;
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

/// Stores stream counters, the tracked-session rows that changed with them and, for a
/// failover, one history row pruned to `failover_limit`.
pub fn record_session(
    conn: &mut Connection,
    records: &[ProviderRecord],
    rows: &[RowChange],
    failover: Option<&FailoverEntry>,
    failover_limit: usize,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for record in records {
        update_record(&tx, record)?;
    }
    for row in rows {
        match row {
            RowChange::Upsert((client, stream), t) => tx.execute(
                "INSERT OR REPLACE INTO sessions (client_id, stream_id, provider, seen_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![client, stream, t.provider, t.seen_ms],
            )?,
            RowChange::Remove((client, stream)) => tx.execute(
                "DELETE FROM sessions WHERE client_id = ?1 AND stream_id = ?2",
                params![client, stream],
            )?,
        };
    }
    if let Some(f) = failover {
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
    Ok(())
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
        r.metrics.active_streams = 3;
        update_providers(&mut conn, std::slice::from_ref(&r)).unwrap();
        let loaded = load_providers(&conn, 10).unwrap();
        assert_eq!(loaded, vec![r]);
    }

    #[test]
    fn failed_transaction_leaves_nothing_behind() {
        let mut conn = memory();
        let a = record("a");
        insert_provider(&mut conn, &a).unwrap();
        let mut changed = a.clone();
        changed.priority = 9;
        // The second record does not exist, so the whole update must roll back.
        let err = update_providers(&mut conn, &[changed, record("missing")]).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(load_providers(&conn, 10).unwrap()[0].priority, 1);
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
