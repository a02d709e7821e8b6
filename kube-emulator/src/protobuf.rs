//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the
//! few built-ins kubectl creates with typed clients: ConfigMap, Secret and Namespace.

use crate::error::ApiError;
use serde_json::{Map, Value, json};

/// The 4-byte prefix of every Kubernetes protobuf message.
const MAGIC: &[u8] = b"k8s\0";

/// One protobuf field value.
#[derive(Debug, Clone)]
enum Field<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5 (skipped content).
    Fixed,
}

/// Reads a varint.
fn varint(bytes: &[u8], position: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*position)?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Splits a message into (field number, value) pairs.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut position = 0;
    let mut result = Vec::new();
    while position < bytes.len() {
        let key = varint(bytes, &mut position)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(bytes, &mut position)?),
            2 => {
                let length = usize::try_from(varint(bytes, &mut position)?).ok()?;
                let end = position.checked_add(length)?;
                let slice = bytes.get(position..end)?;
                position = end;
                Field::Bytes(slice)
            }
            1 => {
                position = position.checked_add(8)?;
                Field::Fixed
            }
            5 => {
                position = position.checked_add(4)?;
                Field::Fixed
            }
            _ => return None,
        };
        result.push((key >> 3, value));
    }
    (position == bytes.len()).then_some(result)
}

/// A UTF-8 string field.
fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// A map entry (key = 1, value = 2) as strings; `base64_values` encodes bytes values like JSON does.
fn map_entry(bytes: &[u8], base64_values: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(raw)) => key = text(raw)?,
            (2, Field::Bytes(raw)) if base64_values => value = json!(base64_encode(raw)),
            (2, Field::Bytes(raw)) => value = json!(text(raw)?),
            _ => {}
        }
    }
    Some((key, value))
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let triple = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[((triple >> (18 - 6 * index)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inserts a map field into `target[name]`.
fn insert_map(
    target: &mut Map<String, Value>,
    name: &str,
    entry: Option<(String, Value)>,
) -> Option<()> {
    let (key, value) = entry?;
    let map = target
        .entry(name.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    map.as_object_mut()?.insert(key, value);
    Some(())
}

/// Decodes `ObjectMeta` (the fields a create request carries).
fn object_meta(bytes: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(raw)) => {
                meta.insert("name".into(), json!(text(raw)?));
            }
            (2, Field::Bytes(raw)) => {
                meta.insert("generateName".into(), json!(text(raw)?));
            }
            (3, Field::Bytes(raw)) => {
                meta.insert("namespace".into(), json!(text(raw)?));
            }
            (6, Field::Bytes(raw)) => {
                meta.insert("resourceVersion".into(), json!(text(raw)?));
            }
            (11, Field::Bytes(raw)) => insert_map(&mut meta, "labels", map_entry(raw, false))?,
            (12, Field::Bytes(raw)) => insert_map(&mut meta, "annotations", map_entry(raw, false))?,
            (14, Field::Bytes(raw)) => {
                let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
                finalizers.as_array_mut()?.push(json!(text(raw)?));
            }
            _ => {}
        }
    }
    meta.retain(|_, value| value.as_str() != Some(""));
    Some(Value::Object(meta))
}

/// Decodes the object inside the `runtime.Unknown` envelope for a supported kind.
fn decode_kind(kind: &str, raw: &[u8]) -> Option<Value> {
    let mut object = Map::new();
    for (number, field) in fields(raw)? {
        match (kind, number, field) {
            (_, 1, Field::Bytes(meta)) => {
                object.insert("metadata".into(), object_meta(meta)?);
            }
            ("ConfigMap", 2, Field::Bytes(entry)) => {
                insert_map(&mut object, "data", map_entry(entry, false))?
            }
            ("ConfigMap", 3, Field::Bytes(entry)) => {
                insert_map(&mut object, "binaryData", map_entry(entry, true))?
            }
            ("ConfigMap", 4, Field::Varint(flag)) | ("Secret", 5, Field::Varint(flag)) => {
                object.insert("immutable".into(), json!(flag != 0));
            }
            ("Secret", 2, Field::Bytes(entry)) => {
                insert_map(&mut object, "data", map_entry(entry, true))?
            }
            ("Secret", 3, Field::Bytes(raw)) if !raw.is_empty() => {
                object.insert("type".into(), json!(text(raw)?));
            }
            ("Secret", 4, Field::Bytes(entry)) => {
                insert_map(&mut object, "stringData", map_entry(entry, false))?
            }
            ("Namespace", 2, Field::Bytes(spec)) => {
                let mut finalizers = Vec::new();
                for (spec_number, spec_field) in fields(spec)? {
                    if let (1, Field::Bytes(name)) = (spec_number, spec_field) {
                        finalizers.push(json!(text(name)?));
                    }
                }
                object.insert("spec".into(), json!({"finalizers": finalizers}));
            }
            ("SelfSubjectAccessReview", 2, Field::Bytes(spec)) => {
                object.insert("spec".into(), access_review_spec(spec)?);
            }
            _ => {}
        }
    }
    Some(Value::Object(object))
}

/// Named string fields of a message (field number → JSON name).
fn string_fields(bytes: &[u8], names: &[(u64, &str)]) -> Option<Value> {
    let mut object = Map::new();
    for (number, field) in fields(bytes)? {
        if let (Field::Bytes(raw), Some((_, name))) = (
            field,
            names.iter().find(|(candidate, _)| *candidate == number),
        ) {
            object.insert((*name).into(), json!(text(raw)?));
        }
    }
    Some(Value::Object(object))
}

/// A `SelfSubjectAccessReviewSpec` (what `kubectl auth can-i` sends).
fn access_review_spec(bytes: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(raw)) => {
                let names = [
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ];
                spec.insert("resourceAttributes".into(), string_fields(raw, &names)?);
            }
            (2, Field::Bytes(raw)) => {
                let names = [(1, "path"), (2, "verb")];
                spec.insert("nonResourceAttributes".into(), string_fields(raw, &names)?);
            }
            _ => {}
        }
    }
    Some(Value::Object(spec))
}

/// Decodes a protobuf request body into JSON; only ConfigMap, Secret and Namespace are understood.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unsupported = || ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf");
    let envelope = body.strip_prefix(MAGIC).ok_or_else(unsupported)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope).ok_or_else(unsupported)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                for (meta_number, meta_field) in fields(type_meta).ok_or_else(unsupported)? {
                    match (meta_number, meta_field) {
                        (1, Field::Bytes(value)) => api_version = text(value).unwrap_or_default(),
                        (2, Field::Bytes(value)) => kind = text(value).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(value)) => raw = value,
            _ => {}
        }
    }
    let supported = match api_version.as_str() {
        "v1" => matches!(kind.as_str(), "ConfigMap" | "Secret" | "Namespace"),
        "authorization.k8s.io/v1" => kind == "SelfSubjectAccessReview",
        _ => false,
    };
    if !supported {
        return Err(unsupported());
    }
    let mut object =
        decode_kind(&kind, raw).ok_or_else(|| ApiError::bad_request("malformed protobuf body"))?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a length-delimited field.
    fn bytes_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_config_map() {
        let meta = [
            bytes_field(1, b"settings"),
            bytes_field(11, &[bytes_field(1, b"a"), bytes_field(2, b"b")].concat()),
        ]
        .concat();
        let data = bytes_field(
            2,
            &[bytes_field(1, b"key"), bytes_field(2, b"value")].concat(),
        );
        let object = [bytes_field(1, &meta), data].concat();
        let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"ConfigMap")].concat();
        let envelope = [
            MAGIC.to_vec(),
            bytes_field(1, &type_meta),
            bytes_field(2, &object),
        ]
        .concat();
        let decoded = decode(&envelope).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"a": "b"}}, "data": {"key": "value"}})
        );
        assert_eq!(base64_encode(b"hi!?"), "aGkhPw==");
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let attributes = [
            bytes_field(1, b"team-a"),
            bytes_field(2, b"approve"),
            bytes_field(3, b"autoguardrails.io"),
            bytes_field(5, b"quarantines"),
        ]
        .concat();
        let spec = bytes_field(1, &attributes);
        let object = [bytes_field(1, &[]), bytes_field(2, &spec)].concat();
        let type_meta = [
            bytes_field(1, b"authorization.k8s.io/v1"),
            bytes_field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let envelope = [
            MAGIC.to_vec(),
            bytes_field(1, &type_meta),
            bytes_field(2, &object),
        ]
        .concat();
        assert_eq!(
            decode(&envelope).unwrap(),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
                "spec": {"resourceAttributes": {"namespace": "team-a", "verb": "approve", "group": "autoguardrails.io", "resource": "quarantines"}}})
        );
        let other = [
            MAGIC.to_vec(),
            bytes_field(
                1,
                &[
                    bytes_field(1, b"authorization.k8s.io/v1"),
                    bytes_field(2, b"SubjectAccessReview"),
                ]
                .concat(),
            ),
        ]
        .concat();
        assert_eq!(decode(&other).unwrap_err().code, 415);
    }
}
