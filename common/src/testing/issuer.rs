//! Tokens for services under test, without running auth: a fixed Ed25519 key, its JWKS served
//! from a tiny in-test HTTP server, and tokens signed with it.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};

use crate::{
    ids::UserId,
    jwt::{AUDIENCE, Claims, ISSUER},
};

/// The key the issuer signs with and publishes; made once with
/// `openssl genpkey -algorithm ed25519`.
const SIGNING_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOXYo9H4L2jbIBVWqMd0/j8XQ6Euu0Hb814H+8TYv4SS
-----END PRIVATE KEY-----
";

/// A key nobody publishes, for forged tokens.
const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIO8/LQbbYLHAMceCcTiYcL4XULK4PBoqsk8QIET6ZZoR
-----END PRIVATE KEY-----
";

/// The `kid` of the published key, and of every token minted here.
const KEY_ID: &str = "test-key";

/// Where the issuer serves its key set; the same path auth uses.
const JWKS_PATH: &str = "/auth/.well-known/jwks.json";

/// Claims auth would put in a fresh 15-minute token for `user` with `roles`.
pub fn claims_for(user: UserId, roles: &[&str]) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: user,
        email: format!("{user}@example.com"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        iat: now,
        exp: now + 900,
    }
}

/// Stands in for auth: serves a JWKS with one Ed25519 key on a free loopback port and signs
/// tokens with that key, so a service under test verifies them as it would auth's.
pub struct TestIssuer {
    jwks_url: String,
    key: EncodingKey,
}

impl TestIssuer {
    /// Starts the JWKS server on `127.0.0.1:0`; it runs for the rest of the test.
    pub async fn start() -> Self {
        let key = signing_key(SIGNING_KEY_PEM);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("a public JWK");
        jwk.common.key_id = Some(KEY_ID.to_owned());
        let set = web::Data::new(JwkSet { keys: vec![jwk] });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
        let port = listener.local_addr().expect("the JWKS port").port();
        let server = HttpServer::new(move || {
            App::new().app_data(set.clone()).route(
                JWKS_PATH,
                web::get().to(|set: web::Data<JwkSet>| async move {
                    HttpResponse::Ok().json(set.get_ref())
                }),
            )
        })
        .listen(listener)
        .expect("listen for JWKS requests")
        .workers(1)
        .disable_signals()
        .run();
        tokio::spawn(server);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}{JWKS_PATH}"),
            key,
        }
    }

    /// The URL of the key set, for a service's `jwks_url`.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// A token carrying `claims`, signed with the published key.
    pub fn token(&self, claims: &Claims) -> String {
        sign(&self.key, claims)
    }

    /// A valid 15-minute token for `user` with `roles`.
    pub fn token_for(&self, user: UserId, roles: &[&str]) -> String {
        self.token(&claims_for(user, roles))
    }

    /// A token carrying `claims` under the published key id but signed with a key nobody
    /// publishes: a forgery every verifier must refuse.
    pub fn mint_with_other_key(&self, claims: &Claims) -> String {
        sign(&signing_key(OTHER_KEY_PEM), claims)
    }
}

fn signing_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ed_pem(pem.as_bytes()).expect("the test key parses")
}

fn sign(key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KEY_ID.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("the test token signs")
}
