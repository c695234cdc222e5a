//! One connection's handshake, in its own task: TLS when configured, then
//! the HTTP/2 client preface, all within the handshake timeout. The
//! preface is read here (so a silent client is noticed without the gRPC
//! server's help) and replayed to the server by [`Admitted`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tonic::transport::server::Connected;

use super::accept::Slot;
use super::{HANDSHAKE_FAILED, Handshake};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Runs `tcp`'s handshake and hands it to the server, or closes it.
pub(super) async fn run<H: Handshake>(
    tcp: TcpStream,
    handshake: H,
    slot: Slot,
    timeout: Duration,
    admitted: UnboundedSender<Admitted<H::Io>>,
) {
    let shook = tokio::time::timeout(timeout, async {
        let mut io = handshake.handshake(tcp).await?;
        let mut preface = [0u8; PREFACE.len()];
        io.read_exact(&mut preface).await?;
        Ok::<_, io::Error>((io, preface))
    })
    .await;
    let reason = match shook {
        Ok(Ok((io, preface))) if &preface == PREFACE => {
            // Fails only once the server has stopped: the connection closes.
            let _ = admitted.send(Admitted {
                io,
                replayed: 0,
                _slot: slot,
            });
            return;
        }
        Ok(Ok(_)) => "not_http2",
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "grpc connection closed during its handshake");
            "error"
        }
        Err(_) => "timeout",
    };
    tracing::debug!(
        reason,
        timeout_ms = timeout.as_millis() as u64,
        "grpc connection closed before its handshake finished"
    );
    metrics::counter!(HANDSHAKE_FAILED, "reason" => reason).increment(1);
}

/// A connection that finished its handshake: the preface is replayed to
/// the gRPC server, then reads and writes go to the connection. Holds the
/// connection's slot until the server drops it.
pub struct Admitted<IO> {
    io: IO,
    replayed: usize,
    _slot: Slot,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < PREFACE.len() {
            let rest = &PREFACE[self.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
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

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection info of the connection itself (`TcpConnectInfo`, or
/// `TlsConnectInfo<TcpConnectInfo>` with the client's certificates), as
/// the gRPC server would attach without this wrapper.
impl<IO: Connected> Connected for Admitted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_preface_is_replayed_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let slot = Slot::new(semaphore.clone().try_acquire_owned().unwrap());
        let mut admitted = Admitted {
            io: server,
            replayed: 0,
            _slot: slot,
        };
        client.write_all(b"after").await.unwrap();
        drop(client);
        let mut read = Vec::new();
        admitted.read_to_end(&mut read).await.unwrap();
        assert_eq!(&read[..24], PREFACE);
        assert_eq!(&read[24..], b"after");
        assert_eq!(semaphore.available_permits(), 0);
        drop(admitted);
        assert_eq!(semaphore.available_permits(), 1);
    }
}
