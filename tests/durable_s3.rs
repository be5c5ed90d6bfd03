//! The S3 backend of durable checkpoints against a real S3 protocol server (`moto_server` from the test venv,
//! installed by stack/bootstrap.sh), on 127.0.0.1: incremental uploads, listing, restore onto an empty node,
//! retention. The pipeline reaches the remote only through the same `RemoteCheckpoints` API, which the directory
//! backend's end-to-end tests (tests/failpoints.rs, `new_node_*`) exercise.

mod support;

use ledgerstream::durable::{OpendalStore, RemoteCheckpoints, S3Settings};
use ledgerstream_state::{
    PartitionStore, RocksConfig, RocksPartitionStore, StateLayout, WriteBatch,
};
use std::num::NonZeroUsize;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::{free_port, venv_python, wait_for};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(port: u16) -> Moto {
    let bin = venv_python().with_file_name("moto_server");
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run stack/bootstrap.sh): {e}",
                bin.display()
            )
        });
    let moto = Moto(child);
    let up = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "moto_server did not listen on {port}");
    moto
}

fn create_bucket(port: u16, bucket: &str) {
    let out = Command::new(venv_python())
        .args([
            "-c",
            &format!(
                "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1', \
                 aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{bucket}')"
            ),
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "create bucket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(store: &mut RocksPartitionStore, from: u32, to: u32, pos: i64) {
    let mut b = WriteBatch::new();
    for i in from..to {
        b.put("k", &i.to_be_bytes(), &[3u8; 256]).expect("put");
    }
    b.set_position("t", pos);
    store.write(b).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_remote_uploads_incrementally_and_restores() {
    let port = free_port();
    let _moto = start_moto(port);
    create_bucket(port, "ckpt");
    let remote = RemoteCheckpoints::new(Arc::new(
        OpendalStore::s3(&S3Settings {
            bucket: "ckpt".into(),
            prefix: "pipelines/test".into(),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            path_style_access: true,
        })
        .expect("s3 store"),
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let layout = StateLayout::new(dir.path().join("state"));
    let mut stores: Vec<RocksPartitionStore> = (0..2)
        .map(|p| RocksPartitionStore::open(&layout, p, RocksConfig::default()).expect("open"))
        .collect();
    let mut uploaded = Vec::new();
    for id in 1..=3u64 {
        for (p, s) in stores.iter_mut().enumerate() {
            let base = (id as u32) * 1000 + p as u32 * 100;
            write(s, base, base + 500, id as i64);
            s.checkpoint(id).expect("checkpoint");
        }
        let r = remote
            .upload_state(&layout, id, &[0, 1], "test")
            .await
            .expect("upload");
        remote.put_intent(id, b"intent").await.expect("intent");
        remote
            .put_marker(id, format!("marker {id}").as_bytes())
            .await
            .expect("marker");
        uploaded.push(r);
    }
    // Content-addressed uploads.
    // The first upload sends each distinct content once (identical small files of two partitions are one blob).
    let first = remote
        .state_manifest(1)
        .await
        .expect("state.json")
        .expect("present");
    let distinct: std::collections::BTreeSet<&str> = first
        .partitions
        .values()
        .flatten()
        .map(|f| f.sha256.as_str())
        .collect();
    assert_eq!(
        uploaded[0].files,
        first.partitions.values().flatten().count()
    );
    assert_eq!(uploaded[0].uploaded, distinct.len());
    // Every later checkpoint shares the earlier SST files: it uploads fewer files and bytes than it holds.
    for (i, r) in uploaded.iter().enumerate().skip(1) {
        let id = i as u64 + 1;
        let total: u64 = (0..2u32)
            .flat_map(|p| {
                std::fs::read_dir(layout.partition_checkpoints_dir(p).join(id.to_string()))
                    .expect("checkpoint dir")
            })
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum();
        assert!(
            r.uploaded < r.files && r.uploaded_bytes < total,
            "incremental: {r:?}, checkpoint {id} holds {total} bytes"
        );
    }
    let listing = remote.listing().await.expect("listing");
    assert_eq!(listing.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(listing.values().all(|e| e.state && e.complete && !e.intent));

    // Retention, then a restore of the newest onto an empty node.
    let pruned = remote
        .prune(NonZeroUsize::new(1).expect("nz"), true)
        .await
        .expect("prune");
    assert_eq!(pruned.checkpoints, vec![1, 2]);
    let node = tempfile::tempdir().expect("tempdir");
    let fresh = StateLayout::new(node.path().join("state"));
    let bytes = remote.download_state(&fresh, 3).await.expect("download");
    assert!(bytes > 0);
    for p in 0..2u32 {
        let mut s = RocksPartitionStore::open(&fresh, p, RocksConfig::default()).expect("open");
        s.restore_checkpoint(3).expect("restore");
        assert_eq!(s.positions().expect("positions").get("t"), Some(&3));
        let key = 3000 + p * 100 + 499;
        assert!(s.get("k", &key.to_be_bytes()).expect("get").is_some());
        // Data of checkpoint 1 is still there: its files were shared, so pruning 1 kept them.
        let key = 1000 + p * 100;
        assert!(s.get("k", &key.to_be_bytes()).expect("get").is_some());
    }
    assert_eq!(
        remote.marker(3).await.expect("marker"),
        Some(b"marker 3".to_vec())
    );
    // Uploading a checkpoint again uploads nothing.
    let again = remote
        .upload_state(&layout, 3, &[0, 1], "test")
        .await
        .expect("upload again");
    assert_eq!((again.uploaded, again.uploaded_bytes), (0, 0), "{again:?}");
}
