//! The ASP.NET Core SignalR JSON hub protocol (docs/protocols.md §1; specs `HubProtocol.md`,
//! `TransportProtocols.md`): 0x1E record framing, the handshake, hub messages of types 1–9
//! and the negotiate response. Pure: bytes in, typed messages out, and back. Malformed
//! records are refused with an error, never a panic; unknown message types and fields are
//! ignored (servers add fields over time).

use crate::mapping::decode::kind;
use serde_json::{Map, Value, json};

/// The ASCII record separator that ends every JSON record, handshake included.
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// The server's default limit on one client→server message (`MaximumReceiveMessageSize`,
/// 32 KiB); callgate applies it to records in both directions unless configured otherwise.
pub const DEFAULT_MAX_RECORD: usize = 32 * 1024;

/// Why bytes are not a valid record or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A record (or an unfinished one) is larger than the limit.
    #[error("a record exceeds {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The record is not a JSON object.
    #[error("a record is not a JSON object: {0}")]
    NotJson(String),
    /// A required field is absent or of the wrong type.
    #[error("{message} message: `{field}` is missing or not {expected}")]
    Field {
        /// The message kind.
        message: &'static str,
        /// The field name, as on the wire.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A Completion carries both `result` and `error`.
    #[error("a Completion carries both result and error")]
    ResultAndError,
    /// The first record from the server was a hub message, not the handshake response.
    #[error("a hub message arrived before the handshake response")]
    MessageBeforeHandshake,
}

/// Splits a byte stream into records: several records may share a frame and one record may
/// span frames; the unfinished tail is kept, up to `max_record` bytes.
#[derive(Debug)]
pub struct Framer {
    tail: Vec<u8>,
    max_record: usize,
}

impl Framer {
    /// A framer refusing records over `max_record` bytes (separator excluded).
    pub fn new(max_record: usize) -> Framer {
        Framer {
            tail: Vec::new(),
            max_record,
        }
    }

    /// Adds received bytes; returns the records they complete, in order, without their
    /// separators. Empty records (two separators in a row) are skipped.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == RECORD_SEPARATOR) {
            let (part, after) = rest.split_at(at);
            if self.tail.len() + part.len() > self.max_record {
                self.tail.clear();
                return Err(ProtocolError::TooLarge {
                    limit: self.max_record,
                });
            }
            let mut record = std::mem::take(&mut self.tail);
            record.extend_from_slice(part);
            if !record.is_empty() {
                records.push(record);
            }
            rest = &after[1..];
        }
        if self.tail.len() + rest.len() > self.max_record {
            self.tail.clear();
            return Err(ProtocolError::TooLarge {
                limit: self.max_record,
            });
        }
        self.tail.extend_from_slice(rest);
        Ok(records)
    }

    /// Whether an unfinished record is buffered.
    pub fn has_partial(&self) -> bool {
        !self.tail.is_empty()
    }
}

/// Appends the record separator to a serialized record.
fn record(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("a JSON value serializes");
    bytes.push(RECORD_SEPARATOR);
    bytes
}

fn object(record: &[u8]) -> Result<Map<String, Value>, ProtocolError> {
    match serde_json::from_slice::<Value>(record) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ProtocolError::NotJson(format!(
            "expected an object, found {}",
            kind(&other)
        ))),
        Err(e) => Err(ProtocolError::NotJson(e.to_string())),
    }
}

/// The client's handshake request, `{"protocol":"json","version":1}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The hub protocol name (`json`; callgate speaks nothing else).
    pub protocol: String,
    /// The protocol version (always 1).
    pub version: u64,
}

impl HandshakeRequest {
    /// The JSON protocol, version 1.
    pub fn json() -> HandshakeRequest {
        HandshakeRequest {
            protocol: "json".into(),
            version: 1,
        }
    }

    /// The record as sent.
    pub fn encode(&self) -> Vec<u8> {
        record(&json!({"protocol": self.protocol, "version": self.version}))
    }

    /// Parses the first client record.
    pub fn parse(record: &[u8]) -> Result<HandshakeRequest, ProtocolError> {
        let map = object(record)?;
        let protocol = str_field(&map, "Handshake", "protocol")?.to_string();
        let version = map
            .get("version")
            .and_then(Value::as_u64)
            .ok_or(ProtocolError::Field {
                message: "Handshake",
                field: "version",
                expected: "an integer",
            })?;
        Ok(HandshakeRequest { protocol, version })
    }
}

/// The server's handshake response: `{}` or `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Why the server refused the handshake.
    pub error: Option<String>,
}

impl HandshakeResponse {
    /// The record as sent.
    pub fn encode(&self) -> Vec<u8> {
        match &self.error {
            Some(error) => record(&json!({"error": error})),
            None => record(&json!({})),
        }
    }

    /// Parses the first server record. A record with a `type` is a hub message that came
    /// too early, which the official client treats as an error.
    pub fn parse(record: &[u8]) -> Result<HandshakeResponse, ProtocolError> {
        let map = object(record)?;
        if map.contains_key("type") {
            return Err(ProtocolError::MessageBeforeHandshake);
        }
        Ok(HandshakeResponse {
            error: map.get("error").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// A hub message (`type` 1–9). Optional `headers` are ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// 1: call `target` with `arguments`; without `invocation_id` the callee must not reply.
    Invocation {
        /// `invocationId`, absent for non-blocking calls (server pushes).
        invocation_id: Option<String>,
        /// `target`: the method name, case-sensitive.
        target: String,
        /// `arguments`.
        arguments: Vec<Value>,
        /// `streamIds`, for upload streams.
        stream_ids: Vec<String>,
    },
    /// 2: one item of a stream.
    StreamItem {
        /// `invocationId`.
        invocation_id: String,
        /// `item`.
        item: Value,
    },
    /// 3: the end of an invocation, with a `result`, an `error`, or neither (void).
    Completion {
        /// `invocationId`.
        invocation_id: String,
        /// `result` (present, possibly `null`), or `Err(error)`, or `Ok(None)` for void.
        outcome: Result<Option<Value>, String>,
    },
    /// 4: call a streaming method.
    StreamInvocation {
        /// `invocationId` (required).
        invocation_id: String,
        /// `target`.
        target: String,
        /// `arguments`.
        arguments: Vec<Value>,
    },
    /// 5: stop a stream.
    CancelInvocation {
        /// `invocationId`.
        invocation_id: String,
    },
    /// 6: keep-alive.
    Ping,
    /// 7: the sender is closing.
    Close {
        /// `error`, when the close is abnormal.
        error: Option<String>,
        /// `allowReconnect`: the client may reconnect.
        allow_reconnect: bool,
    },
    /// 8: stateful reconnect acknowledgement (parsed, never used by RTE).
    Ack {
        /// `sequenceId`.
        sequence_id: u64,
    },
    /// 9: stateful reconnect sequence start (parsed, never used by RTE).
    Sequence {
        /// `sequenceId`.
        sequence_id: u64,
    },
}

fn str_field<'a>(
    map: &'a Map<String, Value>,
    message: &'static str,
    field: &'static str,
) -> Result<&'a str, ProtocolError> {
    map.get(field)
        .and_then(Value::as_str)
        .ok_or(ProtocolError::Field {
            message,
            field,
            expected: "a string",
        })
}

fn opt_str(
    map: &Map<String, Value>,
    message: &'static str,
    field: &'static str,
) -> Result<Option<String>, ProtocolError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProtocolError::Field {
            message,
            field,
            expected: "a string",
        }),
    }
}

fn arguments(map: &Map<String, Value>, message: &'static str) -> Result<Vec<Value>, ProtocolError> {
    match map.get("arguments") {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(ProtocolError::Field {
            message,
            field: "arguments",
            expected: "an array",
        }),
    }
}

fn sequence_id(map: &Map<String, Value>, message: &'static str) -> Result<u64, ProtocolError> {
    map.get("sequenceId")
        .and_then(Value::as_u64)
        .ok_or(ProtocolError::Field {
            message,
            field: "sequenceId",
            expected: "an integer",
        })
}

impl HubMessage {
    /// Parses one record (separator removed). `Ok(None)`: a message type this protocol
    /// version does not know, to be ignored.
    pub fn parse(record: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
        let map = object(record)?;
        let kind = map
            .get("type")
            .and_then(Value::as_u64)
            .ok_or(ProtocolError::Field {
                message: "hub",
                field: "type",
                expected: "an integer",
            })?;
        let message = match kind {
            1 => HubMessage::Invocation {
                invocation_id: opt_str(&map, "Invocation", "invocationId")?,
                target: str_field(&map, "Invocation", "target")?.to_string(),
                arguments: arguments(&map, "Invocation")?,
                stream_ids: match map.get("streamIds") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(ids)) if ids.iter().all(Value::is_string) => ids
                        .iter()
                        .filter_map(|id| id.as_str().map(str::to_string))
                        .collect(),
                    Some(_) => {
                        return Err(ProtocolError::Field {
                            message: "Invocation",
                            field: "streamIds",
                            expected: "an array of strings",
                        });
                    }
                },
            },
            2 => HubMessage::StreamItem {
                invocation_id: str_field(&map, "StreamItem", "invocationId")?.to_string(),
                item: map.get("item").cloned().unwrap_or(Value::Null),
            },
            3 => {
                let invocation_id = str_field(&map, "Completion", "invocationId")?.to_string();
                let outcome = match (map.get("result"), map.get("error")) {
                    (Some(_), Some(_)) => return Err(ProtocolError::ResultAndError),
                    (Some(result), None) => Ok(Some(result.clone())),
                    (None, Some(Value::String(error))) => Err(error.clone()),
                    (None, Some(_)) => {
                        return Err(ProtocolError::Field {
                            message: "Completion",
                            field: "error",
                            expected: "a string",
                        });
                    }
                    (None, None) => Ok(None),
                };
                HubMessage::Completion {
                    invocation_id,
                    outcome,
                }
            }
            4 => HubMessage::StreamInvocation {
                invocation_id: str_field(&map, "StreamInvocation", "invocationId")?.to_string(),
                target: str_field(&map, "StreamInvocation", "target")?.to_string(),
                arguments: arguments(&map, "StreamInvocation")?,
            },
            5 => HubMessage::CancelInvocation {
                invocation_id: str_field(&map, "CancelInvocation", "invocationId")?.to_string(),
            },
            6 => HubMessage::Ping,
            7 => HubMessage::Close {
                error: opt_str(&map, "Close", "error")?,
                allow_reconnect: match map.get("allowReconnect") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(ProtocolError::Field {
                            message: "Close",
                            field: "allowReconnect",
                            expected: "a boolean",
                        });
                    }
                },
            },
            8 => HubMessage::Ack {
                sequence_id: sequence_id(&map, "Ack")?,
            },
            9 => HubMessage::Sequence {
                sequence_id: sequence_id(&map, "Sequence")?,
            },
            _ => return Ok(None),
        };
        Ok(Some(message))
    }

    /// The record as sent, separator included.
    pub fn encode(&self) -> Vec<u8> {
        let value = match self {
            HubMessage::Invocation {
                invocation_id,
                target,
                arguments,
                stream_ids,
            } => {
                let mut map = Map::new();
                map.insert("type".into(), json!(1));
                if let Some(id) = invocation_id {
                    map.insert("invocationId".into(), json!(id));
                }
                map.insert("target".into(), json!(target));
                map.insert("arguments".into(), Value::Array(arguments.clone()));
                if !stream_ids.is_empty() {
                    map.insert("streamIds".into(), json!(stream_ids));
                }
                Value::Object(map)
            }
            HubMessage::StreamItem {
                invocation_id,
                item,
            } => json!({"type": 2, "invocationId": invocation_id, "item": item}),
            HubMessage::Completion {
                invocation_id,
                outcome,
            } => match outcome {
                Ok(Some(result)) => {
                    json!({"type": 3, "invocationId": invocation_id, "result": result})
                }
                Ok(None) => json!({"type": 3, "invocationId": invocation_id}),
                Err(error) => json!({"type": 3, "invocationId": invocation_id, "error": error}),
            },
            HubMessage::StreamInvocation {
                invocation_id,
                target,
                arguments,
            } => {
                json!({"type": 4, "invocationId": invocation_id, "target": target, "arguments": arguments})
            }
            HubMessage::CancelInvocation { invocation_id } => {
                json!({"type": 5, "invocationId": invocation_id})
            }
            HubMessage::Ping => json!({"type": 6}),
            HubMessage::Close {
                error,
                allow_reconnect,
            } => {
                let mut map = Map::new();
                map.insert("type".into(), json!(7));
                if let Some(error) = error {
                    map.insert("error".into(), json!(error));
                }
                if *allow_reconnect {
                    map.insert("allowReconnect".into(), json!(true));
                }
                Value::Object(map)
            }
            HubMessage::Ack { sequence_id } => json!({"type": 8, "sequenceId": sequence_id}),
            HubMessage::Sequence { sequence_id } => json!({"type": 9, "sequenceId": sequence_id}),
        };
        record(&value)
    }
}

/// One transport a negotiate response offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// `transport`: `WebSockets`, `ServerSentEvents`, `LongPolling`.
    pub name: String,
    /// `transferFormats`: `Text`, `Binary`.
    pub formats: Vec<String>,
}

/// What `POST …/negotiate?negotiateVersion=1` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// A connection: open the WebSocket with `id=<connection_token>`.
    Connection {
        /// `connectionToken` (version 1), or `connectionId` for version 0 servers.
        connection_token: String,
        /// `connectionId`.
        connection_id: String,
        /// `negotiateVersion` (0 when absent).
        version: u64,
        /// `availableTransports`.
        transports: Vec<Transport>,
    },
    /// Negotiate again at `url`, with `access_token` as the new bearer token if given.
    Redirect {
        /// `url`.
        url: String,
        /// `accessToken`.
        access_token: Option<String>,
    },
    /// `error`: the server refuses; retrying blindly is pointless.
    Error(String),
}

impl Negotiated {
    /// Parses a negotiate response body.
    pub fn parse(body: &[u8]) -> Result<Negotiated, ProtocolError> {
        let map = object(body)?;
        if let Some(error) = map.get("error").and_then(Value::as_str) {
            return Ok(Negotiated::Error(error.to_string()));
        }
        if let Some(url) = map.get("url").and_then(Value::as_str) {
            return Ok(Negotiated::Redirect {
                url: url.to_string(),
                access_token: map
                    .get("accessToken")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        let connection_id = str_field(&map, "negotiate", "connectionId")?.to_string();
        let version = map
            .get("negotiateVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let connection_token = match (version, map.get("connectionToken")) {
            (1.., Some(Value::String(token))) => token.clone(),
            (1.., _) => {
                return Err(ProtocolError::Field {
                    message: "negotiate",
                    field: "connectionToken",
                    expected: "a string",
                });
            }
            (0, _) => connection_id.clone(),
        };
        let transports = map
            .get("availableTransports")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|t| {
                        Some(Transport {
                            name: t.get("transport")?.as_str()?.to_string(),
                            formats: t
                                .get("transferFormats")
                                .and_then(Value::as_array)
                                .map(|f| {
                                    f.iter()
                                        .filter_map(|x| x.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Negotiated::Connection {
            connection_token,
            connection_id,
            version,
            transports,
        })
    }

    /// A version-1 response offering WebSockets with text frames (what callgate's hub
    /// answers).
    pub fn websocket_v1(connection_token: &str, connection_id: &str) -> Value {
        json!({
            "connectionToken": connection_token,
            "connectionId": connection_id,
            "negotiateVersion": 1,
            "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text"]}],
        })
    }
}

/// The member `name` of a JSON object, its key matched in any case: RTE's keys arrive in
/// PascalCase, camelCase or upper case (docs/protocols.md §2.1, §2.5).
pub fn member<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exchange of docs/protocols.md §1.3, byte for byte (`\x1e` the separator).
    #[test]
    fn the_spec_exchange_parses_and_encodes() {
        assert_eq!(
            HandshakeRequest::json().encode(),
            b"{\"protocol\":\"json\",\"version\":1}\x1e"
        );
        assert_eq!(
            HandshakeRequest::parse(b"{\"protocol\":\"json\",\"version\":1}").unwrap(),
            HandshakeRequest::json()
        );
        assert_eq!(HandshakeResponse { error: None }.encode(), b"{}\x1e");
        assert_eq!(
            HandshakeResponse::parse(b"{}").unwrap(),
            HandshakeResponse { error: None }
        );
        assert_eq!(
            HandshakeResponse::parse(
                b"{\"error\":\"Requested protocol 'messagepack' is not available.\"}"
            )
            .unwrap()
            .error
            .as_deref(),
            Some("Requested protocol 'messagepack' is not available.")
        );
        assert_eq!(
            HandshakeResponse::parse(b"{\"type\":6}"),
            Err(ProtocolError::MessageBeforeHandshake)
        );
        assert_eq!(
            HubMessage::parse(b"{\"type\":6}").unwrap(),
            Some(HubMessage::Ping)
        );
        let subscribe = br#"{"target":"Subscribe","arguments":[[{"EntityId":"a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3","EventName":"UserStatus"}]],"invocationId":"0","type":1}"#;
        match HubMessage::parse(subscribe).unwrap().unwrap() {
            HubMessage::Invocation {
                invocation_id,
                target,
                arguments,
                stream_ids,
            } => {
                assert_eq!(invocation_id.as_deref(), Some("0"));
                assert_eq!(target, "Subscribe");
                assert_eq!(
                    arguments[0][0]["EventName"],
                    Value::String("UserStatus".into())
                );
                assert!(stream_ids.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let completion = br#"{"type":3,"invocationId":"0","result":[{"subscribed":true,"message":null,"entityId":"a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3","eventName":"userstatus"}]}"#;
        match HubMessage::parse(completion).unwrap().unwrap() {
            HubMessage::Completion {
                invocation_id,
                outcome: Ok(Some(result)),
            } => {
                assert_eq!(invocation_id, "0");
                assert_eq!(result[0]["subscribed"], Value::Bool(true));
            }
            other => panic!("{other:?}"),
        }
        let push =
            br#"{"type":1,"target":"MessageReceived","arguments":[{"subscription":{},"data":{}}]}"#;
        assert!(matches!(
            HubMessage::parse(push).unwrap(),
            Some(HubMessage::Invocation {
                invocation_id: None,
                ..
            })
        ));
        assert_eq!(
            HubMessage::parse(br#"{"type":7,"error":"bye","allowReconnect":true}"#).unwrap(),
            Some(HubMessage::Close {
                error: Some("bye".into()),
                allow_reconnect: true
            })
        );
        assert_eq!(HubMessage::Ping.encode(), b"{\"type\":6}\x1e");
    }

    #[test]
    fn every_message_type_round_trips() {
        let messages = [
            HubMessage::Invocation {
                invocation_id: Some("7".into()),
                target: "Subscribe".into(),
                arguments: vec![json!([{"EntityId": "x"}])],
                stream_ids: vec!["s1".into()],
            },
            HubMessage::Invocation {
                invocation_id: None,
                target: "MessageReceived".into(),
                arguments: vec![json!({"a": 1})],
                stream_ids: vec![],
            },
            HubMessage::StreamItem {
                invocation_id: "1".into(),
                item: json!({"x": [1, 2]}),
            },
            HubMessage::Completion {
                invocation_id: "1".into(),
                outcome: Ok(Some(Value::Null)),
            },
            HubMessage::Completion {
                invocation_id: "2".into(),
                outcome: Ok(None),
            },
            HubMessage::Completion {
                invocation_id: "3".into(),
                outcome: Err("boom".into()),
            },
            HubMessage::StreamInvocation {
                invocation_id: "4".into(),
                target: "Counter".into(),
                arguments: vec![json!(10)],
            },
            HubMessage::CancelInvocation {
                invocation_id: "4".into(),
            },
            HubMessage::Ping,
            HubMessage::Close {
                error: None,
                allow_reconnect: false,
            },
            HubMessage::Close {
                error: Some("going away".into()),
                allow_reconnect: true,
            },
            HubMessage::Ack { sequence_id: 3 },
            HubMessage::Sequence { sequence_id: 4 },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(bytes.last(), Some(&RECORD_SEPARATOR));
            assert_eq!(
                HubMessage::parse(&bytes[..bytes.len() - 1]).unwrap(),
                Some(message.clone()),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // `result: null` is a result; no result is void.
        assert!(
            String::from_utf8(
                HubMessage::Completion {
                    invocation_id: "1".into(),
                    outcome: Ok(Some(Value::Null))
                }
                .encode()
            )
            .unwrap()
            .contains("\"result\":null")
        );
    }

    #[test]
    fn records_split_and_shared_across_frames() {
        let mut framer = Framer::new(DEFAULT_MAX_RECORD);
        // The handshake response sharing a frame with the first messages.
        assert_eq!(
            framer.push(b"{}\x1e{\"type\":6}\x1e{\"type\":1,").unwrap(),
            vec![b"{}".to_vec(), b"{\"type\":6}".to_vec()]
        );
        assert!(framer.has_partial());
        assert_eq!(
            framer.push(b"\"target\":\"A\"").unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            framer.push(b",\"arguments\":[]}\x1e\x1e").unwrap(),
            vec![b"{\"type\":1,\"target\":\"A\",\"arguments\":[]}".to_vec()]
        );
        assert!(!framer.has_partial());
    }

    #[test]
    fn malformed_and_oversized_records_are_refused() {
        let mut framer = Framer::new(16);
        assert_eq!(
            framer.push(&[b'x'; 17]),
            Err(ProtocolError::TooLarge { limit: 16 })
        );
        assert_eq!(framer.push(b"{\"type\":6}\x1e").unwrap().len(), 1);
        let mut framer = Framer::new(16);
        assert!(framer.push(b"0123456789").is_ok());
        assert!(framer.push(b"0123456789\x1e").is_err());

        for (record, why) in [
            (&b"not json"[..], "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (b"{}", "`type`"),
            (b"{\"type\":\"1\"}", "`type`"),
            (b"{\"type\":1,\"arguments\":[]}", "`target`"),
            (b"{\"type\":1,\"target\":\"A\"}", "`arguments`"),
            (
                b"{\"type\":1,\"target\":\"A\",\"arguments\":{}}",
                "`arguments`",
            ),
            (
                b"{\"type\":1,\"target\":\"A\",\"arguments\":[],\"invocationId\":5}",
                "`invocationId`",
            ),
            (
                b"{\"type\":3,\"invocationId\":\"1\",\"result\":1,\"error\":\"e\"}",
                "both",
            ),
            (
                b"{\"type\":3,\"invocationId\":\"1\",\"error\":5}",
                "`error`",
            ),
            (b"{\"type\":3}", "`invocationId`"),
            (
                b"{\"type\":7,\"allowReconnect\":\"yes\"}",
                "`allowReconnect`",
            ),
            (b"{\"type\":8}", "`sequenceId`"),
        ] {
            let error = HubMessage::parse(record).unwrap_err().to_string();
            assert!(
                error.contains(why),
                "{}: {error}",
                String::from_utf8_lossy(record)
            );
        }
        // Unknown types and unknown fields are ignored.
        assert_eq!(HubMessage::parse(b"{\"type\":42,\"x\":1}").unwrap(), None);
        assert_eq!(
            HubMessage::parse(b"{\"type\":6,\"headers\":{\"a\":\"b\"},\"new\":1}").unwrap(),
            Some(HubMessage::Ping)
        );
    }

    #[test]
    fn negotiate_responses() {
        let v1 = br#"{"connectionToken":"05265228-1e2c-46c5-82a1-6a5bcc3f0143","connectionId":"807809a5-31bf-470d-9e23-afaee35d8a0d","negotiateVersion":1,"availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#;
        match Negotiated::parse(v1).unwrap() {
            Negotiated::Connection {
                connection_token,
                version,
                transports,
                ..
            } => {
                assert_eq!(connection_token, "05265228-1e2c-46c5-82a1-6a5bcc3f0143");
                assert_eq!(version, 1);
                assert_eq!(transports.len(), 3);
                assert_eq!(transports[0].name, "WebSockets");
            }
            other => panic!("{other:?}"),
        }
        // Version 0: the connection id doubles as the token.
        assert!(matches!(
            Negotiated::parse(br#"{"connectionId":"abc","availableTransports":[]}"#).unwrap(),
            Negotiated::Connection { connection_token, version: 0, .. } if connection_token == "abc"
        ));
        assert_eq!(
            Negotiated::parse(br#"{"url":"https://myapp.com/chat","accessToken":"accessToken"}"#)
                .unwrap(),
            Negotiated::Redirect {
                url: "https://myapp.com/chat".into(),
                access_token: Some("accessToken".into())
            }
        );
        assert_eq!(
            Negotiated::parse(br#"{"error":"This connection is not allowed."}"#).unwrap(),
            Negotiated::Error("This connection is not allowed.".into())
        );
        assert!(Negotiated::parse(br#"{"connectionId":"a","negotiateVersion":1}"#).is_err());
        assert!(Negotiated::parse(b"<html>").is_err());
    }
}
