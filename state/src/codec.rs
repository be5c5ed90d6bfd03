//! Value encoding for the typed helpers: bincode 2 through its serde API with the standard configuration.
//! A value that does not decode completely (trailing bytes) is reported as a codec error, because it means the
//! stored type and the requested type differ.

use crate::error::{StateError, decode_error, encode_error};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize + ?Sized>(
    keyspace: &str,
    value: &T,
) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| encode_error(keyspace, e))
}

pub(crate) fn decode<T: DeserializeOwned>(keyspace: &str, bytes: &[u8]) -> Result<T, StateError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| decode_error(keyspace, e))?;
    if read != bytes.len() {
        return Err(StateError::Codec {
            keyspace: keyspace.to_owned(),
            message: format!("{} trailing bytes after the value", bytes.len() - read),
        });
    }
    Ok(value)
}
