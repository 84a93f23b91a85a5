//! Which request comes next in each workload, and the node layout the workloads share. Pure and
//! seeded: the same seed gives the same request sequence, so a run can be replayed.

use std::fmt::Write as _;

use bytes::BytesMut;

use crate::wire::{encode_request, Request};

/// Root of everything the benchmark creates.
pub const ROOT: &str = "/bench";
/// Parent of the keys read and written by setData/getData/exists/mixed.
pub const KEYS: &str = "/bench/keys";
/// The node with many children that getChildren lists.
pub const WIDE: &str = "/bench/wide";
/// Parent of nodes made by the create workload.
pub const CREATED: &str = "/bench/created";
/// Parent of the populate tree: `/bench/big/<n / FANOUT>/<n % FANOUT>`.
pub const BIG: &str = "/bench/big";
/// The node every fan-out watcher watches.
pub const WATCHED: &str = "/bench/watched";
/// Children per parent in the populate tree.
pub const FANOUT: u64 = 1_000;

/// A request-driven workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// create a new node with `data_bytes` of data.
    Create,
    /// setData on a random key.
    SetData,
    /// getData on a random key.
    GetData,
    /// exists on a random key.
    Exists,
    /// getChildren of the wide node.
    GetChildren,
    /// 90% getData, 10% setData on random keys.
    Mixed,
    /// create `count` nodes in the populate tree, then stop.
    Populate,
}

impl Workload {
    /// Name used in results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::SetData => "setData",
            Workload::GetData => "getData",
            Workload::Exists => "exists",
            Workload::GetChildren => "getChildren",
            Workload::Mixed => "mixed",
            Workload::Populate => "populate",
        }
    }
}

/// xorshift64*: tiny, seeded, good enough to spread keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0; the modulo bias is negligible for the small n used here).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }
}

/// Path of key `i`.
pub fn key_path(i: u64, out: &mut String) {
    out.clear();
    let _ = write!(out, "{KEYS}/k{i}");
}

/// Path of populate node `n`.
pub fn big_path(n: u64, out: &mut String) {
    out.clear();
    let _ = write!(out, "{BIG}/{}/{}", n / FANOUT, n % FANOUT);
}

/// Path of the `n`-th node made by the create workload in run `run`.
pub fn created_path(run: u32, n: u64, out: &mut String) {
    out.clear();
    let _ = write!(out, "{CREATED}/r{run}-{n}");
}

/// Produces each session's requests.
#[derive(Debug)]
pub struct Picker {
    workload: Workload,
    rng: Rng,
    keys: u64,
    run: u32,
    data: Vec<u8>,
    path: String,
}

impl Picker {
    /// A picker for one session. `keys` is the number of keys the key workloads spread over.
    pub fn new(workload: Workload, seed: u64, keys: u64, data_bytes: usize, run: u32) -> Picker {
        assert!(keys > 0);
        Picker {
            workload,
            rng: Rng::new(seed),
            keys,
            run,
            data: vec![b'x'; data_bytes],
            path: String::with_capacity(64),
        }
    }

    /// Appends the next request frame to `out`. `sequence` is a number unique across the run
    /// (the create and populate workloads name nodes after it). Returns true for a write.
    pub fn encode_next(&mut self, xid: i32, sequence: u64, out: &mut BytesMut) -> bool {
        let request = match self.workload {
            Workload::Create => {
                created_path(self.run, sequence, &mut self.path);
                Request::Create {
                    path: &self.path,
                    data: &self.data,
                }
            }
            Workload::Populate => {
                big_path(sequence, &mut self.path);
                Request::Create {
                    path: &self.path,
                    data: &self.data,
                }
            }
            Workload::SetData => {
                key_path(self.rng.below(self.keys), &mut self.path);
                Request::SetData {
                    path: &self.path,
                    data: &self.data,
                }
            }
            Workload::GetData => {
                key_path(self.rng.below(self.keys), &mut self.path);
                Request::GetData {
                    path: &self.path,
                    watch: false,
                }
            }
            Workload::Exists => {
                key_path(self.rng.below(self.keys), &mut self.path);
                Request::Exists {
                    path: &self.path,
                    watch: false,
                }
            }
            Workload::GetChildren => Request::GetChildren {
                path: WIDE,
                watch: false,
            },
            Workload::Mixed => {
                let write = self.rng.below(10) == 0;
                key_path(self.rng.below(self.keys), &mut self.path);
                if write {
                    Request::SetData {
                        path: &self.path,
                        data: &self.data,
                    }
                } else {
                    Request::GetData {
                        path: &self.path,
                        watch: false,
                    }
                }
            }
        };
        let write = matches!(request, Request::Create { .. } | Request::SetData { .. });
        encode_request(xid, &request, out);
        write
    }
}

#[cfg(test)]
mod tests {
    use ferrokeeper::jute::Decode;
    use ferrokeeper::proto::{CreateRequest, PathWatchRequest, RequestHeader};

    use super::*;
    use crate::wire::next_frame;

    #[test]
    fn mixed_is_about_ten_percent_writes_and_deterministic() {
        let mut a = Picker::new(Workload::Mixed, 42, 1_000, 100, 0);
        let mut b = Picker::new(Workload::Mixed, 42, 1_000, 100, 0);
        let (mut out_a, mut out_b) = (BytesMut::new(), BytesMut::new());
        let mut writes = 0;
        for i in 0..100_000 {
            let wa = a.encode_next(i, 0, &mut out_a);
            let wb = b.encode_next(i, 0, &mut out_b);
            assert_eq!(wa, wb);
            writes += u32::from(wa);
        }
        assert_eq!(out_a, out_b);
        assert!((9_500..10_500).contains(&writes), "{writes} writes in 100000");
    }

    #[test]
    fn keys_cover_the_key_range() {
        let mut picker = Picker::new(Workload::GetData, 7, 10, 0, 0);
        let mut seen = [false; 10];
        let mut out = BytesMut::new();
        for i in 0..1_000 {
            assert!(!picker.encode_next(i, 0, &mut out));
            let mut frame = next_frame(&mut out).unwrap().unwrap();
            assert_eq!(RequestHeader::decode(&mut frame).unwrap().op, 4);
            let path = PathWatchRequest::decode(&mut frame).unwrap().path;
            let k: usize = path.strip_prefix("/bench/keys/k").unwrap().parse().unwrap();
            seen[k] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn populate_names_nodes_under_their_parent() {
        let mut path = String::new();
        big_path(0, &mut path);
        assert_eq!(path, "/bench/big/0/0");
        big_path(999_999, &mut path);
        assert_eq!(path, "/bench/big/999/999");
        let mut picker = Picker::new(Workload::Populate, 1, 1, 100, 0);
        let mut out = BytesMut::new();
        assert!(picker.encode_next(1, 1_234, &mut out));
        let mut frame = next_frame(&mut out).unwrap().unwrap();
        RequestHeader::decode(&mut frame).unwrap();
        let create = CreateRequest::decode(&mut frame).unwrap();
        assert_eq!(create.path, "/bench/big/1/234");
        assert_eq!(create.data.unwrap().len(), 100);
    }

    #[test]
    fn created_names_are_unique_per_run_and_sequence() {
        let (mut a, mut b) = (String::new(), String::new());
        created_path(1, 5, &mut a);
        created_path(2, 5, &mut b);
        assert_ne!(a, b);
        assert_eq!(a, "/bench/created/r1-5");
    }

    #[test]
    fn rng_is_seeded() {
        let mut a = Rng::new(0);
        let mut b = Rng::new(0);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
