//! Subscribe, publish at QoS 1, read the message back (with a broker on 127.0.0.1:1883).

use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::tokio::Client;
use tinymqtt::{ProtocolVersion, QoS, TopicFilter, TopicName};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A broker at 127.0.0.1:1883 (or the address given as the first argument).
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:1883".into());
    let config = ClientConfig::new(ProtocolVersion::V5, "quickstart".try_into()?);
    let (client, events) = Client::connect(addr.parse()?, config).await?;

    let filter = TopicFilter::new("sensors/#")?;
    client
        .subscribe(vec![Subscription::new(filter, QoS::AtLeastOnce)])
        .await?;

    let publish =
        Publish::new(TopicName::new("sensors/kitchen")?, "21.5").with_qos(QoS::AtLeastOnce);
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
