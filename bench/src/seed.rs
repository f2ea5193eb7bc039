//! The data the scenarios need, made through the public API: an admin (granted with the auth
//! binary), a catalog of products, and buyers with tokens.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::fixture::Fixture;
use crate::http::{Call, Conn};

pub const PRODUCTS: usize = 20;
pub const BUYERS: usize = 64;
/// Registrations and logins in flight at once while seeding; auth hashes two at a time anyway.
const SEED_CONCURRENCY: usize = 4;

/// A buyer: what the login scenario sends, and the token buys carry.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub login_body: Bytes,
    pub token: String,
}

/// What the scenarios draw from.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub products: Vec<Uuid>,
    pub buyers: Vec<Buyer>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: Uuid,
}

pub async fn seed(
    fixture: &Fixture,
    auth: SocketAddr,
    products: SocketAddr,
) -> anyhow::Result<Seeded> {
    let password = format!("bench-password-{}", fixture.id);
    let admin_email = format!("bench-admin-{}@example.com", fixture.id);
    let admin_body = login_body(&admin_email, &password);
    let mut conn = Conn::new(auth);
    register(&mut conn, &admin_body).await?;
    fixture.grant_admin(&admin_email).await?;
    // Logged in after the grant, so the token carries the role.
    let admin_token = login(&mut conn, &admin_body).await?;

    let mut catalog = Conn::new(products);
    let mut product_ids = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let body = json!({
            "name": format!("Bench product {i}"),
            "description": "A product the benchmark buys.",
            "price_cents": 199 + 100 * i64::try_from(i)?,
        });
        let answer = catalog
            .send(Call::post("/products", body.to_string()).bearer(&admin_token))
            .await
            .context("create a product")?;
        expect(&answer, StatusCode::CREATED, "POST /products")?;
        let created: Created = serde_json::from_slice(&answer.body).context("read the product")?;
        product_ids.push(created.id);
    }

    let buyers: Vec<Buyer> = futures::stream::iter(0..BUYERS)
        .map(|i| {
            let body = login_body(
                &format!("bench-buyer-{i}-{}@example.com", fixture.id),
                &password,
            );
            async move {
                let mut conn = Conn::new(auth);
                register(&mut conn, &body).await?;
                let token = login(&mut conn, &body).await?;
                anyhow::Ok(Buyer {
                    login_body: body,
                    token,
                })
            }
        })
        .buffered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Seeded {
        products: product_ids,
        buyers,
    })
}

/// `buyers` logged in again, for tokens as fresh as a client that keeps working would have.
pub async fn log_in_again(auth: SocketAddr, buyers: &[Buyer]) -> anyhow::Result<Vec<Buyer>> {
    futures::stream::iter(buyers)
        .map(|buyer| async move {
            let mut conn = Conn::new(auth);
            let token = login(&mut conn, &buyer.login_body).await?;
            anyhow::Ok(Buyer {
                login_body: buyer.login_body.clone(),
                token,
            })
        })
        .buffered(SEED_CONCURRENCY)
        .try_collect()
        .await
}

fn login_body(email: &str, password: &str) -> Bytes {
    Bytes::from(json!({ "email": email, "password": password }).to_string())
}

async fn register(conn: &mut Conn, body: &Bytes) -> anyhow::Result<()> {
    let answer = conn
        .send(Call::post("/auth/register", body.clone()))
        .await
        .context("register a user")?;
    expect(&answer, StatusCode::CREATED, "POST /auth/register")
}

async fn login(conn: &mut Conn, body: &Bytes) -> anyhow::Result<String> {
    let answer = conn
        .send(Call::post("/auth/login", body.clone()))
        .await
        .context("log in")?;
    expect(&answer, StatusCode::OK, "POST /auth/login")?;
    let token: Token = serde_json::from_slice(&answer.body).context("read the token")?;
    Ok(token.access_token)
}

fn expect(answer: &crate::http::Answer, status: StatusCode, what: &str) -> anyhow::Result<()> {
    if answer.status != status {
        bail!(
            "{what} answered {} (expected {status}): {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}
