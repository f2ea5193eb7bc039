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

/// Where the `type` URIs of the shop's own problems start: `type` is this plus a name, such as
/// `out-of-stock`, that clients may branch on ([`Problem::of_type`]).
pub const TYPE_BASE: &str = "https://shop.example.com/problems/";

/// The problem of a buy whose stock is short (409): nothing was ordered and no stock moved, so
/// it is a definite answer, unlike the 409 of a buy still in flight.
pub const OUT_OF_STOCK: &str = "out-of-stock";

/// An RFC 9457 problem. Its `detail` is written for the client and never carries internal text.
/// Some problems carry extension members besides these (`/readyz` adds `checks`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{status} {title}: {detail}")]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` where the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
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

    /// A problem of the shop's own kind `name` ([`TYPE_BASE`] + `name`).
    pub fn of_type(status: StatusCode, name: &str, detail: impl Into<String>) -> Self {
        Self::new(status, detail).with_type(format!("{TYPE_BASE}{name}"))
    }

    /// Whether this is a problem of the shop's own kind `name` ([`Problem::of_type`]).
    pub fn is_of_type(&self, name: &str) -> bool {
        self.kind.strip_prefix(TYPE_BASE) == Some(name)
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

    /// The answer to an error no handler expected: 503 when the service's database is
    /// unreachable or overloaded right now (the request is worth sending again), else
    /// [`Problem::internal`]. Either way nothing of the cause reaches the client.
    pub fn unexpected(err: &anyhow::Error) -> Self {
        if crate::db::is_unavailable(err) {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service's database cannot be reached right now; try again later.",
            )
        } else {
            Self::internal()
        }
    }

    /// Logs an error no handler expected, with its whole cause chain: a warning when the
    /// database is only unavailable (an outage the operator sees elsewhere), an error otherwise.
    pub fn log_unexpected(err: &anyhow::Error) {
        if crate::db::is_unavailable(err) {
            tracing::warn!(
                error = format!("{err:#}"),
                "request failed: database unavailable"
            );
        } else {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
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

/// The largest JSON body a service reads.
pub const JSON_BODY_LIMIT: usize = 256 * 1024;

/// The most characters of a field path a `detail` carries; a longer one is cut and ends in `…`.
pub const MAX_FIELD_PATH_CHARS: usize = 64;

/// The `detail` of a route that does not exist (the 404 fallback).
pub const NO_SUCH_ROUTE: &str = "No such route.";

/// `JsonConfig` whose failures (bad JSON, unknown field, wrong content type, a body too large or
/// too slow) are problem bodies with fixed texts: the parser's own message can quote whatever
/// the client sent, such as a field name as long as the body, so it is never echoed.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(JSON_BODY_LIMIT)
        .error_handler(|err: JsonPayloadError, _req: &HttpRequest| json_problem(&err).into())
}

fn json_problem(err: &JsonPayloadError) -> Problem {
    match err {
        JsonPayloadError::ContentType => {
            Problem::bad_request("The body must be JSON with Content-Type: application/json.")
        }
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            Problem::bad_request(format!(
                "The body is larger than {} KiB.",
                JSON_BODY_LIMIT / 1024
            ))
        }
        JsonPayloadError::Deserialize(e) => Problem::bad_request(deserialize_detail(e)),
        JsonPayloadError::Payload(e) if crate::http::is_body_timeout(e) => body_timeout(),
        _ => Problem::bad_request("The body could not be read."),
    }
}

/// 408: the body did not arrive within the server's body read timeout.
pub fn body_timeout() -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "The body did not arrive in time.",
    )
}

/// A fixed text for a body that is not what the route takes. Only a field name the service
/// itself declares (a missing one) is named; values and names the client chose are not.
fn deserialize_detail(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "The body is not valid JSON.".to_owned(),
        Category::Data => {
            let message = e.to_string();
            if message.starts_with("unknown field") {
                "The body has an unknown field.".to_owned()
            } else if let Some(field) = missing_field(&message) {
                format!("The body lacks the field `{}`.", truncated(field))
            } else {
                "A value in the body has the wrong type or is out of range.".to_owned()
            }
        }
    }
}

/// The field serde's "missing field `x`" names: one the route declares, never the client's.
fn missing_field(message: &str) -> Option<&str> {
    let field = message.strip_prefix("missing field `")?.split('`').next()?;
    field
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(field)
}

/// `path` cut to [`MAX_FIELD_PATH_CHARS`] characters.
pub fn truncated(path: &str) -> String {
    match path.char_indices().nth(MAX_FIELD_PATH_CHARS) {
        None => path.to_owned(),
        Some((end, _)) => format!("{}…", &path[..end]),
    }
}

/// `PathConfig` whose failures (a malformed id in the path) are problem bodies.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req: &HttpRequest| {
        // A path that does not parse names nothing that exists; the parser's text would only
        // repeat what the client sent.
        Problem::not_found("No such resource: the id in the path is not valid.").into()
    })
}

/// `QueryConfig` whose failures (bad paging values, an unknown parameter) are problem bodies
/// with fixed texts.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        let detail = match &err {
            QueryPayloadError::Deserialize(e) if e.to_string().starts_with("unknown field") => {
                "The query string has an unknown parameter."
            }
            _ => "A query parameter has the wrong type or is out of range.",
        };
        Problem::bad_request(detail).into()
    })
}

/// Answers routes that do not exist with a 404 problem body.
pub async fn not_found() -> HttpResponse {
    Problem::not_found(NO_SUCH_ROUTE).to_response()
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

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        quantity: i64,
    }

    fn detail_for(json: &str) -> String {
        let err = serde_json::from_str::<Body>(json).unwrap_err();
        json_problem(&JsonPayloadError::Deserialize(err)).detail
    }

    #[test]
    fn a_field_name_the_client_chose_is_never_echoed() {
        let field = "<b>".repeat(10_000);
        let detail = detail_for(&format!(r#"{{"quantity": 1, "{field}": 2}}"#));
        assert_eq!(detail, "The body has an unknown field.");
    }

    #[test]
    fn a_value_the_client_sent_is_never_echoed() {
        let detail = detail_for(r#"{"quantity": "<script>alert(1)</script>"}"#);
        assert_eq!(
            detail,
            "A value in the body has the wrong type or is out of range."
        );
        assert_eq!(
            detail_for(r#"{"quantity": 1"#),
            "The body is not valid JSON."
        );
        assert_eq!(detail_for("<html>"), "The body is not valid JSON.");
    }

    #[test]
    fn a_missing_field_the_route_declares_is_named() {
        assert_eq!(detail_for("{}"), "The body lacks the field `quantity`.");
    }

    #[test]
    fn a_field_path_is_cut_at_its_cap() {
        assert_eq!(truncated("lines[0].quantity"), "lines[0].quantity");
        let long = "é".repeat(MAX_FIELD_PATH_CHARS + 1);
        let cut = truncated(&long);
        assert_eq!(cut.chars().count(), MAX_FIELD_PATH_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn an_unreachable_database_is_503_and_anything_else_unexpected_500() {
        let down = anyhow::Error::new(sea_orm::DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout,
        ))
        .context("reading the catalog");
        let problem = Problem::unexpected(&down);
        assert_eq!(problem.status, 503);
        assert!(!problem.detail.contains("catalog"), "{}", problem.detail);
        let bug = anyhow::anyhow!("relation \"products\" does not exist");
        assert_eq!(Problem::unexpected(&bug), Problem::internal());
    }

    #[test]
    fn an_internal_problem_says_nothing_about_the_cause() {
        let p = Problem::internal();
        assert_eq!(p.status, 500);
        assert!(!p.detail.to_lowercase().contains("sql"));
    }
}
