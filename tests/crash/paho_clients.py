"""Real paho-mqtt clients for the broker crash test (tests/crash/paho.rs).

Usage: paho_clients.py PORT WINDOW

A persistent subscriber (clean session 0, `pcrash/q1` at QoS 1 and `pcrash/q2` at QoS 2)
and a persistent publisher (clean session 0, up to WINDOW messages unacknowledged,
alternating QoS 1 and QoS 2, unique payloads), both reconnecting by themselves while the
test kills and restarts the broker. Prints `READY` once the subscriber is subscribed and the
publisher runs; on a line `stop` on stdin the publisher stops, waits for what it has in
flight, the subscriber waits for what was acknowledged (and a moment more, to see
duplicates), and the script prints its figures and exits:

  PUBLISHED n            messages handed to paho
  ACKED seq,seq,...      completed with a success code (PUBACK, PUBCOMP)
  GOT seq:qos,...        every delivery, in arrival order
  DRAINED                (after the in-flight wait)
  SESSIONS a b           reconnects whose CONNACK said session present 0 (subscriber, publisher)
  DONE
"""

import collections
import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST = "127.0.0.1"


def client(name):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=name,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    c.reconnect_delay_set(min_delay=0.05, max_delay=0.3)
    return c


def main():
    port = int(sys.argv[1])
    window = int(sys.argv[2])
    lock = threading.RLock()
    got = []
    acked = set()
    lost_sessions = {"sub": 0, "pub": 0}
    subscribed = threading.Event()
    connected_once = {"sub": False, "pub": False}

    # The subscriber: subscribes on its first connection only; a later CONNACK without the
    # session is counted (the broker forgot what it had acknowledged).
    sub = client("paho-crash-sub")

    def on_sub_connect(c, _userdata, flags, reason_code, _props):
        if reason_code.is_failure:
            return
        with lock:
            first = not connected_once["sub"]
            connected_once["sub"] = True
            if not first and not flags.session_present:
                lost_sessions["sub"] += 1
        if first or not flags.session_present:
            c.subscribe([("pcrash/q1", 1), ("pcrash/q2", 2)])

    def on_subscribe(_c, _userdata, _mid, reason_codes, _props):
        if all(not rc.is_failure for rc in reason_codes):
            subscribed.set()

    def on_message(_c, _userdata, msg):
        with lock:
            got.append((int(msg.payload), msg.qos))

    sub.on_connect = on_sub_connect
    sub.on_subscribe = on_subscribe
    sub.on_message = on_message
    sub.connect_async(HOST, port, keepalive=10)
    sub.loop_start()
    if not subscribed.wait(10):
        print("ERROR the subscriber did not subscribe", flush=True)
        sys.exit(1)

    pub = client("paho-crash-pub")
    pub.max_inflight_messages_set(window)
    pub.max_queued_messages_set(0)
    # paho's message id -> seq, until paho reports it completed (PUBACK, PUBCOMP). Only this
    # thread touches it: paho's callback only appends to `completed`, so it never waits for
    # this thread while a publish here waits for paho.
    inflight = {}
    completed = collections.deque()

    def on_pub_connect(_c, _userdata, flags, reason_code, _props):
        if reason_code.is_failure:
            return
        with lock:
            if connected_once["pub"] and not flags.session_present:
                lost_sessions["pub"] += 1
            connected_once["pub"] = True

    def on_publish(_c, _userdata, mid, reason_code, _props):
        completed.append((mid, not reason_code.is_failure))

    def settle():
        # paho reports a completion before it frees the id for a later message: every
        # completion reported before a publish returned belongs to an earlier use of its id.
        while completed:
            mid, ok = completed.popleft()
            seq = inflight.pop(mid, None)
            if seq is not None and ok:
                acked.add(seq)

    pub.on_publish = on_publish
    pub.on_connect = on_pub_connect
    pub.connect_async(HOST, port, keepalive=10)
    pub.loop_start()

    stop = threading.Event()

    def read_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    print("READY", flush=True)

    published = 0
    while not stop.is_set():
        settle()
        if len(inflight) >= window:
            time.sleep(0.001)
            continue
        seq = published
        qos = 1 if seq % 2 == 0 else 2
        # paho keeps a message published while disconnected and sends it on reconnect.
        mid = pub.publish("pcrash/q%d" % qos, str(seq), qos=qos).mid
        settle()
        inflight[mid] = seq
        published += 1

    # Drain: what is in flight completes, then what was acknowledged arrives.
    end = time.monotonic() + 8
    while time.monotonic() < end and inflight:
        settle()
        time.sleep(0.02)
    print("DRAINED", flush=True)
    end = time.monotonic() + 8
    while time.monotonic() < end:
        with lock:
            seen = {s for s, _ in got}
        if acked <= seen:
            break
        time.sleep(0.02)
    time.sleep(0.5)  # a duplicate would come late
    pub.loop_stop()
    sub.loop_stop()
    with lock:
        print("PUBLISHED %d" % published)
        print("ACKED " + ",".join(str(s) for s in sorted(acked)))
        print("GOT " + ",".join("%d:%d" % g for g in got))
        print("UNFINISHED %d" % len(inflight))
        print("SESSIONS %d %d" % (lost_sessions["sub"], lost_sessions["pub"]))
        print("DONE", flush=True)


if __name__ == "__main__":
    main()
