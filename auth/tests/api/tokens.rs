use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::support::{KEY_PEM, OTHER_KEY_PEM, key_file, kid_of, spawn_app, spawn_app_with};

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
