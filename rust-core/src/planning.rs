//! Migration planning: which live sessions move, off which provider, and why. Pure and
//! synchronous (plain data in, moves out), so every rule has a table test; the manager turns
//! the moves into migrations. Health decides *that* a provider failed, ranking decides the
//! best provider; this module only decides who moves.

use crate::events::{FailoverReason, MigrationStrategy};
use crate::ordering::position;
use crate::provider::ProviderInfo;

/// A live session as planning sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed<'a> {
    /// The stream.
    pub stream_id: &'a str,
    /// The provider carrying it.
    pub provider: &'a str,
}

/// One session to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The stream.
    pub stream_id: String,
    /// The provider it leaves.
    pub from: String,
    /// Why.
    pub reason: FailoverReason,
}

fn moving(s: &Placed<'_>, reason: FailoverReason) -> Move {
    Move {
        stream_id: s.stream_id.to_string(),
        from: s.provider.to_string(),
        reason,
    }
}

fn sorted(mut moves: Vec<Move>) -> Vec<Move> {
    moves.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
    moves
}

/// An outage of `provider` was confirmed: every live session on it moves, for `reason`.
pub fn outage(provider: &str, live: &[Placed<'_>], reason: FailoverReason) -> Vec<Move> {
    sorted(
        live.iter()
            .filter(|s| s.provider == provider)
            .map(|s| moving(s, reason))
            .collect(),
    )
}

/// Reconciliation (desired state, the list, against actual state): every live session on a
/// provider that is not in `list` or not active moves (`ProviderDisabled`).
pub fn misplaced(list: &[ProviderInfo], live: &[Placed<'_>]) -> Vec<Move> {
    let listed_active = |name: &str| list.iter().any(|p| p.name == name && p.is_active);
    sorted(
        live.iter()
            .filter(|s| !listed_active(s.provider))
            .map(|s| moving(s, FailoverReason::ProviderDisabled))
            .collect(),
    )
}

/// After the list changed from `old` to `new`: sessions on a removed or disabled provider move
/// (`ProviderDisabled`), and sessions whose provider lost its place to `best` (the best ranked
/// provider now) *because of this change* (`PriorityChanged`). A provider that was already
/// ahead before the change does not pull sessions back: that is failback's job.
pub fn after_change(
    old: &[ProviderInfo],
    new: &[ProviderInfo],
    best: Option<&str>,
    live: &[Placed<'_>],
) -> Vec<Move> {
    let reason = |cur: &str| match position(new, cur) {
        None => Some(FailoverReason::ProviderDisabled),
        Some(cur_new) => best.filter(|b| *b != cur).and_then(|b| {
            let b_new = position(new, b)?;
            let was_ahead =
                matches!((position(old, b), position(old, cur)), (Some(bo), Some(co)) if bo < co);
            (b_new < cur_new && !was_ahead).then_some(FailoverReason::PriorityChanged)
        }),
    };
    sorted(
        live.iter()
            .filter_map(|s| reason(s.provider).map(|r| moving(s, r)))
            .collect(),
    )
}

/// Failback: once `best` is ready (healthy for `failback_stability` and not cooling), every
/// session on a provider ranked below it in `list` moves back (`Failback`).
pub fn failback(
    list: &[ProviderInfo],
    best: Option<&str>,
    best_ready: bool,
    live: &[Placed<'_>],
) -> Vec<Move> {
    let Some(best) = best.filter(|_| best_ready) else {
        return Vec::new();
    };
    let Some(best_pos) = position(list, best) else {
        return Vec::new();
    };
    sorted(
        live.iter()
            .filter(|s| {
                s.provider != best && best_pos < position(list, s.provider).unwrap_or(usize::MAX)
            })
            .map(|s| moving(s, FailoverReason::Failback))
            .collect(),
    )
}

/// How a session moves: make-before-break when both the old provider and the expected target
/// can run the stream in parallel, except after a lost capacity lease (the slot may be someone
/// else's already: stop using it first); break-before-make otherwise.
pub fn strategy(
    reason: FailoverReason,
    from_parallel: bool,
    target_parallel: bool,
) -> MigrationStrategy {
    if reason != FailoverReason::CapacityLost && from_parallel && target_parallel {
        MigrationStrategy::MakeBeforeBreak
    } else {
        MigrationStrategy::BreakBeforeMake
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailoverReason::*;

    fn p(name: &str, prio: u32, active: bool) -> ProviderInfo {
        let mut i = ProviderInfo::new(name, prio);
        i.is_active = active;
        i
    }

    fn live<'a>(v: &[(&'a str, &'a str)]) -> Vec<Placed<'a>> {
        v.iter()
            .map(|(s, p)| Placed {
                stream_id: s,
                provider: p,
            })
            .collect()
    }

    fn moves(v: &[Move]) -> Vec<(&str, &str, FailoverReason)> {
        v.iter()
            .map(|m| (m.stream_id.as_str(), m.from.as_str(), m.reason))
            .collect()
    }

    #[test]
    fn outage_moves_every_session_on_the_provider() {
        let l = live(&[("s2", "a"), ("s1", "a"), ("s3", "b")]);
        assert_eq!(
            moves(&outage("a", &l, HealthCheckFailed)),
            [
                ("s1", "a", HealthCheckFailed),
                ("s2", "a", HealthCheckFailed)
            ]
        );
        assert!(outage("c", &l, ErrorReported).is_empty());
    }

    #[test]
    fn misplaced_sessions_are_those_on_unlisted_or_inactive_providers() {
        let list = [p("a", 1, true), p("b", 2, false)];
        let l = live(&[("s1", "a"), ("s2", "b"), ("s3", "gone")]);
        assert_eq!(
            moves(&misplaced(&list, &l)),
            [
                ("s2", "b", ProviderDisabled),
                ("s3", "gone", ProviderDisabled)
            ]
        );
    }

    #[test]
    fn list_changes_table() {
        let (a1, b2, c3) = (p("a", 1, true), p("b", 2, true), p("c", 3, true));
        type Row<'a> = (
            &'a str,
            Vec<ProviderInfo>,
            Vec<ProviderInfo>,
            Option<&'a str>,
            &'a str,
            Vec<(&'a str, &'a str, FailoverReason)>,
        );
        // (case, old list, new list, best now, provider of s1, moves)
        let table: Vec<Row> = vec![
            (
                "unchanged",
                vec![a1.clone(), b2.clone()],
                vec![a1.clone(), b2.clone()],
                Some("a"),
                "a",
                vec![],
            ),
            (
                "removed",
                vec![a1.clone(), b2.clone()],
                vec![b2.clone()],
                Some("b"),
                "a",
                vec![("s1", "a", ProviderDisabled)],
            ),
            (
                "disabled",
                vec![a1.clone(), b2.clone()],
                vec![p("a", 1, false), b2.clone()],
                Some("b"),
                "a",
                vec![("s1", "a", ProviderDisabled)],
            ),
            (
                "another made preferred",
                vec![a1.clone(), b2.clone()],
                vec![a1.clone(), p("b", 0, true)],
                Some("b"),
                "a",
                vec![("s1", "a", PriorityChanged)],
            ),
            (
                "a new provider ahead",
                vec![b2.clone()],
                vec![p("n", 0, true), b2.clone()],
                Some("n"),
                "b",
                vec![("s1", "b", PriorityChanged)],
            ),
            (
                "best was ahead already: no pull back",
                vec![a1.clone(), b2.clone(), c3.clone()],
                vec![a1.clone(), b2.clone(), p("c", 4, true)],
                Some("a"),
                "b",
                vec![],
            ),
            (
                "on the best already",
                vec![a1.clone(), b2.clone()],
                vec![p("a", 0, true), b2.clone()],
                Some("a"),
                "a",
                vec![],
            ),
        ];
        for (case, old, new, best, on, want) in table {
            let l = live(&[("s1", on)]);
            assert_eq!(moves(&after_change(&old, &new, best, &l)), want, "{case}");
        }
    }

    #[test]
    fn strategy_table() {
        use MigrationStrategy::*;
        let table = [
            (HealthCheckFailed, true, true, MakeBeforeBreak),
            (PriorityChanged, true, true, MakeBeforeBreak),
            (CapacityLost, true, true, BreakBeforeMake),
            (HealthCheckFailed, false, true, BreakBeforeMake),
            (ProviderDisabled, true, false, BreakBeforeMake),
        ];
        for (reason, from, to, want) in table {
            assert_eq!(strategy(reason, from, to), want, "{reason:?} {from} {to}");
        }
    }

    #[test]
    fn failback_only_when_the_best_is_ready_and_ahead() {
        let list = [p("a", 1, true), p("b", 2, true), p("c", 3, true)];
        let l = live(&[("s1", "b"), ("s2", "a"), ("s3", "c")]);
        assert!(
            failback(&list, Some("a"), false, &l).is_empty(),
            "not stable yet"
        );
        assert!(failback(&list, None, true, &l).is_empty());
        assert_eq!(
            moves(&failback(&list, Some("a"), true, &l)),
            [("s1", "b", Failback), ("s3", "c", Failback)]
        );
        assert_eq!(
            moves(&failback(&list, Some("b"), true, &l)),
            [("s3", "c", Failback)],
            "a session ahead of the best stays"
        );
    }
}
