//! The PostgreSQL backend: the same tables and rules as SQLite, written for PostgreSQL, on a
//! small connection pool (deadpool over tokio-postgres). Every write that other instances must
//! see sends a notification (`pg_notify`, delivered at commit, in commit order) on the
//! [`CHANNEL`] channel; [`Pg::listen`] hands the ones of other instances to the registry, which
//! updates its in-memory copy and publishes the change to its own event-stream clients.
//!
//! Cross-instance rules: placement claims are one conditional upsert (as on SQLite); session
//! reports of one client are serialised by a transaction-scoped advisory lock on the client id
//! and read the rows they change `FOR UPDATE`, so a start reported to two instances at once is
//! counted once; counters change by deltas only, in provider-name order (no deadlocks).

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{Counts, StoreError};
use crate::model::{Metrics, PlacementRecord, ProviderRecord};
use crate::placement::store::Release;
use crate::placement::{refusal, Refusal};
use crate::sessions::{Delta, Key, RowChange, SessionBatch, Tracked};
use crate::wire::{CheckSample, FailoverEntry, PlacementClaim};

/// The notification channel the instances of one database share.
pub const CHANNEL: &str = "streamguard_changes";

/// Connections per instance: writes are serialised per instance and reads come from memory,
/// so a few are plenty.
const POOL_SIZE: usize = 8;

/// Key of the advisory lock taken while migrating and seeding, so instances starting together
/// do it once.
const MIGRATION_LOCK: i64 = 0x5354_4755_4152_4401;

/// Ordered migrations, the same versions as SQLite's (`super::MIGRATIONS`) in PostgreSQL's
/// dialect: `BIGINT`/`BOOLEAN`/`DOUBLE PRECISION` and identity columns. `sessions.seen_ms`
/// has no index on purpose: every keep-alive rewrites it, and an unindexed column keeps those
/// updates HOT (no index entry per keep-alive); the expiry sweep's scan is cheap beside that.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE providers (
    name                 TEXT PRIMARY KEY NOT NULL,
    is_active            BOOLEAN NOT NULL,
    priority             BIGINT NOT NULL,
    config               TEXT NOT NULL,
    max_streams          BIGINT,
    monthly_cost         DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    total_checks         BIGINT NOT NULL DEFAULT 0,
    failed_checks        BIGINT NOT NULL DEFAULT 0,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_check_ms        BIGINT,
    last_ok              BOOLEAN,
    last_error           TEXT,
    last_latency_ms      DOUBLE PRECISION,
    avg_latency_ms       DOUBLE PRECISION,
    active_streams       BIGINT NOT NULL DEFAULT 0,
    total_streams        BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE health_history (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider   TEXT NOT NULL REFERENCES providers(name) ON DELETE CASCADE,
    at_ms      BIGINT NOT NULL,
    ok         BOOLEAN NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX health_history_by_provider ON health_history(provider, id);
CREATE TABLE failovers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
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
    seen_ms   BIGINT NOT NULL,
    PRIMARY KEY (client_id, stream_id)
);
"#,
    // SQLite's third migration is plain SQL that PostgreSQL accepts as it is.
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

/// A change another instance made, as told by its notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A provider was created, edited, checked or deleted: read it again.
    Provider(String),
    /// A provider's stream counters changed: read them again.
    Counts(String),
    /// A stream's placement changed (or was dropped): read it again.
    Placement(String),
    /// Notifications may have been missed (the listening connection was (re)opened): read
    /// everything again.
    Resync,
}

impl Change {
    /// The notification payload of this change made by `instance`.
    fn payload(&self, instance: &str) -> String {
        match self {
            Change::Provider(name) => format!("{instance} p {name}"),
            Change::Counts(name) => format!("{instance} c {name}"),
            Change::Placement(id) => format!("{instance} s {id}"),
            Change::Resync => format!("{instance} r"),
        }
    }

    /// Parses a payload; `None` for this instance's own notifications and for garbage.
    fn parse(payload: &str, own: &str) -> Option<Change> {
        let (instance, rest) = payload.split_once(' ')?;
        if instance == own {
            return None;
        }
        let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "p" => Some(Change::Provider(arg.to_owned())),
            "s" => Some(Change::Placement(arg.to_owned())),
            "r" => Some(Change::Resync),
            "c" => Some(Change::Counts(arg.to_owned())),
            _ => None,
        }
    }
}

/// The URL with its password replaced, for logs.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host/db
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://<unparsable>".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

/// A connection pool on one PostgreSQL database, with this instance's notification name.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Names this instance in its notifications, so it skips its own.
    instance: std::sync::Arc<str>,
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Pg {
    /// Connects, migrates (once across instances starting together) and returns the pool.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Pool(format!("bad PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pool_error)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let pg = Self {
            pool,
            config,
            instance: format!("{:x}-{:x}", std::process::id(), nanos).into(),
        };
        pg.migrate().await?;
        Ok(pg)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Applies every migration newer than the stored version, under an advisory lock.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version       BIGINT PRIMARY KEY NOT NULL,
                 applied_at_ms BIGINT NOT NULL
             );",
        )
        .await?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        let latest = MIGRATIONS.len() as i64;
        if current > latest {
            return Err(StoreError::TooNew {
                found: current,
                supported: latest,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, $2)",
                &[&(index as i64 + 1), &crate::now_ms()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(latest.max(current))
    }

    async fn notify(&self, tx: &Transaction<'_>, change: Change) -> Result<(), StoreError> {
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &change.payload(&self.instance)],
        )
        .await?;
        Ok(())
    }

    /// See [`super::Store::seed_and_load`].
    pub async fn seed_and_load(
        &self,
        seed: &[ProviderRecord],
        history_limit: usize,
    ) -> Result<(usize, Vec<ProviderRecord>, Vec<PlacementRecord>), StoreError> {
        let mut inserted = 0;
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let seeded = tx
                .query_opt(
                    "SELECT value FROM meta WHERE key = $1",
                    &[&super::SEEDED_KEY],
                )
                .await?;
            if seeded.is_none() {
                for record in seed {
                    let exists = tx
                        .query_opt("SELECT 1 FROM providers WHERE name = $1", &[&record.name])
                        .await?;
                    if exists.is_none() {
                        insert_record(&tx, record).await?;
                        inserted += 1;
                    }
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)",
                    &[&super::SEEDED_KEY, &crate::now_ms().to_string()],
                )
                .await?;
                if inserted > 0 {
                    for record in seed {
                        self.notify(&tx, Change::Provider(record.name.clone()))
                            .await?;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok((
            inserted,
            self.load_providers(None, history_limit).await?,
            self.placements().await?,
        ))
    }

    /// Every provider (or the one named) with its `history_limit` most recent checks.
    pub async fn load_providers(
        &self,
        name: Option<&str>,
        history_limit: usize,
    ) -> Result<Vec<ProviderRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM providers WHERE $1::TEXT IS NULL OR name = $1 ORDER BY name",
                    super::PROVIDER_COLUMNS
                ),
                &[&name],
            )
            .await?;
        let history = client
            .prepare_cached(
                "SELECT at_ms, ok, latency_ms FROM health_history
                 WHERE provider = $1 ORDER BY id DESC LIMIT $2",
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut record = row_to_record(&row)?;
            let samples = client
                .query(&history, &[&record.name, &(history_limit as i64)])
                .await?;
            record.history = samples
                .iter()
                .rev()
                .map(|r| CheckSample {
                    at: r.get(0),
                    ok: r.get(1),
                    latency_ms: r.get(2),
                })
                .collect();
            out.push(record);
        }
        Ok(out)
    }

    /// See [`super::insert_provider`].
    pub async fn insert_provider(&self, record: &ProviderRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        insert_record(&tx, record).await?;
        self.notify(&tx, Change::Provider(record.name.clone()))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`super::update_settings`].
    pub async fn update_settings(&self, r: &ProviderRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE providers SET is_active = $2, priority = $3, config = $4,
                     max_streams = $5, monthly_cost = $6, updated_at_ms = $7
                 WHERE name = $1",
                &[
                    &r.name,
                    &r.is_active,
                    &i64::from(r.priority),
                    &serde_json::to_string(&r.config)?,
                    &r.max_streams.map(i64::from),
                    &r.monthly_cost,
                    &r.updated_at_ms,
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(r.name.clone()));
        }
        self.notify(&tx, Change::Provider(r.name.clone())).await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`super::delete_provider`].
    pub async fn delete_provider(&self, name: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute("DELETE FROM providers WHERE name = $1", &[&name])
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        self.notify(&tx, Change::Provider(name.to_owned())).await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`super::record_check`].
    pub async fn record_check(
        &self,
        r: &ProviderRecord,
        sample: &CheckSample,
        history_limit: usize,
    ) -> Result<(), StoreError> {
        let m = &r.metrics;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE providers SET total_checks = $2, failed_checks = $3,
                     consecutive_failures = $4, last_check_ms = $5, last_ok = $6,
                     last_error = $7, last_latency_ms = $8, avg_latency_ms = $9
                 WHERE name = $1",
                &[
                    &r.name,
                    &to_i64(m.total_checks),
                    &to_i64(m.failed_checks),
                    &to_i64(m.consecutive_failures),
                    &m.last_check_ms,
                    &m.last_ok,
                    &m.last_error,
                    &m.last_latency_ms,
                    &m.avg_latency_ms,
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(r.name.clone()));
        }
        tx.execute(
            "INSERT INTO health_history (provider, at_ms, ok, latency_ms) VALUES ($1, $2, $3, $4)",
            &[&r.name, &sample.at, &sample.ok, &sample.latency_ms],
        )
        .await?;
        tx.execute(
            "DELETE FROM health_history WHERE provider = $1 AND id NOT IN
                 (SELECT id FROM health_history WHERE provider = $1 ORDER BY id DESC LIMIT $2)",
            &[&r.name, &(history_limit as i64)],
        )
        .await?;
        self.notify(&tx, Change::Provider(r.name.clone())).await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`super::record_sessions`].
    pub async fn record_sessions(
        &self,
        batch: &SessionBatch,
        failover_limit: usize,
    ) -> Result<(Vec<Counts>, Vec<Key>), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if batch.only_keep_alives() {
            // Keep-alives are the highest write rate and repair themselves: one lost in a
            // database crash (the last few hundred milliseconds of commits) is sent again
            // within one keep-alive interval. So they do not wait for the WAL flush (SQLite's
            // synchronous=NORMAL trades the same way); starts, ends and failovers do.
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
        }
        let keys = batch.keys();
        // One client's reports go one at a time across instances (even for rows that do
        // not exist yet, which FOR UPDATE cannot lock).
        let mut clients: Vec<&str> = keys.iter().map(|(c, _)| c.as_str()).collect();
        clients.dedup();
        for client_id in clients {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 17))",
                &[&client_id],
            )
            .await?;
        }
        let select = tx
            .prepare_cached(
                "SELECT provider, seen_ms FROM sessions
                 WHERE client_id = $1 AND stream_id = $2 FOR UPDATE",
            )
            .await?;
        let mut current = Vec::new();
        for key in keys {
            if let Some(row) = tx.query_opt(&select, &[&key.0, &key.1]).await? {
                current.push((
                    key,
                    Tracked {
                        provider: row.get(0),
                        seen_ms: row.get(1),
                    },
                ));
            }
        }
        let (outcome, add_failover) = batch.plan(current);
        let upsert = tx
            .prepare_cached(
                "INSERT INTO sessions (client_id, stream_id, provider, seen_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (client_id, stream_id) DO UPDATE SET
                     provider = excluded.provider, seen_ms = excluded.seen_ms",
            )
            .await?;
        for row in &outcome.rows {
            match row {
                RowChange::Upsert((client_id, stream), t) => {
                    tx.execute(&upsert, &[client_id, stream, &t.provider, &t.seen_ms])
                        .await?
                }
                RowChange::Remove((client_id, stream)) => {
                    tx.execute(
                        "DELETE FROM sessions WHERE client_id = $1 AND stream_id = $2",
                        &[client_id, stream],
                    )
                    .await?
                }
            };
        }
        let counts = self.add_deltas(&tx, &outcome.deltas).await?;
        if let Some(f) = batch.failover.as_ref().filter(|_| add_failover) {
            tx.execute(
                "INSERT INTO failovers (at_ms, from_provider, to_provider, stream_id, reason)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&f.at, &f.from, &f.to, &f.stream_id, &f.reason],
            )
            .await?;
            tx.execute(
                "DELETE FROM failovers WHERE id NOT IN
                     (SELECT id FROM failovers ORDER BY id DESC LIMIT $1)",
                &[&(failover_limit as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((counts, outcome.ended()))
    }

    /// Adds counter deltas in name order and tells the other instances the new values.
    async fn add_deltas(
        &self,
        tx: &Transaction<'_>,
        deltas: &std::collections::BTreeMap<String, Delta>,
    ) -> Result<Vec<Counts>, StoreError> {
        let update = tx
            .prepare_cached(
                "UPDATE providers SET active_streams = GREATEST(0, active_streams + $2),
                     total_streams = total_streams + $3
                 WHERE name = $1 RETURNING active_streams, total_streams",
            )
            .await?;
        let mut counts = Vec::new();
        for (name, d) in deltas {
            if let Some(row) = tx
                .query_opt(&update, &[name, &d.active, &to_i64(d.total)])
                .await?
            {
                let c = (name.clone(), to_u64(row.get(0)), to_u64(row.get(1)));
                self.notify(tx, Change::Counts(name.clone())).await?;
                counts.push(c);
            }
        }
        Ok(counts)
    }

    /// See [`super::expire_sessions`].
    pub async fn expire_sessions(
        &self,
        cutoff_ms: i64,
    ) -> Result<(Vec<Key>, Vec<Counts>), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "DELETE FROM sessions WHERE seen_ms < $1 RETURNING client_id, stream_id, provider",
                &[&cutoff_ms],
            )
            .await?;
        let providers: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
        let deltas = crate::sessions::expired_deltas(providers.iter().map(String::as_str));
        let counts = self.add_deltas(&tx, &deltas).await?;
        tx.commit().await?;
        Ok((rows.iter().map(|r| (r.get(0), r.get(1))).collect(), counts))
    }

    /// The current counters of the providers named (those that exist).
    pub async fn counts(&self, names: &[String]) -> Result<Vec<Counts>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, active_streams, total_streams FROM providers
                 WHERE name = ANY($1) ORDER BY name",
                &[&names],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), to_u64(r.get(1)), to_u64(r.get(2))))
            .collect())
    }

    /// Every tracked session.
    pub async fn load_sessions(&self) -> Result<Vec<(Key, Tracked)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT client_id, stream_id, provider, seen_ms FROM sessions",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    (r.get(0), r.get(1)),
                    Tracked {
                        provider: r.get(2),
                        seen_ms: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Failovers, newest first.
    pub async fn list_failovers(&self, limit: usize) -> Result<Vec<FailoverEntry>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT at_ms, from_provider, to_provider, stream_id, reason
                 FROM failovers ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FailoverEntry {
                at: r.get(0),
                from: r.get(1),
                to: r.get(2),
                stream_id: r.get(3),
                reason: r.get(4),
            })
            .collect())
    }

    /// See [`crate::placement::store::claim`]: the same conditional upsert.
    pub async fn claim(
        &self,
        stream_id: &str,
        claim: &PlacementClaim,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<Result<PlacementRecord, Refusal>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let record = PlacementRecord {
            stream_id: stream_id.to_owned(),
            provider: claim.provider.clone(),
            epoch: claim.epoch,
            standby: claim.standby.clone(),
            client_id: claim.client_id.clone(),
            expires_at_ms,
            ended_at_ms: None,
            updated_at_ms: now_ms,
        };
        let changed = tx
            .execute(
                &format!(
                    "INSERT INTO placements ({PLACEMENT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
                     ON CONFLICT (stream_id) DO UPDATE SET
                         provider = excluded.provider, epoch = excluded.epoch,
                         standby = excluded.standby, client_id = excluded.client_id,
                         expires_at_ms = excluded.expires_at_ms, ended_at_ms = NULL,
                         updated_at_ms = excluded.updated_at_ms
                     WHERE placements.epoch < excluded.epoch
                       AND (placements.client_id = excluded.client_id
                            OR placements.ended_at_ms IS NOT NULL
                            OR placements.expires_at_ms <= excluded.updated_at_ms)"
                ),
                &[
                    &record.stream_id,
                    &record.provider,
                    &record.epoch,
                    &serde_json::to_string(&record.standby)?,
                    &record.client_id,
                    &record.expires_at_ms,
                    &record.updated_at_ms,
                ],
            )
            .await?;
        let outcome = if changed == 1 {
            self.notify(&tx, Change::Placement(stream_id.to_owned()))
                .await?;
            Ok(record)
        } else {
            let stored = select_placement(&tx, stream_id).await?.ok_or_else(|| {
                StoreError::Task("placement vanished inside its transaction".into())
            })?;
            Err(refusal(&stored, claim, now_ms)
                .ok_or_else(|| StoreError::Task("claim refused for no reason".into()))?)
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// See [`crate::placement::store::release`].
    pub async fn release(
        &self,
        stream_id: &str,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Release, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let ended = tx
            .execute(
                "UPDATE placements SET ended_at_ms = $3, updated_at_ms = $3
                 WHERE stream_id = $1 AND client_id = $2 AND ended_at_ms IS NULL",
                &[&stream_id, &client_id, &now_ms],
            )
            .await?;
        let stored = select_placement(&tx, stream_id).await?;
        if ended == 1 {
            self.notify(&tx, Change::Placement(stream_id.to_owned()))
                .await?;
        }
        tx.commit().await?;
        Ok(match stored {
            Some(record) if ended == 1 => Release::Ended(record),
            Some(record) if record.held_at(now_ms) && record.client_id != client_id => {
                Release::OwnedByOther
            }
            _ => Release::Unchanged,
        })
    }

    /// See [`crate::placement::store::refresh`]. Nothing public changes: no notification.
    pub async fn refresh(
        &self,
        client_id: &str,
        stream_ids: &[String],
        expires_at_ms: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE placements SET expires_at_ms = $3
                 WHERE stream_id = ANY($1) AND client_id = $2 AND ended_at_ms IS NULL
                 RETURNING stream_id",
                &[&stream_ids, &client_id, &expires_at_ms],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// See [`crate::placement::store::expire`].
    pub async fn expire_placements(&self, now_ms: i64) -> Result<Vec<PlacementRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE placements SET ended_at_ms = $1, updated_at_ms = $1
                     WHERE ended_at_ms IS NULL AND expires_at_ms <= $1
                     RETURNING {PLACEMENT_COLUMNS}"
                ),
                &[&now_ms],
            )
            .await?;
        let records = rows
            .iter()
            .map(row_to_placement)
            .collect::<Result<Vec<_>, _>>()?;
        for r in &records {
            self.notify(&tx, Change::Placement(r.stream_id.clone()))
                .await?;
        }
        tx.commit().await?;
        Ok(records)
    }

    /// See [`crate::placement::store::collect_garbage`].
    pub async fn collect_garbage(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "DELETE FROM placements WHERE ended_at_ms IS NOT NULL AND ended_at_ms <= $1
                 RETURNING stream_id",
                &[&cutoff_ms],
            )
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        for id in &ids {
            self.notify(&tx, Change::Placement(id.clone())).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// One stored placement.
    pub async fn placement(&self, stream_id: &str) -> Result<Option<PlacementRecord>, StoreError> {
        let client = self.client().await?;
        select_placement(&client, stream_id).await
    }

    /// Every stored placement.
    pub async fn placements(&self) -> Result<Vec<PlacementRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {PLACEMENT_COLUMNS} FROM placements"), &[])
            .await?;
        rows.iter().map(row_to_placement).collect()
    }

    /// Listens for the changes other instances make, on a connection of its own, until
    /// `stop` turns true. Every (re)connection first sends [`Change::Resync`] (notifications
    /// sent while not listening are lost); a lost connection is retried every `retry`.
    pub fn listen(
        &self,
        retry: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = self.config.clone();
        let own = std::sync::Arc::clone(&self.instance);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                first = false;
                let (client, mut connection) = match config.connect(NoTls).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the change-notification connection; retrying");
                        continue;
                    }
                };
                let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
                let forward = tx.clone();
                let own = std::sync::Arc::clone(&own);
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if let Some(change) = Change::parse(n.payload(), &own) {
                                    if forward.send(change).is_err() {
                                        break;
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "change-notification connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                    let _ = closed_tx.send(());
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    driver.abort();
                    continue;
                }
                tracing::info!("listening for other instances' changes");
                if tx.send(Change::Resync).is_err() {
                    driver.abort();
                    return;
                }
                tokio::select! {
                    _ = &mut closed_rx => {
                        tracing::warn!("change-notification connection lost; reconnecting");
                    }
                    _ = stop.wait_for(|s| *s) => {
                        driver.abort();
                        return;
                    }
                }
            }
        });
        rx
    }
}

const PLACEMENT_COLUMNS: &str =
    "stream_id, provider, epoch, standby, client_id, expires_at_ms, ended_at_ms, updated_at_ms";

async fn select_placement(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Option<PlacementRecord>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {PLACEMENT_COLUMNS} FROM placements WHERE stream_id = $1"),
            &[&stream_id],
        )
        .await?;
    row.as_ref().map(row_to_placement).transpose()
}

fn row_to_placement(row: &Row) -> Result<PlacementRecord, StoreError> {
    let standby: String = row.get(3);
    Ok(PlacementRecord {
        stream_id: row.get(0),
        provider: row.get(1),
        epoch: row.get(2),
        standby: serde_json::from_str(&standby)?,
        client_id: row.get(4),
        expires_at_ms: row.get(5),
        ended_at_ms: row.get(6),
        updated_at_ms: row.get(7),
    })
}

fn row_to_record(row: &Row) -> Result<ProviderRecord, StoreError> {
    let config: String = row.get(3);
    let priority: i64 = row.get(2);
    let max_streams: Option<i64> = row.get(4);
    Ok(ProviderRecord {
        name: row.get(0),
        is_active: row.get(1),
        priority: u32::try_from(priority).unwrap_or(u32::MAX),
        config: match serde_json::from_str(&config)? {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        max_streams: max_streams.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        monthly_cost: row.get(5),
        created_at_ms: row.get(6),
        updated_at_ms: row.get(7),
        metrics: Metrics {
            total_checks: to_u64(row.get(8)),
            failed_checks: to_u64(row.get(9)),
            consecutive_failures: to_u64(row.get(10)),
            last_check_ms: row.get(11),
            last_ok: row.get(12),
            last_error: row.get(13),
            last_latency_ms: row.get(14),
            avg_latency_ms: row.get(15),
            active_streams: to_u64(row.get(16)),
            total_streams: to_u64(row.get(17)),
        },
        history: Default::default(),
    })
}

async fn insert_record(tx: &Transaction<'_>, r: &ProviderRecord) -> Result<(), StoreError> {
    let m = &r.metrics;
    let result = tx
        .execute(
            &format!(
                "INSERT INTO providers ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     $11, $12, $13, $14, $15, $16, $17, $18)",
                super::PROVIDER_COLUMNS
            ),
            &[
                &r.name,
                &r.is_active,
                &i64::from(r.priority),
                &serde_json::to_string(&r.config)?,
                &r.max_streams.map(i64::from),
                &r.monthly_cost,
                &r.created_at_ms,
                &r.updated_at_ms,
                &to_i64(m.total_checks),
                &to_i64(m.failed_checks),
                &to_i64(m.consecutive_failures),
                &m.last_check_ms,
                &m.last_ok,
                &m.last_error,
                &m.last_latency_ms,
                &m.avg_latency_ms,
                &to_i64(m.active_streams),
                &to_i64(m.total_streams),
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Duplicate(r.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_own_ones_are_skipped() {
        for change in [
            Change::Provider("agora".into()),
            Change::Counts("zegocloud".into()),
            Change::Placement("match-1".into()),
            Change::Resync,
        ] {
            let payload = change.payload("a1");
            assert_eq!(Change::parse(&payload, "b2"), Some(change), "{payload}");
            assert_eq!(Change::parse(&payload, "a1"), None, "{payload}");
        }
        assert_eq!(Change::parse("x q a", "b"), None);
        assert_eq!(Change::parse("garbage", "b"), None);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://sg:secret@127.0.0.1:5432/db"),
            "postgres://sg@127.0.0.1:5432/db"
        );
        assert_eq!(redact("postgres://127.0.0.1/db"), "postgres://127.0.0.1/db");
    }
}
