//! A TCP proxy for one direction of controller traffic between two brokers, which a test can cut
//! (open connections closed, new ones closed at once) and heal.
//!
//! Std threads and std::net only: one accept thread polling a nonblocking listener, two pump
//! threads per connection. Dropping the proxy closes every connection and joins every thread.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A TCP proxy for one direction of controller traffic (broker a dials broker b through it).
/// While cut, it closes its open connections and every new one at once. Dropping it stops its
/// threads and joins them.
pub struct LinkProxy {
    address: SocketAddr,
    shared: Arc<ProxyShared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    shutdown: AtomicBool,
    state: Mutex<ProxyState>,
    /// Threads of this proxy still running (the accept thread and the pumps).
    threads_alive: Arc<AtomicUsize>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<ProxyConnection>,
}

/// One forwarded connection: both sockets (clones, to shut them down) and its two pump threads.
struct ProxyConnection {
    client: TcpStream,
    upstream: TcpStream,
    pumps: Vec<JoinHandle<()>>,
}

impl ProxyConnection {
    fn close(self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
        for pump in self.pumps {
            let _ = pump.join();
        }
    }

    fn finished(&self) -> bool {
        self.pumps.iter().all(JoinHandle::is_finished)
    }
}

/// How long the accept thread sleeps when no connection waits; bounds how long Drop takes.
const PROXY_ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Bound on the proxy's connect to its upstream.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts a thread as alive from its creation until it ends.
struct AliveGuard(Arc<AtomicUsize>);

impl AliveGuard {
    fn new(counter: &Arc<AtomicUsize>) -> AliveGuard {
        counter.fetch_add(1, Ordering::SeqCst);
        AliveGuard(counter.clone())
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LinkProxy {
    /// Listens on `host`:<free port> and forwards every connection to `upstream`.
    pub fn start(host: &str, upstream: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind((host, 0))
            .unwrap_or_else(|error| panic!("bind proxy on {host}: {error}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let address = listener.local_addr().expect("proxy address");
        let threads_alive = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(ProxyShared {
            upstream,
            shutdown: AtomicBool::new(false),
            state: Mutex::new(ProxyState::default()),
            threads_alive: threads_alive.clone(),
        });
        let guard = AliveGuard::new(&threads_alive);
        let accept_shared = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("proxy-{address}"))
            .spawn(move || {
                let _guard = guard;
                accept_loop(&listener, &accept_shared);
            })
            .expect("spawn the proxy thread");
        LinkProxy {
            address,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Counter of this proxy's running threads; 0 once it is dropped.
    pub fn threads_alive(&self) -> Arc<AtomicUsize> {
        self.shared.threads_alive.clone()
    }

    /// Open (not yet finished) forwarded connections.
    pub fn connections_open(&self) -> usize {
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.connections.iter().filter(|c| !c.finished()).count()
    }

    /// Cut: close every open connection and every new one at once. Healed: forward again.
    pub fn set_cut(&self, cut: bool) {
        let closing = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.cut = cut;
            if cut {
                std::mem::take(&mut state.connections)
            } else {
                Vec::new()
            }
        };
        for connection in closing {
            connection.close();
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let connections = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut state.connections)
        };
        for connection in connections {
            connection.close();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<ProxyShared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => forward(client, shared),
            Err(error) if error.kind() == ErrorKind::WouldBlock => thread::sleep(PROXY_ACCEPT_POLL),
            Err(_) => thread::sleep(PROXY_ACCEPT_POLL),
        }
    }
}

/// Connects `client` to the upstream and starts its pumps, or closes it at once if the link is
/// cut or the upstream cannot be reached.
fn forward(client: TcpStream, shared: &Arc<ProxyShared>) {
    if client.set_nonblocking(false).is_err()
        || shared.state.lock().unwrap_or_else(|p| p.into_inner()).cut
    {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, PROXY_CONNECT_TIMEOUT) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (|| {
        Some((
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
        ))
    })();
    let Some((client_read, upstream_write, client_write, upstream_read)) = clones else {
        return;
    };
    // Checked again under the lock that `set_cut` takes, so a connection accepted while the link
    // was being cut is closed too.
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if state.cut {
        return;
    }
    state.connections.retain(|c| !c.finished());
    let pumps = [(client_read, upstream_write), (upstream_read, client_write)]
        .into_iter()
        .map(|(from, to)| {
            let guard = AliveGuard::new(&shared.threads_alive);
            thread::Builder::new()
                .name("proxy-pump".into())
                .spawn(move || {
                    let _guard = guard;
                    pump(from, to);
                })
                .expect("spawn a proxy pump")
        })
        .collect();
    state.connections.push(ProxyConnection {
        client,
        upstream,
        pumps,
    });
}

/// Copies bytes from `from` to `to` until either side ends, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
