//! Content negotiation: request bodies in, responses out.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use kedge_api::ApiError;
use serde_json::Value;

use crate::server::Body;

/// The largest request body accepted (upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// One media range of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_media_types(h: &str) -> Vec<MediaType> {
    h.split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let essence = it.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaType { essence, params })
        })
        .collect()
}

/// How a response is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// A `meta.k8s.io` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Choose the response encoding from the Accept header.
pub fn choose_output(headers: &HeaderMap) -> Result<Output, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Output::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for mt in parse_media_types(accept) {
        let json_like = matches!(
            mt.essence.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        if json_like && mt.param("g") == Some("meta.k8s.io") {
            match mt.param("as") {
                Some("Table") if matches!(mt.param("v"), Some("v1" | "v1beta1")) => {
                    return Ok(Output::Table)
                }
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if matches!(mt.param("v"), Some("v1" | "v1beta1")) =>
                {
                    return Ok(Output::Metadata)
                }
                _ => continue,
            }
        }
        if mt.param("as").is_some() {
            continue;
        }
        match mt.essence.as_str() {
            "application/json" | "*/*" | "application/*" | "application/json-seq" => {
                return Ok(Output::Json)
            }
            "application/yaml" => return Ok(Output::Yaml),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(
        "application/json, application/yaml",
    ))
}

/// Decode a create/update body (JSON or YAML) into a JSON object.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = parse_media_types(ct)
        .into_iter()
        .next()
        .map(|m| m.essence)
        .unwrap_or_default();
    let v: Value = match essence.as_str() {
        // An empty Content-Type is read as JSON (kubectl's scale with
        // --current-replicas sends none; upstream accepts it).
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
            })?,
        "application/vnd.kubernetes.protobuf" => kedge_api::protobuf::decode_k8s_protobuf(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode protobuf body: {e}")))?,
        _ => return Err(ApiError::unsupported_media_type(ct)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the body must be a JSON object",
        ));
    }
    Ok(v)
}

pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Send a JSON value in the negotiated format (JSON or YAML).
pub fn respond(status: StatusCode, out: Output, v: &Value) -> Response<Body> {
    if out == Output::Yaml {
        let y = serde_yaml::to_string(v).unwrap_or_default();
        let mut r = Response::new(Body::from(y));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        return r;
    }
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    )
}

/// Send raw stored bytes (already JSON) in the negotiated format.
pub fn respond_raw(status: StatusCode, out: Output, raw: Bytes) -> Response<Body> {
    if out == Output::Yaml {
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return respond(status, out, &v);
    }
    json_bytes(status, raw)
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(&e.to_status()).unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(s: &str) -> Result<Output, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(s).expect("header"));
        choose_output(&h)
    }

    #[test]
    fn kubectl_table_accept() {
        assert_eq!(
            accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").ok(),
            Some(Output::Table)
        );
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf, */*").ok(),
            Some(Output::Json)
        );
        assert_eq!(accept("application/yaml").ok(), Some(Output::Yaml));
        assert_eq!(accept("text/html").map_err(|e| e.code), Err(406));
    }

    #[test]
    fn bodies() {
        let mut h = HeaderMap::new();
        assert!(decode_body(&h, b"{}").is_ok());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(decode_body(&h, b"{bad").map_err(|e| e.code), Err(400));
        assert_eq!(decode_body(&h, b"[1]").map_err(|e| e.code), Err(400));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        let v = decode_body(&h, b"kind: ConfigMap\nmetadata:\n  name: a\n").expect("yaml");
        assert_eq!(v["metadata"]["name"], "a");
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(decode_body(&h, b"{}").map_err(|e| e.code), Err(415));
    }
}
