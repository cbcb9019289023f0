//! Outgoing TCP connections to other brokers, optionally leaving from a chosen local address.
//!
//! A broker that listens on one address (`--host 10.0.0.5`) dials its peers from that address
//! too, so firewalls and tests can tell broker-to-broker traffic from client traffic by source
//! (on loopback every connection would otherwise leave from 127.0.0.1). glommio 0.9's connect
//! cannot bind first, so a bound socket connects non-blocking here and its completion is polled:
//! connections are rare (one per peer shard, redialled only after a failure), and on loopback or
//! a LAN they complete within the first poll or two.
//!
//! Callers bound the whole dial with their own deadline; dropping the future closes the socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use glommio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How often a bound dial checks whether its connect completed.
const CONNECT_POLL: Duration = Duration::from_millis(1);

/// Connects to `addr` (an `ip:port`, or a host name resolved by the system), from `source` when
/// given (port chosen by the kernel), else from whatever address the kernel picks.
pub async fn connect(addr: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr)
            .await
            .map_err(|error| io::Error::other(error.to_string()));
    };
    let target = resolve(addr)?;
    if target.is_ipv4() != source.is_ipv4() {
        // A v4 source cannot reach a v6 peer (nor the reverse): let the kernel choose.
        return TcpStream::connect(target)
            .await
            .map_err(|error| io::Error::other(error.to_string()));
    }
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {
            // Connected once the socket has a peer; a failed connect leaves its error in
            // SO_ERROR.
            while socket.peer_addr().is_err() {
                if let Some(error) = socket.take_error()? {
                    return Err(error);
                }
                glommio::timer::sleep(CONNECT_POLL).await;
            }
        }
        Err(error) => return Err(error),
    }
    // glommio drives the socket through io_uring, which answers EAGAIN on a non-blocking socket
    // instead of waiting: hand it over in blocking mode, as glommio's own connect does.
    socket.set_nonblocking(false)?;
    Ok(TcpStream::from(socket))
}

/// The first address `addr` names. Peer addresses in the cluster metadata are IP literals, so
/// this does not block; a host name is resolved by the system resolver.
fn resolve(addr: &str) -> io::Result<SocketAddr> {
    if let Ok(address) = addr.parse() {
        return Ok(address);
    }
    std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_dial_leaves_from_the_source_address() {
        // Proves the peer sees the chosen source address, not the kernel's default 127.0.0.1.
        let listener = std::net::TcpListener::bind("127.0.3.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
        let local = executor.run(async move {
            let source: IpAddr = "127.0.3.2".parse().unwrap();
            let stream = connect(&addr, Some(source)).await.unwrap();
            stream.local_addr().unwrap()
        });
        let (_, seen) = listener.accept().unwrap();
        assert_eq!(seen, local);
        assert_eq!(seen.ip(), "127.0.3.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_bound_dial_to_a_closed_port_fails() {
        // Proves a refused connect is reported, not mistaken for a connection.
        let port = std::net::TcpListener::bind("127.0.3.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
        let result = executor.run(async move {
            connect(
                &format!("127.0.3.1:{port}"),
                Some("127.0.3.2".parse().unwrap()),
            )
            .await
        });
        assert!(result.is_err());
    }
}
