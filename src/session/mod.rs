//! The session table: id allocation, passwords, timeouts and tick-bucketed expiry
//! (`SessionTrackerImpl`, `ExpiryQueue`, `ZooKeeperServer.generatePasswd`; PROTOCOL.md §2.1.2,
//! §2.1.3, §2.14).
//!
//! Owns: which sessions exist, their timeouts and when each expires. Time is an explicit `now_ms`
//! argument (monotonic milliseconds chosen by the caller); nothing here reads a clock.
//! Must not touch: connections, the tree (expiry returns ids; the server turns them into
//! closeSession txns).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::proto::consts::SUPER_SECRET;

/// The 16-byte password of a session: `java.util.Random(sessionId ^ 0xB3415C00).nextBytes(16)`.
/// Deterministic, so every server of an ensemble derives the same one.
pub fn session_password(session_id: i64) -> [u8; 16] {
    let mut random = JavaRandom::new(session_id ^ SUPER_SECRET);
    let mut out = [0u8; 16];
    random.next_bytes(&mut out);
    out
}

/// `java.util.Random`'s 48-bit linear congruential generator, enough of it for `nextBytes`.
struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> JavaRandom {
        JavaRandom { seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK }
    }

    fn next_i32(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as i32
    }

    fn next_bytes(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() {
            let mut r = self.next_i32();
            let n = (out.len() - i).min(4);
            for _ in 0..n {
                out[i] = r as u8;
                r >>= 8;
                i += 1;
            }
        }
    }
}

/// The first session id of a server process (`SessionTrackerImpl.initializeNextSessionId`):
/// top byte = server id, next 40 bits = low bits of the millisecond clock, low 16 bits = counter.
pub fn initial_session_id(server_id: u8, clock_ms: i64) -> i64 {
    let next = ((clock_ms << 24) as u64 >> 8) as i64;
    next | ((server_id as i64) << 56)
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Negotiated timeout.
    pub timeout_ms: i32,
    /// Expiry bucket it sits in.
    pub expires_at_ms: i64,
    /// Set once expiry or close started; the session then accepts no more requests.
    pub closing: bool,
}

/// All sessions and their expiry buckets.
#[derive(Debug)]
pub struct SessionTracker {
    /// foldhash, not SipHash: touched on every request (README, BENCHMARKS).
    sessions: HashMap<i64, Session, foldhash::fast::RandomState>,
    buckets: BTreeMap<i64, BTreeSet<i64>>,
    tick_ms: i64,
    next_session_id: i64,
}

impl SessionTracker {
    /// An empty tracker. `first_session_id` comes from `initial_session_id`.
    pub fn new(tick_ms: i64, first_session_id: i64) -> SessionTracker {
        assert!(tick_ms > 0);
        let sessions = HashMap::default();
        SessionTracker { sessions, buckets: BTreeMap::new(), tick_ms, next_session_id: first_session_id }
    }

    /// Allocates the next session id, skipping 0 and the container marker.
    pub fn next_id(&mut self) -> i64 {
        loop {
            let id = self.next_session_id;
            self.next_session_id = self.next_session_id.wrapping_add(1);
            if id != 0 && id != i64::MIN && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn bucket_for(&self, now_ms: i64, timeout_ms: i32) -> i64 {
        // ExpiryQueue.roundToNextInterval: the end of the tick the deadline falls in.
        ((now_ms + timeout_ms as i64) / self.tick_ms + 1) * self.tick_ms
    }

    /// Registers a session (a createSession txn applied, or a session restored).
    pub fn add(&mut self, session_id: i64, timeout_ms: i32, now_ms: i64) {
        let expires_at_ms = self.bucket_for(now_ms, timeout_ms);
        if let Some(old) = self.sessions.insert(session_id, Session { timeout_ms, expires_at_ms, closing: false }) {
            self.unbucket(session_id, old.expires_at_ms);
        }
        self.buckets.entry(expires_at_ms).or_default().insert(session_id);
    }

    fn unbucket(&mut self, session_id: i64, expires_at_ms: i64) {
        if let Some(bucket) = self.buckets.get_mut(&expires_at_ms) {
            bucket.remove(&session_id);
            if bucket.is_empty() {
                self.buckets.remove(&expires_at_ms);
            }
        }
    }

    /// Pushes expiry out after activity. False if the session is unknown or closing.
    pub fn touch(&mut self, session_id: i64, now_ms: i64) -> bool {
        let Some(session) = self.sessions.get(&session_id) else { return false };
        if session.closing {
            return false;
        }
        let (old, timeout_ms) = (session.expires_at_ms, session.timeout_ms);
        let new = self.bucket_for(now_ms, timeout_ms);
        if new != old {
            self.unbucket(session_id, old);
            self.buckets.entry(new).or_default().insert(session_id);
            if let Some(session) = self.sessions.get_mut(&session_id) {
                session.expires_at_ms = new;
            }
        }
        true
    }

    /// Marks a session closing (close requested or expired); it stays until `remove`.
    pub fn set_closing(&mut self, session_id: i64) {
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.closing = true;
        }
    }

    /// Undoes `set_closing` (the close could not be logged): the session lives on and expires
    /// normally from `now_ms`.
    pub fn reopen(&mut self, session_id: i64, now_ms: i64) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        session.closing = false;
        let timeout_ms = session.timeout_ms;
        self.add(session_id, timeout_ms, now_ms);
    }

    /// Forgets a session (its closeSession txn was applied).
    pub fn remove(&mut self, session_id: i64) {
        if let Some(session) = self.sessions.remove(&session_id) {
            self.unbucket(session_id, session.expires_at_ms);
        }
    }

    /// Sessions whose bucket is at or before `now_ms` and not already closing; marks them closing.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut expired = Vec::new();
        let due: Vec<i64> = self.buckets.range(..=now_ms).map(|(&t, _)| t).collect();
        for t in due {
            if let Some(bucket) = self.buckets.remove(&t) {
                for id in bucket {
                    if let Some(session) = self.sessions.get_mut(&id) {
                        if !session.closing {
                            session.closing = true;
                            expired.push(id);
                        }
                    }
                }
            }
        }
        expired
    }

    /// The session, if alive.
    pub fn get(&self, session_id: i64) -> Option<&Session> {
        self.sessions.get(&session_id)
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Every session id with its timeout, sorted by id (snapshots, `dump`).
    pub fn sessions(&self) -> Vec<(i64, i32)> {
        let mut all: Vec<(i64, i32)> = self.sessions.iter().map(|(&id, s)| (id, s.timeout_ms)).collect();
        all.sort_unstable();
        all
    }

    /// Buckets in time order with their session ids (`dump`).
    pub fn buckets(&self) -> Vec<(i64, Vec<i64>)> {
        self.buckets.iter().map(|(&t, ids)| (t, ids.iter().copied().collect())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Observed on the real server (PROTOCOL.md §2.1.3).
    #[test]
    fn password_matches_java() {
        assert_eq!(hex(&session_password(0x0100_0093_60ef_0000)), "63fb1ccbb42c0beb798cdc131dce4a9e");
    }

    #[test]
    fn session_id_layout() {
        let id = initial_session_id(1, 0x93_60ef);
        assert_eq!(id, 0x0100_0093_60ef_0000);
    }

    #[test]
    fn expiry_is_bucketed_by_tick() {
        let mut tracker = SessionTracker::new(500, 1);
        tracker.add(1, 1000, 0);
        // Deadline 1000 rounds up to the tick boundary 1500; a touch at 600 moves it to 2000.
        assert_eq!(tracker.get(1).unwrap().expires_at_ms, 1500);
        tracker.touch(1, 600);
        assert!(tracker.expire(1999).is_empty());
        assert_eq!(tracker.expire(2000), vec![1]);
        assert!(!tracker.touch(1, 2000), "closing sessions cannot be revived");
        tracker.remove(1);
        assert!(tracker.is_empty());
    }

    #[test]
    fn next_id_skips_zero_and_used() {
        let mut tracker = SessionTracker::new(500, -1);
        assert_eq!(tracker.next_id(), -1);
        assert_eq!(tracker.next_id(), 1);
    }
}
