//! The `placements` table. Every decision is taken by the database inside one transaction: a
//! claim is one conditional upsert (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`), so of two
//! concurrent claims at the same epoch exactly one changes the row. Plain SQL that PostgreSQL
//! also accepts (upsert with a `WHERE`, `RETURNING`).

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{refusal, Refusal};
use crate::error::StoreError;
use crate::model::PlacementRecord;
use crate::wire::PlacementClaim;

const COLUMNS: &str =
    "stream_id, provider, epoch, standby, client_id, expires_at_ms, ended_at_ms, updated_at_ms";

fn row_to_record(row: &Row<'_>) -> rusqlite::Result<(PlacementRecord, String)> {
    let record = PlacementRecord {
        stream_id: row.get(0)?,
        provider: row.get(1)?,
        epoch: row.get(2)?,
        standby: Vec::new(),
        client_id: row.get(4)?,
        expires_at_ms: row.get(5)?,
        ended_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
    };
    Ok((record, row.get(3)?))
}

fn decode(rows: Vec<(PlacementRecord, String)>) -> Result<Vec<PlacementRecord>, StoreError> {
    rows.into_iter()
        .map(|(mut record, standby)| {
            record.standby = serde_json::from_str(&standby)?;
            Ok(record)
        })
        .collect()
}

/// One stored placement, live or not.
pub fn select(conn: &Connection, stream_id: &str) -> Result<Option<PlacementRecord>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM placements WHERE stream_id = ?1"),
            params![stream_id],
            row_to_record,
        )
        .optional()?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Every stored placement, live or not.
pub fn load(conn: &Connection) -> Result<Vec<PlacementRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM placements"))?;
    let rows = stmt.query_map([], row_to_record)?;
    decode(rows.collect::<Result<_, _>>()?)
}

/// Records `claim` for `stream_id` at `now_ms` if its epoch is above the stored one and the
/// stream is not held by another client; otherwise says why not and changes nothing.
pub fn claim(
    conn: &mut Connection,
    stream_id: &str,
    claim: &PlacementClaim,
    now_ms: i64,
    expires_at_ms: Option<i64>,
) -> Result<Result<PlacementRecord, Refusal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
    // The WHERE is the rule of `super::refusal`, written for the database to decide.
    let changed = tx.execute(
        &format!(
            "INSERT INTO placements ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)
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
        params![
            record.stream_id,
            record.provider,
            record.epoch,
            serde_json::to_string(&record.standby)?,
            record.client_id,
            record.expires_at_ms,
            record.updated_at_ms,
        ],
    )?;
    let outcome = if changed == 1 {
        Ok(record)
    } else {
        let stored = select(&tx, stream_id)?
            .ok_or_else(|| StoreError::Task("placement vanished inside its transaction".into()))?;
        Err(refusal(&stored, claim, now_ms)
            .ok_or_else(|| StoreError::Task("claim refused for no reason".into()))?)
    };
    tx.commit()?;
    Ok(outcome)
}

/// What ending a stream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The owner's live claim ended; the tombstone as stored.
    Ended(PlacementRecord),
    /// Nothing to end: unknown stream, already ended, or another client's expired claim.
    Unchanged,
    /// Another client holds the stream.
    OwnedByOther,
}

/// Ends `client_id`'s claim on `stream_id` at `now_ms`, keeping its epoch.
pub fn release(
    conn: &mut Connection,
    stream_id: &str,
    client_id: &str,
    now_ms: i64,
) -> Result<Release, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ended = tx.execute(
        "UPDATE placements SET ended_at_ms = ?3, updated_at_ms = ?3
         WHERE stream_id = ?1 AND client_id = ?2 AND ended_at_ms IS NULL",
        params![stream_id, client_id, now_ms],
    )?;
    let stored = select(&tx, stream_id)?;
    tx.commit()?;
    Ok(match stored {
        Some(record) if ended == 1 => Release::Ended(record),
        Some(record) if record.held_at(now_ms) && record.client_id != client_id => {
            Release::OwnedByOther
        }
        _ => Release::Unchanged,
    })
}

/// Moves the expiry of `client_id`'s live claims on `stream_ids` to `expires_at_ms`. Returns
/// the stream ids refreshed.
pub fn refresh(
    conn: &mut Connection,
    client_id: &str,
    stream_ids: &[String],
    expires_at_ms: Option<i64>,
) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction()?;
    let mut refreshed = Vec::new();
    {
        let mut stmt = tx.prepare(
            "UPDATE placements SET expires_at_ms = ?3
             WHERE stream_id = ?1 AND client_id = ?2 AND ended_at_ms IS NULL",
        )?;
        for id in stream_ids {
            if stmt.execute(params![id, client_id, expires_at_ms])? == 1 {
                refreshed.push(id.clone());
            }
        }
    }
    tx.commit()?;
    Ok(refreshed)
}

/// Marks every live claim whose expiry is at or before `now_ms` as ended; returns them.
pub fn expire(conn: &mut Connection, now_ms: i64) -> Result<Vec<PlacementRecord>, StoreError> {
    let tx = conn.transaction()?;
    let rows = {
        let mut stmt = tx.prepare(&format!(
            "UPDATE placements SET ended_at_ms = ?1, updated_at_ms = ?1
             WHERE ended_at_ms IS NULL AND expires_at_ms <= ?1
             RETURNING {COLUMNS}"
        ))?;
        let rows = stmt.query_map(params![now_ms], row_to_record)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    decode(rows)
}

/// Drops the tombstones of placements that ended at or before `cutoff_ms`; returns their ids.
pub fn collect_garbage(conn: &mut Connection, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction()?;
    let ids = {
        let mut stmt = tx.prepare(
            "DELETE FROM placements WHERE ended_at_ms IS NOT NULL AND ended_at_ms <= ?1
             RETURNING stream_id",
        )?;
        let rows = stmt.query_map(params![cutoff_ms], |r| r.get(0))?;
        rows.collect::<Result<Vec<String>, _>>()?
    };
    tx.commit()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        conn
    }

    fn body(provider: &str, epoch: i64, client: &str) -> PlacementClaim {
        PlacementClaim {
            provider: provider.into(),
            epoch,
            standby: vec!["zego".into()],
            client_id: client.into(),
        }
    }

    #[test]
    fn the_database_fences_epochs_and_owners() {
        let mut c = memory();
        let stored = claim(&mut c, "s", &body("agora", 2, "a"), 10, Some(100)).unwrap();
        assert_eq!(stored.unwrap().standby, ["zego"]);
        let stale = claim(&mut c, "s", &body("zego", 2, "a"), 11, Some(100)).unwrap();
        assert_eq!(stale, Err(Refusal::StaleEpoch { stored: 2 }));
        let other = claim(&mut c, "s", &body("zego", 3, "b"), 12, Some(100)).unwrap();
        assert_eq!(other, Err(Refusal::OwnedByOther));
        // Past the expiry another client takes over, with a higher epoch only.
        let late = claim(&mut c, "s", &body("zego", 2, "b"), 100, Some(200)).unwrap();
        assert_eq!(late, Err(Refusal::StaleEpoch { stored: 2 }));
        let taken = claim(&mut c, "s", &body("zego", 3, "b"), 100, Some(200)).unwrap();
        assert_eq!(taken.unwrap().client_id, "b");
        assert_eq!(load(&c).unwrap().len(), 1);
    }

    /// The SQL condition and [`refusal`] agree on every combination of owner, epoch, expiry
    /// and end, so a refused claim always has a reason to report.
    #[test]
    fn the_sql_rule_is_the_rust_rule() {
        let now = 1_000;
        for client in ["a", "b"] {
            for epoch in [4, 5, 6] {
                for expires in [None, Some(now - 1), Some(now), Some(now + 1)] {
                    for ended in [None, Some(now - 10)] {
                        let mut c = memory();
                        c.execute(
                            &format!("INSERT INTO placements ({COLUMNS}) VALUES ('s', 'agora', 5, '[]', 'a', ?1, ?2, 0)"),
                            params![expires, ended],
                        )
                        .unwrap();
                        let stored = load(&c).unwrap().pop().unwrap();
                        let body = body("zego", epoch, client);
                        let expected = refusal(&stored, &body, now);
                        let case = format!("{client} {epoch} {expires:?} {ended:?}");
                        match claim(&mut c, "s", &body, now, Some(now + 100)).unwrap() {
                            Ok(record) => {
                                assert_eq!(expected, None, "{case}");
                                assert_eq!(load(&c).unwrap(), [record], "{case}");
                            }
                            Err(refused) => {
                                assert_eq!(Some(refused), expected, "{case}");
                                assert_eq!(load(&c).unwrap(), [stored], "{case}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn release_refresh_expire_and_collect() {
        let mut c = memory();
        claim(&mut c, "s", &body("agora", 1, "a"), 10, Some(100))
            .unwrap()
            .unwrap();
        claim(&mut c, "t", &body("agora", 1, "a"), 10, Some(100))
            .unwrap()
            .unwrap();
        assert_eq!(
            release(&mut c, "s", "b", 20).unwrap(),
            Release::OwnedByOther
        );
        assert_eq!(
            release(&mut c, "nope", "a", 20).unwrap(),
            Release::Unchanged
        );
        let Release::Ended(r) = release(&mut c, "s", "a", 20).unwrap() else {
            panic!("the owner ends its stream")
        };
        assert_eq!((r.epoch, r.ended_at_ms), (1, Some(20)));
        assert_eq!(release(&mut c, "s", "a", 21).unwrap(), Release::Unchanged);
        let ids = vec!["s".to_string(), "t".to_string()];
        assert_eq!(refresh(&mut c, "a", &ids, Some(300)).unwrap(), ["t"]);
        assert_eq!(
            refresh(&mut c, "b", &ids, Some(300)).unwrap(),
            Vec::<String>::new()
        );
        assert!(expire(&mut c, 299).unwrap().is_empty());
        let expired = expire(&mut c, 300).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].ended_at_ms, Some(300));
        assert_eq!(collect_garbage(&mut c, 20).unwrap(), ["s"]);
        assert_eq!(collect_garbage(&mut c, 299).unwrap(), Vec::<String>::new());
        assert_eq!(load(&c).unwrap()[0].stream_id, "t");
    }
}
