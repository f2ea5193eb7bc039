use std::time::Duration;

use auth::token::{self, TokenIssuer};
use common::jwt::VerifyError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    KEY_PEM, KeyFile, OTHER_KEY_PEM, key_file, kid_of, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn the_jwks_publishes_the_ed25519_key_named_in_token_headers() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    let token = app.token("ann@example.com", "correct horse").await;

    let jwks: Value = app
        .http
        .get(app.jwks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let keys = jwks["keys"].as_array().unwrap();
    let key = keys
        .iter()
        .find(|k| k["kid"] == kid_of(&token).as_str())
        .expect("the token's kid is in the JWKS");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "the private key is never published");
}

#[tokio::test]
async fn a_token_with_a_tampered_signature_is_refused() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    let token = app.token("ann@example.com", "correct horse").await;

    // A character in the middle of the signature: every one of its bits is significant.
    let signature_start = token.rfind('.').unwrap() + 1;
    let at = signature_start + (token.len() - signature_start) / 2;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);

    assert!(app.verifier().verify(&token).await.is_ok());
    assert!(app.verifier().verify(&tampered).await.is_err());
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_same_kid_is_refused() {
    let (app, _db) = spawn_app().await;
    let id = app
        .registered_user("ann@example.com", "correct horse")
        .await;
    let genuine = app.token("ann@example.com", "correct horse").await;
    let claims: Value = {
        let verified = app.verifier().verify(&genuine).await.unwrap();
        serde_json::to_value(verified).unwrap()
    };
    assert_eq!(claims["sub"], id.as_str());

    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid_of(&genuine));
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(OTHER_KEY_PEM.as_bytes()).unwrap(),
    )
    .unwrap();

    assert!(app.verifier().verify(&forged).await.is_err());
}

#[tokio::test]
async fn two_instances_with_the_same_key_file_accept_each_others_tokens() {
    let db = common::testing::TestDatabase::create().await;
    let key = key_file(KEY_PEM);
    let first = spawn_app_with(&db, |c| c.keys.private_key_file = Some(key.0.clone())).await;
    let second = spawn_app_with(&db, |c| c.keys.private_key_file = Some(key.0.clone())).await;
    first
        .registered_user("ann@example.com", "correct horse")
        .await;

    let token = first.token("ann@example.com", "correct horse").await;

    let claims = second
        .verifier()
        .verify(&token)
        .await
        .expect("the second instance publishes the key that signed the first's token");
    assert_eq!(claims.email, "ann@example.com");
}

#[tokio::test]
async fn instances_with_ephemeral_keys_do_not_accept_each_others_tokens() {
    let db = common::testing::TestDatabase::create().await;
    let first = spawn_app_with(&db, |_| {}).await;
    let second = spawn_app_with(&db, |_| {}).await;
    first
        .registered_user("ann@example.com", "correct horse")
        .await;

    let token = first.token("ann@example.com", "correct horse").await;

    assert!(second.verifier().verify(&token).await.is_err());
}

#[tokio::test]
async fn tokens_are_typed_as_access_tokens_and_carry_their_issue_time() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let token = app.token("ann@example.com", "correct horse").await;

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(common::jwt::TOKEN_TYPE));
    let claims = app.verifier().verify(&token).await.unwrap();
    assert_eq!(claims.exp - claims.iat, 900);
}

#[tokio::test]
async fn the_jwks_tells_verifiers_how_long_they_may_keep_it() {
    let (app, _db) = spawn_app().await;

    let response = app.http.get(app.jwks_url()).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[reqwest::header::CACHE_CONTROL],
        "public, max-age=300"
    );
    let other = app.get("/auth/login").await;
    assert!(
        other.headers().get(reqwest::header::CACHE_CONTROL)
            != Some(&"public, max-age=300".parse().unwrap()),
        "only the key set is cacheable"
    );
    assert_eq!(
        app.get("/no/such/route").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn after_a_rotation_old_tokens_verify_until_the_previous_key_is_dropped() {
    let db = common::testing::TestDatabase::create().await;
    let current = key_file(KEY_PEM);
    let previous = KeyFile(current.0.with_extension("previous.pem"));
    let with_keys = |c: &mut auth::config::Config| {
        c.keys.private_key_file = Some(current.0.clone());
        c.keys.previous_key_file = Some(previous.0.clone());
    };
    let before = spawn_app_with(&db, with_keys).await;
    before
        .registered_user("ann@example.com", "correct horse")
        .await;
    let old_token = before.token("ann@example.com", "correct horse").await;

    let rotation = token::rotate_key_files(&current.0, &previous.0).unwrap();
    let rotated = spawn_app_with(&db, with_keys).await;
    let new_token = rotated.token("ann@example.com", "correct horse").await;

    assert_eq!(rotation.previous, kid_of(&old_token));
    assert_eq!(rotation.current, kid_of(&new_token));
    assert_ne!(rotation.previous, rotation.current);
    rotated
        .verifier()
        .verify(&old_token)
        .await
        .expect("a token of the previous key verifies after the rotation");
    rotated.verifier().verify(&new_token).await.unwrap();

    assert!(token::drop_previous_key_file(&previous.0).unwrap());
    let dropped = spawn_app_with(&db, with_keys).await;
    assert!(matches!(
        dropped.verifier().verify(&old_token).await,
        Err(VerifyError::UnknownKey)
    ));
    dropped.verifier().verify(&new_token).await.unwrap();
}

#[test]
fn keys_init_writes_an_owner_only_key_once_and_keeps_it() {
    use std::os::unix::fs::PermissionsExt;

    let file =
        KeyFile(std::env::temp_dir().join(format!("auth-init-{}.pem", uuid::Uuid::new_v4())));

    let first = token::init_key_file(&file.0).unwrap();
    let second = token::init_key_file(&file.0).unwrap();

    assert_eq!(first, second, "an existing key is kept");
    let mode = std::fs::metadata(&file.0).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let issuer = TokenIssuer::from_pem_file(&file.0, Duration::from_secs(60)).unwrap();
    assert_eq!(issuer.kid(), first);
}

#[test]
fn a_previous_key_is_published_beside_the_signing_key_under_its_own_kid() {
    let ttl = Duration::from_secs(60);
    let old = TokenIssuer::from_pem(OTHER_KEY_PEM, ttl).unwrap();
    let mut issuer = TokenIssuer::from_pem(KEY_PEM, ttl).unwrap();

    let kid = issuer.publish_previous(OTHER_KEY_PEM).unwrap();
    issuer.publish_previous(KEY_PEM).unwrap();

    assert_eq!(
        kid,
        old.kid(),
        "the previous key keeps the kid its tokens carry"
    );
    let kids: Vec<_> = issuer
        .jwks()
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(
        kids,
        [issuer.kid(), old.kid()],
        "signing key first, each once"
    );
}

#[tokio::test]
async fn auth_refuses_to_start_without_a_key_when_one_is_required() {
    let db = common::testing::TestDatabase::create().await;

    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("serve")
        .env("PORT", "0")
        .env("DATABASE_URL", &db.url)
        .env("REQUIRE_JWT_KEY", "true")
        .env_remove("JWT_PRIVATE_KEY_FILE")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("auth started without a key although REQUIRE_JWT_KEY=true")
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains("REQUIRE_JWT_KEY is true but JWT_PRIVATE_KEY_FILE is not set"),
        "{logs}"
    );
}
