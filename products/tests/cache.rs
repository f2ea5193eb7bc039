//! The catalog cache as a client sees it: what this replica adds shows at once, what another
//! replica adds (or an operator changes in the database) shows within `CATALOG_CACHE_TTL_MS`,
//! and a product never seen before is found at its first buy. And as an operator sees it: it
//! holds no more bytes than `CATALOG_CACHE_MAX_BYTES`, whatever pages clients ask for.

mod support;

use std::time::Duration;

use common::{
    ids::ProductId,
    messages::Order,
    testing::{metrics::value, wait_until},
};
use products::{
    catalog::CacheLimits, config::DEFAULT_CATALOG_CACHE_TTL, entity::product, routes::ProductBody,
};
use reqwest::StatusCode;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, Database, DatabaseConnection, EntityTrait,
    QueryFilter, Set, sea_query::Expr,
};
use serde_json::json;
use support::{Options, TestApp, spawn_app, spawn_app_with, start_honest_orders};

/// Long enough for a cached entry to expire, with room for a slow machine.
const PATIENCE: Duration = Duration::from_secs(5);

async fn database_of(app: &TestApp) -> DatabaseConnection {
    Database::connect(&app.db.url)
        .await
        .expect("connect to the test database")
}

/// Adds a product straight to the database, as another replica would.
async fn insert_elsewhere(db: &DatabaseConnection, name: &str, price_cents: i64) -> ProductId {
    insert_described(db, name, price_cents, String::new()).await
}

/// [`insert_elsewhere`] with a description.
async fn insert_described(
    db: &DatabaseConnection,
    name: &str,
    price_cents: i64,
    description: String,
) -> ProductId {
    let id = ProductId::new();
    product::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        description: Set(description),
        price_cents: Set(price_cents),
        image_url: Set(None),
        created_at: NotSet,
        stock: Set(None),
    }
    .insert(db)
    .await
    .expect("insert a product");
    id
}

async fn listed(app: &TestApp) -> Vec<ProductId> {
    let page: Vec<ProductBody> = app.get_json("/products").await;
    page.into_iter().map(|p| p.id).collect()
}

async fn total_of_one(app: &TestApp, id: ProductId) -> i64 {
    let response = app
        .buy(&json!({"items": [{"product_id": id, "quantity": 1}]}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Order>().await.unwrap().total_cents
}

#[tokio::test]
async fn a_product_added_here_is_listed_at_once_even_after_the_listing_was_read() {
    let app = spawn_app().await;
    assert!(listed(&app).await.is_empty());

    let cup = app.create_product("Cup", 450).await;

    assert_eq!(listed(&app).await, vec![cup.id]);
}

#[tokio::test]
async fn a_product_added_by_another_replica_is_listed_within_the_cache_ttl() {
    let app = spawn_app().await;
    let db = database_of(&app).await;
    assert!(listed(&app).await.is_empty());

    let id = insert_elsewhere(&db, "Jug", 900).await;
    let started = std::time::Instant::now();

    wait_until(
        PATIENCE,
        "the other replica's product in the listing",
        || {
            let app = &app;
            async move { (listed(app).await == vec![id]).then_some(()) }
        },
    )
    .await;
    assert!(started.elapsed() <= DEFAULT_CATALOG_CACHE_TTL + Duration::from_secs(2));
}

#[tokio::test]
async fn a_product_added_by_another_replica_can_be_bought_at_once() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let db = database_of(&app).await;
    let cup = app.create_product("Cup", 450).await;
    assert_eq!(total_of_one(&app, cup.id).await, 450);

    let jug = insert_elsewhere(&db, "Jug", 900).await;

    assert_eq!(total_of_one(&app, jug).await, 900);
}

#[tokio::test]
async fn a_price_changed_in_the_database_is_charged_within_the_cache_ttl() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let db = database_of(&app).await;
    let cup = app.create_product("Cup", 450).await;
    assert_eq!(total_of_one(&app, cup.id).await, 450);

    product::Entity::update_many()
        .col_expr(product::Column::PriceCents, Expr::value(500))
        .filter(product::Column::Id.eq(cup.id))
        .exec(&db)
        .await
        .expect("change the price");

    wait_until(PATIENCE, "the new price to be charged", || {
        let app = &app;
        async move { (total_of_one(app, cup.id).await == 500).then_some(()) }
    })
    .await;
}

/// An app whose cache holds `max_bytes` for longer than any test runs, so nothing leaves it by
/// expiring, with `products` products of 1,000-character descriptions.
async fn app_with_cache(max_bytes: u64, products: usize) -> TestApp {
    let app = spawn_app_with(Options {
        catalog_cache: CacheLimits {
            ttl: Duration::from_secs(600),
            max_bytes,
        },
        ..Options::default()
    })
    .await;
    let db = database_of(&app).await;
    for i in 0..products {
        insert_described(&db, &format!("Product {i}"), 100, "d".repeat(1000)).await;
    }
    app
}

/// `shop_catalog_cache_{what}{cache}` as the app reports it.
async fn cache_gauge(app: &TestApp, what: &str, cache: &str) -> f64 {
    let name = format!("shop_catalog_cache_{what}");
    value(&app.metrics().await, &name, &[("cache", cache)])
        .unwrap_or_else(|| panic!("products reports {name}{{cache={cache:?}}}"))
}

async fn get_ok(app: &TestApp, path: &str) {
    assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
}

#[tokio::test]
async fn only_pages_of_the_usual_sizes_at_multiples_of_their_size_are_cached() {
    let app = app_with_cache(4 * 1024 * 1024, 60).await;

    for offset in 1..=40 {
        get_ok(&app, &format!("/products?limit=200&offset={offset}")).await;
        get_ok(&app, &format!("/products?offset={offset}")).await;
        get_ok(&app, &format!("/products?limit=7&offset={offset}")).await;
    }
    get_ok(&app, "/products?limit=7").await;
    assert_eq!(cache_gauge(&app, "entries", "page").await, 0.0);
    for canonical in [
        "",
        "?limit=50&offset=50",
        "?limit=20&offset=40",
        "?limit=200",
    ] {
        get_ok(&app, &format!("/products{canonical}")).await;
    }

    assert_eq!(cache_gauge(&app, "entries", "page").await, 4.0);
}

#[tokio::test]
async fn the_catalog_cache_never_holds_more_bytes_than_its_cap() {
    // Half each for products and pages: two pages of fifty 1,000-character products fit, not
    // three, and about a hundred of the products.
    let cap = 256 * 1024;
    let app = app_with_cache(cap, 250).await;
    let listed: Vec<ProductBody> = app.get_json("/products?limit=200").await;

    for offset in (0..250).step_by(50) {
        get_ok(&app, &format!("/products?offset={offset}")).await;
        let bytes = cache_gauge(&app, "bytes", "page").await;
        assert!(bytes <= (cap / 2) as f64, "{bytes} bytes of pages");
    }
    for product in &listed {
        get_ok(&app, &format!("/products/{}", product.id)).await;
        let bytes = cache_gauge(&app, "bytes", "product").await;
        assert!(bytes <= (cap / 2) as f64, "{bytes} bytes of products");
    }

    // Full, not empty: the cap is what stopped them.
    assert!(cache_gauge(&app, "bytes", "page").await > (cap / 4) as f64);
    assert!(cache_gauge(&app, "bytes", "product").await > (cap / 4) as f64);
}
