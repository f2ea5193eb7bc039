//! Verifying tokens against a JWKS served over HTTP, with the test issuer standing in for auth.

use common::{
    ids::UserId,
    jwt::{JwksVerifier, ROLE_ADMIN},
    testing::{TestIssuer, claims_for},
};

#[tokio::test]
async fn a_token_signed_with_the_published_key_verifies_and_carries_its_claims() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());
    let user = UserId::new();

    let claims = verifier
        .verify(&issuer.token_for(user, &[ROLE_ADMIN]))
        .await
        .expect("the token verifies");

    assert_eq!(claims.sub, user);
    assert_eq!(claims.roles, vec![ROLE_ADMIN.to_owned()]);
}

#[tokio::test]
async fn a_token_signed_with_an_unpublished_key_is_refused_even_under_a_known_key_id() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());
    let claims = claims_for(UserId::new(), &[ROLE_ADMIN]);
    verifier
        .verify(&issuer.token(&claims))
        .await
        .expect("the genuine token verifies");

    let forged = issuer.mint_with_other_key(&claims);

    assert!(verifier.verify(&forged).await.is_err());
}
