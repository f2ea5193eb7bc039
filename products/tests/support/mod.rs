//! Shared setup: the real products service on port 0 against a fresh database and a unique
//! queue, a test token issuer standing in for auth, and a stand-in for the orders side that
//! answers over the real broker.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::{future::Future, ops::Deref, time::Duration};

use common::{
    amqp::{Broker, Incoming, Outcome, ReplyMode, RpcRequest, serve},
    config::AmqpConfig,
    ids::{OrderId, ProductId, ReservationId, UserId},
    jwt::{Claims, ROLE_ADMIN},
    messages::{
        CreateOrderReplyV1, CreateOrderV1, Order, OrderItem, ResolveReservationReplyV1,
        ResolveReservationV1,
    },
    testing::{
        self, TestDatabase, TestIssuer, amqp_url, broker_connection, claims_for, delete_queue,
        delete_queue_on_drop, queue_counts, require_broker, unique_queue, wait_until,
    },
};
use products::{
    Products, catalog::CacheLimits, config::Config, reconciler::ReconcilerConfig,
    routes::ProductBody,
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A running products service and what it talks to.
pub struct TestApp {
    app: testing::TestApp,
    /// The queue this app sends buys to; no other test uses it.
    pub queue: String,
    /// The customer whose token [`TestApp::customer_token`] mints.
    pub customer: Claims,
    /// Stands in for auth: the app trusts its tokens.
    pub issuer: TestIssuer,
    pub db: TestDatabase,
}

impl Deref for TestApp {
    type Target = testing::TestApp;

    fn deref(&self) -> &testing::TestApp {
        &self.app
    }
}

/// Settings a test may change before the app starts.
pub struct Options {
    pub rpc_timeout: Duration,
    pub reply_mode: ReplyMode,
    pub amqp_url: String,
    /// Whether to wait for `/readyz` before handing the app to the test.
    pub wait_ready: bool,
    /// Whether the order queue exists before the app starts, as the broker's definitions make
    /// it in a deployment: products only checks that it is there.
    pub declare_queue: bool,
    pub catalog_cache: CacheLimits,
    /// When pending reservations are settled; by default never within a test.
    pub reconciler: ReconcilerConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(5),
            reply_mode: ReplyMode::PerRequest,
            amqp_url: amqp_url(),
            wait_ready: true,
            declare_queue: true,
            catalog_cache: products::config::DEFAULT_CATALOG_CACHE,
            reconciler: ReconcilerConfig {
                interval: Duration::from_millis(100),
                resolve_after: Duration::from_secs(3600),
            },
        }
    }
}

/// Starts the service with default options and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Starts the service with `options`.
pub async fn spawn_app_with(options: Options) -> TestApp {
    if options.wait_ready {
        require_broker().await;
    }
    let db = TestDatabase::create().await;
    let queue = unique_queue("products-test");
    if options.declare_queue {
        Amqp::connect().await.declare(&queue).await;
    }
    let issuer = TestIssuer::start().await;
    let config = Config {
        server: db.server_config(),
        amqp: AmqpConfig::with_order_queue(options.amqp_url, queue.clone()),
        events_queue: format!("{queue}.order-events"),
        rpc_timeout: options.rpc_timeout,
        reply_mode: options.reply_mode,
        jwks: issuer.jwks_config(),
        catalog_cache: options.catalog_cache,
        reconciler: options.reconciler,
    };
    let app = testing::TestApp::spawn::<Products>(config).await;
    if options.wait_ready {
        app.wait_ready().await;
    }
    TestApp {
        app,
        queue,
        customer: claims_for(UserId::new(), &[]),
        issuer,
        db,
    }
}

impl TestApp {
    /// `GET path` without a token, read as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path} answers JSON: {e}"))
    }

    pub fn admin_token(&self) -> String {
        self.issuer.token_for(UserId::new(), &[ROLE_ADMIN])
    }

    pub fn customer_token(&self) -> String {
        self.issuer.token(&self.customer)
    }

    /// Adds a product as an admin; panics unless it is created.
    pub async fn create_product(&self, name: &str, price_cents: i64) -> ProductBody {
        let body = json!({
            "name": name,
            "description": format!("{name}, as sold here"),
            "price_cents": price_cents,
        });
        let response = self.post_product(&self.admin_token(), &body).await;
        assert_eq!(response.status(), 201, "creating {name}");
        response.json().await.expect("a product body")
    }

    /// Adds a product with `stock` units as an admin; panics unless it is created.
    pub async fn create_stocked_product(
        &self,
        name: &str,
        price_cents: i64,
        stock: i64,
    ) -> ProductBody {
        let body = json!({
            "name": name,
            "description": format!("{name}, as sold here"),
            "price_cents": price_cents,
            "stock": stock,
        });
        let response = self.post_product(&self.admin_token(), &body).await;
        assert_eq!(response.status(), 201, "creating {name}");
        response.json().await.expect("a product body")
    }

    /// `PATCH /products/{id}` with `body`, as whoever holds `token`.
    pub async fn patch_product(
        &self,
        token: &str,
        id: ProductId,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .patch(self.url(&format!("/products/{id}")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("PATCH /products/{id}")
    }

    /// The stock of product `id` as stored now (not as the catalog cache holds it).
    pub async fn stock_of(&self, id: ProductId) -> Option<i32> {
        products::store::get(self.db(), id)
            .await
            .expect("read the product")
            .expect("the product exists")
            .stock
    }

    /// The states of every reservation, in no particular order.
    pub async fn reservation_states(&self) -> Vec<String> {
        use sea_orm::EntityTrait;
        products::entity::reservation::Entity::find()
            .all(self.db())
            .await
            .expect("read the reservations")
            .into_iter()
            .map(|r| r.state)
            .collect()
    }

    /// `POST /products` with `body`, as whoever holds `token`.
    pub async fn post_product(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/products"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /products")
    }

    /// `POST path` declared as JSON but carrying `text`, as whoever holds `token`.
    pub async fn post_raw_json(
        &self,
        path: &str,
        token: &str,
        text: &'static str,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(text)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST /products/buy` as the app's customer.
    pub async fn buy(&self, body: &Value) -> reqwest::Response {
        self.buy_request(body)
            .send()
            .await
            .expect("POST /products/buy")
    }

    /// The buy request as the app's customer, for a test to add headers to.
    pub fn buy_request(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/products/buy"))
            .bearer_auth(self.customer_token())
            .json(body)
    }

    /// Stops the service as SIGTERM would and waits until it has.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.app.stop().await
    }

    /// The token whose cancellation stops the service; its child tokens stop with it.
    pub fn shutdown(&self) -> tokio_util::sync::CancellationToken {
        self.app.shutdown_token()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        delete_queue_on_drop(&self.queue);
        delete_queue_on_drop(&self.resolve_queue());
        delete_queue_on_drop(&self.events_queue());
    }
}

impl TestApp {
    /// products' own queue of order events.
    pub fn events_queue(&self) -> String {
        format!("{}.order-events", self.queue)
    }

    /// The exchange order events reach this app through.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.queue)
    }

    /// The queue this app asks orders about reservations on.
    pub fn resolve_queue(&self) -> String {
        format!("{}_RESOLVE", self.queue)
    }
}

/// A plain channel to the broker, to look at queues the way an operator would.
pub struct Amqp {
    _connection: lapin::Connection,
    pub channel: lapin::Channel,
}

impl Amqp {
    pub async fn connect() -> Self {
        let connection = broker_connection().await;
        let channel = connection.create_channel().await.expect("open a channel");
        Self {
            _connection: connection,
            channel,
        }
    }

    /// Declares `queue` (and its dead-letter queue) as the orders side would.
    pub async fn declare(&self, queue: &str) {
        common::amqp::declare_work_queue(&self.channel, queue)
            .await
            .expect("declare the work queue");
    }

    /// Messages waiting in `queue` and consumers on it.
    pub async fn counts(&self, queue: &str) -> (u32, u32) {
        queue_counts(&self.channel, queue)
            .await
            .expect("the queue exists")
    }

    /// Removes `queue` and its dead-letter queue; removing a missing queue is not an error.
    pub async fn delete(&self, queue: &str) {
        delete_queue(&self.channel, queue).await;
    }
}

/// Panics unless `response` is a problem+json answer with `status`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: Value = response.json().await.expect("a problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The order a well-behaved orders service would store for `request`.
pub fn order_for(request: &CreateOrderV1) -> Order {
    let items: Vec<OrderItem> = request
        .lines
        .iter()
        .map(|l| OrderItem {
            product_id: l.product_id,
            name: l.name.clone(),
            unit_price_cents: l.unit_price_cents,
            quantity: l.quantity,
            line_total_cents: l.unit_price_cents * i64::from(l.quantity),
        })
        .collect();
    Order {
        id: OrderId::new(),
        user_id: request.user_id,
        status: "created".to_owned(),
        total_cents: items.iter().map(|i| i.line_total_cents).sum(),
        items,
        created_at: chrono::Utc::now(),
    }
}

/// A stand-in for the orders service, consuming the app's queue over the real broker.
pub struct FakeOrders {
    /// Every request it received, in order.
    pub received: mpsc::UnboundedReceiver<Incoming<CreateOrderV1>>,
}

/// Starts a fake orders side on the app's queue that answers with `reply`, and waits until it
/// is consuming.
pub async fn start_fake_orders<F, Fut>(app: &TestApp, reply: F) -> FakeOrders
where
    F: Fn(CreateOrderV1) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CreateOrderReplyV1> + Send + 'static,
{
    Amqp::connect().await.declare(&app.queue).await;
    let (tx, received) = mpsc::unbounded_channel();
    let handler = move |incoming: Incoming<CreateOrderV1>| {
        let answer = reply(incoming.request.clone());
        let _ = tx.send(incoming);
        async move { Outcome::Reply(answer.await) }
    };
    start_fake_server(app, app.queue.clone(), "the fake orders consumer", handler).await;
    FakeOrders { received }
}

/// A fake orders side that stores every buy as the order it describes.
pub async fn start_honest_orders(app: &TestApp) -> FakeOrders {
    start_fake_orders(app, |request| async move {
        CreateOrderReplyV1::Order(order_for(&request))
    })
    .await
}

/// A stand-in for orders' side of `order.resolve-reservation.v1` on the app's resolve queue,
/// answering each reservation with `answer`; waits until it is consuming.
pub async fn start_fake_resolver(
    app: &TestApp,
    answer: impl Fn(ReservationId) -> ResolveReservationReplyV1 + Send + Sync + 'static,
) {
    let handler = move |incoming: Incoming<ResolveReservationV1>| {
        let reply = answer(incoming.request.reservation_id);
        async move { Outcome::Reply(reply) }
    };
    start_fake_server(app, app.resolve_queue(), "the fake resolver", handler).await;
}

/// Serves `queue` with `handler` as orders would (8 at once, stopped with the app), and waits
/// until the broker counts it as a consumer of `queue`.
async fn start_fake_server<R, H, Fut>(app: &TestApp, queue: String, what: &str, handler: H)
where
    R: RpcRequest,
    R::Reply: Sync,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome<R::Reply>> + Send + 'static,
{
    let shutdown = app.shutdown().child_token();
    let broker = Broker::start(amqp_url(), shutdown.clone());
    tokio::spawn(serve(broker, queue.clone(), 8, handler, shutdown));
    let connection = broker_connection().await;
    wait_until(Duration::from_secs(10), what, || {
        let (connection, queue) = (&connection, &queue);
        async move {
            // A channel per look: one that found no queue has been closed by the broker.
            let channel = connection.create_channel().await.ok()?;
            let counts = queue_counts(&channel, queue).await.ok()?;
            (counts.1 > 0).then_some(())
        }
    })
    .await;
}
