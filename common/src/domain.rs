//! Values products and orders must agree on: how many of a product a line may buy, what an
//! amount of money may be, and which `Idempotency-Key` is acceptable. A key or quantity
//! products lets through must never be refused by orders, so the rules live here, once.
//!
//! Every type has a private field and is built only through a checked conversion, which fails
//! with an [`Invalid`] whose text is written for the client.

use crate::problem::Problem;

/// Most lines one buy, and so one order request, may carry: products merges a buy's lines by
/// product and refuses more distinct products than this; orders refuses a request with more.
pub const MAX_ORDER_LINES: usize = 100;

/// Longest product name, in characters, in the catalog and on an order line.
pub const MAX_PRODUCT_NAME_CHARS: usize = 200;

/// Largest price of one product, in cents (ten million in whole units), in the catalog and on
/// an order line. With [`MAX_ORDER_LINES`] and [`Quantity::MAX`], no order total comes near
/// what an `i64` holds.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

/// Why a value was refused; the message is written for the client. Becomes a 400 problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

impl Invalid {
    /// A refusal explained by `detail`.
    pub fn new(detail: impl Into<String>) -> Self {
        Self(detail.into())
    }
}

impl From<Invalid> for Problem {
    fn from(e: Invalid) -> Self {
        Problem::bad_request(e.0)
    }
}

/// How many of one product a line buys: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    /// The most of one product a single line may carry.
    pub const MAX: i32 = 1000;

    /// The number of items.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Invalid;

    /// Takes an `i64`, as a JSON number arrives, so a huge quantity is refused with its own
    /// value in the message rather than wrapped.
    fn try_from(value: i64) -> Result<Self, Invalid> {
        match i32::try_from(value) {
            Ok(quantity) if (1..=Self::MAX).contains(&quantity) => Ok(Self(quantity)),
            _ => Err(Invalid::new(format!(
                "quantity must be between 1 and {}, not {value}",
                Self::MAX
            ))),
        }
    }
}

impl TryFrom<i32> for Quantity {
    type Error = Invalid;

    fn try_from(value: i32) -> Result<Self, Invalid> {
        Self::try_from(i64::from(value))
    }
}

/// A non-negative amount of money in cents. Arithmetic is checked: a result that does not fit
/// is `None`, never a wrapped number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(i64);

impl Cents {
    /// Nothing.
    pub const ZERO: Cents = Cents(0);

    /// The amount in cents.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `self * quantity`, or `None` when it does not fit.
    pub fn times(self, quantity: Quantity) -> Option<Cents> {
        self.0.checked_mul(i64::from(quantity.get())).map(Cents)
    }

    /// `self + other`, or `None` when it does not fit.
    pub fn plus(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl TryFrom<i64> for Cents {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        if value >= 0 {
            Ok(Self(value))
        } else {
            Err(Invalid::new(format!(
                "a price cannot be negative, not {value}"
            )))
        }
    }
}

/// A client's `Idempotency-Key`: 1 to [`IdempotencyKey::MAX_LEN`] visible ASCII characters
/// (no spaces, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key, in characters.
    pub const MAX_LEN: usize = 200;

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<&[u8]> for IdempotencyKey {
    type Error = Invalid;

    /// Takes raw bytes, as a header value arrives, so a non-ASCII key is refused rather than
    /// guessed at.
    fn try_from(value: &[u8]) -> Result<Self, Invalid> {
        let visible = value.iter().all(u8::is_ascii_graphic);
        match std::str::from_utf8(value) {
            Ok(text) if visible && (1..=Self::MAX_LEN).contains(&text.len()) => {
                Ok(Self(text.to_owned()))
            }
            _ => Err(Invalid::new(format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                Self::MAX_LEN
            ))),
        }
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = Invalid;

    fn try_from(value: &str) -> Result<Self, Invalid> {
        Self::try_from(value.as_bytes())
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        Self::try_from(value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantity_is_between_one_and_one_thousand() {
        assert_eq!(Quantity::try_from(1).unwrap().get(), 1);
        assert_eq!(Quantity::try_from(1000).unwrap().get(), 1000);
        assert!(Quantity::try_from(0).is_err());
        assert!(Quantity::try_from(-3).is_err());
        assert!(Quantity::try_from(1001).is_err());
        assert!(Quantity::try_from(i64::MAX).is_err());
    }

    #[test]
    fn a_quantity_from_a_message_obeys_the_same_rule_as_one_from_a_request() {
        for n in [-3_i32, 0, 1, 1000, 1001] {
            assert_eq!(
                Quantity::try_from(n),
                Quantity::try_from(i64::from(n)),
                "{n}"
            );
        }
        assert!(Quantity::try_from(i32::MAX).is_err());
    }

    #[test]
    fn the_largest_order_totals_far_less_than_an_i64_holds() {
        let line = Cents::try_from(MAX_PRICE_CENTS)
            .unwrap()
            .times(Quantity::try_from(Quantity::MAX).unwrap())
            .unwrap();
        let total = (0..MAX_ORDER_LINES).try_fold(Cents::ZERO, |sum, _| sum.plus(line));
        assert_eq!(total.map(Cents::get), Some(100_000_000_000_000));
    }

    #[test]
    fn a_price_may_be_zero_but_not_negative() {
        assert_eq!(Cents::try_from(0).unwrap(), Cents::ZERO);
        assert!(Cents::try_from(-1).is_err());
    }

    #[test]
    fn money_arithmetic_that_overflows_is_refused_rather_than_wrapped() {
        let big = Cents::try_from(i64::MAX / 2).unwrap();
        assert_eq!(big.times(Quantity::try_from(3).unwrap()), None);
        assert_eq!(big.plus(big).map(Cents::get), Some(i64::MAX - 1));
        assert_eq!(big.plus(Cents::try_from(i64::MAX).unwrap()), None);
    }

    #[test]
    fn an_idempotency_key_is_one_to_two_hundred_visible_ascii_characters() {
        assert_eq!(
            IdempotencyKey::try_from("order-42:retry").unwrap().as_str(),
            "order-42:retry"
        );
        assert!(IdempotencyKey::try_from("k".repeat(200).as_str()).is_ok());
        assert!(IdempotencyKey::try_from("k".repeat(201).as_str()).is_err());
        assert!(IdempotencyKey::try_from("").is_err());
        assert!(IdempotencyKey::try_from("has space").is_err());
        assert!(IdempotencyKey::try_from("tab\t").is_err());
        assert!(IdempotencyKey::try_from("ключ").is_err());
    }

    #[test]
    fn an_idempotency_key_is_short_and_printable() {
        assert!(IdempotencyKey::try_from(String::new()).is_err());
        assert!(IdempotencyKey::try_from("a\nb".to_owned()).is_err());
        assert!(IdempotencyKey::try_from("k".repeat(IdempotencyKey::MAX_LEN + 1)).is_err());
        assert!(IdempotencyKey::try_from("k".repeat(IdempotencyKey::MAX_LEN)).is_ok());
    }

    #[test]
    fn a_key_arriving_as_bytes_text_or_an_owned_string_is_judged_alike() {
        for key in ["k", "order-42", "has space", "", "ключ"] {
            let from_bytes = IdempotencyKey::try_from(key.as_bytes());
            assert_eq!(IdempotencyKey::try_from(key), from_bytes, "{key:?}");
            assert_eq!(
                IdempotencyKey::try_from(key.to_owned()),
                from_bytes,
                "{key:?}"
            );
        }
    }

    #[test]
    fn a_refusal_becomes_a_400_problem_carrying_its_message() {
        let problem = Problem::from(Quantity::try_from(0).unwrap_err());
        assert_eq!(problem.status, 400);
        assert_eq!(problem.detail, "quantity must be between 1 and 1000, not 0");
    }
}
