//! What an operator sees on `GET /metrics`: each service counts its own part of every buy, with
//! labels taken from route templates and fixed outcomes only.

mod support;

use common::{
    amqp::ReplyMode,
    testing::metrics::{label_values, value},
};
use reqwest::StatusCode;
use support::{Options, System, id_of, items};

const BUYS: usize = 5;

#[tokio::test]
async fn after_buys_every_hop_counts_them_on_its_own_metrics() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let lamp_id = id_of(&lamp);
    for _ in 0..BUYS {
        system
            .buy(&alice.token, &items(&[(&lamp_id, 2)]), None)
            .await
            .expect(StatusCode::CREATED, "a buy");
    }
    // Refused by products before anything is sent: not an RPC, not an order.
    system
        .buy(
            &alice.token,
            &items(&[("0194f0d2-8c5e-7000-8000-000000000000", 1)]),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND, "a buy of an unknown product");
    let by_id = support::send(
        system
            .http
            .get(system.products_url(&format!("/products/{lamp_id}"))),
    )
    .await
    .expect(StatusCode::OK, "GET /products/{id}");
    assert_eq!(by_id.body["id"], lamp_id.as_str());
    support::send(system.http.get(system.products_url("/no/such/route")))
        .await
        .expect(StatusCode::NOT_FOUND, "an unknown route");

    let (auth, products, orders) = system.metrics().await;
    let n = BUYS as f64;

    let buys = |status: &str| {
        value(
            &products,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "POST"),
                ("http_route", "/products/buy"),
                ("http_response_status_code", status),
            ],
        )
    };
    assert_eq!(buys("201"), Some(n), "products counts its answered buys");
    assert_eq!(buys("404"), Some(1.0), "and the refused one, by status");
    assert_eq!(
        value(
            &products,
            "shop_rpc_client_duration_seconds_count",
            &[("reply_mode", "per-request"), ("outcome", "order")]
        ),
        Some(n),
        "products counts its calls to orders by outcome"
    );
    let routes = label_values(
        &products,
        "http_server_request_duration_seconds_count",
        "http_route",
    );
    assert!(routes.contains(&"/products/{id}".to_owned()), "{routes:?}");
    assert!(routes.contains(&"unmatched".to_owned()), "{routes:?}");
    assert!(
        routes
            .iter()
            .all(|route| !route.contains(&lamp_id) && !route.contains("no/such")),
        "no raw path becomes a label: {routes:?}"
    );
    let cache: f64 = ["hit", "miss"]
        .iter()
        .filter_map(|result| {
            value(
                &products,
                "shop_catalog_cache_requests_total",
                &[("cache", "product"), ("result", result)],
            )
        })
        .sum();
    assert!(
        cache >= n + 1.0,
        "every buy and product read looks in the catalog cache"
    );

    let queue = system.order_queue.as_str();
    assert_eq!(value(&orders, "shop_orders_created_total", &[]), Some(n));
    assert_eq!(
        value(
            &orders,
            "shop_amqp_consumed_total",
            &[("queue", queue), ("outcome", "ack")]
        ),
        Some(n),
        "orders counts each delivery it answered"
    );
    for outcome in ["dead_lettered", "retried", "expired"] {
        assert_eq!(
            value(
                &orders,
                "shop_amqp_consumed_total",
                &[("queue", queue), ("outcome", outcome)]
            ),
            Some(0.0),
            "{outcome} is shown at 0 before it first happens"
        );
    }
    assert_eq!(
        value(
            &orders,
            "shop_amqp_handling_duration_seconds_count",
            &[("queue", queue)]
        ),
        Some(n)
    );
    assert_eq!(
        value(&orders, "shop_amqp_consumers", &[("queue", queue)]),
        Some(1.0)
    );

    // The admin and alice logged in once each.
    assert_eq!(
        value(&auth, "shop_logins_total", &[("outcome", "success")]),
        Some(2.0)
    );
    assert_eq!(
        value(
            &auth,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "POST"),
                ("http_route", "/auth/login"),
                ("http_response_status_code", "200"),
            ],
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&auth, "shop_password_hash_queue_depth", &[]),
        Some(0.0)
    );

    for (service, text) in [
        ("auth", &auth),
        ("products", &products),
        ("orders", &orders),
    ] {
        let rss = value(text, "process_resident_memory_bytes", &[]).unwrap_or_default();
        assert!(rss > 0.0, "{service} shows its resident memory");
        assert!(
            value(text, "process_cpu_seconds_total", &[]).is_some(),
            "{service} shows its CPU time"
        );
        assert_eq!(
            value(text, "shop_db_pool_max_connections", &[]),
            Some(5.0),
            "{service} shows its pool size"
        );
        for state in ["in_use", "idle"] {
            assert!(
                value(text, "shop_db_pool_connections", &[("state", state)]).is_some(),
                "{service} shows its {state} connections"
            );
        }
    }
    for (service, text) in [("products", &products), ("orders", &orders)] {
        assert_eq!(
            value(text, "shop_amqp_connected", &[]),
            Some(1.0),
            "{service} shows its broker connection"
        );
    }
    system.stop().await;
}
