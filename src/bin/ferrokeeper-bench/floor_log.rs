//! The log a durable floor server syncs: what no durable server can skip before it answers a
//! write, one small record written into a preallocated file and `fdatasync`ed, as ZooKeeper's and
//! ferrokeeper's transaction logs do for a write on its own (no group commit).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FallocateFlags;

/// Bytes preallocated; records wrap around within them, so the file never grows during a run.
const PREALLOCATED_BYTES: u64 = 4 << 20;

pub struct FloorLog {
    file: File,
    offset: u64,
}

impl FloorLog {
    /// Bytes of one record: about what a setData of a small value takes in either server's log.
    pub const RECORD_BYTES: usize = 128;

    /// Creates (or truncates) `floor.log` in `dir` and preallocates it.
    pub fn create(dir: &Path) -> io::Result<FloorLog> {
        std::fs::create_dir_all(dir)?;
        let file = File::options().read(true).write(true).create(true).truncate(true).open(dir.join("floor.log"))?;
        rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, PREALLOCATED_BYTES)?;
        file.sync_all()?;
        Ok(FloorLog { file, offset: 0 })
    }

    /// Writes one record and waits until it is on the disk.
    pub fn append_synced(&mut self) -> io::Result<()> {
        let record = [0x5au8; Self::RECORD_BYTES];
        self.file.write_all_at(&record, self.offset)?;
        self.file.sync_data()?;
        self.offset = (self.offset + Self::RECORD_BYTES as u64) % PREALLOCATED_BYTES;
        Ok(())
    }
}
