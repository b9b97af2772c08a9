// MQTT.js over ws:// or wss:// against a broker on 127.0.0.1: subscribe, publish to itself at
// QoS 1, print OK when the message is back.
//
// usage: node mqttjs.js URL [CAFILE]

const fs = require('fs');
const mqtt = require('mqtt');

const [url, cafile] = process.argv.slice(2);
const options = { clientId: 'mqttjs-' + process.pid, reconnectPeriod: 0, connectTimeout: 10000 };
if (cafile) {
  options.ca = fs.readFileSync(cafile);
  options.rejectUnauthorized = true;
  options.wsOptions = { ca: options.ca, rejectUnauthorized: true };
}
const topic = 'mqttjs/' + process.pid;
const timer = setTimeout(() => {
  console.log('FAILED: no message within 10 s');
  process.exit(1);
}, 10000);
const client = mqtt.connect(url, options);
client.on('error', (e) => {
  console.log('FAILED: ' + e.message);
  process.exit(1);
});
client.on('connect', () => {
  client.subscribe(topic, { qos: 1 }, (err) => {
    if (err) {
      console.log('FAILED: subscribe ' + err.message);
      process.exit(1);
    }
    client.publish(topic, 'hello from mqtt.js', { qos: 1 });
  });
});
client.on('message', (t, payload) => {
  if (t === topic && payload.toString() === 'hello from mqtt.js') {
    clearTimeout(timer);
    console.log('OK');
    client.end(false, () => process.exit(0));
  }
});
