//! The one error type of the HTTP API, written out as RFC 9457 problems.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::problem::Problem;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: no such order for the caller. Someone else's order looks exactly like a missing
    /// one, so ids cannot be probed.
    #[error("no such order")]
    OrderNotFound,
    /// 409: the order's status (given) does not allow what was asked.
    #[error("an order that is {0} cannot be cancelled")]
    NotCancellable(String),
    /// The problem's own status (400 for bad paging, for instance).
    #[error(transparent)]
    Rejected(#[from] Problem),
    /// 500 with a body that says only that something failed; the cause goes to the log.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Error {
    /// The body the client receives.
    pub fn problem(&self) -> Problem {
        match self {
            Error::OrderNotFound => Problem::not_found("There is no such order."),
            Error::NotCancellable(_) => Problem::new(
                StatusCode::CONFLICT,
                "This order can no longer be cancelled.",
            ),
            Error::Rejected(problem) => problem.clone(),
            Error::Unexpected(e) => Problem::unexpected(e),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        // The edge is the one place a failure is logged, with its whole cause chain.
        if let Error::Unexpected(e) = self {
            Problem::log_unexpected(e);
        }
        self.problem().to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_unexpected_error_tells_the_client_nothing_about_its_cause() {
        let err: Error = Err::<(), _>(anyhow::anyhow!("relation \"orders\" does not exist"))
            .context("listing orders")
            .unwrap_err()
            .into();
        let problem = err.problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("relation"));
        assert!(!problem.detail.contains("listing"));
    }

    #[test]
    fn a_missing_order_is_a_404() {
        assert_eq!(Error::OrderNotFound.status_code(), StatusCode::NOT_FOUND);
    }
}
