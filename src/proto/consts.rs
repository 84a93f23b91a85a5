//! Wire constants that are not opcodes or error codes, each with the upstream reason.

/// xid of a watch notification sent by the server (`ClientCnxn.NOTIFICATION_XID`).
pub const XID_NOTIFICATION: i32 = -1;
/// xid of a ping (`ClientCnxn.PING_XID`); answered out of the FIFO by the Java client.
pub const XID_PING: i32 = -2;
/// xid of an auth packet (`ClientCnxn.AUTHPACKET_XID`).
pub const XID_AUTH: i32 = -4;
/// xid of setWatches/setWatches2 (`ClientCnxn.SET_WATCHES_XID`).
pub const XID_SET_WATCHES: i32 = -8;

/// Permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read data and list children.
    pub const READ: i32 = 1;
    /// Set data.
    pub const WRITE: i32 = 2;
    /// Create children.
    pub const CREATE: i32 = 4;
    /// Delete children.
    pub const DELETE: i32 = 8;
    /// Set ACLs.
    pub const ADMIN: i32 = 16;
    /// Everything.
    pub const ALL: i32 = 31;
}

/// Watch event types (`Watcher.Event.EventType`).
pub mod event_type {
    /// Node created.
    pub const NODE_CREATED: i32 = 1;
    /// Node deleted.
    pub const NODE_DELETED: i32 = 2;
    /// Node data changed.
    pub const NODE_DATA_CHANGED: i32 = 3;
    /// Children changed.
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// `KeeperState.SyncConnected`: the only state the server ever sends in a notification.
pub const STATE_SYNC_CONNECTED: i32 = 3;

/// `ZooKeeperServer.superSecret`, mixed into the session password seed.
pub const SUPER_SECRET: i64 = 0xB341_5C00;

/// Persisted `ephemeralOwner` marking a container node (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Top byte 0xFF marks an extended ephemeral type (TTL) when extended types are enabled.
pub const EXTENDED_MASK: i64 = 0xFF00_0000_0000_0000u64 as i64;
/// Largest TTL in ms (40 bits, `EphemeralType.MAX_EXTENDED_SERVER_ID` rules).
pub const MAX_TTL_MS: i64 = 0xFF_FFFF_FFFF;

/// Root of ZooKeeper's own nodes.
pub const ZOOKEEPER_PATH: &str = "/zookeeper";
/// Quota root.
pub const QUOTA_PATH: &str = "/zookeeper/quota";
/// Dynamic config node.
pub const CONFIG_PATH: &str = "/zookeeper/config";
