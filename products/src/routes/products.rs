use actix_web::{
    HttpResponse,
    http::header::{ContentType, LOCATION},
    web,
};
use chrono::{DateTime, Utc};
use common::{
    ids::ProductId,
    jwt::AuthUser,
    paging::{Paging, PagingQuery},
};
use serde::{Deserialize, Serialize};

use crate::{
    catalog::Catalog,
    domain::{
        Description, ImageUrl, Invalid, NewProduct, Price, ProductChanges, ProductName, Restock,
        Stock, StockChange,
    },
    entity::product,
    error::Error,
};

/// The body of `POST /products`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductBody {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// At most 5000 characters; no control characters but line breaks and tabs.
    #[schema(max_length = 5000)]
    pub description: String,
    /// 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price_cents: i64,
    /// An http or https URL of at most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000, format = "uri")]
    pub image_url: Option<String>,
    /// Units in stock, 0 to 1,000,000,000; absent or `null` leaves the stock untracked (never
    /// short).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
}

impl TryFrom<CreateProductBody> for NewProduct {
    type Error = Invalid;

    fn try_from(body: CreateProductBody) -> Result<Self, Invalid> {
        Ok(Self {
            name: ProductName::try_from(body.name)?,
            description: Description::try_from(body.description)?,
            price: Price::try_from(body.price_cents)?,
            image_url: body.image_url.map(ImageUrl::try_from).transpose()?,
            stock: body.stock.map(Stock::try_from).transpose()?,
        })
    }
}

/// The body of `PATCH /products/{id}`: the fields to change, at least one; `stock` and
/// `add_stock` not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProductBody {
    /// 1 to 200 characters once trimmed, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// At most 5000 characters; no control characters but line breaks and tabs.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    /// 0 to 1,000,000,000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price_cents: Option<i64>,
    /// An http or https URL of at most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000, format = "uri")]
    pub image_url: Option<String>,
    /// Sets the stock to this many units (and tracks it from now on).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
    /// Adds this many units to a tracked stock; the sum may not pass 1,000,000,000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub add_stock: Option<i64>,
}

impl TryFrom<UpdateProductBody> for ProductChanges {
    type Error = Invalid;

    fn try_from(body: UpdateProductBody) -> Result<Self, Invalid> {
        let stock = match (body.stock, body.add_stock) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new("send either stock or add_stock, not both"));
            }
            (Some(stock), None) => Some(StockChange::Set(Stock::try_from(stock)?)),
            (None, Some(added)) => Some(StockChange::Add(Restock::try_from(added)?)),
            (None, None) => None,
        };
        let changes = Self {
            name: body.name.map(ProductName::try_from).transpose()?,
            description: body.description.map(Description::try_from).transpose()?,
            price: body.price_cents.map(Price::try_from).transpose()?,
            image_url: body.image_url.map(ImageUrl::try_from).transpose()?,
            stock,
        };
        if changes == Self::default() {
            return Err(Invalid::new("nothing to change"));
        }
        Ok(changes)
    }
}

/// A product as clients see it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProductBody {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Units left to sell, as of at most `CATALOG_CACHE_TTL_MS` ago; `null` when untracked
    /// (never short).
    pub stock: Option<i32>,
}

impl From<&product::Model> for ProductBody {
    fn from(row: &product::Model) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            description: row.description.clone(),
            price_cents: row.price_cents,
            image_url: row.image_url.clone(),
            created_at: row.created_at,
            stock: row.stock,
        }
    }
}

/// `GET /products`: one page of the catalog, oldest first.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(common::paging::PagingQuery),
    responses(
        (status = 200, description = "One page of the catalog, oldest first.",
            body = Vec<ProductBody>),
        (status = 400, response = common::openapi::BadRequest),
        (status = 500, response = common::openapi::Internal),
    )
)]
pub async fn list(
    catalog: web::Data<Catalog>,
    query: web::Query<PagingQuery>,
) -> Result<HttpResponse, Error> {
    let paging = Paging::try_from(query.into_inner())?;
    let body = catalog.page(paging).await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

/// `GET /products/{id}`.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = ProductId, Path, description = "The product's id.")),
    responses(
        (status = 200, description = "The product.", body = ProductBody),
        (status = 404, response = common::openapi::NotFound),
        (status = 500, response = common::openapi::Internal),
    )
)]
pub async fn get(
    catalog: web::Data<Catalog>,
    id: web::Path<ProductId>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let row = catalog.get(id).await?.ok_or(Error::ProductNotFound(id))?;
    Ok(HttpResponse::Ok().json(ProductBody::from(row.as_ref())))
}

/// `POST /products`: admins add a product to the catalog.
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    security(("bearer" = [])),
    request_body(content = CreateProductBody, description = "JSON, at most 256 KiB."),
    responses(
        (status = 201, description = "The product was added.", body = ProductBody,
            headers(("Location" = String, description = "`/products/{id}`"))),
        (status = 400, response = common::openapi::BadRequest),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 403, response = common::openapi::Forbidden),
        (status = 408, response = common::openapi::RequestTimeout),
        (status = 409, description = "The product would duplicate one that exists.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub async fn create(
    user: AuthUser,
    catalog: web::Data<Catalog>,
    body: web::Json<CreateProductBody>,
) -> Result<HttpResponse, Error> {
    user.require_admin()?;
    let new = NewProduct::try_from(body.into_inner())?;
    let row = catalog.insert(&new).await?;
    tracing::info!(product_id = %row.id, admin = %user.id, "product created");
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/products/{}", row.id)))
        .json(ProductBody::from(&row)))
}

/// `PATCH /products/{id}`: admins change a product, or set or add to its stock.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    security(("bearer" = [])),
    params(("id" = ProductId, Path, description = "The product's id.")),
    request_body(content = UpdateProductBody, description = "JSON, at most 256 KiB."),
    responses(
        (status = 200, description = "The product as changed.", body = ProductBody),
        (status = 400, response = common::openapi::BadRequest),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 403, response = common::openapi::Forbidden),
        (status = 404, response = common::openapi::NotFound),
        (status = 408, response = common::openapi::RequestTimeout),
        (status = 409, description = "`add_stock` on a product whose stock is not tracked \
            (set `stock` first).",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub async fn update(
    user: AuthUser,
    catalog: web::Data<Catalog>,
    id: web::Path<ProductId>,
    body: web::Json<UpdateProductBody>,
) -> Result<HttpResponse, Error> {
    user.require_admin()?;
    let changes = ProductChanges::try_from(body.into_inner())?;
    let row = catalog.update(id.into_inner(), &changes).await?;
    tracing::info!(product_id = %row.id, admin = %user.id, stock = row.stock, "product changed");
    Ok(HttpResponse::Ok().json(ProductBody::from(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<CreateProductBody, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn a_product_body_without_an_image_is_a_new_product() {
        let new = NewProduct::try_from(
            body(serde_json::json!({"name": " Mug ", "description": "", "price_cents": 450}))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(new.name.as_str(), "Mug");
        assert_eq!(new.price.cents().get(), 450);
        assert!(new.image_url.is_none());
    }

    #[test]
    fn a_product_body_with_an_unknown_field_does_not_parse() {
        let json = serde_json::json!({
            "name": "Mug", "description": "", "price_cents": 450, "colour": "red"
        });
        assert!(body(json).is_err());
    }

    #[test]
    fn a_product_body_with_a_bad_value_is_refused_with_a_reason() {
        let json = serde_json::json!({"name": "Mug", "description": "", "price_cents": -1});
        let err = NewProduct::try_from(body(json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("price_cents"), "{err}");
    }
}
