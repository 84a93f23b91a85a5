//! The txn log's write-ahead journal: where a batch of txns becomes durable, before RocksDB holds
//! it. RocksDB writes the txns family with its own WAL off; its memtables reach SST files by
//! ordinary flushes, and the journal keeps every txn they may not hold yet.
//!
//! Why not RocksDB's WAL: its WAL file grows with every append, so each fdatasync also wrote the
//! file's inode and allocated blocks. Measured on the 2-core Intel VM (README, BENCHMARKS): per
//! acknowledged setData, 3.0 device writes and 16-18 sectors against 2.1 and 8.7 for a process
//! that syncs into a preallocated file, and a lone write took 207-252 us (p50) against 131-137 us.
//! RocksDB's cure (`recycle_log_file_num`) is disabled by RocksDB itself under the torn-tail
//! recovery mode the log needs.
//!
//! Two files, `journal.0` and `journal.1`, each `FILE_BYTES` long and zero-filled when created, so
//! an append never changes a file's size or allocates a block: its fdatasync writes only the pages
//! of the record. Each file opens with a header (magic, generation, CRC32) in its own 4 KiB block;
//! records follow back to back:
//!
//! ```text
//! crc32 (u32, of all that follows) | payload length (u32) | generation (u64) | payload
//! ```
//!
//! A record counts only when it carries its file's generation. A file is taken into use under a
//! generation higher than any before it, so the records of its earlier use stop counting without
//! being erased. When the active file is full the other one is reused, which is safe once the
//! records it holds are in RocksDB's SST files: the caller flushes RocksDB when it takes a file into
//! use and waits for that flush before switching again (`TxnLog`).
//!
//! Replay reads the files in generation order and stops in each at the first record that is not
//! valid: a torn tail, never acknowledged. A record that fails its CRC but is followed by a valid
//! one is damage inside the journal, not a tail, and fails the open, as a damaged record in the
//! middle of a ZooKeeper log does.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};

/// Length of each journal file.
pub const FILE_BYTES: u64 = 16 << 20;
/// The header's block: records start after it.
const HEADER_BYTES: u64 = 4096;
const MAGIC: [u8; 8] = *b"FKJRNL01";
/// Magic, generation, CRC32.
const HEADER_USED: usize = 20;
/// CRC32, payload length, generation.
pub const RECORD_HEADER_BYTES: usize = 16;
/// The largest payload a record holds; a larger batch does not go through the journal.
pub const PAYLOAD_BYTES_MAX: usize = ((FILE_BYTES - HEADER_BYTES) / 4) as usize;
/// Zeros written per call when a file is created.
const ZERO_CHUNK: usize = 256 << 10;

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system refused.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Damage that is not a torn tail.
    #[error("journal {path} is damaged at byte {offset}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The two journal files and where the next record goes.
pub struct Journal {
    paths: [PathBuf; 2],
    files: [File; 2],
    /// Each file's generation: its records count only when they carry it.
    generations: [u64; 2],
    /// The file records are appended to.
    active: usize,
    /// Where the next record goes in the active file.
    end: u64,
}

fn header(generation: u64) -> [u8; HEADER_USED] {
    let mut out = [0u8; HEADER_USED];
    out[..8].copy_from_slice(&MAGIC);
    BigEndian::write_u64(&mut out[8..16], generation);
    let crc = crc32fast::hash(&out[..16]);
    BigEndian::write_u32(&mut out[16..20], crc);
    out
}

/// A record header's fields: (crc, payload length, generation).
fn record_header(bytes: &[u8; RECORD_HEADER_BYTES]) -> (u32, usize, u64) {
    (
        BigEndian::read_u32(&bytes[0..4]),
        BigEndian::read_u32(&bytes[4..8]) as usize,
        BigEndian::read_u64(&bytes[8..16]),
    )
}

/// The CRC a record carries: of its length, generation and payload.
fn record_crc(header_rest: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_rest);
    hasher.update(payload);
    hasher.finalize()
}

impl Journal {
    /// Opens the journal in `dir`, creating its files if they are missing, and calls `visit` with
    /// every valid record (its file, where it starts, its payload), oldest first. Returns the
    /// journal, ready to append after the last valid record, and how many records were visited.
    pub fn open<E: From<JournalError>>(
        dir: &Path,
        mut visit: impl FnMut(&Path, u64, &[u8]) -> Result<(), E>,
    ) -> Result<(Journal, u64), E> {
        let paths = [dir.join("journal.0"), dir.join("journal.1")];
        let (file0, generation0) = open_file(dir, &paths[0])?;
        let (file1, generation1) = open_file(dir, &paths[1])?;
        let mut journal = Journal {
            paths,
            files: [file0, file1],
            generations: [generation0, generation1],
            active: 0,
            end: HEADER_BYTES,
        };
        let newer = usize::from(generation1 > generation0);
        let mut visited = 0;
        for index in [1 - newer, newer] {
            if journal.generations[index] == 0 {
                continue; // never used
            }
            let (end, n) = journal.scan(index, &mut visit)?;
            visited += n;
            journal.active = index;
            journal.end = end;
        }
        if journal.generations[journal.active] == 0 {
            // A new journal: take the first file into use.
            journal.use_file(0, 1).map_err(|source| JournalError::Io {
                path: journal.paths[0].clone(),
                source,
            })?;
        }
        Ok((journal, visited))
    }

    /// Reads the valid records of file `index`; returns where they end and how many there were.
    fn scan<E: From<JournalError>>(
        &self,
        index: usize,
        visit: &mut impl FnMut(&Path, u64, &[u8]) -> Result<(), E>,
    ) -> Result<(u64, u64), E> {
        let (file, path, generation) = (&self.files[index], &self.paths[index], self.generations[index]);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 16, file);
        reader.seek(SeekFrom::Start(HEADER_BYTES)).map_err(io)?;
        let mut offset = HEADER_BYTES;
        let mut visited = 0;
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; RECORD_HEADER_BYTES];
            if !read_or_end(&mut reader, &mut head).map_err(io)? {
                break;
            }
            let (crc, len, record_generation) = record_header(&head);
            if record_generation != generation || len == 0 || !fits(offset, len) {
                break; // zeros, an earlier use's record, or a torn header: the end
            }
            payload.resize(len, 0);
            if !read_or_end(&mut reader, &mut payload).map_err(io)? {
                break;
            }
            let next = offset + (RECORD_HEADER_BYTES + len) as u64;
            if record_crc(&head[4..], &payload) != crc {
                if valid_record_at(file, next, generation) {
                    return Err(JournalError::Damaged {
                        path: path.clone(),
                        offset,
                        reason: "a record fails its CRC check and valid records follow it".into(),
                    }
                    .into());
                }
                break; // a torn tail
            }
            visit(path, offset, &payload)?;
            visited += 1;
            offset = next;
        }
        Ok((offset, visited))
    }

    /// Whether a record with `payload_len` bytes of payload fits in the active file.
    pub fn fits(&self, payload_len: usize) -> bool {
        payload_len <= PAYLOAD_BYTES_MAX && fits(self.end, payload_len)
    }

    /// Appends `record`: `RECORD_HEADER_BYTES` of room for the header (filled here), then the
    /// payload; with `sync` returns once it is on disk. Returns where it starts, for `unappend`.
    /// The caller checks `fits` first.
    pub fn append(&mut self, record: &mut [u8], sync: bool) -> Result<u64, JournalError> {
        let path = &self.paths[self.active];
        let len = record.len().saturating_sub(RECORD_HEADER_BYTES);
        // An empty record would read as the end of the journal, hiding what follows it.
        if record.len() <= RECORD_HEADER_BYTES || !self.fits(len) {
            return Err(JournalError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "empty record, or one that does not fit",
                ),
            });
        }
        BigEndian::write_u32(&mut record[4..8], len as u32);
        BigEndian::write_u64(&mut record[8..16], self.generations[self.active]);
        let crc = record_crc(&record[4..RECORD_HEADER_BYTES], &record[RECORD_HEADER_BYTES..]);
        BigEndian::write_u32(&mut record[0..4], crc);
        let file = &self.files[self.active];
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        file.write_all_at(record, self.end).map_err(io)?;
        if sync {
            file.sync_data().map_err(io)?;
        }
        let at = self.end;
        self.end += record.len() as u64;
        Ok(at)
    }

    /// Takes back the last record, appended at `at` (whose txns could not be applied): zeroes
    /// its header, synced, so a replay ends before it.
    pub fn unappend(&mut self, at: u64) -> Result<(), JournalError> {
        let (file, path) = (&self.files[self.active], &self.paths[self.active]);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        file.write_all_at(&[0u8; RECORD_HEADER_BYTES], at).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.end = at;
        Ok(())
    }

    /// Takes the other file into use under a new generation. Its records must be in RocksDB's
    /// SST files already.
    pub fn switch(&mut self) -> Result<(), JournalError> {
        let other = 1 - self.active;
        let generation = self.next_generation();
        self.use_file(other, generation).map_err(|source| JournalError::Io {
            path: self.paths[other].clone(),
            source,
        })
    }

    /// Makes every record in both files stop counting and starts over in the active file. Every
    /// record must be in RocksDB's SST files already.
    pub fn reset(&mut self) -> Result<(), JournalError> {
        for index in [1 - self.active, self.active] {
            let generation = self.next_generation();
            self.use_file(index, generation).map_err(|source| JournalError::Io {
                path: self.paths[index].clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn next_generation(&self) -> u64 {
        self.generations[0].max(self.generations[1]) + 1
    }

    /// Writes `generation` into file `index`'s header, synced, and appends to it from the start.
    fn use_file(&mut self, index: usize, generation: u64) -> std::io::Result<()> {
        let file = &self.files[index];
        file.write_all_at(&header(generation), 0)?;
        file.sync_data()?;
        self.generations[index] = generation;
        self.active = index;
        self.end = HEADER_BYTES;
        Ok(())
    }
}

/// Opens journal file `path` (creating it if missing) and reads its generation.
fn open_file(dir: &Path, path: &Path) -> Result<(File, u64), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        create(dir, path).map_err(io)?;
    }
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let generation = read_header(&file, path)?;
    Ok((file, generation))
}

/// Whether a record of `payload_len` bytes starting at `offset` ends inside a file.
fn fits(offset: u64, payload_len: usize) -> bool {
    offset.saturating_add((RECORD_HEADER_BYTES + payload_len) as u64) <= FILE_BYTES
}

/// Fills `buffer`; false when the file ends first.
fn read_or_end(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    match reader.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a valid record of `generation` starts at `offset` in `file`.
fn valid_record_at(file: &File, offset: u64, generation: u64) -> bool {
    let mut head = [0u8; RECORD_HEADER_BYTES];
    if file.read_exact_at(&mut head, offset).is_err() {
        return false;
    }
    let (crc, len, record_generation) = record_header(&head);
    if record_generation != generation || len == 0 || !fits(offset, len) {
        return false;
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER_BYTES as u64)
        .is_ok()
        && record_crc(&head[4..], &payload) == crc
}

/// The generation in a file's header. A header that does not check is damage: a header is
/// written (synced) before any record of its generation, in one sector, and a new file gets its
/// name only once its header is on disk.
fn read_header(file: &File, path: &Path) -> Result<u64, JournalError> {
    let mut bytes = [0u8; HEADER_USED];
    let damaged = |reason: &str| JournalError::Damaged {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    };
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(damaged("the file is shorter than its header"))
        }
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    if bytes[..8] != MAGIC {
        return Err(damaged("not a ferrokeeper journal file (wrong magic)"));
    }
    if crc32fast::hash(&bytes[..16]) != BigEndian::read_u32(&bytes[16..20]) {
        return Err(damaged("the header fails its CRC check"));
    }
    Ok(BigEndian::read_u64(&bytes[8..16]))
}

/// Creates a journal file at `path`: zero-filled to `FILE_BYTES`, with a header of generation 0
/// (no records yet), written under a temporary name and renamed once it is on disk.
fn create(dir: &Path, path: &Path) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut written = 0u64;
    while written < FILE_BYTES {
        let n = (FILE_BYTES - written).min(ZERO_CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        written += n as u64;
    }
    file.write_all_at(&header(0), 0)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Journal, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let (journal, n) = Journal::open::<JournalError>(dir, |_, _, p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(n as usize, seen.len());
        (journal, seen)
    }

    fn append(journal: &mut Journal, payload: &[u8]) -> u64 {
        let mut record = vec![0u8; RECORD_HEADER_BYTES];
        record.extend_from_slice(payload);
        journal.append(&mut record, true).unwrap()
    }

    fn tempdir() -> PathBuf {
        let dir = crate::storage::txn_log::tests::tempdir();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_replay_in_order_across_a_switch_and_not_after_a_reset() {
        let dir = tempdir();
        {
            let (mut journal, seen) = open(&dir);
            assert!(seen.is_empty());
            assert_eq!(std::fs::metadata(dir.join("journal.0")).unwrap().len(), FILE_BYTES);
            append(&mut journal, b"one");
            append(&mut journal, b"two");
        }
        {
            let (mut journal, seen) = open(&dir);
            assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
            journal.switch().unwrap();
            append(&mut journal, b"three");
        }
        {
            // Both files' records count, the older file's first.
            let (mut journal, seen) = open(&dir);
            assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
            // Reusing the first file makes its old records stop counting.
            journal.switch().unwrap();
            append(&mut journal, b"four");
        }
        {
            let (mut journal, seen) = open(&dir);
            assert_eq!(seen, vec![b"three".to_vec(), b"four".to_vec()]);
            journal.reset().unwrap();
        }
        let (mut journal, seen) = open(&dir);
        assert!(seen.is_empty());
        append(&mut journal, b"five");
        drop(journal);
        assert_eq!(open(&dir).1, vec![b"five".to_vec()]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Reopens: only the record "kept" replays; `next`, appended then, lands right after it and
    /// replays after it on the next open. Removes `dir`.
    fn replays_only_kept_then_appends_after_it(dir: &Path, next: &[u8]) {
        {
            let (mut journal, seen) = open(dir);
            assert_eq!(seen, vec![b"kept".to_vec()]);
            append(&mut journal, next);
        }
        assert_eq!(open(dir).1, vec![b"kept".to_vec(), next.to_vec()]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempdir();
        let torn_at;
        {
            let (mut journal, _) = open(&dir);
            append(&mut journal, b"kept");
            torn_at = append(&mut journal, &[7u8; 3000]);
        }
        // Tear the last record: its second half never reached the disk.
        let file = OpenOptions::new().write(true).open(dir.join("journal.0")).unwrap();
        file.write_all_at(&[0u8; 1500], torn_at + 1516).unwrap();
        replays_only_kept_then_appends_after_it(&dir, b"after");
    }

    #[test]
    fn an_unappended_record_is_not_replayed() {
        let dir = tempdir();
        {
            let (mut journal, _) = open(&dir);
            append(&mut journal, b"kept");
            let at = append(&mut journal, b"refused");
            journal.unappend(at).unwrap();
        }
        replays_only_kept_then_appends_after_it(&dir, b"next");
    }

    #[test]
    fn damage_before_valid_records_fails_the_open() {
        let dir = tempdir();
        let damaged_at;
        {
            let (mut journal, _) = open(&dir);
            append(&mut journal, b"first");
            damaged_at = append(&mut journal, b"second");
            append(&mut journal, b"third");
        }
        let file = OpenOptions::new().write(true).open(dir.join("journal.0")).unwrap();
        file.write_all_at(b"X", damaged_at + RECORD_HEADER_BYTES as u64 + 2)
            .unwrap();
        match Journal::open::<JournalError>(&dir, |_, _, _| Ok(())) {
            Err(JournalError::Damaged { offset, .. }) => assert_eq!(offset, damaged_at),
            other => panic!("expected damage, got {:?}", other.map(|(_, n)| n)),
        }
        // A damaged header is damage too.
        file.write_all_at(b"Z", 3).unwrap();
        let err = Journal::open::<JournalError>(&dir, |_, _, _| Ok(()))
            .err()
            .expect("open fails");
        assert!(matches!(err, JournalError::Damaged { offset: 0, .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A record as `append` writes it.
    fn record_bytes(generation: u64, payload: &[u8]) -> Vec<u8> {
        let mut record = vec![0u8; RECORD_HEADER_BYTES];
        BigEndian::write_u32(&mut record[4..8], payload.len() as u32);
        BigEndian::write_u64(&mut record[8..16], generation);
        record.extend_from_slice(payload);
        let crc = record_crc(&record[4..RECORD_HEADER_BYTES], payload);
        BigEndian::write_u32(&mut record[0..4], crc);
        record
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever follows a valid header (valid records, then arbitrary bytes, some of them
        /// records of the right generation), opening never panics; when it succeeds, an append
        /// lands right after what it replayed, and a reopen replays both.
        #[test]
        fn arbitrary_bytes_after_the_header_never_panic(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64), 0..4),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            embedded in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..32),
            embed_at in 0usize..512,
        ) {
            let dir = tempdir();
            let mut bytes = header(3).to_vec();
            bytes.resize(HEADER_BYTES as usize, 0);
            for p in &payloads {
                bytes.extend_from_slice(&record_bytes(3, p));
            }
            let mut tail = garbage.clone();
            // Sometimes a valid record of the right generation sits among the garbage.
            let at = embed_at.min(tail.len());
            tail.splice(at..at, record_bytes(3, &embedded));
            bytes.extend_from_slice(&tail);
            std::fs::write(dir.join("journal.0"), &bytes).unwrap();
            let mut other = header(1).to_vec();
            other.resize(HEADER_BYTES as usize, 0);
            std::fs::write(dir.join("journal.1"), &other).unwrap();
            let mut seen = Vec::new();
            let opened = Journal::open::<JournalError>(&dir, |_, _, p| {
                seen.push(p.to_vec());
                Ok(())
            });
            if let Ok((mut journal, _)) = opened {
                proptest::prop_assert!(seen.len() >= payloads.len());
                proptest::prop_assert_eq!(&seen[..payloads.len()], &payloads[..]);
                append(&mut journal, b"appended");
                drop(journal);
                let (_, again) = open(&dir);
                proptest::prop_assert_eq!(&again[..seen.len()], &seen[..]);
                proptest::prop_assert_eq!(again.get(seen.len()).map(Vec::as_slice), Some(&b"appended"[..]));
            }
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn a_full_file_refuses_and_the_other_takes_over() {
        let dir = tempdir();
        let (mut journal, _) = open(&dir);
        let big = vec![1u8; PAYLOAD_BYTES_MAX];
        assert!(!journal.fits(PAYLOAD_BYTES_MAX + 1));
        // An empty record would end a replay: refused.
        assert!(journal.append(&mut [0u8; RECORD_HEADER_BYTES], true).is_err());
        let mut appended = 0;
        while journal.fits(big.len()) {
            append(&mut journal, &big);
            appended += 1;
        }
        assert_eq!(appended, 3);
        let mut record = vec![0u8; RECORD_HEADER_BYTES];
        record.extend_from_slice(&big);
        assert!(journal.append(&mut record, false).is_err());
        journal.switch().unwrap();
        assert!(journal.fits(big.len()));
        append(&mut journal, b"small");
        drop(journal);
        let (_, seen) = open(&dir);
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3], b"small".to_vec());
        std::fs::remove_dir_all(&dir).ok();
    }
}
