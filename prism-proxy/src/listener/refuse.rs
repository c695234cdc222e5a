//! What a plain-text client beyond the connection cap is told: the
//! proxy speaks just enough HTTP/2 to answer the connection's first call
//! with a gRPC `UNAVAILABLE` status naming the limit (every gRPC client
//! reports that as it would any call's status), then sends GOAWAY and
//! closes. A client that opens no call within [`WAIT_FOR_CALL`] gets the
//! GOAWAY alone (`REFUSED_STREAM`, with the same text as debug data).
//!
//! Each answer runs in a short task; at most [`MAX_ANSWERING`] run at
//! once (they use descriptors from `listeners.reserved_fds`), and beyond
//! that, or on TLS, the connection is closed at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::admit::PREFACE;

/// Refusals answered at once; more are closed without an answer.
pub(super) const MAX_ANSWERING: usize = 64;

/// How long a refused client has to open its first call.
pub(super) const WAIT_FOR_CALL: Duration = Duration::from_secs(1);

/// How long an answer may take in all (including the wait for the
/// client to close after reading it).
const ANSWER_TIME: Duration = Duration::from_secs(2);

/// Most bytes read from a refused client while waiting for its call.
const READ_BUDGET: usize = 64 << 10;

/// Largest frame read (the default `SETTINGS_MAX_FRAME_SIZE`).
const MAX_FRAME: usize = 16_384;

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const NO_ERROR: u32 = 0x0;
const REFUSED_STREAM: u32 = 0x7;

/// The answers, built once, and the count of answers running.
pub(super) struct Refusals {
    answering: Arc<Semaphore>,
    answer: Arc<Answer>,
}

struct Answer {
    /// The status text (ASCII without `%`, so grpc-message needs no
    /// percent-encoding).
    text: String,
}

impl Refusals {
    pub(super) fn new(max_connections: usize) -> Self {
        Refusals {
            answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
            answer: Arc::new(Answer {
                text: format!(
                    "connection limit reached ({max_connections} connections open, \
                     listeners.max_connections); retry later or use another proxy"
                ),
            }),
        }
    }

    /// Refuses `tcp`: answers it in its own task when it is plain text
    /// and fewer than [`MAX_ANSWERING`] answers run, else closes it.
    pub(super) fn refuse(&self, tcp: TcpStream, plain_text: bool) {
        if !plain_text {
            return;
        }
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            return;
        };
        let answer = self.answer.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            if let Err(e) = tokio::time::timeout(ANSWER_TIME, answer.send(&mut tcp)).await {
                tracing::debug!(error = %e, "refused grpc connection did not close in time");
            }
            drop(permit);
        });
    }
}

impl Answer {
    async fn send(&self, tcp: &mut TcpStream) -> io::Result<()> {
        tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        let call = tokio::time::timeout(WAIT_FOR_CALL, first_call(tcp))
            .await
            .unwrap_or(Ok(None))?;
        let mut out = Vec::new();
        match call {
            Some(stream) => {
                out.extend(frame(
                    HEADERS,
                    END_STREAM | END_HEADERS,
                    stream,
                    &self.status_block(),
                ));
                out.extend(goaway(stream, NO_ERROR, self.text.as_bytes()));
            }
            None => out.extend(goaway(0, REFUSED_STREAM, self.text.as_bytes())),
        }
        tcp.write_all(&out).await?;
        tcp.shutdown().await?;
        // Read until the client closes: closing with unread input would
        // reset the connection, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok(())
    }

    /// A trailers-only gRPC response: `:status 200`, `content-type`,
    /// `grpc-status 14` (UNAVAILABLE), `grpc-message`, as HPACK literals
    /// that touch no dynamic table.
    fn status_block(&self) -> Vec<u8> {
        let mut block = vec![0x80 | 8]; // static entry 8, `:status: 200`
        // `content-type` is static entry 31: literal without indexing,
        // indexed name (4-bit prefix).
        hpack_int(&mut block, 0x00, 4, 31);
        hpack_str(&mut block, b"application/grpc");
        for (name, value) in [
            (&b"grpc-status"[..], &b"14"[..]),
            (b"grpc-message", self.text.as_bytes()),
        ] {
            block.push(0x00); // literal without indexing, new name
            hpack_str(&mut block, name);
            hpack_str(&mut block, value);
        }
        block
    }
}

/// Reads the client's preface and frames until its first HEADERS frame
/// (the first call); acknowledges its SETTINGS. `None` when it is not
/// HTTP/2 or sends too much first.
async fn first_call(tcp: &mut TcpStream) -> io::Result<Option<u32>> {
    let mut preface = [0u8; PREFACE.len()];
    tcp.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Ok(None);
    }
    let mut budget = READ_BUDGET;
    let mut payload = vec![0u8; MAX_FRAME];
    loop {
        let mut header = [0u8; 9];
        tcp.read_exact(&mut header).await?;
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME || len + header.len() > budget {
            return Ok(None);
        }
        budget -= len + header.len();
        tcp.read_exact(&mut payload[..len]).await?;
        match kind {
            HEADERS if stream != 0 => return Ok(Some(stream)),
            SETTINGS if flags & ACK == 0 => tcp.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            _ => {}
        }
    }
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frames");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + debug.len());
    payload.extend_from_slice(&last_stream.to_be_bytes());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(debug);
    frame(GOAWAY, 0, 0, &payload)
}

/// An HPACK integer with an `prefix`-bit prefix after `flags`
/// (RFC 7541, section 5.1).
fn hpack_int(out: &mut Vec<u8>, flags: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// An HPACK string literal without Huffman coding.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_follow_rfc_7541() {
        // C.1.1 to C.1.3 of RFC 7541.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        hpack_int(&mut out, 0, 8, 42);
        assert_eq!(out, [42]);
        out.clear();
        hpack_int(&mut out, 0, 4, 31);
        assert_eq!(out, [0x0f, 0x10]);
    }

    #[test]
    fn frames_carry_length_type_flags_and_stream() {
        let f = frame(HEADERS, END_STREAM | END_HEADERS, 3, b"abc");
        assert_eq!(f, [0, 0, 3, 1, 5, 0, 0, 0, 3, b'a', b'b', b'c']);
        let g = goaway(1, NO_ERROR, b"x");
        assert_eq!(&g[..9], [0, 0, 9, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&g[9..], [0, 0, 0, 1, 0, 0, 0, 0, b'x']);
    }

    #[test]
    fn the_status_text_needs_no_percent_encoding() {
        let refusals = Refusals::new(4096);
        let text = &refusals.answer.text;
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%'));
        assert!(text.len() < 127, "one-byte HPACK length: {}", text.len());
        let block = refusals.answer.status_block();
        assert_eq!(block[0], 0x88);
        assert!(block.ends_with(text.as_bytes()));
    }
}
