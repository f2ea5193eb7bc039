use common::{ids::UserId, jwt::ROLE_ADMIN};

use crate::support::spawn_app;

fn id(s: &str) -> UserId {
    s.parse().expect("a user id")
}

#[tokio::test]
async fn after_an_admin_grant_a_fresh_login_carries_the_admin_role() {
    let (app, _db) = spawn_app().await;
    let ann = app
        .registered_user("ann@example.com", "correct horse")
        .await;
    let before = app.claims("ann@example.com", "correct horse").await;

    auth::admin::grant_with_config(&app.database, id(&ann))
        .await
        .expect("the grant succeeds");

    let after = app.claims("ann@example.com", "correct horse").await;
    assert!(before.roles.is_empty());
    assert_eq!(after.roles, [ROLE_ADMIN]);
}

#[tokio::test]
async fn granting_admin_twice_leaves_one_admin_role() {
    let (app, _db) = spawn_app().await;
    let ann = app
        .registered_user("ann@example.com", "correct horse")
        .await;
    let db = common::db::connect(&app.database).await.unwrap();

    auth::admin::grant(&db, id(&ann)).await.unwrap();
    auth::admin::grant(&db, id(&ann)).await.unwrap();

    let claims = app.claims("ann@example.com", "correct horse").await;
    assert_eq!(claims.roles, [ROLE_ADMIN]);
}

#[tokio::test]
async fn granting_admin_to_an_unknown_id_fails_saying_so() {
    let (app, _db) = spawn_app().await;
    let nobody = UserId::new();

    let error = auth::admin::grant_with_config(&app.database, nobody)
        .await
        .expect_err("there is no such user");

    let message = format!("{error:#}");
    assert!(message.contains(&nobody.to_string()), "{message}");
}

#[tokio::test]
async fn a_grant_names_one_account_so_whoever_registered_the_email_first_gets_nothing() {
    let (app, _db) = spawn_app().await;
    // A stranger registers the admin's address before the admin does; no email is verified.
    let squatter = app
        .registered_user("admin@example.com", "squatter password")
        .await;
    let owner = app
        .registered_user("owner@example.com", "owner's own password")
        .await;

    auth::admin::grant_with_config(&app.database, id(&owner))
        .await
        .expect("the grant succeeds");

    let squatter_claims = app.claims("admin@example.com", "squatter password").await;
    let owner_claims = app
        .claims("owner@example.com", "owner's own password")
        .await;
    assert_eq!(squatter_claims.sub.to_string(), squatter);
    assert!(squatter_claims.roles.is_empty(), "{squatter_claims:?}");
    assert_eq!(owner_claims.roles, [ROLE_ADMIN]);
}
