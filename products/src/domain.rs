//! The rules products and buys obey. Every type here has private fields and is built only
//! through a checked conversion, so past the handler an invalid value cannot exist.

use std::collections::HashMap;

pub use common::domain::{Cents, IdempotencyKey, Invalid, Quantity};
use common::ids::ProductId;

/// A product's name: 1 to 200 characters once surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// Longest name, in characters: what orders accepts on an order line.
    pub const MAX_CHARS: usize = common::domain::MAX_PRODUCT_NAME_CHARS;

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        let trimmed = value.trim();
        match trimmed.chars().count() {
            0 => Err(Invalid::new("name must not be empty")),
            n if n > Self::MAX_CHARS => Err(Invalid::new(format!(
                "name must be at most {} characters, not {n}",
                Self::MAX_CHARS
            ))),
            _ if trimmed.chars().any(char::is_control) => {
                Err(Invalid::new("name must not contain control characters"))
            }
            _ => Ok(Self(trimmed.to_owned())),
        }
    }
}

/// A product's description: at most 5000 characters once surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Longest description, in characters.
    pub const MAX_CHARS: usize = 5000;

    /// The description as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        let trimmed = value.trim();
        let n = trimmed.chars().count();
        if n > Self::MAX_CHARS {
            return Err(Invalid::new(format!(
                "description must be at most {} characters, not {n}",
                Self::MAX_CHARS
            )));
        }
        // Line breaks and tabs belong in a description; other control characters do not, and
        // PostgreSQL's text cannot hold NUL at all (it would fail the insert).
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(Invalid::new(
                "description must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// A catalog price: [`Cents`] from 0 to [`Price::MAX`] (ten million in whole units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(Cents);

impl Price {
    /// Largest price a product may have, in cents: what orders accepts on an order line.
    pub const MAX: i64 = common::domain::MAX_PRICE_CENTS;

    /// The amount.
    pub fn cents(self) -> Cents {
        self.0
    }
}

impl TryFrom<i64> for Price {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        match Cents::try_from(value) {
            Ok(cents) if value <= Self::MAX => Ok(Self(cents)),
            _ => Err(Invalid::new(format!(
                "price_cents must be between 0 and {}, not {value}",
                Self::MAX
            ))),
        }
    }
}

/// A link to a product's picture: an absolute `http` or `https` URL of at most 2000 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl(String);

impl ImageUrl {
    /// Longest URL, in bytes.
    pub const MAX_LEN: usize = 2000;

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageUrl {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        let trimmed = value.trim();
        if trimmed.len() > Self::MAX_LEN {
            return Err(Invalid::new(format!(
                "image_url must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        let parsed = url::Url::parse(trimmed)
            .map_err(|e| Invalid::new(format!("image_url is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(Invalid::new("image_url must be an http or https URL"));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// Units of a product left to sell: 0 to [`Stock::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stock(i32);

impl Stock {
    /// The most units a product may hold: a billion, well inside the column's `INTEGER`.
    pub const MAX: i32 = 1_000_000_000;

    /// The number of units.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Stock {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        match i32::try_from(value) {
            Ok(stock) if (0..=Self::MAX).contains(&stock) => Ok(Self(stock)),
            _ => Err(Invalid::new(format!(
                "stock must be between 0 and {}, not {value}",
                Self::MAX
            ))),
        }
    }
}

/// Units added to a product's stock by a restock: 1 to [`Stock::MAX`]; the sum must stay within
/// [`Stock::MAX`] too, which only the database can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restock(i32);

impl Restock {
    /// The number of units added.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Restock {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        match i32::try_from(value) {
            Ok(added) if (1..=Stock::MAX).contains(&added) => Ok(Self(added)),
            _ => Err(Invalid::new(format!(
                "add_stock must be between 1 and {}, not {value}",
                Stock::MAX
            ))),
        }
    }
}

/// A product about to be added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    /// Its name.
    pub name: ProductName,
    /// Its description.
    pub description: Description,
    /// Its price.
    pub price: Price,
    /// Its picture, if any.
    pub image_url: Option<ImageUrl>,
    /// Its stock; `None` leaves it untracked (never short).
    pub stock: Option<Stock>,
}

/// How a change sets a product's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// To this many units, tracked from now on.
    Set(Stock),
    /// Up by this many units; the product's stock must be tracked already.
    Add(Restock),
}

/// What an admin changes on a product: at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChanges {
    /// A new name.
    pub name: Option<ProductName>,
    /// A new description.
    pub description: Option<Description>,
    /// A new price; buys already reserved keep the price they were priced at.
    pub price: Option<Price>,
    /// A new picture.
    pub image_url: Option<ImageUrl>,
    /// The stock, set or added to.
    pub stock: Option<StockChange>,
}

/// One product of a buy and how many of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuyLine {
    /// The product.
    pub product_id: ProductId,
    /// How many.
    pub quantity: Quantity,
}

/// What a buyer asks for: 1 to 100 distinct products, each named once, in the order the
/// client first named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyRequest {
    lines: Vec<BuyLine>,
}

impl BuyRequest {
    /// Most distinct products one buy may hold: what orders accepts in one request.
    pub const MAX_LINES: usize = common::domain::MAX_ORDER_LINES;

    /// The lines, one per product.
    pub fn lines(&self) -> &[BuyLine] {
        &self.lines
    }

    /// The products asked for, each once.
    pub fn product_ids(&self) -> Vec<ProductId> {
        self.lines.iter().map(|l| l.product_id).collect()
    }
}

impl TryFrom<Vec<(ProductId, i64)>> for BuyRequest {
    type Error = Invalid;

    /// Merges lines naming the same product by adding their quantities; each quantity and
    /// each sum must be a valid [`Quantity`].
    fn try_from(items: Vec<(ProductId, i64)>) -> Result<Self, Invalid> {
        if items.is_empty() {
            return Err(Invalid::new("a buy needs at least one product"));
        }
        let mut merged: Vec<(ProductId, i64)> = Vec::new();
        let mut position: HashMap<ProductId, usize> = HashMap::new();
        for (product_id, quantity) in items {
            Quantity::try_from(quantity)?;
            match position.get(&product_id) {
                Some(&i) => merged[i].1 += quantity,
                None => {
                    position.insert(product_id, merged.len());
                    merged.push((product_id, quantity));
                }
            }
        }
        if merged.len() > Self::MAX_LINES {
            return Err(Invalid::new(format!(
                "a buy may name at most {} distinct products, not {}",
                Self::MAX_LINES,
                merged.len()
            )));
        }
        let lines = merged
            .into_iter()
            .map(|(product_id, total)| {
                let quantity = Quantity::try_from(total).map_err(|_| {
                    Invalid::new(format!(
                        "the quantities of product {product_id} add up to {total}, more than {}",
                        Quantity::MAX
                    ))
                })?;
                Ok(BuyLine {
                    product_id,
                    quantity,
                })
            })
            .collect::<Result<_, Invalid>>()?;
        Ok(Self { lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_name_is_trimmed_and_must_not_be_empty() {
        assert_eq!(
            ProductName::try_from("  Teapot \n".to_owned())
                .unwrap()
                .as_str(),
            "Teapot"
        );
        assert!(ProductName::try_from(String::new()).is_err());
        assert!(ProductName::try_from("   ".to_owned()).is_err());
    }

    #[test]
    fn a_product_name_may_have_two_hundred_characters_but_not_more() {
        assert!(ProductName::try_from("é".repeat(200)).is_ok());
        assert!(ProductName::try_from("a".repeat(201)).is_err());
    }

    #[test]
    fn a_description_may_be_empty_but_not_longer_than_five_thousand_characters() {
        assert_eq!(Description::try_from(String::new()).unwrap().as_str(), "");
        assert!(Description::try_from("ü".repeat(5000)).is_ok());
        assert!(Description::try_from("x".repeat(5001)).is_err());
    }

    #[test]
    fn text_with_a_nul_or_other_control_character_is_refused_but_line_breaks_are_not() {
        assert!(ProductName::try_from("Mug\u{0}".to_owned()).is_err());
        assert!(ProductName::try_from("Mug\nCup".to_owned()).is_err());
        assert!(Description::try_from("a\u{0}b".to_owned()).is_err());
        assert!(Description::try_from("a\u{1b}[31mb".to_owned()).is_err());
        let text = "Two lines,\r\nand\ta tab.";
        assert_eq!(
            Description::try_from(text.to_owned()).unwrap().as_str(),
            text
        );
    }

    #[test]
    fn a_price_is_between_zero_and_one_billion_cents() {
        assert_eq!(Price::try_from(0).unwrap().cents().get(), 0);
        assert_eq!(
            Price::try_from(1_000_000_000).unwrap().cents().get(),
            1_000_000_000
        );
        assert!(Price::try_from(-1).is_err());
        assert!(Price::try_from(1_000_000_001).is_err());
    }

    #[test]
    fn an_image_url_is_an_http_or_https_url() {
        assert!(ImageUrl::try_from("https://cdn.example.com/a.png".to_owned()).is_ok());
        assert!(ImageUrl::try_from("http://example.com/a.png".to_owned()).is_ok());
        assert!(ImageUrl::try_from("ftp://example.com/a.png".to_owned()).is_err());
        assert!(ImageUrl::try_from("javascript:alert(1)".to_owned()).is_err());
        assert!(ImageUrl::try_from("/relative/a.png".to_owned()).is_err());
        assert!(ImageUrl::try_from("not a url".to_owned()).is_err());
    }

    #[test]
    fn an_image_url_longer_than_two_thousand_characters_is_refused() {
        let base = "https://example.com/";
        let fits = format!("{base}{}", "a".repeat(2000 - base.len()));
        assert!(ImageUrl::try_from(fits.clone()).is_ok());
        assert!(ImageUrl::try_from(format!("{fits}a")).is_err());
    }

    fn ids(n: usize) -> Vec<ProductId> {
        (0..n).map(|_| ProductId::new()).collect()
    }

    #[test]
    fn an_empty_buy_is_refused() {
        assert!(BuyRequest::try_from(vec![]).is_err());
    }

    #[test]
    fn lines_naming_the_same_product_are_merged_in_first_seen_order() {
        let [a, b] = ids(2).try_into().unwrap();
        let buy = BuyRequest::try_from(vec![(a, 2), (b, 1), (a, 3)]).unwrap();
        let lines: Vec<_> = buy
            .lines()
            .iter()
            .map(|l| (l.product_id, l.quantity.get()))
            .collect();
        assert_eq!(lines, vec![(a, 5), (b, 1)]);
        assert_eq!(buy.product_ids(), vec![a, b]);
    }

    #[test]
    fn merged_quantities_may_not_exceed_one_thousand() {
        let a = ProductId::new();
        assert!(BuyRequest::try_from(vec![(a, 600), (a, 400)]).is_ok());
        let err = BuyRequest::try_from(vec![(a, 600), (a, 401)]).unwrap_err();
        assert!(err.to_string().contains("1001"), "{err}");
    }

    #[test]
    fn every_single_quantity_is_checked_before_merging() {
        let a = ProductId::new();
        assert!(BuyRequest::try_from(vec![(a, 5), (a, 0)]).is_err());
        assert!(BuyRequest::try_from(vec![(a, 5), (a, -2)]).is_err());
    }

    #[test]
    fn a_buy_may_name_one_hundred_distinct_products_but_not_more() {
        let hundred: Vec<_> = ids(100).into_iter().map(|id| (id, 1)).collect();
        assert_eq!(
            BuyRequest::try_from(hundred.clone()).unwrap().lines().len(),
            100
        );

        let mut with_duplicate = hundred.clone();
        with_duplicate.push((hundred[0].0, 1));
        assert_eq!(
            BuyRequest::try_from(with_duplicate).unwrap().lines().len(),
            100
        );

        let mut too_many = hundred;
        too_many.push((ProductId::new(), 1));
        assert!(BuyRequest::try_from(too_many).is_err());
    }
}
