//! `/healthz` and `/readyz`, the same in every service.
//!
//! Both answer `{"status": "up", "checks": {...}}`, naming each dependency the service needs
//! and whether it answers (`"up"` or `"down"`). Liveness has no dependencies: it only says the
//! process serves. Readiness asks the database (a trivial query, bounded in time), and whatever
//! the service added (the broker connection, a declared queue). When one is down it answers 503
//! with a problem+json body carrying the same `checks`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix_web::{HttpResponse, http::StatusCode, web};
use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::problem::{CONTENT_TYPE, Problem};

/// How long `/readyz` waits for the database before calling it down.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency check: `Ok` when it answers, else why not (for the 503's detail).
pub(crate) type Check = Arc<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

/// What `/readyz` asks.
#[derive(Clone)]
pub(crate) struct Readiness {
    pub(crate) db: DatabaseConnection,
    pub(crate) checks: Vec<(&'static str, Check)>,
}

/// The body of both probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `up`.
    status: &'static str,
    /// Each dependency (`database`, `broker`, ...) and whether it answers: `up` or `down`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    checks: BTreeMap<&'static str, &'static str>,
}

/// 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves.", body = Health))
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "up",
        checks: BTreeMap::new(),
    })
}

/// 200 when every dependency answers; 503 naming those that do not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers.", body = Health),
        (status = 503, description = "A dependency does not answer; `checks` names each.",
            content_type = "application/problem+json", body = Problem)
    )
)]
pub(crate) async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let mut checks = BTreeMap::new();
    let mut down = Vec::new();
    let database = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, readiness.db.ping()).await;
    if matches!(database, Ok(Ok(()))) {
        checks.insert("database", "up");
    } else {
        checks.insert("database", "down");
        down.push("the database is not answering");
    }
    for (name, check) in &readiness.checks {
        match check() {
            Ok(()) => {
                checks.insert(name, "up");
            }
            Err(why) => {
                checks.insert(name, "down");
                down.push(why);
            }
        }
    }
    if down.is_empty() {
        return HttpResponse::Ok().json(Health {
            status: "up",
            checks,
        });
    }
    let problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Not ready: {}.", down.join("; ")),
    );
    // RFC 9457 extension member: the same `checks` as a ready answer has.
    let mut body = serde_json::to_value(&problem).expect("a problem serializes");
    body["checks"] = serde_json::to_value(&checks).expect("checks serialize");
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .content_type(CONTENT_TYPE)
        .json(body)
}
