//! The rule for when a flood's TTL is spent: the seed's (test, then decrement) or the
//! 2019 assignment's (decrement, then test). See docs/PROTOCOL.md section 7.

use crate::protocol::INITIAL_TTL;

/// The two rules for passing a flood on (docs/PROTOCOL.md section 7). They differ by
/// one hop of reach; no frame differs, so servents of both kinds interoperate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TtlRule {
    /// Test, then decrement: a flood with TTL `t` goes on with `t - 1` while `t > 0`.
    /// A query reaches servents up to four hops beyond the client's.
    #[default]
    Seed,
    /// Decrement, then test (the 2019 assignment): a flood with TTL `t` goes on with
    /// `t - 1` only if `t - 1 > 0`. A query reaches servents up to three hops beyond.
    Assignment2019,
}

impl TtlRule {
    /// The TTL a query goes on with, if it goes on: a client's request (`from_client`)
    /// leaves with the initial TTL whatever the rule. A TTL above the initial one can
    /// only come from a broken or hostile peer: it is treated as spent under both
    /// rules, so nothing a peer says makes a query travel further than one we started
    /// ourselves.
    pub fn forward_ttl(self, from_client: bool, ttl: u16) -> Option<u16> {
        self.forward_ttl_from(INITIAL_TTL, from_client, ttl)
    }

    /// [`TtlRule::forward_ttl`] with another initial TTL than the protocol's 3 (for
    /// `tp3-sim`'s TTL sweeps): requests leave with `initial`, and more is spent.
    pub fn forward_ttl_from(self, initial: u16, from_client: bool, ttl: u16) -> Option<u16> {
        if from_client {
            return Some(initial);
        }
        if ttl > initial {
            return None;
        }
        match self {
            TtlRule::Seed => ttl.checked_sub(1),
            TtlRule::Assignment2019 => ttl.checked_sub(1).filter(|&t| t > 0),
        }
    }

    /// How many hops from the servent a client asked a query reaches at most: the
    /// servents that hear of it when every copy takes a shortest path (and, with
    /// `--full-reach`, whatever the order copies arrive in).
    pub const fn reach(self) -> usize {
        self.reach_from(INITIAL_TTL)
    }

    /// [`TtlRule::reach`] for requests flooded with `initial` rather than the
    /// protocol's 3 (as `tp3-sim` sweeps it): the client's servent's neighbours always
    /// hear of it.
    pub const fn reach_from(self, initial: u16) -> usize {
        match self {
            TtlRule::Seed => initial as usize + 1,
            TtlRule::Assignment2019 if initial == 0 => 1,
            TtlRule::Assignment2019 => initial as usize,
        }
    }

    /// The name `--ttl-rule` takes.
    pub const fn name(self) -> &'static str {
        match self {
            TtlRule::Seed => "seed",
            TtlRule::Assignment2019 => "2019",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_leaves_with_ttl_3_under_both_rules() {
        for rule in [TtlRule::Seed, TtlRule::Assignment2019] {
            for ttl in [0, 1, 3, 65535] {
                assert_eq!(rule.forward_ttl(true, ttl), Some(3), "{rule:?} {ttl}");
            }
        }
    }

    #[test]
    fn the_seed_tests_then_decrements() {
        let rule = TtlRule::Seed;
        assert_eq!(rule.forward_ttl(false, 3), Some(2));
        assert_eq!(rule.forward_ttl(false, 2), Some(1));
        assert_eq!(rule.forward_ttl(false, 1), Some(0));
        assert_eq!(rule.forward_ttl(false, 0), None);
    }

    #[test]
    fn the_2019_rule_decrements_then_tests() {
        let rule = TtlRule::Assignment2019;
        assert_eq!(rule.forward_ttl(false, 3), Some(2));
        assert_eq!(rule.forward_ttl(false, 2), Some(1));
        assert_eq!(rule.forward_ttl(false, 1), None);
        assert_eq!(rule.forward_ttl(false, 0), None);
    }

    #[test]
    fn a_ttl_above_3_from_a_neighbour_is_spent_under_both_rules() {
        for rule in [TtlRule::Seed, TtlRule::Assignment2019] {
            for ttl in [4, 5, 255, 65535] {
                assert_eq!(rule.forward_ttl(false, ttl), None, "{rule:?} {ttl}");
            }
        }
    }

    #[test]
    fn no_rule_ever_forwards_more_ttl_than_it_got() {
        for rule in [TtlRule::Seed, TtlRule::Assignment2019] {
            for ttl in 0..=u16::MAX {
                if let Some(out) = rule.forward_ttl(false, ttl) {
                    assert!(out < ttl && out < INITIAL_TTL, "{rule:?} {ttl} -> {out}");
                }
            }
        }
    }

    #[test]
    fn reach_is_the_hops_a_client_query_goes() {
        for rule in [TtlRule::Seed, TtlRule::Assignment2019] {
            for initial in 0..=8 {
                // Follow one copy out: hop 1 gets the initial TTL, each hop forwards on.
                let mut hops = 1;
                let mut ttl = Some(initial);
                while let Some(t) = ttl {
                    ttl = rule.forward_ttl_from(initial, false, t);
                    if ttl.is_some() {
                        hops += 1;
                    }
                }
                assert_eq!(rule.reach_from(initial), hops, "{rule:?} {initial}");
            }
            assert_eq!(rule.reach(), rule.reach_from(INITIAL_TTL));
        }
        assert_eq!(TtlRule::Seed.reach(), 4);
        assert_eq!(TtlRule::Assignment2019.reach(), 3);
    }

    #[test]
    fn another_initial_ttl_starts_floods_with_it_and_caps_them_at_it() {
        let rule = TtlRule::Seed;
        assert_eq!(rule.forward_ttl_from(6, true, 0), Some(6));
        assert_eq!(rule.forward_ttl_from(6, false, 6), Some(5));
        assert_eq!(rule.forward_ttl_from(6, false, 7), None);
        assert_eq!(rule.forward_ttl_from(1, false, 2), None);
        assert_eq!(TtlRule::Assignment2019.forward_ttl_from(1, false, 1), None);
    }

    #[test]
    fn the_default_is_the_seed() {
        assert_eq!(TtlRule::default(), TtlRule::Seed);
        assert_eq!(TtlRule::Seed.name(), "seed");
        assert_eq!(TtlRule::Assignment2019.name(), "2019");
    }
}
