//! Pure provider ordering: which providers may be tried, best first. Kept free of state and
//! clocks so every rule is unit-tested on plain data.

use crate::provider::ProviderInfo;
use std::cmp::Ordering;

/// What the engine knows about one provider when ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// An adapter is registered for it.
    pub has_adapter: bool,
    /// It failed recently and is cooling down.
    pub cooling: bool,
    /// The current operation has given up on it.
    pub excluded: bool,
    /// It is half-open (its cool-down ran out, nothing succeeded since) and a trial of it (a
    /// start or a health check) is in flight: other operations go elsewhere meanwhile.
    pub trial_busy: bool,
    /// Its recent media quality score (0 to 100, rounded), if it may order providers
    /// ([`Score::usable`](crate::quality::Score::usable)).
    pub score: Option<u8>,
}

fn by_priority(a: &ProviderInfo, b: &ProviderInfo) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| a.name.cmp(&b.name))
}

/// The providers that may be tried, best first: active ones with an adapter, not excluded and
/// with a free slot; those not cooling down (or on trial) first, by (priority, name). Cooling
/// providers come last rather than never, so that when every provider has failed recently the engine still
/// tries them (Envoy's panic mode) instead of refusing to stream at all.
pub fn rank(providers: &[ProviderInfo], standing: impl Fn(&str) -> Standing) -> Vec<String> {
    let mut ready = Vec::new();
    let mut cooling = Vec::new();
    for p in providers {
        let s = standing(&p.name);
        if !p.is_active || !s.has_adapter || s.excluded || !p.has_free_slot() {
            continue;
        }
        if s.cooling || s.trial_busy {
            cooling.push(p);
        } else {
            ready.push(p);
        }
    }
    ready.sort_by(|a, b| by_priority(a, b));
    cooling.sort_by(|a, b| by_priority(a, b));
    prefer_quality(&mut ready, &standing);
    ready
        .into_iter()
        .chain(cooling)
        .map(|p| p.name.clone())
        .collect()
}

/// Within each run of equal priority, the provider with the best score goes first if it beats
/// the first by name by at least [`MIN_GAIN`](crate::quality::MIN_GAIN) points (hysteresis:
/// a small difference never reorders, so noise cannot flip the choice). Priority always wins
/// over quality: the admin's order is kept between priorities.
fn prefer_quality(list: &mut [&ProviderInfo], standing: &impl Fn(&str) -> Standing) {
    let score = |p: &ProviderInfo| standing(&p.name).score.map(f64::from);
    let mut start = 0;
    while start < list.len() {
        let prio = list[start].priority;
        let end = start
            + list[start..]
                .iter()
                .take_while(|p| p.priority == prio)
                .count();
        let best = (start..end)
            .filter(|&i| score(list[i]).is_some())
            .max_by(|&a, &b| {
                score(list[a])
                    .partial_cmp(&score(list[b]))
                    .unwrap_or(Ordering::Equal)
            });
        if let Some(best) = best {
            if crate::quality::clearly_better(score(list[best]), score(list[start])) {
                list[start..=best].rotate_right(1);
            }
        }
        start = end;
    }
}

/// The position of `name` among active providers by (priority, name); `None` if it is absent
/// or inactive. Used to tell whether a list change made another provider preferred.
pub fn position(providers: &[ProviderInfo], name: &str) -> Option<usize> {
    let mut active: Vec<&ProviderInfo> = providers.iter().filter(|p| p.is_active).collect();
    active.sort_by(|a, b| by_priority(a, b));
    active.iter().position(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, prio: u32) -> ProviderInfo {
        ProviderInfo::new(name, prio)
    }

    fn all_ok(_: &str) -> Standing {
        Standing {
            has_adapter: true,
            ..Standing::default()
        }
    }

    #[test]
    fn lower_priority_first_ties_by_name() {
        let list = vec![p("webrtc", 3), p("zego", 1), p("agora", 1)];
        assert_eq!(rank(&list, all_ok), vec!["agora", "zego", "webrtc"]);
    }

    #[test]
    fn inactive_unadapted_excluded_and_full_are_skipped() {
        let mut inactive = p("a", 1);
        inactive.is_active = false;
        let mut full = p("f", 0);
        full.max_streams = Some(1);
        full.active_streams = Some(1);
        let list = vec![inactive, p("b", 2), p("c", 3), p("d", 4), full];
        let got = rank(&list, |n| Standing {
            has_adapter: n != "c",
            excluded: n == "d",
            ..Standing::default()
        });
        assert_eq!(got, vec!["b"]);
    }

    #[test]
    fn cooling_providers_go_last_not_away() {
        let list = vec![p("a", 1), p("b", 2), p("c", 3)];
        let got = rank(&list, |n| Standing {
            has_adapter: true,
            cooling: n == "a",
            ..Standing::default()
        });
        assert_eq!(got, vec!["b", "c", "a"]);
        let all_cooling = rank(&list, |_| Standing {
            has_adapter: true,
            cooling: true,
            ..Standing::default()
        });
        assert_eq!(all_cooling, vec!["a", "b", "c"]);
    }

    #[test]
    fn a_provider_on_trial_goes_last_like_a_cooling_one() {
        let list = vec![p("a", 1), p("b", 2), p("c", 3)];
        let got = rank(&list, |n| Standing {
            has_adapter: true,
            trial_busy: n == "a",
            cooling: n == "b",
            ..Standing::default()
        });
        assert_eq!(got, vec!["c", "a", "b"]);
    }

    #[test]
    fn position_ignores_inactive() {
        let mut b = p("b", 0);
        b.is_active = false;
        let list = vec![p("a", 2), b, p("c", 1)];
        assert_eq!(position(&list, "c"), Some(0));
        assert_eq!(position(&list, "a"), Some(1));
        assert_eq!(position(&list, "b"), None);
        assert_eq!(position(&list, "zzz"), None);
    }

    #[test]
    fn within_a_priority_a_clearly_better_score_goes_first() {
        let list = vec![p("agora", 1), p("zego", 1), p("webrtc", 1), p("rtmp", 2)];
        let with = |scores: &'static [(&'static str, u8)]| {
            move |name: &str| Standing {
                has_adapter: true,
                score: scores.iter().find(|(n, _)| *n == name).map(|(_, s)| *s),
                ..Standing::default()
            }
        };
        // (scores, order)
        type Scores = &'static [(&'static str, u8)];
        let table: [(Scores, [&str; 4]); 6] = [
            (&[], ["agora", "webrtc", "zego", "rtmp"]),
            (
                &[("agora", 50), ("zego", 90)],
                ["zego", "agora", "webrtc", "rtmp"],
            ),
            // Below the minimum gain: the order stays.
            (
                &[("agora", 85), ("zego", 90)],
                ["agora", "webrtc", "zego", "rtmp"],
            ),
            // Unknown against known: no preference.
            (&[("zego", 90)], ["agora", "webrtc", "zego", "rtmp"]),
            // Priority wins over quality.
            (
                &[("agora", 10), ("webrtc", 10), ("zego", 10), ("rtmp", 100)],
                ["agora", "webrtc", "zego", "rtmp"],
            ),
            (
                &[("agora", 30), ("webrtc", 80), ("zego", 60)],
                ["webrtc", "agora", "zego", "rtmp"],
            ),
        ];
        for (scores, want) in table {
            assert_eq!(rank(&list, with(scores)), want, "{scores:?}");
        }
    }
}
