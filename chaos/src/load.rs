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

use crate::check::{Line, Op, Outcome, Phase};

const PASSWORD: &str = "chaos-driver-password";

/// A buyer: its id, and a token refreshed on 401.
pub struct User {
    pub id: Uuid,
    email: String,
    token: RwLock<String>,
}

/// Talks to auth and products; owns the clock every op is timed against.
pub struct Driver {
    pub client: Client,
    pub auth: String,
    pub products: String,
    pub started: Instant,
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
    pub fn new(auth: &str, products: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("build the HTTP client")?;
        Ok(Self {
            client,
            auth: auth.trim_end_matches('/').to_owned(),
            products: products.trim_end_matches('/').to_owned(),
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
        let token = self.login(&email).await?;
        Ok(User {
            id: registered.id,
            email,
            token: RwLock::new(token),
        })
    }

    async fn login(&self, email: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/auth/login", self.auth))
            .json(&json!({ "email": email, "password": PASSWORD }))
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
            && let Ok(token) = self.login(&user.email).await
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
                op.outcome = classify(status);
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

/// What an HTTP status says about whether an order exists.
pub fn classify(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Ok,
        // In flight elsewhere, or the service could not tell: the order may exist.
        409 | 500..=599 => Outcome::Unknown,
        // 401 after a fresh login, 400, 404, 422: refused before any order was made.
        400..=499 => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

pub struct LoadPlan {
    pub rate: u32,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
}

/// Sends buys with fresh keys at `plan.rate` per second, at most `plan.concurrency` at once.
pub async fn load(
    driver: Arc<Driver>,
    users: Arc<Vec<User>>,
    products: Arc<Vec<Uuid>>,
    plan: &LoadPlan,
) -> Vec<Op> {
    let history = Arc::new(Mutex::new(Vec::new()));
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
        let (driver, users, history) = (driver.clone(), users.clone(), history.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("chaos-{}", Uuid::new_v4());
            let op = driver
                .buy(&users[user_index], &key, &lines, Phase::Load)
                .await;
            history.lock().await.push(op);
            drop(permit);
        }));
        // Reap finished tasks so the set stays small during long runs.
        while let Some(Some(_)) = futures::FutureExt::now_or_never(tasks.next()) {}
    }
    while tasks.next().await.is_some() {}
    let mut history = std::mem::take(&mut *history.lock().await);
    history.sort_by_key(|op| op.start_ms);
    history
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
    let deadline = Instant::now() + plan.budget;
    let attempts = plan.per_key_attempts;
    futures::stream::iter(undecided)
        .map(|(key, user_id, lines)| {
            let (driver, users) = (driver.clone(), users.clone());
            async move {
                let mut ops = Vec::new();
                let Some(user) = users.iter().find(|u| u.id == user_id) else {
                    return ops;
                };
                let mut backoff = Duration::from_millis(200);
                for _ in 0..attempts {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let op = driver.buy(user, &key, &lines, Phase::Retry).await;
                    let settled = op.outcome != Outcome::Unknown && op.status != Some(503);
                    ops.push(op);
                    if settled {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                ops
            }
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
        assert_eq!(classify(StatusCode::CREATED), Outcome::Ok);
        assert_eq!(classify(StatusCode::CONFLICT), Outcome::Unknown);
        assert_eq!(classify(StatusCode::GATEWAY_TIMEOUT), Outcome::Unknown);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE), Outcome::Unknown);
        assert_eq!(classify(StatusCode::NOT_FOUND), Outcome::Fail);
        assert_eq!(classify(StatusCode::UNPROCESSABLE_ENTITY), Outcome::Fail);
    }
}
