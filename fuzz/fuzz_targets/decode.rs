//! Any bytes, any version, any chunking: the decoder never panics, chunking never changes what
//! it returns, and every packet it returns encodes again to bytes that decode to the same packet.
//!
//! The first input byte picks the version (bits 0-1), the maximum packet size (bits 2-3) and
//! how the rest is cut into chunks (bits 4-7).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tinymqtt::codec::{DecodeError, Decoder, Encoder, Packet, MAX_PACKET_SIZE};
use tinymqtt::ProtocolVersion;

/// What a decoder made of a byte stream: the packets with their frame sizes, then the error
/// that stopped it (if any), then how many bytes it did not consume.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<(usize, Packet)>,
    error: Option<DecodeError>,
    left: usize,
}

/// Drains every whole packet from `buf` into `out`; false once the decoder has failed.
fn drain(decoder: &Decoder, buf: &mut BytesMut, out: &mut Outcome) -> bool {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a packet consumes bytes");
                out.packets.push((before - buf.len(), p));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) leaves the buffer untouched");
                return true;
            }
            Err(e) => {
                out.error = Some(e);
                return false;
            }
        }
    }
}

/// Feeds `data` to `decoder` in chunks whose sizes `next_chunk` picks.
fn run(decoder: &Decoder, data: &[u8], mut next_chunk: impl FnMut(usize) -> usize) -> Outcome {
    let mut out = Outcome {
        packets: Vec::new(),
        error: None,
        left: 0,
    };
    let mut buf = BytesMut::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = next_chunk(pos).clamp(1, data.len() - pos);
        buf.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        if !drain(decoder, &mut buf, &mut out) {
            break;
        }
    }
    out.left = buf.len() + (data.len() - pos);
    out
}

/// Encodes a decoded packet again and decodes the result.
fn check_reencodes(version: ProtocolVersion, frame_len: usize, packet: &Packet) {
    // CONNECT carries its own version.
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let encoder = Encoder::new(version);
    let mut wire = BytesMut::new();
    let written = match encoder.encode(packet, &mut wire) {
        Ok(n) => n,
        Err(e) => panic!("decoded packet is not encodable in {version}: {e}\n{packet:?}"),
    };
    assert_eq!(written, wire.len(), "encode returns the bytes written");
    assert_eq!(
        encoder.encoded_len(packet),
        Ok(written),
        "encoded_len is exact"
    );
    assert!(
        written <= frame_len,
        "re-encoded {written} bytes from a {frame_len}-byte frame: {packet:?}"
    );
    let again = Decoder::new(version).decode(&mut wire);
    assert_eq!(
        again.as_ref(),
        Ok(&Some(packet.clone())),
        "re-decoded packet differs"
    );
    assert!(wire.is_empty(), "re-encoded packet decodes whole");
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, data)) = data.split_first() else {
        return;
    };
    let version = match head & 0x03 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let max = match (head >> 2) & 0x03 {
        0 => MAX_PACKET_SIZE,
        1 => 2,
        2 => 64,
        _ => 1024,
    };
    let decoder = Decoder::new(version).with_max_packet_size(max);

    // The reference: everything at once.
    let whole = run(&decoder, data, |_| usize::MAX);

    // The same bytes in chunks: one byte at a time, or sizes taken from the data itself.
    let step = usize::from(head >> 4);
    let chunked = run(&decoder, data, |pos| match step {
        0 => 1,
        s => 1 + usize::from(data[pos]) % (4 * s),
    });
    assert_eq!(chunked, whole, "chunking changed the outcome");

    for (frame_len, packet) in &whole.packets {
        assert!(*frame_len as u64 <= u64::from(max), "packet over the limit");
        check_reencodes(version, *frame_len, packet);
    }
});
