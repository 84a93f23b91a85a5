//! Encoded child lists of nodes with many children, as a getChildren reply carries them: a listing
//! of 1,000 names is encoded once and copied into every later reply until a child is added or
//! removed (the tree forgets the parent's listing in the same call that links or unlinks the
//! child, and a deleted node's own, since its id may be reused). Encoding walks every child node
//! (scattered over the slab): a 1 x 1 getChildren of 1,000 children took 49 us of server CPU
//! encoding them per request, 39 us copying a kept listing (two runs of scripts/bench.sh on one
//! machine, README, BENCHMARKS).
//!
//! Bounded: at most `BYTES_MAX` bytes of listings; keeping one more evicts others first.

use std::collections::HashMap;

use super::NodeId;

/// Nodes with fewer children are encoded from the tree every time: short lists are cheap to
/// encode, and leaving them out keeps the map small.
pub const CHILDREN_MIN: u32 = 64;
/// Bytes of listings kept at most (about 1,200 listings of 1,000 twelve-byte names).
const BYTES_MAX: usize = 16 << 20;

/// One node's encoded child list.
#[derive(Debug)]
pub struct Listing {
    /// The names as a jute string vector (count, then length and bytes of each name).
    pub encoded: Vec<u8>,
    /// The names' lengths summed as Java counts them (the read_per_namespace metric).
    pub name_units: usize,
}

/// The listings kept, by node.
#[derive(Debug, Default)]
pub struct Listings {
    by_node: HashMap<NodeId, Listing, foldhash::fast::FixedState>,
    bytes: usize,
}

impl Listings {
    /// The listing of `id`, if kept.
    pub fn get(&self, id: NodeId) -> Option<&Listing> {
        if self.by_node.is_empty() {
            return None;
        }
        self.by_node.get(&id)
    }

    /// Keeps `listing` for `id`, evicting others while the total would pass `BYTES_MAX`; a listing
    /// larger than that on its own is not kept.
    pub fn keep(&mut self, id: NodeId, listing: Listing) {
        self.forget(id);
        let size = listing.encoded.len();
        if size > BYTES_MAX {
            return;
        }
        // Bounded: each turn removes one listing.
        while self.bytes + size > BYTES_MAX {
            let Some(&victim) = self.by_node.keys().next() else { break };
            self.forget(victim);
        }
        self.bytes += size;
        self.by_node.insert(id, listing);
    }

    /// Drops the listing of `id` (a child was added or removed).
    #[inline]
    pub fn forget(&mut self, id: NodeId) {
        if self.by_node.is_empty() {
            return;
        }
        if let Some(gone) = self.by_node.remove(&id) {
            self.bytes -= gone.encoded.len();
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every listing kept (for the tree's invariant check).
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &Listing)> {
        self.by_node.iter().map(|(&id, listing)| (id, listing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(bytes: usize) -> Listing {
        Listing { encoded: vec![7; bytes], name_units: bytes }
    }

    #[test]
    fn keeps_forgets_and_stays_under_its_byte_bound() {
        let mut listings = Listings::default();
        assert!(listings.get(1).is_none());
        listings.keep(1, listing(100));
        listings.keep(2, listing(50));
        assert_eq!(listings.get(1).map(|l| l.encoded.len()), Some(100));
        assert_eq!(listings.bytes(), 150);
        // Keeping again replaces.
        listings.keep(1, listing(10));
        assert_eq!(listings.bytes(), 60);
        listings.forget(2);
        assert!(listings.get(2).is_none());
        assert_eq!(listings.bytes(), 10);
        // Filling past the bound evicts.
        for id in 10..10 + (BYTES_MAX / (1 << 20)) as NodeId + 5 {
            listings.keep(id, listing(1 << 20));
            assert!(listings.bytes() <= BYTES_MAX);
            assert!(listings.get(id).is_some(), "the listing just kept is there");
        }
        // One larger than the bound is not kept, and takes nothing with it.
        let before = listings.bytes();
        listings.keep(99, listing(BYTES_MAX + 1));
        assert!(listings.get(99).is_none());
        assert_eq!(listings.bytes(), before);
    }
}
