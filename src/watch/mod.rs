//! Watch tables and ZooKeeper's trigger rules (PROTOCOL.md §2.10; `WatchManager`,
//! `WatcherModeManager`, `PathParentIterator`, `DataTree.setWatches`).
//!
//! Owns: who watches what. Two tables, data and child, each mapping path → watcher → mode, with a
//! reverse index per watcher so a closing connection drops its watches in one pass (no leak).
//! A watcher is a connection id: one connection gets at most one event per trigger.
//! Must not touch: the tree (it receives `Trigger`s from apply), sockets, time.

use std::collections::{BTreeMap, HashMap, HashSet};

use foldhash::fast::RandomState;

use crate::proto::consts::event_type::{NODE_CHILDREN_CHANGED, NODE_CREATED, NODE_DATA_CHANGED, NODE_DELETED};
use crate::tree::{split_parent, Trigger};

/// Identifies the holder of a watch (a client connection).
pub type WatcherId = u64;

/// How a watch behaves when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Fires once, then is removed.
    Standard,
    /// Stays; fires for the exact path.
    Persistent,
    /// Stays; fires for the path and all descendants, never for NodeChildrenChanged.
    PersistentRecursive,
}

/// Which table(s) an operation addresses (`WatcherType`: 1 children, 2 data, 3 any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherType {
    /// Child table.
    Children,
    /// Data table.
    Data,
    /// Both.
    Any,
}

impl WatcherType {
    /// Maps the wire value.
    pub fn from_i32(value: i32) -> Option<WatcherType> {
        match value {
            1 => Some(WatcherType::Children),
            2 => Some(WatcherType::Data),
            3 => Some(WatcherType::Any),
            _ => None,
        }
    }
}

/// One event to deliver: to `watcher`, event type and the changed node's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The connection to notify.
    pub watcher: WatcherId,
    /// `EventType` wire value.
    pub event_type: i32,
    /// Path of the changed node (not of the watch).
    pub path: String,
}

/// foldhash rather than SipHash: a fan-out to 1,000 watchers hashes the path and each watcher
/// id several times per watcher (README, BENCHMARKS).
type Map<K, V> = HashMap<K, V, RandomState>;
type Set<T> = HashSet<T, RandomState>;

#[derive(Debug, Default)]
struct WatchTable {
    by_path: Map<String, Map<WatcherId, WatchMode>>,
    by_watcher: Map<WatcherId, Set<String>>,
    /// Number of recursive entries; ancestors are only walked when this is non-zero.
    recursive_count: usize,
}

impl WatchTable {
    fn add(&mut self, path: &str, watcher: WatcherId, mode: WatchMode) {
        // Look up before inserting: the path is copied only for a path nobody watched yet.
        let entry = match self.by_path.get_mut(path) {
            Some(entry) => entry,
            None => self.by_path.entry(path.to_owned()).or_default(),
        };
        // One mode per (watcher, path, table): registering again overwrites (ZOOKEEPER-4466 is 3.9).
        if let Some(old) = entry.insert(watcher, mode) {
            if old == WatchMode::PersistentRecursive {
                self.recursive_count -= 1;
            }
        }
        if mode == WatchMode::PersistentRecursive {
            self.recursive_count += 1;
        }
        let paths = self.by_watcher.entry(watcher).or_default();
        if !paths.contains(path) {
            paths.insert(path.to_owned());
        }
    }

    fn remove(&mut self, path: &str, watcher: WatcherId) -> bool {
        let Some(entry) = self.by_path.get_mut(path) else { return false };
        let Some(mode) = entry.remove(&watcher) else { return false };
        if mode == WatchMode::PersistentRecursive {
            self.recursive_count -= 1;
        }
        if entry.is_empty() {
            self.by_path.remove(path);
        }
        if let Some(paths) = self.by_watcher.get_mut(&watcher) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_watcher.remove(&watcher);
            }
        }
        true
    }

    fn remove_watcher(&mut self, watcher: WatcherId) {
        let Some(paths) = self.by_watcher.remove(&watcher) else { return };
        for path in paths {
            if let Some(entry) = self.by_path.get_mut(&path) {
                if entry.remove(&watcher) == Some(WatchMode::PersistentRecursive) {
                    self.recursive_count -= 1;
                }
                if entry.is_empty() {
                    self.by_path.remove(&path);
                }
            }
        }
    }

    /// `WatchManager.triggerWatch`: the exact path, then (only if recursive watches exist) each
    /// ancestor up to `/`. Returns the watchers that fire; one-shot entries are removed.
    fn trigger(&mut self, path: &str, event_type: i32) -> Set<WatcherId> {
        let mut fired = Set::default();
        if let Some(entry) = self.by_path.get_mut(path) {
            fired.reserve(entry.len());
            let by_watcher = &mut self.by_watcher;
            // One-shot entries fire and go in one pass over the path's watchers.
            entry.retain(|&watcher, &mut mode| {
                if mode == WatchMode::PersistentRecursive && event_type == NODE_CHILDREN_CHANGED {
                    return true;
                }
                fired.insert(watcher);
                if mode != WatchMode::Standard {
                    return true;
                }
                if let Some(paths) = by_watcher.get_mut(&watcher) {
                    paths.remove(path);
                    if paths.is_empty() {
                        by_watcher.remove(&watcher);
                    }
                }
                false
            });
            if entry.is_empty() {
                self.by_path.remove(path);
            }
        }
        if self.recursive_count > 0 && event_type != NODE_CHILDREN_CHANGED {
            let mut ancestor = path;
            while let Some((parent, _)) = split_parent(ancestor) {
                if parent == ancestor {
                    break;
                }
                if let Some(entry) = self.by_path.get(parent) {
                    for (&watcher, &mode) in entry {
                        if mode == WatchMode::PersistentRecursive {
                            fired.insert(watcher);
                        }
                    }
                }
                ancestor = parent;
            }
        }
        fired
    }

    fn contains(&self, path: &str, watcher: Option<WatcherId>) -> bool {
        match (self.by_path.get(path), watcher) {
            (Some(entry), None) => !entry.is_empty(),
            (Some(entry), Some(w)) => entry.contains_key(&w),
            (None, _) => false,
        }
    }
}

/// Both watch tables.
#[derive(Debug, Default)]
pub struct WatchManager {
    data: WatchTable,
    child: WatchTable,
}

impl WatchManager {
    /// A data watch (getData/exists with watch=true): one-shot.
    pub fn add_data_watch(&mut self, path: &str, watcher: WatcherId) {
        self.data.add(path, watcher, WatchMode::Standard);
    }

    /// A child watch (getChildren with watch=true): one-shot.
    pub fn add_child_watch(&mut self, path: &str, watcher: WatcherId) {
        self.child.add(path, watcher, WatchMode::Standard);
    }

    /// addWatch: registers the mode in both tables, whether or not the node exists.
    pub fn add_persistent_watch(&mut self, path: &str, watcher: WatcherId, recursive: bool) {
        let mode = if recursive { WatchMode::PersistentRecursive } else { WatchMode::Persistent };
        self.data.add(path, watcher, mode);
        self.child.add(path, watcher, mode);
    }

    /// Turns tree triggers into deliveries, in trigger order (`DataTree` create/delete/setData).
    pub fn trigger(&mut self, triggers: &[Trigger], deliveries: &mut Vec<Delivery>) {
        for trigger in triggers {
            match trigger {
                Trigger::Created(path) => {
                    let fired = self.data.trigger(path, NODE_CREATED);
                    push(deliveries, fired, NODE_CREATED, path);
                    self.fire_parent_children_changed(path, deliveries);
                }
                Trigger::Deleted(path) => {
                    // A connection watching both tables hears of the delete once.
                    let data_fired = self.data.trigger(path, NODE_DELETED);
                    let child_fired = self.child.trigger(path, NODE_DELETED);
                    push(deliveries, data_fired.union(&child_fired).copied().collect(), NODE_DELETED, path);
                    self.fire_parent_children_changed(path, deliveries);
                }
                Trigger::DataChanged(path) => {
                    let fired = self.data.trigger(path, NODE_DATA_CHANGED);
                    push(deliveries, fired, NODE_DATA_CHANGED, path);
                }
            }
        }
    }

    fn fire_parent_children_changed(&mut self, path: &str, deliveries: &mut Vec<Delivery>) {
        if let Some((parent, _)) = split_parent(path) {
            let fired = self.child.trigger(parent, NODE_CHILDREN_CHANGED);
            push(deliveries, fired, NODE_CHILDREN_CHANGED, parent);
        }
    }

    /// removeWatches: drops this watcher's entry for `path` in the chosen table(s), whatever its
    /// mode. Returns false (NoWatcher) when nothing was removed.
    pub fn remove_watches(&mut self, path: &str, watcher: WatcherId, watcher_type: WatcherType) -> bool {
        match watcher_type {
            WatcherType::Children => self.child.remove(path, watcher),
            WatcherType::Data => self.data.remove(path, watcher),
            WatcherType::Any => {
                let child = self.child.remove(path, watcher);
                let data = self.data.remove(path, watcher);
                child || data
            }
        }
    }

    /// checkWatches: true if *any* connection watches exactly `path` in the chosen table, or the
    /// caller holds an entry there (`WatchManager.containsWatcher` quirk, PROTOCOL.md §2.10).
    pub fn check_watches(&self, path: &str, watcher: WatcherId, watcher_type: WatcherType) -> bool {
        let data = self.data.contains(path, None) || self.data.contains(path, Some(watcher));
        let child = self.child.contains(path, None) || self.child.contains(path, Some(watcher));
        match watcher_type {
            WatcherType::Children => child,
            WatcherType::Data => data,
            WatcherType::Any => child || data,
        }
    }

    /// Drops every watch of a closed connection.
    pub fn remove_watcher(&mut self, watcher: WatcherId) {
        self.data.remove_watcher(watcher);
        self.child.remove_watcher(watcher);
    }

    /// Total watch entries in both tables (`zk_watch_count`).
    pub fn watch_count(&self) -> usize {
        self.data.by_path.values().map(HashMap::len).sum::<usize>()
            + self.child.by_path.values().map(HashMap::len).sum::<usize>()
    }

    /// Data table summary for `wchs`: (watchers, paths, watches).
    pub fn data_summary(&self) -> (usize, usize, usize) {
        let watches = self.data.by_path.values().map(HashMap::len).sum();
        (self.data.by_watcher.len(), self.data.by_path.len(), watches)
    }

    /// Data table by watcher, for `wchc` (sorted for stable output).
    pub fn data_by_watcher(&self) -> BTreeMap<WatcherId, Vec<String>> {
        self.data
            .by_watcher
            .iter()
            .map(|(w, paths)| {
                let mut paths: Vec<String> = paths.iter().cloned().collect();
                paths.sort();
                (*w, paths)
            })
            .collect()
    }

    /// Data table by path, for `wchp` (sorted for stable output).
    pub fn data_by_path(&self) -> BTreeMap<String, Vec<WatcherId>> {
        self.data
            .by_path
            .iter()
            .map(|(p, watchers)| {
                let mut watchers: Vec<WatcherId> = watchers.keys().copied().collect();
                watchers.sort();
                (p.clone(), watchers)
            })
            .collect()
    }
}

fn push(deliveries: &mut Vec<Delivery>, mut fired: Set<WatcherId>, event_type: i32, path: &str) {
    let mut watchers: Vec<WatcherId> = fired.drain().collect();
    watchers.sort_unstable();
    deliveries.extend(watchers.into_iter().map(|watcher| Delivery { watcher, event_type, path: path.to_owned() }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(w: &mut WatchManager, trigger: Trigger) -> Vec<(WatcherId, i32, String)> {
        let mut out = Vec::new();
        w.trigger(&[trigger], &mut out);
        out.into_iter().map(|d| (d.watcher, d.event_type, d.path)).collect()
    }

    #[test]
    fn standard_watches_fire_once() {
        let mut w = WatchManager::default();
        w.add_data_watch("/a", 1);
        assert_eq!(fire(&mut w, Trigger::DataChanged("/a".into())), vec![(1, NODE_DATA_CHANGED, "/a".into())]);
        assert!(fire(&mut w, Trigger::DataChanged("/a".into())).is_empty());
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn create_fires_data_on_node_and_children_on_parent() {
        let mut w = WatchManager::default();
        w.add_data_watch("/a/b", 1);
        w.add_child_watch("/a", 2);
        assert_eq!(
            fire(&mut w, Trigger::Created("/a/b".into())),
            vec![(1, NODE_CREATED, "/a/b".into()), (2, NODE_CHILDREN_CHANGED, "/a".into())]
        );
    }

    #[test]
    fn delete_notifies_each_watcher_once() {
        let mut w = WatchManager::default();
        w.add_data_watch("/a", 1);
        w.add_child_watch("/a", 1);
        w.add_child_watch("/a", 2);
        assert_eq!(
            fire(&mut w, Trigger::Deleted("/a".into())),
            vec![(1, NODE_DELETED, "/a".into()), (2, NODE_DELETED, "/a".into())]
        );
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn persistent_and_recursive_rules() {
        let mut w = WatchManager::default();
        w.add_persistent_watch("/p", 1, false);
        w.add_persistent_watch("/p", 2, true);
        // Child created under /p: persistent sees NodeChildrenChanged on /p; recursive sees NodeCreated.
        assert_eq!(
            fire(&mut w, Trigger::Created("/p/c".into())),
            vec![(2, NODE_CREATED, "/p/c".into()), (1, NODE_CHILDREN_CHANGED, "/p".into())]
        );
        assert_eq!(fire(&mut w, Trigger::DataChanged("/p/c/d".into())), vec![(2, NODE_DATA_CHANGED, "/p/c/d".into())]);
        assert_eq!(
            fire(&mut w, Trigger::DataChanged("/p".into())),
            vec![(1, NODE_DATA_CHANGED, "/p".into()), (2, NODE_DATA_CHANGED, "/p".into())]
        );
        assert_eq!(w.watch_count(), 4);
    }

    #[test]
    fn re_registering_overwrites_the_mode() {
        let mut w = WatchManager::default();
        w.add_persistent_watch("/p", 1, false);
        w.add_data_watch("/p", 1);
        fire(&mut w, Trigger::DataChanged("/p".into()));
        assert!(fire(&mut w, Trigger::DataChanged("/p".into())).is_empty());
        // The child-table entry is still persistent, so a delete is still reported.
        assert_eq!(fire(&mut w, Trigger::Deleted("/p".into())), vec![(1, NODE_DELETED, "/p".into())]);
    }

    #[test]
    fn closing_a_connection_drops_all_its_watches() {
        let mut w = WatchManager::default();
        w.add_data_watch("/a", 1);
        w.add_child_watch("/b", 1);
        w.add_persistent_watch("/c", 1, true);
        w.add_data_watch("/a", 2);
        w.remove_watcher(1);
        assert_eq!(w.watch_count(), 1);
        assert!(fire(&mut w, Trigger::DataChanged("/c/x".into())).is_empty());
    }

    #[test]
    fn remove_and_check_watches() {
        let mut w = WatchManager::default();
        w.add_data_watch("/a", 1);
        assert!(w.check_watches("/a", 2, WatcherType::Data));
        assert!(!w.check_watches("/a", 2, WatcherType::Children));
        assert!(!w.remove_watches("/a", 2, WatcherType::Any));
        assert!(w.remove_watches("/a", 1, WatcherType::Any));
        assert!(!w.check_watches("/a", 1, WatcherType::Any));
    }
}
