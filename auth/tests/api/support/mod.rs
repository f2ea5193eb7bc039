//! Starting the real service on port 0 against a fresh database, and talking to it.

use std::{ops::Deref, path::PathBuf, time::Duration};

use auth::{
    Auth,
    config::{Config, KeyConfig},
    limits::RateLimitConfig,
    password::HashQueueConfig,
};
use common::{
    config::DatabaseConfig,
    jwt::{Claims, JwksConfig, JwksVerifier},
    testing::{self, TestDatabase},
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// An Ed25519 key generated once with `openssl genpkey -algorithm ed25519`, so the test
/// proves keys made that way load.
pub const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKLWfAva2yblOM1ZoNRazZF05K+itBkI/ow6XUzG+T2U
-----END PRIVATE KEY-----
";

/// Another key made the same way, for tokens the service must refuse.
pub const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHFkI8GLAy41ZFP1k5+Cqyol+4iuEd2yBB3hNruOLPPU
-----END PRIVATE KEY-----
";

/// The time to live the test apps give their tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(900);

/// A running auth service, and the settings of its database.
pub struct TestApp {
    app: testing::TestApp,
    pub database: DatabaseConfig,
}

impl Deref for TestApp {
    type Target = testing::TestApp;

    fn deref(&self) -> &testing::TestApp {
        &self.app
    }
}

/// The config of a test app: any free port, `db`, an ephemeral key.
pub fn test_config(db: &TestDatabase) -> Config {
    Config {
        server: db.server_config(),
        keys: KeyConfig::default(),
        token_ttl: TOKEN_TTL,
        hash_concurrency: 2,
        hash_queue: HashQueueConfig::for_concurrency(2),
        rate_limits: test_limits(),
    }
}

/// The production limits, except that one address (127.0.0.1, every test's) may register
/// and log in as often as the tests do; the limits' own tests set what they measure.
pub fn test_limits() -> RateLimitConfig {
    let roomy = auth::limits::Rate::new(1000, 1000);
    RateLimitConfig {
        login_per_ip: roomy,
        register_per_ip: roomy,
        ..RateLimitConfig::default()
    }
}

/// Starts the service against `db` with `change` applied to the default test config.
pub async fn spawn_app_with(db: &TestDatabase, change: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(db);
    change(&mut config);
    let database = config.server.database.clone();
    TestApp {
        app: testing::TestApp::spawn::<Auth>(config).await,
        database,
    }
}

/// Starts the service with an ephemeral key against its own fresh database.
pub async fn spawn_app() -> (TestApp, TestDatabase) {
    let db = TestDatabase::create().await;
    let app = spawn_app_with(&db, |_| {}).await;
    (app, db)
}

/// Writes `pem` to a file of its own and returns the path, for `JWT_PRIVATE_KEY_FILE`.
pub fn key_file(pem: &str) -> KeyFile {
    let path = std::env::temp_dir().join(format!("auth-test-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, pem).expect("write the key file");
    KeyFile(path)
}

/// A key file deleted when dropped.
pub struct KeyFile(pub PathBuf);

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl TestApp {
    pub fn jwks_url(&self) -> String {
        self.url("/auth/.well-known/jwks.json")
    }

    /// A verifier such as products and orders use, pointed at this app's JWKS.
    pub fn verifier(&self) -> JwksVerifier {
        JwksVerifier::new(JwksConfig::new(self.jwks_url()))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request reaches the service")
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/auth/register",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Registers a user and returns their id.
    pub async fn registered_user(&self, email: &str, password: &str) -> String {
        let response = self.register(email, password).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Logs in and returns the verified claims of the token.
    pub async fn claims(&self, email: &str, password: &str) -> Claims {
        let token = self.token(email, password).await;
        self.verifier()
            .verify(&token)
            .await
            .expect("the service's own token verifies")
    }
}

/// The `kid` in a token's header.
pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}

/// Asserts `response` is a problem+json body with `status`, and returns the body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// An HTTP client whose connections come from `local`, a loopback address such as 127.0.0.2:
/// to the service, another client.
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

impl TestApp {
    /// `POST path` with `body`, sent by `client`.
    pub async fn post_json_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> Response {
        client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request reaches the service")
    }

    /// A login sent by `client`.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> Response {
        self.post_json_with(
            client,
            "/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }
}

/// The `Retry-After` of `response` in seconds; panics unless it is a whole number.
pub fn retry_after(response: &Response) -> u64 {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("a Retry-After header on {}", response.status()));
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After is whole seconds: {value:?}"))
}
