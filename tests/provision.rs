//! DNS provisioning against a real Redis (the zone CoreDNS serves) and a
//! real chain: the first activation of a name writes its MX, SPF and DMARC
//! records in the redis plugin's exact JSON shape, keeps everything else
//! of the zone, changes nothing the second time, never overwrites a
//! concurrent writer, and survives Redis being down across a relay restart;
//! with `remove_on_deactivate_all`, the last alias leaving through
//! `/deactivate-all` takes out exactly what the relay wrote.

mod common;

use common::anvil::{ChainOptions, YEAR, dev_signer};
use common::eas::{CONFIRMATIONS, ChainRelay, DOMAIN, SLD, chain_config};
use common::redis::TestRedis;
use common::relay::TestRelay;
use common::sink::TestSink;
use common::test_ca;
use eas_relay::config::{Config, HumanDuration};
use eas_relay::provision::{
    LabelChange, Outcome, ProvisionError, Provisioner, RedisZone, Settings, ZoneWriter,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const FORWARD: &str = "mr.robot@dest.test";
/// The zone's hash key of `fsociety.country`.
const KEY: &str = "fsociety.country.";
const LIMIT: Duration = Duration::from_secs(15);
const OLD_SPF: &str = "v=spf1 include:spf.improvmx.com ~all";

/// `[dns_provisioning]` writing into `redis` with fast retries.
fn provisioning(c: &mut Config, redis_url: &str) {
    let p = &mut c.dns_provisioning;
    p.enabled = true;
    p.redis_url = redis_url.to_string();
    p.mx = vec!["mx1.relay.test".into(), "mx2.relay.test.".into()];
    p.keep_mx = vec!["backup.owner.test".into()];
    p.retry_initial = HumanDuration::parse("100ms").unwrap();
    p.retry_max = HumanDuration::parse("200ms").unwrap();
    p.timeout = HumanDuration::parse("1s").unwrap();
}

fn apex_expected() -> Value {
    json!({
        "mx": [
            {"ttl": 300, "host": "mx1.relay.test.", "preference": 10},
            {"ttl": 300, "host": "mx2.relay.test.", "preference": 20},
        ],
        "txt": [{"ttl": 300, "text": "v=spf1 -all"}],
    })
}

fn parse(text: &Option<String>) -> Value {
    serde_json::from_str(text.as_deref().unwrap_or("null")).unwrap()
}

/// Registers `fsociety.country` for dev account 1 and activates `alias`
/// on chain and through `/activate` (which must answer 200).
async fn activate(t: &ChainRelay, alias: &str, register: bool) {
    let owner = dev_signer(1);
    if register {
        t.chain.register(SLD, owner.address(), YEAR).await.unwrap();
    }
    let a = t.chain.activate(&owner, SLD, alias, FORWARD).await.unwrap();
    t.activated(&a).await;
}

async fn health(relay: &TestRelay) -> Value {
    let (status, body) = common::http::request(relay.http, "GET", "/health", None, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `/health` shows `n` names waiting for provisioning.
async fn wait_pending(relay: &TestRelay, n: u64) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let body = health(relay).await;
        if body["dns_provision_pending"] == json!(n) {
            return body;
        }
        assert!(Instant::now() < deadline, "pending never {n}: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn first_activation_writes_mx_spf_and_dmarc_in_the_plugin_shape() {
    let redis = TestRedis::start().await;
    let url = redis.url();
    // The domain check looks records up: only ever in this server.
    let dns = common::dns::TestDns::start().await;
    let t = ChainRelay::start_with(ChainOptions::default(), false, |c| {
        provisioning(c, &url);
        c.outbound.nameservers = vec![dns.addr()];
    })
    .await;
    activate(&t, "hello", true).await;

    let apex = redis.wait_field(KEY, "@", LIMIT, |v| v.is_some()).await;
    assert_eq!(parse(&apex), apex_expected());
    let dmarc = redis.hget(KEY, "_dmarc").await;
    assert_eq!(
        parse(&dmarc),
        json!({"txt": [{"ttl": 300, "text": "v=DMARC1; p=reject"}]})
    );
    // Only those two labels; the queue is empty and the relay healthy.
    assert_eq!(redis.hgetall(KEY).await.len(), 2);
    let body = wait_pending(&t.relay, 0).await;
    assert_eq!(body["status"], "ok", "{body}");
    let (_, metrics) = common::http::raw(t.relay.http, "GET", "/metrics", None, "").await;
    assert!(metrics.contains("eas_dns_provision_pending"), "{metrics}");

    // The domain check says whether the zone holds the records.
    let path = format!("/v3/domains/{DOMAIN}/check");
    let (status, body) = t.relay.api("GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["zone"], json!({"ok": true, "missing": []}), "{body}");
    let _: i64 = redis::cmd("HDEL")
        .arg(KEY)
        .arg("_dmarc")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    let (_, body) = t.relay.api("GET", &path, None).await;
    assert_eq!(
        body["zone"],
        json!({"ok": false, "missing": ["_dmarc"]}),
        "{body}"
    );
    // Checking never writes.
    assert_eq!(redis.hget(KEY, "_dmarc").await, None);
}

#[tokio::test]
async fn existing_records_are_kept_and_a_second_activation_changes_nothing() {
    let redis = TestRedis::start().await;
    // The zone as the EAS server left it, with the owner's own records.
    let apex_before = format!(
        r#"{{"a":[{{"ttl":300,"ip":"192.0.2.7"}}], "aaaa":[{{"ttl":300,"ip":"2001:db8::7"}}],"txt":[{{"ttl":300,"text":"google-site-verification=abc"}},{{"ttl":300,"text":"{OLD_SPF}"}}],"mx":[{{"ttl":300,"preference":0,"host":"mx1.improvmx.com."}},{{"ttl":300,"preference":50,"host":"backup.owner.test."}}],"caa":[{{"ttl":300,"flag":0,"tag":"issue","value":"letsencrypt.org"}}]}}"#
    );
    let www = r#"{"cname":[{"ttl":300,"host":"fsociety.country."}]}"#;
    redis.hset(KEY, "@", &apex_before).await;
    redis.hset(KEY, "www", www).await;
    redis.hset("other.country.", "@", r#"{"a":[]}"#).await;
    let url = redis.url();
    let t = ChainRelay::start_with(ChainOptions::default(), false, |c| provisioning(c, &url)).await;
    activate(&t, "hello", true).await;

    let apex = redis
        .wait_field(KEY, "@", LIMIT, |v| {
            v.as_deref() != Some(apex_before.as_str())
        })
        .await
        .unwrap();
    // Untouched fields keep their exact bytes (the space after "a" too).
    assert!(
        apex.starts_with(
            r#"{"a":[{"ttl":300,"ip":"192.0.2.7"}],"aaaa":[{"ttl":300,"ip":"2001:db8::7"}],"txt":"#
        ),
        "{apex}"
    );
    assert!(
        apex.contains(r#""caa":[{"ttl":300,"flag":0,"tag":"issue","value":"letsencrypt.org"}]"#),
        "{apex}"
    );
    let v: Value = serde_json::from_str(&apex).unwrap();
    assert_eq!(
        v["txt"],
        json!([
            {"ttl": 300, "text": "google-site-verification=abc"},
            {"ttl": 300, "text": "v=spf1 -all"},
        ]),
        "the old SPF is replaced in place, not duplicated"
    );
    assert_eq!(
        v["mx"],
        json!([
            {"ttl": 300, "host": "mx1.relay.test.", "preference": 10},
            {"ttl": 300, "host": "mx2.relay.test.", "preference": 20},
            {"ttl": 300, "preference": 50, "host": "backup.owner.test."},
        ])
    );
    assert_eq!(redis.hget(KEY, "www").await.as_deref(), Some(www));
    assert_eq!(
        redis.hget("other.country.", "@").await.as_deref(),
        Some(r#"{"a":[]}"#)
    );
    wait_pending(&t.relay, 0).await;
    let zone = redis.hgetall(KEY).await;

    // A second alias of the same name: not a first activation, nothing is
    // queued (the row would be written with the reveal, before the 200).
    activate(&t, "second", false).await;
    assert_eq!(health(&t.relay).await["dns_provision_pending"], json!(0));
    // And provisioning it again writes nothing.
    let zone_writer = RedisZone::new(&url, None, Duration::from_secs(2)).unwrap();
    let settings = Settings::from_config(&t.relay.config);
    let again = Provisioner::new(zone_writer, settings)
        .provision(DOMAIN, false)
        .await
        .unwrap();
    assert_eq!(again, Outcome::Unchanged);
    assert_eq!(redis.hgetall(KEY).await, zone);
}

/// A zone writer that lets another client change the apex right after
/// our first read: the write must notice and not lose that change.
struct Interposed {
    inner: RedisZone,
    redis_url: String,
    reads: AtomicUsize,
}

impl ZoneWriter for Interposed {
    async fn read(
        &self,
        zone: &str,
        labels: &[&str],
    ) -> Result<Vec<Option<String>>, ProvisionError> {
        let found = self.inner.read(zone, labels).await?;
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            // The operator adds an A record between our read and our write.
            let mut other = redis::Client::open(self.redis_url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: i64 = redis::cmd("HSET")
                .arg(zone)
                .arg("@")
                .arg(r#"{"a":[{"ttl":60,"ip":"198.51.100.9"}]}"#)
                .query_async(&mut other)
                .await
                .unwrap();
        }
        Ok(found)
    }

    async fn compare_and_set(
        &self,
        zone: &str,
        changes: &[LabelChange],
    ) -> Result<bool, ProvisionError> {
        self.inner.compare_and_set(zone, changes).await
    }
}

#[tokio::test]
async fn a_concurrent_writer_between_read_and_write_is_not_lost() {
    let redis = TestRedis::start().await;
    redis
        .hset(KEY, "@", r#"{"txt":[{"ttl":300,"text":"x"}]}"#)
        .await;
    let mut config = Config::default();
    provisioning(&mut config, &redis.url());
    config.dns_provisioning.tld_zones = vec!["country".into()];
    let zone = Interposed {
        inner: RedisZone::new(&redis.url(), None, Duration::from_secs(2)).unwrap(),
        redis_url: redis.url(),
        reads: AtomicUsize::new(0),
    };
    let p = Provisioner::new(zone, Settings::from_config(&config));
    let outcome = p.provision(DOMAIN, false).await.unwrap();
    assert!(matches!(outcome, Outcome::Written(_)), "{outcome:?}");
    let apex = parse(&redis.hget(KEY, "@").await);
    // The concurrent writer's record is there, with ours; its removal of
    // the "x" TXT stands too (we edited what it wrote, not what we read).
    assert_eq!(apex["a"], json!([{"ttl": 60, "ip": "198.51.100.9"}]));
    assert_eq!(apex["mx"], apex_expected()["mx"]);
    assert_eq!(apex["txt"], apex_expected()["txt"]);
}

#[tokio::test]
async fn redis_down_activation_still_succeeds_and_nothing_is_lost_across_a_restart() {
    let mut redis = TestRedis::start().await;
    let url = redis.url();
    redis.stop();
    let dir = tempfile::tempdir().unwrap();
    let t = ChainRelay::start_with(ChainOptions::default(), false, |c| {
        provisioning(c, &url);
        c.data_dir = dir.path().to_path_buf();
    })
    .await;
    activate(&t, "hello", true).await;
    // Queued, retried and failing, while the relay stays healthy.
    let body = wait_pending(&t.relay, 1).await;
    assert_eq!(body["status"], "ok", "{body}");
    let ChainRelay {
        chain,
        relay,
        sink,
        proxy: _,
    } = t;
    let config = relay.config.clone();
    relay.stop().await;

    // Redis comes back while the relay is down; the relay starts again
    // on the same store and writes the records.
    redis.restart().await;
    let relay = TestRelay::start_in(dir.path(), |c| {
        *c = config.clone();
        c.chain = chain_config(&chain, &chain.anvil.url());
    })
    .await;
    let apex = redis.wait_field(KEY, "@", LIMIT, |v| v.is_some()).await;
    assert_eq!(parse(&apex), apex_expected());
    assert!(redis.hget(KEY, "_dmarc").await.is_some());
    wait_pending(&relay, 0).await;
    drop(sink);
    relay.stop().await;
}

#[tokio::test]
async fn static_domains_are_provisioned_when_asked() {
    let redis = TestRedis::start().await;
    let url = redis.url();
    let sink = TestSink::start().await;
    let relay = TestRelay::start(|c| {
        provisioning(c, &url);
        c.dns_provisioning.static_domains = true;
        c.dns_provisioning.tld_zones = vec!["zone.test".into()];
        c.outbound
            .routes
            .insert("dest.test".into(), sink.addr.to_string());
    })
    .await;
    relay.alias("info", "shop.zone.test", FORWARD).await;
    let apex = redis
        .wait_field("shop.zone.test.", "@", LIMIT, |v| v.is_some())
        .await;
    assert_eq!(parse(&apex), apex_expected());
    // A domain under no provisioned zone is dropped from the queue unwritten.
    relay.alias("info", "elsewhere.test", FORWARD).await;
    wait_pending(&relay, 0).await;
    assert!(redis.hgetall("elsewhere.test.").await.is_empty());
    relay.stop().await;
}

/// A relay provisioning static domains under `zone.test` into `url`.
async fn static_relay(url: &str) -> TestRelay {
    TestRelay::start(|c| {
        provisioning(c, url);
        c.dns_provisioning.static_domains = true;
        c.dns_provisioning.tld_zones = vec!["zone.test".into()];
    })
    .await
}

/// `POST /v3/domains` for `domain`, which must answer 200.
async fn add_domain(relay: &TestRelay, domain: &str) {
    let (status, body) = relay
        .api("POST", "/v3/domains", Some(json!({ "domain": domain })))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn attacker_removes_a_static_domain_while_redis_is_down_and_it_gets_no_records() {
    let mut redis = TestRedis::start().await;
    let url = redis.url();
    redis.stop();
    let relay = static_relay(&url).await;
    add_domain(&relay, "gone.zone.test").await;
    wait_pending(&relay, 1).await;
    let (status, body) = relay
        .api("DELETE", "/v3/domains/gone.zone.test", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // Its pending write went with the domain.
    wait_pending(&relay, 0).await;
    redis.restart().await;
    // A domain added after Redis is back is written: the worker runs, and
    // the removed one, which would have been due first, got nothing.
    add_domain(&relay, "kept.zone.test").await;
    redis
        .wait_field("kept.zone.test.", "@", LIMIT, |v| v.is_some())
        .await;
    wait_pending(&relay, 0).await;
    assert!(redis.hgetall("gone.zone.test.").await.is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn attacker_puts_a_label_that_is_no_object_and_it_shows_as_failing_until_fixed() {
    let redis = TestRedis::start().await;
    let url = redis.url();
    redis.hset("bad.zone.test.", "@", "[1,2,3]").await;
    let relay = static_relay(&url).await;
    add_domain(&relay, "bad.zone.test").await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let body = health(&relay).await;
        if body["dns_provision_failing"] == json!(1) {
            assert_eq!(body["dns_provision_pending"], json!(1), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never failing: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        redis.hget("bad.zone.test.", "@").await.as_deref(),
        Some("[1,2,3]")
    );
    // The owner repairs the label: the next try (at retry_max) writes it.
    redis.hset("bad.zone.test.", "@", "{}").await;
    let apex = redis
        .wait_field("bad.zone.test.", "@", LIMIT, |v| v.as_deref() != Some("{}"))
        .await;
    assert_eq!(parse(&apex), apex_expected());
    let body = wait_pending(&relay, 0).await;
    assert_eq!(body["dns_provision_failing"], json!(0), "{body}");
    relay.stop().await;
}

/// The zone as the EAS server left it, with the owner's own records.
const OWNER_APEX: &str = r#"{"a":[{"ttl":300,"ip":"192.0.2.7"}], "aaaa":[{"ttl":300,"ip":"2001:db8::7"}],"txt":[{"ttl":300,"text":"google-site-verification=abc"},{"ttl":300,"text":"v=spf1 include:spf.improvmx.com ~all"}],"mx":[{"ttl":300,"preference":0,"host":"mx1.improvmx.com."},{"ttl":300,"preference":50,"host":"backup.owner.test."}],"caa":[{"ttl":300,"flag":0,"tag":"issue","value":"letsencrypt.org"}]}"#;
const OWNER_WWW: &str = r#"{"cname":[{"ttl":300,"host":"fsociety.country."}]}"#;

/// A relay provisioning into a zone holding the owner's records, with
/// `hello` activated and its records written.
async fn provisioned(remove: bool) -> (TestRedis, ChainRelay) {
    let redis = TestRedis::start().await;
    redis.hset(KEY, "@", OWNER_APEX).await;
    redis.hset(KEY, "www", OWNER_WWW).await;
    let url = redis.url();
    let t = ChainRelay::start_with(ChainOptions::default(), false, |c| {
        provisioning(c, &url);
        c.dns_provisioning.remove_on_deactivate_all = remove;
    })
    .await;
    activate(&t, "hello", true).await;
    redis
        .wait_field(KEY, "_dmarc", LIMIT, |v| v.is_some())
        .await;
    wait_pending(&t.relay, 0).await;
    (redis, t)
}

/// Deactivates every alias on chain, lets it confirm, asks
/// `/deactivate-all`, and waits until the watcher removed the aliases.
async fn deactivate_all(t: &ChainRelay) {
    t.chain.deactivate_all(&dev_signer(1), SLD).await.unwrap();
    t.chain.mine(CONFIRMATIONS).await;
    t.settle().await;
    assert_eq!(
        t.post("/deactivate-all", json!({ "sld": SLD })).await,
        (200, json!({ "success": true }))
    );
    let deadline = Instant::now() + LIMIT;
    while t.aliases_of(SLD).await != json!([]) {
        assert!(Instant::now() < deadline, "aliases not removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn deactivate_all_removes_only_what_the_relay_wrote_and_reactivation_writes_again() {
    let (redis, t) = provisioned(true).await;
    let written = redis.hgetall(KEY).await;
    deactivate_all(&t).await;
    // The removal is queued with the last alias's removal, then done; the
    // _dmarc label held only ours: deleted.
    redis
        .wait_field(KEY, "_dmarc", LIMIT, |v| v.is_none())
        .await;
    wait_pending(&t.relay, 0).await;
    let apex = redis.hget(KEY, "@").await.unwrap();
    // The owner's records keep their exact bytes; the relay's MX hosts and
    // its SPF go (the improvmx MX and SPF it replaced are not restored:
    // the relay does not know they were the owner's wish).
    assert_eq!(
        apex,
        r#"{"a":[{"ttl":300,"ip":"192.0.2.7"}],"aaaa":[{"ttl":300,"ip":"2001:db8::7"}],"txt":[{"ttl":300,"text":"google-site-verification=abc"}],"mx":[{"ttl":300,"preference":50,"host":"backup.owner.test."}],"caa":[{"ttl":300,"flag":0,"tag":"issue","value":"letsencrypt.org"}]}"#
    );
    assert_eq!(redis.hget(KEY, "www").await.as_deref(), Some(OWNER_WWW));
    assert_eq!(redis.hgetall(KEY).await.len(), 2);

    // A later activation of the name writes the records again.
    activate(&t, "again", false).await;
    let dmarc = redis
        .wait_field(KEY, "_dmarc", LIMIT, |v| v.is_some())
        .await;
    assert_eq!(dmarc, written.get("_dmarc").cloned());
    wait_pending(&t.relay, 0).await;
    let apex: Value = serde_json::from_str(&redis.hget(KEY, "@").await.unwrap()).unwrap();
    assert_eq!(
        apex["mx"],
        json!([
            {"ttl": 300, "host": "mx1.relay.test.", "preference": 10},
            {"ttl": 300, "host": "mx2.relay.test.", "preference": 20},
            {"ttl": 300, "preference": 50, "host": "backup.owner.test."},
        ])
    );
    assert_eq!(
        apex["txt"],
        json!([
            {"ttl": 300, "text": "google-site-verification=abc"},
            {"ttl": 300, "text": "v=spf1 -all"},
        ])
    );
    assert_eq!(redis.hget(KEY, "www").await.as_deref(), Some(OWNER_WWW));
}

#[tokio::test]
async fn deactivate_all_removes_nothing_by_default() {
    let (redis, t) = provisioned(false).await;
    let written = redis.hgetall(KEY).await;
    deactivate_all(&t).await;
    // A removal would be queued with the aliases' removal: none is, and
    // the zone is as the provisioning left it.
    assert_eq!(health(&t.relay).await["dns_provision_pending"], json!(0));
    assert_eq!(redis.hgetall(KEY).await, written);
}

#[tokio::test]
async fn rediss_with_a_private_ca_trusted_through_redis_ca_file() {
    let (ca, cert, key) = test_ca("eas-relay redis test CA");
    let (other_ca, _, _) = test_ca("eas-relay redis test CA");
    let redis = TestRedis::start_tls(&cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&other_file, &other_ca).unwrap();
    let mut config = Config::default();
    provisioning(&mut config, &redis.tls_url());
    config.dns_provisioning.tld_zones = vec!["country".into()];
    let settings = Settings::from_config(&config);
    let provision = |ca: Option<&std::path::Path>, domain: &'static str| {
        let mut p = config.dns_provisioning.clone();
        p.redis_ca_file = ca.map(std::path::Path::to_path_buf);
        let settings = settings.clone();
        async move {
            let zone = RedisZone::from_config(&p).unwrap();
            Provisioner::new(zone, settings)
                .provision(domain, false)
                .await
        }
    };
    // Trusted through redis_ca_file: written over TLS.
    let outcome = provision(Some(&ca_file), DOMAIN).await.unwrap();
    assert!(matches!(outcome, Outcome::Written(_)), "{outcome:?}");
    assert_eq!(parse(&redis.hget(KEY, "@").await), apex_expected());
    // Another CA, or only the system's roots: the server is not trusted
    // and nothing is written.
    for ca in [Some(other_file.as_path()), None] {
        let err = provision(ca, "other.country").await.unwrap_err();
        assert!(
            matches!(err, ProvisionError::Unreachable(_)),
            "{ca:?}: {err}"
        );
        assert!(err.to_string().contains("certificate"), "{ca:?}: {err}");
    }
    assert!(redis.hgetall("other.country.").await.is_empty());
    // A CA file without a certificate is refused before any connection.
    std::fs::write(&other_file, "not a certificate\n").unwrap();
    let mut p = config.dns_provisioning.clone();
    p.redis_ca_file = Some(other_file.clone());
    assert!(matches!(
        RedisZone::from_config(&p),
        Err(ProvisionError::CaFile { .. })
    ));
}

// ------------------------------------------------------------ the CLI

mod cli {
    use super::common::dns::TestDns;
    use super::common::node::{CliOutput, clean_command, run};
    use super::*;

    const HOST: &str = "mx.relay.test";

    struct Env {
        dir: tempfile::TempDir,
        config: std::path::PathBuf,
    }

    impl Env {
        fn new(redis: &TestRedis, dns: &TestDns) -> Env {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("eas-relay.toml");
            std::fs::write(
                &config,
                format!(
                    r#"hostname = "{HOST}"
data_dir = "{data}"

[outbound]
nameservers = ["{ns}"]

[srs]
domain = "bounce.relay.test"

[dkim]
domain = "relay.test"

[dns_provisioning]
redis_url = "{url}"
tld_zones = ["country"]
mx = ["{HOST}"]
static_domains = true
"#,
                    data = dir.path().join("data").display(),
                    ns = dns.addr(),
                    url = redis.url(),
                ),
            )
            .unwrap();
            Env { dir, config }
        }

        /// The binary with `args` (off the runtime: the DNS server must
        /// keep answering meanwhile).
        async fn cli(&self, args: &[&str]) -> CliOutput {
            let mut cmd = clean_command();
            cmd.arg("--config").arg(&self.config).args(args);
            tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dry_run_then_write_then_all_and_the_zone_written_passes_dns_check() {
        let redis = TestRedis::start().await;
        let dns = TestDns::start().await;
        let env = Env::new(&redis, &dns);

        // A name the relay does not serve is refused (nothing written)
        // unless forced; a registered one is written.
        let out = env.cli(&["dns", "provision", "stranger.country"]).await;
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(
            out.stderr.contains("not a domain of this relay"),
            "{out:#?}"
        );
        assert!(redis.hgetall("stranger.country.").await.is_empty());
        let out = env
            .cli(&["dns", "provision", "stranger.country", "--force"])
            .await;
        assert!(
            out.ok().starts_with("stranger.country: written"),
            "{out:#?}"
        );
        env.cli(&["domain", "add", DOMAIN]).await.ok();

        // A dry run says what it would write and writes nothing.
        let out = env.cli(&["dns", "provision", DOMAIN, "--dry-run"]).await;
        let text = out.ok();
        assert!(text.starts_with(&format!("{DOMAIN}: would write\nlabel @\n  before: (absent)\n  after:  {{\"mx\":[{{\"host\":\"{HOST}.\"")), "{text}");
        assert!(text.contains("label _dmarc"), "{text}");
        assert!(redis.hgetall(KEY).await.is_empty());

        let out = env.cli(&["dns", "provision", DOMAIN]).await;
        assert!(
            out.ok().starts_with(&format!("{DOMAIN}: written")),
            "{out:#?}"
        );
        let out = env.cli(&["dns", "provision", DOMAIN]).await;
        assert_eq!(out.ok().trim(), format!("{DOMAIN}: unchanged"));

        // --all: every served domain with active aliases (written offline
        // here; static ones as dns_provisioning.static_domains is on).
        for domain in ["other.country", "empty.country"] {
            env.cli(&["domain", "add", domain]).await.ok();
        }
        for address in [format!("hello@{DOMAIN}"), "info@other.country".into()] {
            env.cli(&["alias", "add", &address, "someone@dest.test"])
                .await
                .ok();
        }
        let out = env.cli(&["--json", "dns", "provision", "--all"]).await;
        let v: Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(v["summary"]["written"], 1, "{v}");
        assert_eq!(v["summary"]["unchanged"], 1, "{v}");
        assert_eq!(v["summary"]["failed"], json!([]), "{v}");
        assert!(redis.hget("other.country.", "@").await.is_some());
        assert!(redis.hgetall("empty.country.").await.is_empty());

        // The zone as written, served by DNS, passes `dns check`: the
        // domain's records from Redis, the relay's from `dns records`.
        let apex = parse(&redis.hget(KEY, "@").await);
        for mx in apex["mx"].as_array().unwrap() {
            dns.add_mx(
                DOMAIN,
                mx["preference"].as_u64().unwrap() as u16,
                mx["host"].as_str().unwrap(),
            );
        }
        for txt in apex["txt"].as_array().unwrap() {
            dns.add_txt(DOMAIN, txt["text"].as_str().unwrap());
        }
        let dmarc = parse(&redis.hget(KEY, "_dmarc").await);
        for txt in dmarc["txt"].as_array().unwrap() {
            dns.add_txt(&format!("_dmarc.{DOMAIN}"), txt["text"].as_str().unwrap());
        }
        let out = env.cli(&["--json", "dns", "records", DOMAIN]).await;
        let records: Value = serde_json::from_str(out.ok()).unwrap();
        for r in records.as_array().unwrap() {
            let name = r["name"].as_str().unwrap().trim_end_matches('.');
            let value = r["value"].as_str().unwrap();
            if name.ends_with(DOMAIN) || value.contains('<') || name.contains('<') {
                continue;
            }
            match r["type"].as_str().unwrap() {
                "MX" => {
                    let (pref, host) = value.split_once(' ').unwrap();
                    dns.add_mx(name, pref.parse().unwrap(), host);
                }
                "TXT" => dns.add_txt(name, value),
                _ => {}
            }
        }
        dns.add_a(HOST, "127.0.0.1".parse().unwrap());
        let out = env.cli(&["dns", "check", DOMAIN]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        drop(env.dir);
    }
}

/// Sizes and values are read in one script: a huge label is refused
/// without being read or written, a missing `_dmarc` still reads as absent.
#[tokio::test]
async fn attacker_puts_a_huge_label_in_the_zone_and_it_is_neither_read_nor_overwritten() {
    let redis = TestRedis::start().await;
    let zone = RedisZone::new(&redis.url(), None, Duration::from_secs(2)).unwrap();
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(70 * 1024));
    redis.hset(KEY, "@", &huge).await;
    let err = zone.read(KEY, &["@", "_dmarc"]).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Label(_)), "{err:?}");
    assert!(err.to_string().contains("label @"), "{err}");

    redis.hset(KEY, "@", r#"{"a":[]}"#).await;
    let read = zone.read(KEY, &["_dmarc", "@"]).await.unwrap();
    assert_eq!(read, [None, Some(r#"{"a":[]}"#.to_string())]);
    let read = zone.read(KEY, &["@", "_dmarc"]).await.unwrap();
    assert_eq!(read, [Some(r#"{"a":[]}"#.to_string()), None]);

    let mut config = Config::default();
    provisioning(&mut config, &redis.url());
    config.dns_provisioning.tld_zones = vec!["country".into()];
    redis.hset(KEY, "@", &huge).await;
    let p = Provisioner::new(zone, Settings::from_config(&config));
    assert!(p.provision(DOMAIN, false).await.is_err());
    assert_eq!(redis.hget(KEY, "@").await.as_deref(), Some(huge.as_str()));
}
