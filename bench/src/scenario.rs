//! The scenarios: what each sends, and the worker that sends it over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::http::{Call, Conn, IDEMPOTENCY_KEY};
use crate::load::Pacer;
use crate::seed::Seeded;

/// A scenario of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Catalog,
    Login,
    BuyPerRequest,
    BuyDirect,
    Mix,
    OrdersDirect,
    BarePerRequest,
    BareDirect,
}

impl Scenario {
    /// Every scenario, in the order of the report.
    pub const REPORTED: [Scenario; 8] = [
        Scenario::Catalog,
        Scenario::Login,
        Scenario::BuyPerRequest,
        Scenario::BuyDirect,
        Scenario::Mix,
        Scenario::OrdersDirect,
        Scenario::BarePerRequest,
        Scenario::BareDirect,
    ];

    /// Every scenario, in the order the runs of one point take their turns: each next to its
    /// bound (`orders-direct` and `buy-direct` on either side of `bare-direct`).
    pub const RUN_ORDER: [Scenario; 8] = [
        Scenario::Catalog,
        Scenario::Mix,
        Scenario::Login,
        Scenario::BuyPerRequest,
        Scenario::BarePerRequest,
        Scenario::BuyDirect,
        Scenario::BareDirect,
        Scenario::OrdersDirect,
    ];

    /// Whether its requests carry a buyer's token.
    pub fn uses_tokens(self) -> bool {
        matches!(
            self,
            Scenario::BuyPerRequest | Scenario::BuyDirect | Scenario::Mix
        )
    }

    /// Whether it is the bare harness, run inside the bench rather than by the services.
    pub fn is_bare(self) -> bool {
        matches!(self, Scenario::BarePerRequest | Scenario::BareDirect)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Catalog => "catalog",
            Scenario::Login => "login",
            Scenario::BuyPerRequest => "buy-per-request",
            Scenario::BuyDirect => "buy-direct",
            Scenario::Mix => "mix",
            Scenario::OrdersDirect => "orders-direct",
            Scenario::BarePerRequest => "bare-per-request",
            Scenario::BareDirect => "bare-direct",
        }
    }

    /// One line saying what a request of this scenario is.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Catalog => "GET /products?limit=20 on products-per-request",
            Scenario::Login => "POST /auth/login for a random buyer (one argon2 verification)",
            Scenario::BuyPerRequest => {
                "POST /products/buy on products-per-request (a reply queue per buy), 1-3 lines, fresh Idempotency-Key"
            }
            Scenario::BuyDirect => {
                "POST /products/buy on products-direct (Direct Reply-to), 1-3 lines, fresh Idempotency-Key"
            }
            Scenario::Mix => "per request: 80% catalog, 15% buy-direct, 5% login",
            Scenario::OrdersDirect => {
                "order.create.v1 straight to orders through the services' RPC client (Direct Reply-to), 1-3 lines: orders and the broker without products, HTTP or tokens"
            }
            Scenario::BarePerRequest => {
                "bare harness, per-request reply queues: confirmed publish to a quorum queue, one transaction, confirmed reply; no HTTP, no auth"
            }
            Scenario::BareDirect => {
                "bare harness, Direct Reply-to: confirmed publish to a quorum queue, one transaction, confirmed reply; no HTTP, no auth"
            }
        }
    }

    /// What its throughput is compared with: a bare harness of the same reply mode, or the
    /// argon2 bound.
    pub fn bound(self) -> Option<Bound> {
        match self {
            Scenario::BuyPerRequest => Some(Bound::Scenario(Scenario::BarePerRequest)),
            Scenario::BuyDirect | Scenario::OrdersDirect => {
                Some(Bound::Scenario(Scenario::BareDirect))
            }
            Scenario::Login => Some(Bound::Argon2),
            _ => None,
        }
    }
}

/// What a scenario's throughput is a fraction of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// That scenario at the same concurrency.
    Scenario(Scenario),
    /// Password verifications per second on every core.
    Argon2,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Scenario(s) => s.name(),
            Bound::Argon2 => "argon2",
        }
    }
}

/// One request of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixAction {
    Catalog,
    BuyDirect,
    Login,
}

/// The mix's choice for `roll`, uniform in [0, 1): 80% catalog, 15% buy-direct, 5% login.
pub fn mix_pick(roll: f64) -> MixAction {
    if roll < 0.80 {
        MixAction::Catalog
    } else if roll < 0.95 {
        MixAction::BuyDirect
    } else {
        MixAction::Login
    }
}

/// Where the HTTP scenarios send, and what they send with.
#[derive(Clone)]
pub struct Targets {
    pub auth: SocketAddr,
    pub products_per_request: SocketAddr,
    pub products_direct: SocketAddr,
    pub seeded: Seeded,
}

/// A worker's connections, one per server it talks to, each opened at its first use.
struct Conns {
    auth: Conn,
    per_request: Conn,
    direct: Conn,
}

/// Sends `scenario`'s requests until the pacer says stop.
pub async fn http_worker(
    scenario: Scenario,
    targets: Arc<Targets>,
    mut pacer: Pacer,
) -> anyhow::Result<Pacer> {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut conns = Conns {
        auth: Conn::new(targets.auth),
        per_request: Conn::new(targets.products_per_request),
        direct: Conn::new(targets.products_direct),
    };
    while let Some(phase) = pacer.next() {
        let action = match scenario {
            Scenario::Catalog => Action::Catalog,
            Scenario::Login => Action::Login,
            Scenario::BuyPerRequest => Action::BuyPerRequest,
            Scenario::BuyDirect => Action::BuyDirect,
            Scenario::Mix => match mix_pick(rng.random()) {
                MixAction::Catalog => Action::Catalog,
                MixAction::BuyDirect => Action::BuyDirect,
                MixAction::Login => Action::Login,
            },
            Scenario::OrdersDirect | Scenario::BarePerRequest | Scenario::BareDirect => {
                anyhow::bail!("{} does not run over HTTP", scenario.name())
            }
        };
        // Bodies are built before the clock starts: they are the client's cost, not the
        // server's.
        let seeded = &targets.seeded;
        let buyer = &seeded.buyers[rng.random_range(0..seeded.buyers.len())];
        let (conn, call, expected) = match action {
            Action::Catalog => (
                &mut conns.per_request,
                Call::get("/products?limit=20"),
                StatusCode::OK,
            ),
            Action::Login => (
                &mut conns.auth,
                Call::post("/auth/login", buyer.login_body.clone()),
                StatusCode::OK,
            ),
            Action::BuyPerRequest | Action::BuyDirect => {
                let conn = if action == Action::BuyDirect {
                    &mut conns.direct
                } else {
                    &mut conns.per_request
                };
                let key = HeaderValue::try_from(Uuid::new_v4().to_string())?;
                let call = Call::post("/products/buy", buy_body(&mut rng, &seeded.products))
                    .bearer(&buyer.token)
                    .header(IDEMPOTENCY_KEY, key);
                (conn, call, StatusCode::CREATED)
            }
        };
        let start = Instant::now();
        let outcome = match conn.send(call).await {
            Ok(answer) if answer.status == expected => Ok(()),
            Ok(answer) => Err(answer.status.as_u16().to_string()),
            Err(e) => Err(classify(&e)),
        };
        pacer.record(phase, start, outcome);
    }
    Ok(pacer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Catalog,
    Login,
    BuyPerRequest,
    BuyDirect,
}

/// `{"items": [...]}` with 1-3 lines of distinct products, each of quantity 1-3.
pub fn buy_body(rng: &mut impl Rng, products: &[Uuid]) -> Bytes {
    let lines = rng.random_range(1..=3usize).min(products.len());
    let items: Vec<_> = rand::seq::index::sample(rng, products.len(), lines)
        .into_iter()
        .map(|i| json!({ "product_id": products[i], "quantity": rng.random_range(1..=3) }))
        .collect();
    Bytes::from(json!({ "items": items }).to_string())
}

/// A short name for a failure without an HTTP status.
fn classify(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    if text.contains("no answer within") {
        "timeout".to_owned()
    } else if text.contains("connect to") || text.contains("connecting to") {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_picks_eighty_fifteen_five() {
        let mut rng = SmallRng::seed_from_u64(7);
        let (mut catalog, mut buy, mut login) = (0u32, 0u32, 0u32);
        let n = 200_000;
        for _ in 0..n {
            match mix_pick(rng.random()) {
                MixAction::Catalog => catalog += 1,
                MixAction::BuyDirect => buy += 1,
                MixAction::Login => login += 1,
            }
        }
        let share = |k: u32| f64::from(k) / f64::from(n);
        // Four standard deviations of a binomial at n = 200,000 are under 0.4 points.
        assert!((share(catalog) - 0.80).abs() < 0.004, "{}", share(catalog));
        assert!((share(buy) - 0.15).abs() < 0.004, "{}", share(buy));
        assert!((share(login) - 0.05).abs() < 0.004, "{}", share(login));
    }

    #[test]
    fn the_mix_boundaries_fall_where_the_shares_say() {
        assert_eq!(mix_pick(0.0), MixAction::Catalog);
        assert_eq!(mix_pick(0.7999), MixAction::Catalog);
        assert_eq!(mix_pick(0.80), MixAction::BuyDirect);
        assert_eq!(mix_pick(0.9499), MixAction::BuyDirect);
        assert_eq!(mix_pick(0.95), MixAction::Login);
        assert_eq!(mix_pick(0.99999), MixAction::Login);
    }

    #[test]
    fn a_buy_has_one_to_three_distinct_products_of_quantity_one_to_three() {
        let products: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut sizes = [0u32; 4];
        for _ in 0..2000 {
            let body: serde_json::Value =
                serde_json::from_slice(&buy_body(&mut rng, &products)).unwrap();
            let items = body["items"].as_array().unwrap();
            sizes[items.len()] += 1;
            let mut ids: Vec<&str> = items
                .iter()
                .map(|i| i["product_id"].as_str().unwrap())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), items.len(), "a product twice in {body}");
            for item in items {
                let q = item["quantity"].as_i64().unwrap();
                assert!((1..=3).contains(&q), "{body}");
            }
        }
        assert_eq!(sizes[0], 0);
        assert!(sizes[1..].iter().all(|&n| n > 500), "{sizes:?}");
    }
}
