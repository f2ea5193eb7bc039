//! RFC 9457 `application/problem+json` error bodies, shared by every service.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header::ContentType},
    web,
};
use serde::{Deserialize, Serialize};

/// The media type of every error body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem. Its `detail` is written for the client and never carries internal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{status} {title}: {detail}")]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` where the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for the client.
    pub detail: String,
}

impl Problem {
    /// A problem of the given status whose title is the status's reason phrase.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// The same problem with a `type` URI naming its kind.
    pub fn with_type(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403 Forbidden.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 500 with a body that says only that something failed; the cause belongs in the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server failed to handle this request.",
        )
    }

    /// The status as an actix `StatusCode` (500 if the number is not a valid status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The HTTP response carrying this problem.
    pub fn to_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header(ContentType(CONTENT_TYPE.parse().expect("valid media type")))
            .json(self)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// `JsonConfig` whose failures (bad JSON, unknown field, wrong content type) are problem bodies.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(256 * 1024).error_handler(
        |err: JsonPayloadError, _req: &HttpRequest| {
            let detail = match &err {
                JsonPayloadError::ContentType => {
                    "The body must be JSON with Content-Type: application/json.".to_owned()
                }
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    "The body is too large.".to_owned()
                }
                JsonPayloadError::Deserialize(e) => format!("The body is not valid: {e}"),
                _ => "The body could not be read as JSON.".to_owned(),
            };
            Problem::bad_request(detail).into()
        },
    )
}

/// `PathConfig` whose failures (a malformed id in the path) are problem bodies.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req: &HttpRequest| {
        // A path that does not parse names nothing that exists, but say why.
        Problem::not_found(format!("No such resource: {err}")).into()
    })
}

/// `QueryConfig` whose failures (bad paging values) are problem bodies.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        Problem::bad_request(format!("The query string is not valid: {err}")).into()
    })
}

/// Answers routes that do not exist with a 404 problem body.
pub async fn not_found() -> HttpResponse {
    Problem::not_found("No such route.").to_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_serializes_with_the_rfc_9457_member_names() {
        let body =
            serde_json::to_value(Problem::bad_request("quantity must be at least 1")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": "quantity must be at least 1"
            })
        );
    }

    #[test]
    fn an_internal_problem_says_nothing_about_the_cause() {
        let p = Problem::internal();
        assert_eq!(p.status, 500);
        assert!(!p.detail.to_lowercase().contains("sql"));
    }
}
