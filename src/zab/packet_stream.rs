//! The quorum port's byte stream cut into packets: `QuorumPacket`s are written back to back
//! with no outer length, and a SNAP's snapshot stream follows its packet on the same stream.
//!
//! Owns: one connection's read buffer. Must not touch: what the packets mean.
//!
//! Bounds: a packet's data is at most `data_max_bytes` (checked before it is buffered whole);
//! the buffer holds at most one packet plus one read chunk.

use std::io::Read;
use std::net::TcpStream;

use bytes::Bytes;

use crate::jute::DecodeError;
use crate::proto::quorum::{decode_packet, QuorumPacket};
use crate::zab::follower::FollowError;

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A peer's byte stream, cut into packets (and, after a SNAP, its snapshot stream).
pub(crate) struct PacketReader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    data_max_bytes: usize,
}

impl PacketReader {
    pub(crate) fn new(stream: TcpStream, data_max_bytes: usize) -> PacketReader {
        PacketReader {
            stream,
            buf: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            data_max_bytes,
        }
    }

    /// Reads more bytes into the buffer, waiting for them.
    fn fill(&mut self) -> Result<(), FollowError> {
        self.fill_with(|stream, buf| (&*stream).read(buf))
    }

    /// Reads what the socket holds into the buffer without waiting for more (`MSG_DONTWAIT` on
    /// this call only: the stream's other handles stay blocking); nothing there is no error.
    /// Only when no whole packet is buffered, which keeps the buffer's bound.
    pub(crate) fn fill_ready(&mut self) -> Result<(), FollowError> {
        let dont_wait = |stream: &TcpStream, buf: &mut [u8]| {
            rustix::net::recv(stream, buf, rustix::net::RecvFlags::DONTWAIT)
                .map(|(n, _)| n)
                .map_err(std::io::Error::from)
        };
        match self.fill_with(dont_wait) {
            Err(FollowError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    fn fill_with(&mut self, read: impl FnOnce(&TcpStream, &mut [u8]) -> std::io::Result<usize>) -> Result<(), FollowError> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK_BYTES, 0);
        let n = match read(&self.stream, &mut self.buf[old..]) {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(e.into());
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            return Err(
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed the connection").into(),
            );
        }
        Ok(())
    }

    /// The next packet, if a whole one is buffered (nothing is read).
    pub(crate) fn buffered_packet(&mut self) -> Result<Option<QuorumPacket>, FollowError> {
        match decode_packet(&self.buf[self.start..], self.data_max_bytes)? {
            Some((packet, used)) => {
                self.start += used;
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn next_packet(&mut self) -> Result<QuorumPacket, FollowError> {
        loop {
            if let Some(packet) = self.buffered_packet()? {
                return Ok(packet);
            }
            self.fill()?;
        }
    }

    /// The next `n` bytes, read as needed.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), FollowError> {
        while self.buf.len() - self.start < n {
            self.fill()?;
        }
        out.extend_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(())
    }

    fn take_i32(&mut self, out: &mut Vec<u8>) -> Result<i32, FollowError> {
        self.take(4, out)?;
        Ok(i32::from_be_bytes(out[out.len() - 4..].try_into().expect("4 bytes")))
    }

    /// A count or length field: at most `max`, and -1 (null) only where `nullable`.
    fn take_length(&mut self, out: &mut Vec<u8>, max: usize, nullable: bool) -> Result<usize, FollowError> {
        match self.take_i32(out)? {
            -1 if nullable => Ok(0),
            n if n < 0 || n as usize > max => Err(DecodeError::BadLength(n).into()),
            n => Ok(n as usize),
        }
    }

    fn take_string(&mut self, out: &mut Vec<u8>) -> Result<usize, FollowError> {
        let len = self.take_length(out, self.data_max_bytes, true)?;
        self.take(len, out)?;
        Ok(len)
    }

    /// The snapshot stream after a SNAP packet, up to and including its signature (PROTOCOL.md
    /// §4.9), as one buffer for `storage::zk_format::read_snap_stream_body`. Only framed here:
    /// every length is checked before it is read, and the whole is parsed by the store.
    pub(crate) fn snapshot_stream(&mut self) -> Result<Bytes, FollowError> {
        let mut out = Vec::new();
        let sessions = self.take_length(&mut out, i32::MAX as usize, false)?;
        for _ in 0..sessions {
            self.take(12, &mut out)?;
        }
        let acl_lists = self.take_length(&mut out, i32::MAX as usize, false)?;
        for _ in 0..acl_lists {
            self.take(8, &mut out)?;
            let acls = self.take_length(&mut out, self.data_max_bytes, true)?;
            for _ in 0..acls {
                self.take(4, &mut out)?;
                self.take_string(&mut out)?;
                self.take_string(&mut out)?;
            }
        }
        loop {
            let path_start = out.len() + 4;
            let len = self.take_string(&mut out)?;
            if len == 1 && out[path_start] == b'/' {
                break;
            }
            // data, ACL index, StatPersisted.
            let data = self.take_length(&mut out, self.data_max_bytes, true)?;
            self.take(data, &mut out)?;
            self.take(8 + 60, &mut out)?;
        }
        self.take_string(&mut out)?;
        Ok(Bytes::from(out))
    }
}
