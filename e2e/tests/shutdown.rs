//! Every service stops the same way, because all three stop through the one skeleton: one
//! test, the same checks, for each of them.

use std::time::Duration;

use common::{
    amqp::{ReplyMode, declare_work_queue},
    config::AmqpConfig,
    testing::{
        TEST_SHUTDOWN_TIMEOUT, TestApp, TestDatabase, TestIssuer, amqp_url,
        assert_graceful_shutdown, broker_connection, delete_queue_on_drop, require_broker,
        unique_queue,
    },
};

#[tokio::test]
async fn every_service_answers_what_is_in_flight_then_closes_its_connections_and_stops() {
    require_broker().await;
    let issuer = TestIssuer::start().await;
    let queue = unique_queue("shutdown");
    delete_queue_on_drop(&queue);
    // Made before products starts, as the broker's definitions make it in a deployment:
    // products only looks it up, and orders starts after it here.
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("open a channel");
    declare_work_queue(&channel, &queue)
        .await
        .expect("declare the order queue");
    let _ = broker.close(200, "declared".into()).await;
    let amqp = AmqpConfig::with_order_queue(amqp_url(), queue.clone());
    let (auth_db, products_db, orders_db) = tokio::join!(
        TestDatabase::create(),
        TestDatabase::create(),
        TestDatabase::create()
    );

    let auth = TestApp::spawn_ready::<auth::Auth>(auth::config::Config {
        server: auth_db.server_config(),
        keys: auth::config::KeyConfig::default(),
        token_ttl: Duration::from_secs(900),
        hash_concurrency: 1,
        hash_queue: auth::password::HashQueueConfig::for_concurrency(1),
        rate_limits: auth::limits::RateLimitConfig::default(),
    })
    .await;
    assert_graceful_shutdown(auth, TEST_SHUTDOWN_TIMEOUT, None).await;

    let orders = TestApp::spawn_ready::<orders::Orders>(orders::config::Config {
        server: orders_db.server_config(),
        amqp: amqp.clone(),
        jwks: issuer.jwks_config(),
        prefetch: 8,
        outbox: orders::config::DEFAULT_OUTBOX,
    })
    .await;
    assert_graceful_shutdown(orders, TEST_SHUTDOWN_TIMEOUT, Some(&queue)).await;

    // After orders, which declares the queue products only looks up.
    let products = TestApp::spawn_ready::<products::Products>(products::config::Config {
        server: products_db.server_config(),
        events_queue: format!("{queue}.order-events"),
        amqp,
        rpc_timeout: Duration::from_secs(5),
        reply_mode: ReplyMode::Direct,
        jwks: issuer.jwks_config(),
        catalog_cache: products::config::DEFAULT_CATALOG_CACHE,
        reconciler: products::config::DEFAULT_RECONCILER,
    })
    .await;
    assert_graceful_shutdown(products, TEST_SHUTDOWN_TIMEOUT, None).await;
}
