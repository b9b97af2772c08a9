"""A paho-mqtt MQTT 5 subscriber for the cluster tests (tests/cluster/routing.rs).

Usage: paho_sub.py PORT FILTER QOS

Prints `READY` once subscribed, then one line per message:

  MSG <topic> <qos> <content type or -> <user properties as k=v,k=v or -> <payload>
"""

import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes  # noqa: F401 (MQTT 5 properties)


def main():
    port, flt, qos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    subscribed = threading.Event()
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="paho-cluster-sub",
        protocol=mqtt.MQTTv5,
    )

    def on_connect(c, _userdata, _flags, reason_code, _props):
        if not reason_code.is_failure:
            c.subscribe(flt, qos=qos)

    def on_subscribe(_c, _userdata, _mid, _codes, _props):
        subscribed.set()

    def on_message(_c, _userdata, m):
        props = m.properties
        ct = getattr(props, "ContentType", None) or "-"
        up = getattr(props, "UserProperty", None) or []
        ups = ",".join(f"{k}={v}" for k, v in up) or "-"
        print(f"MSG {m.topic} {m.qos} {ct} {ups} {m.payload.decode()}", flush=True)

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not subscribed.wait(10):
        print("NOT SUBSCRIBED", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    # Until the test kills it (bounded by the test's own deadlines).
    threading.Event().wait(60)


if __name__ == "__main__":
    main()
