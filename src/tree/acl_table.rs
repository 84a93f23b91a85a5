//! The shared ACL table: every distinct ACL list is stored once and referenced by a `u32` id from
//! each znode, with a reference count (ZooKeeper's `ReferenceCountedACLCache`). Most trees use a
//! handful of distinct lists, so a znode pays 4 bytes for its ACL.

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::Acl;

/// Identifies one interned ACL list.
pub type AclId = u32;

/// Interned ACL lists with reference counts.
#[derive(Debug, Default)]
pub struct AclTable {
    lists: Vec<Option<(Arc<[Acl]>, u64)>>,
    /// foldhash rather than SipHash: every create interns its ACL list, and SipHash over the
    /// list's strings was a visible share of a lone create's CPU (perf, README BENCHMARKS).
    ids: HashMap<Arc<[Acl]>, AclId, foldhash::fast::RandomState>,
    free: Vec<AclId>,
}

impl AclTable {
    /// Takes a reference to `acl`, interning it if new.
    pub fn intern(&mut self, acl: &[Acl]) -> AclId {
        if let Some(&id) = self.ids.get(acl) {
            if let Some((_, refs)) = &mut self.lists[id as usize] {
                *refs += 1;
            }
            return id;
        }
        let list: Arc<[Acl]> = Arc::from(acl);
        let entry = Some((list.clone(), 1));
        let id = match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = entry;
                id
            }
            None => {
                self.lists.push(entry);
                (self.lists.len() - 1) as AclId
            }
        };
        self.ids.insert(list, id);
        id
    }

    /// Takes one more reference to a list already interned.
    pub fn retain(&mut self, id: AclId) {
        if let Some(Some((_, refs))) = self.lists.get_mut(id as usize) {
            *refs += 1;
        }
    }

    /// Drops one reference; the list is forgotten when none remain.
    pub fn release(&mut self, id: AclId) {
        let Some(slot) = self.lists.get_mut(id as usize) else { return };
        let Some((list, refs)) = slot else { return };
        *refs -= 1;
        if *refs == 0 {
            self.ids.remove(list);
            *slot = None;
            self.free.push(id);
        }
    }

    /// The list behind `id`.
    pub fn get(&self, id: AclId) -> Arc<[Acl]> {
        match self.lists.get(id as usize) {
            Some(Some((list, _))) => list.clone(),
            _ => Arc::from(Vec::new()),
        }
    }

    /// The list behind `id`, borrowed (no reference-count traffic on the read path).
    pub fn get_ref(&self, id: AclId) -> &[Acl] {
        match self.lists.get(id as usize) {
            Some(Some((list, _))) => list,
            _ => &[],
        }
    }

    /// Number of distinct lists.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no list is interned.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::open_acl_unsafe;

    #[test]
    fn interning_shares_and_refcounts() {
        let mut table = AclTable::default();
        let a = table.intern(&open_acl_unsafe());
        let b = table.intern(&open_acl_unsafe());
        assert_eq!(a, b);
        assert_eq!(table.len(), 1);
        table.release(a);
        assert_eq!(table.len(), 1);
        table.release(b);
        assert_eq!(table.len(), 0);
    }
}
