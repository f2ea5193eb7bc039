//! `limit` and `offset` of every list route.

use serde::Deserialize;

use crate::problem::Problem;

/// Default page size.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u64 = 200;
/// Most rows a client may skip. The database reads and discards every skipped row, so an
/// unbounded offset is work any client can ask for; a client that needs to go deeper filters
/// instead.
pub const MAX_OFFSET: u64 = 10_000;

/// The query string as sent; converted into [`Paging`] before use.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PagingQuery {
    /// Requested page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// Requested number of rows to skip.
    #[param(minimum = 0, default = 0)]
    pub offset: Option<i64>,
}

/// A valid page: `1 <= limit <= 200`, `0 <= offset <= 10000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    limit: u64,
    offset: u64,
}

impl Paging {
    /// Rows to return.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Default for Paging {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl TryFrom<PagingQuery> for Paging {
    type Error = Problem;

    fn try_from(q: PagingQuery) -> Result<Self, Problem> {
        let limit = match q.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as u64,
            Some(l) => {
                return Err(Problem::bad_request(format!(
                    "limit must be between 1 and {MAX_LIMIT}, not {l}"
                )));
            }
        };
        let offset = match q.offset {
            None => 0,
            Some(o) if (0..=MAX_OFFSET as i64).contains(&o) => o as u64,
            Some(o) => {
                return Err(Problem::bad_request(format!(
                    "offset must be between 0 and {MAX_OFFSET}, not {o}"
                )));
            }
        };
        Ok(Self { limit, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<i64>, offset: Option<i64>) -> Result<Paging, Problem> {
        Paging::try_from(PagingQuery { limit, offset })
    }

    #[test]
    fn no_paging_means_the_first_fifty() {
        assert_eq!(page(None, None).unwrap(), Paging::default());
        assert_eq!(page(None, None).unwrap().limit(), 50);
    }

    #[test]
    fn limit_is_between_one_and_two_hundred() {
        assert_eq!(page(Some(200), None).unwrap().limit(), 200);
        assert_eq!(page(Some(1), None).unwrap().limit(), 1);
        assert_eq!(page(Some(0), None).unwrap_err().status, 400);
        assert_eq!(page(Some(201), None).unwrap_err().status, 400);
        assert_eq!(page(Some(-1), None).unwrap_err().status, 400);
    }

    #[test]
    fn a_negative_offset_is_refused() {
        assert_eq!(page(None, Some(-5)).unwrap_err().status, 400);
        assert_eq!(page(None, Some(7)).unwrap().offset(), 7);
    }

    #[test]
    fn an_offset_past_ten_thousand_is_refused() {
        assert_eq!(page(None, Some(10_000)).unwrap().offset(), 10_000);
        assert_eq!(page(None, Some(10_001)).unwrap_err().status, 400);
        assert_eq!(page(Some(200), Some(i64::MAX)).unwrap_err().status, 400);
    }
}
