use common::jwt::ROLE_ADMIN;

use crate::support::spawn_app;

#[tokio::test]
async fn after_an_admin_grant_a_fresh_login_carries_the_admin_role() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    let before = app.claims("ann@example.com", "correct horse").await;

    auth::admin::grant_with_config(&app.database, "Ann@Example.com")
        .await
        .expect("the grant succeeds");

    let after = app.claims("ann@example.com", "correct horse").await;
    assert!(before.roles.is_empty());
    assert_eq!(after.roles, [ROLE_ADMIN]);
}

#[tokio::test]
async fn granting_admin_twice_leaves_one_admin_role() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    let db = common::db::connect(&app.database).await.unwrap();

    auth::admin::grant(&db, "ann@example.com").await.unwrap();
    auth::admin::grant(&db, "ann@example.com").await.unwrap();

    let claims = app.claims("ann@example.com", "correct horse").await;
    assert_eq!(claims.roles, [ROLE_ADMIN]);
}

#[tokio::test]
async fn granting_admin_to_an_unknown_email_fails_saying_so() {
    let (app, _db) = spawn_app().await;

    let error = auth::admin::grant_with_config(&app.database, "nobody@example.com")
        .await
        .expect_err("there is no such user");

    let message = format!("{error:#}");
    assert!(message.contains("nobody@example.com"), "{message}");
}
