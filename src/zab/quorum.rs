//! Which sets of servers form a quorum, and the config string that names the ensemble
//! (`QuorumVerifier`: `QuorumMaj` and `QuorumHierarchical` in ZooKeeper 3.8).
//!
//! Owns: the membership a server votes and acks with. Must not touch: `zoo.cfg` parsing (the node
//! builds a `QuorumVerifier` from `config::Config`), sockets, time.
//!
//! Invariants: only participants vote; a set counts its voters only; the config string is
//! byte-for-byte what ZooKeeper sends in notifications and NEWLEADER (PROTOCOL.md §4.3).

use std::collections::{BTreeMap, BTreeSet};

/// One member of the ensemble as the quorum rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `server.<sid>`.
    pub sid: i64,
    /// Participants vote; observers do not.
    pub participant: bool,
    /// The member's `server.N` value as ZooKeeper prints it (`QuorumServer.toString`).
    pub line: String,
}

/// Hierarchical quorums (`group.N`, `weight.N`): a quorum is a majority of groups, each with a
/// majority of its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    group_of: BTreeMap<i64, i64>,
    weight_of: BTreeMap<i64, u64>,
    group_weight: BTreeMap<i64, u64>,
    /// Groups whose weight is not zero (`numGroups` after `computeGroupWeight`).
    groups_counted: usize,
}

/// The quorum rules of one ensemble configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVerifier {
    members: BTreeMap<i64, Member>,
    voters: BTreeSet<i64>,
    hierarchy: Option<Hierarchy>,
    /// The config version (`version=` in the string, hex); 0 for a static `zoo.cfg`.
    version: i64,
}

/// Why a hierarchical configuration cannot be used (`QuorumHierarchical.readConfigFile`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// A participant that no `group.N` line names.
    #[error("server {0} is a participant but is in no group")]
    NotInGroup(i64),
    /// A server named by two `group.N` lines.
    #[error("server {0} is in more than one group")]
    InTwoGroups(i64),
}

impl QuorumVerifier {
    /// Majority quorums (`QuorumMaj`): more than half of the participants.
    pub fn majority(members: impl IntoIterator<Item = Member>, version: i64) -> QuorumVerifier {
        let members: BTreeMap<i64, Member> = members.into_iter().map(|m| (m.sid, m)).collect();
        let voters = members.values().filter(|m| m.participant).map(|m| m.sid).collect();
        QuorumVerifier {
            members,
            voters,
            hierarchy: None,
            version,
        }
    }

    /// Hierarchical quorums from `group.<gid>` (member sids) and `weight.<sid>` lines; a participant
    /// without a weight weighs 1.
    pub fn hierarchical(
        members: impl IntoIterator<Item = Member>,
        groups: &BTreeMap<i64, Vec<i64>>,
        weights: &BTreeMap<i64, u64>,
        version: i64,
    ) -> Result<QuorumVerifier, QuorumError> {
        let mut verifier = QuorumVerifier::majority(members, version);
        let mut group_of = BTreeMap::new();
        for (&gid, sids) in groups {
            for &sid in sids {
                if group_of.insert(sid, gid).is_some() {
                    return Err(QuorumError::InTwoGroups(sid));
                }
            }
        }
        let mut weight_of = weights.clone();
        for &sid in &verifier.voters {
            if !group_of.contains_key(&sid) {
                return Err(QuorumError::NotInGroup(sid));
            }
            weight_of.entry(sid).or_insert(1);
        }
        let mut group_weight: BTreeMap<i64, u64> = groups.keys().map(|&gid| (gid, 0)).collect();
        for (&sid, &gid) in &group_of {
            *group_weight.entry(gid).or_insert(0) += weight_of.get(&sid).copied().unwrap_or(0);
        }
        let groups_counted = group_weight.values().filter(|&&w| w != 0).count();
        verifier.hierarchy = Some(Hierarchy {
            group_of,
            weight_of,
            group_weight,
            groups_counted,
        });
        Ok(verifier)
    }

    /// Whether `sid` votes in this configuration.
    pub fn is_voter(&self, sid: i64) -> bool {
        self.voters.contains(&sid)
    }

    /// The voting members, in sid order.
    pub fn voters(&self) -> impl Iterator<Item = i64> + '_ {
        self.voters.iter().copied()
    }

    /// Every member, voters and observers.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }

    /// The config version.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// A server's weight: 1 under majority rules; its `weight.N` (default 1) when hierarchical.
    /// A candidate of weight 0 never wins an election.
    pub fn weight(&self, sid: i64) -> u64 {
        match &self.hierarchy {
            None => 1,
            Some(h) => h.weight_of.get(&sid).copied().unwrap_or(0),
        }
    }

    /// Whether the voters among `sids` form a quorum (`containsQuorum`).
    pub fn contains_quorum(&self, sids: &BTreeSet<i64>) -> bool {
        let voters = sids.iter().filter(|sid| self.voters.contains(sid));
        match &self.hierarchy {
            None => voters.count() > self.voters.len() / 2,
            Some(h) => {
                let mut weight_by_group: BTreeMap<i64, u64> = BTreeMap::new();
                for sid in voters {
                    if let Some(&gid) = h.group_of.get(sid) {
                        *weight_by_group.entry(gid).or_insert(0) += h.weight_of.get(sid).copied().unwrap_or(0);
                    }
                }
                let groups_with_majority = weight_by_group
                    .iter()
                    .filter(|(gid, &weight)| weight > h.group_weight.get(gid).copied().unwrap_or(0) / 2)
                    .count();
                !sids.is_empty() && groups_with_majority > h.groups_counted / 2
            }
        }
    }

    /// The ensemble as ZooKeeper writes it into notifications, NEWLEADER and `/zookeeper/config`:
    /// a `server.N=` line per member, the `group.`/`weight.` lines when hierarchical, then
    /// `version=<hex>` with no newline after it.
    pub fn config_string(&self) -> String {
        let mut out = String::new();
        for member in self.members.values() {
            out.push_str(&format!("server.{}={}\n", member.sid, member.line));
        }
        if let Some(h) = &self.hierarchy {
            let mut by_group: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for (sid, gid) in &h.group_of {
                by_group.entry(*gid).or_default().push(sid.to_string());
            }
            for (gid, sids) in by_group {
                out.push_str(&format!("group.{gid}={}\n", sids.join(":")));
            }
            for (sid, weight) in &h.weight_of {
                out.push_str(&format!("weight.{sid}={weight}\n"));
            }
        }
        out.push_str(&format!("version={:x}", self.version));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Member `sid` on 127.0.0.1 with ports 2887+sid and 3887+sid (shared by zab's unit tests).
    pub(crate) fn member(sid: i64, participant: bool) -> Member {
        let role = if participant { "participant" } else { "observer" };
        Member {
            sid,
            participant,
            line: format!("127.0.0.1:{}:{}:{role}", 2887 + sid, 3887 + sid),
        }
    }

    fn set(sids: &[i64]) -> BTreeSet<i64> {
        sids.iter().copied().collect()
    }

    #[test]
    fn majority_counts_participants_only() {
        let qv = QuorumVerifier::majority([member(1, true), member(2, true), member(3, true), member(4, false)], 0);
        assert!(!qv.contains_quorum(&set(&[1])));
        assert!(!qv.contains_quorum(&set(&[1, 4])), "an observer does not make a quorum");
        assert!(qv.contains_quorum(&set(&[1, 3])));
        assert!(qv.is_voter(2) && !qv.is_voter(4) && !qv.is_voter(9));
        let four = QuorumVerifier::majority((1..=4).map(|sid| member(sid, true)), 0);
        assert!(!four.contains_quorum(&set(&[1, 2])), "half of four is not a majority");
        assert!(four.contains_quorum(&set(&[1, 2, 3])));
    }

    #[test]
    fn config_string_is_what_zookeeper_sends() {
        let qv = QuorumVerifier::majority((1..=3).map(|sid| member(sid, true)), 0);
        assert_eq!(
            qv.config_string(),
            "server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\n\
             server.3=127.0.0.1:2890:3890:participant\nversion=0"
        );
        let versioned = QuorumVerifier::majority([member(1, true)], 0x1_0000_0002);
        assert!(versioned.config_string().ends_with("\nversion=100000002"));
    }

    #[test]
    fn hierarchical_needs_a_majority_of_groups_each_with_a_majority_of_weight() {
        let members = (1..=6).map(|sid| member(sid, true));
        let groups = BTreeMap::from([(1, vec![1, 2, 3]), (2, vec![4, 5]), (3, vec![6])]);
        let weights = BTreeMap::from([(4, 2), (6, 0)]);
        let qv = QuorumVerifier::hierarchical(members, &groups, &weights, 0).unwrap();
        // Group 3 weighs 0 and does not count: two groups are counted, so both need a majority.
        assert!(!qv.contains_quorum(&set(&[1, 2])));
        assert!(
            qv.contains_quorum(&set(&[1, 2, 4])),
            "group 1 by 2 of 3, group 2 by weight 2 of 3"
        );
        assert!(
            !qv.contains_quorum(&set(&[1, 2, 5])),
            "weight 1 of 3 is no majority of group 2"
        );
        assert_eq!((qv.weight(4), qv.weight(5), qv.weight(6)), (2, 1, 0));
        assert!(qv
            .config_string()
            .contains("group.1=1:2:3\ngroup.2=4:5\ngroup.3=6\nweight.1=1\n"));
        let missing = QuorumVerifier::hierarchical(
            [member(1, true), member(2, true)],
            &BTreeMap::from([(1, vec![1])]),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(missing, Err(QuorumError::NotInGroup(2)));
        let twice = QuorumVerifier::hierarchical(
            [member(1, true)],
            &BTreeMap::from([(1, vec![1]), (2, vec![1])]),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(twice, Err(QuorumError::InTwoGroups(1)));
    }
}
