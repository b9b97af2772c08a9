//! The `[cluster]` table: a node's NATS servers and name, and their errors.

use super::*;

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_table_makes_the_broker_a_node() {
    let s = parse(
        "[cluster]\nnats = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]\n\
         node_id = \"a\"\n",
    );
    assert!(s.config.cluster, "the router's remote side is on");
    let c = s.options.cluster.as_ref().expect("a cluster config");
    assert_eq!(c.nats, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
    assert_eq!(c.node_id, "a");
    assert_eq!(c.prefix, "tinymqtt");
    assert_eq!(c.max_pending, 10_000);
    assert!(s.summary().iter().any(|l| l.contains("cluster node \"a\"")));
    let s = parse(
        "[cluster]\nnats = [\"127.0.0.1\"]\nnode_id = \"b\"\nprefix = \"site1\"\nmax_pending = 5\n",
    );
    let c = s.options.cluster.as_ref().unwrap();
    assert_eq!((c.prefix.as_str(), c.max_pending), ("site1", 5));
    let s = parse("");
    assert!(
        !s.config.cluster && s.options.cluster.is_none(),
        "a broker on its own"
    );
}

#[cfg(feature = "cluster")]
#[test]
fn every_invalid_cluster_value_names_its_key_and_its_place() {
    let ok = "nats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a\"\n";
    let cases = [
        (
            "nats = []\nnode_id = \"a\"\n".to_owned(),
            "cluster.nats",
            Invalid::Empty,
            "[]",
        ),
        (format!("{ok}node_id = \"a\"\n"), "", Invalid::Empty, ""),
        (
            "nats = [\"ftp://h:1\"]\nnode_id = \"a\"\n".to_owned(),
            "cluster.nats",
            Invalid::Empty,
            "[\"ftp://h:1\"]",
        ),
        (
            "nats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"\"\n".to_owned(),
            "cluster.node_id",
            Invalid::NodeId,
            "\"\"",
        ),
        (
            "nats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a b\"\n".to_owned(),
            "cluster.node_id",
            Invalid::NodeId,
            "\"a b\"",
        ),
        (
            format!("{ok}prefix = \"a.b\"\n"),
            "cluster.prefix",
            Invalid::ClusterPrefix,
            "\"a.b\"",
        ),
        (
            "nats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a.b\"\n".to_owned(),
            "cluster.node_id",
            Invalid::NodeId,
            "\"a.b\"",
        ),
        (
            format!("{ok}prefix = \">\"\n"),
            "cluster.prefix",
            Invalid::ClusterPrefix,
            "\">\"",
        ),
        (
            format!("{ok}max_pending = 0\n"),
            "cluster.max_pending",
            Invalid::Zero,
            "0",
        ),
    ];
    for (table, key, reason, at) in cases {
        let text = format!("[cluster]\n{table}");
        if key.is_empty() {
            // A key given twice is the TOML parser's error.
            assert!(matches!(error(&text), SettingsError::Toml { .. }), "{text}");
            continue;
        }
        let (k, r, a) = invalid(&text);
        assert_eq!(k, key, "{text}");
        if matches!(reason, Invalid::Empty) && at != "[]" {
            assert!(matches!(r, Invalid::NatsUrl { .. }), "{text}: {r:?}");
        } else {
            assert_eq!(r, reason, "{text}");
        }
        assert_eq!(a, at, "{text}");
    }
    assert!(
        matches!(
            error("[cluster]\nnode_id = \"a\"\n"),
            SettingsError::Toml { .. }
        ),
        "nats is required"
    );
    assert!(
        matches!(
            error("[cluster]\nnats = [\"nats://h:1\"]\nnode_id = \"a\"\nnodes = 1\n"),
            SettingsError::Toml { .. }
        ),
        "unknown keys are refused"
    );
}

#[cfg(not(feature = "cluster"))]
#[test]
fn a_cluster_table_needs_the_cluster_feature() {
    let (key, reason, _) =
        invalid("[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a\"\n");
    assert_eq!((key, reason), ("cluster.nats", Invalid::NeedsCluster));
}
