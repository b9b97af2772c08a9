//! Connect over TLS by host name, subscribe, publish at QoS 1, read the message back.

use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::driver::transport::{Endpoint, TlsOptions};
use tinymqtt::runtimes::tokio::Client;
use tinymqtt::{ProtocolVersion, QoS, TopicFilter, TopicName};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The broker's URL, and a CA file (PEM) to trust besides Mozilla's roots, if any.
    let mut args = std::env::args().skip(1);
    let public = "mqtts://test.mosquitto.org:8886";
    let url = args.next().unwrap_or(public.into());
    let mut tls = TlsOptions::new();
    if let Some(ca) = args.next() {
        tls = tls.ca_file(ca);
    }
    let broker = Endpoint::parse(&url)?.tls(tls);
    let config = ClientConfig::new(ProtocolVersion::V5, "quickstart".try_into()?);
    let (client, events) = Client::connect_to(broker, config).await?;

    let filter = TopicFilter::new("tinymqtt/quickstart/#")?;
    client
        .subscribe(vec![Subscription::new(filter, QoS::AtLeastOnce)])
        .await?;

    let topic = TopicName::new("tinymqtt/quickstart/kitchen")?;
    let publish = Publish::new(topic, "21.5").with_qos(QoS::AtLeastOnce);
    // `publish` returns once the message is queued; `ack` once the broker has it.
    let ack = client.publish(publish).await?.ack().await?;
    println!("acknowledged: {:?}", ack.reason_code);

    while let Some(event) = events.recv().await {
        if let Event::Message(m) = event {
            let payload = String::from_utf8_lossy(&m.publish.payload);
            println!("{} {payload}", m.publish.topic);
            break;
        }
    }
    client.disconnect().await?;
    Ok(())
}
