//! Parameter payloads, one rule (README "Mapping authoring guide"): `application/x-www-form-urlencoded` as the WHATWG
//! URL standard parses it (<https://url.spec.whatwg.org/#urlencoded-parsing>), for URL queries
//! and form bodies alike, in `serve`, `translate`, cases and the playground.

use serde_json::{Map, Value};

/// A parameter whose `%XX` escapes do not decode to UTF-8 (answered 400: a replaced byte would
/// change a correlation id silently).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{0}`: its %-escapes are not valid UTF-8")]
pub struct BadEscape(pub String);

/// Decodes `name=value&...` as `{name: value}` (the last of repeated names wins): `+` is a
/// space and `%2B` a plus (a sender that means a plus writes `%2B`, as Java's `URLEncoder` and
/// every servlet container agree); `%XX` escapes must decode to UTF-8, else [`BadEscape`].
/// Empty pairs (`a=1&&b=2`) are skipped; a pair without `=` has an empty value.
pub fn parse_urlencoded(query: &str) -> Result<Value, BadEscape> {
    let mut params = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| BadEscape(name.to_string()))
        };
        params.insert(decode(name)?, Value::String(decode(value)?));
    }
    Ok(Value::Object(params))
}

/// The parameters of a URL (the part after `?`, before `#`) or of a bare query string, by
/// [`parse_urlencoded`].
pub fn parse_url_params(line: &str) -> Result<Value, BadEscape> {
    let query = match line.split_once('?') {
        Some((_, q)) => q,
        None => line,
    };
    parse_urlencoded(query.split('#').next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plus_is_a_space_and_an_escaped_plus_a_plus() {
        assert_eq!(
            parse_urlencoded("START_TIME=2026-06-09+11%3a02%3a03.250&ANI=%2B14085550100&x")
                .unwrap(),
            json!({"START_TIME": "2026-06-09 11:02:03.250", "ANI": "+14085550100", "x": ""})
        );
    }

    #[test]
    fn escapes_that_are_not_utf8_are_refused() {
        assert_eq!(
            parse_urlencoded("ok=1&ucid=%FF%FE"),
            Err(BadEscape("ucid".into()))
        );
        assert!(parse_urlencoded("a=%E2%82%AC").is_ok());
    }

    #[test]
    fn urls_give_their_query() {
        assert_eq!(
            parse_url_params("http://h/isr?event=A%20B&n=1#frag").unwrap(),
            json!({"event": "A B", "n": "1"})
        );
        assert_eq!(parse_url_params("event=X").unwrap(), json!({"event": "X"}));
    }
}
