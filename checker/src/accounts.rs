//! Accounts and their profiles: which streams belong to which account (by URL prefix), how
//! many streams each profile may run at once, and how a profile rewrites a stream's URL.
//!
//! ```json
//! {"accounts": [
//!   {"name": "provider-a", "url_prefix": "http://a.example/live/",
//!    "profiles": [
//!      {"name": "main",   "max_streams": 2},
//!      {"name": "backup", "max_streams": 1, "replace_prefix": "http://backup.a.example/live/"}]}]}
//! ```
//!
//! A stream belongs to the account with the longest matching `url_prefix`; a profile with
//! `replace_prefix` swaps that prefix for its own, one without it uses the URL as written.
//! Profiles are tried in file order. `max_streams` 0 or absent means unlimited. Streams that
//! match no account are checked as they are, under an unlimited implicit account.

use serde::Deserialize;
use std::collections::HashSet;
use streamguard::capacity::Candidate;

/// The implicit account of streams that match no configured prefix.
pub const UNASSIGNED: &str = "unassigned";

/// One way to reach an account's streams, with its own connection limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique within its account.
    pub name: String,
    /// Concurrent streams allowed (0 or absent = unlimited).
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// Replaces the account's `url_prefix` in stream URLs; absent = URL unchanged.
    #[serde(default)]
    pub replace_prefix: Option<String>,
}

/// A provider account: the streams under `url_prefix` and the profiles to reach them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Unique account name.
    pub name: String,
    /// Streams whose URL starts with this belong to the account.
    pub url_prefix: String,
    /// Profiles in the order they are tried.
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    accounts: Vec<Account>,
}

/// The accounts file, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    accounts: Vec<Account>,
}

/// A profile resolved for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `account/profile`: the ledger's account key and the report's profile column.
    pub key: String,
    /// Its limit (None = unlimited).
    pub max_streams: Option<u32>,
    /// The URL to probe through this profile.
    pub url: String,
}

impl Accounts {
    /// Parses and validates an accounts file: unique names, at least one profile each.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: File = serde_json::from_str(text).map_err(|e| format!("accounts file: {e}"))?;
        let mut names = HashSet::new();
        for a in &file.accounts {
            if a.name.is_empty() || a.name == UNASSIGNED || !names.insert(a.name.as_str()) {
                return Err(format!(
                    "accounts file: bad or duplicate account name {:?}",
                    a.name
                ));
            }
            if a.url_prefix.is_empty() {
                return Err(format!("account {:?}: empty url_prefix", a.name));
            }
            if a.profiles.is_empty() {
                return Err(format!("account {:?}: no profiles", a.name));
            }
            let mut profiles = HashSet::new();
            for p in &a.profiles {
                if p.name.is_empty() || p.name.contains('/') || !profiles.insert(p.name.as_str()) {
                    return Err(format!(
                        "account {:?}: bad or duplicate profile name {:?}",
                        a.name, p.name
                    ));
                }
            }
        }
        Ok(Self {
            accounts: file.accounts,
        })
    }

    /// The profiles to try for `url`, in order, with the URL each would probe.
    pub fn routes(&self, url: &str) -> Vec<Route> {
        let account = self
            .accounts
            .iter()
            .filter(|a| url.starts_with(&a.url_prefix))
            .max_by_key(|a| a.url_prefix.len());
        let Some(a) = account else {
            return vec![Route {
                key: format!("{UNASSIGNED}/direct"),
                max_streams: None,
                url: url.to_string(),
            }];
        };
        a.profiles
            .iter()
            .map(|p| Route {
                key: format!("{}/{}", a.name, p.name),
                max_streams: p.max_streams,
                url: match &p.replace_prefix {
                    Some(r) => format!("{r}{}", &url[a.url_prefix.len()..]),
                    None => url.to_string(),
                },
            })
            .collect()
    }
}

impl Route {
    /// This route as a ledger candidate.
    pub fn candidate(&self) -> Candidate {
        Candidate::new(self.key.clone(), self.max_streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"accounts": [
        {"name": "a", "url_prefix": "http://a/", "profiles": [
            {"name": "main", "max_streams": 2},
            {"name": "backup", "max_streams": 0, "replace_prefix": "http://b/x/"}]},
        {"name": "a-live", "url_prefix": "http://a/live/", "profiles": [{"name": "only"}]}
    ]}"#;

    #[test]
    fn longest_prefix_wins_and_profiles_rewrite_in_order() {
        let acc = Accounts::from_json(FILE).unwrap();
        let r = acc.routes("http://a/vod/1.ts");
        assert_eq!(
            r,
            vec![
                Route {
                    key: "a/main".into(),
                    max_streams: Some(2),
                    url: "http://a/vod/1.ts".into()
                },
                Route {
                    key: "a/backup".into(),
                    max_streams: Some(0),
                    url: "http://b/x/vod/1.ts".into()
                },
            ]
        );
        assert_eq!(r[1].candidate().limit(), None, "0 = unlimited");
        assert_eq!(acc.routes("http://a/live/2")[0].key, "a-live/only");
        let other = acc.routes("rtmp://elsewhere/3");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].key, "unassigned/direct");
        assert_eq!(other[0].url, "rtmp://elsewhere/3");
        assert_eq!(Accounts::default().routes("x")[0].key, "unassigned/direct");
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        for (text, why) in [
            ("{", "accounts file"),
            (
                r#"{"accounts":[{"name":"a","url_prefix":"p","profiles":[]}]}"#,
                "no profiles",
            ),
            (
                r#"{"accounts":[{"name":"a","url_prefix":"p","profiles":[{"name":"x"},{"name":"x"}]}]}"#,
                "duplicate profile",
            ),
            (
                r#"{"accounts":[{"name":"a","url_prefix":"p","profiles":[{"name":"x"}]},{"name":"a","url_prefix":"q","profiles":[{"name":"x"}]}]}"#,
                "duplicate account",
            ),
            (
                r#"{"accounts":[{"name":"a","url_prefix":"","profiles":[{"name":"x"}]}]}"#,
                "empty url_prefix",
            ),
            (
                r#"{"accounts":[{"name":"a","url_prefix":"p","profiles":[{"name":"x","maxStreams":1}]}]}"#,
                "unknown field",
            ),
        ] {
            let e = Accounts::from_json(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
