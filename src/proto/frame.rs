//! The 4-byte big-endian length framing of the client port (PROTOCOL.md §1.4) and the
//! four-letter-word detection done on a connection's first four bytes (§3.1).

use bytes::{BufMut, BytesMut};

use crate::jute::Encode;
use crate::proto::records::ReplyHeader;

/// ZooKeeper's default `jute.maxbuffer` (0xfffff).
pub const DEFAULT_MAX_FRAME_LEN: usize = 0xfffff;

/// The result of looking at a buffer for a complete frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// Need more bytes; not an error.
    Incomplete,
    /// A complete frame of this many body bytes follows the 4-byte length.
    Complete(usize),
    /// The length prefix is negative or larger than the limit: close the connection.
    BadLength(i32),
}

/// Checks whether `buf` starts with a complete frame whose length is within `max_len`.
pub fn check_frame(buf: &[u8], max_len: usize) -> FrameCheck {
    if buf.len() < 4 {
        return FrameCheck::Incomplete;
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max_len {
        return FrameCheck::BadLength(len);
    }
    if buf.len() < 4 + len as usize {
        FrameCheck::Incomplete
    } else {
        FrameCheck::Complete(len as usize)
    }
}

/// Builds a reply frame: length, header, then whatever `body` writes.
pub fn reply_frame(header: &ReplyHeader, body: impl FnOnce(&mut BytesMut)) -> bytes::Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    header.encode(&mut out);
    body(&mut out);
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// Bytes before a reply's record: the length prefix and the `ReplyHeader` (xid, zxid, err).
pub const REPLY_RECORD_OFFSET: usize = 4 + 4 + 8 + 4;

/// Starts a reply frame whose length and header are written by `finish_reply_frame` once known
/// (a read's error code is only known after running it), so the record can be encoded straight
/// into the frame instead of into a buffer that is then copied.
pub fn start_reply_frame(out: &mut BytesMut) {
    out.clear();
    out.put_bytes(0, REPLY_RECORD_OFFSET);
}

/// Writes the length prefix and `header` into a frame begun with `start_reply_frame`.
pub fn finish_reply_frame(mut out: BytesMut, header: &ReplyHeader) -> bytes::Bytes {
    assert!(out.len() >= REPLY_RECORD_OFFSET, "frame was not started with start_reply_frame");
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out[4..8].copy_from_slice(&header.xid.to_be_bytes());
    out[8..16].copy_from_slice(&header.zxid.to_be_bytes());
    out[16..20].copy_from_slice(&header.err.to_be_bytes());
    out.freeze()
}

/// The four-letter words ZooKeeper 3.8 knows, in the order of `FourLetterCommands`.
pub const FOUR_LETTER_WORDS: [&str; 19] = [
    "ruok", "stat", "srvr", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs", "wchc", "wchp", "dirs", "isro",
    "srst", "gtmk", "stmk", "hash", "telnet close",
];

/// If the first four bytes of a fresh connection spell a known four-letter word, returns it.
/// `0xfff4fffd` is telnet's interrupt sequence, which ZooKeeper knows as "telnet close".
pub fn four_letter_word(first: [u8; 4]) -> Option<&'static str> {
    if first == [0xff, 0xf4, 0xff, 0xfd] {
        return Some("telnet close");
    }
    let word = std::str::from_utf8(&first).ok()?;
    FOUR_LETTER_WORDS.iter().copied().find(|w| *w == word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(check_frame(&[0, 0], 10), FrameCheck::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 2, 1], 10), FrameCheck::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 2, 1, 2], 10), FrameCheck::Complete(2));
        assert_eq!(check_frame(&[0, 0, 0, 11], 10), FrameCheck::BadLength(11));
        assert_eq!(check_frame(&[0xff, 0xff, 0xff, 0xff], 10), FrameCheck::BadLength(-1));
    }

    #[test]
    fn late_header_matches_reply_frame() {
        let header = ReplyHeader { xid: 7, zxid: 0x1_0000_0002, err: -101 };
        let mut out = BytesMut::new();
        start_reply_frame(&mut out);
        out.extend_from_slice(b"record");
        let expected = reply_frame(&header, |o| o.extend_from_slice(b"record"));
        assert_eq!(finish_reply_frame(out, &header), expected);
    }

    #[test]
    fn four_letter_words() {
        assert_eq!(four_letter_word(*b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(*b"xxxx"), None);
        assert_eq!(four_letter_word([0, 0, 0, 44]), None);
    }

    #[test]
    fn reply_frame_patches_length() {
        let frame = reply_frame(&ReplyHeader { xid: -2, zxid: 5, err: 0 }, |_| {});
        assert_eq!(&frame[..4], &16i32.to_be_bytes());
    }
}
