//! `eas-relay dkim keygen`, `dns records` and `dns check` through the real
//! binary. The config's `outbound.nameservers` always points at the
//! in-process DNS server (never the system resolver): `dns check` runs
//! against a zone built from what `dns records --json` says to publish,
//! then with each record missing, wrong, or answering SERVFAIL.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::dns::TestDns;
use common::node::{CliOutput, clean_command, run};
use eas_relay::Config;
use eas_relay::config::KeyAlgorithm;
use eas_relay::rewrite::keys::{self, KeyPair};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const HOST: &str = "mx.relay.test";
const SRS: &str = "bounce.relay.test";
const DKIM_DOMAIN: &str = "relay.test";
const DOMAIN: &str = "fsociety.country";

/// A DNS server, and a config for the binary that uses only it.
struct Env {
    // Dropped before the runtime that serves it.
    dns: TestDns,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    config: PathBuf,
    data_dir: PathBuf,
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dns = rt.block_on(TestDns::start());
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("eas-relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"hostname = "{HOST}"
data_dir = "{data}"

[outbound]
nameservers = ["{ns}"]

[srs]
domain = "{SRS}"

[dkim]
domain = "{DKIM_DOMAIN}"
"#,
            data = data_dir.display(),
            ns = dns.addr(),
        ),
    )
    .unwrap();
    Env {
        dns,
        _rt: rt,
        dir,
        config,
        data_dir,
    }
}

impl Env {
    fn cli(&self, args: &[&str]) -> CliOutput {
        let mut cmd = clean_command();
        cmd.arg("--config").arg(&self.config).args(args);
        run(cmd)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
    }

    /// The keys the relay signs with, as the library loads them.
    fn keys(&self) -> Vec<keys::SelectorKey> {
        keys::load(&Config::load(&self.config).unwrap()).unwrap()
    }

    /// Every record `dns records --json DOMAIN` asks for (placeholders aside).
    fn wanted(&self) -> Vec<(String, String, String)> {
        self.json(&["dns", "records", DOMAIN])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["value"].as_str().unwrap().contains('<'))
            .filter(|r| !r["name"].as_str().unwrap().contains('<'))
            .map(|r| {
                (
                    r["name"]
                        .as_str()
                        .unwrap()
                        .trim_end_matches('.')
                        .to_string(),
                    r["type"].as_str().unwrap().to_string(),
                    r["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Replaces the zone with `records` and the relay's address.
    fn publish(&self, records: &[(String, String, String)]) {
        for name in [
            DOMAIN,
            SRS,
            HOST,
            DKIM_DOMAIN,
            "eas-ed25519._domainkey.relay.test",
            "eas-rsa._domainkey.relay.test",
            "_dmarc.fsociety.country",
            "_dmarc.relay.test",
        ] {
            self.dns.clear(name);
        }
        for (name, kind, value) in records {
            match kind.as_str() {
                "MX" => {
                    let (pref, host) = value.split_once(' ').unwrap();
                    self.dns.add_mx(name, pref.parse().unwrap(), host);
                }
                "TXT" => self.dns.add_txt(name, value),
                other => panic!("unexpected record type {other}"),
            }
        }
        self.dns.add_a(HOST, "127.0.0.1".parse().unwrap());
    }

    fn check(&self) -> CliOutput {
        self.cli(&["dns", "check", DOMAIN])
    }
}

/// The quoted character-strings of a zone-file value.
fn unquote(zone: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut chars = zone.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            assert!(c.is_whitespace(), "junk {c:?} in {zone}");
            continue;
        }
        let mut s = String::new();
        loop {
            match chars.next().expect("unterminated string") {
                '"' => break,
                '\\' => s.push(chars.next().unwrap()),
                c => s.push(c),
            }
        }
        strings.push(s);
    }
    strings
}

/// The value of the zone-file line for `name IN TYPE`, as character-strings for TXT.
fn zone_value<'a>(text: &'a str, name: &str, kind: &str) -> &'a str {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.trim_start().strip_prefix("IN ")?.trim_start();
            Some(rest.strip_prefix(kind)?.trim_start())
        })
        .unwrap_or_else(|| panic!("no `{name} IN {kind}` line in:\n{text}"))
}

/// Tags of a DKIM record.
fn tag<'a>(record: &'a str, name: &str) -> &'a str {
    record
        .split(';')
        .filter_map(|t| t.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}= in {record}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_ed25519_writes_a_private_key_and_prints_its_config_and_record() {
    let env = env();
    let out = env.cli(&["dkim", "keygen"]);
    let text = out.ok();
    // Default selector eas-ed25519-YYYYMMDD, default file data_dir/dkim/<selector>.pem.
    let selector = text
        .split('"')
        .nth(1)
        .expect("the selector is quoted on the first line");
    let date = selector.strip_prefix("eas-ed25519-").expect(selector);
    assert!(
        date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()),
        "{selector}"
    );
    let path = env.data_dir.join("dkim").join(format!("{selector}.pem"));
    assert_eq!(mode(&path), 0o600);
    let pair = KeyPair::from_pem(&std::fs::read(&path).unwrap(), KeyAlgorithm::Ed25519).unwrap();

    let block = format!(
        "[[dkim.keys]]\nselector = \"{selector}\"\nalgorithm = \"ed25519\"\nkey = \"{}\"\n",
        path.display()
    );
    assert!(text.contains(&block), "{text}");
    let name = format!("{selector}._domainkey.{DKIM_DOMAIN}.");
    let strings = unquote(zone_value(text, &name, "TXT"));
    assert_eq!(strings.len(), 1, "a short record is one string");
    let record = &strings[0];
    assert_eq!(tag(record, "v"), "DKIM1");
    assert_eq!(tag(record, "k"), "ed25519");
    assert_eq!(BASE64.decode(tag(record, "p")).unwrap(), pair.public_key());
    assert_eq!(*record, keys::txt_record(&pair));
    // dkim.keys is empty: the note lists the generated keys to keep (none yet).
    assert!(!text.contains("Note: dkim.keys is empty"), "{text}");

    // Never overwrites: same selector again.
    let before = std::fs::read(&path).unwrap();
    let again = env.cli(&["dkim", "keygen"]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(
        again.stderr.contains(&path.display().to_string())
            && again.stderr.contains("already exists; not overwriting it"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout, "");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // The printed block is valid config, and the key then gets published.
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push('\n');
    config.push_str(&block);
    std::fs::write(&env.config, config).unwrap();
    assert_eq!(env.cli(&["config", "check"]).code, 0);
    let records = env.cli(&["dns", "records", DOMAIN]);
    let published = unquote(zone_value(records.ok(), &name, "TXT")).concat();
    assert_eq!(published, *record);
    assert!(
        !records.stdout.contains("eas-rsa._domainkey"),
        "dkim.keys replaces the defaults"
    );
}

#[test]
fn keygen_rsa_splits_its_record_into_255_byte_strings() {
    let env = env();
    // Generated default keys exist: the output says how to keep them.
    env.cli(&["dns", "records", DOMAIN]).ok();
    let path = env.dir.path().join("keys").join("rsa.pem");
    let out = env.cli(&[
        "dkim",
        "keygen",
        "--algo",
        "rsa",
        "--selector",
        "s2026",
        "--out",
        path.to_str().unwrap(),
    ]);
    let text = out.ok();
    assert_eq!(mode(&path), 0o600);
    let pair = KeyPair::from_pem(&std::fs::read(&path).unwrap(), KeyAlgorithm::Rsa).unwrap();
    assert_eq!(pair.bits(), 2048);
    let strings = unquote(zone_value(text, "s2026._domainkey.relay.test.", "TXT"));
    assert_eq!(
        strings.iter().map(String::len).collect::<Vec<_>>(),
        [255, keys::txt_record(&pair).len() - 255],
        "RFC 1035: at most 255 bytes per string"
    );
    let record = strings.concat();
    assert_eq!(tag(&record, "k"), "rsa");
    assert_eq!(BASE64.decode(tag(&record, "p")).unwrap(), pair.public_key());
    use mail_auth::common::parse::TxtRecordParser;
    mail_auth::common::verify::DomainKey::parse(record.as_bytes()).unwrap();
    assert!(
        text.contains("selector = \"s2026\"\nalgorithm = \"rsa\"\n"),
        "{text}"
    );
    for default in ["eas-ed25519", "eas-rsa"] {
        let keep = format!(
            "selector = \"{default}\"\nalgorithm = \"{}\"\nkey = \"{}\"\n",
            &default[4..],
            env.data_dir
                .join("dkim")
                .join(format!("{default}.pem"))
                .display()
        );
        assert!(text.contains(&keep), "{text}");
    }

    // --json: the same facts as an object; the TXT value unsplit.
    let json_path = env.dir.path().join("keys").join("rsa2.pem");
    let json = env.json(&[
        "dkim",
        "keygen",
        "--algo",
        "rsa",
        "--selector",
        "s2027",
        "--out",
        json_path.to_str().unwrap(),
    ]);
    let pair2 = KeyPair::from_pem(&std::fs::read(&json_path).unwrap(), KeyAlgorithm::Rsa).unwrap();
    assert_eq!(json["selector"], "s2027");
    assert_eq!(json["algorithm"], "rsa");
    assert_eq!(json["key"], json_path.to_str().unwrap());
    assert_eq!(json["record"]["name"], "s2027._domainkey.relay.test.");
    assert_eq!(json["record"]["type"], "TXT");
    assert_eq!(json["record"]["value"], keys::txt_record(&pair2).as_str());
    assert!(
        json["config"]
            .as_str()
            .unwrap()
            .starts_with("[[dkim.keys]]\nselector = \"s2027\"\n"),
        "{json}"
    );

    // Refusals: an existing file, a selector in use, a selector that is no DNS label.
    let existing = env.cli(&["dkim", "keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(existing.code, 1, "{existing:#?}");
    assert!(
        existing.stderr.contains("already exists"),
        "{}",
        existing.stderr
    );
    let taken = env.cli(&["dkim", "keygen", "--selector", "eas-rsa"]);
    assert_eq!(taken.code, 1, "{taken:#?}");
    assert!(
        taken.stderr.contains("selector `eas-rsa` is already used"),
        "{}",
        taken.stderr
    );
    let bad = env.cli(&["dkim", "keygen", "--selector", "no/slash"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains("not a valid selector"),
        "{}",
        bad.stderr
    );
    let algo = env.cli(&["dkim", "keygen", "--algo", "dsa"]);
    assert_eq!(algo.code, 2, "{algo:#?}");
}

// ---------------------------------------------------------------- records

#[test]
fn records_lists_what_to_publish_and_why() {
    let env = env();
    // The domain is normalized like the admin commands do.
    let out = env.cli(&["dns", "records", "FSociety.Country."]);
    let text = out.ok();
    // keys::load generated the keys, as the node would; stderr says so.
    assert!(
        out.stderr.contains("generated the DKIM key"),
        "{}",
        out.stderr
    );
    let keys = env.keys();
    assert_eq!(keys.len(), 2);

    let line = |name: &str, kind: &str| zone_value(text, name, kind).to_string();
    assert_eq!(line("fsociety.country.", "MX"), "10 mx.relay.test.");
    assert_eq!(line("fsociety.country.", "TXT"), "\"v=spf1 -all\"");
    assert_eq!(
        line("_dmarc.fsociety.country.", "TXT"),
        "\"v=DMARC1; p=reject\""
    );
    assert_eq!(line("bounce.relay.test.", "MX"), "10 mx.relay.test.");
    assert_eq!(
        line("bounce.relay.test.", "TXT"),
        "\"v=spf1 a:mx.relay.test -all\""
    );
    assert_eq!(
        line("mx.relay.test.", "TXT"),
        "\"v=spf1 a:mx.relay.test -all\""
    );
    assert_eq!(
        line("_dmarc.relay.test.", "TXT"),
        "\"v=DMARC1; p=quarantine\""
    );
    for key in &keys {
        let name = format!("{}._domainkey.relay.test.", key.selector);
        let strings = unquote(&line(&name, "TXT"));
        assert!(strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        assert_eq!(strings.concat(), keys::txt_record(&key.pair));
    }
    // Each group is explained; the address and PTR are a commented note.
    for why in [
        "; ---- fsociety.country (for each alias domain) ----",
        "; ---- the relay mx.relay.test (once, shared by every alias domain) ----",
        "; SPF: the relay never sends mail as fsociety.country.",
        "; Forwarded mail's envelope sender is an SRS address at bounce.relay.test:",
        "; mx.relay.test.",
        "PTR   mx.relay.test.",
    ] {
        assert!(text.contains(why), "{why:?} in:\n{text}");
    }
    // Every non-comment line is a record.
    for l in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
    {
        assert!(l.contains(" IN "), "{l}");
    }

    // JSON: {name, type, value, why} for each, the same values.
    let json = env.json(&["dns", "records", DOMAIN]);
    let list = json.as_array().unwrap();
    for r in list {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "type", "value", "why"], "{r}");
        assert!(!r["why"].as_str().unwrap().is_empty());
    }
    let find = |name: &str, kind: &str| {
        list.iter()
            .find(|r| r["name"] == name && r["type"] == kind)
            .unwrap_or_else(|| panic!("no {name} {kind} in {json}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(find("fsociety.country.", "MX"), "10 mx.relay.test.");
    assert_eq!(
        find("bounce.relay.test.", "TXT"),
        "v=spf1 a:mx.relay.test -all"
    );
    for key in &keys {
        let name = format!("{}._domainkey.relay.test.", key.selector);
        assert_eq!(find(&name, "TXT"), keys::txt_record(&key.pair));
    }
    assert!(
        find("mx.relay.test.", "A").starts_with('<'),
        "a placeholder"
    );

    // The keys are reused, not regenerated.
    let again = env.cli(&["dns", "records", DOMAIN]);
    assert_eq!(again.stdout, text);
    assert_eq!(again.stderr, "");

    let bad = env.cli(&["dns", "records", "bad..domain"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains("not a valid domain name"),
        "{}",
        bad.stderr
    );
}

// ---------------------------------------------------------------- check

/// The lines of a `dns check` run that are about `check name`.
fn lines_about<'a>(out: &'a CliOutput, check: &str, name: &str) -> Vec<&'a str> {
    let about = format!(" {check} {name}:");
    out.stdout.lines().filter(|l| l.contains(&about)).collect()
}

#[test]
fn check_passes_on_the_published_zone() {
    let env = env();
    let wanted = env.wanted();
    env.publish(&wanted);
    let out = env.check();
    assert_eq!(out.code, 0, "{out:#?}");
    for (check, name) in [
        ("MX", DOMAIN),
        ("MX", SRS),
        ("A/AAAA", HOST),
        ("SPF", SRS),
        ("SPF", HOST),
        ("DKIM", "eas-ed25519._domainkey.relay.test"),
        ("DKIM", "eas-rsa._domainkey.relay.test"),
        ("DMARC", "_dmarc.fsociety.country"),
        ("DMARC", "_dmarc.relay.test"),
    ] {
        let lines = lines_about(&out, check, name);
        assert_eq!(lines.len(), 1, "{check} {name}:\n{}", out.stdout);
        assert!(lines[0].starts_with("ok        "), "{}", out.stdout);
    }
    assert!(
        out.stdout.contains(
            "ok        SPF bounce.relay.test: pass for 127.0.0.1 (\"v=spf1 a:mx.relay.test -all\")"
        ),
        "{}",
        out.stdout
    );
    // The test server has no PTR records: a warning, not a failure.
    assert!(
        out.stdout
            .contains("warn      PTR 127.0.0.1: expected mx.relay.test; found "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("all 6 required checks ok, 1 warning\n"),
        "{}",
        out.stdout
    );

    let json = env.json(&["dns", "check", DOMAIN]);
    assert_eq!(json["ok"], true);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 10);
    assert_eq!(checks[0]["check"], "MX");
    assert_eq!(checks[0]["status"], "ok");
    assert_eq!(checks[0]["required"], true);
}

#[test]
fn check_names_each_missing_record() {
    let env = env();
    let wanted = env.wanted();
    // MX, SPF and DMARC of the alias domain; MX and SPF of the SRS domain,
    // SPF of the HELO name, two DKIM keys, DMARC of the DKIM domain.
    assert_eq!(wanted.len(), 9, "{wanted:?}");
    for (i, (name, kind, _)) in wanted.iter().enumerate() {
        let mut zone = wanted.clone();
        zone.remove(i);
        env.publish(&zone);
        let out = env.check();
        let check = match (kind.as_str(), name.as_str()) {
            ("MX", _) => "MX",
            (_, n) if n.contains("._domainkey.") => "DKIM",
            (_, n) if n.starts_with("_dmarc.") => "DMARC",
            // The alias domain's "v=spf1 -all" is advice; nothing checks it.
            (_, DOMAIN) => {
                assert_eq!(out.code, 0, "{out:#?}");
                continue;
            }
            _ => "SPF",
        };
        let lines = lines_about(&out, check, name);
        assert_eq!(lines.len(), 1, "{check} {name}:\n{}", out.stdout);
        let suggestion = check == "DMARC" || name == HOST;
        if suggestion {
            // DMARC, and SPF of the HELO name, are suggestions.
            assert_eq!(out.code, 0, "{out:#?}");
            assert!(lines[0].starts_with("warn      "), "{}", lines[0]);
            assert!(lines[0].ends_with(" (suggestion)"), "{}", lines[0]);
        } else {
            assert_eq!(out.code, 1, "{out:#?}");
            assert!(lines[0].starts_with("MISSING   "), "{}", lines[0]);
            assert!(
                out.stdout
                    .ends_with("1 of 6 required checks failed, 1 warning\n"),
                "{}",
                out.stdout
            );
        }
        let found = match check {
            "MX" => "found no MX record",
            "DKIM" => "found no TXT record",
            "DMARC" => "found no DMARC record",
            _ => "found no SPF record",
        };
        assert!(lines[0].contains(found), "{}", lines[0]);
    }

    // No address for the relay: nothing to evaluate SPF for.
    env.publish(&wanted);
    env.dns.clear(HOST);
    let out = env.check();
    assert_eq!(out.code, 1);
    assert_eq!(
        lines_about(&out, "A/AAAA", HOST),
        [
            "MISSING   A/AAAA mx.relay.test: expected the relay's public address(es); found no A or AAAA record"
        ]
    );
    let spf = lines_about(&out, "SPF", SRS);
    assert!(
        spf[0].starts_with("MISSING   ") && spf[0].contains("no address of mx.relay.test"),
        "{spf:?}"
    );
}

#[test]
fn check_says_what_is_wrong() {
    let env = env();
    let wanted = env.wanted();
    let replace = |name: &str, kind: &str, value: &str| {
        let mut zone: Vec<_> = wanted
            .iter()
            .filter(|(n, k, _)| !(n == name && k == kind))
            .cloned()
            .collect();
        zone.push((name.into(), kind.into(), value.into()));
        env.publish(&zone);
        let out = env.check();
        assert_eq!(out.code, 1, "{out:#?}");
        out
    };

    // Another key at our selector.
    let other = KeyPair::from_pem(
        &{
            let path = env.dir.path().join("other.pem");
            keys::generate(KeyAlgorithm::Ed25519, &path).unwrap();
            std::fs::read(path).unwrap()
        },
        KeyAlgorithm::Ed25519,
    )
    .unwrap();
    let name = "eas-ed25519._domainkey.relay.test";
    let out = replace(name, "TXT", &keys::txt_record(&other));
    let line = lines_about(&out, "DKIM", name);
    assert!(line[0].starts_with("WRONG     "), "{line:?}");
    assert!(
        line[0].contains("found a different public key (p=..."),
        "{line:?}"
    );
    // The RSA record at the Ed25519 selector: wrong k=.
    let rsa = keys::txt_record(&env.keys()[1].pair);
    let out = replace(name, "TXT", &rsa);
    let line = lines_about(&out, "DKIM", name);
    assert!(
        line[0].starts_with("WRONG     ") && line[0].contains("found k=rsa, not k=ed25519"),
        "{line:?}"
    );

    // SPF that does not authorize the relay: the SPF result is shown.
    let out = replace(SRS, "TXT", "v=spf1 ip4:192.0.2.1 -all");
    assert_eq!(
        lines_about(&out, "SPF", SRS),
        [
            "WRONG     SPF bounce.relay.test: expected pass for 127.0.0.1 (\"v=spf1 a:mx.relay.test -all\"); found fail (\"v=spf1 ip4:192.0.2.1 -all\")"
        ]
    );
    let out = replace(SRS, "TXT", "v=spf1 ?all");
    assert!(
        lines_about(&out, "SPF", SRS)[0].contains("; found neutral (\"v=spf1 ?all\")"),
        "{}",
        out.stdout
    );

    // Two SPF records: receivers answer permerror (RFC 7208 §4.5).
    env.publish(&wanted);
    env.dns.add_txt(SRS, "v=spf1 -all");
    let out = env.check();
    assert_eq!(out.code, 1, "{out:#?}");
    let line = lines_about(&out, "SPF", SRS);
    assert!(
        line[0].starts_with("WRONG     ") && line[0].contains("; found permerror (2 SPF records: "),
        "{line:?}"
    );

    // The alias domain's mail goes elsewhere.
    let out = replace(DOMAIN, "MX", "10 mx.elsewhere.test.");
    assert_eq!(
        lines_about(&out, "MX", DOMAIN),
        [
            "WRONG     MX fsociety.country: expected an MX naming mx.relay.test (\"10 mx.relay.test.\"); found 10 mx.elsewhere.test"
        ]
    );
}

#[test]
fn check_reports_dns_errors_as_such() {
    let env = env();
    let wanted = env.wanted();
    env.publish(&wanted);
    env.dns.servfail("eas-rsa._domainkey.relay.test");
    let out = env.check();
    assert_eq!(out.code, 1, "{out:#?}");
    let line = lines_about(&out, "DKIM", "eas-rsa._domainkey.relay.test");
    assert!(
        line[0].starts_with(
            "DNS ERROR DKIM eas-rsa._domainkey.relay.test: lookup failed: SERVFAIL; expected "
        ),
        "{line:?}"
    );
    assert!(!out.stdout.contains("MISSING"), "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("1 of 6 required checks failed, 1 warning\n"),
        "{}",
        out.stdout
    );

    // SERVFAIL for the SRS domain: its MX lookup and its SPF evaluation.
    env.publish(&wanted);
    env.dns.servfail(SRS);
    let out = env.check();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        lines_about(&out, "MX", SRS)[0]
            .starts_with("DNS ERROR MX bounce.relay.test: lookup failed: SERVFAIL"),
        "{}",
        out.stdout
    );
    assert!(
        lines_about(&out, "SPF", SRS)[0]
            .starts_with("DNS ERROR SPF bounce.relay.test: lookup failed: temperror"),
        "{}",
        out.stdout
    );
    let json = env.json_any(&["dns", "check", DOMAIN]);
    assert_eq!(json["ok"], false);
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "dns_error" && c["name"] == SRS)
    );
}

impl Env {
    /// `--json` output whatever the exit code.
    fn json_any(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
    }
}
