//! Shared setup: the real products service on port 0 against a fresh database and a unique
//! queue, a JWKS server for a test key, tokens minted with that key, and a stand-in for the
//! orders side that answers over the real broker.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::{future::Future, net::TcpListener, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{
    amqp::{Broker, Incoming, Outcome, ReplyMode, serve},
    config::AmqpConfig,
    ids::{OrderId, UserId},
    jwt::{AUDIENCE, Claims, ISSUER, ROLE_ADMIN},
    messages::{CreateOrderReplyV1, CreateOrderV1, Order, OrderItem},
    testing::{TestDatabase, amqp_url, require_broker, unique_queue, wait_until},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use products::{config::Config, routes::ProductBody, startup::Application};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The key auth would sign with; its public half is what the JWKS server publishes.
const SIGNING_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOXYo9H4L2jbIBVWqMd0/j8XQ6Euu0Hb814H+8TYv4SS
-----END PRIVATE KEY-----
";

/// A key nobody publishes, for forged tokens.
pub const FORGER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIO8/LQbbYLHAMceCcTiYcL4XULK4PBoqsk8QIET6ZZoR
-----END PRIVATE KEY-----
";

const KEY_ID: &str = "products-test-key";

/// Claims a fresh token would carry for a new user with `roles`.
pub fn claims(roles: &[&str]) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: UserId::new(),
        email: "buyer@example.com".to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        iat: now,
        exp: now + 900,
    }
}

/// A token for `claims` signed with the published key.
pub fn mint(claims: &Claims) -> String {
    mint_with(SIGNING_KEY_PEM, claims)
}

/// A token for `claims` signed with the key in `pem`, under the published key id.
pub fn mint_with(pem: &str, claims: &Claims) -> String {
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).expect("test key parses");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KEY_ID.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("token signs")
}

fn jwk_set() -> Value {
    let key = EncodingKey::from_ed_pem(SIGNING_KEY_PEM.as_bytes()).expect("test key parses");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("public JWK");
    jwk.common.key_id = Some(KEY_ID.to_owned());
    json!({ "keys": [jwk] })
}

/// Serves the test key's JWKS on a free loopback port; returns its URL.
async fn start_jwks_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
    let port = listener.local_addr().unwrap().port();
    let jwks = web::Data::new(jwk_set());
    let server = HttpServer::new(move || {
        App::new().app_data(jwks.clone()).route(
            "/jwks.json",
            web::get().to(|jwks: web::Data<Value>| async move {
                HttpResponse::Ok().json(jwks.get_ref())
            }),
        )
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/jwks.json")
}

/// A running products service and what it talks to.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    /// The queue this app sends buys to; no other test uses it.
    pub queue: String,
    /// The customer whose token [`TestApp::customer_token`] mints.
    pub customer: Claims,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDatabase,
}

/// Settings a test may change before the app starts.
pub struct Options {
    pub rpc_timeout: Duration,
    pub reply_mode: ReplyMode,
    pub amqp_url: String,
    /// Whether to wait for `/readyz` before handing the app to the test.
    pub wait_ready: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(5),
            reply_mode: ReplyMode::PerRequest,
            amqp_url: amqp_url(),
            wait_ready: true,
        }
    }
}

/// Starts the service with default options and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Starts the service with `options`.
pub async fn spawn_app_with(options: Options) -> TestApp {
    common::telemetry::init("products-test");
    if options.wait_ready {
        require_broker().await;
    }
    let db = TestDatabase::create().await;
    let queue = unique_queue("products-test");
    let config = Config {
        port: 0,
        database: db.config(),
        amqp: AmqpConfig {
            url: options.amqp_url,
            order_queue: queue.clone(),
        },
        rpc_timeout: options.rpc_timeout,
        reply_mode: options.reply_mode,
        jwks_url: start_jwks_server().await,
    };
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped());
    let test_app = TestApp {
        address,
        http: reqwest::Client::new(),
        queue,
        customer: claims(&[]),
        shutdown,
        server: Some(server),
        db,
    };
    if options.wait_ready {
        let http = test_app.http.clone();
        let ready = test_app.url("/readyz");
        wait_until(Duration::from_secs(10), "products to be ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let response = http.get(&ready).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
    }
    test_app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn admin_token(&self) -> String {
        mint(&claims(&[ROLE_ADMIN]))
    }

    pub fn customer_token(&self) -> String {
        mint(&self.customer)
    }

    /// Adds a product as an admin; panics unless it is created.
    pub async fn create_product(&self, name: &str, price_cents: i64) -> ProductBody {
        let response = self
            .http
            .post(self.url("/products"))
            .bearer_auth(self.admin_token())
            .json(&json!({
                "name": name,
                "description": format!("{name}, as sold here"),
                "price_cents": price_cents,
            }))
            .send()
            .await
            .expect("POST /products");
        assert_eq!(response.status(), 201, "creating {name}");
        response.json().await.expect("a product body")
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

    /// Cancels the shutdown token and waits for the server to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(server) => server.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let queue = self.queue.clone();
        // Quorum queues outlive the test; a thread with its own runtime can remove them even
        // while the test's runtime is unwinding.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(amqp) = Amqp::try_connect().await {
                    amqp.delete(&queue).await;
                }
            });
        })
        .join();
    }
}

/// A plain channel to the broker, to look at queues the way an operator would.
pub struct Amqp {
    _connection: lapin::Connection,
    pub channel: lapin::Channel,
}

impl Amqp {
    pub async fn connect() -> Self {
        Self::try_connect().await.expect("connect to RabbitMQ")
    }

    async fn try_connect() -> lapin::Result<Self> {
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            _connection: connection,
            channel,
        })
    }

    /// Declares `queue` (and its dead-letter queue) as the orders side would.
    pub async fn declare(&self, queue: &str) {
        common::amqp::declare_work_queue(&self.channel, queue)
            .await
            .expect("declare the work queue");
    }

    /// Messages waiting in `queue` and consumers on it, via a passive declare.
    pub async fn counts(&self, queue: &str) -> (u32, u32) {
        let q = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("the queue exists");
        (q.message_count(), q.consumer_count())
    }

    /// Removes `queue` and its dead-letter queue; removing a missing queue is not an error.
    pub async fn delete(&self, queue: &str) {
        for name in [queue.to_owned(), common::amqp::dead_letter_queue(queue)] {
            let _ = self
                .channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
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
    let amqp = Amqp::connect().await;
    amqp.declare(&app.queue).await;
    let (tx, received) = mpsc::unbounded_channel();
    let handler = move |incoming: Incoming<CreateOrderV1>| {
        let answer = reply(incoming.request.clone());
        let _ = tx.send(incoming);
        async move { Outcome::Reply(answer.await) }
    };
    let shutdown = app.shutdown.child_token();
    let broker = Broker::start(amqp_url(), shutdown.clone());
    tokio::spawn(serve(broker, app.queue.clone(), 8, handler, shutdown));
    wait_until(Duration::from_secs(10), "the fake orders consumer", || {
        let amqp = &amqp;
        async move { (amqp.counts(&app.queue).await.1 > 0).then_some(()) }
    })
    .await;
    FakeOrders { received }
}

/// A fake orders side that stores every buy as the order it describes.
pub async fn start_honest_orders(app: &TestApp) -> FakeOrders {
    start_fake_orders(app, |request| async move {
        CreateOrderReplyV1::Order(order_for(&request))
    })
    .await
}
