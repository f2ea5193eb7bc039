//! The OpenAPI document against the routes orders serves, and the caching headers of its
//! answers.

mod support;

use common::{
    ids::UserId,
    testing::{assert_not_stored, openapi::assert_document_matches_routes},
};
use reqwest::StatusCode;
use support::TestApp;

#[tokio::test]
async fn the_openapi_document_names_every_route_orders_serves_and_no_other() {
    let app = TestApp::spawn().await;
    assert_document_matches_routes(&app, orders::routes::configure).await;
}

#[tokio::test]
async fn a_users_orders_are_never_stored_by_a_cache() {
    let app = TestApp::spawn().await;
    let user = Some(UserId::new());

    let list = app.get_as("/orders", user).await;
    let missing = app
        .get_as("/orders/00000000-0000-0000-0000-000000000000", user)
        .await;

    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for response in [list, missing] {
        assert_not_stored(&response);
    }
}
