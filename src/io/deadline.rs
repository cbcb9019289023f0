//! Bounding a wait on the shard's own timer.

use std::future::Future;
use std::time::Duration;

/// Runs `future` for at most `limit`; `None` when the limit passed first (the future is then
/// dropped).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}
