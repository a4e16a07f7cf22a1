//! Stream placement, as the registry's placement directory records it: the provider a stream
//! is published on, its hot-standby providers, and the epoch that fences stale publishers.
//! Wire types and strict, size-bounded parsing; the HTTP calls are
//! [`HttpRegistry`](crate::HttpRegistry)'s (`placement`, `claim_placement`,
//! `release_placement`), and changes arrive on the push channel as
//! [`PushEvent::Placement`](crate::PushEvent::Placement).
//!
//! Contract (`{base}` is the registry base URL):
//! - `GET {base}/streaming/streams/{streamId}`: public; 200 with
//!   `{"success":true,"data":{"streamId","provider","epoch","standby":[...],"live"}}`, 404 with
//!   error code `unknown_stream` if the stream was never placed.
//! - `PUT {base}/streaming/streams/{streamId}/placement` with a [`PlacementClaim`]: 200 with the
//!   stored placement; 409 with code `stale_epoch` (epoch not above the stored one) or
//!   `owned_by_other` (another client's claim is alive). Claims are kept alive by the session
//!   keep-alives and expire without them.
//! - `DELETE {base}/streaming/streams/{streamId}/placement?clientId=...`: the owner ends it.
//! - A registry that answers these routes with 404 (not JSON `unknown_stream`), 405 or 501 has
//!   no placement directory: [`BackendError::Unsupported`].

use crate::error::BackendError;
use serde_json::Value;

/// Most standby providers a placement may list (the reference registry's limit; more are a
/// schema error).
pub const MAX_STANDBY: usize = 4;

/// Where a stream is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The stream.
    pub stream_id: String,
    /// The provider carrying the publisher.
    pub provider: String,
    /// Increases with every move of the publisher; a claim must be above the stored one.
    pub epoch: u64,
    /// Providers that carry the stream too (hot standby), best first.
    pub standby: Vec<String>,
    /// The publisher's claim is alive (false once it ended or expired).
    pub live: bool,
}

impl Placement {
    /// The providers carrying the stream: the publisher's first, then the standbys.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.provider.as_str()).chain(self.standby.iter().map(String::as_str))
    }

    /// Is this placement news to a viewer that knows `known`? A higher epoch is; so is the
    /// end of the known epoch's claim (a release keeps its epoch and only ends `live`; a new
    /// claim always goes above, so that is never undone within the epoch).
    pub fn supersedes(&self, known: Option<&Placement>) -> bool {
        known.is_none_or(|old| {
            self.epoch > old.epoch || (self.epoch == old.epoch && old.live && !self.live)
        })
    }
}

/// A publisher's claim of a stream's placement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementClaim {
    /// The provider now carrying the publisher.
    pub provider: String,
    /// Above every epoch claimed before for this stream.
    pub epoch: u64,
    /// Hot-standby providers, best first.
    pub standby: Vec<String>,
    /// The claiming engine instance (the stream belongs to it while its claim is alive).
    pub client_id: String,
}

fn string(v: &Value, field: &str, max: usize) -> Result<String, BackendError> {
    match v.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(s.clone()),
        _ => Err(BackendError::Schema(format!(
            "`data.{field}` must be a non-empty string of at most {max} bytes"
        ))),
    }
}

/// A placement from the `data` object of a registry answer or a push event.
pub(crate) fn placement_from(v: &Value) -> Result<Placement, BackendError> {
    let epoch = v
        .get("epoch")
        .and_then(Value::as_u64)
        .ok_or_else(|| BackendError::Schema("`data.epoch` must be a whole number".into()))?;
    let live = v
        .get("live")
        .and_then(Value::as_bool)
        .ok_or_else(|| BackendError::Schema("`data.live` must be a boolean".into()))?;
    let standby = match v.get("standby") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_STANDBY => items
            .iter()
            .map(|s| match s {
                Value::String(s) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
                _ => Err(BackendError::Schema(
                    "`data.standby` must hold provider names".into(),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(BackendError::Schema(format!(
                "`data.standby` must be an array of at most {MAX_STANDBY} names"
            )))
        }
    };
    Ok(Placement {
        stream_id: string(v, "streamId", 256)?,
        provider: string(v, "provider", 128)?,
        epoch,
        standby,
        live,
    })
}

/// A placement answer (`{"success":true,"data":{...}}`).
pub fn parse_placement(body: &[u8]) -> Result<Placement, BackendError> {
    placement_from(&crate::registry::envelope(body)?)
}

/// The `error.code` and `error.message` of a registry error answer, if it is one.
pub fn error_code(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_str()?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    Some((
        code.chars().take(64).collect(),
        message.chars().take(512).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_viewer_takes_as_news() {
        let p = |epoch, live| Placement {
            stream_id: "s".into(),
            provider: "agora".into(),
            epoch,
            standby: Vec::new(),
            live,
        };
        // (new, known, news?)
        let table = [
            (p(1, true), None, true),
            (p(2, true), Some(p(1, true)), true),
            (p(2, false), Some(p(1, true)), true),
            (p(1, true), Some(p(2, true)), false),
            (p(2, true), Some(p(2, true)), false),
            (p(2, false), Some(p(2, true)), true),
            // A release is never undone within its epoch.
            (p(2, true), Some(p(2, false)), false),
        ];
        for (new, known, news) in table {
            assert_eq!(
                new.supersedes(known.as_ref()),
                news,
                "{new:?} after {known:?}"
            );
        }
    }

    #[test]
    fn parses_a_placement() {
        let body = br#"{"success":true,"data":{"streamId":"s1","provider":"agora","epoch":3,"standby":["zegocloud"],"live":true,"extra":1}}"#;
        assert_eq!(
            parse_placement(body).unwrap(),
            Placement {
                stream_id: "s1".into(),
                provider: "agora".into(),
                epoch: 3,
                standby: vec!["zegocloud".into()],
                live: true,
            }
        );
    }

    #[test]
    fn bad_placements_are_schema_errors() {
        let bad: &[&[u8]] = &[
            br#"{"success":true,"data":{"streamId":"s1","provider":"agora","epoch":-1,"live":true}}"#,
            br#"{"success":true,"data":{"streamId":"s1","provider":"","epoch":1,"live":true}}"#,
            br#"{"success":true,"data":{"streamId":"s1","provider":"a","epoch":1,"live":"yes"}}"#,
            br#"{"success":true,"data":{"streamId":"s1","provider":"a","epoch":1,"live":true,"standby":[1]}}"#,
            br#"{"success":true,"data":{"streamId":"s1","provider":"a","epoch":1,"live":true,"standby":["a","b","c","d","e"]}}"#,
            br#"{"success":true,"data":{"provider":"a","epoch":1,"live":true}}"#,
        ];
        for body in bad {
            assert!(
                matches!(parse_placement(body), Err(BackendError::Schema(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_placement(b"<html>"),
            Err(BackendError::NotJson(_))
        ));
    }

    #[test]
    fn error_codes_are_read_from_the_registry_envelope() {
        let body = br#"{"success":false,"error":{"code":"owned_by_other","message":"stream s1 is claimed by another client"}}"#;
        assert_eq!(
            error_code(body),
            Some((
                "owned_by_other".into(),
                "stream s1 is claimed by another client".into()
            ))
        );
        assert_eq!(error_code(b"not found"), None);
    }
}
