//! Verifying tokens against a JWKS served over HTTP, with the test issuer standing in for auth:
//! what is accepted, every forgery refused, and keys that expire, rotate and go missing.

use std::time::Duration;

use common::{
    ids::UserId,
    jwt::{JwksConfig, JwksVerifier, ROLE_ADMIN, VerifyError},
    testing::{Forgery, KEY_ID, NEXT_KEY_ID, TestIssuer, claims_for, wait_until},
};

/// Settings whose cache lives a second, so a test sees it expire.
fn short_cache(issuer: &TestIssuer) -> JwksConfig {
    JwksConfig {
        cache_ttl: Duration::from_secs(1),
        min_refetch: Duration::from_millis(100),
        ..issuer.jwks_config()
    }
}

/// Waits until `token` is refused (or accepted, when `accepted`), and returns how it ended.
async fn until(
    verifier: &JwksVerifier,
    token: &str,
    accepted: bool,
    what: &str,
) -> Result<(), String> {
    wait_until(Duration::from_secs(10), what, || async {
        match verifier.verify(token).await {
            Ok(_) if accepted => Some(Ok(())),
            Err(e) if !accepted => Some(Err(e.to_string())),
            _ => None,
        }
    })
    .await
}

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

#[tokio::test]
async fn every_forged_token_is_refused_as_invalid_not_as_an_outage() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());
    verifier
        .verify(&issuer.token_for(UserId::new(), &[]))
        .await
        .expect("a genuine token verifies, so the forgeries fail for what they forge");

    for forgery in Forgery::ALL {
        let token = issuer.forge().forge(forgery, UserId::new());
        match verifier.verify(&token).await {
            Ok(claims) => panic!("{forgery:?} was accepted: {claims:?}"),
            Err(VerifyError::Unavailable { .. }) => panic!("{forgery:?} was taken for an outage"),
            Err(_) => {}
        }
    }
}

#[tokio::test]
async fn a_token_whose_not_before_lies_an_hour_ahead_is_refused() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());

    let token = issuer.forge().forge(Forgery::NotYetValid, UserId::new());

    let refused = verifier.verify(&token).await;
    assert!(
        matches!(refused, Err(VerifyError::Invalid(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_of_another_type_than_at_jwt_is_refused() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());

    let token = issuer.forge().forge(Forgery::WrongType, UserId::new());

    let refused = verifier.verify(&token).await;
    assert!(
        matches!(refused, Err(VerifyError::WrongType(Some(ref t))) if t == "JWT"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_living_longer_than_the_maximum_is_refused_and_one_just_within_it_verifies() {
    let issuer = TestIssuer::start().await;
    let config = issuer.jwks_config();
    let max = i64::try_from(config.max_token_lifetime.as_secs()).unwrap();
    let verifier = JwksVerifier::new(config);
    let mut claims = claims_for(UserId::new(), &[]);

    claims.exp = claims.iat + max;
    verifier
        .verify(&issuer.token(&claims))
        .await
        .expect("a token living exactly the maximum verifies");
    claims.exp = claims.iat + max + 1;
    let refused = verifier.verify(&issuer.token(&claims)).await;

    assert!(
        matches!(refused, Err(VerifyError::LifetimeTooLong(l)) if l == max + 1),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_issued_a_day_ahead_is_refused_though_its_lifetime_is_normal() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());

    let token = issuer.forge().forge(Forgery::IssuedInFuture, UserId::new());

    let refused = verifier.verify(&token).await;
    assert!(
        matches!(refused, Err(VerifyError::IssuedInFuture)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_burst_of_unknown_key_ids_fetches_the_key_set_once() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());

    for _ in 0..50 {
        let token = issuer.forge().forge(Forgery::UnknownKid, UserId::new());
        assert!(matches!(
            verifier.verify(&token).await,
            Err(VerifyError::UnknownKey)
        ));
    }

    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test]
async fn a_check_abandoned_while_the_keys_are_fetched_leaves_them_fetched_for_the_next() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(issuer.jwks_config());
    let token = issuer.token_for(UserId::new(), &[]);

    // Polled once, up to the fetch in flight, then dropped: what actix does to a token check
    // when another extractor of the same request fails, or when the client goes away.
    let abandoned = tokio::time::timeout(Duration::from_nanos(1), verifier.verify(&token)).await;
    assert!(abandoned.is_err(), "the first check ended before its fetch");

    verifier
        .verify(&token)
        .await
        .expect("the next check finds the keys the abandoned one fetched");
    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test]
async fn a_withdrawn_key_stops_verifying_once_the_cache_expires() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(short_cache(&issuer));
    let token = issuer.token_for(UserId::new(), &[]);
    verifier.verify(&token).await.expect("the token verifies");

    issuer.publish(&[NEXT_KEY_ID]);

    let refused = until(&verifier, &token, false, "the withdrawn key to be refused").await;
    assert_eq!(refused, Err(VerifyError::UnknownKey.to_string()));
}

#[tokio::test]
async fn the_key_sets_max_age_shortens_how_long_its_keys_are_trusted() {
    let issuer = TestIssuer::start().await;
    issuer.set_cache_control(Some("public, max-age=1"));
    let verifier = JwksVerifier::new(JwksConfig {
        cache_ttl: Duration::from_secs(3600),
        min_refetch: Duration::from_millis(100),
        ..issuer.jwks_config()
    });
    let token = issuer.token_for(UserId::new(), &[]);
    verifier.verify(&token).await.expect("the token verifies");

    issuer.publish(&[]);

    let refused = until(&verifier, &token, false, "the withdrawn key to be refused").await;
    assert_eq!(refused, Err(VerifyError::UnknownKey.to_string()));
}

#[tokio::test]
async fn a_key_set_that_cannot_be_fetched_is_an_outage_until_it_can() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(short_cache(&issuer));
    let token = issuer.token_for(UserId::new(), &[]);
    issuer.set_down(true);

    let first = verifier.verify(&token).await;
    assert!(
        matches!(first, Err(VerifyError::Unavailable { .. })),
        "with nothing cached: {first:?}"
    );

    issuer.set_down(false);
    until(&verifier, &token, true, "the key set to be fetched again")
        .await
        .unwrap();
    issuer.set_down(true);
    wait_until(
        Duration::from_secs(10),
        "the cached keys to expire during the outage",
        || async {
            matches!(
                verifier.verify(&token).await,
                Err(VerifyError::Unavailable { .. })
            )
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn after_a_rotation_the_previous_key_verifies_until_it_is_withdrawn() {
    let issuer = TestIssuer::start().await;
    let verifier = JwksVerifier::new(short_cache(&issuer));
    let before = issuer.token_for(UserId::new(), &[]);
    verifier.verify(&before).await.expect("the token verifies");

    // Rotation: the new key signs, the old one is still published.
    issuer.publish(&[NEXT_KEY_ID, KEY_ID]);
    let after = issuer.next_forge().sign(&claims_for(UserId::new(), &[]));

    // Its unknown kid makes the verifier refetch, once the refetch interval since the last
    // fetch has passed.
    until(&verifier, &after, true, "a token of the new key to verify")
        .await
        .unwrap();
    verifier
        .verify(&before)
        .await
        .expect("a token of the previous key still verifies");

    issuer.publish(&[NEXT_KEY_ID]);
    let refused = until(&verifier, &before, false, "the previous key to be refused").await;
    assert_eq!(refused, Err(VerifyError::UnknownKey.to_string()));
    verifier
        .verify(&after)
        .await
        .expect("the new key still verifies");
}
