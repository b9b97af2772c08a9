//! MQTT 5 features between the broker and the real client: topic aliases towards the client,
//! response information, server redirection and the connection limit, under seeded chunking.

use tinymqtt::broker::{BrokerConfig, Redirect};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

use crate::sim::{config, msg, s, Sim};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn mqtt_3_3_2_11_v5_client_resolves_the_brokers_outbound_aliases_under_chunking() {
    const TOPICS: [&str; 5] = [
        "s/building-1/floor-2/room-a",
        "s/building-1/floor-2/room-b",
        "s/building-1/floor-2/room-c",
        "s/building-1/floor-2/room-d",
        "s/building-1/floor-2/room-e",
    ];
    for seed in 0..8 {
        let mut sent = Vec::new();
        for aliases in [0, 3] {
            let bc = BrokerConfig::default().with_outbound_topic_aliases(aliases);
            let mut sim = Sim::new(bc, 700 + seed);
            let mut c = config(V5, "sub");
            c.properties.topic_alias_maximum = Some(2);
            let sub = sim.connected(c);
            sim.subscribe(sub, &[("s/#", QoS::AtLeastOnce)]);
            let publisher = sim.connected(config(V5, "pub"));
            let mut expected = Vec::new();
            for i in 0..20 {
                let t = TOPICS[(i * 7 + seed as usize) % TOPICS.len()];
                sim.publish_settled(publisher, msg(t, i.to_string(), QoS::AtLeastOnce));
                expected.push((t.to_owned(), i.to_string()));
            }
            sim.settle();
            let got: Vec<(String, String)> = sim
                .messages(sub)
                .iter()
                .map(|p| {
                    (
                        p.topic.to_string(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "seed {seed}, {aliases} aliases");
            sent.push(sim.broker.stats().bytes_sent);
        }
        // The same messages took fewer bytes with aliases: they were used.
        assert!(sent[1] < sent[0], "seed {seed}: bytes sent {sent:?}");
    }
}

#[test]
fn mqtt_3_1_2_28_v5_client_gets_response_information_when_it_asks() {
    let bc = BrokerConfig::default().with_response_information(Some(s("responses/")));
    let mut sim = Sim::new(bc, 720);
    let mut c = config(V5, "asker");
    c.properties.request_response_information = Some(true);
    let asker = sim.add_client(c);
    let (_, props) = sim.connect(asker);
    assert_eq!(props.response_information, Some(s("responses/")));
    let quiet = sim.add_client(config(V5, "quiet"));
    let (_, props) = sim.connect(quiet);
    assert_eq!(props.response_information, None);
}

#[test]
fn v5_redirected_client_is_refused_with_use_another_server() {
    let bc = BrokerConfig::default().with_redirect(Some(Redirect {
        server_reference: s("elsewhere:1883"),
        permanent: false,
    }));
    let mut sim = Sim::new(bc, 721);
    for (v, code) in [
        (V5, ReasonCode::UseAnotherServer),
        (V311, ReasonCode::ServerUnavailable),
    ] {
        let mut c = config(v, "wanderer");
        c.reconnect = None;
        let cl = sim.add_client(c);
        let reason = sim.try_connect(cl).expect_err("redirected");
        assert_eq!(reason.reason_code, code, "{v:?}");
    }
}

#[test]
fn max_connections_refuses_the_client_beyond_the_limit_and_serves_the_others() {
    let bc = BrokerConfig::default().with_max_connections(Some(2));
    let mut sim = Sim::new(bc, 722);
    let a = sim.connected(config(V5, "a"));
    let b = sim.connected(config(V311, "b"));
    sim.subscribe(b, &[("x", QoS::AtLeastOnce)]);
    let mut c = config(V5, "c");
    c.reconnect = None;
    let c = sim.add_client(c);
    let reason = sim.try_connect(c).expect_err("over the limit");
    assert_eq!(reason.reason_code, ReasonCode::QuotaExceeded);
    sim.publish_settled(a, msg("x", "still served", QoS::AtLeastOnce));
    assert_eq!(sim.messages(b).len(), 1);
}
