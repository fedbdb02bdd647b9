//! Identifiers. MLflow names a trace `tr-` + the 32 lower-case hex digits of
//! the OpenTelemetry trace id, so either form can be derived from the other.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "invalid trace id '{0}': expected 16 bytes (32 hex digits), optionally prefixed by 'tr-'"
    )]
    Trace(String),
    #[error("invalid span id '{0}': expected 8 bytes (16 hex digits)")]
    Span(String),
}

/// The 16 raw bytes of an OpenTelemetry trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OtelTraceId(pub [u8; 16]);

/// The 8 raw bytes of an OpenTelemetry span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OtelSpanId(pub [u8; 8]);

/// An MLflow trace id (`tr-<32 hex>`); other shapes that the MLflow API lets
/// clients choose are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(String);

impl OtelTraceId {
    pub fn from_slice(b: &[u8]) -> Result<Self, IdError> {
        <[u8; 16]>::try_from(b)
            .map(Self)
            .map_err(|_| IdError::Trace(hex::encode(b)))
    }
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
    pub fn is_zero(self) -> bool {
        self.0 == [0; 16]
    }
}

impl OtelSpanId {
    pub fn from_slice(b: &[u8]) -> Result<Self, IdError> {
        <[u8; 8]>::try_from(b)
            .map(Self)
            .map_err(|_| IdError::Span(hex::encode(b)))
    }
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        let bytes = hex::decode(s).map_err(|_| IdError::Span(s.to_string()))?;
        Self::from_slice(&bytes).map_err(|_| IdError::Span(s.to_string()))
    }
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
    pub fn is_zero(self) -> bool {
        self.0 == [0; 8]
    }
}

impl TraceId {
    /// Accepts whatever id a client chose; MLflow treats trace ids as opaque
    /// strings, and only `tr-` ids map back to an OpenTelemetry id.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn from_otel(id: OtelTraceId) -> Self {
        Self(format!("tr-{}", id.to_hex()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
    /// The OpenTelemetry trace id behind a `tr-` id, if it is one.
    pub fn otel(&self) -> Option<OtelTraceId> {
        let hex_part = self.0.strip_prefix("tr-")?;
        let bytes = hex::decode(hex_part).ok()?;
        OtelTraceId::from_slice(&bytes).ok()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips_through_otel_bytes() {
        let otel = OtelTraceId([0x6b; 16]);
        let id = TraceId::from_otel(otel);
        assert_eq!(id.as_str(), "tr-6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b");
        assert_eq!(id.otel(), Some(otel));
        assert_eq!(TraceId::new("tr-xyz").otel(), None);
    }

    #[test]
    fn span_id_rejects_wrong_length() {
        assert!(OtelSpanId::from_slice(&[1, 2, 3]).is_err());
        assert_eq!(
            OtelSpanId::from_hex("0102030405060708").unwrap().0,
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
