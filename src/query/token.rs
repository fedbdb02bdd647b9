//! Opaque page tokens for keyset pagination.
//!
//! A token carries the sort-key values of the last row served (the keys
//! always end with the trace id, so they identify the row), a signature of
//! the ordering they belong to, and the highest trace row id that existed
//! when the first page was served: later pages continue strictly after that
//! row and ignore traces created since, so paging is stable while ingestion
//! goes on (no duplicates, no gaps).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::QueryError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageToken {
    /// Values of the order-by keys of the last row served.
    #[serde(rename = "k")]
    pub keys: Vec<Value>,
    /// The ordering the keys belong to.
    #[serde(rename = "o")]
    pub order: String,
    /// Highest `traces.id` visible to this search.
    #[serde(rename = "h")]
    pub high_water: i64,
}

pub fn encode(t: &PageToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

pub fn decode(s: &str) -> Result<PageToken, QueryError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| QueryError::PageToken("could not base64-decode".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        QueryError::PageToken(
            "not a token issued by this server (tokens are opaque; pass back next_page_token as received)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let t = PageToken {
            keys: vec![Value::from(5), Value::from("tr-1")],
            order: "ts desc".into(),
            high_water: 9,
        };
        assert_eq!(decode(&encode(&t)).unwrap(), t);
        // MLflow's offset tokens are not ours.
        assert!(decode("eyJvZmZzZXQiOiAxfQ==").is_err());
        assert!(decode("%%%").is_err());
    }
}
