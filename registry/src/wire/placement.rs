//! Placement bodies: a publisher's claim (`PUT /api/streaming/streams/{streamId}/placement`),
//! the owner's release (`DELETE ...?clientId=`), the `?streams=a,b` filter of the event stream,
//! and the views of a placement (public: never the client id; admin: with it).

use serde::{Deserialize, Serialize};

use super::provider::validate_name;
use super::telemetry::{validate_client_id, validate_stream_id};
use super::Invalid;

/// Most standby providers one placement lists.
pub const MAX_STANDBY: usize = 4;

/// Most stream ids one event-stream subscriber may follow (`?streams=`).
pub const MAX_SUBSCRIBED_STREAMS: usize = 100;

/// Body of `PUT /api/streaming/streams/{streamId}/placement`: the publisher `clientId` carries
/// the stream on `provider` (and on the `standby` providers) since epoch `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementClaim {
    /// Provider carrying the stream.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub provider: String,
    /// Fencing token: must be above the stored one.
    #[schema(minimum = 1)]
    pub epoch: i64,
    /// Providers also carrying it (hot standby), in the order viewers should try them.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub standby: Vec<String>,
    /// The publishing client (one engine instance).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub client_id: String,
}

impl PlacementClaim {
    /// Checks names, sizes and the epoch.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name(&self.provider)?;
        if self.epoch < 1 {
            return Err(Invalid::new("invalid_epoch", "epoch must be at least 1"));
        }
        if self.standby.len() > MAX_STANDBY {
            return Err(Invalid::new(
                "invalid_standby",
                format!("standby lists at most {MAX_STANDBY} providers"),
            ));
        }
        for (i, name) in self.standby.iter().enumerate() {
            validate_name(name)?;
            if *name == self.provider || self.standby[..i].contains(name) {
                return Err(Invalid::new(
                    "invalid_standby",
                    "standby must not repeat a provider or name the primary provider",
                ));
            }
        }
        validate_client_id(&self.client_id)
    }
}

/// Query of `DELETE /api/streaming/streams/{streamId}/placement`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseQuery {
    /// The client ending its stream.
    pub client_id: String,
}

impl ReleaseQuery {
    /// Checks the client id.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_client_id(&self.client_id)
    }
}

/// Where a stream is published: the body of `GET /api/streaming/streams/{streamId}` and of
/// `placement` events. Never names the owning client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementView {
    /// The stream.
    pub stream_id: String,
    /// Provider carrying it (the last one, when not live).
    pub provider: String,
    /// Epoch of the last accepted claim.
    pub epoch: i64,
    /// Hot-standby providers.
    pub standby: Vec<String>,
    /// Whether the publisher's claim is alive (false once ended or expired).
    pub live: bool,
}

/// A placement as administrators see it (`GET /api/admin/streams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminPlacement {
    /// The stream.
    pub stream_id: String,
    /// Provider carrying it.
    pub provider: String,
    /// Epoch of the last accepted claim.
    pub epoch: i64,
    /// Hot-standby providers.
    pub standby: Vec<String>,
    /// Whether the claim is alive.
    pub live: bool,
    /// The publishing client.
    pub client_id: String,
    /// Last change (unix milliseconds).
    pub updated_at: i64,
    /// When the claim expires unless kept alive (unix milliseconds); `null` without expiry.
    pub expires_at: Option<i64>,
}

/// Body of `GET /api/admin/streams`: live placements by stream id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminStreams {
    /// Live placements, sorted by stream id, at most the first 1000.
    pub streams: Vec<AdminPlacement>,
    /// How many placements are live (more than listed when the list was cut).
    pub total: usize,
}

/// Parses the event stream's `streams` parameter: comma-separated stream ids, each valid, at
/// most [`MAX_SUBSCRIBED_STREAMS`] (repeats count once). Ids containing a comma cannot be
/// followed this way.
pub fn parse_stream_list(raw: &str) -> Result<Vec<String>, Invalid> {
    let mut ids: Vec<String> = Vec::new();
    for id in raw.split(',') {
        validate_stream_id(id)?;
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
        if ids.len() > MAX_SUBSCRIBED_STREAMS {
            return Err(Invalid::new(
                "too_many_streams",
                format!("streams lists at most {MAX_SUBSCRIBED_STREAMS} stream ids"),
            ));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(provider: &str, epoch: i64, standby: &[&str], client: &str) -> PlacementClaim {
        PlacementClaim {
            provider: provider.into(),
            epoch,
            standby: standby.iter().map(|s| s.to_string()).collect(),
            client_id: client.into(),
        }
    }

    #[test]
    fn claims_are_validated() {
        let code = |c: PlacementClaim| c.validate().err().map(|e| e.code);
        assert_eq!(code(claim("agora", 1, &["zego", "webrtc"], "sg-1")), None);
        assert_eq!(code(claim("Agora", 1, &[], "sg-1")), Some("invalid_name"));
        assert_eq!(code(claim("agora", 0, &[], "sg-1")), Some("invalid_epoch"));
        assert_eq!(code(claim("agora", -3, &[], "sg-1")), Some("invalid_epoch"));
        assert_eq!(
            code(claim("agora", 1, &["a", "b", "c", "d", "e"], "sg-1")),
            Some("invalid_standby")
        );
        assert_eq!(
            code(claim("agora", 1, &["zego", "zego"], "sg-1")),
            Some("invalid_standby")
        );
        assert_eq!(
            code(claim("agora", 1, &["agora"], "sg-1")),
            Some("invalid_standby")
        );
        assert_eq!(
            code(claim("agora", 1, &["bad name"], "sg-1")),
            Some("invalid_name")
        );
        assert_eq!(
            code(claim("agora", 1, &[], "a b")),
            Some("invalid_client_id")
        );
        assert_eq!(code(claim("agora", 1, &[], "")), Some("invalid_client_id"));
    }

    #[test]
    fn stream_lists_are_bounded_and_valid() {
        assert_eq!(parse_stream_list("a,b,a").unwrap(), ["a", "b"]);
        assert_eq!(parse_stream_list("").unwrap_err().code, "invalid_stream_id");
        assert_eq!(
            parse_stream_list("a,,b").unwrap_err().code,
            "invalid_stream_id"
        );
        let hundred: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        assert_eq!(parse_stream_list(&hundred.join(",")).unwrap().len(), 100);
        let more = format!("{},x", hundred.join(","));
        assert_eq!(
            parse_stream_list(&more).unwrap_err().code,
            "too_many_streams"
        );
        assert_eq!(
            parse_stream_list(&"x".repeat(257)).unwrap_err().code,
            "invalid_stream_id"
        );
    }
}
