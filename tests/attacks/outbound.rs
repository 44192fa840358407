//! Attacks on outbound delivery: DNS that points the relay's SMTP client
//! into its own network, forwarding addresses that smuggle SMTP commands,
//! and destinations (or whoever sits in front of them) with certificates
//! that prove nothing.

use crate::common::dns::TestDns;
use crate::common::relay::{TestRelay, test_config};
use crate::common::sink::{SinkOptions, TestSink};
use crate::common::smtp::{Client, message};
use eas_relay::config::{Config, TlsPolicy};
use eas_relay::store::{Source, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const SENDER: &str = "sender@example.org";

/// Sends one message from [`SENDER`] to `to` through the relay.
pub async fn send(relay: &TestRelay, to: &[&str], subject: &str) {
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    c.send_mail(SENDER, to, &message(SENDER, to[0], subject, "hello"))
        .await;
    c.quit().await;
}

/// Waits until every recipient in `rcpts` (alias addresses under `domain`)
/// has a delivery-log event with `status` (DELIVERED, SOFT-BOUNCE,
/// HARD-BOUNCE); returns those events by recipient.
pub async fn wait_outcomes(
    relay: &TestRelay,
    domain: &str,
    rcpts: &[&str],
    status: &str,
) -> BTreeMap<String, Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, logs) = relay
            .api("GET", &format!("/v3/domains/{domain}/logs"), None)
            .await;
        assert_eq!(code, 200, "{logs}");
        let mut found = BTreeMap::new();
        for entry in logs["logs"].as_array().into_iter().flatten() {
            let rcpt = entry["recipient"]["email"].as_str().unwrap_or_default();
            let event = &entry["events"][0];
            if rcpts.contains(&rcpt) && event["status"] == status {
                found.insert(rcpt.to_string(), event.clone());
            }
        }
        if found.len() == rcpts.len() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {status} for {rcpts:?}; the log says: {logs:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------- MX addresses

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_dns_pointing_mx_into_the_relays_network_is_not_connected_to() {
    // Stands for a service inside the relay's network, on the MX port.
    let internal = TestSink::start().await;
    let good = TestSink::start().await;
    let dns = TestDns::start().await;
    // Each forwarding domain's DNS points its mail server at a non-public
    // address in another way.
    dns.add_mx("loopback.test", 10, "mx.loopback.test");
    dns.add_a("mx.loopback.test", Ipv4Addr::LOCALHOST);
    dns.add_mx("literal.test", 10, "127.0.0.1");
    dns.add_a("implicit.test", Ipv4Addr::new(127, 0, 0, 1)); // no MX: implicit
    dns.add_mx("mapped.test", 10, "mx.mapped.test");
    dns.add_aaaa("mx.mapped.test", Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    dns.add_mx("v6.test", 10, "mx.v6.test");
    dns.add_aaaa("mx.v6.test", Ipv6Addr::LOCALHOST);
    dns.add_mx("private.test", 10, "mx.private.test");
    dns.add_a("mx.private.test", Ipv4Addr::new(10, 255, 255, 1));
    dns.add_mx("metadata.test", 10, "mx.metadata.test");
    dns.add_a("mx.metadata.test", Ipv4Addr::new(169, 254, 169, 254));
    dns.add_mx("cgnat.test", 10, "mx.cgnat.test");
    dns.add_a("mx.cgnat.test", Ipv4Addr::new(100, 64, 0, 1));
    dns.add_mx("zero.test", 10, "mx.zero.test");
    dns.add_a("mx.zero.test", Ipv4Addr::UNSPECIFIED);
    dns.add_mx("ula.test", 10, "mx.ula.test");
    dns.add_aaaa("mx.ula.test", "fd00::25".parse().unwrap());
    dns.add_a("mx.routed.test", Ipv4Addr::LOCALHOST);
    // IPv6 forms outside the public internet that are easy to miss.
    dns.add_mx("nat64.test", 10, "mx.nat64.test");
    dns.add_aaaa("mx.nat64.test", "64:ff9b:1::7f00:1".parse().unwrap());
    dns.add_mx("teredo.test", 10, "mx.teredo.test");
    dns.add_aaaa("mx.teredo.test", "2001:0:7f00:1::1".parse().unwrap());
    dns.add_mx("srv6.test", 10, "mx.srv6.test");
    dns.add_aaaa("mx.srv6.test", "5f00::25".parse().unwrap());
    let (dns_addr, port, good_addr) = (dns.addr(), internal.addr.port(), good.addr);
    let relay = TestRelay::start(move |c: &mut Config| {
        c.outbound.allow_networks.clear(); // the default: public addresses only
        c.outbound.nameservers = vec![dns_addr];
        c.outbound.port = port;
        // An operator's route to an address stays explicit, even to
        // loopback; a route to a host name is only as good as that name's
        // DNS, so its addresses are filtered like an MX's.
        c.outbound
            .routes
            .insert("good.test".into(), good_addr.to_string());
        c.outbound
            .routes
            .insert("routed.test".into(), format!("mx.routed.test:{port}"));
    })
    .await;
    let evil = [
        "loopback", "literal", "implicit", "mapped", "v6", "private", "metadata", "cgnat", "zero",
        "ula", "nat64", "teredo", "srv6", "routed",
    ];
    for name in evil {
        relay
            .alias(name, "d.country", &format!("u@{name}.test"))
            .await;
    }
    relay.alias("ok", "d.country", "u@good.test").await;
    let rcpts: Vec<String> = evil.iter().map(|n| format!("{n}@d.country")).collect();
    let mut to: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    to.push("ok@d.country");
    send(&relay, &to, "into the network").await;

    let failed = wait_outcomes(&relay, "d.country", &to[..evil.len()], "HARD-BOUNCE").await;
    for (rcpt, event) in &failed {
        let message = event["message"].as_str().unwrap_or_default();
        assert!(message.contains("5.4.4"), "{rcpt}: {event}");
        for leak in [
            "127.", "::", "10.255", "169.254", "100.64", "0.0.0.0", "mx.", ".test",
        ] {
            assert!(
                !message.contains(leak),
                "{rcpt}: the reply names `{leak}`: {message}"
            );
        }
        assert!(event["server"].is_null(), "{rcpt}: {event}");
    }
    assert_eq!(
        internal.connections(),
        0,
        "the relay connected into its own network"
    );
    // Ordinary mail still flows.
    let got = good.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpt_to, vec!["u@good.test"]);
    relay.stop().await;
}

// ------------------------------------------------------- command injection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_forward_with_line_break_cannot_inject_smtp_commands() {
    let dest = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A forwarding address with CR LF, as it could reach the store through
    // any path that fails to validate it (the client is the last line).
    {
        let store = Store::open(&test_config(dir.path()).store_path()).unwrap();
        store.domain_add("d.country", Source::Static).unwrap();
        for (local, forward) in [
            (
                "crlf",
                "victim@dest.test>\r\nRCPT TO:<spam@dest.test>\r\nNOOP <x@dest.test",
            ),
            ("lf", "victim@dest.test>\nRSET\nMAIL FROM:<spoof@dest.test"),
            ("cr", "victim@dest.test>\rRCPT TO:<spam-cr@dest.test"),
            ("ok", "good@dest.test"),
        ] {
            store
                .alias_put("d.country", local, vec![forward.into()], Source::Static)
                .unwrap();
        }
    }
    let dest_addr = dest.addr;
    let relay = TestRelay::start_in(dir.path(), move |c: &mut Config| {
        c.outbound
            .routes
            .insert("dest.test".into(), dest_addr.to_string());
    })
    .await;
    send(
        &relay,
        &[
            "crlf@d.country",
            "lf@d.country",
            "cr@d.country",
            "ok@d.country",
        ],
        "injection",
    )
    .await;
    // Wait for the delivery, or for the first smuggled command.
    let injected = |l: &String| {
        ["spam", "spoof", "victim", "RSET", "NOOP"]
            .iter()
            .any(|w| l.contains(w))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while dest.messages().is_empty() && !dest.commands().iter().any(injected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            dest.commands()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let commands = dest.commands();
    assert!(
        !commands.iter().any(injected),
        "an injected command reached the destination: {commands:#?}"
    );
    let got = dest.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].rcpt_to,
        vec!["good@dest.test"],
        "ordinary mail flows"
    );
    let refused = wait_outcomes(
        &relay,
        "d.country",
        &["crlf@d.country", "lf@d.country", "cr@d.country"],
        "HARD-BOUNCE",
    )
    .await;
    for (rcpt, event) in &refused {
        let code = event["code"].as_u64().unwrap_or_default();
        assert!((500..600).contains(&code), "{rcpt}: {event}");
    }
    let commands = dest.commands();
    assert!(!commands.iter().any(injected), "{commands:#?}");
    relay.stop().await;
}

// ------------------------------------------------------- TLS certificates

/// A CA of the test, trusted through `outbound.tls_ca_file`.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "eas-relay attack test CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// A server certificate for `name` (DER) and its key (PKCS#8 DER).
    fn leaf(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }
}

async fn tls_sink(certificate: Option<(Vec<u8>, Vec<u8>)>, starttls: bool) -> TestSink {
    TestSink::with(SinkOptions {
        starttls,
        pipelining: true,
        certificate,
        ..SinkOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_without_a_valid_certificate_cannot_receive_verified_mail() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // Who answers for each destination: an impostor with a self-signed
    // certificate for the right name, one with a certificate of a trusted CA
    // for another name, one that strips STARTTLS, and the real server.
    let self_signed = {
        let c = rcgen::generate_simple_self_signed(vec!["mx.selfsigned.test".into()]).unwrap();
        tls_sink(
            Some((c.cert.der().to_vec(), c.signing_key.serialize_der())),
            true,
        )
        .await
    };
    let wrong_name = tls_sink(Some(ca.leaf("mx.other.test")), true).await;
    let stripped = tls_sink(None, false).await;
    let good = tls_sink(Some(ca.leaf("mx.good.test")), true).await;
    let dns = TestDns::start().await;
    let sinks = [
        ("selfsigned", &self_signed),
        ("wrongname", &wrong_name),
        ("stripped", &stripped),
        ("good", &good),
    ];
    let mut routes = BTreeMap::new();
    for (name, sink) in sinks {
        dns.add_a(&format!("mx.{name}.test"), Ipv4Addr::LOCALHOST);
        routes.insert(
            format!("{name}.test"),
            format!("mx.{name}.test:{}", sink.addr.port()),
        );
    }
    let dns_addr = dns.addr();
    let relay = TestRelay::start(move |c: &mut Config| {
        c.outbound.tls = TlsPolicy::Verified;
        c.outbound.tls_ca_file = Some(ca_file);
        c.outbound.nameservers = vec![dns_addr];
        c.outbound.routes.extend(routes);
    })
    .await;
    for (name, _) in sinks {
        relay
            .alias(name, "d.country", &format!("u@{name}.test"))
            .await;
    }
    send(
        &relay,
        &[
            "selfsigned@d.country",
            "wrongname@d.country",
            "stripped@d.country",
            "good@d.country",
        ],
        "for your eyes only",
    )
    .await;

    let deferred = wait_outcomes(
        &relay,
        "d.country",
        &[
            "selfsigned@d.country",
            "wrongname@d.country",
            "stripped@d.country",
        ],
        "SOFT-BOUNCE",
    )
    .await;
    for (rcpt, event) in &deferred {
        let message = event["message"].as_str().unwrap_or_default();
        assert!(message.contains("4.7."), "{rcpt}: {event}");
    }
    assert!(
        deferred["selfsigned@d.country"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate")),
        "{deferred:#?}"
    );
    // Ordinary mail to a server with a valid certificate flows, over TLS.
    let got = good.wait_for(1, WAIT).await;
    assert!(got[0].tls);
    assert_eq!(got[0].rcpt_to, vec!["u@good.test"]);
    for (name, sink) in [
        ("self-signed", &self_signed),
        ("wrong name", &wrong_name),
        ("stripped", &stripped),
    ] {
        assert!(
            sink.messages().is_empty(),
            "the {name} impostor received the message"
        );
    }
    relay.stop().await;
}

// ------------------------------------------------- envelope and data phase

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_local_part_cannot_inject_mail_parameters() {
    use eas_relay::outbound::client::{SmtpClient, Timeouts};
    use eas_relay::outbound::{DeliveryStatus, Envelope, Payload};

    let dest = TestSink::start().await;
    let dest_addr = dest.addr;
    let relay = TestRelay::start(move |c: &mut Config| {
        c.outbound
            .routes
            .insert("dest.test".into(), dest_addr.to_string());
    })
    .await;
    relay.alias("hello", "d.country", "u@dest.test").await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    // Quoted local parts that, copied raw into the relay's MAIL FROM (as
    // the local part of the SRS address), would end the path early and
    // hand the destination parameters of the attacker's choosing.
    for sender in [
        r#""a> RET=FULL ENVID=x"@example.org"#,
        r#""a> SMTPUTF8 BODY=8BITMIME"@example.org"#,
        r#""a>\" NOTIFY=NEVER"@example.org"#,
        r#""a b"@example.org"#,
    ] {
        c.mail_from(sender, "553 5.1.7").await;
        // the transaction was not started: a fresh MAIL is not nested
        c.mail_from(SENDER, "250").await;
        c.cmd("RSET", "250").await;
    }
    // Ordinary mail still flows, with the relay's own parameters only.
    c.send_mail(
        SENDER,
        &["hello@d.country"],
        &message(SENDER, "hello@d.country", "ordinary", "hello"),
    )
    .await;
    c.quit().await;
    let got = dest.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].mail_from.starts_with("SRS0=") && got[0].mail_from.ends_with("=sender@relay.test"),
        "{:?}",
        got[0].mail_from
    );
    let mails: Vec<String> = dest
        .commands()
        .into_iter()
        .filter(|l| l.starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(
        !["RET=", "ENVID=", "NOTIFY=", "SMTPUTF8"]
            .iter()
            .any(|p| mails[0].contains(p)),
        "{mails:#?}"
    );
    relay.stop().await;

    // The client is the last line, whatever reaches the queue (an entry
    // from an older version, a path no check caught): what needs quoting
    // is quoted, and what no path can carry is not written at all.
    let sink = TestSink::start().await;
    let timeouts = Timeouts {
        connect: WAIT,
        command: WAIT,
        data: WAIT,
    };
    let mut client = SmtpClient::connect("mx.dest.test", sink.addr, timeouts)
        .await
        .unwrap();
    client.hello("relay.test").await.unwrap();
    let envelope = Envelope {
        sender: "SRS0=HHHH=TT=example.org=a> RET=FULL ENVID=x@relay.test".into(),
        smtputf8: false,
        body_8bit: false,
    };
    let rcpts = [
        "u@dest.test".to_string(),
        "v> NOTIFY=NEVER@dest.test".to_string(),
        "w\r\nRSET@dest.test".to_string(),
        "x\u{2028}@dest.test".to_string(),
    ];
    let verdicts = client
        .send(
            &envelope,
            &rcpts,
            &Payload::new(b"Subject: quoted\r\n\r\nhi\r\n"),
        )
        .await
        .unwrap_or_else(|_| panic!("the transaction ends"));
    let statuses: Vec<DeliveryStatus> = verdicts.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Delivered,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Failed
        ],
        "{verdicts:?}"
    );
    for (_, reply) in &verdicts[2..] {
        assert_eq!((reply.code, reply.enhanced), (553, Some([5, 1, 3])));
    }
    client.quit().await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].mail_from,
        "SRS0=HHHH=TT=example.org=a> RET=FULL ENVID=x@relay.test"
    );
    let commands = sink.commands();
    let envelope_lines: Vec<&str> = commands
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("MAIL") || l.starts_with("RCPT"))
        .collect();
    assert_eq!(
        envelope_lines,
        [
            r#"MAIL FROM:<"SRS0=HHHH=TT=example.org=a> RET=FULL ENVID=x"@relay.test>"#,
            "RCPT TO:<u@dest.test>",
            r#"RCPT TO:<"v> NOTIFY=NEVER"@dest.test>"#,
        ],
        "{commands:#?}"
    );
    assert!(
        !commands.iter().any(|l| l.starts_with("RSET")),
        "{commands:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_smuggling_with_bare_line_endings_cannot_forge_a_second_message() {
    let dest = TestSink::start().await;
    let dest_addr = dest.addr;
    let relay = TestRelay::start(move |c: &mut Config| {
        c.outbound
            .routes
            .insert("dest.test".into(), dest_addr.to_string());
    })
    .await;
    relay.alias("hello", "d.country", "u@dest.test").await;
    relay.alias("team", "d.country", "victim@dest.test").await;
    let mut c = Client::connect(relay.smtp).await;
    c.ehlo("client.test").await;
    // A message that ends early for a reader that takes a bare LF or CR
    // as a line end, followed by a second, forged transaction. The relay
    // takes only CRLF.CRLF as the end and writes every line end as CRLF,
    // dot-stuffed: the forged transaction stays content of the first.
    let endings = ["\n.\r\n", "\r.\r\n", "\r\n.\n", "\n.\n", "\r\n.\r"];
    for ending in endings {
        c.mail_from(SENDER, "250").await;
        c.rcpt_to("hello@d.country", "250").await;
        c.cmd("DATA", "354").await;
        let smuggled = format!(
            "Subject: first\r\n\r\nhello{ending}MAIL FROM:<ceo@d.country>\r\n\
             RCPT TO:<team@d.country>\r\nDATA\r\nSubject: forged\r\n\r\npay now\r\n.\r\n"
        );
        c.send_raw(smuggled.as_bytes()).await;
        let reply = c.reply().await;
        assert!(reply.starts_with("250"), "{ending:?}: {reply}");
        // the forged commands were content: no transaction is open
        c.mail_from(SENDER, "250").await;
        c.cmd("RSET", "250").await;
    }
    // Ordinary mail still flows.
    c.send_mail(
        SENDER,
        &["hello@d.country"],
        &message(SENDER, "hello@d.country", "ordinary", "hello"),
    )
    .await;
    c.quit().await;
    let got = dest.wait_for(endings.len() + 1, WAIT).await;
    // The destination saw one message per accepted one, each to the alias's
    // forward only, the forged transaction inside the body as text.
    let got_all = dest.messages();
    assert_eq!(got_all.len(), endings.len() + 1, "{got_all:#?}");
    for m in &got_all {
        assert_eq!(m.rcpt_to, vec!["u@dest.test"]);
        let text = m.text();
        assert!(
            text.contains("Subject: ordinary")
                || text.contains("\r\nMAIL FROM:<ceo@d.country>\r\n"),
            "{text}"
        );
        // only CRLF line ends reach the destination
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{text:?}");
    }
    assert!(got.iter().any(|m| m.text().contains("Subject: ordinary")));
    let commands = dest.commands();
    assert!(
        !commands
            .iter()
            .any(|l| l.contains("ceo@") || l.contains("victim@")),
        "{commands:#?}"
    );
    relay.stop().await;
}
