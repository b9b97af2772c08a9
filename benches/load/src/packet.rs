//! Hand-encoded MQTT 3.1.1 / 5.0 packets: what the load tool sends, and a minimal frame reader for
//! what it receives; a publisher's PUBLISH is encoded once and only its ids and stamps are patched.

use std::fmt;

/// CONNACK's packet type byte.
pub const CONNACK: u8 = 0x20;
/// PUBLISH's packet type (the high nibble).
pub const PUBLISH: u8 = 0x30;
/// PUBACK's first byte.
pub const PUBACK: u8 = 0x40;
/// PUBREC's first byte.
pub const PUBREC: u8 = 0x50;
/// PUBREL's first byte (with its mandatory flags).
pub const PUBREL: u8 = 0x62;
/// PUBCOMP's first byte.
pub const PUBCOMP: u8 = 0x70;
/// SUBSCRIBE's first byte (with its mandatory flags).
pub const SUBSCRIBE: u8 = 0x82;
/// SUBACK's first byte.
pub const SUBACK: u8 = 0x90;
/// PINGREQ's first byte.
pub const PINGREQ: u8 = 0xC0;
/// PINGRESP's first byte.
pub const PINGRESP: u8 = 0xD0;
/// DISCONNECT's first byte.
pub const DISCONNECT: u8 = 0xE0;
/// CONNECT's first byte.
pub const CONNECT: u8 = 0x10;

/// The bytes at the start of every payload: publisher id (u32), sequence number (u64) and the
/// send time in nanoseconds since the tool started (u64), all big-endian.
pub const STAMP_LEN: usize = 20;

/// The MQTT protocol level the tool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1 (level 4).
    V4,
    /// MQTT 5.0 (level 5).
    V5,
}

impl Protocol {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V4 => 4,
            Protocol::V5 => 5,
        }
    }
}

/// A malformed or unexpected packet from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn err<T>(msg: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(msg.into()))
}

/// Appends MQTT's variable byte integer encoding of `len`.
pub fn put_varint(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A CONNECT with a clean session, no will, no credentials.
pub fn connect(client_id: &str, protocol: Protocol, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + client_id.len());
    put_str(&mut body, "MQTT");
    body.push(protocol.level());
    body.push(0x02); // clean session / clean start
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if protocol == Protocol::V5 {
        // Receive Maximum 65535: the broker's own cap decides.
        body.extend_from_slice(&[3, 0x21, 0xFF, 0xFF]);
    }
    put_str(&mut body, client_id);
    frame(CONNECT, &body)
}

/// A SUBSCRIBE of one filter at `qos`.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8, protocol: Protocol) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + filter.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    if protocol == Protocol::V5 {
        body.push(0);
    }
    put_str(&mut body, filter);
    body.push(qos);
    frame(SUBSCRIBE, &body)
}

/// A DISCONNECT (normal disconnection).
pub fn disconnect() -> Vec<u8> {
    vec![DISCONNECT, 0]
}

/// Appends a 2-byte acknowledgement (`first` is PUBACK, PUBREC, PUBREL or PUBCOMP).
pub fn put_ack(out: &mut Vec<u8>, first: u8, packet_id: u16) {
    let id = packet_id.to_be_bytes();
    out.extend_from_slice(&[first, 2, id[0], id[1]]);
}

/// One publisher's PUBLISH, encoded once; `write` patches the packet id and payload stamp.
#[derive(Clone, Debug)]
pub struct PublishTemplate {
    buf: Vec<u8>,
    packet_id_at: Option<usize>,
    stamp_at: usize,
}

impl PublishTemplate {
    /// Encodes a PUBLISH of `payload_len` bytes (at least `STAMP_LEN`) from publisher `publisher`.
    pub fn new(
        topic: &str,
        qos: u8,
        payload_len: usize,
        protocol: Protocol,
        publisher: u32,
    ) -> Result<Self, String> {
        if payload_len < STAMP_LEN {
            return Err(format!("the payload must be at least {STAMP_LEN} bytes"));
        }
        if qos > 2 {
            return Err(format!("qos {qos} is not 0, 1 or 2"));
        }
        let mut body = Vec::with_capacity(topic.len() + payload_len + 8);
        put_str(&mut body, topic);
        let packet_id_at = if qos > 0 {
            body.extend_from_slice(&[0, 0]);
            Some(body.len() - 2)
        } else {
            None
        };
        if protocol == Protocol::V5 {
            body.push(0);
        }
        let stamp_at_body = body.len();
        body.extend_from_slice(&publisher.to_be_bytes());
        body.resize(body.len() + payload_len - 4, b'x');
        let buf = frame(PUBLISH | (qos << 1), &body);
        let header = buf.len() - body.len();
        Ok(Self {
            packet_id_at: packet_id_at.map(|at| at + header),
            stamp_at: stamp_at_body + header,
            buf,
        })
    }

    /// The encoded length of one PUBLISH.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends the PUBLISH with this packet id (ignored at QoS 0), sequence number and send time.
    pub fn write(&self, out: &mut Vec<u8>, packet_id: u16, seq: u64, sent_nanos: u64) {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        let packet = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            packet[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let at = self.stamp_at + 4;
        packet[at..at + 8].copy_from_slice(&seq.to_be_bytes());
        packet[at + 8..at + 16].copy_from_slice(&sent_nanos.to_be_bytes());
    }
}

/// The stamp at the start of a received payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Which publisher sent it.
    pub publisher: u32,
    /// The publisher's sequence number, from 0.
    pub seq: u64,
    /// The send time in nanoseconds since the tool started.
    pub sent_nanos: u64,
}

/// Reads the stamp at the start of a payload, if it is long enough.
pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    Some(Stamp {
        publisher: u32::from_be_bytes(payload[0..4].try_into().ok()?),
        seq: u64::from_be_bytes(payload[4..12].try_into().ok()?),
        sent_nanos: u64::from_be_bytes(payload[12..20].try_into().ok()?),
    })
}

/// One complete packet in a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The first byte (type and flags).
    pub first: u8,
    /// The bytes after the remaining length.
    pub body: &'a [u8],
}

/// The largest packet the tool accepts from a peer.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Splits the first complete packet off `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        len |= ((byte & 0x7F) as usize) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return err("malformed remaining length");
        }
    }
    if len > MAX_PACKET {
        return err(format!("packet of {len} bytes is too large"));
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            first: buf[0],
            body: &buf[i..i + len],
        },
        i + len,
    )))
}

/// The parts of a received PUBLISH the tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The QoS of this delivery.
    pub qos: u8,
    /// The DUP flag.
    pub dup: bool,
    /// The packet id (0 at QoS 0).
    pub packet_id: u16,
    /// The application payload.
    pub payload: &'a [u8],
}

fn read_varint(buf: &[u8]) -> Result<(usize, usize), WireError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    err("malformed variable byte integer")
}

/// Parses a PUBLISH frame's body.
pub fn parse_publish(frame: Frame<'_>, protocol: Protocol) -> Result<Publish<'_>, WireError> {
    let qos = (frame.first >> 1) & 3;
    if qos == 3 {
        return err("publish with qos 3");
    }
    let body = frame.body;
    if body.len() < 2 {
        return err("publish too short");
    }
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2 + topic_len;
    let mut packet_id = 0;
    if qos > 0 {
        if body.len() < at + 2 {
            return err("publish too short");
        }
        packet_id = u16::from_be_bytes([body[at], body[at + 1]]);
        at += 2;
    }
    if protocol == Protocol::V5 {
        let (props, n) = read_varint(body.get(at..).unwrap_or(&[]))?;
        at += n + props;
    }
    let Some(payload) = body.get(at..) else {
        return err("publish too short");
    };
    Ok(Publish {
        qos,
        dup: frame.first & 0x08 != 0,
        packet_id,
        payload,
    })
}

/// The packet id at the start of an acknowledgement's body.
pub fn ack_packet_id(frame: Frame<'_>) -> Result<u16, WireError> {
    match frame.body {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => err("acknowledgement too short"),
    }
}

/// The reason code of a 5.0 acknowledgement (success when absent); 3.1.1 acks always succeed.
pub fn ack_reason(frame: Frame<'_>) -> u8 {
    frame.body.get(2).copied().unwrap_or(0)
}

/// What a CONNACK said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connack {
    /// The return code (3.1.1) or reason code (5.0); 0 is success.
    pub code: u8,
    /// The broker's Receive Maximum (5.0), 65535 when absent.
    pub receive_maximum: u16,
}

/// Parses a CONNACK body.
pub fn parse_connack(frame: Frame<'_>, protocol: Protocol) -> Result<Connack, WireError> {
    if frame.first != CONNACK || frame.body.len() < 2 {
        return err(format!("expected connack, got 0x{:02x}", frame.first));
    }
    let code = frame.body[1];
    let mut receive_maximum = u16::MAX;
    if protocol == Protocol::V5 && frame.body.len() > 2 {
        let (len, n) = read_varint(&frame.body[2..])?;
        let start = 2 + n;
        let props = frame
            .body
            .get(start..start + len)
            .ok_or_else(|| WireError("connack properties too short".into()))?;
        if let Some(value) = find_u16_property(props, 0x21)? {
            receive_maximum = value;
        }
    }
    Ok(Connack {
        code,
        receive_maximum,
    })
}

/// Finds a two-byte property in a 5.0 property list, skipping the others by their types.
fn find_u16_property(mut props: &[u8], wanted: u8) -> Result<Option<u16>, WireError> {
    let short = || WireError("truncated property".into());
    while let Some((&id, rest)) = props.split_first() {
        let skip = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => {
                let v = rest.get(..2).ok_or_else(short)?;
                if id == wanted {
                    return Ok(Some(u16::from_be_bytes([v[0], v[1]])));
                }
                2
            }
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => read_varint(rest)?.1,
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                let v = rest.get(..2).ok_or_else(short)?;
                2 + u16::from_be_bytes([v[0], v[1]]) as usize
            }
            0x26 => {
                let v = rest.get(..2).ok_or_else(short)?;
                let k = 2 + u16::from_be_bytes([v[0], v[1]]) as usize;
                let w = rest.get(k..k + 2).ok_or_else(short)?;
                k + 2 + u16::from_be_bytes([w[0], w[1]]) as usize
            }
            _ => return err(format!("unknown property 0x{id:02x}")),
        };
        props = rest.get(skip..).ok_or_else(short)?;
    }
    Ok(None)
}

/// The protocol level of a CONNECT body, if it is long enough to say.
pub fn connect_level(body: &[u8]) -> Option<u8> {
    let name_len = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    body.get(2 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encodes_the_spec_examples() {
        for (value, bytes) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(read_varint(&out), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn connect_3_1_1_is_byte_exact() {
        let packet = connect("ab", Protocol::V4, 30);
        assert_eq!(
            packet,
            [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, b'a', b'b']
        );
        let (frame, used) = next_frame(&packet).unwrap().unwrap();
        assert_eq!(used, packet.len());
        assert_eq!(connect_level(frame.body), Some(4));
    }

    #[test]
    fn connect_5_carries_receive_maximum() {
        let packet = connect("c", Protocol::V5, 0);
        let (frame, _) = next_frame(&packet).unwrap().unwrap();
        assert_eq!(connect_level(frame.body), Some(5));
        assert_eq!(&frame.body[10..14], &[3, 0x21, 0xFF, 0xFF]);
    }

    #[test]
    fn subscribe_has_reserved_flags_and_options() {
        assert_eq!(
            subscribe(7, "a/#", 1, Protocol::V4),
            [0x82, 8, 0, 7, 0, 3, b'a', b'/', b'#', 1]
        );
        assert_eq!(
            subscribe(7, "a", 2, Protocol::V5),
            [0x82, 7, 0, 7, 0, 0, 1, b'a', 2]
        );
    }

    #[test]
    fn publish_template_patches_id_and_stamp_and_parses_back() {
        for protocol in [Protocol::V4, Protocol::V5] {
            for qos in 0..=2u8 {
                let template = PublishTemplate::new("t/1", qos, 64, protocol, 9).unwrap();
                let mut out = vec![0xAA]; // patching must respect what is already buffered
                template.write(&mut out, 513, 42, 1_000_000_007);
                template.write(&mut out, 514, 43, 5);
                assert_eq!(out.len(), 1 + 2 * template.len());
                let (frame, used) = next_frame(&out[1..]).unwrap().unwrap();
                assert_eq!(used, template.len());
                let publish = parse_publish(frame, protocol).unwrap();
                assert_eq!(publish.qos, qos);
                assert_eq!(publish.packet_id, if qos > 0 { 513 } else { 0 });
                assert_eq!(publish.payload.len(), 64);
                let stamp = read_stamp(publish.payload).unwrap();
                assert_eq!(
                    stamp,
                    Stamp {
                        publisher: 9,
                        seq: 42,
                        sent_nanos: 1_000_000_007
                    }
                );
                let (frame, _) = next_frame(&out[1 + used..]).unwrap().unwrap();
                let second = read_stamp(parse_publish(frame, protocol).unwrap().payload).unwrap();
                assert_eq!((second.seq, second.sent_nanos), (43, 5));
            }
        }
    }

    #[test]
    fn publish_template_rejects_a_payload_without_room_for_the_stamp() {
        assert!(PublishTemplate::new("t", 1, STAMP_LEN - 1, Protocol::V4, 0).is_err());
        assert!(PublishTemplate::new("t", 3, 64, Protocol::V4, 0).is_err());
    }

    #[test]
    fn next_frame_waits_for_a_whole_packet() {
        let mut buf = Vec::new();
        put_ack(&mut buf, PUBACK, 0x0102);
        assert_eq!(buf, [0x40, 2, 1, 2]);
        assert_eq!(next_frame(&buf[..3]), Ok(None));
        assert_eq!(next_frame(&[0x30, 0x80]), Ok(None));
        let (frame, used) = next_frame(&buf).unwrap().unwrap();
        assert_eq!((frame.first, used), (PUBACK, 4));
        assert_eq!(ack_packet_id(frame), Ok(0x0102));
        assert_eq!(ack_reason(frame), 0);
        assert!(next_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    }

    #[test]
    fn connack_5_reads_receive_maximum_past_other_properties() {
        // session expiry (u32), assigned client id (string), receive maximum (u16)
        let props = [0x11, 0, 0, 0, 5, 0x12, 0, 2, b'i', b'd', 0x21, 0, 10];
        let mut body = vec![0, 0];
        put_varint(&mut body, props.len());
        body.extend_from_slice(&props);
        let packet = frame(CONNACK, &body);
        let (frame, _) = next_frame(&packet).unwrap().unwrap();
        assert_eq!(
            parse_connack(frame, Protocol::V5),
            Ok(Connack {
                code: 0,
                receive_maximum: 10
            })
        );
        let refused = [CONNACK, 2, 0, 5];
        let (frame, _) = next_frame(&refused).unwrap().unwrap();
        assert_eq!(parse_connack(frame, Protocol::V4).unwrap().code, 5);
    }
}
