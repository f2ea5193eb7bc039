//! HTTP routes of the products service.

pub(crate) mod buy;
pub(crate) mod products;

use actix_web::web;

pub use buy::{BuyBody, BuyItemBody, Checkout};
pub use products::{CreateProductBody, ProductBody, UpdateProductBody};

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/products")
            .route("", web::get().to(products::list))
            .route("", web::post().to(products::create))
            .route("/buy", web::post().to(buy::buy))
            .route("/{id}", web::get().to(products::get))
            .route("/{id}", web::patch().to(products::update)),
    );
}
