//! Tokens for services under test, without running auth: fixed Ed25519 keys, their JWKS served
//! from a tiny in-test HTTP server whose answer a test can change (publish or withdraw a key,
//! send a `Cache-Control`, fail), tokens signed with them, and the forgeries every verifier must
//! refuse.

use std::{
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use actix_web::{App, HttpResponse, HttpServer, http::header, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{AlgorithmParameters, Jwk, JwkSet},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    ids::UserId,
    jwt::{AUDIENCE, Claims, ISSUER, JwksConfig, TOKEN_TYPE},
};

/// The key the issuer signs with and publishes; made once with
/// `openssl genpkey -algorithm ed25519`. Public so a test can give auth the same key.
pub const SIGNING_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOXYo9H4L2jbIBVWqMd0/j8XQ6Euu0Hb814H+8TYv4SS
-----END PRIVATE KEY-----
";

/// A second key, published only when a test says so: the key a rotation moves to.
const NEXT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHFkI8GLAy41ZFP1k5+Cqyol+4iuEd2yBB3hNruOLPPU
-----END PRIVATE KEY-----
";

/// A key nobody publishes, for forged tokens.
const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIO8/LQbbYLHAMceCcTiYcL4XULK4PBoqsk8QIET6ZZoR
-----END PRIVATE KEY-----
";

/// The `kid` of [`SIGNING_KEY_PEM`] here.
pub const KEY_ID: &str = "test-key";

/// The `kid` of the key a rotation moves to.
pub const NEXT_KEY_ID: &str = "next-key";

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

/// Ways to forge an access token, each of which every verifier must refuse with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256, with the published Ed25519 public key as the HMAC secret.
    Hs256WithPublicKey,
    /// Signed with a key nobody publishes, under a `kid` nobody publishes.
    UnknownKid,
    /// Signed with the real key, but the header names no key.
    MissingKid,
    /// Signed with a key nobody publishes, under the published `kid`.
    OtherKeyUnderKnownKid,
    /// Expired a minute ago.
    Expired,
    /// `nbf` an hour from now.
    NotYetValid,
    /// `iss` is not auth.
    WrongIssuer,
    /// `aud` is not the shop.
    WrongAudience,
    /// `typ: JWT`, as a token that is not an access token would carry.
    WrongType,
    /// Valid for a year.
    LifetimeTooLong,
    /// Issued a day from now with a normal lifetime, so it would stay valid for a day.
    IssuedInFuture,
    /// A genuine token whose payload now claims the admin role, signature kept.
    TamperedPayload,
    /// A header of about 100 KB.
    Oversized,
}

impl Forgery {
    /// Every forgery.
    pub const ALL: [Forgery; 14] = [
        Forgery::AlgNone,
        Forgery::Hs256WithPublicKey,
        Forgery::UnknownKid,
        Forgery::MissingKid,
        Forgery::OtherKeyUnderKnownKid,
        Forgery::Expired,
        Forgery::NotYetValid,
        Forgery::WrongIssuer,
        Forgery::WrongAudience,
        Forgery::WrongType,
        Forgery::LifetimeTooLong,
        Forgery::IssuedInFuture,
        Forgery::TamperedPayload,
        Forgery::Oversized,
    ];
}

/// Signs tokens with one Ed25519 key under one `kid`, genuine or forged.
#[derive(Clone)]
pub struct TokenForge {
    key: EncodingKey,
    kid: String,
    jwk: Jwk,
}

impl TokenForge {
    /// A forge holding the PKCS#8 PEM key `pem`, naming it `kid` in headers.
    pub fn new(pem: &str, kid: impl Into<String>) -> Self {
        let key = signing_key(pem);
        let kid = kid.into();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("a public JWK");
        jwk.common.key_id = Some(kid.clone());
        Self { key, kid, jwk }
    }

    /// The public half, as a JWKS lists it.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The header auth writes: EdDSA, `typ: at+jwt`, this key's `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    /// `claims` under `header`, signed with this key.
    pub fn sign_with_header(&self, header: &Header, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(header, claims, &self.key).expect("the test token signs")
    }

    /// `claims` signed as auth signs them.
    pub fn sign(&self, claims: &impl Serialize) -> String {
        self.sign_with_header(&self.header(), claims)
    }

    /// A token for `user` forged in the way `forgery` says.
    pub fn forge(&self, forgery: Forgery, user: UserId) -> String {
        let claims = claims_for(user, &[]);
        let now = claims.iat;
        let with = |change: &dyn Fn(&mut Value)| {
            let mut claims = serde_json::to_value(&claims).expect("claims serialize");
            change(&mut claims);
            self.sign(&claims)
        };
        match forgery {
            Forgery::AlgNone => {
                let header = json!({ "alg": "none", "typ": TOKEN_TYPE, "kid": self.kid });
                format!("{}.{}.", encode_part(&header), encode_part(&claims))
            }
            Forgery::Hs256WithPublicKey => {
                let AlgorithmParameters::OctetKeyPair(okp) = &self.jwk.algorithm else {
                    unreachable!("an Ed25519 JWK is an octet key pair")
                };
                let public = URL_SAFE_NO_PAD.decode(&okp.x).expect("x is base64url");
                let mut header = Header::new(Algorithm::HS256);
                header.typ = Some(TOKEN_TYPE.to_owned());
                header.kid = Some(self.kid.clone());
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public))
                    .expect("an HS256 token signs")
            }
            Forgery::UnknownKid => {
                let mut header = self.header();
                header.kid = Some("nobody-publishes-this".to_owned());
                jsonwebtoken::encode(&header, &claims, &signing_key(OTHER_KEY_PEM))
                    .expect("the test token signs")
            }
            Forgery::MissingKid => {
                let mut header = self.header();
                header.kid = None;
                self.sign_with_header(&header, &claims)
            }
            Forgery::OtherKeyUnderKnownKid => {
                jsonwebtoken::encode(&self.header(), &claims, &signing_key(OTHER_KEY_PEM))
                    .expect("the test token signs")
            }
            Forgery::Expired => with(&|c| {
                c["iat"] = json!(now - 960);
                c["exp"] = json!(now - 60);
            }),
            Forgery::NotYetValid => with(&|c| c["nbf"] = json!(now + 3600)),
            Forgery::WrongIssuer => with(&|c| c["iss"] = json!("someone-else")),
            Forgery::WrongAudience => with(&|c| c["aud"] = json!("another-shop")),
            Forgery::WrongType => {
                let mut header = self.header();
                header.typ = Some("JWT".to_owned());
                self.sign_with_header(&header, &claims)
            }
            Forgery::LifetimeTooLong => with(&|c| c["exp"] = json!(now + 365 * 24 * 3600)),
            Forgery::IssuedInFuture => with(&|c| {
                c["iat"] = json!(now + 24 * 3600);
                c["exp"] = json!(now + 24 * 3600 + 900);
            }),
            Forgery::TamperedPayload => {
                let genuine = self.sign(&claims);
                let (_, signature) = genuine.rsplit_once('.').expect("a compact JWT");
                let (header, _) = genuine.split_once('.').expect("a compact JWT");
                let mut admin = serde_json::to_value(&claims).expect("claims serialize");
                admin["roles"] = json!([crate::jwt::ROLE_ADMIN]);
                format!("{header}.{}.{signature}", encode_part(&admin))
            }
            Forgery::Oversized => {
                let header = json!({
                    "alg": "EdDSA",
                    "typ": TOKEN_TYPE,
                    "kid": self.kid,
                    "x-padding": "A".repeat(100 * 1024),
                });
                let signing_input = format!("{}.{}", encode_part(&header), encode_part(&claims));
                let signature = jsonwebtoken::crypto::sign(
                    signing_input.as_bytes(),
                    &self.key,
                    Algorithm::EdDSA,
                )
                .expect("the oversized token signs");
                format!("{signing_input}.{signature}")
            }
        }
    }
}

fn encode_part(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON serializes"))
}

/// What the JWKS server answers; a test changes it while services run.
struct Served {
    published: Mutex<Vec<Jwk>>,
    cache_control: Mutex<Option<String>>,
    down: AtomicBool,
    fetches: AtomicU64,
}

/// Stands in for auth: serves a JWKS of Ed25519 keys on a free loopback port and signs tokens
/// with them, so a service under test verifies them as it would auth's.
pub struct TestIssuer {
    jwks_url: String,
    current: TokenForge,
    next: TokenForge,
    served: Arc<Served>,
}

impl TestIssuer {
    /// Starts the JWKS server on `127.0.0.1:0`, publishing [`KEY_ID`] only; it runs for the
    /// rest of the test.
    pub async fn start() -> Self {
        let current = TokenForge::new(SIGNING_KEY_PEM, KEY_ID);
        let next = TokenForge::new(NEXT_KEY_PEM, NEXT_KEY_ID);
        let served = Arc::new(Served {
            published: Mutex::new(vec![current.jwk().clone()]),
            cache_control: Mutex::new(None),
            down: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        });
        let state = web::Data::from(served.clone());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
        let port = listener.local_addr().expect("the JWKS port").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route(JWKS_PATH, web::get().to(serve_jwks))
        })
        .listen(listener)
        .expect("listen for JWKS requests")
        .workers(1)
        .disable_signals()
        .run();
        tokio::spawn(server);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}{JWKS_PATH}"),
            current,
            next,
            served,
        }
    }

    /// The URL of the key set, for a service's `jwks_url`.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// A verifier's settings pointed at this issuer, with the default limits.
    pub fn jwks_config(&self) -> JwksConfig {
        JwksConfig::new(self.jwks_url())
    }

    /// The forge of the key published from the start, [`KEY_ID`].
    pub fn forge(&self) -> &TokenForge {
        &self.current
    }

    /// The forge of the key a rotation moves to, [`NEXT_KEY_ID`].
    pub fn next_forge(&self) -> &TokenForge {
        &self.next
    }

    /// A token carrying `claims`, signed with the published key.
    pub fn token(&self, claims: &Claims) -> String {
        self.current.sign(claims)
    }

    /// A valid 15-minute token for `user` with `roles`.
    pub fn token_for(&self, user: UserId, roles: &[&str]) -> String {
        self.token(&claims_for(user, roles))
    }

    /// A token carrying `claims` under the published key id but signed with a key nobody
    /// publishes: a forgery every verifier must refuse.
    pub fn mint_with_other_key(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&self.current.header(), claims, &signing_key(OTHER_KEY_PEM))
            .expect("the test token signs")
    }

    /// Publishes exactly the keys named (of [`KEY_ID`] and [`NEXT_KEY_ID`]) from now on.
    pub fn publish(&self, kids: &[&str]) {
        let keys = [&self.current, &self.next]
            .into_iter()
            .filter(|forge| kids.contains(&forge.kid.as_str()))
            .map(|forge| forge.jwk().clone())
            .collect();
        *self.served.published.lock().expect("lock") = keys;
    }

    /// Sends `value` as the key set's `Cache-Control` from now on (`None`: no header).
    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.served.cache_control.lock().expect("lock") = value.map(str::to_owned);
    }

    /// Makes the key set answer 500 (`true`) or serve again (`false`).
    pub fn set_down(&self, down: bool) {
        self.served.down.store(down, Ordering::SeqCst);
    }

    /// How many times the key set was asked for.
    pub fn fetches(&self) -> u64 {
        self.served.fetches.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(served: web::Data<Served>) -> HttpResponse {
    served.fetches.fetch_add(1, Ordering::SeqCst);
    if served.down.load(Ordering::SeqCst) {
        return HttpResponse::InternalServerError().finish();
    }
    let set = JwkSet {
        keys: served.published.lock().expect("lock").clone(),
    };
    let mut response = HttpResponse::Ok();
    if let Some(value) = served.cache_control.lock().expect("lock").clone() {
        response.insert_header((header::CACHE_CONTROL, value));
    }
    response.json(set)
}

fn signing_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ed_pem(pem.as_bytes()).expect("the test key parses")
}
