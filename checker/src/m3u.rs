//! M3U playlist reading, for real-world IPTV playlists.
//!
//! What is read (everything else that starts with `#` is a comment and skipped):
//!
//! - **Bytes to text** ([`decode`]): a UTF-8 or UTF-16 byte order mark decides; without one the
//!   text is UTF-8 if it is valid UTF-8, and Windows-1252 otherwise (the WHATWG "latin1"
//!   decoder of `encoding_rs`: every byte maps to a character, so Latin-1 names such as
//!   `Télé Matin` come out right and nothing fails).
//! - **Lines** end with `\n`, `\r\n` or a lone `\r`; the last one needs no line end. A line
//!   longer than [`MAX_LINE`] bytes is skipped with a warning.
//! - **Header** `#EXTM3U x-tvg-url="..." url-tvg=...`: its attributes are kept
//!   ([`Playlist::attributes`]); a missing header is a warning, not an error.
//! - **`#EXTINF:<duration> <attributes>,<title>`**: attributes are `key="value"`,
//!   `key='value'` or `key=value` (unquoted up to a space or comma), with or without spaces
//!   between them (`tvg-name="B"tvg-id="b.it"`). The title follows the first comma after the
//!   attributes, commas in quoted values do not count, and the title may itself hold commas.
//!   The form `#EXTINF:-1, tvg-id="x" group-title="y",Title` (a comma before the attributes)
//!   is read as attributes when what follows the first comma is a run of attributes ending in
//!   a comma, at least one of them quoted or named `tvg-...`/`group-title`; otherwise all of
//!   it is the title. An `#EXTINF` without a duration (`#EXTINF:tvg-id="x",Title`) is read too.
//! - **`#EXTGRP:<group>`**, **`#EXTVLCOPT:<key>=<value>`**, **`#KODIPROP:<key>=<value>`** and
//!   **`#EXTHTTP:{"header": "value"}`** apply to the next URL. The group is `group-title`, else
//!   `#EXTGRP`.
//! - **URL lines**: `scheme://...`. A Kodi suffix `URL|User-Agent=...&Referer=...` (values
//!   percent-encoded) is split off the URL into [`StreamOptions`] (a `|` with no `=` after it
//!   is left in the URL). A line that is not
//!   `scheme://...` (`---- Sports ----`, `[OFFLINE]`, a relative path) is a warning, not an
//!   entry. A URL whose scheme is not in [`SUPPORTED_SCHEMES`] (`pipe://`, `plugin://`,
//!   `file://`, `acestream://`...) is an entry marked [`Entry::unsupported`], never probed.
//! - **HLS**: a media playlist (any of `#EXT-X-TARGETDURATION`, `#EXT-X-MEDIA-SEQUENCE`,
//!   `#EXT-X-PLAYLIST-TYPE`, `#EXT-X-ENDLIST`, `#EXT-X-MAP`, `#EXT-X-PART-INF`) is refused with
//!   [`PlaylistError::HlsMediaPlaylist`]: its lines are segments of one stream, not channels.
//!   A master playlist is read as a list of its variants: each `#EXT-X-STREAM-INF` URI that is
//!   an absolute URL is an entry named after its `RESOLUTION` and `BANDWIDTH` (a relative one
//!   is a warning: the playlist's own URL is not known).
//!
//! Per-stream options: `#EXTVLCOPT:http-user-agent=`, `http-referrer=` (or `http-referer=`),
//! `http-origin=`; `#KODIPROP:inputstream.adaptive.stream_headers=` and
//! `inputstream.adaptive.manifest_headers=` (`Key=value&...`, percent-encoded); the `|` suffix of
//! the URL; `#EXTHTTP` JSON. Later ones win over earlier ones for the same header.

use percent_encoding::percent_decode_str;
use std::fmt;

/// Lines longer than this (bytes) are skipped with a warning: no real directive or URL is this
/// long, and it bounds what one line can make the reader keep.
pub const MAX_LINE: usize = 16 * 1024;

/// Schemes that are probed (ffprobe reads them as live inputs). Any other scheme gets the
/// status `unsupported`.
pub const SUPPORTED_SCHEMES: &[&str] = &[
    "http", "https", "rtmp", "rtmps", "rtmpt", "rtmpts", "rtsp", "rtsps", "rtp", "udp", "srt",
    "rist", "mmsh", "mmst",
];

/// HLS tags that only a media playlist (segments of one stream) carries.
const HLS_MEDIA_TAGS: &[&str] = &[
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-ENDLIST",
    "#EXT-X-MAP",
    "#EXT-X-PART-INF",
];

/// HTTP options of one stream, passed to the probe as `-user_agent` and `-headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StreamOptions {
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Other request headers (`Referer`, `Origin`, `Cookie`...), in the order first set.
    pub headers: Vec<(String, String)>,
}

impl StreamOptions {
    /// Sets a header by name (case-insensitive); `User-Agent` goes to [`Self::user_agent`].
    /// An empty name or value is ignored, and so is one with a control character (a
    /// percent-encoded line break must not add a header of its own).
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.trim();
        let value = value.trim().to_string();
        let bad = |s: &str| s.is_empty() || s.chars().any(char::is_control);
        if bad(name) || bad(&value) || name.contains(':') {
            return;
        }
        if name.eq_ignore_ascii_case("user-agent") {
            self.user_agent = Some(value);
        } else if let Some(h) = self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            h.1 = value;
        } else {
            self.headers.push((name.to_string(), value));
        }
    }

    /// True when there is nothing to pass.
    pub fn is_empty(&self) -> bool {
        self.user_agent.is_none() && self.headers.is_empty()
    }

    /// Reads `Key=value&Key2=value2` with percent-encoded keys and values (Kodi's URL suffix
    /// and `stream_headers` property).
    fn set_query(&mut self, query: &str) {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode_str(k).decode_utf8_lossy();
            let v = percent_decode_str(v).decode_utf8_lossy();
            self.set(&k, &v);
        }
    }
}

/// One stream of a playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Position in the playlist, from 0; the stream's id in reports.
    pub index: usize,
    /// Line number (from 1) of the URL line.
    pub line: usize,
    /// The `#EXTINF` title; else its `tvg-name`; else the URL.
    pub name: String,
    /// The stream URL, without a Kodi `|options` suffix.
    pub url: String,
    /// Every `#EXTINF` attribute, as written (names keep their case).
    pub attributes: Vec<(String, String)>,
    /// `group-title`, else the `#EXTGRP` before the URL.
    pub group: Option<String>,
    /// `#EXTVLCOPT` lines before the URL, as (key, value).
    pub vlc_options: Vec<(String, String)>,
    /// `#KODIPROP` lines before the URL, as (key, value).
    pub kodi_props: Vec<(String, String)>,
    /// HTTP options for the probe, from all of the above and the URL's `|` suffix.
    pub options: StreamOptions,
    /// Why the stream is not probed (its scheme is not supported), if so.
    pub unsupported: Option<String>,
}

impl Entry {
    /// The value of an `#EXTINF` attribute (name compared case-insensitively).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find(&self.attributes, name)
    }
}

/// A line the reader could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Line number, from 1.
    pub line: usize,
    /// What was wrong (never the whole line: it could hold a secret).
    pub message: String,
}

/// A playlist that cannot be checked at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistError {
    /// An HLS media playlist: segments of one stream, not a list of channels.
    HlsMediaPlaylist {
        /// The line of the first tag that gave it away.
        line: usize,
        /// That tag.
        tag: String,
    },
}

impl fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaylistError::HlsMediaPlaylist { line, tag } => write!(
                f,
                "this is an HLS media playlist ({tag} at line {line}): it lists the segments \
                 of one stream, not channels; put the stream's own URL in an M3U playlist \
                 and check that"
            ),
        }
    }
}

impl std::error::Error for PlaylistError {}

/// A playlist as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playlist {
    /// The encoding the bytes were decoded with (`UTF-8`, `UTF-16LE`, `windows-1252`).
    pub encoding: &'static str,
    /// The `#EXTM3U` header's attributes (`x-tvg-url`...).
    pub attributes: Vec<(String, String)>,
    /// The streams, in playlist order.
    pub entries: Vec<Entry>,
    /// Lines that could not be used.
    pub warnings: Vec<Warning>,
}

impl Playlist {
    /// The value of a header attribute (name compared case-insensitively).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find(&self.attributes, name)
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes playlist bytes: by BOM (UTF-8, UTF-16LE/BE), else UTF-8 when valid, else
/// Windows-1252. Returns the text (without BOM) and the encoding's name.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return (text.into_owned(), encoding.name());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), encoding_rs::UTF_8.name()),
        Err(_) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (text.into_owned(), encoding_rs::WINDOWS_1252.name())
        }
    }
}

/// Reads a playlist file's bytes ([`decode`], then [`parse`]).
pub fn read(bytes: &[u8]) -> Result<Playlist, PlaylistError> {
    let (text, encoding) = decode(bytes);
    let mut playlist = parse(&text)?;
    playlist.encoding = encoding;
    Ok(playlist)
}

/// What the lines before a URL said about it.
#[derive(Default)]
struct Pending {
    /// Line of the `#EXTINF` (or `#EXT-X-STREAM-INF`), if any.
    info_line: Option<usize>,
    title: String,
    attributes: Vec<(String, String)>,
    group: Option<String>,
    vlc_options: Vec<(String, String)>,
    kodi_props: Vec<(String, String)>,
    options: StreamOptions,
}

/// Parses playlist text (see the module docs for what is read).
pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
    let mut p = Playlist {
        encoding: encoding_rs::UTF_8.name(),
        ..Playlist::default()
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pending = Pending::default();
    let mut seen_header = false;
    let mut first_content: Option<usize> = None;
    for (n, raw) in lines(text) {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        first_content.get_or_insert(n);
        if line.len() > MAX_LINE {
            p.warnings.push(Warning {
                line: n,
                message: format!("line of {} bytes (over {MAX_LINE}) skipped", line.len()),
            });
            continue;
        }
        if let Some(tag) = HLS_MEDIA_TAGS.iter().find(|t| directive(line, t).is_some()) {
            return Err(PlaylistError::HlsMediaPlaylist {
                line: n,
                tag: (*tag).to_string(),
            });
        }
        if let Some(rest) = directive(line, "#EXTM3U") {
            seen_header = true;
            p.attributes.extend(attributes(rest, false).0);
        } else if let Some(rest) = directive(line, "#EXTINF") {
            if let Some(prev) = pending.info_line {
                warn_no_url(&mut p.warnings, prev);
            }
            let (attributes, title) = extinf(rest);
            pending.info_line = Some(n);
            pending.attributes = attributes;
            pending.title = title;
        } else if let Some(rest) = directive(line, "#EXT-X-STREAM-INF") {
            if let Some(prev) = pending.info_line {
                warn_no_url(&mut p.warnings, prev);
            }
            let (attributes, _) = attributes(rest, true);
            pending.info_line = Some(n);
            pending.title = variant_title(&attributes);
            pending.attributes = attributes;
        } else if let Some(rest) = directive(line, "#EXTGRP") {
            pending.group = Some(rest.trim().to_string()).filter(|g| !g.is_empty());
        } else if let Some(rest) = directive(line, "#EXTVLCOPT") {
            let (k, v) = key_value(rest);
            match k.to_ascii_lowercase().as_str() {
                "http-user-agent" => pending.options.set("User-Agent", &v),
                "http-referrer" | "http-referer" => pending.options.set("Referer", &v),
                "http-origin" => pending.options.set("Origin", &v),
                "http-cookie" => pending.options.set("Cookie", &v),
                _ => {}
            }
            pending.vlc_options.push((k, v));
        } else if let Some(rest) = directive(line, "#KODIPROP") {
            let (k, v) = key_value(rest);
            if k.ends_with(".stream_headers") || k.ends_with(".manifest_headers") {
                pending.options.set_query(&v);
            }
            pending.kodi_props.push((k, v));
        } else if let Some(rest) = directive(line, "#EXTHTTP") {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(rest) {
                Ok(map) => {
                    for (k, v) in map {
                        if let Some(v) = v.as_str() {
                            pending.options.set(&k, v);
                        }
                    }
                }
                Err(_) => p.warnings.push(Warning {
                    line: n,
                    message: "#EXTHTTP is not a JSON object of headers: ignored".into(),
                }),
            }
        } else if line.starts_with('#') {
            // A comment or a directive the checker has no use for.
        } else {
            let pending = std::mem::take(&mut pending);
            match url_entry(line, n, pending) {
                Ok(mut e) => {
                    e.index = p.entries.len();
                    p.entries.push(e);
                }
                Err(message) => p.warnings.push(Warning { line: n, message }),
            }
        }
    }
    if let Some(prev) = pending.info_line {
        warn_no_url(&mut p.warnings, prev);
    }
    if let (false, Some(first)) = (seen_header, first_content) {
        p.warnings.insert(
            0,
            Warning {
                line: first,
                message: "no #EXTM3U header (read as M3U anyway)".into(),
            },
        );
    }
    Ok(p)
}

/// Lines with their numbers (from 1), split at `\r\n`, `\n` or a lone `\r`.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text;
    let mut n = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        n += 1;
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            usize::from(end < rest.len())
        };
        rest = &rest[end + skip..];
        Some((n, line))
    })
}

/// `#TAG:rest` or `#TAG rest` or `#TAG` → the rest; tags compare case-insensitively.
fn directive<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let head = line.get(..tag.len())?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    let rest = &line[tag.len()..];
    match rest.chars().next() {
        None => Some(""),
        Some(':') => Some(&rest[1..]),
        Some(c) if c.is_whitespace() => Some(rest),
        _ => None,
    }
}

fn warn_no_url(warnings: &mut Vec<Warning>, line: usize) {
    warnings.push(Warning {
        line,
        message: "no URL after this #EXTINF or #EXT-X-STREAM-INF".into(),
    });
}

/// `key=value` (the value may hold `=`), trimmed.
fn key_value(s: &str) -> (String, String) {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    (k.trim().to_string(), v.trim().to_string())
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Reads attributes from the start of `s` (separated by white space or nothing, and by commas
/// too when `commas`, as in `#EXT-X-STREAM-INF`) until something that is not one. Returns them
/// and the rest of `s`, from where reading stopped.
fn attributes(s: &str, commas: bool) -> (Vec<(String, String)>, &str) {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let key_len = rest.find(|c| !is_key_char(c)).unwrap_or(rest.len());
        if key_len == 0 || !rest[key_len..].starts_with('=') {
            return (out, rest);
        }
        let key = &rest[..key_len];
        let after = &rest[key_len + 1..];
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => match after[1..].find(q) {
                Some(end) => (&after[1..1 + end], &after[end + 2..]),
                // Unterminated: not an attribute; leave the text to the caller.
                None => return (out, rest),
            },
            _ => {
                let end = after
                    .find(|c: char| c.is_whitespace() || c == ',')
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push((key.to_string(), value.to_string()));
        rest = next.trim_start();
        if let Some(r) = rest.strip_prefix(',').filter(|_| commas) {
            if looks_like_attribute(r) {
                rest = r.trim_start();
            }
        }
    }
}

fn looks_like_attribute(s: &str) -> bool {
    let s = s.trim_start();
    let key_len = s.find(|c| !is_key_char(c)).unwrap_or(s.len());
    key_len > 0 && s[key_len..].starts_with('=')
}

/// `<duration> <attributes>,<title>` (see the module docs) → attributes and title.
fn extinf(info: &str) -> (Vec<(String, String)>, String) {
    let info = info.trim_start();
    // The duration: up to a space or comma, unless it is already an attribute.
    let after_duration = if looks_like_attribute(info) {
        info
    } else {
        let end = info
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(info.len());
        &info[end..]
    };
    let (attrs, rest) = attributes(after_duration, false);
    let rest = rest.trim_start();
    if let Some(after_comma) = rest.strip_prefix(',') {
        if attrs.is_empty() {
            // Perhaps `-1, tvg-id="x" group-title="y",Title`.
            let (late, late_rest) = attributes(after_comma, false);
            let plausible = late.iter().any(|(k, _)| {
                let k = k.to_ascii_lowercase();
                k.starts_with("tvg-") || k == "group-title"
            }) || quoted_somewhere(after_comma, &late);
            if let (true, Some(title)) = (plausible, late_rest.trim_start().strip_prefix(',')) {
                return (late, title.trim().to_string());
            }
        }
        return (attrs, after_comma.trim().to_string());
    }
    // Text that is not attributes (an unterminated quote...): the title is after its first
    // comma, if any.
    let title = rest.split_once(',').map(|(_, t)| t.trim().to_string());
    (attrs, title.unwrap_or_default())
}

/// True when one of the attributes read from `s` had a quoted value.
fn quoted_somewhere(s: &str, attrs: &[(String, String)]) -> bool {
    attrs
        .iter()
        .any(|(k, _)| s.contains(&format!("{k}=\"")) || s.contains(&format!("{k}='")))
}

/// A master playlist variant's name: `1280x720 2500 kb/s`.
fn variant_title(attrs: &[(String, String)]) -> String {
    let resolution = find(attrs, "RESOLUTION");
    let kbps = find(attrs, "BANDWIDTH")
        .and_then(|b| b.parse::<u64>().ok())
        .map(|b| format!("{} kb/s", b / 1000));
    let parts: Vec<String> = resolution
        .map(str::to_string)
        .into_iter()
        .chain(kbps)
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("variant {}", parts.join(" "))
    }
}

/// The scheme of `scheme://...`, lowercased, if the line is one.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| scheme.to_ascii_lowercase())
}

/// A URL line with what came before it → an entry, or why it is not one.
fn url_entry(line: &str, n: usize, pending: Pending) -> Result<Entry, String> {
    let Some(scheme) = scheme(line) else {
        return Err(format!("not a URL ({}): skipped", excerpt(line)));
    };
    let mut options = pending.options;
    // Kodi's options suffix: `|Name=value&...`. A `|` with no `=` after it is part of the URL.
    let url = match line
        .split_once('|')
        .filter(|(_, suffix)| suffix.contains('='))
    {
        Some((url, suffix)) => {
            options.set_query(suffix);
            url.trim_end()
        }
        None => line,
    };
    let unsupported = (!SUPPORTED_SCHEMES.contains(&scheme.as_str()))
        .then(|| format!("scheme {scheme}:// is not checked"));
    let group = find(&pending.attributes, "group-title")
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .or(pending.group);
    let name = Some(pending.title)
        .filter(|t| !t.is_empty())
        .or_else(|| find(&pending.attributes, "tvg-name").map(str::to_string))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| url.to_string());
    Ok(Entry {
        index: 0,
        line: n,
        name,
        url: url.to_string(),
        attributes: pending.attributes,
        group,
        vlc_options: pending.vlc_options,
        kodi_props: pending.kodi_props,
        options,
        unsupported,
    })
}

/// The start of a line for a warning: at most 40 characters, cut at `?` or `|` (what follows
/// could be a token).
fn excerpt(line: &str) -> String {
    let cut = line.find(['?', '|']).unwrap_or(line.len());
    let short: String = line[..cut].chars().take(40).collect();
    if short.len() < line.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

/// `scheme://user:pass@host/path?query` → `scheme://host/path?...`: what may be shown in
/// messages without giving away credentials or tokens.
pub fn redact(url: &str) -> String {
    let (url, hidden) = match url.find(['?', '|', '#']) {
        Some(i) => (&url[..i], true),
        None => (url, false),
    };
    let url = match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    if hidden {
        format!("{url}?...")
    } else {
        url
    }
}

#[cfg(test)]
mod tests;
