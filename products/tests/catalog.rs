//! The catalog over HTTP: adding products as an admin, listing and reading them.

mod support;

use std::time::Duration;

use common::{ids::UserId, jwt::ROLE_ADMIN, testing::claims_for};
use products::routes::ProductBody;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{assert_problem, spawn_app};

fn a_teapot() -> Value {
    json!({
        "name": "Teapot",
        "description": "Short and stout.",
        "price_cents": 2599,
        "image_url": "https://cdn.example.com/teapot.png"
    })
}

#[tokio::test]
async fn an_admin_adds_a_product_and_finds_it_at_its_location() {
    let app = spawn_app().await;

    let response = app.post_product(&app.admin_token(), &a_teapot()).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let created: ProductBody = response.json().await.unwrap();
    assert_eq!(location, format!("/products/{}", created.id));
    assert_eq!(created.name, "Teapot");
    assert_eq!(created.price_cents, 2599);
    assert_eq!(
        created.image_url.as_deref(),
        Some("https://cdn.example.com/teapot.png")
    );

    let fetched: ProductBody = app.get_json(&location).await;
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn a_product_without_an_image_shows_a_null_image_url_and_a_utc_creation_time() {
    let app = spawn_app().await;

    let response = app
        .post_product(
            &app.admin_token(),
            &json!({"name": "Cup", "description": "", "price_cents": 0}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["image_url"], Value::Null);
    assert_eq!(body["price_cents"], 0);
    let created_at = body["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "{created_at} is not UTC");
}

#[tokio::test]
async fn a_customer_may_not_add_products() {
    let app = spawn_app().await;

    let response = app.post_product(&app.customer_token(), &a_teapot()).await;

    assert_problem(response, StatusCode::FORBIDDEN).await;
    let list: Vec<Value> = app.get_json("/products").await;
    assert!(list.is_empty(), "nothing was added");
}

#[tokio::test]
async fn adding_a_product_needs_a_valid_token() {
    let app = spawn_app().await;
    let admin = claims_for(UserId::new(), &[ROLE_ADMIN]);

    let expired = {
        let mut c = admin.clone();
        c.iat -= 3600;
        c.exp = chrono::Utc::now().timestamp() - 60;
        app.issuer.token(&c)
    };
    let other_audience = {
        let mut c = admin.clone();
        c.aud = "elsewhere".to_owned();
        app.issuer.token(&c)
    };
    let other_issuer = {
        let mut c = admin.clone();
        c.iss = "mallory".to_owned();
        app.issuer.token(&c)
    };
    // A customer's signature under an admin's claims: the kind of edit a user would try.
    let tampered = {
        let customer = app.issuer.token(&claims_for(UserId::new(), &[]));
        let promoted = app.issuer.token(&admin);
        let mut parts: Vec<&str> = customer.split('.').collect();
        parts[1] = promoted.split('.').nth(1).unwrap();
        parts.join(".")
    };
    let forged = app.issuer.mint_with_other_key(&admin);

    let cases = [
        ("no token", None),
        ("an expired token", Some(expired)),
        ("a token for another audience", Some(other_audience)),
        ("a token from another issuer", Some(other_issuer)),
        ("a tampered token", Some(tampered)),
        ("a token signed by an unpublished key", Some(forged)),
        ("garbage", Some("not.a.token".to_owned())),
    ];
    for (what, token) in cases {
        let mut request = app.http.post(app.url("/products")).json(&a_teapot());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn invalid_product_bodies_are_refused_with_400() {
    let app = spawn_app().await;
    let cases = [
        (
            "an empty name",
            json!({"name": "", "description": "d", "price_cents": 1}),
        ),
        (
            "a blank name",
            json!({"name": "   ", "description": "d", "price_cents": 1}),
        ),
        (
            "a name of 201 characters",
            json!({"name": "n".repeat(201), "description": "d", "price_cents": 1}),
        ),
        (
            "a negative price",
            json!({"name": "Mug", "description": "d", "price_cents": -1}),
        ),
        (
            "a price above the maximum",
            json!({"name": "Mug", "description": "d", "price_cents": 1_000_000_001}),
        ),
        (
            "a fractional price",
            json!({"name": "Mug", "description": "d", "price_cents": 1.5}),
        ),
        (
            "a description of 5001 characters",
            json!({"name": "Mug", "description": "d".repeat(5001), "price_cents": 1}),
        ),
        (
            "a NUL character in the description (PostgreSQL text cannot hold it)",
            json!({"name": "Mug", "description": "a\u{0}b", "price_cents": 1}),
        ),
        (
            "a control character in the name",
            json!({"name": "Mug\u{0}", "description": "d", "price_cents": 1}),
        ),
        (
            "an image url that is not http",
            json!({"name": "Mug", "description": "d", "price_cents": 1, "image_url": "ftp://x/y"}),
        ),
        (
            "an unknown field",
            json!({"name": "Mug", "description": "d", "price_cents": 1, "colour": "red"}),
        ),
        (
            "a missing price",
            json!({"name": "Mug", "description": "d"}),
        ),
    ];
    for (what, body) in cases {
        let response = app.post_product(&app.admin_token(), &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }

    let response = app
        .post_raw_json("/products", &app.admin_token(), "{\"name\": \"Mug\",")
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn the_catalog_lists_oldest_first_and_honours_limit_and_offset() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for name in ["First", "Second", "Third"] {
        created.push(app.create_product(name, 100).await.id);
    }

    let page = |query: &'static str| {
        let request = app.http.get(app.url(&format!("/products{query}")));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let body: Vec<ProductBody> = response.json().await.unwrap();
            body.into_iter().map(|p| p.id).collect::<Vec<_>>()
        }
    };

    assert_eq!(page("").await, created);
    assert_eq!(page("?limit=2").await, created[..2]);
    assert_eq!(page("?limit=2&offset=2").await, created[2..]);
    assert_eq!(page("?offset=3").await, vec![]);
    assert_eq!(page("?limit=200&offset=1").await, created[1..]);
    assert_eq!(page("?offset=10000").await, vec![]);
}

#[tokio::test]
async fn bad_paging_is_refused_with_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=201",
        "offset=-1",
        "offset=10001",
        "limit=ten",
        "page=2",
    ] {
        let response = app.get(&format!("/products?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_product_is_found_by_its_id_and_other_ids_are_not_found() {
    let app = spawn_app().await;
    let mug = app.create_product("Mug", 450).await;

    let found = app.get(&format!("/products/{}", mug.id)).await;
    assert_eq!(found.status(), StatusCode::OK);
    assert_eq!(found.json::<ProductBody>().await.unwrap(), mug);

    let unknown = format!("/products/{}", uuid::Uuid::new_v4());
    for path in [unknown.as_str(), "/products/not-a-uuid", "/products/42"] {
        let response = app.get(path).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn health_is_always_ok_and_unknown_routes_are_problem_404s() {
    let app = spawn_app().await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);

    let response = app.get("/nowhere").await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_server_stops_when_shutdown_is_requested() {
    let mut app = spawn_app().await;

    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops within the grace period")
        .expect("the server stops cleanly");

    assert!(app.http.get(app.url("/healthz")).send().await.is_err());
}
