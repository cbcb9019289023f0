//! A shard's listener: accepts connections on the shard's own port, up to a per-shard limit.

use std::rc::Rc;

use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use super::Shard;
use super::connection::serve_connection;

/// Accepts connections until the task is dropped at shutdown. At
/// `connections_per_shard_max` it stops accepting (new clients wait in the kernel's accept
/// queue) until a connection closes: the permit is taken before `accept`.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let permits = Rc::new(Semaphore::new(
        shard.config.connections_per_shard_max as u64,
    ));
    loop {
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            return;
        };
        match listener.accept().await {
            Ok(stream) => {
                let shard = Rc::clone(&shard);
                glommio::spawn_local(async move {
                    serve_connection(shard, stream).await;
                    drop(permit);
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(shard = shard.id.0, %error, "accept failed");
                // Running out of file descriptors fails every accept: pause instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
