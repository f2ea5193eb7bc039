//! The load phase and the retry phase: buys with unique keys, every attempt recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, RwLock, Semaphore};
use uuid::Uuid;

use common::problem::{OUT_OF_STOCK, Problem};

use crate::check::{Line, Op, Outcome, Phase};

const PASSWORD: &str = "chaos-driver-password";

/// A buyer: its id, and a token refreshed on 401.
pub struct User {
    pub id: Uuid,
    email: String,
    token: RwLock<String>,
}

/// Talks to auth, products and orders; owns the clock every op is timed against.
pub struct Driver {
    pub client: Client,
    pub auth: String,
    pub products: String,
    pub orders: String,
    pub started: Instant,
}

/// One attempt to cancel an order the driver bought, as its owner.
#[derive(Clone, Debug)]
pub struct CancelOp {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The HTTP status, or none when nothing was answered.
    pub status: Option<u16>,
}

impl CancelOp {
    /// 200 answers the order cancelled (now or before); anything else leaves it to a retry.
    pub fn cancelled(&self) -> bool {
        self.status == Some(200)
    }
}

/// The orders some attempt in `cancels` was answered cancelled.
pub fn answered_cancelled(cancels: &[CancelOp]) -> std::collections::HashSet<Uuid> {
    cancels
        .iter()
        .filter(|op| op.cancelled())
        .map(|op| op.order_id)
        .collect()
}

#[derive(Deserialize)]
struct Registered {
    id: Uuid,
}

#[derive(Deserialize)]
struct LoggedIn {
    access_token: String,
}

#[derive(Deserialize)]
struct Product {
    id: Uuid,
}

#[derive(Deserialize)]
struct OrderAnswer {
    id: Uuid,
    total_cents: i64,
}

impl Driver {
    pub fn new(
        auth: &str,
        products: &str,
        orders: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("build the HTTP client")?;
        Ok(Self {
            client,
            auth: auth.trim_end_matches('/').to_owned(),
            products: products.trim_end_matches('/').to_owned(),
            orders: orders.trim_end_matches('/').to_owned(),
            started: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub async fn register(&self) -> anyhow::Result<User> {
        let email = format!("chaos-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .client
            .post(format!("{}/auth/register", self.auth))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .context("register a user")?;
        if response.status() != StatusCode::CREATED {
            bail!("register answered {}", response.status());
        }
        let registered: Registered = response.json().await.context("read the new user")?;
        let token = self.login(&email, PASSWORD).await?;
        Ok(User {
            id: registered.id,
            email,
            token: RwLock::new(token),
        })
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/auth/login", self.auth))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .context("log in")?;
        if response.status() != StatusCode::OK {
            bail!("login answered {}", response.status());
        }
        Ok(response.json::<LoggedIn>().await?.access_token)
    }

    pub async fn products(&self) -> anyhow::Result<Vec<Uuid>> {
        let response = self
            .client
            .get(format!("{}/products?limit=200", self.products))
            .send()
            .await
            .context("list the products")?
            .error_for_status()?;
        let products: Vec<Product> = response.json().await?;
        if products.is_empty() {
            bail!("the catalog is empty: seed at least one product first");
        }
        Ok(products.into_iter().map(|p| p.id).collect())
    }

    /// One buy attempt, re-logging in once when the token is refused.
    pub async fn buy(&self, user: &User, key: &str, lines: &[Line], phase: Phase) -> Op {
        let at_unix_ms = chrono::Utc::now().timestamp_millis();
        let start_ms = self.now_ms();
        let mut attempt = self.buy_once(user, key, lines).await;
        if matches!(attempt, Ok((StatusCode::UNAUTHORIZED, _)))
            && let Ok(token) = self.login(&user.email, PASSWORD).await
        {
            *user.token.write().await = token;
            attempt = self.buy_once(user, key, lines).await;
        }
        let end_ms = self.now_ms();
        let mut op = Op {
            key: key.to_owned(),
            user_id: user.id,
            lines: lines.to_vec(),
            phase,
            at_unix_ms,
            start_ms,
            end_ms,
            status: None,
            outcome: Outcome::Unknown,
            order_id: None,
            total_cents: None,
            error: None,
        };
        match attempt {
            Err(error) => op.error = Some(format!("{error:#}")),
            Ok((status, body)) => {
                op.status = Some(status.as_u16());
                op.outcome = classify(status, &body);
                if status.is_success() {
                    match serde_json::from_slice::<OrderAnswer>(&body) {
                        Ok(order) => {
                            op.order_id = Some(order.id);
                            op.total_cents = Some(order.total_cents);
                        }
                        // A 2xx we cannot read tells us nothing about which order exists.
                        Err(error) => {
                            op.outcome = Outcome::Unknown;
                            op.error = Some(format!("unreadable 2xx body: {error}"));
                        }
                    }
                } else {
                    op.error = Some(String::from_utf8_lossy(&body).chars().take(300).collect());
                }
            }
        }
        op
    }

    async fn buy_once(
        &self,
        user: &User,
        key: &str,
        lines: &[Line],
    ) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let token = user.token.read().await.clone();
        let response = self
            .client
            .post(format!("{}/products/buy", self.products))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({ "items": lines }))
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((status, body.to_vec()))
    }
}

impl Driver {
    /// One attempt to cancel `order_id` as `user`.
    pub async fn cancel(&self, user: &User, order_id: Uuid) -> CancelOp {
        let token = user.token.read().await.clone();
        let status = self
            .client
            .post(format!("{}/orders/{order_id}/cancel", self.orders))
            .bearer_auth(token)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .ok();
        CancelOp {
            order_id,
            user_id: user.id,
            status,
        }
    }

    /// Adds `add` units to the stock of `product_id` as the admin whose token is `admin_token`:
    /// `Ok` when answered 200, `Fail` when refused, `Unknown` when nothing (or a 5xx) came back.
    pub async fn restock(&self, admin_token: &str, product_id: Uuid, add: i64) -> Outcome {
        let answer = self
            .client
            .patch(format!("{}/products/{product_id}", self.products))
            .bearer_auth(admin_token)
            .json(&json!({ "add_stock": add }))
            .send()
            .await;
        match answer.map(|response| response.status()) {
            Ok(status) if status.is_success() => Outcome::Ok,
            Ok(status) if status.is_client_error() => Outcome::Fail,
            _ => Outcome::Unknown,
        }
    }
}

/// What an answer to a buy says about whether an order exists.
pub fn classify(status: StatusCode, body: &[u8]) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Ok,
        // Short stock: refused before orders was asked, nothing reserved.
        409 if is_out_of_stock(body) => Outcome::Fail,
        // In flight elsewhere, or the service could not tell: the order may exist.
        409 | 500..=599 => Outcome::Unknown,
        // 401 after a fresh login, 400, 404, 422: refused before any order was made.
        400..=499 => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

fn is_out_of_stock(body: &[u8]) -> bool {
    serde_json::from_slice::<Problem>(body).is_ok_and(|problem| problem.is_of_type(OUT_OF_STOCK))
}

pub struct LoadPlan {
    pub rate: u32,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
    /// The share of answered buys whose order is cancelled at once, in percent.
    pub cancel_percent: u32,
}

/// What the load phase did: every buy attempt, and every cancel attempt.
pub struct Loaded {
    pub buys: Vec<Op>,
    pub cancels: Vec<CancelOp>,
}

/// Sends buys with fresh keys at `plan.rate` per second, at most `plan.concurrency` at once, and
/// cancels `plan.cancel_percent` of the orders answered, right after the answer.
pub async fn load(
    driver: Arc<Driver>,
    users: Arc<Vec<User>>,
    products: Arc<Vec<Uuid>>,
    plan: &LoadPlan,
) -> Loaded {
    let history = Arc::new(Mutex::new(Vec::new()));
    let cancels = Arc::new(Mutex::new(Vec::new()));
    let permits = Arc::new(Semaphore::new(plan.concurrency));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(plan.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + plan.duration;
    let mut tasks = futures::stream::FuturesUnordered::new();
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < plan.max_requests {
        ticker.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        sent += 1;
        let user_index = rand::random_range(0..users.len());
        let lines = random_lines(&products);
        let cancel = rand::random_range(0..100) < plan.cancel_percent;
        let (driver, users) = (driver.clone(), users.clone());
        let (history, cancels) = (history.clone(), cancels.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("chaos-{}", Uuid::new_v4());
            let user = &users[user_index];
            let op = driver.buy(user, &key, &lines, Phase::Load).await;
            let order = op.order_id.filter(|_| cancel && op.outcome == Outcome::Ok);
            history.lock().await.push(op);
            if let Some(order) = order {
                let attempt = driver.cancel(user, order).await;
                cancels.lock().await.push(attempt);
            }
            drop(permit);
        }));
        // Reap finished tasks so the set stays small during long runs.
        while let Some(Some(_)) = futures::FutureExt::now_or_never(tasks.next()) {}
    }
    while tasks.next().await.is_some() {}
    let mut buys = std::mem::take(&mut *history.lock().await);
    buys.sort_by_key(|op| op.start_ms);
    let cancels = std::mem::take(&mut *cancels.lock().await);
    Loaded { buys, cancels }
}

fn random_lines(products: &[Uuid]) -> Vec<Line> {
    let count = rand::random_range(1..=products.len().min(3));
    let mut picked: Vec<Uuid> = Vec::with_capacity(count);
    while picked.len() < count {
        let id = products[rand::random_range(0..products.len())];
        if !picked.contains(&id) {
            picked.push(id);
        }
    }
    picked
        .into_iter()
        .map(|product_id| Line {
            product_id,
            quantity: rand::random_range(1..=3),
        })
        .collect()
}

/// Keys whose latest answer is not definite, with their user and lines.
pub fn undecided(history: &[Op]) -> Vec<(String, Uuid, Vec<Line>)> {
    let mut latest: std::collections::BTreeMap<&str, &Op> = std::collections::BTreeMap::new();
    for op in history {
        latest.insert(op.key.as_str(), op);
    }
    latest
        .into_values()
        .filter(|op| op.outcome == Outcome::Unknown || op.status == Some(503))
        .map(|op| (op.key.clone(), op.user_id, op.lines.clone()))
        .collect()
}

pub struct RetryPlan {
    pub per_key_attempts: u32,
    pub budget: Duration,
    pub concurrency: usize,
}

/// Sends every undecided key again, same key and lines, until it is answered definitely.
pub async fn retry(
    driver: Arc<Driver>,
    users: Arc<Vec<User>>,
    undecided: Vec<(String, Uuid, Vec<Line>)>,
    plan: &RetryPlan,
) -> Vec<Op> {
    retry_each(undecided, plan, |(key, user_id, lines)| {
        let (driver, users) = (driver.clone(), users.clone());
        async move {
            let user = users.iter().find(|u| u.id == user_id)?;
            let op = driver.buy(user, &key, &lines, Phase::Retry).await;
            let settled = op.outcome != Outcome::Unknown && op.status != Some(503);
            Some((op, settled))
        }
    })
    .await
}

/// Cancels every order whose cancel was not answered 200, until it is (cancelling a cancelled
/// order answers it again, so a retry is always safe). Returns the new attempts.
pub async fn retry_cancels(
    driver: Arc<Driver>,
    users: Arc<Vec<User>>,
    cancels: &[CancelOp],
    plan: &RetryPlan,
) -> Vec<CancelOp> {
    let done = answered_cancelled(cancels);
    let mut open: Vec<(Uuid, Uuid)> = cancels
        .iter()
        .filter(|op| !done.contains(&op.order_id))
        .map(|op| (op.order_id, op.user_id))
        .collect();
    open.sort_unstable();
    open.dedup();
    retry_each(open, plan, |(order_id, user_id)| {
        let (driver, users) = (driver.clone(), users.clone());
        async move {
            let user = users.iter().find(|u| u.id == user_id)?;
            let op = driver.cancel(user, order_id).await;
            let settled = op.cancelled();
            Some((op, settled))
        }
    })
    .await
}

/// Attempts every item until an attempt says it settled (the `bool` beside its result), at most
/// `plan.per_key_attempts` times each, backing off from 200 ms to 5 s between the attempts of one
/// item, `plan.concurrency` items at once, all within `plan.budget`. An attempt that answers
/// `None` cannot be made at all and ends its item. Returns every attempt's result.
async fn retry_each<I, T, F, Fut>(items: Vec<I>, plan: &RetryPlan, attempt: F) -> Vec<T>
where
    I: Clone,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Option<(T, bool)>>,
{
    let deadline = Instant::now() + plan.budget;
    let attempts = plan.per_key_attempts;
    let attempt = &attempt;
    futures::stream::iter(items)
        .map(|item| async move {
            let mut results = Vec::new();
            let mut backoff = Duration::from_millis(200);
            for _ in 0..attempts {
                if Instant::now() >= deadline {
                    break;
                }
                let Some((result, settled)) = attempt(item.clone()).await else {
                    break;
                };
                results.push(result);
                if settled {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            results
        })
        .buffer_unordered(plan.concurrency)
        .flat_map(futures::stream::iter)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_they_say_about_the_order() {
        assert_eq!(classify(StatusCode::CREATED, b"{}"), Outcome::Ok);
        assert_eq!(classify(StatusCode::CONFLICT, b"{}"), Outcome::Unknown);
        assert_eq!(classify(StatusCode::GATEWAY_TIMEOUT, b""), Outcome::Unknown);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b""),
            Outcome::Unknown
        );
        assert_eq!(classify(StatusCode::NOT_FOUND, b""), Outcome::Fail);
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, b""),
            Outcome::Fail
        );
    }

    #[test]
    fn only_the_out_of_stock_conflict_is_a_definite_refusal() {
        let problem = |kind: String| {
            serde_json::to_vec(&json!({
                "type": kind, "title": "Conflict", "status": 409, "detail": "Refused."
            }))
            .unwrap()
        };
        let short = problem(format!("{}{OUT_OF_STOCK}", common::problem::TYPE_BASE));
        assert_eq!(classify(StatusCode::CONFLICT, &short), Outcome::Fail);
        let in_flight = problem("about:blank".to_owned());
        assert_eq!(classify(StatusCode::CONFLICT, &in_flight), Outcome::Unknown);
    }
}
