//! The one error type of the service and the problem+json bodies it becomes.

use std::time::Duration;

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{HeaderValue, RETRY_AFTER},
    },
};
use common::problem::Problem;

use crate::{domain::Invalid, limits::Limited, password::HashError, store::InsertUserError};

/// What a 503 from a full or slow hashing queue asks the client to wait: the queue holds a few
/// rounds of hashes of tens of milliseconds each, so it has room again well within a second.
const RETRY_WHEN_BUSY: Duration = Duration::from_secs(1);

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request names an invalid email, password or name.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 409: another account already has this email (compared without regard to case).
    #[error("the email is already registered")]
    EmailTaken,
    /// 401: unknown email or wrong password; deliberately the same answer for both.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 429 with `Retry-After`: too many attempts from this address or for this email.
    #[error("rate limited by {}", .0.limit.label())]
    RateLimited(Limited),
    /// 503 with `Retry-After`: the password-hashing queue is full, or this request waited in it
    /// past its deadline.
    #[error("the password-hashing queue is busy")]
    Busy,
    /// 500: anything else. The body says only that the request failed; the cause is logged.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<InsertUserError> for Error {
    fn from(e: InsertUserError) -> Self {
        match e {
            InsertUserError::EmailTaken => Error::EmailTaken,
            InsertUserError::Db(e) => {
                Error::Unexpected(anyhow::Error::new(e).context("inserting a new user"))
            }
        }
    }
}

impl From<Limited> for Error {
    fn from(limited: Limited) -> Self {
        Error::RateLimited(limited)
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Self {
        match e {
            HashError::QueueFull | HashError::DeadlinePassed => Error::Busy,
            HashError::Failed(e) => Error::Unexpected(e.context("hashing a password")),
        }
    }
}

impl Error {
    /// The body the client receives.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Invalid(e) => Problem::bad_request(e.to_string()),
            Error::EmailTaken => Problem::new(
                StatusCode::CONFLICT,
                "An account with this email already exists.",
            ),
            Error::InvalidCredentials => {
                Problem::unauthorized("The email or password is incorrect.")
            }
            Error::RateLimited(_) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts; try again after the time in Retry-After.",
            ),
            Error::Busy => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is busy; try again after the time in Retry-After.",
            ),
            Error::Unexpected(e) => Problem::unexpected(e),
        }
    }

    /// How long the client should wait before trying again, for the answers that say so.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited(limited) => Some(limited.retry_after),
            Error::Busy => Some(RETRY_WHEN_BUSY),
            _ => None,
        }
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1, so a client that waits as told
/// is let through.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
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
        let mut response = self.problem().to_response();
        if let Some(wait) = self.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(wait)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(59)), 59);
    }
}
