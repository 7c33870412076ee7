//! Every captured datagram in tests/testdata decodes to exactly what its
//! manifest says (the manifests were built from the senders' own records,
//! independently of this decoder).

mod common;

use bytes::Bytes;
use serde_json::Value as Json;
use sqlalchemy_collectd_exporter::collectd::security::{CryptoError, seal};
use sqlalchemy_collectd_exporter::collectd::{
    CdTime, DecodeError, Keys, Protection, Severity, Value, decode, decode_with,
};

fn manifest(scenario: &str) -> Json {
    let path = common::testdata(scenario).join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn time(vl: &Json, field: &str) -> CdTime {
    let raw = vl[format!("{field}_raw")].as_u64().expect("raw time");
    if vl[format!("{field}_hr")].as_bool().expect("hr flag") {
        CdTime(raw)
    } else {
        CdTime::from_secs(raw)
    }
}

fn expected_value(v: &Json) -> Value {
    let kind = v[0].as_str().expect("value type");
    let n = &v[1];
    match kind {
        "gauge" => Value::Gauge(match n.as_str() {
            Some("NaN") => f64::NAN,
            Some("Infinity") => f64::INFINITY,
            Some("-Infinity") => f64::NEG_INFINITY,
            _ => n.as_f64().expect("gauge number"),
        }),
        "counter" => Value::Counter(n.as_u64().expect("u64")),
        "absolute" => Value::Absolute(n.as_u64().expect("u64")),
        "derive" => Value::Derive(n.as_i64().expect("i64")),
        other => panic!("unknown value type {other}"),
    }
}

/// Bit-exact comparison, so NaN equals NaN and -0.0 differs from 0.0.
fn same(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Gauge(x), Value::Gauge(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

/// Checks a scenario; returns (datagrams, value lists, notifications) checked.
fn check(scenario: &str) -> (usize, usize, usize) {
    check_with(scenario, None)
}

fn auth(scenario: &str) -> Keys {
    Keys::load(&common::testdata(scenario).join("authfile")).expect("authfile")
}

/// Checks a scenario decoded with `keys`; returns (datagrams, value lists, notifications).
fn check_with(scenario: &str, keys: Option<&Keys>) -> (usize, usize, usize) {
    let m = manifest(scenario);
    let datagrams = m["datagrams"].as_array().expect("datagrams");
    let (mut lists, mut notes) = (0, 0);
    for d in datagrams {
        let file = d["file"].as_str().expect("file");
        let raw = std::fs::read(common::testdata(scenario).join(file)).expect("datagram file");
        assert_eq!(
            raw.len() as u64,
            d["size"].as_u64().expect("size"),
            "{scenario}/{file}"
        );
        let packet = decode_with(&Bytes::from(raw), keys)
            .unwrap_or_else(|e| panic!("{scenario}/{file}: {e}"));
        let want_protection = match (keys, &d["security"]) {
            (Some(_), s) if s["encrypted"] == true => Protection::Encrypted,
            (Some(_), s) if s["signed"] == true => Protection::Signed,
            _ => Protection::None,
        };
        assert!(
            packet
                .value_lists
                .iter()
                .all(|v| v.protection == want_protection),
            "{scenario}/{file}: protection"
        );

        let want = d["value_lists"].as_array().expect("value_lists");
        assert_eq!(
            packet.value_lists.len(),
            want.len(),
            "{scenario}/{file}: value list count"
        );
        for (i, (got, want)) in packet.value_lists.iter().zip(want).enumerate() {
            let at = format!("{scenario}/{file} value list {i}");
            assert_eq!(
                got.id.host.as_str(),
                want["host"].as_str().expect("host"),
                "{at}"
            );
            assert_eq!(
                got.id.plugin.as_str(),
                want["plugin"].as_str().expect("plugin"),
                "{at}"
            );
            assert_eq!(
                got.id.plugin_instance.as_str(),
                want["plugin_instance"].as_str().expect("pi"),
                "{at}"
            );
            assert_eq!(
                got.id.type_.as_str(),
                want["type"].as_str().expect("type"),
                "{at}"
            );
            assert_eq!(
                got.id.type_instance.as_str(),
                want["type_instance"].as_str().expect("ti"),
                "{at}"
            );
            assert_eq!(got.time, time(want, "time"), "{at}: time");
            assert_eq!(got.interval, time(want, "interval"), "{at}: interval");
            let values: Vec<Value> = want["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(expected_value)
                .collect();
            assert_eq!(got.values.len(), values.len(), "{at}: value count");
            for (g, w) in got.values.iter().zip(&values) {
                assert!(same(g, *w), "{at}: got {g:?}, manifest says {w:?}");
            }
            lists += 1;
        }

        let want = d["notifications"].as_array().expect("notifications");
        assert_eq!(
            packet.notifications.len(),
            want.len(),
            "{scenario}/{file}: notification count"
        );
        for (got, want) in packet.notifications.iter().zip(want) {
            assert_eq!(got.id.host.as_str(), want["host"].as_str().expect("host"));
            assert_eq!(
                got.id.plugin.as_str(),
                want["plugin"].as_str().expect("plugin")
            );
            assert_eq!(
                got.id.type_instance.as_str(),
                want["type_instance"].as_str().expect("ti")
            );
            assert_eq!(got.time, time(want, "time"));
            assert_eq!(
                got.severity,
                Severity::from_wire(want["severity"].as_u64().expect("severity"))
            );
            assert_eq!(
                &got.message[..],
                want["message"].as_str().expect("message").as_bytes()
            );
            notes += 1;
        }

        let security = &d["security"];
        let protected = security["signed"].as_bool().expect("signed flag")
            || security["encrypted"].as_bool().expect("encrypted flag");
        assert_eq!(
            packet.username.is_some(),
            protected,
            "{scenario}/{file}: user"
        );
        if let Some(user) = &packet.username {
            assert_eq!(
                &user[..],
                security["username"].as_str().expect("user").as_bytes()
            );
        }
    }
    (datagrams.len(), lists, notes)
}

fn summary_count(scenario: &str, key: &str) -> usize {
    let m = manifest(scenario);
    let dgs = m["datagrams"].as_array().expect("datagrams");
    dgs.iter()
        .map(|d| d[key].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn sqlalchemy_client_captures_decode_as_their_manifests_say() {
    for scenario in [
        "01_sqla_idle",
        "02_sqla_checkout3_return1",
        "03_sqla_invalidate_detach",
        "04_sqla_two_engines",
        "05_sqla_fork_workers_two_programs",
    ] {
        let (datagrams, lists, _) = check(scenario);
        // The client sends exactly one value list per datagram.
        assert_eq!(lists, datagrams, "{scenario}");
        assert_eq!(lists, summary_count(scenario, "value_lists"));
    }
}

#[test]
fn collectd_plain_capture_decodes_all_278_value_lists() {
    let (datagrams, lists, _) = check("07_collectd_plain");
    assert_eq!((datagrams, lists), (11, 278));
}

#[test]
fn collectd_signed_capture_decodes_with_its_signature_part_recognised() {
    let (datagrams, lists, _) = check("08_collectd_sign");
    assert_eq!((datagrams, lists), (11, 278));
}

#[test]
fn collectd_notifications_capture_decodes_notifications_and_value_lists() {
    let (_, lists, notes) = check("10_collectd_notifications");
    assert_eq!(
        lists,
        summary_count("10_collectd_notifications", "value_lists")
    );
    assert_eq!(notes, 13);
}

#[test]
fn encrypted_capture_is_refused_without_an_auth_file() {
    for raw in common::datagrams("09_collectd_encrypt") {
        let e = decode(&Bytes::from(raw)).expect_err("cannot decrypt without a key");
        assert_eq!(e, DecodeError::Encrypted { offset: 0 });
    }
}

#[test]
fn client_encoder_is_byte_identical_to_the_real_client() {
    use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity};
    for scenario in [
        "02_sqla_checkout3_return1",
        "05_sqla_fork_workers_two_programs",
    ] {
        for raw in common::datagrams(scenario) {
            let raw = Bytes::from(raw);
            let vl = decode(&raw).expect("decodes").value_lists.remove(0);
            let id = Identity { ..vl.id.clone() };
            let values: Vec<Value> = vl.values.iter().collect();
            let again = Encoder::new()
                .client_value_list(&id, vl.time.0 >> 30, vl.interval.0 >> 30, &values)
                .finish();
            assert_eq!(again, raw, "{scenario}: re-encoded datagram differs");
        }
    }
}

#[test]
fn collectd_encoder_round_trips_collectds_own_datagrams() {
    use sqlalchemy_collectd_exporter::collectd::Encoder;
    for raw in common::datagrams("07_collectd_plain") {
        let packet = decode(&Bytes::from(raw)).expect("decodes");
        let mut e = Encoder::new();
        for vl in &packet.value_lists {
            let values: Vec<Value> = vl.values.iter().collect();
            e.collectd_value_list(&vl.id, vl.time, vl.interval, &values);
        }
        let again = decode(&e.finish()).expect("re-encoded datagram decodes");
        assert_eq!(again.value_lists.len(), packet.value_lists.len());
        for (a, b) in again.value_lists.iter().zip(&packet.value_lists) {
            assert_eq!((&a.id, a.time, a.interval), (&b.id, b.time, b.interval));
            assert!(
                a.values
                    .iter()
                    .zip(b.values.iter())
                    .all(|(x, y)| same(x, y))
            );
        }
    }
}

#[test]
fn signed_capture_verifies_with_the_auth_file() {
    let keys = auth("08_collectd_sign");
    assert_eq!(check_with("08_collectd_sign", Some(&keys)).1, 278);
}

#[test]
fn encrypted_capture_decrypts_with_the_auth_file() {
    let keys = auth("09_collectd_encrypt");
    assert_eq!(check_with("09_collectd_encrypt", Some(&keys)), (11, 278, 0));
}

#[test]
fn plain_capture_decodes_unprotected_even_with_keys() {
    let keys = auth("08_collectd_sign");
    assert_eq!(check_with("07_collectd_plain", Some(&keys)).1, 278);
}

fn wrong_keys() -> Keys {
    Keys::parse("alice: queen\n", "test").expect("keys")
}

#[test]
fn wrong_password_fails_every_signed_datagram() {
    for raw in common::datagrams("08_collectd_sign") {
        let e = decode_with(&Bytes::from(raw), Some(&wrong_keys())).expect_err("wrong password");
        assert!(
            matches!(
                e,
                DecodeError::Signature {
                    error: CryptoError::BadSignature,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn wrong_password_fails_every_encrypted_datagram() {
    for raw in common::datagrams("09_collectd_encrypt") {
        let e = decode_with(&Bytes::from(raw), Some(&wrong_keys())).expect_err("wrong password");
        assert!(
            matches!(
                e,
                DecodeError::Decrypt {
                    error: CryptoError::Checksum,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn tampered_signed_datagram_is_refused() {
    let keys = auth("08_collectd_sign");
    let mut raw = common::datagrams("08_collectd_sign").remove(0);
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let e = decode_with(&Bytes::from(raw), Some(&keys)).expect_err("tampered");
    assert_eq!(
        e.to_string(),
        "signature part at byte 0 (user \"alice\"): HMAC-SHA-256 does not match"
    );
}

#[test]
fn unknown_user_is_refused() {
    let keys = Keys::parse("bob: builder\n", "test").expect("keys");
    let raw = common::datagrams("08_collectd_sign").remove(0);
    let e = decode_with(&Bytes::from(raw), Some(&keys)).expect_err("unknown user");
    assert!(
        matches!(
            e,
            DecodeError::Signature {
                error: CryptoError::UnknownUser,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn sealing_reproduces_what_collectd_sends() {
    // Re-sign collectd's own signed payloads with our sealer: byte-identical.
    for raw in common::datagrams("08_collectd_sign") {
        let user_end = 4 + 32 + "alice".len();
        let again = seal::sign("alice", "wonderland", &raw[user_end..]);
        assert_eq!(again, raw);
    }
    // Encrypt a payload and decrypt it through the decoder.
    let keys = auth("09_collectd_encrypt");
    let plain = common::datagrams("07_collectd_plain").remove(0);
    let sealed = seal::encrypt("alice", "wonderland", [9; 16], &plain);
    let a = decode_with(&Bytes::from(sealed), Some(&keys)).expect("decrypts");
    let b = decode(&Bytes::from(plain)).expect("decodes");
    assert_eq!(a.value_lists.len(), b.value_lists.len());
    assert!(
        a.value_lists
            .iter()
            .all(|v| v.protection == Protection::Encrypted)
    );
}
