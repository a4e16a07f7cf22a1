//! M3U playlist reading: `#EXTINF` lines give the name of the URL line that follows. Only what
//! the checker needs; attributes (`tvg-id=...`) are kept out of the name.

/// One stream of a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the playlist, from 0; the stream's id in reports and work queues.
    pub index: usize,
    /// The `#EXTINF` title, or the URL when there is none.
    pub name: String,
    /// The stream URL as written in the playlist.
    pub url: String,
}

/// Parses playlist text. Unknown directives and blank lines are skipped; a URL without an
/// `#EXTINF` before it is named after itself.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pending_name: Option<String> = None;
    for line in text.trim_start_matches('\u{feff}').lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(info) = line.strip_prefix("#EXTINF:") {
            pending_name = Some(title(info));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name = pending_name
            .take()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| line.to_string());
        entries.push(Entry {
            index: entries.len(),
            name,
            url: line.to_string(),
        });
    }
    entries
}

/// The title of an `#EXTINF:<duration> [attrs],<title>` line: after the first comma that is
/// not inside a quoted attribute value.
fn title(info: &str) -> String {
    let mut quoted = false;
    for (i, c) in info.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return info[i + 1..].trim().to_string(),
            _ => {}
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_extinf_and_urls_follow() {
        let text = "\u{feff}#EXTM3U\r\n#EXTINF:-1 tvg-id=\"a,b\" group-title=\"News, World\",BBC One, HD\r\nhttp://x/1\r\n\r\n#EXTVLCOPT:foo\nhttp://x/2\n#EXTINF:-1,\nrtmp://y/live/3\n";
        let got = parse(text);
        assert_eq!(
            got,
            vec![
                Entry {
                    index: 0,
                    name: "BBC One, HD".into(),
                    url: "http://x/1".into()
                },
                Entry {
                    index: 1,
                    name: "http://x/2".into(),
                    url: "http://x/2".into()
                },
                Entry {
                    index: 2,
                    name: "rtmp://y/live/3".into(),
                    url: "rtmp://y/live/3".into()
                },
            ]
        );
    }

    #[test]
    fn empty_and_comment_only_playlists_have_no_entries() {
        assert!(parse("").is_empty());
        assert!(parse("#EXTM3U\n#EXTINF:-1,orphan\n").is_empty());
    }
}
