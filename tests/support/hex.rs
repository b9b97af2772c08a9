//! `hex("32 09 00 03 'a/b' ...")`: packet bytes written as in the specification's figures,
//! shared by the client and broker test harnesses.

/// Bytes written as in the specification's figures: hex pairs, and ASCII in single quotes.
///
/// `hex("32 09 00 03 'a/b' 00 01 'hi'")` is a QoS 1 PUBLISH to `a/b` with id 1 and payload `hi`.
pub(crate) fn hex(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').expect("closing quote");
            out.extend_from_slice(&quoted.as_bytes()[..end]);
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let byte = u8::from_str_radix(&rest[..end], 16)
                .unwrap_or_else(|_| panic!("bad hex byte {:?} in {spec:?}", &rest[..end]));
            out.push(byte);
            rest = rest[end..].trim_start();
        }
    }
    out
}
