use super::*;
use crate::cdc::ExtraField;

pub(crate) fn user_row(id: i64, country: &str, created_at_us: i64) -> Row {
    Row::new(
        SourceTable::Users,
        vec![
            Value::Int64(id),
            Value::Text(format!("u{id}@example.test")),
            Value::Text(format!("User {id}")),
            Value::Text(country.into()),
            Value::Text("verified".into()),
            Value::Text("low".into()),
            Value::TimestampTz(created_at_us),
            Value::TimestampTz(created_at_us),
        ],
        vec![],
    )
    .unwrap()
}

pub(crate) fn wallet_row(id: i64, user: i64, balance_cents: i128) -> Row {
    Row::new(
        SourceTable::Wallets,
        vec![
            Value::Int64(id),
            Value::Int64(user),
            Value::Text("EUR".into()),
            Value::Decimal(balance_cents),
            Value::Text("active".into()),
            Value::TimestampTz(0),
            Value::TimestampTz(0),
        ],
        vec![],
    )
    .unwrap()
}

pub(crate) fn tx_row(id: i64, wallet: i64, user: i64, created_at_us: i64) -> Row {
    Row::new(
        SourceTable::Transactions,
        vec![
            Value::Int64(id),
            Value::Int64(wallet),
            Value::Int64(user),
            Value::Null,
            Value::Text("payment".into()),
            Value::Decimal(1_000),
            Value::Decimal(10),
            Value::Text("EUR".into()),
            Value::Text("settled".into()),
            Value::Text("DE".into()),
            Value::Text("shop".into()),
            Value::TimestampTz(created_at_us),
            Value::TimestampTz(created_at_us),
        ],
        vec![ExtraField {
            name: "device_id".into(),
            ty: Some(ColumnType::Text),
            value: Value::Text("dev-1".into()),
        }],
    )
    .unwrap()
}

fn version<T>(lsn: u64, tx_id: i64, ts_us: i64, value: Option<T>) -> Version<T> {
    Version {
        lsn,
        tx_id: Some(tx_id),
        ts_us,
        value,
    }
}

fn waiting(lsn: u64, tx_id: i64, row: Row) -> WaitingTx {
    WaitingTx {
        op: Op::Create,
        lsn,
        tx_id: Some(tx_id),
        source_ts_us: 5_000,
        kafka_offset: 7,
        row,
    }
}

fn wallet(balance: i128) -> WalletDim {
    WalletDim {
        user_id: Some(1),
        currency: "EUR".into(),
        balance_unscaled: balance,
        status: "active".into(),
    }
}

#[test]
fn as_of_sees_its_own_transaction_and_nothing_later() {
    let mut h = History::default();
    // Inserted out of order: history is kept by LSN whatever the arrival order.
    h.insert(version(300, 30, 3, Some(wallet(300))));
    h.insert(version(100, 10, 1, Some(wallet(100))));
    h.insert(version(210, 20, 2, Some(wallet(210))));
    // Redelivery of an LSN already present changes nothing.
    h.insert(version(100, 10, 1, Some(wallet(999))));
    assert_eq!(h.versions.len(), 3);
    // A transaction insert at LSN 200 in PG transaction 20 sees the wallet update of the same transaction (LSN
    // 210, written after the insert): the balance *after* the change.
    let v = h.as_of(200, Some(20)).unwrap();
    assert_eq!(v.value.as_ref().unwrap().balance_unscaled, 210);
    // Another transaction at LSN 200 sees only what came before.
    let v = h.as_of(200, Some(99)).unwrap();
    assert_eq!(v.value.as_ref().unwrap().balance_unscaled, 100);
    assert!(h.as_of(50, None).is_none());
}

#[test]
fn prune_keeps_what_a_transaction_after_the_horizon_can_see() {
    let mut h = History::default();
    for (i, ts) in [10, 20, 30, 40].iter().enumerate() {
        h.insert(version(
            i as u64 + 1,
            i as i64,
            *ts,
            Some(wallet(*ts as i128)),
        ));
    }
    h.prune(25);
    // Version at ts 20 is still the view at the horizon; ts 10 is superseded before it.
    let ts: Vec<i64> = h.versions.iter().map(|v| v.ts_us).collect();
    assert_eq!(ts, vec![20, 30, 40]);
    h.prune(1_000);
    assert_eq!(h.versions.len(), 1, "the newest version is always kept");
}

#[test]
fn join_reports_what_is_missing_and_deleted_rows_count_as_missing() {
    let tx = waiting(200, 20, tx_row(9, 5, 1, 5_000));
    let mut users = History::default();
    let mut wallets = History::default();
    assert_eq!(
        join(&tx, None, None).status,
        EnrichmentStatus::UserAndWalletMissing
    );
    users.insert(version(
        50,
        5,
        1,
        Some(UserDim {
            country: "DE".into(),
            kyc_status: "verified".into(),
            risk_tier: "low".into(),
            created_at_us: 0,
        }),
    ));
    assert_eq!(
        join(&tx, Some(&users), Some(&wallets)).status,
        EnrichmentStatus::WalletMissing
    );
    wallets.insert(version(60, 6, 1, Some(wallet(5))));
    assert_eq!(
        join(&tx, Some(&users), Some(&wallets)).status,
        EnrichmentStatus::Enriched
    );
    users.insert(version(150, 15, 2, None));
    assert_eq!(
        join(&tx, Some(&users), Some(&wallets)).status,
        EnrichmentStatus::UserMissing
    );
}

#[test]
fn enriched_row_matches_the_derived_schema() {
    let tx = waiting(200, 20, tx_row(9, 5, 1, 3 * MICROS_PER_DAY + 5));
    let user = UserDim {
        country: "FR".into(),
        kyc_status: "verified".into(),
        risk_tier: "high".into(),
        created_at_us: 0,
    };
    let w = wallet(12_345);
    let joined = Joined {
        user: Some(&user),
        wallet: Some(&w),
        status: EnrichmentStatus::Enriched,
    };
    let extras = vec![ColumnSpec::new("device_id", ColumnType::Text, true)];
    let def = enriched_def(&extras);
    def.validate().unwrap();
    let row = enriched_row(&tx, 3, &joined, &extras);
    assert_eq!(row.len(), def.columns.len());
    for (col, v) in def.columns.iter().zip(&row) {
        assert!(v.fits(col.ty), "{} = {v:?}", col.name);
        assert!(col.nullable || !v.is_null(), "{} is null", col.name);
    }
    let get = |name: &str| &row[def.column(name).unwrap().0];
    assert_eq!(get("user_account_age_days"), &Value::Int32(3));
    assert_eq!(get("wallet_balance_after"), &Value::Decimal(12_345));
    assert_eq!(get("device_id"), &Value::Text("dev-1".into()));
    assert_eq!(get("enrichment_status"), &Value::Text("enriched".into()));
    assert_eq!(get("kafka_partition"), &Value::Int32(3));
    // The same input gives the same row.
    assert_eq!(row, enriched_row(&tx, 3, &joined, &extras));
}

#[test]
fn wait_keys_sort_by_event_time_then_lsn() {
    let mut a = waiting(900, 1, tx_row(1, 1, 1, 0));
    a.source_ts_us = -5;
    let mut b = waiting(100, 1, tx_row(2, 1, 1, 0));
    b.source_ts_us = 10;
    let mut c = waiting(200, 1, tx_row(3, 1, 1, 0));
    c.source_ts_us = 10;
    assert!(a.key() < b.key() && b.key() < c.key());
    assert!(c.key() <= wait_key_upper_bound(10));
    assert!(wait_key_upper_bound(9) < b.key());
}

#[test]
fn dimensions_from_rows() {
    match dimension_of(Op::Update, &wallet_row(5, 1, 777)) {
        Some(Dimension::Wallet(5, Some(w))) => assert_eq!(w.balance_unscaled, 777),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        dimension_of(Op::Delete, &user_row(3, "DE", 0)),
        Some(Dimension::User(3, None))
    );
    assert_eq!(dimension_of(Op::Create, &tx_row(1, 1, 1, 0)), None);
}
