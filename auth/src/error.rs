//! The one error type of the service and the problem+json bodies it becomes.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::problem::Problem;

use crate::{domain::Invalid, store::InsertUserError};

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
            Error::Unexpected(_) => Problem::internal(),
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
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        self.problem().to_response()
    }
}
