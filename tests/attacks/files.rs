//! Attacks through files on disk: another user of the machine reading the
//! store (every forwarding address) or the relay's secrets (TLS and DKIM
//! keys, admin keys, SRS and activation secrets), which would let them sign
//! as the relay, forge bounces or run the admin API.

use crate::common::relay::{TestRelay, test_config};
use crate::common::sink::TestSink;
use crate::outbound::{send, wait_outcomes};
use eas_relay::config::{Config, DkimKeyConfig, KeyAlgorithm};
use eas_relay::{Listeners, run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Starts a node with `config` and stops it at once; the start's error.
async fn start_and_stop(config: Config) -> Result<(), String> {
    let listeners = Listeners {
        smtp: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    tokio::time::timeout(Duration::from_secs(30), run(config, listeners, async {}))
        .await
        .expect("the node stops")
        .map_err(|e| e.to_string())
}

/// Ordinary mail through a relay on `data_dir` configured by `tweak`.
async fn mail_flows(data_dir: &Path, local: &str, tweak: impl FnOnce(&mut Config)) {
    let dest = TestSink::start().await;
    let dest_addr = dest.addr;
    let relay = TestRelay::start_in(data_dir, move |c: &mut Config| {
        tweak(c);
        c.outbound
            .routes
            .insert("dest.test".into(), dest_addr.to_string());
    })
    .await;
    relay.alias(local, "d.country", "u@dest.test").await;
    let rcpt = format!("{local}@d.country");
    send(&relay, &[&rcpt], "still flowing").await;
    dest.wait_for(1, Duration::from_secs(20)).await;
    wait_outcomes(&relay, "d.country", &[&rcpt], "DELIVERED").await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_cannot_read_the_store_the_data_directory_or_generated_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The relay creates its data directory itself (under the usual 022 umask).
    mail_flows(&data, "first", |_| {}).await;
    assert_eq!(mode(&data), 0o700, "data directory");
    let store = data.join("eas-relay.redb");
    assert_eq!(mode(&store), 0o600, "store");
    for generated in [
        "srs.secret",
        "tls/key.pem",
        "dkim/eas-ed25519.pem",
        "dkim/eas-rsa.pem",
    ] {
        assert_eq!(mode(&data.join(generated)), 0o600, "{generated}");
    }
    for dir in ["tls", "dkim", "spool", "quarantine"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}/");
    }

    // A store left readable by an older version is closed on the next start.
    chmod(&store, 0o644);
    mail_flows(&data, "second", |_| {}).await;
    assert_eq!(mode(&store), 0o600, "store after restart");
}

/// One secret file: how to configure it, and the file.
struct Secret {
    what: &'static str,
    path: PathBuf,
    configure: fn(&mut Config, &Path),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_readable_by_other_users_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("etc");
    std::fs::create_dir(&files).unwrap();
    let write = |name: &str, text: &str| {
        let path = files.join(name);
        std::fs::write(&path, text).unwrap();
        chmod(&path, 0o600);
        path
    };
    let tls = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
    write("cert.pem", &tls.cert.pem());
    let tls_key = write("key.pem", &tls.signing_key.serialize_pem());
    let dkim_key = files.join("dkim.pem");
    eas_relay::rewrite::keys::generate(KeyAlgorithm::Ed25519, &dkim_key).unwrap();
    let secrets = [
        Secret {
            what: "TLS key",
            path: tls_key,
            configure: |c, p| {
                c.tls.cert = Some(p.with_file_name("cert.pem"));
                c.tls.key = Some(p.to_path_buf());
            },
        },
        Secret {
            what: "DKIM key",
            path: dkim_key,
            configure: |c, p| {
                c.dkim.keys = vec![DkimKeyConfig {
                    selector: "s1".into(),
                    algorithm: KeyAlgorithm::Ed25519,
                    key: p.to_path_buf(),
                    dkim: true,
                }];
                c.arc.selector = "s1".into();
            },
        },
        Secret {
            what: "admin keys file",
            path: write("admin.keys", "file-admin-key-0123456789\n"),
            configure: |c, p| c.http.admin_keys_file = Some(p.to_path_buf()),
        },
        Secret {
            what: "SRS secrets file",
            path: write("srs.secrets", "file-srs-secret-0123\n"),
            configure: |c, p| c.srs.secrets_file = Some(p.to_path_buf()),
        },
        Secret {
            what: "activation secret file",
            path: write("activation.secret", "activation-secret-0123456789\n"),
            configure: |c, p| c.chain.activation_secret_file = Some(p.to_path_buf()),
        },
        Secret {
            what: "Redis password file",
            path: write("redis.password", "redis-password-0123\n"),
            configure: |c, p| {
                // Read at start when provisioning is on (Redis itself is
                // contacted lazily: none needs to run here).
                c.dns_provisioning.enabled = true;
                c.dns_provisioning.mx = vec!["mx.relay.test".into()];
                c.dns_provisioning.redis_url = "redis://127.0.0.1:1".into();
                c.dns_provisioning.redis_password_file = Some(p.to_path_buf());
            },
        },
    ];
    let data = dir.path().join("data");
    let configured = |c: &mut Config| {
        for s in &secrets {
            (s.configure)(c, &s.path);
        }
    };
    let config = || {
        let mut c = test_config(&data);
        configured(&mut c);
        c
    };
    start_and_stop(config()).await.expect("0600 files are used");

    for secret in &secrets {
        for open in [0o644, 0o640, 0o604] {
            chmod(&secret.path, open);
            let err = start_and_stop(config())
                .await
                .expect_err(&format!("a {open:o} {} must be refused", secret.what));
            for needle in [
                secret.path.display().to_string(),
                format!("mode {open:04o}"),
            ] {
                assert!(
                    err.contains(&needle),
                    "{}: `{needle}` in: {err}",
                    secret.what
                );
            }
        }
        chmod(&secret.path, 0o400);
    }

    // The secrets the relay generates into its data directory are its own:
    // one left open (by an older version, by hand) is closed, not refused,
    // so that an upgrade still starts.
    let generated_dir = dir.path().join("generated");
    let generated = |c: &mut Config| c.http.admin_keys.clear();
    let config = || {
        let mut c = test_config(&generated_dir);
        generated(&mut c);
        c
    };
    start_and_stop(config())
        .await
        .expect("first start generates");
    assert_eq!(mode(&generated_dir.join("admin.key")), 0o600, "admin.key");
    for name in [
        "admin.key",
        "srs.secret",
        "tls/key.pem",
        "dkim/eas-ed25519.pem",
    ] {
        let path = generated_dir.join(name);
        let before = std::fs::read(&path).unwrap();
        chmod(&path, 0o644);
        start_and_stop(config())
            .await
            .unwrap_or_else(|e| panic!("an open generated {name} is closed: {e}"));
        assert_eq!(mode(&path), 0o600, "{name}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{name} is reused");
    }

    // With the files closed, ordinary mail flows.
    mail_flows(&data, "configured", configured).await;
    mail_flows(&generated_dir, "generated", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_planted_at_key_paths_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for sub in ["tls", "dkim"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
        chmod(&data.join(sub), 0o700);
    }
    chmod(&data, 0o700);
    // Files of someone else's that the relay can write, and a place the
    // attacker can read: the relay must neither overwrite the first nor
    // write its secrets to the second.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let stolen = dir.path().join("stolen");
    let plant = |at: &Path, to: &Path| std::os::unix::fs::symlink(to, at).unwrap();
    // the TLS key (its certificate is missing, so the pair is generated)
    plant(&data.join("tls/key.pem"), &victim);
    // the fixed temporary name DKIM key generation used to write through
    plant(&data.join("dkim/eas-ed25519.pem.tmp"), &victim);
    plant(&data.join("dkim/eas-rsa.pem.tmp"), &stolen);
    // a dangling link where the admin key is generated
    plant(&data.join("admin.key"), &stolen);

    let no_keys = |c: &mut Config| c.http.admin_keys.clear();
    let config = || {
        let mut c = test_config(&data);
        no_keys(&mut c);
        c
    };
    let err = start_and_stop(config())
        .await
        .expect_err("a link at admin.key is not written through");
    assert!(err.contains("admin.key"), "{err}");
    assert!(!stolen.exists(), "a secret was written through a link");
    std::fs::remove_file(data.join("admin.key")).unwrap();

    start_and_stop(config()).await.expect("the relay starts");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!stolen.exists(), "a secret was written through a link");
    for generated in [
        "tls/key.pem",
        "dkim/eas-ed25519.pem",
        "dkim/eas-rsa.pem",
        "admin.key",
    ] {
        let path = data.join(generated);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{generated} is a file of its own");
        assert_eq!(mode(&path), 0o600, "{generated}");
    }
    // Ordinary mail flows with the generated material.
    mail_flows(&data, "after", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_owned_by_another_user_are_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dir.path().join("admin.keys");
    std::fs::write(&keys, "file-admin-key-0123456789\n").unwrap();
    chmod(&keys, 0o600);
    let configure = |c: &mut Config, keys: &Path| c.http.admin_keys_file = Some(keys.to_path_buf());
    // Another user (nobody) owns it: they could replace the key at will.
    std::os::unix::fs::chown(&keys, Some(65534), None).unwrap();
    let mut config = test_config(&data);
    configure(&mut config, &keys);
    let err = start_and_stop(config)
        .await
        .expect_err("a secret owned by another user must be refused");
    assert!(
        err.contains(&keys.display().to_string()) && err.contains("uid 65534"),
        "{err}"
    );
    // Given back to the relay's user, it is used and mail flows.
    std::os::unix::fs::chown(&keys, Some(0), None).unwrap();
    mail_flows(&data, "owned", |c| configure(c, &keys)).await;
}
