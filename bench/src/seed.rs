//! The data the scenarios need: the catalog, which `scripts/run-local` seeded from
//! `bench/catalog.json` and is read back here through `GET /products`, and buyers with tokens,
//! whom the bench registers itself (they are load, not catalog).

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
struct Listed {
    id: Uuid,
}

pub async fn seed(
    fixture: &Fixture,
    auth: SocketAddr,
    products: SocketAddr,
) -> anyhow::Result<Seeded> {
    let product_ids = catalog(products).await?;
    let password = format!("bench-password-{}", fixture.id);
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

/// The ids of the products in the catalog (the run's own database holds only the seeded ones).
async fn catalog(products: SocketAddr) -> anyhow::Result<Vec<Uuid>> {
    let mut conn = Conn::new(products);
    let answer = conn
        .send(Call::get("/products?limit=200"))
        .await
        .context("list the products")?;
    expect(&answer, StatusCode::OK, "GET /products")?;
    let listed: Vec<Listed> = serde_json::from_slice(&answer.body).context("read the products")?;
    if listed.is_empty() {
        bail!("the catalog is empty: scripts/run-local seeded no product");
    }
    Ok(listed.into_iter().map(|p| p.id).collect())
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
