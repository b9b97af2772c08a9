#!/usr/bin/env python3
"""MQTT 5 interoperability checks with paho-mqtt against a broker on 127.0.0.1.

Usage: paho_v5.py --port PORT [--host 127.0.0.1]

Each check prints `PASS name` or `FAIL name: why`; the last line is `N passed, N failed` and the
exit status is non-zero when any check failed. Every wait is bounded, so a broker that does not
answer fails the check instead of hanging it.
"""

import argparse
import queue
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 5.0


class Peer:
    """A paho MQTT 5 client whose callbacks feed queues the checks read with timeouts."""

    def __init__(self, host, port, name, clean_start=True, connect_props=None):
        self.client_id = f"paho-{name}-{uuid.uuid4().hex[:8]}"
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.connack = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put((rc, p))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.acks.put(("sub", mid, rcs))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put(("pub", mid, rc))
        self.c.connect(host, port, keepalive=30, clean_start=clean_start, properties=connect_props)
        self.c.loop_start()
        rc, props = self.connack.get(timeout=WAIT)
        if rc.is_failure:
            raise AssertionError(f"{name}: CONNACK refused: {rc}")
        self.connack_props = props

    def subscribe(self, topic, qos=1, sub_id=None):
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        _, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos), properties=props)
        self.wait_ack("sub", mid)

    def publish(self, topic, payload, qos=1, retain=False, **props):
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)
            for key, value in props.items():
                setattr(properties, key, value)
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0:
            self.wait_ack("pub", info.mid)

    def wait_ack(self, kind, mid):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                got = self.acks.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got[0] == kind and got[1] == mid:
                return got
        raise AssertionError(f"no {kind} ack for mid {mid}")

    def message(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message arrived") from None

    def no_message(self, timeout=1.0):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def prop(message, name, default=None):
    return getattr(message.properties, name, default) if message.properties else default


def check_user_properties(host, port, t):
    sub = Peer(host, port, "up-sub")
    pub = Peer(host, port, "up-pub")
    try:
        sub.subscribe(f"{t}/up")
        pairs = [("colour", "blue"), ("size", "9"), ("colour", "red")]
        pub.publish(f"{t}/up", b"x", UserProperty=pairs)
        m = sub.message()
        got = prop(m, "UserProperty", [])
        assert got == pairs, f"user properties {got!r}, sent {pairs!r}"
    finally:
        sub.close()
        pub.close()


def check_subscription_identifiers(host, port, t):
    sub = Peer(host, port, "si-sub")
    pub = Peer(host, port, "si-pub")
    try:
        sub.subscribe(f"{t}/si/+", sub_id=7)
        sub.subscribe(f"{t}/si/#", sub_id=9)
        pub.publish(f"{t}/si/a", b"x")
        seen = set()
        first = sub.message()
        seen.update(prop(first, "SubscriptionIdentifier", []))
        # One copy with both identifiers, or one copy per subscription (MQTT-3.3.4-4/5).
        if seen != {7, 9}:
            second = sub.message()
            seen.update(prop(second, "SubscriptionIdentifier", []))
        assert seen == {7, 9}, f"subscription identifiers {seen!r}, want {{7, 9}}"
        sub.no_message(0.5)
    finally:
        sub.close()
        pub.close()


def check_topic_alias(host, port, t):
    sub = Peer(host, port, "ta-sub")
    pub = Peer(host, port, "ta-pub")
    try:
        maximum = prop(_connack(pub), "TopicAliasMaximum", 0)
        assert maximum >= 1, f"broker announced topic alias maximum {maximum}"
        sub.subscribe(f"{t}/ta/#")
        pub.publish(f"{t}/ta/x", b"one", TopicAlias=1)
        pub.publish("", b"two", TopicAlias=1)
        got = [(m.topic, m.payload) for m in (sub.message(), sub.message())]
        want = [(f"{t}/ta/x", b"one"), (f"{t}/ta/x", b"two")]
        assert got == want, f"aliased publishes arrived as {got!r}"
    finally:
        sub.close()
        pub.close()


def _connack(peer):
    class Wrapped:
        properties = peer.connack_props

    return Wrapped


def check_message_expiry(host, port, t):
    pub = Peer(host, port, "me-pub")
    try:
        pub.publish(f"{t}/me/short", b"gone", retain=True, MessageExpiryInterval=1)
        pub.publish(f"{t}/me/long", b"kept", retain=True, MessageExpiryInterval=60)
        time.sleep(2.2)
        sub = Peer(host, port, "me-sub")
        try:
            sub.subscribe(f"{t}/me/#")
            m = sub.message()
            assert m.topic == f"{t}/me/long", f"got retained {m.topic}, the short one had expired"
            left = prop(m, "MessageExpiryInterval")
            assert left is not None and 55 <= left <= 58, f"forwarded expiry {left}, want 60 minus 2"
            sub.no_message(0.5)
        finally:
            sub.close()
        pub.publish(f"{t}/me/long", b"", retain=True)
    finally:
        pub.close()


def check_request_response(host, port, t):
    requester = Peer(host, port, "rr-req")
    responder = Peer(host, port, "rr-resp")
    try:
        responder.subscribe(f"{t}/rr/request")
        requester.subscribe(f"{t}/rr/reply")
        requester.publish(
            f"{t}/rr/request",
            b"ping",
            ResponseTopic=f"{t}/rr/reply",
            CorrelationData=b"\x00\x01corr",
            ContentType="text/plain",
            PayloadFormatIndicator=1,
        )
        req = responder.message()
        assert prop(req, "ResponseTopic") == f"{t}/rr/reply", "response topic lost"
        assert prop(req, "CorrelationData") == b"\x00\x01corr", "correlation data lost"
        assert prop(req, "ContentType") == "text/plain", "content type lost"
        assert prop(req, "PayloadFormatIndicator") == 1, "payload format indicator lost"
        responder.publish(
            prop(req, "ResponseTopic"), b"pong", CorrelationData=prop(req, "CorrelationData")
        )
        reply = requester.message()
        assert reply.payload == b"pong", f"reply {reply.payload!r}"
        assert prop(reply, "CorrelationData") == b"\x00\x01corr", "reply correlation data lost"
    finally:
        requester.close()
        responder.close()


def check_session_expiry_resume(host, port, t):
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    sub = Peer(host, port, "se-sub", clean_start=True, connect_props=props)
    client_id = sub.client_id
    sub.subscribe(f"{t}/se", qos=1)
    sub.close()
    pub = Peer(host, port, "se-pub")
    try:
        pub.publish(f"{t}/se", b"while away", qos=1)
    finally:
        pub.close()
    again = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    got = queue.Queue()
    present = queue.Queue()
    again.on_connect = lambda c, u, f, rc, p: present.put(f.session_present)
    again.on_message = lambda c, u, m: got.put(m)
    again.connect(host, port, clean_start=False, properties=props)
    again.loop_start()
    try:
        assert present.get(timeout=WAIT), "session present was 0 on resume"
        m = got.get(timeout=WAIT)
        assert m.payload == b"while away" and m.qos == 1, f"queued message {m.payload!r} qos {m.qos}"
    finally:
        end = Properties(PacketTypes.DISCONNECT)
        end.SessionExpiryInterval = 0
        again.disconnect(properties=end)
        again.loop_stop()


CHECKS = [
    check_user_properties,
    check_subscription_identifiers,
    check_topic_alias,
    check_message_expiry,
    check_request_response,
    check_session_expiry_resume,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if not (args.host.startswith("127.") or args.host in ("localhost", "::1")):
        parser.error("interop checks only run against loopback")
    topic_root = f"interop/{uuid.uuid4().hex[:8]}"
    passed = failed = 0
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            check(args.host, args.port, topic_root)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        else:
            passed += 1
            print(f"PASS {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
