"""paho-mqtt over TLS or WebSocket against a broker on 127.0.0.1: subscribe, publish to itself
at QoS 1, print OK when the message is back.

usage: paho_transports.py tls|ws|wss PORT CAFILE [CERT KEY]
"""

import ssl
import sys
import threading

import paho.mqtt.client as mqtt

mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cert = sys.argv[4] if len(sys.argv) > 5 else None
key = sys.argv[5] if len(sys.argv) > 5 else None
done = threading.Event()
failed = []

transport = "websockets" if mode in ("ws", "wss") else "tcp"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{mode}", transport=transport,
                protocol=mqtt.MQTTv5)
if mode in ("ws", "wss"):
    c.ws_set_options(path="/mqtt")
if mode in ("tls", "wss"):
    c.tls_set(ca_certs=cafile, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)


def on_connect(client, userdata, flags, reason, properties):
    if reason.is_failure:
        failed.append(f"connect refused: {reason}")
        done.set()
        return
    client.subscribe(f"paho/{mode}", qos=1)


def on_subscribe(client, userdata, mid, reasons, properties):
    client.publish(f"paho/{mode}", b"hello over " + mode.encode(), qos=1)


def on_message(client, userdata, msg):
    if msg.payload == b"hello over " + mode.encode():
        done.set()


c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("localhost", port, keepalive=30)
c.loop_start()
ok = done.wait(10)
c.disconnect()
c.loop_stop()
if failed or not ok:
    print("FAILED", failed or "no message within 10 s")
    sys.exit(1)
print("OK")
