//! `SocketReader`: reads whole frames from a TCP socket into buffers that were never zeroed.
//!
//! glommio's stream reads into `&mut [u8]`, so every buffer must be initialised first, and a
//! request frame of a megabyte was zeroed only to be overwritten by the socket: 8-10% of a shard's
//! CPU at the produce peak (perf, session 2 of issue 4). This reader receives straight into the
//! spare capacity of a `Vec` with a non-blocking `recv`, and only when the socket is empty does it
//! wait through glommio's read, into a short zeroed slice, so zeroing costs nothing while data
//! keeps arriving.
//!
//! The reader must be the socket's only reader; writes (another task, another half) are
//! unaffected.

use std::io;
use std::os::fd::RawFd;

use futures_lite::{AsyncRead, AsyncReadExt};

/// How many bytes a wait through glommio may receive at once (and so how much is zeroed for it).
const WAIT_READ_BYTES_MAX: usize = 64 * 1024;

/// Reads exact byte counts from one socket.
pub struct SocketReader<R> {
    fd: RawFd,
    stream: R,
}

impl<R: AsyncRead + Unpin> SocketReader<R> {
    /// A reader of `stream`, whose descriptor is `fd` (taken before the stream was split).
    pub fn new(fd: RawFd, stream: R) -> Self {
        Self { fd, stream }
    }

    /// Fills `buf` exactly; `UnexpectedEof` if the peer closes first.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.stream.read_exact(buf).await
    }

    /// Reads exactly `len_bytes` into a new buffer; `UnexpectedEof` if the peer closes first.
    pub async fn read_vec(&mut self, len_bytes: usize) -> io::Result<Vec<u8>> {
        let mut buffer = Vec::with_capacity(len_bytes);
        while buffer.len() < len_bytes {
            let wanted = len_bytes - buffer.len();
            match recv_uninit(self.fd, &mut buffer, wanted) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let start = buffer.len();
                    buffer.resize(start + wanted.min(WAIT_READ_BYTES_MAX), 0);
                    let received = self.stream.read(&mut buffer[start..]).await?;
                    buffer.truncate(start + received);
                    if received == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(buffer)
    }
}

/// One non-blocking `recv` of at most `wanted` bytes into `buffer`'s spare capacity, which then
/// counts as filled. Ok(0) is end of stream.
#[allow(unsafe_code)]
fn recv_uninit(fd: RawFd, buffer: &mut Vec<u8>, wanted: usize) -> io::Result<usize> {
    let spare = buffer.spare_capacity_mut();
    let wanted = wanted.min(spare.len());
    // SAFETY: the kernel writes at most `wanted` bytes to the pointer, which addresses `wanted`
    // bytes of `buffer`'s own spare capacity; no reference to uninitialised bytes is created.
    let received = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), wanted, libc::MSG_DONTWAIT) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let received = received as usize;
    // SAFETY: `recv` initialised exactly `received <= wanted` bytes after the current length.
    unsafe { buffer.set_len(buffer.len() + received) };
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};

    /// Runs `body` with the accepted end of a connection whose other end `client` drives from
    /// a plain thread.
    fn with_connection<C, F, Fut>(client: C, body: F)
    where
        C: FnOnce(std::net::TcpStream) + Send + 'static,
        F: FnOnce(glommio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let address = listener.local_addr().unwrap();
                let client = std::thread::spawn(move || {
                    client(std::net::TcpStream::connect(address).unwrap())
                });
                let stream = listener.accept().await.unwrap();
                body(stream).await;
                client.join().unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_frame_sent_in_pieces_with_pauses_reads_back_exactly() {
        // Proves both paths: bytes already waiting (direct recv) and an empty socket (the wait
        // through glommio), with pieces smaller and larger than WAIT_READ_BYTES_MAX.
        let frame: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = frame.clone();
        with_connection(
            move |mut client| {
                for piece in frame.chunks(150_001) {
                    client.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
                client.write_all(&[7, 8, 9, 10]).unwrap();
            },
            move |stream| async move {
                let fd = stream.as_raw_fd();
                let mut reader = SocketReader::new(fd, stream);
                let got = reader.read_vec(expected.len()).await.unwrap();
                assert!(got == expected, "frame bytes differ");
                let mut tail = [0u8; 4];
                reader.read_exact(&mut tail).await.unwrap();
                assert_eq!(tail, [7, 8, 9, 10]);
            },
        );
    }

    #[test]
    fn a_peer_closing_mid_frame_is_unexpected_eof() {
        with_connection(
            |mut client| client.write_all(&[1u8; 1000]).unwrap(),
            |stream| async move {
                let fd = stream.as_raw_fd();
                let mut reader = SocketReader::new(fd, stream);
                let error = reader.read_vec(5000).await.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
            },
        );
    }
}
