//! The webhook payload reader: a body (JSON, or ISR parameters as a form) and a URL query,
//! as a sender controls them, through `read_payload` and the ISR parameter decoders.
//! Input: one mode byte (bit 0: ISR route, bit 1: auto route, bit 2: form content type,
//! bit 3: GET), then the query, a 0 byte, and the body.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, Method, header::CONTENT_TYPE};
use callgate::model::inbound::read_payload;
use callgate::model::params::{parse_url_params, parse_urlencoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if mode & 4 != 0 {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        }),
    );
    let method = if mode & 8 != 0 { Method::GET } else { Method::POST };
    let _ = read_payload(
        &method,
        &headers,
        Some(&query),
        body,
        mode & 1 != 0,
        mode & 2 != 0,
    );
    let _ = parse_urlencoded(&query);
    let _ = parse_url_params(&query);
});
