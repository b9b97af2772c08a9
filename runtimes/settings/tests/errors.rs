//! Every error of the settings file: the key, the reason and the place it names.

use super::*;

#[test]
fn every_invalid_value_names_its_key_its_reason_and_its_place() {
    use Invalid::*;
    let ten_years_and_a_second = MAX_SECS + 1;
    let cases: Vec<(String, &str, Invalid, &str)> = vec![
        (
            "max_connections = -2".into(),
            "max_connections",
            NotACount,
            "-2",
        ),
        (
            "max_packet_size = 1".into(),
            "max_packet_size",
            PacketSizeTooSmall,
            "1",
        ),
        (
            "message_size_limit = 1".into(),
            "message_size_limit",
            PacketSizeTooSmall,
            "1",
        ),
        (
            "[limits]\nmax_connect_size = 1".into(),
            "limits.max_connect_size",
            PacketSizeTooSmall,
            "1",
        ),
        ("max_keepalive = 0".into(), "max_keepalive", Zero, "0"),
        (
            "[limits]\nreceive_maximum = 0".into(),
            "limits.receive_maximum",
            Zero,
            "0",
        ),
        (
            format!("sys_interval = {ten_years_and_a_second}"),
            "sys_interval",
            TooLong,
            "315360001",
        ),
        (
            "sys_interval = 18446744073709551615".into(),
            "sys_interval",
            TooLong,
            "18446744073709551615",
        ),
        (
            "[limits]\nconnect_timeout_secs = 9999999999999".into(),
            "limits.connect_timeout_secs",
            TooLong,
            "9999999999999",
        ),
        (
            "[limits]\nawait_rel_timeout_secs = 9999999999999".into(),
            "limits.await_rel_timeout_secs",
            TooLong,
            "9999999999999",
        ),
        (
            "[limits]\nawait_rel_timeout_secs = 0".into(),
            "limits.await_rel_timeout_secs",
            Zero,
            "0",
        ),
        (
            "persistent_client_expiration = \"14x\"".into(),
            "persistent_client_expiration",
            Expiration,
            "\"14x\"",
        ),
        (
            "persistent_client_expiration = 0".into(),
            "persistent_client_expiration",
            Expiration,
            "0",
        ),
        (
            "persistent_client_expiration = true".into(),
            "persistent_client_expiration",
            Expiration,
            "true",
        ),
        (
            "persistent_client_expiration = \"11y\"".into(),
            "persistent_client_expiration",
            TooLong,
            "\"11y\"",
        ),
        (
            "metrics_listener = \"localhost\"".into(),
            "metrics_listener",
            Address {
                text: "localhost".into(),
            },
            "\"localhost\"",
        ),
        (
            "listeners = [\"nowhere\"]".into(),
            "listeners",
            Address {
                text: "nowhere".into(),
            },
            "\"nowhere\"",
        ),
        (
            "[[listener]]\nbind = \"no port\"".into(),
            "listener.bind",
            Address {
                text: "no port".into(),
            },
            "\"no port\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"mqtts\"".into(),
            "listener.protocol",
            Protocol,
            "\"mqtts\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\ncertfile = \"c\"".into(),
            "listener.certfile",
            CertificateWithoutKey,
            "\"127.0.0.1:1\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\nkeyfile = \"k\"".into(),
            "listener.certfile",
            CertificateWithoutKey,
            "\"127.0.0.1:1\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\ncafile = \"ca\"".into(),
            "listener.cafile",
            NeedsCaFile,
            "\"127.0.0.1:1\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\ncertfile = \"c\"\nkeyfile = \"k\"\n\
             require_certificate = true"
                .into(),
            "listener.cafile",
            NeedsCaFile,
            "\"127.0.0.1:1\"",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\nuse_identity_as_username = true".into(),
            "listener.cafile",
            NeedsCaFile,
            "\"127.0.0.1:1\"",
        ),
        (
            "persistence = true".into(),
            "persistence",
            NoLocation,
            "true",
        ),
        (
            "persistence = \"a\"\npersistence_location = \"b\"".into(),
            "persistence",
            TwoLocations,
            "\"a\"",
        ),
        (
            "persistence = 3".into(),
            "persistence",
            PersistenceType,
            "3",
        ),
        (
            "fsync = \"sometimes\"".into(),
            "fsync",
            Fsync,
            "\"sometimes\"",
        ),
        (
            "autosave_interval = 60".into(),
            "autosave_interval",
            NeedsFsyncInterval,
            "60",
        ),
        (
            "fsync = \"always\"\nautosave_interval = 6".into(),
            "autosave_interval",
            NeedsFsyncInterval,
            "6",
        ),
        (
            "fsync = \"interval\"\nautosave_interval = 0".into(),
            "autosave_interval",
            Zero,
            "0",
        ),
        (
            "fsync = \"interval\"\nautosave_interval = -5".into(),
            "autosave_interval",
            Zero,
            "-5",
        ),
        (
            "fsync = \"interval\"\nautosave_interval = 999999999999".into(),
            "autosave_interval",
            TooLong,
            "999999999999",
        ),
    ];
    for (text, key, reason, at) in cases {
        let (k, r, a) = invalid(&text);
        assert_eq!((k, &r, a.as_str()), (key, &reason, at), "{text}");
        let e = error(&text);
        assert_eq!(e.key(), Some(key));
        assert_eq!(e.to_string(), format!("{key} {reason}"));
    }
    // An empty list has no value to point at.
    match error("listeners = []") {
        SettingsError::Invalid {
            key: "listeners",
            reason: Empty,
            span: None,
        } => {}
        other => panic!("{other:?}"),
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_keys_need_the_tls_feature() {
    let (key, reason, _) =
        invalid("[[listener]]\nbind = \"127.0.0.1:1\"\ncertfile = \"c\"\nkeyfile = \"k\"\n");
    assert_eq!((key, reason), ("listener.certfile", Invalid::NeedsTls));
}

#[test]
fn what_is_not_toml_or_not_a_key_is_the_parsers_error_with_its_place() {
    for (text, at) in [
        ("sys_interval = = 3\n", "= 3"),
        ("max_conections = 3\n", "max_conections"),
        ("[limits]\nmax_sesions = 3\n", "max_sesions"),
        ("[[listener]]\nbind = \"127.0.0.1:1\"\nport = 3\n", "port"),
        ("max_connections = \"many\"\n", "\"many\""),
        ("max_keepalive = 70000\n", "70000"),
    ] {
        match error(text) {
            SettingsError::Toml {
                span: Some(span),
                message,
            } => {
                assert!(
                    text[span.start..].starts_with(at),
                    "{text:?}: {span:?} {message}"
                );
                assert!(!message.is_empty());
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn load_reads_the_files_relative_to_the_settings_and_locates_errors() {
    let dir = scratch("load");
    write(&dir, "acl", "user alice\ntopic readwrite alice/#\n");
    let entry = crate::runtimes::access::password_entry("alice", "pw").unwrap();
    write(&dir, "passwd", &format!("{entry}\n"));
    let path = write(
        &dir,
        "ok.toml",
        "password_file = \"passwd\"\nacl_file = \"acl\"\n",
    );
    let s = Settings::load(&path).unwrap();
    assert_eq!(s.password_file, Some(dir.join("passwd")));
    assert_eq!(s.access().unwrap().users(), 1);
    let summary = s.summary();
    assert!(summary.contains(&format!(
        "password_file {}: 1 users",
        dir.join("passwd").display()
    )));
    assert!(summary.contains(&format!("acl_file {}", dir.join("acl").display())));
    assert!(summary.contains(&"anonymous clients refused".to_owned()));
    assert!(s.warnings().is_empty());
    // The broker they make checks credentials.
    let _ = s.broker();
    // The router a runtime's server runs has the settings' configuration.
    assert_eq!(s.router().config(), &s.config);

    // An ACL without a password file is allowed, with a warning.
    let path = write(&dir, "acl_only.toml", "acl_file = \"acl\"\n");
    let s = Settings::load(&path).unwrap();
    assert_eq!(s.warnings().len(), 1);
    assert!(s.warnings()[0].starts_with("acl_file without password_file"));

    // A value's error is at its line and column.
    let path = write(&dir, "range.toml", "# c\nmax_connections = -2\n");
    let e = Settings::load(&path).unwrap_err();
    assert!(
        matches!(
            &e,
            SettingsError::At {
                line_col: Some((2, 19)),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.key(), Some("max_connections"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:19: max_connections is -1 (no limit) or a count",
            path.display()
        )
    );
    // Without a value to point at, the file alone.
    let path = write(&dir, "empty.toml", "listeners = []\n");
    let e = Settings::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: listeners is empty", path.display())
    );

    // A missing settings file.
    let e = Settings::load(&dir.join("nothere.toml")).unwrap_err();
    assert!(matches!(e, SettingsError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with("cannot read "));
}

#[test]
fn a_bad_password_or_acl_file_is_an_error_of_its_key() {
    let dir = scratch("files");
    write(&dir, "bad.acl", "user alice\ntopick read a\n");
    write(&dir, "bad.pw", "alice:plaintext\n");
    for (name, text, key, line) in [
        ("acl.toml", "acl_file = \"bad.acl\"\n", "acl_file", Some(2)),
        (
            "pw.toml",
            "password_file = \"bad.pw\"\n",
            "password_file",
            Some(1),
        ),
        (
            "missing.toml",
            "password_file = \"nothere\"\n",
            "password_file",
            None,
        ),
    ] {
        let path = write(&dir, name, text);
        let e = Settings::load(&path).unwrap_err();
        let SettingsError::At {
            line_col, error, ..
        } = &e
        else {
            panic!("{name}: {e:?}");
        };
        assert_eq!(*line_col, Some((1, text.find('"').unwrap() + 1)), "{name}");
        match (&**error, line) {
            (
                SettingsError::Access {
                    key: k,
                    source: FileError::Line { line: l, .. },
                    ..
                },
                Some(n),
            ) => {
                assert_eq!((*k, *l), (key, n), "{name}");
            }
            (
                SettingsError::Access {
                    key: k,
                    source: FileError::Read { .. },
                    ..
                },
                None,
            ) => {
                assert_eq!(*k, key, "{name}");
                assert!(e.to_string().contains("cannot read"), "{e}");
            }
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
}

#[cfg(feature = "tls")]
#[test]
fn a_listener_whose_certificate_cannot_be_read_is_an_error_at_its_bind() {
    let dir = scratch("certs");
    let path = write(
        &dir,
        "tls.toml",
        "[[listener]]\nbind = \"127.0.0.1:8883\"\ncertfile = \"no.pem\"\nkeyfile = \"no.key\"\n",
    );
    let e = Settings::load(&path).unwrap_err();
    let SettingsError::At {
        line_col, error, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*line_col, Some((2, 8)));
    assert!(
        matches!(&**error, SettingsError::Listener { bind, .. } if *bind == addr("127.0.0.1:8883")),
        "{error:?}"
    );
    assert!(e.to_string().contains("no.pem"), "{e}");
}
