//! Large yamux data frames, cut to the size rust-yamux reads.
//!
//! rust-yamux 0.14 drops the whole connection on an inbound data frame longer than
//! 1 MiB (`FrameTooLarge`), yet its window auto-tuning grants a busy stream several
//! MiB, and js-libp2p's yamux sends frames as long as the window it was granted: a deep
//! pipeline with a js-libp2p peer (an echo with a few MiB in flight) kills the
//! connection and every stream on it. The yamux spec bounds a frame by the window
//! only, so the sender is within its rights.
//!
//! [`SplitLargeFrames`] wraps the muxer's upgrade and reads the connection through
//! [`Splitter`], which cuts each data frame over the limit into frames of at most the
//! limit, same stream, same bytes: the first keeps the opening flags (SYN, ACK), the
//! last the closing ones (FIN, RST). Nothing else is touched, nothing is copied but
//! the synthesized 12-byte headers, and the write side passes straight through.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::{
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    UpgradeInfo,
};

/// The longest data frame body rust-yamux reads.
pub const MAX_BODY: u32 = 1024 * 1024;
const HEADER: usize = 12;
const TYPE_DATA: u8 = 0;
const CLOSING_FLAGS: u16 = 0x4 | 0x8; // FIN, RST

/// A muxer upgrade whose connection is read through a [`Splitter`].
#[derive(Debug, Clone)]
pub struct SplitLargeFrames<U>(pub U);

impl<U: UpgradeInfo> UpgradeInfo for SplitLargeFrames<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.protocol_info()
    }
}

impl<C, U: InboundConnectionUpgrade<Splitter<C>>> InboundConnectionUpgrade<C>
    for SplitLargeFrames<U>
{
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_inbound(self, io: C, info: Self::Info) -> Self::Future {
        self.0.upgrade_inbound(Splitter::new(io, MAX_BODY), info)
    }
}

impl<C, U: OutboundConnectionUpgrade<Splitter<C>>> OutboundConnectionUpgrade<C>
    for SplitLargeFrames<U>
{
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_outbound(self, io: C, info: Self::Info) -> Self::Future {
        self.0.upgrade_outbound(Splitter::new(io, MAX_BODY), info)
    }
}

/// A yamux byte stream, read with its data frames cut to at most `max` bytes each.
#[derive(Debug)]
pub struct Splitter<C> {
    io: C,
    max: u32,
    /// The header being read.
    header: [u8; HEADER],
    have: usize,
    /// Synthesized or passed-on header bytes to hand out, from `out_at`.
    out: [u8; HEADER],
    out_len: usize,
    out_at: usize,
    /// Body bytes of the current (sub)frame still to pass through.
    body: u32,
    /// What is left of a frame being cut: its header and the bytes after this piece.
    rest: Option<([u8; HEADER], u32)>,
}

impl<C> Splitter<C> {
    pub fn new(io: C, max: u32) -> Self {
        Self {
            io,
            max,
            header: [0; HEADER],
            have: 0,
            out: [0; HEADER],
            out_len: 0,
            out_at: 0,
            body: 0,
            rest: None,
        }
    }

    /// Queues the header of the next piece of a frame being cut: `left` bytes of it
    /// remain, and `first` says whether this is its first piece.
    fn next_piece(&mut self, header: [u8; HEADER], left: u32, first: bool) {
        let piece = left.min(self.max);
        let last = piece == left;
        let flags = u16::from_be_bytes([header[2], header[3]]);
        let mut kept = 0;
        if first {
            kept |= flags & !CLOSING_FLAGS;
        }
        if last {
            kept |= flags & CLOSING_FLAGS;
        }
        self.out = header;
        self.out[2..4].copy_from_slice(&kept.to_be_bytes());
        self.out[8..12].copy_from_slice(&piece.to_be_bytes());
        (self.out_len, self.out_at) = (HEADER, 0);
        self.body = piece;
        self.rest = (!last).then_some((header, left - piece));
    }

    /// A whole header was read: pass it on, or start cutting its frame.
    fn on_header(&mut self) {
        let header = self.header;
        self.have = 0;
        let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if header[1] != TYPE_DATA {
            // Window updates, pings and go-aways carry no body.
            (self.out, self.out_len, self.out_at, self.body) = (header, HEADER, 0, 0);
        } else if len > self.max {
            self.next_piece(header, len, true);
        } else {
            (self.out, self.out_len, self.out_at, self.body) = (header, HEADER, 0, len);
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Splitter<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.out_at < this.out_len {
                let n = (this.out_len - this.out_at).min(buf.len());
                buf[..n].copy_from_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                return Poll::Ready(Ok(n));
            }
            if this.body > 0 {
                let most = buf.len().min(this.body as usize);
                let n = ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf[..most]))?;
                this.body -= n as u32; // n ≤ most ≤ body
                return Poll::Ready(Ok(n));
            }
            if let Some((header, left)) = this.rest.take() {
                this.next_piece(header, left, false);
                continue;
            }
            // A header, read whole before anything of it is passed on.
            let have = this.have;
            let n = ready!(Pin::new(&mut this.io).poll_read(cx, &mut this.header[have..]))?;
            if n == 0 {
                if this.have == 0 {
                    return Poll::Ready(Ok(0));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.have += n;
            if this.have == HEADER {
                this.on_header();
            }
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Splitter<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{io::Cursor, AsyncReadExt as _};

    use super::*;

    fn frame(kind: u8, flags: u16, stream: u32, len: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0, kind];
        out.extend(flags.to_be_bytes());
        out.extend(stream.to_be_bytes());
        out.extend(len.to_be_bytes());
        out.extend(body);
        out
    }

    /// Reads everything through a splitter with `max`, `step` bytes at a time at most.
    async fn split(input: Vec<u8>, max: u32, step: usize) -> Vec<u8> {
        let mut splitter = Splitter::new(Cursor::new(input), max);
        let mut out = Vec::new();
        let mut buf = vec![0; step];
        loop {
            let n = splitter.read(&mut buf).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn a_long_data_frame_becomes_pieces_with_the_flags_at_their_ends() {
        let body: Vec<u8> = (0..25u8).collect();
        let mut input = frame(1, 0x1, 3, 1 << 20, &[]); // a window update passes as is
        input.extend(frame(0, 0x1 | 0x4, 5, 25, &body)); // SYN and FIN, 25 bytes
        input.extend(frame(2, 0x2, 0, 7, &[])); // a ping
        for step in [1, 5, 64] {
            let out = split(input.clone(), 10, step).await;
            let mut expected = frame(1, 0x1, 3, 1 << 20, &[]);
            expected.extend(frame(0, 0x1, 5, 10, &body[..10]));
            expected.extend(frame(0, 0, 5, 10, &body[10..20]));
            expected.extend(frame(0, 0x4, 5, 5, &body[20..]));
            expected.extend(frame(2, 0x2, 0, 7, &[]));
            assert_eq!(out, expected, "reading {step} bytes at a time");
        }
    }

    #[tokio::test]
    async fn frames_within_the_limit_pass_unchanged() {
        let mut input = frame(0, 0x2, 1, 10, &[7; 10]);
        input.extend(frame(0, 0, 1, 0, &[]));
        input.extend(frame(3, 0, 0, 0, &[]));
        assert_eq!(split(input.clone(), 10, 3).await, input);
    }

    #[tokio::test]
    async fn a_connection_that_ends_inside_a_header_is_an_error() {
        let input = frame(0, 0, 1, 3, b"abc")[..14].to_vec();
        let mut splitter = Splitter::new(Cursor::new(input), 10);
        let mut out = Vec::new();
        assert!(splitter.read_to_end(&mut out).await.is_ok()); // the header and 2 bytes
        let mut cut = Splitter::new(Cursor::new(frame(0, 0, 1, 3, b"")[..5].to_vec()), 10);
        assert!(cut.read_to_end(&mut Vec::new()).await.is_err());
    }
}
