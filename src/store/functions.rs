//! SQL functions registered on every connection: `regexp` for MLflow's
//! RLIKE, `tb_bit` for membership in a bitmap passed as a blob (how the
//! query planner hands large full-text hit sets to SQLite) and `tb_text`,
//! the text of a span payload column (see `payload`).

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;

use super::Result;
use super::payload::Codec;

pub(super) fn register(conn: &Connection, codec: &Arc<Codec>) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    // regexp(pattern, text): unanchored search, as Python's re.search in
    // MLflow. NULL text is false. The compiled pattern is cached per
    // statement (SQLite keeps aux data while the argument is constant).
    conn.create_scalar_function("regexp", 2, flags, |ctx| {
        let text = match ctx.get_raw(1) {
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            rusqlite::types::ValueRef::Null => return Ok(false),
            other => match other {
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Real(f) => f.to_string(),
                _ => return Ok(false),
            },
        };
        let re = ctx.get_or_create_aux(0, |v| -> std::result::Result<_, rusqlite::Error> {
            let p = v
                .as_str()
                .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            // An invalid pattern matches nothing (the query layer rejects
            // them up front with a 400).
            Ok(regex::Regex::new(p).ok())
        })?;
        Ok(re.as_ref().as_ref().is_some_and(|r| r.is_match(&text)))
    })?;
    // tb_bit(bitmap, n): whether bit n (LSB first within each byte) is set.
    conn.create_scalar_function("tb_bit", 2, flags, |ctx| {
        let n: i64 = match ctx.get_raw(1) {
            rusqlite::types::ValueRef::Integer(i) => i,
            _ => return Ok(false),
        };
        match ctx.get_raw(0) {
            rusqlite::types::ValueRef::Blob(b) if n >= 0 => {
                let byte = (n / 8) as usize;
                Ok(b.get(byte).is_some_and(|x| x & (1 << (n % 8)) != 0))
            }
            _ => Ok(false),
        }
    })?;
    // tb_text(payload): TEXT as stored, a compressed blob decompressed.
    let codec = codec.clone();
    conn.create_scalar_function("tb_text", 1, flags, move |ctx| {
        codec
            .unpack(ctx.get_raw(0))
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
    })?;
    Ok(())
}
