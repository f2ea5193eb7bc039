//! The message contract between products and orders: the requests `order.create.v1` and
//! `order.resolve-reservation.v1` with their replies, and the events `order.created.v1` and
//! `order.cancelled.v1` that orders publishes to the topic exchange [`EVENTS_EXCHANGE`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    amqp::RpcRequest,
    ids::{OrderId, ProductId, ReservationId, UserId},
    problem::Problem,
};

/// The default name of the queue buy requests go to (`ORDER_QUEUE`).
pub const DEFAULT_ORDER_QUEUE: &str = "ORDER";

/// The default name of the queue reservation questions go to (`RESOLVE_QUEUE`).
pub const DEFAULT_RESOLVE_QUEUE: &str = "ORDER_RESOLVE";

/// The problem type (after [`TYPE_BASE`](crate::problem::TYPE_BASE)) orders answers a buy whose
/// reservation was resolved as refused before the buy arrived: no order, so products returns
/// the stock.
pub const RESERVATION_EXPIRED: &str = "reservation-expired";

/// The problem type orders answers a buy whose reservation belongs to another order already (a
/// request products never sends): the stock is that other order's, so products must not return
/// it.
pub const RESERVATION_IN_USE: &str = "reservation-in-use";

/// The durable topic exchange orders publishes its events to, each with its
/// [`Event::ROUTING_KEY`] as routing key.
pub const EVENTS_EXCHANGE: &str = "shop.events";

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
    /// The stock products set aside for this buy. Absent from requests of a products that
    /// predates stock; orders stores the order either way. Deploy orders before products: an
    /// older orders refuses the field (it refuses unknown fields), and products then releases the
    /// stock and answers the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
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

/// products asks orders how the buy behind a reservation ended, when it never heard: its call
/// timed out, or it crashed before the reply. orders answers for good: once it has answered
/// [`ResolveReservationReplyV1::Refused`], it refuses every later `order.create.v1` carrying
/// this reservation, so products can return the stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveReservationV1 {
    /// The reservation in question.
    pub reservation_id: ReservationId,
}

/// How the buy behind a reservation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReservationReplyV1 {
    /// An order was stored with this reservation.
    Ordered {
        /// That order.
        order_id: OrderId,
    },
    /// No order was stored with it, and none ever will be.
    Refused,
    /// The question could not be answered (try again later).
    Problem(Problem),
}

impl RpcRequest for ResolveReservationV1 {
    const MESSAGE_TYPE: &'static str = "order.resolve-reservation.v1";
    type Reply = ResolveReservationReplyV1;
    const REPLY_OUTCOMES: &'static [&'static str] = &["ordered", "refused", "problem"];

    fn reply_outcome(reply: &ResolveReservationReplyV1) -> &'static str {
        match reply {
            ResolveReservationReplyV1::Ordered { .. } => "ordered",
            ResolveReservationReplyV1::Refused => "refused",
            ResolveReservationReplyV1::Problem(_) => "problem",
        }
    }
}

/// An event orders publishes to [`EVENTS_EXCHANGE`]: persistent, confirmed, with a unique
/// `message_id` by which every consumer deduplicates (delivery is at least once), `type` and
/// routing key [`Event::ROUTING_KEY`], `content_type` `application/json`.
///
/// Events ignore fields they do not know (unlike requests), so a field can be added to a
/// version without stopping older consumers; removing or changing one makes a new version.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The routing key and `type` property, e.g. `order.created.v1`.
    const ROUTING_KEY: &'static str;
}

/// One line of an order, as events carry it: what stock it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLineV1 {
    /// The product bought.
    pub product_id: ProductId,
    /// How many.
    pub quantity: i32,
}

/// An order was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreatedV1 {
    /// The order.
    pub order_id: OrderId,
    /// Its buyer.
    pub user_id: UserId,
    /// The stock products reserved for it; absent for a buy made without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    /// Its lines.
    pub items: Vec<EventLineV1>,
    /// Its total, in cents.
    pub total_cents: i64,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl Event for OrderCreatedV1 {
    const ROUTING_KEY: &'static str = "order.created.v1";
}

/// An order was cancelled by its buyer; its stock may be returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelledV1 {
    /// The order.
    pub order_id: OrderId,
    /// Its buyer.
    pub user_id: UserId,
    /// The stock products reserved for it; absent for a buy made without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    /// Its lines.
    pub items: Vec<EventLineV1>,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelledV1 {
    const ROUTING_KEY: &'static str = "order.cancelled.v1";
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
            reservation_id: Some(ReservationId::new()),
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

    #[test]
    fn a_request_without_a_reservation_still_parses() {
        let body = serde_json::json!({
            "user_id": uuid::Uuid::nil(), "email": "a@b.c", "lines": []
        });
        let request: CreateOrderV1 = serde_json::from_value(body).unwrap();
        assert_eq!(request.reservation_id, None);
    }

    #[test]
    fn a_resolve_reply_says_ordered_or_refused() {
        let order_id = OrderId::new();
        let ordered =
            serde_json::to_value(ResolveReservationReplyV1::Ordered { order_id }).unwrap();
        assert_eq!(ordered["ordered"]["order_id"], order_id.to_string());
        let refused = serde_json::to_value(ResolveReservationReplyV1::Refused).unwrap();
        assert_eq!(refused, "refused");
    }

    #[test]
    fn an_event_with_a_field_added_later_still_parses() {
        let body = serde_json::json!({
            "order_id": uuid::Uuid::nil(), "user_id": uuid::Uuid::nil(),
            "items": [{"product_id": uuid::Uuid::nil(), "quantity": 2, "added": true}],
            "cancelled_at": "2026-12-03T12:00:00Z", "reason": "added in a later release"
        });
        let event: OrderCancelledV1 = serde_json::from_value(body).unwrap();
        assert_eq!(event.items[0].quantity, 2);
        assert_eq!(event.reservation_id, None);
    }

    #[test]
    fn each_event_has_its_own_routing_key() {
        assert_eq!(OrderCreatedV1::ROUTING_KEY, "order.created.v1");
        assert_eq!(OrderCancelledV1::ROUTING_KEY, "order.cancelled.v1");
    }
}
