//! Runs auth, products and orders inside the test process, each against a fresh database and all
//! three on a queue no other test uses, and talks to them the way a client and an operator do:
//! over HTTP, and over AMQP for what only the broker can show.

#![allow(
    dead_code,
    reason = "every test binary compiles this module and uses its own subset of it"
)]

use std::{collections::BTreeMap, time::Duration};

use common::{
    amqp::ReplyMode,
    config::{AmqpConfig, ServerConfig},
    jwt::JwksConfig,
    testing::{self, TestApp, TestDatabase},
};
use futures::future::join_all;
use reqwest::{RequestBuilder, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use uuid::Uuid;

/// The password every test user gets; long enough for auth's rule.
pub const PASSWORD: &str = "correct horse battery staple";

/// What varies between systems under test.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How products receives the orders reply.
    pub reply_mode: ReplyMode,
    /// How long a buy waits for that reply.
    pub rpc_timeout: Duration,
}

impl Options {
    /// A generous timeout, so a slow debug build under parallel tests does not turn into 504s.
    pub fn new(reply_mode: ReplyMode) -> Self {
        Self {
            reply_mode,
            rpc_timeout: Duration::from_secs(20),
        }
    }

    /// The same options with another RPC timeout.
    pub fn with_rpc_timeout(self, rpc_timeout: Duration) -> Self {
        Self {
            rpc_timeout,
            ..self
        }
    }
}

/// A user who has registered and logged in.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON; `Null` when empty, a JSON string when it is not JSON.
    pub body: Value,
}

impl Reply {
    /// Whether the body is declared as an RFC 9457 problem and carries the answer's status.
    pub fn is_problem(&self) -> bool {
        let content_type = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        content_type.starts_with(common::problem::CONTENT_TYPE)
            && self.body["status"] == self.status.as_u16()
            && self.body["title"].is_string()
            && self.body["type"].is_string()
    }

    /// Panics, showing the answer, unless the status is `expected`.
    #[track_caller]
    pub fn expect(self, expected: StatusCode, what: &str) -> Self {
        assert_eq!(
            self.status, expected,
            "{what}: expected {expected}, got {} with {}",
            self.status, self.body
        );
        self
    }

    /// Panics unless the status is `expected` and the body is a problem.
    #[track_caller]
    pub fn expect_problem(self, expected: StatusCode, what: &str) -> Self {
        let reply = self.expect(expected, what);
        assert!(
            reply.is_problem(),
            "{what}: expected an application/problem+json body, got {:?} {}",
            reply.headers.get(reqwest::header::CONTENT_TYPE),
            reply.body
        );
        reply
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the body can be read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The `id` of a product, order or user as an answer shows it.
pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{value} has an id"))
        .to_owned()
}

/// An email no other test registers.
pub fn unique_email(who: &str) -> String {
    format!("{who}.{}@example.com", Uuid::new_v4().simple())
}

/// A buy body in the `items` form.
pub fn items(lines: &[(&str, i64)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
        .collect();
    json!({ "items": items })
}

/// An order's lines as `(product_id, quantity)`, sorted, so two orders compare by content.
pub fn lines_of(order: &Value) -> Vec<(String, i64)> {
    let mut lines: Vec<(String, i64)> = order["items"]
        .as_array()
        .unwrap_or_else(|| panic!("an order has items: {order}"))
        .iter()
        .map(|item| {
            (
                item["product_id"].as_str().expect("product_id").to_owned(),
                item["quantity"].as_i64().expect("quantity"),
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Panics unless every line of `order` is priced from `catalog` (product id -> product) and its
/// totals add up.
#[track_caller]
pub fn assert_priced_from_catalog(order: &Value, catalog: &BTreeMap<String, Value>) {
    let mut total = 0;
    for item in order["items"].as_array().expect("items") {
        let product = &catalog[item["product_id"].as_str().expect("product_id")];
        let price = product["price_cents"].as_i64().expect("price_cents");
        let quantity = item["quantity"].as_i64().expect("quantity");
        assert_eq!(item["unit_price_cents"], price, "unit price of {item}");
        assert_eq!(item["name"], product["name"], "name of {item}");
        assert_eq!(
            item["line_total_cents"],
            price * quantity,
            "total of {item}"
        );
        total += price * quantity;
    }
    assert_eq!(order["total_cents"], total, "order total of {order}");
}

/// The number of ready messages in `queue`, or `None` when it does not exist.
pub async fn message_count(broker: &lapin::Connection, queue: &str) -> Option<u32> {
    // A passive declare of a missing queue closes its channel, so each look gets its own.
    let channel = broker.create_channel().await.expect("open a channel");
    let (messages, _) = testing::queue_counts(&channel, queue).await.ok()?;
    let _ = channel.close(200, "done".into()).await;
    Some(messages)
}

/// Server settings for a service under test. The concurrent tests send a few hundred requests
/// at once to services sharing a small machine with other tests; waiting for a pooled
/// connection must not be what fails them.
fn server_for(db: &TestDatabase) -> ServerConfig {
    let mut server = db.server_config();
    server.database.acquire_timeout = Duration::from_secs(30);
    server
}

/// Stops `app` as SIGTERM would, panicking unless it stops cleanly.
async fn stop(name: &str, mut app: TestApp) {
    if let Err(e) = app.stop().await {
        panic!("{name} stopped with an error: {e:#}");
    }
}

/// Auth, products and orders, started in this process against their own databases.
pub struct System {
    pub http: reqwest::Client,
    /// The queue buys go to; its dead letters go to `<order_queue>.dlq`.
    pub order_queue: String,
    pub options: Options,
    auth: Option<TestApp>,
    products: Option<TestApp>,
    orders: Option<TestApp>,
    auth_db: TestDatabase,
    products_db: TestDatabase,
    orders_db: TestDatabase,
}

impl System {
    /// Starts all three services and waits until each says it is ready. Panics, saying what to
    /// start, when PostgreSQL or RabbitMQ does not answer.
    pub async fn start(options: Options) -> System {
        Self::start_with_keys(options, auth::config::KeyConfig::default()).await
    }

    /// As [`System::start`], with auth signing with the keys `keys` names.
    pub async fn start_with_keys(options: Options, keys: auth::config::KeyConfig) -> System {
        // The services' logs, so a failing test shows why (nextest prints a test's output only
        // when it fails).
        common::telemetry::init("e2e");
        testing::require_broker().await;
        let (auth_db, products_db, orders_db) = tokio::join!(
            TestDatabase::create(),
            TestDatabase::create(),
            TestDatabase::create()
        );
        let auth = TestApp::spawn_ready::<auth::Auth>(auth::config::Config {
            server: server_for(&auth_db),
            keys,
            token_ttl: Duration::from_secs(15 * 60),
            hash_concurrency: 2,
            // The tests register and log in many users from 127.0.0.1 at once (hundreds in
            // broker_restart); the queue bound and the limits have tests of their own in auth.
            hash_queue: auth::password::HashQueueConfig {
                capacity: 1024,
                deadline: Duration::from_secs(60),
            },
            rate_limits: auth::limits::RateLimitConfig {
                enabled: false,
                ..auth::limits::RateLimitConfig::default()
            },
        })
        .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let mut system = System {
            http,
            order_queue: testing::unique_queue("ORDER"),
            options,
            auth: Some(auth),
            products: None,
            orders: None,
            auth_db,
            products_db,
            orders_db,
        };
        system.start_orders().await;
        system.start_products().await;
        system
    }

    /// Stops every service, checking each ends cleanly, and deletes the test's queues.
    pub async fn stop(mut self) {
        for (name, app) in [
            ("products", self.products.take()),
            ("orders", self.orders.take()),
            ("auth", self.auth.take()),
        ] {
            if let Some(app) = app {
                stop(name, app).await;
            }
        }
        let broker = testing::broker_connection().await;
        let channel = broker.create_channel().await.expect("open a channel");
        let amqp = self.amqp();
        for queue in [
            &self.order_queue,
            &amqp.resolve_queue,
            &format!("{}.order-events", self.order_queue),
        ] {
            testing::delete_queue(&channel, queue).await;
        }
        let _ = channel
            .exchange_delete(
                amqp.events_exchange.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = broker.close(200, "done".into()).await;
    }

    /// The dead-letter queue of the order queue.
    pub fn dlq(&self) -> String {
        common::amqp::dead_letter_queue(&self.order_queue)
    }

    fn amqp(&self) -> AmqpConfig {
        AmqpConfig::with_order_queue(testing::amqp_url(), self.order_queue.clone())
    }

    fn jwks_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/auth/.well-known/jwks.json",
            self.auth_port()
        )
    }

    fn auth_port(&self) -> u16 {
        self.auth.as_ref().expect("auth is running").port
    }

    fn products_port(&self) -> u16 {
        self.products.as_ref().expect("products is running").port
    }

    fn orders_port(&self) -> u16 {
        self.orders.as_ref().expect("orders is running").port
    }

    pub fn auth_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.auth_port())
    }

    pub fn products_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.products_port())
    }

    pub fn orders_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.orders_port())
    }

    async fn start_products(&mut self) {
        let config = products::config::Config {
            server: server_for(&self.products_db),
            amqp: self.amqp(),
            events_queue: format!("{}.order-events", self.order_queue),
            rpc_timeout: self.options.rpc_timeout,
            reply_mode: self.options.reply_mode,
            jwks: JwksConfig::new(self.jwks_url()),
            catalog_cache: products::config::DEFAULT_CATALOG_CACHE,
            reconciler: products::config::DEFAULT_RECONCILER,
        };
        self.products = Some(TestApp::spawn_ready::<products::Products>(config).await);
    }

    /// Starts orders (again) with the same settings, and waits until it is ready.
    pub async fn start_orders(&mut self) {
        assert!(self.orders.is_none(), "orders is already running");
        let config = orders::config::Config {
            server: server_for(&self.orders_db),
            amqp: self.amqp(),
            jwks: JwksConfig::new(self.jwks_url()),
            prefetch: 32,
            outbox: orders::config::DEFAULT_OUTBOX,
        };
        self.orders = Some(TestApp::spawn_ready::<orders::Orders>(config).await);
    }

    /// Stops orders the way SIGTERM would, and waits until it has finished.
    pub async fn stop_orders(&mut self) {
        let orders = self.orders.take().expect("orders is running");
        stop("orders", orders).await;
    }

    /// Stops auth the way SIGTERM would: its key set can no longer be fetched.
    pub async fn stop_auth(&mut self) {
        let auth = self.auth.take().expect("auth is running");
        stop("auth", auth).await;
    }

    /// The running products service.
    pub fn products(&self) -> &TestApp {
        self.products.as_ref().expect("products is running")
    }

    /// The running orders service.
    pub fn orders_app(&self) -> &TestApp {
        self.orders.as_ref().expect("orders is running")
    }

    /// The running auth service.
    pub fn auth(&self) -> &TestApp {
        self.auth.as_ref().expect("auth is running")
    }

    /// What `GET /metrics` of auth, products and orders answer now.
    pub async fn metrics(&self) -> (String, String, String) {
        tokio::join!(
            self.auth().metrics(),
            self.products().metrics(),
            self.orders_app().metrics()
        )
    }

    /// The status of `/readyz` of products and of orders.
    pub async fn readiness(&self) -> (StatusCode, StatusCode) {
        let products = send(self.http.get(self.products_url("/readyz"))).await;
        let orders = send(self.http.get(self.orders_url("/readyz"))).await;
        (products.status, orders.status)
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        send(
            self.http
                .post(self.auth_url("/auth/register"))
                .json(&json!({ "email": email, "password": password })),
        )
        .await
    }

    pub async fn try_login(&self, email: &str, password: &str) -> Reply {
        send(
            self.http
                .post(self.auth_url("/auth/login"))
                .json(&json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let reply = self
            .try_login(email, password)
            .await
            .expect(StatusCode::OK, "login");
        reply.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("a login answer carries a token: {}", reply.body))
            .to_owned()
    }

    pub async fn grant_admin(&self, user_id: &str) {
        let id = user_id.parse().expect("a user id");
        auth::admin::grant_with_config(&self.auth_db.config(), id)
            .await
            .unwrap_or_else(|e| panic!("granting admin to {user_id} failed: {e:#}"));
    }

    /// A newly registered, logged-in user.
    pub async fn user(&self, who: &str) -> User {
        let email = unique_email(who);
        let registered = self
            .register(&email, PASSWORD)
            .await
            .expect(StatusCode::CREATED, "register");
        let token = self.login(&email, PASSWORD).await;
        User {
            id: registered.body["id"].as_str().expect("id").to_owned(),
            email,
            token,
        }
    }

    /// A newly registered user with the admin role, logged in after the grant so the token
    /// carries the role.
    pub async fn admin(&self) -> User {
        let email = unique_email("admin");
        let registered = self
            .register(&email, PASSWORD)
            .await
            .expect(StatusCode::CREATED, "register the admin");
        self.grant_admin(&id_of(&registered.body)).await;
        let token = self.login(&email, PASSWORD).await;
        User {
            id: registered.body["id"].as_str().expect("id").to_owned(),
            email,
            token,
        }
    }

    /// A lamp at 250 cents, added to the catalog by a new admin, and a new customer, alice:
    /// where most buying tests start.
    pub async fn lamp_and_alice(&self) -> (Value, User) {
        let admin = self.admin().await;
        let lamp = self.product(&admin, "Lamp", 250).await;
        (lamp, self.user("alice").await)
    }

    pub async fn create_product(&self, token: &str, name: &str, price_cents: i64) -> Reply {
        send(
            self.http
                .post(self.products_url("/products"))
                .bearer_auth(token)
                .json(&json!({
                    "name": name,
                    "description": format!("{name}, for testing"),
                    "price_cents": price_cents,
                })),
        )
        .await
    }

    /// Adds a product with `stock` units to the catalog and returns it as products answered.
    pub async fn stocked_product(
        &self,
        admin: &User,
        name: &str,
        price_cents: i64,
        stock: i64,
    ) -> Value {
        send(
            self.http
                .post(self.products_url("/products"))
                .bearer_auth(&admin.token)
                .json(&json!({
                    "name": name,
                    "description": format!("{name}, counted"),
                    "price_cents": price_cents,
                    "stock": stock,
                })),
        )
        .await
        .expect(StatusCode::CREATED, "create a product with stock")
        .body
    }

    /// Adds a product to the catalog and returns it as products answered.
    pub async fn product(&self, admin: &User, name: &str, price_cents: i64) -> Value {
        self.create_product(&admin.token, name, price_cents)
            .await
            .expect(StatusCode::CREATED, "create a product")
            .body
    }

    pub async fn buy(&self, token: &str, body: &Value, idempotency_key: Option<&str>) -> Reply {
        let mut request = self.buy_request(token, body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        send(request).await
    }

    /// A buy of `body` as whoever holds `token`, for a test to add headers to.
    pub fn buy_request(&self, token: &str, body: &Value) -> RequestBuilder {
        self.http
            .post(self.products_url("/products/buy"))
            .bearer_auth(token)
            .json(body)
    }

    /// The caller's orders, newest first, as `GET /orders?limit=200` answers.
    pub async fn orders(&self, token: &str) -> Vec<Value> {
        let reply = send(
            self.http
                .get(self.orders_url("/orders"))
                .query(&[("limit", "200")])
                .bearer_auth(token),
        )
        .await
        .expect(StatusCode::OK, "list orders");
        reply
            .body
            .as_array()
            .unwrap_or_else(|| panic!("GET /orders answers an array: {}", reply.body))
            .clone()
    }

    /// `POST /orders/{id}/cancel` as whoever holds `token`.
    pub async fn cancel(&self, token: &str, id: &str) -> Reply {
        send(
            self.http
                .post(self.orders_url(&format!("/orders/{id}/cancel")))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn order(&self, token: &str, id: &str) -> Reply {
        send(
            self.http
                .get(self.orders_url(&format!("/orders/{id}")))
                .bearer_auth(token),
        )
        .await
    }

    /// Sends `count` buys at once from `user_count` users and checks each answer went to the
    /// buyer who asked, with exactly the lines that buyer asked for, priced from the catalog;
    /// then that each user's order list holds exactly their orders.
    pub async fn assert_concurrent_buys_reach_their_buyers(&self, user_count: usize, count: usize) {
        let admin = self.admin().await;
        let mut catalog = BTreeMap::new();
        let mut ids = Vec::new();
        for (name, price) in [("Anvil", 1250), ("Bellows", 799), ("Chisel", 325)] {
            let product = self.product(&admin, name, price).await;
            let id = product["id"].as_str().expect("id").to_owned();
            ids.push(id.clone());
            catalog.insert(id, product);
        }
        let names: Vec<String> = (0..user_count).map(|n| format!("buyer{n}")).collect();
        let users = join_all(names.iter().map(|name| self.user(name))).await;

        // Request n asks for n + 1 of the first product, so no two requests ask for the same
        // lines and an answer delivered to the wrong request shows.
        let requests: Vec<(&User, Vec<(String, i64)>)> = (0..count)
            .map(|n| {
                let quantity = i64::try_from(n).expect("small") + 1;
                let mut lines = vec![
                    (ids[0].clone(), quantity),
                    (ids[1].clone(), quantity % 7 + 1),
                ];
                if n % 3 == 0 {
                    lines.push((ids[2].clone(), quantity % 5 + 1));
                }
                (&users[n % user_count], lines)
            })
            .collect();
        let bodies: Vec<Value> = requests
            .iter()
            .map(|(_, lines)| {
                let lines: Vec<(&str, i64)> =
                    lines.iter().map(|(id, q)| (id.as_str(), *q)).collect();
                items(&lines)
            })
            .collect();
        let replies = join_all(
            requests
                .iter()
                .zip(&bodies)
                .map(|((user, _), body)| self.buy(&user.token, body, None)),
        )
        .await;

        let mut orders_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((user, lines), reply) in requests.iter().zip(replies) {
            let reply = reply.expect(StatusCode::CREATED, "a concurrent buy");
            let order = &reply.body;
            assert_eq!(order["user_id"], user.id.as_str(), "buyer of {order}");
            let mut asked = lines.clone();
            asked.sort();
            assert_eq!(lines_of(order), asked, "lines of {order}");
            assert_priced_from_catalog(order, &catalog);
            let id = order["id"].as_str().expect("id").to_owned();
            assert_eq!(reply.location(), Some(format!("/orders/{id}").as_str()));
            orders_of.entry(user.id.as_str()).or_default().push(id);
        }

        let mut distinct: Vec<&String> = orders_of.values().flatten().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), count, "every buy made its own order");

        for user in &users {
            let mut listed: Vec<String> = self
                .orders(&user.token)
                .await
                .iter()
                .map(|o| o["id"].as_str().expect("id").to_owned())
                .collect();
            listed.sort();
            let mut expected = orders_of.remove(user.id.as_str()).unwrap_or_default();
            expected.sort();
            assert_eq!(listed, expected, "orders listed for {}", user.email);
        }
    }
}
