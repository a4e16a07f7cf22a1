//! The check report: one record per stream checked, written as JSON (with a summary) and as
//! CSV. Files are written to a temporary name and renamed, so a reader (or a crash) never
//! sees half a report.

use crate::m3u::{Entry, Playlist};
use crate::probe::StreamInfo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The verdict on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It answered with audio or video through some profile.
    Ok,
    /// Every profile tried failed (refused, not found, no streams).
    Dead,
    /// The last attempt timed out.
    Timeout,
    /// No profile had a free slot within the wait allowed.
    NoSlot,
    /// The check itself failed (lease lost, probe I/O).
    Error,
    /// Not probed: the URL's scheme is not one the checker probes (`pipe://`, `plugin://`...).
    Unsupported,
}

impl Status {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Dead => "dead",
            Status::Timeout => "timeout",
            Status::NoSlot => "no_slot",
            Status::Error => "error",
            Status::Unsupported => "unsupported",
        }
    }
}

/// One stream's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamResult {
    /// Position in the playlist, from 0.
    pub index: usize,
    /// Title from the playlist.
    pub name: String,
    /// URL as written in the playlist.
    pub url: String,
    /// The verdict.
    pub status: Status,
    /// `account/profile` of the last attempt (the one that succeeded, if any).
    pub profile: Option<String>,
    /// The URL that profile probed.
    pub probed_url: Option<String>,
    /// What the probe found (on success).
    #[serde(flatten)]
    pub info: StreamInfo,
    /// `WIDTHxHEIGHT`, when known.
    pub resolution: Option<String>,
    /// Probes run, over all profiles.
    pub attempts: u32,
    /// Profiles tried, in order.
    pub profiles_tried: Vec<String>,
    /// Wall time of the whole check, waits included.
    pub elapsed_ms: u64,
    /// Why it is not `ok`.
    pub error: Option<String>,
    /// The `tvg-id` attribute.
    pub tvg_id: Option<String>,
    /// The `tvg-name` attribute.
    pub tvg_name: Option<String>,
    /// `group-title`, else `#EXTGRP`.
    pub group: Option<String>,
    /// The `tvg-logo` attribute.
    pub logo: Option<String>,
    /// Line of the URL in the playlist, from 1.
    pub line: usize,
    /// When another entry before this one has the same URL (and options): its index. The URL
    /// was probed once, for that entry, and this one has its result.
    pub same_url_as: Option<usize>,
}

impl StreamResult {
    /// A result for `entry` before any probe: `dead`, nothing tried.
    pub fn new(entry: &Entry) -> Self {
        let attribute = |name| entry.attribute(name).map(str::to_string);
        Self {
            index: entry.index,
            name: entry.name.clone(),
            url: entry.url.clone(),
            status: Status::Dead,
            profile: None,
            probed_url: None,
            info: StreamInfo::default(),
            resolution: None,
            attempts: 0,
            profiles_tried: Vec::new(),
            elapsed_ms: 0,
            error: None,
            tvg_id: attribute("tvg-id"),
            tvg_name: attribute("tvg-name"),
            group: entry.group.clone(),
            logo: attribute("tvg-logo"),
            line: entry.line,
            same_url_as: None,
        }
    }

    /// This result given to another entry with the same stream: the entry's own index, name,
    /// URL, attributes and line, the probe's findings.
    pub fn for_entry(self, entry: &Entry) -> Self {
        let own = Self::new(entry);
        Self {
            index: own.index,
            name: own.name,
            url: own.url,
            tvg_id: own.tvg_id,
            tvg_name: own.tvg_name,
            group: own.group,
            logo: own.logo,
            line: own.line,
            same_url_as: None,
            ..self
        }
    }
}

/// Facts about the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Streams in the playlist.
    pub playlist_streams: usize,
    /// Streams checked by this process.
    pub checked: usize,
    /// Checked streams per status.
    pub counts: BTreeMap<&'static str, usize>,
    /// Global concurrency limit.
    pub concurrency: u32,
    /// Shared run id (Redis mode) or `None` (this process checked everything).
    pub run_id: Option<String>,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// True if Ctrl-C stopped the run early: the report is partial.
    pub interrupted: bool,
    /// Set if the run stopped on an error (the capacity backend failed closed...).
    pub error: Option<String>,
    /// Distinct URLs (with their options) among the checked streams: each was probed once.
    pub unique_urls: usize,
    /// Checked streams per group (`""`: no group) and status.
    pub groups: BTreeMap<String, BTreeMap<&'static str, usize>>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The run.
    pub summary: Summary,
    /// Checked streams, in playlist order.
    pub streams: Vec<StreamResult>,
    /// What the reader found in the playlist file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playlist: Option<PlaylistInfo>,
}

/// The playlist file as read: encoding, header attributes and the lines it could not use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaylistInfo {
    /// The encoding the file was decoded with.
    pub encoding: &'static str,
    /// The `#EXTM3U` header's attributes (`x-tvg-url`...).
    pub attributes: BTreeMap<String, String>,
    /// Entries (URL lines) read.
    pub entries: usize,
    /// Lines that were not used, with their line numbers.
    pub warnings: Vec<PlaylistWarning>,
}

/// A playlist line that was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaylistWarning {
    /// Line number, from 1.
    pub line: usize,
    /// Why.
    pub message: String,
}

impl PlaylistInfo {
    /// The facts of `playlist` (its entries are counted, not copied).
    pub fn of(playlist: &Playlist) -> Self {
        Self {
            encoding: playlist.encoding,
            attributes: playlist.attributes.iter().cloned().collect(),
            entries: playlist.entries.len(),
            warnings: playlist
                .warnings
                .iter()
                .map(|w| PlaylistWarning {
                    line: w.line,
                    message: w.message.clone(),
                })
                .collect(),
        }
    }
}

/// Counts results per status, every status present (0 if none).
pub fn count(results: &[StreamResult]) -> BTreeMap<&'static str, usize> {
    count_of(results.iter())
}

fn count_of<'a>(results: impl Iterator<Item = &'a StreamResult>) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = [
        Status::Ok,
        Status::Dead,
        Status::Timeout,
        Status::NoSlot,
        Status::Error,
        Status::Unsupported,
    ]
    .iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    for r in results {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    counts
}

/// Counts results per group (`""` for none) and status.
pub fn count_by_group(results: &[StreamResult]) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
    let mut groups: BTreeMap<String, Vec<&StreamResult>> = BTreeMap::new();
    for r in results {
        groups
            .entry(r.group.clone().unwrap_or_default())
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(g, rs)| (g, count_of(rs.into_iter())))
        .collect()
}

/// `out` → (`out.json`, `out.csv`); a `.json` or `.csv` extension given by the user is dropped.
pub fn paths(out: &Path) -> (PathBuf, PathBuf) {
    let base = match out.extension().and_then(|e| e.to_str()) {
        Some("json" | "csv") => out.with_extension(""),
        _ => out.to_path_buf(),
    };
    let with = |ext: &str| {
        let mut p = base.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    (with(".json"), with(".csv"))
}

/// Writes both files.
pub fn write(report: &Report, out: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let (json, csv) = paths(out);
    let body = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    write_atomic(&json, &body)?;
    write_atomic(&csv, to_csv(&report.streams).as_bytes())?;
    Ok((json, csv))
}

fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "index,name,url,status,profile,probed_url,video_codec,resolution,fps,bitrate,audio_codec,attempts,profiles_tried,elapsed_ms,error,tvg_id,tvg_name,group,logo,line,same_url_as";

/// The results as RFC 4180 CSV (quoted where needed), with [`CSV_HEADER`].
pub fn to_csv(results: &[StreamResult]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in results {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let cells = [
            r.index.to_string(),
            r.name.clone(),
            r.url.clone(),
            r.status.as_str().to_string(),
            opt(&r.profile),
            opt(&r.probed_url),
            opt(&r.info.video_codec),
            opt(&r.resolution),
            r.info.fps.map(|f| f.to_string()).unwrap_or_default(),
            r.info.bitrate.map(|b| b.to_string()).unwrap_or_default(),
            opt(&r.info.audio_codec),
            r.attempts.to_string(),
            r.profiles_tried.join(";"),
            r.elapsed_ms.to_string(),
            opt(&r.error),
            opt(&r.tvg_id),
            opt(&r.tvg_name),
            opt(&r.group),
            opt(&r.logo),
            r.line.to_string(),
            r.same_url_as.map(|i| i.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status) -> StreamResult {
        StreamResult {
            index: 3,
            name: "News, \"HD\"".into(),
            url: "http://x/1".into(),
            status,
            profile: Some("a/main".into()),
            probed_url: Some("http://x/1".into()),
            info: StreamInfo {
                video_codec: Some("h264".into()),
                width: Some(320),
                height: Some(240),
                fps: Some(15.0),
                bitrate: Some(1000),
                audio_codec: None,
            },
            resolution: Some("320x240".into()),
            attempts: 2,
            profiles_tried: vec!["a/main".into(), "a/backup".into()],
            elapsed_ms: 1500,
            error: None,
            tvg_id: Some("news.uk".into()),
            tvg_name: None,
            group: Some("News".into()),
            logo: Some("http://l/n.png".into()),
            line: 7,
            same_url_as: Some(1),
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let csv = to_csv(&[result(Status::Ok)]);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        assert_eq!(
            lines.next(),
            Some("3,\"News, \"\"HD\"\"\",http://x/1,ok,a/main,http://x/1,h264,320x240,15,1000,,2,a/main;a/backup,1500,,news.uk,,News,http://l/n.png,7,1")
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn counts_cover_every_status_and_paths_drop_extensions() {
        let c = count(&[result(Status::Ok), result(Status::Dead), result(Status::Ok)]);
        assert_eq!(c["ok"], 2);
        assert_eq!(c["dead"], 1);
        assert_eq!(c["no_slot"], 0);
        assert_eq!(c["unsupported"], 0);
        let mut other = result(Status::Unsupported);
        other.group = None;
        let g = count_by_group(&[result(Status::Ok), other, result(Status::Dead)]);
        assert_eq!(g.keys().collect::<Vec<_>>(), ["", "News"]);
        assert_eq!((g["News"]["ok"], g["News"]["dead"]), (1, 1));
        assert_eq!((g[""]["unsupported"], g[""]["ok"]), (1, 0));
        let (j, c) = paths(Path::new("/tmp/out.json"));
        assert_eq!(
            (j.to_str().unwrap(), c.to_str().unwrap()),
            ("/tmp/out.json", "/tmp/out.csv")
        );
        let (j, _) = paths(Path::new("/tmp/report.v1"));
        assert_eq!(j.to_str().unwrap(), "/tmp/report.v1.json");
    }

    #[test]
    fn json_flattens_stream_info_and_uses_snake_case_statuses() {
        let v = serde_json::to_value(result(Status::NoSlot)).unwrap();
        assert_eq!(v["status"], "no_slot");
        assert_eq!(v["video_codec"], "h264");
        assert_eq!(v["width"], 320);
    }
}
