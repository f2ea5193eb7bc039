//! The catalog cache as a client sees it: what this replica adds shows at once, what another
//! replica adds (or an operator changes in the database) shows within `CATALOG_CACHE_TTL_MS`,
//! and a product never seen before is found at its first buy.

mod support;

use std::time::Duration;

use common::{ids::ProductId, messages::Order, testing::wait_until};
use products::{config::DEFAULT_CATALOG_CACHE_TTL, entity::product, routes::ProductBody};
use reqwest::StatusCode;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, Database, DatabaseConnection, EntityTrait,
    QueryFilter, Set, sea_query::Expr,
};
use serde_json::json;
use support::{TestApp, spawn_app, start_honest_orders};

/// Long enough for a cached entry to expire, with room for a slow machine.
const PATIENCE: Duration = Duration::from_secs(5);

async fn database_of(app: &TestApp) -> DatabaseConnection {
    Database::connect(&app.db.url)
        .await
        .expect("connect to the test database")
}

/// Adds a product straight to the database, as another replica would.
async fn insert_elsewhere(db: &DatabaseConnection, name: &str, price_cents: i64) -> ProductId {
    let id = ProductId::new();
    product::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        description: Set(String::new()),
        price_cents: Set(price_cents),
        image_url: Set(None),
        created_at: NotSet,
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
