//! The message contract between products and orders: `order.create.v1` and its reply.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    amqp::RpcRequest,
    ids::{OrderId, ProductId, UserId},
    problem::Problem,
};

/// The default name of the queue buy requests go to (`ORDER_QUEUE`).
pub const DEFAULT_ORDER_QUEUE: &str = "ORDER";

/// A buy, priced by products from its own database, for orders to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderV1 {
    /// The buyer.
    pub user_id: UserId,
    /// The buyer's email, from their token.
    pub email: String,
    /// The lines, each priced by products.
    pub lines: Vec<OrderLineV1>,
    /// The client's `Idempotency-Key`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// One priced line of a buy request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineV1 {
    /// The product bought.
    pub product_id: ProductId,
    /// The product's name at the time of the buy.
    pub name: String,
    /// The product's price at the time of the buy, in cents.
    pub unit_price_cents: i64,
    /// How many, 1 to 1000.
    pub quantity: i32,
}

/// An order as clients see it (`GET /orders/{id}`) and as orders replies with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    /// The order's id.
    pub id: OrderId,
    /// The buyer.
    pub user_id: UserId,
    /// `created` once stored.
    pub status: String,
    /// The lines with their totals.
    pub items: Vec<OrderItem>,
    /// Sum of the line totals, in cents.
    pub total_cents: i64,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    /// The product bought.
    pub product_id: ProductId,
    /// Its name at the time of the buy.
    pub name: String,
    /// Its price at the time of the buy, in cents.
    pub unit_price_cents: i64,
    /// How many.
    pub quantity: i32,
    /// `unit_price_cents * quantity`.
    pub line_total_cents: i64,
}

/// What orders answers a `CreateOrderV1` with: the order, or a problem for the client
/// (such as 422 when an idempotency key is reused with other lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateOrderReplyV1 {
    /// The order stored for this request (or for an earlier one with the same key).
    Order(Order),
    /// Why no order was made.
    Problem(Problem),
}

impl RpcRequest for CreateOrderV1 {
    const MESSAGE_TYPE: &'static str = "order.create.v1";
    type Reply = CreateOrderReplyV1;
    const REPLY_OUTCOMES: &'static [&'static str] = &["order", "problem"];

    fn reply_outcome(reply: &CreateOrderReplyV1) -> &'static str {
        match reply {
            CreateOrderReplyV1::Order(_) => "order",
            CreateOrderReplyV1::Problem(_) => "problem",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_an_unknown_field_does_not_parse() {
        let body = serde_json::json!({
            "user_id": uuid::Uuid::nil(), "email": "a@b.c", "lines": [], "extra": 1
        });
        assert!(serde_json::from_value::<CreateOrderV1>(body).is_err());
    }

    /// The largest request products can send: every line at its longest, with names that
    /// JSON must escape character by character.
    fn largest_valid_request() -> CreateOrderV1 {
        use crate::domain::{MAX_ORDER_LINES, MAX_PRICE_CENTS, MAX_PRODUCT_NAME_CHARS};
        CreateOrderV1 {
            user_id: UserId::new(),
            email: format!("{}@{}.com", "\"".repeat(64), "d".repeat(185)),
            lines: (0..MAX_ORDER_LINES)
                .map(|_| OrderLineV1 {
                    product_id: ProductId::new(),
                    name: "\u{1}".repeat(MAX_PRODUCT_NAME_CHARS),
                    unit_price_cents: MAX_PRICE_CENTS,
                    quantity: i32::MAX,
                })
                .collect(),
            idempotency_key: Some("k".repeat(crate::domain::IdempotencyKey::MAX_LEN)),
        }
    }

    #[test]
    fn the_largest_valid_request_fits_the_brokers_message_size_limit() {
        let conf = include_str!("../../kube/base/rabbitmq/10-shop.conf");
        let limit: usize = conf
            .lines()
            .find_map(|line| line.strip_prefix("max_message_size = "))
            .expect("10-shop.conf sets max_message_size")
            .trim()
            .parse()
            .expect("max_message_size is a number of bytes");
        let size = serde_json::to_vec(&largest_valid_request()).unwrap().len();
        assert!(size < limit, "{size} bytes against a limit of {limit}");
    }

    #[test]
    fn a_reply_names_its_outcome() {
        let reply = CreateOrderReplyV1::Problem(Problem::bad_request("no"));
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["problem"]["status"], 400);
    }
}
