//! One probe per distinct stream: entries with the same URL and the same per-stream options
//! are one probe target, and every entry gets its target's result. (The same URL with other
//! headers is another request, which a server may answer differently: another target.)

use crate::m3u::{Entry, StreamOptions};
use crate::report::{self, Report};
use std::collections::HashMap;

/// The playlist's entries grouped into probe targets.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    entries: Vec<Entry>,
    targets: Vec<Entry>,
    /// Per target, the indexes of its entries, in playlist order.
    members: Vec<Vec<usize>>,
}

impl Plan {
    /// Groups `entries` (in playlist order, `index` = position) by URL and options.
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut by_key: HashMap<(String, StreamOptions), usize> = HashMap::new();
        let mut targets: Vec<Entry> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for e in &entries {
            let next = targets.len();
            let t = *by_key
                .entry((e.url.clone(), e.options.clone()))
                .or_insert(next);
            if t == next {
                targets.push(Entry {
                    index: next,
                    ..e.clone()
                });
                members.push(Vec::new());
            }
            members[t].push(e.index);
        }
        Self {
            entries,
            targets,
            members,
        }
    }

    /// What to probe, one per distinct stream; their `index` is their position here (the id
    /// the work queue hands out).
    pub fn targets(&self) -> &[Entry] {
        &self.targets
    }

    /// Turns a report of targets into a report of entries: each target's result goes to each
    /// of its entries (with the entry's own index, name, attributes and line, and
    /// `same_url_as` set on all but the first), and the summary counts entries.
    pub fn expand(&self, report: Report) -> Report {
        let Report {
            mut summary,
            streams: probed,
            playlist,
        } = report;
        let mut streams = Vec::with_capacity(self.entries.len());
        for r in &probed {
            let Some(members) = self.members.get(r.index) else {
                continue;
            };
            for &m in members {
                let mut result = r.clone().for_entry(&self.entries[m]);
                result.same_url_as = Some(members[0]).filter(|&first| first != m);
                streams.push(result);
            }
        }
        streams.sort_by_key(|r| r.index);
        summary.playlist_streams = self.entries.len();
        summary.checked = streams.len();
        summary.unique_urls = probed.len();
        summary.counts = report::count(&streams);
        summary.groups = report::count_by_group(&streams);
        Report {
            summary,
            streams,
            playlist,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::m3u;
    use crate::report::{Status, StreamResult, Summary};

    #[test]
    fn one_target_per_url_and_options_and_every_entry_gets_its_result() {
        let p = m3u::parse(
            "#EXTM3U\n#EXTINF:-1 tvg-id=\"a1\" group-title=\"News\",A one\nhttp://h/a\n\
             #EXTINF:-1,B\nhttp://h/b\n\
             #EXTINF:-1 tvg-id=\"a2\" group-title=\"Copies\",A two\nhttp://h/a\n\
             #EXTINF:-1,A with a user agent\nhttp://h/a|User-Agent=x\n",
        )
        .unwrap();
        let plan = Plan::new(p.entries);
        let urls: Vec<(&str, bool)> = plan
            .targets()
            .iter()
            .map(|t| (t.url.as_str(), t.options.is_empty()))
            .collect();
        assert_eq!(
            urls,
            [
                ("http://h/a", true),
                ("http://h/b", true),
                ("http://h/a", false)
            ]
        );
        assert_eq!(
            plan.targets().iter().map(|t| t.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );

        // Results for targets 0 and 2 only (another process checked target 1).
        let mut a = StreamResult::new(&plan.targets()[0]);
        a.status = Status::Ok;
        a.attempts = 1;
        let mut a_ua = StreamResult::new(&plan.targets()[2]);
        a_ua.status = Status::Dead;
        let report = Report {
            summary: Summary {
                playlist_streams: 3,
                checked: 2,
                counts: report::count(&[]),
                concurrency: 1,
                run_id: None,
                elapsed_ms: 0,
                interrupted: false,
                error: None,
                unique_urls: 0,
                groups: Default::default(),
            },
            streams: vec![a_ua, a],
            playlist: None,
        };
        let r = plan.expand(report);
        let got: Vec<String> = r
            .streams
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} {:?} line {} same as {:?}",
                    s.index, s.name, s.status, s.tvg_id, s.line, s.same_url_as
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "0 A one Ok Some(\"a1\") line 3 same as None",
                "2 A two Ok Some(\"a2\") line 7 same as Some(0)",
                "3 A with a user agent Dead None line 9 same as None",
            ]
        );
        assert_eq!(r.streams[1].attempts, 1, "the result is the shared probe's");
        let s = &r.summary;
        assert_eq!((s.playlist_streams, s.checked, s.unique_urls), (4, 3, 2));
        assert_eq!((s.counts["ok"], s.counts["dead"]), (2, 1));
        assert_eq!(s.groups["News"]["ok"], 1);
        assert_eq!(s.groups["Copies"]["ok"], 1);
        assert_eq!(s.groups[""]["dead"], 1);
    }
}
