//! The `products` binary as an operator runs it.

use common::testing::TestDatabase;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::process::Command;

fn products() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_products"));
    command.env("RUST_LOG", "info").kill_on_drop(true);
    command
}

#[tokio::test]
async fn migrate_applies_the_schema_and_can_run_again() {
    let db = TestDatabase::create().await;

    for run in ["first", "second"] {
        let output = products()
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .output()
            .await
            .expect("run products migrate");
        assert!(
            output.status.success(),
            "{run} run failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    let conn = Database::connect(&db.url).await.unwrap();
    let insert = |price: i64| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO products (id, name, description, price_cents) VALUES ($1, 'Mug', '', $2)",
            [uuid::Uuid::now_v7().into(), price.into()],
        )
    };
    conn.execute_raw(insert(450))
        .await
        .expect("a product row fits the schema");
    assert!(
        conn.execute_raw(insert(-1)).await.is_err(),
        "the database itself refuses a negative price"
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_unknown_reply_mode_stops_the_service_at_start_saying_why() {
    let output = products()
        .arg("serve")
        .env("RPC_REPLY_MODE", "sometimes")
        .env("PORT", "0")
        .output()
        .await
        .expect("run products serve");

    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("RPC_REPLY_MODE"), "{log}");
}
