//! The catalog as the routes read it: the products table behind two short-lived caches.
//!
//! Every buy prices its lines from the catalog and every visitor lists it, so without a cache
//! both cost a database round trip per request. Products are cached by id, and listing pages
//! as the JSON body they are served as, each for `CATALOG_CACHE_TTL_MS` (default 1 s). Adding a
//! product empties the page cache of this replica at once; another replica sees it within the
//! TTL. An id that is not found is not cached, so a product just added elsewhere is found at
//! the first buy that names it. Concurrent misses on one key wait for a single query.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use actix_web::web::Bytes;
use anyhow::Context;
use common::{ids::ProductId, metrics::Registry, paging::Paging};
use moka::future::Cache;
use prometheus::{IntCounterVec, Opts};
use sea_orm::DatabaseConnection;

use crate::{domain::NewProduct, entity::product, error::Error, routes::ProductBody, store};

/// Most products kept; a larger catalog is read from the database for the rest.
const MAX_PRODUCTS: u64 = 10_000;
/// Most listing pages kept (one per `limit` and `offset` asked for).
const MAX_PAGES: u64 = 1_000;

/// The products table and its caches. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    caches: Option<Caches>,
}

#[derive(Clone)]
struct Caches {
    products: Cache<ProductId, Arc<product::Model>>,
    /// Keyed by `generation` too: a page read that began before a product was added here must
    /// not be what later requests get.
    pages: Cache<(u64, u64, u64), Bytes>,
    /// Incremented by every product added through this replica.
    generation: Arc<AtomicU64>,
    /// `shop_catalog_cache_requests_total{cache, result}`.
    requests: IntCounterVec,
}

impl Catalog {
    /// The catalog in `db`, with entries kept for `ttl`; a zero `ttl` turns caching off.
    pub fn new(db: DatabaseConnection, ttl: Duration) -> Self {
        let caches = (!ttl.is_zero()).then(|| Caches {
            products: Cache::builder()
                .max_capacity(MAX_PRODUCTS)
                .time_to_live(ttl)
                .build(),
            pages: Cache::builder()
                .max_capacity(MAX_PAGES)
                .time_to_live(ttl)
                .build(),
            generation: Arc::default(),
            requests: IntCounterVec::new(
                Opts::new(
                    "shop_catalog_cache_requests_total",
                    "Catalog cache lookups, by cache (product, page) and result (hit, miss).",
                ),
                &["cache", "result"],
            )
            .expect("a valid metric definition"),
        });
        Self { db, caches }
    }

    /// Registers the cache's hit and miss counter in `registry` (nothing when caching is off).
    pub fn register_metrics(&self, registry: &Registry) -> anyhow::Result<()> {
        if let Some(caches) = &self.caches {
            common::metrics::register(registry, caches.requests.clone())?;
        }
        Ok(())
    }

    /// One page of the listing, oldest first, as its JSON body.
    pub async fn page(&self, paging: Paging) -> Result<Bytes, Error> {
        let Some(caches) = &self.caches else {
            return self.read_page(paging).await;
        };
        let generation = caches.generation.load(Ordering::Acquire);
        let entry = caches
            .pages
            .entry((generation, paging.limit(), paging.offset()))
            .or_try_insert_with(self.read_page(paging))
            .await
            .map_err(shared_error)?;
        // Fresh: read from the database by this request (or one it waited for).
        caches.count("page", !entry.is_fresh());
        Ok(entry.into_value())
    }

    async fn read_page(&self, paging: Paging) -> Result<Bytes, Error> {
        let rows = store::list(&self.db, paging).await?;
        let body: Vec<ProductBody> = rows.iter().map(ProductBody::from).collect();
        let json = serde_json::to_vec(&body).context("serializing a catalog page")?;
        Ok(Bytes::from(json))
    }

    /// The product `id`, if it exists.
    pub async fn get(&self, id: ProductId) -> Result<Option<Arc<product::Model>>, Error> {
        Ok(self.find_many(&[id]).await?.remove(&id))
    }

    /// Those of `ids` that exist, by id: from the cache where it has them, the rest in one
    /// query.
    pub async fn find_many(
        &self,
        ids: &[ProductId],
    ) -> Result<HashMap<ProductId, Arc<product::Model>>, Error> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in ids {
            match &self.caches {
                Some(caches) => {
                    let cached = caches.products.get(&id).await;
                    caches.count("product", cached.is_some());
                    match cached {
                        Some(row) => {
                            found.insert(id, row);
                        }
                        None => missing.push(id),
                    }
                }
                None => missing.push(id),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        for row in store::find_many(&self.db, &missing).await? {
            let row = Arc::new(row);
            if let Some(caches) = &self.caches {
                caches.products.insert(row.id, row.clone()).await;
            }
            found.insert(row.id, row);
        }
        Ok(found)
    }

    /// Adds `new` to the catalog; this replica's listing shows it from the next request on.
    pub async fn insert(&self, new: &NewProduct) -> Result<product::Model, Error> {
        let row = store::insert(&self.db, new).await?;
        if let Some(caches) = &self.caches {
            caches.generation.fetch_add(1, Ordering::AcqRel);
            // The older pages would only expire; dropping them now frees their memory.
            caches.pages.invalidate_all();
            caches.products.insert(row.id, Arc::new(row.clone())).await;
        }
        Ok(row)
    }
}

impl Caches {
    fn count(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.requests.with_label_values(&[cache, result]).inc();
    }
}

/// A failed read shared by every request that waited on it: each gets the cause as text (the
/// log and the 500 body need nothing more).
fn shared_error(error: Arc<Error>) -> Error {
    match Arc::try_unwrap(error) {
        Ok(error) => error,
        Err(shared) => Error::Unexpected(anyhow::anyhow!("{shared:#}")),
    }
}
