use actix_web::{HttpRequest, HttpResponse, http::header::LOCATION, web};
use common::{
    amqp::{CallOptions, RpcClient, RpcError},
    ids::{ProductId, ReservationId},
    jwt::AuthUser,
    messages::{CreateOrderReplyV1, CreateOrderV1, OrderLineV1, RESERVATION_IN_USE},
};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tracing_actix_web::RequestId;

use crate::{
    catalog::Catalog,
    domain::{BuyRequest, IdempotencyKey, Invalid},
    error::Error,
    in_flight::InFlight,
    stock,
};

/// The header a client sets so that retrying a buy cannot order twice.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The body of `POST /products/buy`: `{"items": [...]}`, or the older `{"ids": [...]}` where
/// every id means one item. Exactly one of the two must be present.
#[derive(Debug, Deserialize)]
#[serde(try_from = "BuyBodyFields")]
pub enum BuyBody {
    /// Products with quantities.
    Items(Vec<BuyItemBody>),
    /// Products, one of each (the older form).
    Ids(Vec<ProductId>),
}

/// One line of `{"items": [...]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyItemBody {
    pub product_id: ProductId,
    // Wider than a quantity, so an out-of-range number is refused with the rule it breaks.
    /// 1 to 1000; lines naming the same product are added up.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// The body as it arrives, before deciding which of the two forms it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyBodyFields {
    #[serde(default)]
    items: Option<Vec<BuyItemBody>>,
    #[serde(default)]
    ids: Option<Vec<ProductId>>,
}

impl TryFrom<BuyBodyFields> for BuyBody {
    type Error = &'static str;

    fn try_from(fields: BuyBodyFields) -> Result<Self, Self::Error> {
        match (fields.items, fields.ids) {
            (Some(items), None) => Ok(Self::Items(items)),
            (None, Some(ids)) => Ok(Self::Ids(ids)),
            (Some(_), Some(_)) => Err("send either `items` or `ids`, not both"),
            (None, None) => Err("send `items` (or the older `ids`)"),
        }
    }
}

impl TryFrom<BuyBody> for BuyRequest {
    type Error = Invalid;

    fn try_from(body: BuyBody) -> Result<Self, Invalid> {
        let items: Vec<(ProductId, i64)> = match body {
            BuyBody::Items(items) => items
                .into_iter()
                .map(|i| (i.product_id, i.quantity))
                .collect(),
            BuyBody::Ids(ids) => ids.into_iter().map(|id| (id, 1)).collect(),
        };
        BuyRequest::try_from(items)
    }
}

/// What a buy needs besides the catalog: orders to ask, the keys of buys in flight in this
/// process, and the database the stock is reserved in.
pub struct Checkout {
    /// Asks orders to store a buy.
    pub orders: RpcClient<CreateOrderV1>,
    /// The keys of buys being processed here.
    pub in_flight: InFlight,
    /// products' database.
    pub db: DatabaseConnection,
}

/// `POST /products/buy`: prices the lines from the catalog and asks orders to store them.
#[utoipa::path(
    post,
    path = "/products/buy",
    tag = "products",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 200 visible ASCII characters; a retry with the same key and body \
            answers the same order instead of buying again.",
        min_length = 1, max_length = 200, pattern = "^[!-~]+$")),
    request_body(content = BuyBody, description = "JSON, at most 256 KiB."),
    responses(
        (status = 201, description = "The order was stored.", body = common::messages::Order,
            headers(
                ("Location" = String, description = "`/orders/{id}`"),
                ("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = common::openapi::BadRequest),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 404, description = "A product named does not exist; nothing was ordered.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 408, response = common::openapi::RequestTimeout),
        (status = 409, description = "The stock of some products is short (`type` ending in \
            `/out-of-stock`, the products named; nothing was ordered), or a buy with this \
            Idempotency-Key is still in flight.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 422, description = "This Idempotency-Key was used with other lines.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
        (status = 504, description = "Orders did not answer in time: the outcome is unknown; \
            retry with the same Idempotency-Key.",
            content_type = "application/problem+json", body = common::problem::Problem),
    )
)]
pub async fn buy(
    user: AuthUser,
    req: HttpRequest,
    request_id: Option<RequestId>,
    body: web::Json<BuyBody>,
    catalog: web::Data<Catalog>,
    checkout: web::Data<Checkout>,
) -> Result<HttpResponse, Error> {
    let Checkout {
        orders,
        in_flight,
        db,
    } = checkout.get_ref();
    let key = idempotency_key(&req)?;
    let buy = BuyRequest::try_from(body.into_inner())?;
    // Held until the reply, or until the client goes away and this future is dropped.
    let _claim = match &key {
        Some(key) => Some(
            in_flight
                .claim(user.id, key.clone())
                .ok_or(Error::KeyInFlight)?,
        ),
        None => None,
    };

    let lines = price(&catalog, &buy).await?;
    let reservation = stock::reserve(db, user.id, key.as_ref(), buy.lines()).await?;
    let request = CreateOrderV1 {
        user_id: user.id,
        email: user.email,
        lines,
        idempotency_key: key.map(IdempotencyKey::into_string),
        reservation_id: Some(reservation),
    };
    let opts = CallOptions {
        message_id: None,
        request_id: request_id.map(|id| id.to_string()),
    };
    match orders.call(&request, opts).await {
        Ok(CreateOrderReplyV1::Order(order)) => {
            tracing::info!(order_id = %order.id, total_cents = order.total_cents, "order placed");
            // The order is stored whatever happens here; a reservation left pending is settled
            // by the reconciler (or orders' order.created.v1 event) instead.
            if let Err(e) = stock::commit(db, reservation, order.id).await {
                tracing::warn!(error = format!("{e:#}"), %reservation, "reservation left pending");
            }
            Ok(HttpResponse::Created()
                .insert_header((LOCATION, format!("/orders/{}", order.id)))
                .json(order))
        }
        Ok(CreateOrderReplyV1::Problem(problem)) => {
            tracing::info!(status = problem.status, detail = %problem.detail, "orders refused the buy");
            // Every problem means no order for this reservation, but one: the reservation is
            // another order's, whose stock it holds (the reconciler will find that order).
            if !problem.is_of_type(RESERVATION_IN_USE) {
                release(db, reservation).await;
            }
            Err(Error::Problem(problem))
        }
        // The outcome is unknown, even for Unavailable (the connection may have dropped after the
        // broker took the request): the reservation stays pending, and the reconciler settles
        // it once orders has answered for good.
        Err(RpcError::Unavailable(e)) => Err(Error::BrokerUnavailable(e)),
        Err(RpcError::Timeout(after)) => Err(Error::OutcomeUnknown(after)),
        Err(e @ RpcError::BadReply(_)) => Err(Error::Unexpected(
            anyhow::Error::new(e).context("reading the reply of orders"),
        )),
    }
}

/// Gives the stock of a buy that made no order back; should that fail, the reservation stays
/// pending and the reconciler releases it once orders confirms there is no order.
async fn release(db: &DatabaseConnection, reservation: ReservationId) {
    if let Err(e) = stock::release(db, reservation).await {
        tracing::warn!(error = format!("{e:#}"), %reservation, "reservation left pending");
    }
}

/// The `Idempotency-Key` header, when the client sent one.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, Invalid> {
    req.headers()
        .get(IDEMPOTENCY_KEY)
        .map(|value| IdempotencyKey::try_from(value.as_bytes()))
        .transpose()
}

/// Prices every line from the catalog (at most one query); the client never sends prices.
async fn price(catalog: &Catalog, buy: &BuyRequest) -> Result<Vec<OrderLineV1>, Error> {
    let ids = buy.product_ids();
    let found = catalog.find_many(&ids).await?;
    let unknown: Vec<ProductId> = ids
        .into_iter()
        .filter(|id| !found.contains_key(id))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::UnknownProducts(unknown));
    }
    Ok(buy
        .lines()
        .iter()
        .map(|line| {
            let product = &found[&line.product_id];
            OrderLineV1 {
                product_id: line.product_id,
                name: product.name.clone(),
                unit_price_cents: product.price_cents,
                quantity: line.quantity.get(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(json: serde_json::Value) -> Result<BuyBody, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn items_carry_their_quantities() {
        let id = ProductId::new();
        let body = parse(json!({"items": [{"product_id": id, "quantity": 3}]})).unwrap();
        let buy = BuyRequest::try_from(body).unwrap();
        assert_eq!(buy.lines()[0].product_id, id);
        assert_eq!(buy.lines()[0].quantity.get(), 3);
    }

    #[test]
    fn the_older_ids_form_means_one_of_each_with_repeats_added_up() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let body = parse(json!({"ids": [a, b, a]})).unwrap();
        let buy = BuyRequest::try_from(body).unwrap();
        let lines: Vec<_> = buy
            .lines()
            .iter()
            .map(|l| (l.product_id, l.quantity.get()))
            .collect();
        assert_eq!(lines, vec![(a, 2), (b, 1)]);
    }

    #[test]
    fn a_body_with_both_forms_or_neither_does_not_parse() {
        let id = ProductId::new();
        assert!(parse(json!({"items": [{"product_id": id, "quantity": 1}], "ids": [id]})).is_err());
        assert!(parse(json!({})).is_err());
    }

    #[test]
    fn unknown_fields_do_not_parse_at_either_level() {
        let id = ProductId::new();
        assert!(parse(json!({"ids": [id], "coupon": "FREE"})).is_err());
        let priced = json!({"items": [{"product_id": id, "quantity": 1, "unit_price_cents": 1}]});
        assert!(parse(priced).is_err());
    }

    #[test]
    fn an_empty_list_parses_but_is_not_a_buy() {
        let body = parse(json!({"items": []})).unwrap();
        assert!(BuyRequest::try_from(body).is_err());
    }
}
