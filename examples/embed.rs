//! Embed the broker: run it in the application, watch a client through a callback, publish
//! into the broker, see who is connected and kick a client.

use tinymqtt::broker::BrokerConfig;
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::tokio::{Client, Server};
use tinymqtt::{ProtocolVersion, QoS, TopicFilter, TopicName};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The broker, on a port the system picks.
    let broker = Server::bind(BrokerConfig::default(), &["127.0.0.1:0".parse()?]).await?;
    let addr = broker.local_addrs()[0];
    let handle = broker.handle();
    let running = tokio::spawn(broker.run());

    // A client whose events go to a callback (in a task of its own, one at a time).
    let mut config = ClientConfig::new(ProtocolVersion::V5, "sensor-1".try_into()?);
    config.reconnect = None;
    let (client, events) = Client::connect(addr, config).await?;
    let commands = TopicFilter::new("commands/#")?;
    client
        .subscribe(vec![Subscription::new(commands, QoS::AtLeastOnce)])
        .await?;
    let (gone, kicked) = tokio::sync::oneshot::channel();
    let mut gone = Some(gone);
    client.on_event(events, move |event| {
        match event {
            Event::Message(m) => {
                let payload = String::from_utf8_lossy(&m.publish.payload);
                println!("sensor-1 got {} {payload}", m.publish.topic);
            }
            Event::Disconnected { reason, .. } => {
                println!("sensor-1 disconnected: {}", reason.reason_code);
                gone.take().map(|g| g.send(()));
            }
            _ => {}
        }
        async {}
    });

    // The application publishes into its broker, routed like any client's message.
    let topic = TopicName::new("commands/sensor-1")?;
    handle
        .publish(Publish::new(topic, "calibrate").with_qos(QoS::AtLeastOnce))
        .await?;

    // Who is connected; then kick sensor-1 (MQTT 5: DISCONNECT 0x98 Administrative action).
    for c in handle.clients().await? {
        println!("connected: {} over {:?}", c.client_id, c.protocol);
    }
    handle.disconnect_client("sensor-1".try_into()?).await?;
    kicked.await?;

    handle.shutdown();
    running.await?;
    Ok(())
}
