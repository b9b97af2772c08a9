//! Arbitrary bytes as a session image from another node of a cluster. Decoding must never
//! panic; what decodes must encode to bytes that decode to it again, and must import into a
//! router (or be refused with a typed error) without a panic, then export from it again.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use tinymqtt::broker::cluster::{Export, SessionImage};
use tinymqtt::broker::{Broker, BrokerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(image) = SessionImage::decode(data) else {
        return;
    };
    let again = image.encode().expect("a decoded image encodes");
    assert_eq!(SessionImage::decode(&again).as_ref(), Ok(&image));
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut broker = Broker::new(BrokerConfig::default().with_cluster(true));
    let id = image.client_id().clone();
    if broker.import_session(now, image).is_ok() {
        assert!(matches!(
            broker.export_session(now, &id),
            Export::Ready(_) | Export::Absent
        ));
    }
});
