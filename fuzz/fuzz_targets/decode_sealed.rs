//! Random payloads signed or encrypted with the test captures' keys, so the
//! fuzzer reaches the inner parser through verification and decryption. The
//! first byte chooses the wrapping (and the IV); the rest is the payload.
//!
//! A payload without protected parts of its own must decode the same inside
//! a good wrapping as alone, with the wrapping's protection; under a wrong
//! password it must be refused.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::collectd::security::seal;
use sqlalchemy_collectd_exporter::collectd::{Protection, decode_with};
use sqlalchemy_collectd_exporter_fuzz::{PASSWORD, Pipeline, USER, keys};

/// Room for the SIGNATURE and ENCRYPTION headers within a u16 part length.
const MAX_PAYLOAD: usize = 60_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let iv = [mode; 16];
    let (sealed, protection) = match mode % 6 {
        0 => (
            seal::sign(USER, PASSWORD, payload),
            Some(Protection::Signed),
        ),
        1 => (
            seal::encrypt(USER, PASSWORD, iv, payload),
            Some(Protection::Encrypted),
        ),
        2 => {
            let signed = seal::sign(USER, PASSWORD, payload);
            (
                seal::encrypt(USER, PASSWORD, iv, &signed),
                Some(Protection::Encrypted),
            )
        }
        3 => {
            let encrypted = seal::encrypt(USER, PASSWORD, iv, payload);
            (
                seal::sign(USER, PASSWORD, &encrypted),
                Some(Protection::Encrypted),
            )
        }
        4 => (seal::sign(USER, "queen", payload), None),
        _ => (seal::encrypt(USER, "queen", iv, payload), None),
    };
    let result = decode_with(&Bytes::from(sealed), Some(keys()));
    let alone = decode_with(&Bytes::copy_from_slice(payload), Some(keys()));

    match (protection, alone) {
        // A bad MAC or checksum; the payload is never looked at.
        (None, _) => assert!(result.is_err(), "wrong password accepted"),
        (Some(protection), Ok(alone)) if alone.username.is_none() => {
            let packet = result.expect("a good wrapping of a good payload decodes");
            assert_eq!(packet.username.as_deref(), Some(USER.as_bytes()));
            assert_eq!(packet.value_lists.len(), alone.value_lists.len());
            for (inside, plain) in packet.value_lists.iter().zip(&alone.value_lists) {
                assert_eq!(inside.protection, protection);
                assert_eq!(
                    (&inside.id, inside.time, inside.interval, &inside.values),
                    (&plain.id, plain.time, plain.interval, &plain.values)
                );
            }
            assert_eq!(packet.notifications.len(), alone.notifications.len());
        }
        // A payload that is refused alone is refused wrapped (an empty
        // payload is refused alone, and as an empty encrypted packet, but a
        // signature over nothing is valid).
        (Some(_), Err(_)) if !payload.is_empty() => assert!(result.is_err()),
        _ => {}
    }
    // Through the production sink with the keys, as a receive thread would.
    let mut pipeline = Pipeline::with_auth_file();
    pipeline.datagram(&seal::sign(USER, PASSWORD, payload));
    pipeline.scrape_and_check();
});
