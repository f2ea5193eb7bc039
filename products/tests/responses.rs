//! The OpenAPI document against the routes products serves, and the caching headers of its
//! answers.

mod support;

use common::testing::{assert_not_stored, openapi::assert_document_matches_routes};
use reqwest::{
    StatusCode,
    header::{self, HeaderValue},
};
use serde_json::json;
use support::{spawn_app, start_honest_orders};

#[tokio::test]
async fn the_openapi_document_names_every_route_products_serves_and_no_other() {
    let app = spawn_app().await;
    assert_document_matches_routes(&app, products::routes::configure).await;
}

#[tokio::test]
async fn buys_and_new_products_are_never_stored_by_a_cache_while_the_catalog_may_be() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let mug = app.create_product("Mug", 450).await;

    let bought = app
        .buy(&json!({"items": [{"product_id": mug.id, "quantity": 1}]}))
        .await;
    let refused = app.buy(&json!({"items": []})).await;
    let created = app
        .post_product(
            &app.admin_token(),
            &json!({"name": "Cup", "description": "", "price_cents": 1}),
        )
        .await;
    let catalog = app.get("/products").await;

    assert_eq!(bought.status(), StatusCode::CREATED);
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(created.status(), StatusCode::CREATED);
    for response in [bought, refused, created] {
        assert_not_stored(&response);
    }
    assert_eq!(catalog.status(), StatusCode::OK);
    assert_eq!(catalog.headers().get(header::CACHE_CONTROL), None);
    assert_eq!(
        catalog.headers().get(header::X_CONTENT_TYPE_OPTIONS),
        Some(&HeaderValue::from_static("nosniff"))
    );
}
