//! The catalog as the routes read it: the products table behind two short-lived caches.
//!
//! Every buy prices its lines from the catalog and every visitor lists it, so without a cache
//! both cost a database round trip per request. Products are cached by id, and listing pages
//! as the JSON body they are served as, each for `CATALOG_CACHE_TTL_MS` (default 1 s). Adding a
//! product empties the page cache of this replica at once; another replica sees it within the
//! TTL. An id that is not found is not cached, so a product just added elsewhere is found at
//! the first buy that names it. Concurrent misses on one key wait for a single query.
//!
//! Both caches are weighed in bytes, not entries: `CATALOG_CACHE_MAX_BYTES` (default 4 MiB) is
//! split evenly between them. A product may carry a 5,000-character description and a page 200
//! of them, so a cap in entries says nothing about memory. Only canonical pages are cached
//! (see [`is_canonical`]); any other page is read from the database every time.

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
use common::{
    ids::ProductId,
    metrics::Registry,
    paging::{DEFAULT_LIMIT, MAX_LIMIT, Paging},
};
use moka::future::Cache;
use prometheus::{IntCounterVec, Opts};
use sea_orm::DatabaseConnection;
use tokio::sync::Semaphore;

use crate::{
    domain::{NewProduct, ProductChanges},
    entity::product,
    error::Error,
    routes::ProductBody,
    store,
};

/// What an entry costs beyond the bytes of its text, roughly: the cache's own node and
/// bookkeeping, the key, the row's fixed-size fields and the reference count. Counted so that
/// many small entries are bounded as well as a few large ones.
const ENTRY_OVERHEAD: usize = 256;

/// Page reads from the database in progress at once; more wait their turn. A page of 200 long
/// descriptions holds about a megabyte as rows and again as JSON while it is read, so without a
/// bound a client asking for many uncached pages at once (each distinct, so none is cached)
/// makes the process hold that much per request in flight. Below the pool's connections, so
/// buys and product reads still find one while pages are read.
const PAGE_READS_AT_ONCE: usize = 4;

/// How the catalog caches: for how long, and in how many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// How long an entry is served; zero turns caching off.
    pub ttl: Duration,
    /// The most bytes both caches hold together, split evenly; zero turns caching off.
    pub max_bytes: u64,
}

/// The products table and its caches. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    caches: Option<Caches>,
    /// Bounds the page reads in progress, see [`PAGE_READS_AT_ONCE`].
    page_reads: Arc<Semaphore>,
}

#[derive(Clone)]
struct Caches {
    products: Cache<ProductId, Arc<product::Model>>,
    /// Canonical pages only, by `(generation, limit, offset)`: keyed by `generation` too, so a
    /// page read that began before a product was added here is not what later requests get.
    pages: Cache<(u64, u64, u64), Bytes>,
    /// Incremented by every product added through this replica.
    generation: Arc<AtomicU64>,
    /// `shop_catalog_cache_requests_total{cache, result}`.
    requests: IntCounterVec,
}

impl Catalog {
    /// The catalog in `db`, cached within `limits`.
    pub fn new(db: DatabaseConnection, limits: CacheLimits) -> Self {
        let enabled = !limits.ttl.is_zero() && limits.max_bytes > 0;
        let each = limits.max_bytes / 2;
        let caches = enabled.then(|| Caches {
            products: Cache::builder()
                .max_capacity(each)
                .weigher(|_, row: &Arc<product::Model>| weight(product_bytes(row)))
                .time_to_live(limits.ttl)
                .build(),
            pages: Cache::builder()
                .max_capacity(each)
                .weigher(|_, body: &Bytes| weight(body.len()))
                .time_to_live(limits.ttl)
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
        Self {
            db,
            caches,
            page_reads: Arc::new(Semaphore::new(PAGE_READS_AT_ONCE)),
        }
    }

    /// Registers the cache's hit and miss counter and its size gauges in `registry` (nothing
    /// when caching is off).
    pub fn register_metrics(&self, registry: &Registry) -> anyhow::Result<()> {
        let Some(caches) = &self.caches else {
            return Ok(());
        };
        common::metrics::register(registry, caches.requests.clone())?;
        let sizes = caches.clone();
        common::metrics::gauge_vec_fn(
            registry,
            "shop_catalog_cache_bytes",
            "Bytes held by the catalog caches, by cache (product, page), as they are weighed \
             against CATALOG_CACHE_MAX_BYTES.",
            "cache",
            move || {
                vec![
                    ("product", gauge(sizes.products.weighted_size())),
                    ("page", gauge(sizes.pages.weighted_size())),
                ]
            },
        )?;
        let counts = caches.clone();
        common::metrics::gauge_vec_fn(
            registry,
            "shop_catalog_cache_entries",
            "Entries held by the catalog caches, by cache (product, page).",
            "cache",
            move || {
                vec![
                    ("product", gauge(counts.products.entry_count())),
                    ("page", gauge(counts.pages.entry_count())),
                ]
            },
        )
    }

    /// One page of the listing, oldest first, as its JSON body.
    pub async fn page(&self, paging: Paging) -> Result<Bytes, Error> {
        let Some(caches) = self.caches.as_ref().filter(|_| is_canonical(paging)) else {
            return Ok(Bytes::from(self.read_page(paging).await?));
        };
        let generation = caches.generation.load(Ordering::Acquire);
        let entry = caches
            .pages
            .entry((generation, paging.limit(), paging.offset()))
            .or_try_insert_with(async {
                let mut body = self.read_page(paging).await?;
                // Kept for a while: hold no spare capacity beyond the bytes it is weighed by.
                body.shrink_to_fit();
                Ok::<_, Error>(Bytes::from(body))
            })
            .await
            .map_err(shared_error)?;
        // Fresh: read from the database by this request (or one it waited for).
        let fresh = entry.is_fresh();
        caches.count("page", !fresh);
        if fresh {
            // Evicts at once what the new page pushed over the cap, rather than at the
            // cache's next housekeeping, so the cap holds at every moment.
            caches.pages.run_pending_tasks().await;
        }
        Ok(entry.into_value())
    }

    async fn read_page(&self, paging: Paging) -> Result<Vec<u8>, Error> {
        let _permit = self
            .page_reads
            .acquire()
            .await
            .context("the page read limit is never closed")?;
        let rows = store::list(&self.db, paging).await?;
        // Sized once, and the rows moved rather than copied: a page of long descriptions is
        // about a megabyte, and each copy alive at once is memory a client can make us hold.
        let mut json = Vec::with_capacity(rows.iter().map(|r| product_bytes(r) + 192).sum());
        let body: Vec<ProductBody> = rows.into_iter().map(ProductBody::from).collect();
        serde_json::to_writer(&mut json, &body).context("serializing a catalog page")?;
        Ok(json)
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
        if let Some(caches) = &self.caches {
            // As for pages: the cap holds at every moment, not only after housekeeping.
            caches.products.run_pending_tasks().await;
        }
        Ok(found)
    }

    /// Adds `new` to the catalog; this replica's listing shows it from the next request on.
    pub async fn insert(&self, new: &NewProduct) -> Result<product::Model, Error> {
        let row = store::insert(&self.db, new).await?;
        self.refresh(&row).await;
        Ok(row)
    }

    /// Changes the product `id`; this replica shows the change from the next request on.
    pub async fn update(
        &self,
        id: ProductId,
        changes: &ProductChanges,
    ) -> Result<product::Model, Error> {
        let row = store::update(&self.db, id, changes).await?;
        self.refresh(&row).await;
        Ok(row)
    }

    /// Puts `row` as stored into the caches, and drops every cached page (each may hold it).
    async fn refresh(&self, row: &product::Model) {
        if let Some(caches) = &self.caches {
            caches.generation.fetch_add(1, Ordering::AcqRel);
            // The older pages would only expire; dropping them now frees their memory.
            caches.pages.invalidate_all();
            caches.products.insert(row.id, Arc::new(row.clone())).await;
        }
    }
}

/// The page sizes whose pages are cached: those a storefront offers, the default and the most.
const CACHED_LIMITS: [u64; 5] = [10, 20, DEFAULT_LIMIT, 100, MAX_LIMIT];

/// Whether `paging` names a page worth caching: one of [`CACHED_LIMITS`], at an offset that is a
/// multiple of it. Those are the pages clients paging through the catalog ask for, so visitors
/// share them. Caching every `(limit, offset)` a client can name would let one client fill the
/// cache with pages nobody else reads, each pushing out one that others do; with the offset
/// capped ([`common::paging::MAX_OFFSET`]) there are under 2,000 canonical pages per
/// generation, the byte cap bounds what they hold, and the cache's admission policy (TinyLFU)
/// keeps the often-read ones against a scan of rarely read ones.
pub fn is_canonical(paging: Paging) -> bool {
    CACHED_LIMITS.contains(&paging.limit()) && paging.offset().is_multiple_of(paging.limit())
}

/// The bytes a cached product holds: its text, and its share of fixed costs.
fn product_bytes(row: &product::Model) -> usize {
    row.name.capacity()
        + row.description.capacity()
        + row.image_url.as_ref().map_or(0, String::capacity)
}

/// An entry's weight: its own bytes and [`ENTRY_OVERHEAD`], saturating at what the cache's
/// weigher can express (4 GiB, far above any cap).
fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

/// A cache size as a gauge value.
fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl From<product::Model> for ProductBody {
    fn from(row: product::Model) -> Self {
        Self {
            id: row.id,
            name: row.name,
            description: row.description,
            price_cents: row.price_cents,
            image_url: row.image_url,
            created_at: row.created_at,
            stock: row.stock,
        }
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
