//! Multi-instance fan-out: with PostgreSQL, the changes other instances make arrive as
//! notifications ([`crate::store::postgres::Pg::listen`]) and are applied to this instance's
//! in-memory copy, which publishes them to its own event-stream clients like its own changes.
//! A notification names what changed and the record is read again from the database, so a
//! notification applied late never rolls anything back. SQLite has one instance by construction: nothing to listen to.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::Registry;
use crate::store::postgres::Change;

/// Wait before reopening a lost notification connection.
const RECONNECT: Duration = Duration::from_millis(500);

/// Starts applying other instances' changes, if the database carries them.
pub(crate) fn start(
    registry: &Arc<Registry>,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let pg = registry.store.postgres()?;
    let mut changes = pg.listen(RECONNECT, stop);
    let registry = Arc::clone(registry);
    Some(tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let result = match &change {
                Change::Counts(name) => registry.counts_changed(name).await,
                Change::Provider(name) => registry.reload_provider(name).await,
                Change::Placement(id) => registry.placements.reload(id).await,
                Change::Resync => match registry.reload_providers().await {
                    Ok(()) => registry.placements.reload_all().await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                // The next notification or resync reads the database again.
                tracing::warn!(error = %e, ?change, "applying another instance's change failed");
            }
        }
    }))
}
