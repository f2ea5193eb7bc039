//! `scripts/seed admin` against the real service and the real auth binary: it grants the role
//! only to the account its password opens.

use std::process::Output;

use common::jwt::ROLE_ADMIN;

use crate::support::{TestApp, spawn_app};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/seed");
const EMAIL: &str = "admin@shop.example";
const PASSWORD: &str = "the seed's own password";

/// Runs `scripts/seed admin` as the admin `EMAIL` with `PASSWORD`, against `app`.
async fn seed_admin(app: &TestApp) -> Output {
    tokio::process::Command::new(SEED)
        .arg("admin")
        .env("AUTH_URL", &app.address)
        .env("AUTH_BIN", env!("CARGO_BIN_EXE_auth"))
        .env("AUTH_DATABASE_URL", &app.database.url)
        .env("SEED_ADMIN_EMAIL", EMAIL)
        .env("SEED_ADMIN_PASSWORD", PASSWORD)
        .env("SEED_WAIT_SECS", "30")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run scripts/seed")
}

fn shown(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_seed_registers_its_admin_and_grants_the_role_to_that_account() {
    let (app, _db) = spawn_app().await;

    let output = seed_admin(&app).await;

    assert!(output.status.success(), "{}", shown(&output));
    let claims = app.claims(EMAIL, PASSWORD).await;
    assert_eq!(claims.roles, [ROLE_ADMIN]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        printed.trim(),
        claims.sub.to_string(),
        "it prints the account's id"
    );
}

#[tokio::test]
async fn seeding_again_keeps_the_admin_it_made() {
    let (app, _db) = spawn_app().await;
    let first = seed_admin(&app).await;
    assert!(first.status.success(), "{}", shown(&first));

    let again = seed_admin(&app).await;

    assert!(again.status.success(), "{}", shown(&again));
    assert_eq!(app.claims(EMAIL, PASSWORD).await.roles, [ROLE_ADMIN]);
}

#[tokio::test]
async fn the_seed_grants_nothing_when_someone_else_registered_its_email_first() {
    let (app, _db) = spawn_app().await;
    app.registered_user(EMAIL, "a squatter's password").await;

    let output = seed_admin(&app).await;

    assert!(!output.status.success(), "{}", shown(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not granting"), "{stderr}");
    let squatter = app.claims(EMAIL, "a squatter's password").await;
    assert!(squatter.roles.is_empty(), "{squatter:?}");
}
