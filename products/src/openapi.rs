//! The OpenAPI description of products' routes (`GET /openapi.json` serves it with the
//! skeleton's).

use std::borrow::Cow;

use common::ids::ProductId;
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema},
    },
};

use crate::routes::{BuyBody, BuyItemBody, buy, products};

/// products' routes and the bodies they take and answer.
#[derive(OpenApi)]
#[openapi(
    paths(products::list, products::get, products::create, products::update, buy::buy),
    tags((name = "products", description = "The catalog, and buys turned into orders."))
)]
pub struct Api;

/// Written by hand: serde reads the body through `BuyBodyFields` and its `TryFrom`, which a
/// derive cannot see, and the rule that exactly one of the two forms is sent is a `oneOf`.
impl PartialSchema for BuyBody {
    fn schema() -> RefOr<Schema> {
        let form = |field: &str, items: Ref, description: &str| {
            ObjectBuilder::new()
                .property(
                    field,
                    ArrayBuilder::new()
                        .items(items)
                        .min_items(Some(1))
                        .description(Some(description)),
                )
                .required(field)
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(form(
                "items",
                Ref::from_schema_name(BuyItemBody::name()),
                "Products with quantities.",
            ))
            .item(form(
                "ids",
                Ref::from_schema_name(ProductId::name()),
                "Products, one of each (the older form).",
            ))
            .description(Some(
                "A buy: `items`, or the older `ids`, naming 1 to 100 distinct products.",
            ))
            .into()
    }
}

impl ToSchema for BuyBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BuyBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((BuyItemBody::name().into_owned(), BuyItemBody::schema()));
        BuyItemBody::schemas(schemas);
        schemas.push((ProductId::name().into_owned(), ProductId::schema()));
    }
}
