//! The one error type of the service and the problem+json body each variant becomes.

use std::time::Duration;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{
    ids::ProductId,
    problem::{OUT_OF_STOCK, Problem},
};

use crate::domain::Invalid;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: a value in the request breaks a rule of the domain.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 404: no product has this id.
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    /// 404: a buy names products that do not exist; nothing was sent to orders.
    #[error("unknown products {0:?}")]
    UnknownProducts(Vec<ProductId>),
    /// 409: the row would duplicate one that exists.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 409: a buy with the same `Idempotency-Key` from the same user is still in flight here.
    #[error("a buy with this idempotency key is still in flight")]
    KeyInFlight,
    /// 409 `out-of-stock`: the stock of these products is short; no stock moved.
    #[error("out of stock: {0:?}")]
    OutOfStock(Vec<ProductId>),
    /// 422: the `Idempotency-Key` belongs to an earlier buy of this user with other lines.
    #[error("idempotency key reused with other lines")]
    KeyReused,
    /// Its own status: a problem decided elsewhere, such as 403 from the role check or the
    /// 422 orders answers when a key is reused with other lines.
    #[error(transparent)]
    Problem(#[from] Problem),
    /// 503: the broker is down or the order queue does not exist; nothing was ordered.
    #[error("broker unavailable")]
    BrokerUnavailable(#[source] anyhow::Error),
    /// 504: orders did not answer in time; the buy may or may not have been ordered.
    #[error("no reply from orders within {0:?}")]
    OutcomeUnknown(Duration),
    /// 500: anything else; the cause chain goes to the log, never to the client.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Error {
    /// The body the client receives.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Invalid(e) => Problem::bad_request(e.to_string()),
            Self::ProductNotFound(id) => Problem::not_found(format!("There is no product {id}.")),
            Self::UnknownProducts(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                Problem::not_found(format!("Unknown products: {}.", ids.join(", ")))
            }
            Self::Conflict(detail) => Problem::new(StatusCode::CONFLICT, *detail),
            Self::KeyInFlight => Problem::new(
                StatusCode::CONFLICT,
                "A buy with this Idempotency-Key is still being processed; retry once it has \
                 finished.",
            ),
            Self::OutOfStock(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                Problem::of_type(
                    StatusCode::CONFLICT,
                    OUT_OF_STOCK,
                    format!(
                        "Not enough stock of: {}. Nothing was ordered.",
                        ids.join(", ")
                    ),
                )
            }
            Self::KeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key reused with different items",
            ),
            Self::Problem(p) => p.clone(),
            Self::BrokerUnavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Orders cannot be placed right now; nothing was ordered. Try again later.",
            ),
            Self::OutcomeUnknown(timeout) => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "No answer from the order service within {} ms, so the outcome is unknown. \
                     Retry with the same Idempotency-Key to get the order without buying twice.",
                    timeout.as_millis()
                ),
            ),
            Self::Unexpected(e) => Problem::unexpected(e),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        // The edge is the one place a failure is logged, with its whole cause chain.
        match self {
            Self::Unexpected(e) => Problem::log_unexpected(e),
            Self::BrokerUnavailable(e) => tracing::warn!(error = ?e, "broker unavailable"),
            Self::OutcomeUnknown(_) => tracing::warn!(error = %self, "buy outcome unknown"),
            _ => {}
        }
        self.problem().to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpected_failure_tells_the_client_nothing_about_its_cause() {
        let err = Error::from(anyhow::anyhow!("relation \"products\" does not exist"));
        let body = err.problem();
        assert_eq!(body.status, 500);
        assert!(!body.detail.contains("relation"));
    }

    #[test]
    fn a_timeout_tells_the_client_to_retry_with_the_same_key() {
        let body = Error::OutcomeUnknown(Duration::from_millis(800)).problem();
        assert_eq!(body.status, 504);
        assert!(body.detail.contains("Idempotency-Key"));
    }

    #[test]
    fn a_short_stock_is_an_out_of_stock_problem_naming_the_products() {
        let id = ProductId::new();
        let body = Error::OutOfStock(vec![id]).problem();
        assert_eq!(body.status, 409);
        assert!(body.kind.ends_with("/out-of-stock"), "{}", body.kind);
        assert!(body.detail.contains(&id.to_string()));
    }

    #[test]
    fn unknown_products_are_named() {
        let id = ProductId::new();
        let body = Error::UnknownProducts(vec![id]).problem();
        assert_eq!(body.status, 404);
        assert!(body.detail.contains(&id.to_string()));
    }
}
