//! An order request as orders accepts it: every rule checked once, at the edge, so the store
//! and the consumer only ever see valid values.
//!
//! A request arrives from the broker, not from a client, but it is checked as strictly as HTTP
//! input: whoever can publish to the order queue (a compromised or buggy products, or anyone
//! holding its broker credentials) must not be able to store an order products would never
//! have sent. The bounds are those products applies to a buy ([`common::domain`]).

use std::collections::HashSet;

pub use common::domain::{Cents, IdempotencyKey, Invalid, Quantity};
use common::{
    domain::{MAX_ORDER_LINES, MAX_PRICE_CENTS, MAX_PRODUCT_NAME_CHARS},
    ids::{ProductId, ReservationId, UserId},
    messages::{CreateOrderV1, OrderLineV1},
};
use sha2::{Digest, Sha256};

/// A product's name as it was at the time of the buy: not blank, at most
/// [`MAX_PRODUCT_NAME_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        if s.trim().is_empty() {
            Err(Invalid::new("a product name cannot be blank"))
        } else if s.chars().count() > MAX_PRODUCT_NAME_CHARS {
            Err(Invalid::new(format!(
                "a product name must be at most {MAX_PRODUCT_NAME_CHARS} characters"
            )))
        } else {
            Ok(Self(s))
        }
    }
}

/// A unit price on an order line: 0 (the catalog may give a product away) to
/// [`MAX_PRICE_CENTS`].
fn unit_price(cents: i64) -> Result<Cents, Invalid> {
    match Cents::try_from(cents) {
        Ok(price) if cents <= MAX_PRICE_CENTS => Ok(price),
        _ => Err(Invalid::new(format!(
            "a unit price must be between 0 and {MAX_PRICE_CENTS} cents, not {cents}"
        ))),
    }
}

/// The buyer's email, as their token carried it: shaped as auth accepts it at registration (at
/// most 254 characters, no spaces or control characters, one `@` between a local part of 1 to
/// 64 characters and a dotted domain). Not normalised: auth did that before signing the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        let s = s.trim();
        let shaped = s.chars().count() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.split_once('@').is_some_and(|(local, domain)| {
                (1..=64).contains(&local.chars().count())
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.split('.').any(str::is_empty)
            });
        if shaped {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::new("the buyer's email is not an email address"))
        }
    }
}

/// The buyer: any id but the nil UUID, which no account has and which a default or a forgotten
/// field would produce.
fn buyer(user_id: UserId) -> Result<UserId, Invalid> {
    if user_id.into_uuid().is_nil() {
        Err(Invalid::new("the buyer's id is missing"))
    } else {
        Ok(user_id)
    }
}

/// What makes two deliveries the same request for one user: the client's idempotency key when
/// it sent one, else the AMQP `message_id` (so a redelivered message is not stored twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupKey(String);

impl DedupKey {
    /// The key of a request carrying an `Idempotency-Key`.
    pub fn from_idempotency_key(key: &IdempotencyKey) -> Self {
        Self(format!("key:{}", key.as_str()))
    }

    /// The key of a request without one, from its message id; `None` for an empty id.
    pub fn from_message_id(message_id: &str) -> Option<Self> {
        (!message_id.is_empty()).then(|| Self(format!("msg:{message_id}")))
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest of what was bought (product, unit price, quantity of each line, in product order),
/// telling a replay of a request from a different request under the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `lines`; their order does not matter.
    pub fn of(lines: &[OrderLine]) -> Self {
        let mut keys: Vec<(ProductId, i64, i32)> = lines
            .iter()
            .map(|l| (l.product_id, l.unit_price.get(), l.quantity.get()))
            .collect();
        keys.sort_unstable();
        let mut hasher = Sha256::new();
        for (product_id, price, quantity) in keys {
            // Fixed-width fields, so no two different line lists encode to the same bytes.
            hasher.update(product_id.into_uuid().as_bytes());
            hasher.update(price.to_be_bytes());
            hasher.update(quantity.to_be_bytes());
        }
        Self(hex::encode(hasher.finalize()))
    }

    /// The lowercase hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One valid line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    product_id: ProductId,
    name: ProductName,
    unit_price: Cents,
    quantity: Quantity,
    line_total: Cents,
}

impl OrderLine {
    /// The product bought.
    pub fn product_id(&self) -> ProductId {
        self.product_id
    }

    /// Its name at the time of the buy.
    pub fn name(&self) -> &ProductName {
        &self.name
    }

    /// Its price at the time of the buy.
    pub fn unit_price(&self) -> Cents {
        self.unit_price
    }

    /// How many.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    /// `unit_price * quantity`.
    pub fn line_total(&self) -> Cents {
        self.line_total
    }
}

impl TryFrom<OrderLineV1> for OrderLine {
    type Error = Invalid;

    fn try_from(line: OrderLineV1) -> Result<Self, Invalid> {
        let unit_price = unit_price(line.unit_price_cents)?;
        let quantity = Quantity::try_from(line.quantity)?;
        let line_total = unit_price
            .times(quantity)
            .ok_or_else(|| Invalid::new("a line total is too large"))?;
        Ok(Self {
            product_id: line.product_id,
            name: ProductName::try_from(line.name)?,
            unit_price,
            quantity,
            line_total,
        })
    }
}

/// A valid order request, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    user_id: UserId,
    email: Email,
    lines: Vec<OrderLine>,
    total: Cents,
    dedup_key: DedupKey,
    idempotency_key: Option<IdempotencyKey>,
    message_id: Option<String>,
    fingerprint: Fingerprint,
    reservation_id: Option<ReservationId>,
}

impl NewOrder {
    /// Checks `request`, delivered with `message_id`: a buyer, 1 to [`MAX_ORDER_LINES`] lines,
    /// each valid and each naming a different product (products merges a buy's lines by
    /// product), a total that fits, and something to deduplicate it by.
    pub fn parse(request: CreateOrderV1, message_id: Option<String>) -> Result<Self, Invalid> {
        let user_id = buyer(request.user_id)?;
        if request.lines.is_empty() {
            return Err(Invalid::new("an order needs at least one line"));
        }
        if request.lines.len() > MAX_ORDER_LINES {
            return Err(Invalid::new(format!(
                "an order may have at most {MAX_ORDER_LINES} lines, not {}",
                request.lines.len()
            )));
        }
        let mut products = HashSet::with_capacity(request.lines.len());
        if let Some(line) = request
            .lines
            .iter()
            .find(|l| !products.insert(l.product_id))
        {
            return Err(Invalid::new(format!(
                "product {} is on more than one line",
                line.product_id
            )));
        }
        let lines = request
            .lines
            .into_iter()
            .map(OrderLine::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let total = lines
            .iter()
            .try_fold(Cents::ZERO, |sum, line| sum.plus(line.line_total()))
            .ok_or_else(|| Invalid::new("the order total is too large"))?;
        let idempotency_key = request
            .idempotency_key
            .map(IdempotencyKey::try_from)
            .transpose()?;
        let dedup_key = match &idempotency_key {
            Some(key) => DedupKey::from_idempotency_key(key),
            None => message_id
                .as_deref()
                .and_then(DedupKey::from_message_id)
                .ok_or_else(|| {
                    Invalid::new("the request carries neither an Idempotency-Key nor a message_id")
                })?,
        };
        let fingerprint = Fingerprint::of(&lines);
        Ok(Self {
            user_id,
            email: Email::try_from(request.email)?,
            lines,
            total,
            dedup_key,
            idempotency_key,
            message_id,
            fingerprint,
            reservation_id: request.reservation_id,
        })
    }

    /// The buyer.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The buyer's email.
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// The lines, in the order the request listed them.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// The sum of the line totals.
    pub fn total(&self) -> Cents {
        self.total
    }

    /// What makes a repeat of this request recognisable.
    pub fn dedup_key(&self) -> &DedupKey {
        &self.dedup_key
    }

    /// The client's key, when it sent one.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// The AMQP message id it arrived with.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// The digest of its lines.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The stock products set aside for it, when products reserves stock.
    pub fn reservation_id(&self) -> Option<ReservationId> {
        self.reservation_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product: ProductId, price: i64, quantity: i32) -> OrderLineV1 {
        OrderLineV1 {
            product_id: product,
            name: "Teapot".to_owned(),
            unit_price_cents: price,
            quantity,
        }
    }

    fn request(lines: Vec<OrderLineV1>, key: Option<&str>) -> CreateOrderV1 {
        CreateOrderV1 {
            user_id: UserId::new(),
            email: "buyer@example.com".to_owned(),
            lines,
            idempotency_key: key.map(str::to_owned),
            reservation_id: None,
        }
    }

    fn parse(lines: Vec<OrderLineV1>) -> Result<NewOrder, Invalid> {
        NewOrder::parse(request(lines, None), Some("m-1".to_owned()))
    }

    #[test]
    fn blank_names_and_emails_without_an_at_sign_are_refused() {
        assert!(ProductName::try_from("  ".to_owned()).is_err());
        assert_eq!(
            ProductName::try_from("Cup".to_owned()).unwrap().as_str(),
            "Cup"
        );
        assert!(Email::try_from("nobody".to_owned()).is_err());
        assert_eq!(
            Email::try_from(" a@b.c ".to_owned()).unwrap().as_str(),
            "a@b.c"
        );
    }

    #[test]
    fn an_order_may_have_a_hundred_lines_each_naming_another_product_but_not_more() {
        let lines = |n: usize| (0..n).map(|_| line(ProductId::new(), 1, 1)).collect();
        assert_eq!(parse(lines(100)).unwrap().lines().len(), 100);
        assert!(parse(lines(101)).is_err());
        let twice = ProductId::new();
        assert!(parse(vec![line(twice, 1, 1), line(twice, 1, 2)]).is_err());
    }

    #[test]
    fn names_and_prices_beyond_what_the_catalog_allows_are_refused() {
        assert!(ProductName::try_from("é".repeat(200)).is_ok());
        assert!(ProductName::try_from("é".repeat(201)).is_err());
        assert!(parse(vec![line(ProductId::new(), 0, 1)]).is_ok());
        assert!(parse(vec![line(ProductId::new(), 1_000_000_000, 1000)]).is_ok());
        assert!(parse(vec![line(ProductId::new(), 1_000_000_001, 1)]).is_err());
    }

    #[test]
    fn the_nil_buyer_and_emails_auth_would_not_have_accepted_are_refused() {
        let mut nil = request(vec![line(ProductId::new(), 1, 1)], None);
        nil.user_id = UserId::from(uuid::Uuid::nil());
        assert!(NewOrder::parse(nil, Some("m-1".to_owned())).is_err());
        for bad in [
            "",
            "@example.com",
            "buyer@",
            "buyer@localhost",
            "buyer@example..com",
            "a@b@example.com",
            "a buyer@example.com",
            "buyer@exam\u{7}ple.com",
        ] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::try_from(long_local).is_err());
        let too_long = format!("a@{}.com", "b".repeat(250));
        assert!(Email::try_from(too_long).is_err());
        assert!(Email::try_from("ünïcode.buyer+tag@example.co.uk".to_owned()).is_ok());
    }

    #[test]
    fn the_order_total_is_the_sum_of_price_times_quantity() {
        let order = parse(vec![
            line(ProductId::new(), 250, 4),
            line(ProductId::new(), 1999, 1),
        ])
        .unwrap();
        assert_eq!(order.total().get(), 1000 + 1999);
        assert_eq!(order.lines()[0].line_total().get(), 1000);
    }

    #[test]
    fn an_order_without_lines_or_with_a_bad_line_is_refused() {
        assert!(parse(vec![]).is_err());
        assert!(parse(vec![line(ProductId::new(), 100, 0)]).is_err());
        assert!(parse(vec![line(ProductId::new(), -100, 1)]).is_err());
        assert!(parse(vec![line(ProductId::new(), i64::MAX, 2)]).is_err());
        assert!(
            parse(vec![
                line(ProductId::new(), i64::MAX, 1),
                line(ProductId::new(), 1, 1)
            ])
            .is_err()
        );
    }

    #[test]
    fn the_idempotency_key_wins_over_the_message_id_as_dedup_key() {
        let keyed = NewOrder::parse(
            request(vec![line(ProductId::new(), 1, 1)], Some("abc")),
            Some("m-1".to_owned()),
        )
        .unwrap();
        assert_eq!(keyed.dedup_key().as_str(), "key:abc");
        let unkeyed = parse(vec![line(ProductId::new(), 1, 1)]).unwrap();
        assert_eq!(unkeyed.dedup_key().as_str(), "msg:m-1");
    }

    #[test]
    fn a_request_with_nothing_to_deduplicate_by_is_refused() {
        let req = request(vec![line(ProductId::new(), 1, 1)], None);
        assert!(NewOrder::parse(req.clone(), None).is_err());
        assert!(NewOrder::parse(req, Some(String::new())).is_err());
    }

    #[test]
    fn the_fingerprint_ignores_line_order_and_names_but_not_prices_or_quantities() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let one = parse(vec![line(a, 100, 1), line(b, 200, 2)]).unwrap();
        let mut renamed = line(b, 200, 2);
        renamed.name = "Other name".to_owned();
        let swapped = parse(vec![renamed, line(a, 100, 1)]).unwrap();
        assert_eq!(one.fingerprint(), swapped.fingerprint());
        assert_eq!(one.fingerprint().as_str().len(), 64);

        let repriced = parse(vec![line(a, 101, 1), line(b, 200, 2)]).unwrap();
        let more = parse(vec![line(a, 100, 2), line(b, 200, 2)]).unwrap();
        let fewer_lines = parse(vec![line(a, 100, 1)]).unwrap();
        assert_ne!(one.fingerprint(), repriced.fingerprint());
        assert_ne!(one.fingerprint(), more.fingerprint());
        assert_ne!(one.fingerprint(), fewer_lines.fingerprint());
    }
}
