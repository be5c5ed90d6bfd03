//! Decoder tests over realistic Debezium 3.x records (`fixtures/`) and hand-made malformed variants.

use super::*;
use crate::types::Lsn;
use crate::value::{ColumnType, Value};
use rust_decimal::Decimal;
use std::str::FromStr;

const USERS_SNAPSHOT: &str = include_str!("fixtures/users_snapshot_read.json");
const USERS_UPDATE_EVOLVED: &str = include_str!("fixtures/users_update_evolved.json");
const USERS_CREATE_SCHEMA_EVOLVED: &str = include_str!("fixtures/users_create_schema_evolved.json");
const WALLETS_UPDATE: &str = include_str!("fixtures/wallets_update.json");
const WALLETS_DELETE: &str = include_str!("fixtures/wallets_delete.json");
const TX_CREATE: &str = include_str!("fixtures/transactions_create.json");
const TX_CREATE_SCHEMA: &str = include_str!("fixtures/transactions_create_schema.json");
const TX_TRUNCATE: &str = include_str!("fixtures/transactions_truncate.json");

/// Every fixture with the table whose topic it came from.
const FIXTURES: &[(SourceTable, &str)] = &[
    (SourceTable::Users, USERS_SNAPSHOT),
    (SourceTable::Users, USERS_UPDATE_EVOLVED),
    (SourceTable::Users, USERS_CREATE_SCHEMA_EVOLVED),
    (SourceTable::Wallets, WALLETS_UPDATE),
    (SourceTable::Wallets, WALLETS_DELETE),
    (SourceTable::Transactions, TX_CREATE),
    (SourceTable::Transactions, TX_CREATE_SCHEMA),
    (SourceTable::Transactions, TX_TRUNCATE),
];

/// 2026-11-25T10:15:30.123456Z
const T1: i64 = 1_795_601_730_123_456;
/// 2026-11-24T08:00:00Z
const T0: i64 = 1_795_507_200_000_000;

fn dec(table: SourceTable, key: Option<&str>, payload: &str) -> Result<Decoded, DecodeError> {
    decode(table, key.map(str::as_bytes), Some(payload.as_bytes()))
}

fn change(table: SourceTable, key: Option<&str>, payload: &str) -> ChangeEvent {
    match dec(table, key, payload) {
        Ok(Decoded::Change(ev)) => ev,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn kind(table: SourceTable, payload: &str) -> (&'static str, String) {
    match dec(table, Some("17"), payload) {
        Err(e) => (e.kind(), e.to_string()),
        Ok(d) => panic!("expected an error, got {d:?}"),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn money(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

#[test]
fn snapshot_read_of_a_user() {
    let ev = change(SourceTable::Users, Some("17"), USERS_SNAPSHOT);
    assert_eq!(ev.op, Op::Read);
    assert!(ev.snapshot);
    assert_eq!(ev.key, Some(17));
    assert_eq!(ev.lsn, Lsn(24_019_176));
    assert_eq!(ev.tx_id, Some(768));
    assert_eq!(ev.source_ts_us, 1_795_601_731_500_000);
    assert_eq!(ev.before, None);
    let row = ev.row.as_ref().expect("row");
    assert_eq!(
        row.values(),
        &[
            Value::Int64(17),
            text("ada@example.com"),
            text("Ada Lovelace"),
            text("GB"),
            text("verified"),
            text("low"),
            Value::TimestampTz(T0),
            Value::TimestampTz(T1),
        ]
    );
    assert!(row.extra().is_empty());
    assert_eq!((ev.pk(), ev.user_id()), (Some(17), Some(17)));
    assert_eq!(ev.get("email"), Some(&text("ada@example.com")));
    assert_eq!(ev.get("nope"), None);
    let user = row
        .typed()
        .and_then(|t| t.as_user().cloned())
        .expect("user view");
    assert_eq!(
        user,
        UserRow {
            id: 17,
            email: "ada@example.com".into(),
            full_name: "Ada Lovelace".into(),
            country: "GB".into(),
            kyc_status: "verified".into(),
            risk_tier: "low".into(),
            created_at_us: T0,
            updated_at_us: T1,
            extra: vec![],
        }
    );
}

#[test]
fn wallet_update_keeps_before_and_after() {
    let ev = change(SourceTable::Wallets, Some("17"), WALLETS_UPDATE);
    assert_eq!(ev.op, Op::Update);
    assert!(!ev.snapshot);
    assert_eq!(
        (ev.lsn, ev.tx_id, ev.source_ts_us),
        (Lsn(24_024_232), Some(771), T1)
    );
    assert_eq!(ev.get("balance"), Some(&Value::Decimal(7_550)));
    let before = ev.before.as_ref().expect("before image");
    assert_eq!(before.get("balance"), Some(&Value::Decimal(10_000)));
    assert_eq!(before.get("updated_at"), Some(&Value::TimestampTz(T0)));
    let wallet = ev.row.clone().and_then(Row::into_typed).expect("typed");
    assert_eq!(
        wallet,
        TypedRow::Wallet(WalletRow {
            id: 42,
            user_id: Some(17),
            currency: "EUR".into(),
            balance: money("75.50"),
            status: "active".into(),
            created_at_us: T0,
            updated_at_us: T1,
            extra: vec![],
        })
    );
}

#[test]
fn wallet_delete_uses_before_image_and_null_key() {
    let ev = change(SourceTable::Wallets, Some("null"), WALLETS_DELETE);
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.key, None);
    assert_eq!(ev.lsn, Lsn(24_031_112));
    assert_eq!(ev.before, None);
    assert_eq!(ev.pk(), Some(43));
    assert_eq!(ev.user_id(), None);
    assert_eq!(ev.get("user_id"), Some(&Value::Null));
    let w = ev.row.and_then(Row::into_typed).expect("typed");
    assert_eq!(
        w.as_wallet().map(|w| (w.balance, w.user_id)),
        Some((money("-0.50"), None))
    );
}

#[test]
fn tombstones() {
    type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>);
    let cases: [Case<'_>; 5] = [
        (Some(b"17"), None, Some(17)),
        (Some(b"null"), None, None),
        (None, None, None),
        (Some(b"5"), Some(b"null"), Some(5)),
        (
            Some(b"5"),
            Some(br#"{"schema":null,"payload":null}"#),
            Some(5),
        ),
    ];
    for (key, payload, want) in cases {
        assert_eq!(
            decode(SourceTable::Wallets, key, payload),
            Ok(Decoded::Tombstone { key: want }),
            "{key:?} {payload:?}"
        );
    }
}

#[test]
fn transaction_create_without_schema() {
    let ev = change(SourceTable::Transactions, Some("17"), TX_CREATE);
    assert_eq!(ev.op, Op::Create);
    assert_eq!(
        (ev.lsn, ev.tx_id, ev.key),
        (Lsn(24_024_104), Some(771), Some(17))
    );
    let tx = ev.row.and_then(Row::into_typed).expect("typed");
    assert_eq!(
        tx,
        TypedRow::Transaction(TransactionRow {
            id: 9001,
            wallet_id: Some(42),
            user_id: Some(17),
            counterparty_wallet_id: None,
            kind: "card_payment".into(),
            amount: money("24.50"),
            fee: money("0.25"),
            currency: "EUR".into(),
            status: "completed".into(),
            country: Some("DE".into()),
            merchant: None,
            created_at_us: T1,
            updated_at_us: T1,
            extra: vec![],
        })
    );
}

#[test]
fn transaction_create_with_schema_matches_the_bare_form() {
    let with = change(
        SourceTable::Transactions,
        Some(r#"{"schema":{"type":"int64","optional":true},"payload":17}"#),
        TX_CREATE_SCHEMA,
    );
    let bare = change(SourceTable::Transactions, Some("17"), TX_CREATE);
    assert_eq!(with.key, Some(17));
    assert_eq!(
        (with.op, with.lsn, with.tx_id, with.source_ts_us),
        (bare.op, bare.lsn, bare.tx_id, bare.source_ts_us)
    );
    let (with_row, bare_row) = (with.row.expect("row"), bare.row.expect("row"));
    for (i, col) in SourceTable::Transactions.columns().iter().enumerate() {
        let want = match col.name {
            "counterparty_wallet_id" => Value::Int64(77),
            "merchant" => text("Café \"Zur Post\""),
            _ => bare_row.values()[i].clone(),
        };
        assert_eq!(with_row.values()[i], want, "{}", col.name);
    }
    assert!(with_row.extra().is_empty());
}

#[test]
fn truncate_has_no_row() {
    let ev = change(SourceTable::Transactions, None, TX_TRUNCATE);
    assert_eq!(ev.op, Op::Truncate);
    assert_eq!(
        (ev.lsn, ev.tx_id, ev.key),
        (Lsn(24_031_400), Some(791), None)
    );
    assert_eq!((ev.row, ev.before), (None, None));
}

#[test]
fn every_op_code() {
    for (code, op) in [
        ("c", Op::Create),
        ("u", Op::Update),
        ("d", Op::Delete),
        ("r", Op::Read),
        ("t", Op::Truncate),
    ] {
        assert_eq!(Op::from_code(code), Some(op));
        assert_eq!(op.code(), code);
        // Same images for every op: after for c/u/r, before for d, none for t.
        let payload = wallet_msg(&[], code);
        let ev = change(SourceTable::Wallets, Some("17"), &payload);
        assert_eq!(ev.op, op);
        assert_eq!(ev.row.is_some(), op != Op::Truncate, "{code}");
        assert_eq!(ev.before.is_some(), op == Op::Update, "{code}");
        if op == Op::Delete {
            assert_eq!(ev.get("status"), Some(&text("closed")));
        } else if op != Op::Truncate {
            assert_eq!(ev.get("status"), Some(&text("active")));
        }
    }
    assert_eq!(Op::from_code("m"), None);
}

#[test]
fn extra_fields_are_kept_with_inferred_types() {
    let ev = change(SourceTable::Users, Some("17"), USERS_UPDATE_EVOLVED);
    // No source.ts_us: falls back to ts_ms * 1000.
    assert_eq!(ev.source_ts_us, 1_795_601_730_123_000);
    let row = ev.row.as_ref().expect("row");
    let extra = |name: &str, ty: Option<ColumnType>, value: Value| ExtraField {
        name: name.into(),
        ty,
        value,
    };
    assert_eq!(
        row.extra(),
        &[
            extra("nickname", Some(ColumnType::Text), text("Countess")),
            extra("vip", Some(ColumnType::Bool), Value::Bool(true)),
            extra("score", Some(ColumnType::Int64), Value::Int64(12)),
            extra("ratio", Some(ColumnType::Float64), Value::Float64(0.75)),
            extra(
                "meta",
                Some(ColumnType::Text),
                text(r#"{"tags": ["poet"]}"#)
            ),
            extra("credit_limit", Some(ColumnType::Text), text("250.00")),
        ]
    );
    assert_eq!(row.get("score"), Some(&Value::Int64(12)));
    let before = ev.before.as_ref().expect("before");
    assert_eq!(before.extra()[0], extra("nickname", None, Value::Null));
    assert_eq!(before.extra()[4], extra("meta", None, Value::Null));
    // Extras travel into the typed view too.
    let user = row
        .typed()
        .and_then(|t| t.as_user().cloned())
        .expect("user");
    assert_eq!(user.extra.len(), 6);
    assert_eq!(user.risk_tier, "medium");
}

#[test]
fn extra_fields_take_their_type_from_the_schema() {
    let ev = change(SourceTable::Users, Some("18"), USERS_CREATE_SCHEMA_EVOLVED);
    assert_eq!(
        (ev.op, ev.lsn, ev.tx_id),
        (Op::Create, Lsn(24_024_400), Some(773))
    );
    let row = ev.row.expect("row");
    let got: Vec<(&str, Option<ColumnType>, &Value)> = row
        .extra()
        .iter()
        .map(|e| (e.name.as_str(), e.ty, &e.value))
        .collect();
    let ts = Some(ColumnType::TimestampTz);
    assert_eq!(
        got,
        vec![
            ("last_login", ts, &Value::TimestampTz(T1)),
            ("last_seen_ns", ts, &Value::TimestampTz(T1)),
            ("legacy_ms", ts, &Value::TimestampTz(T1 - 456)),
            ("birth_date", Some(ColumnType::Date), &Value::Date(7441)),
            ("login_count", Some(ColumnType::Int32), &Value::Int32(3)),
            ("vip", Some(ColumnType::Bool), &Value::Null),
            (
                "credit_limit",
                Some(ColumnType::Decimal {
                    precision: 12,
                    scale: 2
                }),
                &Value::Decimal(12_345)
            ),
            (
                "avatar",
                Some(ColumnType::Binary),
                &Value::Binary(vec![1, 2, 3])
            ),
            ("nickname", Some(ColumnType::Text), &Value::Null),
            ("tags", Some(ColumnType::Text), &text(r#"["navy","cobol"]"#)),
            (
                "verified_at",
                ts,
                &Value::TimestampTz(1_795_601_730_500_000)
            ),
        ]
    );
}

/// A bare wallets envelope with `overrides` applied to the image (`None` removes the field). The image is
/// `after` except for deletes.
fn wallet_msg(overrides: &[(&str, Option<&str>)], op: &str) -> String {
    let mut fields: Vec<(String, String)> = [
        ("id", "42"),
        ("user_id", "17"),
        ("currency", r#""EUR""#),
        ("balance", r#""75.50""#),
        (
            "status",
            if op == "d" {
                r#""closed""#
            } else {
                r#""active""#
            },
        ),
        ("created_at", r#""2026-11-24T08:00:00Z""#),
        ("updated_at", r#""2026-11-25T10:15:30.123456Z""#),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in overrides {
        match (fields.iter().position(|(n, _)| n == k), v) {
            (Some(i), Some(v)) => fields[i].1 = (*v).to_owned(),
            (Some(i), None) => {
                fields.remove(i);
            }
            (None, Some(v)) => fields.push(((*k).to_owned(), (*v).to_owned())),
            (None, None) => {}
        }
    }
    let image = format!(
        "{{{}}}",
        fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (before, after) = match op {
        "d" => (image, "null".to_owned()),
        "t" => ("null".to_owned(), "null".to_owned()),
        "u" => (image.clone(), image),
        _ => ("null".to_owned(), image),
    };
    format!(
        r#"{{"before":{before},"after":{after},"source":{{"version":"3.6.3.Final","connector":"postgresql","name":"fintech","ts_ms":1795601730123,"snapshot":"false","db":"fintech","ts_us":1795601730123456,"schema":"public","table":"wallets","txId":771,"lsn":24024232}},"transaction":null,"op":"{op}","ts_ms":1795601730150}}"#
    )
}

fn wallet(overrides: &[(&str, Option<&str>)]) -> Result<ChangeEvent, DecodeError> {
    match dec(
        SourceTable::Wallets,
        Some("17"),
        &wallet_msg(overrides, "c"),
    )? {
        Decoded::Change(ev) => Ok(ev),
        Decoded::Tombstone { .. } => panic!("not a tombstone"),
    }
}

/// Wraps a wallets `after` created_at of `value` with a schema that names its logical type.
fn wallet_with_created_at_schema(logical: &str, value: &str) -> String {
    let bare = wallet_msg(&[("created_at", Some(value))], "c");
    let schema = format!(
        r#"{{"type":"struct","fields":[{{"type":"struct","fields":[{{"type":"int64","optional":false,"name":"{logical}","version":1,"field":"created_at"}}],"optional":true,"name":"fintech.public.wallets.Value","field":"after"}}],"optional":false,"name":"fintech.public.wallets.Envelope","version":2}}"#
    );
    format!(r#"{{"schema":{schema},"payload":{bare}}}"#)
}

#[test]
fn time_encodings_in_a_timestamptz_column() {
    let created = |ev: ChangeEvent| ev.get("created_at").cloned();
    // Without a schema: ISO strings with any offset, integers are microseconds.
    assert_eq!(
        wallet(&[("created_at", Some("\"2026-11-25T11:15:30.123456+01:00\""))]).map(created),
        Ok(Some(Value::TimestampTz(T1)))
    );
    assert_eq!(
        wallet(&[("created_at", Some("1795601730123456"))]).map(created),
        Ok(Some(Value::TimestampTz(T1)))
    );
    // With a schema the logical name decides the unit.
    for (logical, raw, want) in [
        ("io.debezium.time.MicroTimestamp", "1795601730123456", T1),
        ("io.debezium.time.NanoTimestamp", "1795601730123456000", T1),
        ("io.debezium.time.Timestamp", "1795601730123", T1 - 456),
        (
            "org.apache.kafka.connect.data.Timestamp",
            "1795601730123",
            T1 - 456,
        ),
    ] {
        let ev = change(
            SourceTable::Wallets,
            Some("17"),
            &wallet_with_created_at_schema(logical, raw),
        );
        assert_eq!(
            ev.get("created_at"),
            Some(&Value::TimestampTz(want)),
            "{logical}"
        );
    }
    let lossy =
        wallet_with_created_at_schema("io.debezium.time.NanoTimestamp", "1795601730123456789");
    let (k, msg) = kind(SourceTable::Wallets, &lossy);
    assert_eq!(k, "bad_timestamp");
    assert!(
        msg.contains("after.created_at") && msg.contains("sub-microsecond"),
        "{msg}"
    );
    for bad in [
        "\"yesterday\"",
        "\"2026-11-25T10:15:30\"",
        "\"infinity\"",
        "1.5",
    ] {
        let (k, msg) = kind(
            SourceTable::Wallets,
            &wallet_msg(&[("created_at", Some(bad))], "c"),
        );
        assert_eq!(k, "bad_timestamp", "{bad}");
        assert!(msg.contains("after.created_at"), "{msg}");
    }
    let (k, _) = kind(
        SourceTable::Wallets,
        &wallet_msg(&[("created_at", Some("true"))], "c"),
    );
    assert_eq!(k, "wrong_type");
}

#[test]
fn decimal_edge_cases_in_a_money_column() {
    let balance =
        |raw: &str| wallet(&[("balance", Some(raw))]).map(|ev| ev.get("balance").cloned());
    for (raw, want) in [
        ("\"123.45\"", 12_345),
        ("\"-0.50\"", -50),
        ("\"0\"", 0),
        ("\"1e3\"", 100_000),
        ("\"1.500\"", 150),
        ("12.5", 1_250),
        ("-3", -300),
        ("\"9999999999999999.99\"", 999_999_999_999_999_999),
    ] {
        assert_eq!(balance(raw), Ok(Some(Value::Decimal(want))), "{raw}");
    }
    for (raw, reason) in [
        ("\"1.005\"", "more fractional digits than the column scale"),
        ("\"10000000000000000.00\"", "exceeds the column precision"),
        ("\"NaN\"", "not a decimal number"),
        ("\"AQID\"", "not a decimal number"),
        ("\"\"", "not a decimal number"),
        ("1e400", "exceeds the column precision"),
        (
            r#"{"scale":2,"value":"MDk="}"#,
            "variable-scale decimal structs are not supported; use decimal.handling.mode=string",
        ),
    ] {
        match balance(raw) {
            Err(DecodeError::BadDecimal {
                field, reason: r, ..
            }) => {
                assert_eq!((field.as_str(), r), ("after.balance", reason), "{raw}")
            }
            other => panic!("{raw}: {other:?}"),
        }
    }
    assert_eq!(balance("true").map_err(|e| e.kind()), Err("wrong_type"));
}

#[test]
fn precise_decimal_bytes_with_a_schema() {
    let bare = wallet_msg(&[("balance", Some("\"MDk=\""))], "c");
    let schema = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"18"},"field":"balance"}],"optional":true,"field":"after"}],"optional":false}"#;
    let ev = change(
        SourceTable::Wallets,
        Some("17"),
        &format!(r#"{{"schema":{schema},"payload":{bare}}}"#),
    );
    assert_eq!(ev.get("balance"), Some(&Value::Decimal(12_345)));
}

#[test]
fn keys() {
    let ok: [(&[u8], Option<i64>); 7] = [
        (b"17", Some(17)),
        (b" 17\n", Some(17)),
        (b"-4", Some(-4)),
        (b"null", None),
        (
            br#"{"schema":{"type":"int64","optional":false},"payload":17}"#,
            Some(17),
        ),
        (
            br#"{"schema":{"type":"int64","optional":true},"payload":null}"#,
            None,
        ),
        (b"9223372036854775807", Some(i64::MAX)),
    ];
    for (key, want) in ok {
        assert_eq!(
            decode_key(Some(key)),
            Ok(want),
            "{:?}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(decode_key(None), Ok(None));
    let long = vec![b'1'; MAX_KEY_BYTES + 1];
    let bad: [&[u8]; 10] = [
        br#"{"id":17}"#,
        br#"{"schema":{},"payload":"17"}"#,
        br#"{"schema":{},"payload":1.5}"#,
        b"1.5",
        b"abc",
        b"\"17\"",
        b"9223372036854775808",
        b"",
        b"\xff",
        &long,
    ];
    for key in bad {
        assert_eq!(
            decode_key(Some(key)).map_err(|e| e.kind()),
            Err("bad_key"),
            "{:?}",
            String::from_utf8_lossy(key)
        );
    }
    // A bad key fails the record even when the value is fine.
    assert_eq!(
        decode(
            SourceTable::Wallets,
            Some(b"{\"id\":17}"),
            Some(WALLETS_UPDATE.as_bytes())
        )
        .map_err(|e| e.kind()),
        Err("bad_key")
    );
}

#[test]
fn malformed_records_have_stable_kinds_and_name_the_field() {
    let w = |o: &[(&str, Option<&str>)]| wallet_msg(o, "c");
    let replace = |from: &str, to: &str| {
        let msg = w(&[]);
        assert!(msg.contains(from), "{from}");
        msg.replacen(from, to, 1)
    };
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("not json".into(), "invalid_json", None),
        ("{\"op\":".into(), "invalid_json", None),
        (String::new(), "invalid_json", None),
        (format!("{} trailing", w(&[])), "invalid_json", None),
        ("[1,2]".into(), "not_an_object", Some("record")),
        ("42".into(), "not_an_object", Some("record")),
        ("\"c\"".into(), "not_an_object", Some("record")),
        (
            r#"{"schema":{},"payload":[]}"#.into(),
            "not_an_object",
            Some("payload"),
        ),
        (
            replace(r#""after":{"#, r#""after":5,"x":{"#),
            "not_an_object",
            Some("after"),
        ),
        (
            replace(r#""source":{"#, r#""source":"x","y":{"#),
            "not_an_object",
            Some("source"),
        ),
        (
            replace(r#""op":"c""#, r#""opx":"c""#),
            "missing_field",
            Some("op"),
        ),
        (
            replace(r#""source":{"#, r#""src":{"#),
            "missing_field",
            Some("source"),
        ),
        (
            replace(r#""lsn":"#, r#""lsnx":"#),
            "missing_field",
            Some("source.lsn"),
        ),
        (
            replace(r#","ts_us":1795601730123456"#, "").replacen(
                r#""ts_ms":1795601730123,"#,
                "",
                1,
            ),
            "missing_field",
            Some("source.ts_ms"),
        ),
        (
            replace(r#""after":{"#, r#""after":null,"x":{"#),
            "missing_field",
            Some("after"),
        ),
        (
            wallet_msg(&[], "d").replacen(r#""before":{"#, r#""before":null,"x":{"#, 1),
            "missing_field",
            Some("before"),
        ),
        (
            w(&[("currency", None)]),
            "missing_field",
            Some("after.currency"),
        ),
        (
            replace(r#""op":"c""#, r#""op":5"#),
            "wrong_type",
            Some("op"),
        ),
        (
            replace(r#""lsn":24024232"#, r#""lsn":"24024232""#),
            "wrong_type",
            Some("source.lsn"),
        ),
        (
            replace(r#""lsn":24024232"#, r#""lsn":-1"#),
            "wrong_type",
            Some("source.lsn"),
        ),
        (
            replace(r#""txId":771"#, r#""txId":7.5"#),
            "wrong_type",
            Some("source.txId"),
        ),
        (
            replace(r#""snapshot":"false""#, r#""snapshot":1"#),
            "wrong_type",
            Some("source.snapshot"),
        ),
        (w(&[("id", Some("\"42\""))]), "wrong_type", Some("after.id")),
        (
            w(&[("user_id", Some("1.5"))]),
            "wrong_type",
            Some("after.user_id"),
        ),
        (
            w(&[("user_id", Some("99999999999999999999"))]),
            "wrong_type",
            Some("after.user_id"),
        ),
        (
            w(&[("currency", Some("978"))]),
            "wrong_type",
            Some("after.currency"),
        ),
        (
            w(&[("status", Some("[\"active\"]"))]),
            "wrong_type",
            Some("after.status"),
        ),
        (
            w(&[("currency", Some("null"))]),
            "null_in_required",
            Some("after.currency"),
        ),
        (
            w(&[("id", Some("null"))]),
            "null_in_required",
            Some("after.id"),
        ),
        (
            w(&[("balance", Some("\"12,50\""))]),
            "bad_decimal",
            Some("after.balance"),
        ),
        (
            w(&[("updated_at", Some("\"soon\""))]),
            "bad_timestamp",
            Some("after.updated_at"),
        ),
        (replace(r#""op":"c""#, r#""op":"m""#), "unknown_op", None),
        (
            replace(r#""op":"c""#, r#""op":"create""#),
            "unknown_op",
            None,
        ),
        (
            replace(r#""table":"wallets""#, r#""table":"users""#),
            "table_mismatch",
            None,
        ),
        (
            replace(r#""op":"c""#, r#""op":"c","op":"u""#),
            "duplicate_field",
            Some("op"),
        ),
        (
            w(&[]).replacen(r#""id":42"#, r#""id":42,"id":43"#, 1),
            "duplicate_field",
            Some("after.id"),
        ),
        (
            w(&[("x", Some("1"))]).replacen(r#""x":1"#, r#""x":1,"x":2"#, 1),
            "duplicate_field",
            Some("after.x"),
        ),
        (
            replace(r#""lsn":24024232"#, r#""lsn":1,"lsn":2"#),
            "duplicate_field",
            Some("source.lsn"),
        ),
        (
            r#"{"schema":5,"payload":{}}"#.into(),
            "wrong_type",
            Some("schema"),
        ),
    ];
    for (payload, want_kind, want_field) in cases {
        match dec(SourceTable::Wallets, Some("17"), &payload) {
            Err(e) => {
                assert_eq!(
                    (e.kind(), e.field()),
                    (want_kind, want_field),
                    "{e} <- {payload}"
                );
                assert!(!e.to_string().is_empty());
            }
            Ok(d) => panic!("expected {want_kind}, decoded {d:?} from {payload}"),
        }
    }
    // Non-UTF-8 bytes.
    let mut bytes = w(&[]).into_bytes();
    bytes[40] = 0xff;
    assert_eq!(
        decode(SourceTable::Wallets, None, Some(&bytes)).map_err(|e| e.kind()),
        Err("invalid_json")
    );
}

#[test]
fn nullable_columns_may_be_null_or_absent() {
    for overrides in [[("user_id", Some("null"))], [("user_id", None)]] {
        let ev = wallet(&overrides).expect("decodes");
        assert_eq!(ev.user_id(), None);
        assert_eq!(ev.get("user_id"), Some(&Value::Null));
    }
}

#[test]
fn oversized_and_hostile_shapes_are_refused_without_panicking() {
    let big = format!(
        "{{\"op\":\"c\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_RECORD_BYTES)
    );
    let (k, msg) = kind(SourceTable::Wallets, &big);
    assert_eq!(k, "too_large");
    assert!(msg.contains(&MAX_RECORD_BYTES.to_string()), "{msg}");

    let many: String = (0..600).map(|i| format!(",\"x{i}\":{i}")).collect();
    let msg = wallet_msg(&[], "c").replacen(r#""id":42"#, &format!(r#""id":42{many}"#), 1);
    assert_eq!(kind(SourceTable::Wallets, &msg).0, "too_many_fields");

    // Deep nesting: at the top level, as an envelope field, and as an extra column (kept as raw text).
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(
        kind(SourceTable::Wallets, &deep(200_000)).0,
        "not_an_object"
    );
    // The visitor refuses an array before reading it, so an unclosed one is also "not an object".
    assert_eq!(
        kind(SourceTable::Wallets, &"[".repeat(200_000)).0,
        "not_an_object"
    );
    let nested_lsn = wallet_msg(&[], "c").replacen(
        r#""lsn":24024232"#,
        &format!(r#""lsn":{}"#, deep(100_000)),
        1,
    );
    assert_eq!(kind(SourceTable::Wallets, &nested_lsn).0, "wrong_type");
    let ev = wallet(&[("blob", Some(&deep(100_000)))]).expect("deep extra is data");
    assert_eq!(ev.get("blob"), Some(&Value::Text(deep(100_000))));
}

#[test]
fn every_prefix_of_every_fixture_is_an_error_not_a_panic() {
    for (table, fixture) in FIXTURES {
        let full = fixture.trim_end();
        assert!(
            matches!(dec(*table, Some("17"), full), Ok(Decoded::Change(_))),
            "{full}"
        );
        for cut in 0..full.len() {
            let Some(prefix) = full.get(..cut) else {
                continue;
            };
            let got = dec(*table, Some("17"), prefix).map_err(|e| e.kind());
            assert_eq!(
                got.as_ref().map(|_| ()),
                Err(&"invalid_json"),
                "prefix of {cut} bytes"
            );
        }
        // Byte-level truncation too (may split a UTF-8 sequence).
        for cut in 0..full.len() {
            let got = decode(*table, None, Some(&full.as_bytes()[..cut]));
            assert_eq!(got.map_err(|e| e.kind()).map(|_| ()), Err("invalid_json"));
        }
    }
}

#[test]
fn single_byte_mutations_never_panic() {
    const KNOWN: &[&str] = &[
        "too_large",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "duplicate_field",
        "too_many_fields",
        "wrong_type",
        "null_in_required",
        "bad_decimal",
        "bad_timestamp",
        "unknown_op",
        "table_mismatch",
        "bad_key",
    ];
    let mut outcomes = [0usize; 2];
    for (table, fixture) in FIXTURES {
        let full = fixture.trim_end().as_bytes();
        for i in 0..full.len() {
            for b in [b'"', b'}', b'0', b'x', b'\\', b'-', 0xC3] {
                let mut bytes = full.to_vec();
                bytes[i] = b;
                match decode(*table, Some(b"17"), Some(&bytes)) {
                    Ok(_) => outcomes[0] += 1,
                    Err(e) => {
                        assert!(KNOWN.contains(&e.kind()), "{}", e.kind());
                        outcomes[1] += 1;
                    }
                }
            }
        }
    }
    // Both outcomes occur: the loop really exercises error paths and mutations that stay valid.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn row_constructor_enforces_the_invariant() {
    let good = || {
        vec![
            Value::Int64(1),
            Value::Null,
            text("EUR"),
            Value::Decimal(0),
            text("active"),
            Value::TimestampTz(0),
            Value::TimestampTz(0),
        ]
    };
    let row = Row::new(SourceTable::Wallets, good(), vec![]).expect("valid");
    assert_eq!((row.pk(), row.user_id()), (Some(1), None));
    let mut short = good();
    short.pop();
    assert_eq!(
        Row::new(SourceTable::Wallets, short, vec![]).map_err(|e| e.kind()),
        Err("wrong_type")
    );
    let mut null_req = good();
    null_req[2] = Value::Null;
    assert_eq!(
        Row::new(SourceTable::Wallets, null_req, vec![]).map_err(|e| e.kind()),
        Err("null_in_required")
    );
    let mut wrong = good();
    wrong[3] = Value::Float64(1.0);
    assert_eq!(
        Row::new(SourceTable::Wallets, wrong, vec![]).map_err(|e| e.kind()),
        Err("wrong_type")
    );
}

#[test]
fn rows_deserialize_only_through_the_invariant() {
    let ev = change(SourceTable::Wallets, Some("17"), WALLETS_UPDATE);
    let stored = serde_json::to_string(&ev).expect("serialize");
    let back: ChangeEvent = serde_json::from_str(&stored).expect("deserialize");
    assert_eq!(back, ev);
    // The same bytes with a NOT NULL currency nulled must not come back as a Row.
    let tampered = stored.replacen(r#"{"Text":"EUR"}"#, r#""Null""#, 1);
    assert_ne!(tampered, stored);
    let err = serde_json::from_str::<ChangeEvent>(&tampered).expect_err("invariant");
    assert!(
        err.to_string().contains("NOT NULL column `currency`"),
        "{err}"
    );
}
